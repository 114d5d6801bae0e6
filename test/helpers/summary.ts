/**
 * Prints the run's closing line in the plain form CI reads ("tests: N passed, N failed"), since
 * tap's own summary is not one CI knows. Counts test files from tap's saved per-file results
 * (.tap/test-results), only for test files that still exist in dist/, so a stale result of a
 * deleted test cannot count. A file failed if any of its top-level points is "not ok".
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';

function walk(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? walk(p) : [p];
  });
}

function main(): number {
  const root = process.cwd();
  const resultsDir = join(root, '.tap', 'test-results');
  let passed = 0;
  let failed = 0;
  const failures: string[] = [];
  for (const file of walk(resultsDir)) {
    if (!file.endsWith('.tap')) continue;
    const testFile = relative(resultsDir, file).replace(/\.tap$/, '');
    if (!existsSync(join(root, testFile))) continue;
    const text = readFileSync(file, 'utf8');
    if (/^not ok /m.test(text) || !/^ok /m.test(text)) {
      failed++;
      failures.push(testFile);
    } else passed++;
  }
  for (const f of failures) console.log(`failed: ${f}`);
  console.log(`tests: ${passed} passed, ${failed} failed`);
  return failed === 0 && passed > 0 ? 0 : 1;
}

process.exitCode = main();
