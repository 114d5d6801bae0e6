// Every test file that opens sockets declares its own 127.a.b.0/24 (test/helpers/loopback.ts);
// two files sharing one would race each other under tap's parallel runner.
import t from 'tap';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { loopbackBlock } from '../helpers/loopback';

const root = join(__dirname, '..', '..', '..', 'test');

function walk(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? walk(p) : p.endsWith('.ts') ? [p] : [];
  });
}

t.test('no two test files declare the same loopback block', async (t) => {
  const owners = new Map<string, string>();
  const dupes: string[] = [];
  for (const file of walk(root)) {
    if (file.includes(`${join('test', 'helpers')}`)) continue;
    const src = readFileSync(file, 'utf8');
    for (const m of src.matchAll(/loopbackBlock\(\s*(\d+)\s*,\s*(\d+)\s*\)/g)) {
      const key = `${m[1]}.${m[2]}`;
      const rel = relative(root, file);
      const prev = owners.get(key);
      if (prev !== undefined && prev !== rel) dupes.push(`127.${key}.0/24: ${prev} and ${rel}`);
      owners.set(key, rel);
    }
  }
  t.same(dupes, [], 'each block has one owner');
});

t.test('loopbackBlock builds addresses and rejects bad octets', async (t) => {
  const b = loopbackBlock(9, 3);
  t.equal(b.ip(7), '127.9.3.7');
  t.equal(b.cidr, '127.9.3.0/24');
  t.throws(() => loopbackBlock(256, 1), /not an octet/);
  t.throws(() => loopbackBlock(0, 0), /shared/);
  t.throws(() => b.ip(0), /out of 1..254/);
  t.throws(() => b.ip(255), /out of 1..254/);
});
