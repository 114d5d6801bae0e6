import t from 'tap';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { ENV_VARS } from '../../../src/config/env-table';

t.test('ENV_VARS rows are well formed and frozen', async (t) => {
  const names = ENV_VARS.map((v) => v.name);
  t.equal(new Set(names).size, names.length, 'names are unique');
  for (const v of ENV_VARS) {
    t.match(v.name, /^[A-Z][A-Z0-9_]*$/, `${v.name} is an env-style name`);
    t.ok(v.default.length > 0, `${v.name} has a default`);
    t.ok(v.meaning.length > 10, `${v.name} has a meaning`);
    t.ok(Object.isFrozen(v), `${v.name} row is frozen`);
  }
  t.ok(Object.isFrozen(ENV_VARS), 'table is frozen');
});

t.test('every variable named in config sources is in the table, and vice versa', async (t) => {
  // A second check beside config.test's recorded reads: the quoted upper-case names in the
  // config sources (error codes aside). Recorded reads only see the paths one run takes; this
  // also catches a name typed on a path that run skipped.
  const root = resolve(__dirname, '../../../../src/config');
  const sources = ['config.ts', 'workers.ts'].map((f) => readFileSync(resolve(root, f), 'utf8')).join('\n');
  // one-word names too (NETWORK)
  const names = [...sources.matchAll(/'([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*)'/g)].map((m) => m[1]!);
  const quoted = new Set(names.filter((n) => !n.startsWith('ERR_')));
  const table = new Set(ENV_VARS.map((v) => v.name));
  t.same([...quoted].filter((n) => !table.has(n)).sort(), [], 'names read but not in the table');
  t.same([...table].filter((n) => !quoted.has(n)).sort(), [], 'names in the table but never read');
});
