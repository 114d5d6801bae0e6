// The relay engine starts its thread on the first relayStart. When pthread_create fails (here:
// RLIMIT_NPROC on a child process running as `nobody`, where the limit applies), the start
// fails with the step's errno and the epoll and wake-up fds made for that thread are closed: a
// retry must not leak two fds per attempt (it used to overwrite them). Once threads can be made
// again, the next start gets its thread. Runs as root (to start the child as nobody); the limit is
// set by prlimit running as nobody too, since changing another user's limits needs CAP_SYS_RESOURCE,
// which containers often drop.
import t, { type Test as Tap } from 'tap';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { DEFAULT_ADDON_PATH } from '../../src/native/addon';
import { once } from 'node:events';
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';

const NOBODY = 65534;

// Runs in the child: all of it synchronous or over the IPC pipe, so the child itself needs no new
// thread once the limit is set (only the relay engine tries to make one).
const CHILD = `
const fs = require('node:fs');
const n = require(process.argv[1]).loadNative();
const a = fs.openSync('/dev/null', 'r');
const b = fs.openSync('/dev/null', 'r');
const openFds = () => fs.readdirSync('/proc/self/fd').length;
const relayThreads = () => fs.readdirSync('/proc/self/task').filter((id) => {
  try { return fs.readFileSync('/proc/self/task/' + id + '/comm', 'utf8').trim() === 'zt-relay'; } catch { return false; }
}).length;
const attempt = () => {
  try { n.relayStart(a, b, () => undefined); return 'started'; } catch (e) { return e.code + ' ' + e.syscall; }
};
process.on('message', (m) => {
  const before = openFds();
  const results = [];
  for (let i = 0; i < (m === 'limited' ? 3 : 1); i++) results.push(attempt());
  process.send({ results, fdDelta: openFds() - before, relayThreads: relayThreads() });
  if (m === 'unlimited') process.disconnect();
});
process.send('ready');
`;

interface Report {
  results: string[];
  fdDelta: number;
  relayThreads: number;
}

async function ask(child: ChildProcess, what: string): Promise<Report> {
  child.send(what);
  const [r] = (await once(child, 'message')) as [Report];
  return r;
}

const notRoot = process.getuid?.() !== 0 ? 'needs root (starts a child as nobody)' : false;

/** The soft RLIMIT_NPROC of `pid` ("unlimited" or a number), from /proc/<pid>/limits. */
function softNproc(pid: number): string {
  const line = readFileSync(`/proc/${pid}/limits`, 'utf8').split('\n').find((l) => l.startsWith('Max processes'));
  return line!.split(/\s{2,}/)[1]!;
}

/** Sets the soft limit only, by prlimit running as the child's own user (no CAP_SYS_RESOURCE needed). */
function setNproc(pid: number, soft: string): void {
  execFileSync('prlimit', ['--pid', String(pid), `--nproc=${soft}:`], { uid: NOBODY, gid: NOBODY });
}

/**
 * The checkout may sit where `nobody` cannot read (CI clones into a 0700 temporary directory), so
 * the child loads a copy of the addon and its two JS dependencies, in the compiled layout, from a
 * directory everyone may read. Returns the copy's addon.js.
 */
function readableCopy(t: Tap): string {
  const root = mkdtempSync(join(tmpdir(), 'zt-relay-limit-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const dist = resolve(__dirname, '../..');
  const files: [string, string][] = [
    [join(dist, 'src/native/addon.js'), join(root, 'dist/src/native/addon.js')],
    [join(dist, 'src/native/errno.js'), join(root, 'dist/src/native/errno.js')],
    [join(dist, 'src/errors.js'), join(root, 'dist/src/errors.js')],
    [DEFAULT_ADDON_PATH, join(root, 'native/build/Release/ztunnel_native.node')],
  ];
  for (const [from, to] of files) {
    mkdirSync(dirname(to), { recursive: true });
    copyFileSync(from, to);
  }
  for (const dir of [root, join(root, 'dist'), join(root, 'dist/src'), join(root, 'dist/src/native'), join(root, 'native'), join(root, 'native/build'), join(root, 'native/build/Release')]) chmodSync(dir, 0o755);
  for (const [, to] of files) chmodSync(to, 0o644);
  return files[0]![1];
}

t.test('a relay thread that cannot be created leaks no fds, and a later start gets its thread', { skip: notRoot }, async (t) => {
  const addonJs = readableCopy(t);
  // through env(1): tap's process-info hook puts its coverage loader (which lives in the checkout,
  // unreadable to nobody when CI clones into a 0700 directory) back into NODE_OPTIONS of every child
  const child = spawn('env', ['-u', 'NODE_OPTIONS', process.execPath, '-e', CHILD, addonJs], {
    uid: NOBODY,
    gid: NOBODY,
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin' },
    cwd: dirname(addonJs),
  });
  t.teardown(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  // a child that cannot start (e.g. cannot load the addon) fails the test instead of hanging it
  const first = await Promise.race([
    once(child, 'message').then(([m]) => m as string),
    once(child, 'exit').then(([code]) => `exited with ${String(code)} before it was ready`),
  ]);
  t.equal(first, 'ready');
  if (first !== 'ready') return;

  const original = softNproc(child.pid!);
  // nobody's task count is already above 1: every clone() the child tries now fails with EAGAIN
  setNproc(child.pid!, '1');
  const limited = await ask(child, 'limited');
  t.same(limited.results, ['EAGAIN pthread_create', 'EAGAIN pthread_create', 'EAGAIN pthread_create'], 'each start fails at pthread_create, with its errno');
  t.equal(limited.fdDelta, 0, 'no epoll or eventfd left open by the failed starts');
  t.equal(limited.relayThreads, 0, 'no relay thread');

  setNproc(child.pid!, original);
  const exited = once(child, 'exit') as Promise<[number | null]>;
  const later = await ask(child, 'unlimited');
  // /dev/null cannot be watched by epoll (EPERM): reaching that step means the thread was made
  t.same(later.results, ['EPERM epoll_ctl'], 'the start now gets past pthread_create');
  t.equal(later.relayThreads, 1, 'the relay thread runs');
  const [code] = await exited;
  t.equal(code, 0, 'the child exits cleanly (engine shut down)');
});
