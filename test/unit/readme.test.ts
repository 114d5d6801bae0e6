// The README's environment table is the operators' reference: it must list exactly the variables
// the config parser reads (src/config/env-table.ts), with the same defaults.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ENV_VARS } from '../../src/config/env-table';

const readme = readFileSync(join(__dirname, '..', '..', '..', 'README.md'), 'utf8');

t.test('README env table matches the code', async (t) => {
  const start = readme.indexOf('<!-- env-table:start -->');
  const end = readme.indexOf('<!-- env-table:end -->');
  t.ok(start > 0 && end > start, 'table markers present');
  const rows = readme
    .slice(start, end)
    .split('\n')
    .filter((l) => l.startsWith('| `'))
    .map((l) => l.split(' | ').map((c) => c.replace(/^\| /, '').replace(/`/g, '').trim()));
  const inReadme = new Map(rows.map((r) => [r[0]!, r[1]!]));
  t.same([...inReadme.keys()].sort(), ENV_VARS.map((v) => v.name).sort(), 'same variables');
  for (const v of ENV_VARS) t.equal(inReadme.get(v.name), v.default, `${v.name} default`);
});

t.test('README opens with the install+run and test commands that .ci/run uses', async (t) => {
  const firstBlock = /```sh\n([\s\S]*?)```/.exec(readme)?.[1] ?? '';
  t.match(firstBlock, /^npm ci && npm start/m);
  t.match(firstBlock, /^npm ci && npm test/m);
  const ci = readFileSync(join(__dirname, '..', '..', '..', '.ci', 'run'), 'utf8');
  t.match(ci, /^npm ci && npm test$/m, '.ci/run runs the README test command verbatim');
});
