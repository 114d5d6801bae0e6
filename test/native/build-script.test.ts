// native/build.js must never let node-gyp download Node's headers: it always passes --nodedir
// naming a directory that holds include/node/node_api.h (npm_config_nodedir if it does, else the
// running node's prefix), and refuses with exit 1 when neither does. node-gyp is replaced by a
// stub that prints its arguments, so nothing is built here.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';

const BUILD_JS = resolve(__dirname, '../../../native/build.js');
const MARK = 'STUB-NODE-GYP';

function setup(t: tap.Test): { dir: string; stub: string; empty: string; headers: string } {
  const dir = mkdtempSync(join(tmpdir(), 'zt-build-js-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const stub = join(dir, 'node-gyp-stub.js');
  writeFileSync(stub, `console.log(${JSON.stringify(MARK)}, JSON.stringify({ args: process.argv.slice(2), cwd: process.cwd() }));\n`);
  const empty = join(dir, 'empty');
  mkdirSync(empty);
  const headers = join(dir, 'headers');
  mkdirSync(join(headers, 'include', 'node'), { recursive: true });
  writeFileSync(join(headers, 'include', 'node', 'node_api.h'), '/* stand-in */\n');
  return { dir, stub, empty, headers };
}

function run(env: Record<string, string>, preload?: string): { status: number | null; stub: { args: string[]; cwd: string } | null; stderr: string } {
  const args = preload === undefined ? [BUILD_JS] : ['--require', preload, BUILD_JS];
  // a clean environment: no NODE_OPTIONS from the test runner, no npm_config_* from an outer npm
  const r = spawnSync(process.execPath, args, { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...env }, encoding: 'utf8', timeout: 30_000 });
  const line = r.stdout.split('\n').find((l) => l.startsWith(MARK));
  return { status: r.status, stub: line === undefined ? null : JSON.parse(line.slice(MARK.length + 1)), stderr: r.stderr };
}

t.test('npm_config_nodedir with the headers is passed to node-gyp as --nodedir', async (t) => {
  const s = setup(t);
  const r = run({ npm_config_nodedir: s.headers, npm_config_node_gyp: s.stub });
  t.equal(r.status, 0);
  t.same(r.stub?.args, ['rebuild', `--nodedir=${s.headers}`]);
  t.equal(r.stub?.cwd, dirname(BUILD_JS), 'node-gyp runs in native/');
});

const prefix = resolve(dirname(process.execPath), '..');
const prefixHasHeaders = existsSync(join(prefix, 'include', 'node', 'node_api.h'));

t.test('npm_config_nodedir without headers: the running node prefix is used when it has them', { skip: prefixHasHeaders ? false : `this node's prefix ${prefix} has no headers` }, async (t) => {
  const s = setup(t);
  const r = run({ npm_config_nodedir: s.empty, npm_config_node_gyp: s.stub });
  t.equal(r.status, 0);
  t.same(r.stub?.args, ['rebuild', `--nodedir=${prefix}`]);
});

t.test('no directory with the headers: exit 1 with the refusal, node-gyp never runs', async (t) => {
  const s = setup(t);
  // build.js looks at the prefix of process.execPath: point it at a directory without headers
  const preload = join(s.dir, 'fake-exec-path.js');
  writeFileSync(preload, `process.execPath = ${JSON.stringify(join(s.empty, 'bin', 'node'))};\n`);
  const r = run({ npm_config_nodedir: s.empty, npm_config_node_gyp: s.stub }, preload);
  t.equal(r.status, 1);
  t.equal(r.stub, null, 'node-gyp was not started');
  t.match(r.stderr, /no local Node headers \(looked for include\/node\/node_api\.h under /);
  t.match(r.stderr, s.empty, 'names the directories it looked in');
  t.match(r.stderr, /refusing to let node-gyp download them/);
});
