/**
 * `ztunnel-ts proxy` as an operator first runs it: no snapshot and no CA configured, so the
 * bundled example snapshot and an ephemeral root; every port on 0. It must become ready, say
 * why its root is ephemeral, and exit 0 on SIGTERM.
 *
 * The bundled snapshot's workloads live on 127.100.0.0/24, which test/integration/demo.test.ts
 * owns (and may be binding at this very moment). NODE_NAME is therefore a node the snapshot does
 * not use: no workload is local, so no :15008 listener is opened there — the HBONE listeners of
 * a node are covered by the two-nodes test.
 */
import t from 'tap';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { loopbackBlock } from '../helpers/loopback';
import { eventually } from '../helpers/eventually';
import { get } from '../helpers/mesh-nodes';

const net = loopbackBlock(12, 9);
const MAIN = join(__dirname, '..', '..', 'src', 'main.js');

interface Line {
  level: number;
  msg: string;
  [k: string]: unknown;
}

t.test('ztunnel-ts proxy on the embedded default: ready, warns about the ephemeral root, exits 0 on SIGTERM', async (t) => {
  const env: Record<string, string> = {
    PATH: process.env['PATH'] ?? '/usr/bin:/bin',
    NODE_NAME: 'smoke-node',
    LOG_FORMAT: 'json',
    UNSTABLE_ENABLE_SOCKS5: 'true',
    ZTUNNEL_ADMIN_ADDR: `${net.ip(1)}:0`,
    ZTUNNEL_STATS_ADDR: `${net.ip(2)}:0`,
    ZTUNNEL_READINESS_ADDR: `${net.ip(3)}:0`,
    ZTUNNEL_SOCKS5_ADDR: `${net.ip(4)}:0`,
  };
  const child = spawn(process.execPath, [MAIN, 'proxy'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  // bounded whatever happens to the test
  const killer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  t.teardown(() => {
    clearTimeout(killer);
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  let out = '';
  let err = '';
  child.stdout.on('data', (b: Buffer) => void (out += b.toString()));
  child.stderr.on('data', (b: Buffer) => void (err += b.toString()));
  const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
  const lines = (): Line[] =>
    out
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Line);

  await eventually(() => lines().some((l) => l.msg === 'proxy running') || child.exitCode !== null, 'the proxy to start');
  const running = lines().find((l) => l.msg === 'proxy running');
  t.ok(running, `it started (stderr: ${err})`);
  t.equal(running?.['node'], 'smoke-node');
  t.equal(running?.['local'], 0, 'no workload of the bundled snapshot is on this node');
  const [host, port] = String(running?.['readiness']).split(/:(?=\d+$)/) as [string, string];
  t.equal(host, net.ip(3), 'readiness on the address asked for');
  t.not(Number(port), 0, 'on the port the OS picked');

  await eventually(async () => (await get({ host, port: Number(port) }, '/healthz/ready').catch(() => ({ status: 0 }))).status === 200, 'readiness 200');
  const all = lines();
  t.ok(all.some((l) => /running the bundled example snapshot/.test(l.msg)), 'the embedded snapshot is announced');
  t.ok(all.some((l) => l.level === 40 && /no LOCAL_CA_DIR: generated an ephemeral root CA/.test(l.msg)), 'the ephemeral-root warning is logged');

  child.kill('SIGTERM');
  const [code, signal] = await exited;
  t.equal(signal, null, 'not killed by a signal');
  t.equal(code, 0, `exit 0 after SIGTERM (stderr: ${err})`);
  t.ok(lines().some((l) => l.msg === 'shutdown complete'), 'shutdown complete is logged');
});
