/**
 * Drain (ZTUNNEL-FACTS "Shutdown") on one real proxy whose client and server workloads are both
 * local, so every connection crosses SOCKS5 → HBONE (to itself) → app: a live transfer survives
 * the drain byte for byte, one that outlives the deadline is cut. The same holds for a plaintext
 * leg to a TCP (non-HBONE) workload on both relay engines (splice and the JS copy path). The
 * `proxy` command exits 0 after a signal, also one that arrives during start-up, and at once (0,
 * as ztunnel's signal.rs) on a second SIGINT.
 */
import t from 'tap';
import { createHash } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig } from '../../src/config/config';
import { Logging } from '../../src/logging/logger';
import { startApp, type App } from '../../src/app';
import { runCli } from '../../src/cli/run';
import { socksConnect } from '../../src/proxy/socks5-client';
import { loopbackBlock } from '../helpers/loopback';
import { parseProm, sumOf } from '../helpers/prom-text';
import { eventually } from '../helpers/eventually';

const net = loopbackBlock(8, 2);
const CLIENT = net.ip(1);
const SERVER = net.ip(11);
const VIP = net.ip(100);
/** A plaintext (protocol TCP) workload: SOCKS5 → app directly, relayed by splice or in JS. */
const LEGACY = net.ip(21);
const dir = mkdtempSync(join(tmpdir(), 'ztunnel-drain-'));
const snapshotPath = join(dir, 'snapshot.json');
writeFileSync(
  snapshotPath,
  JSON.stringify({
    workloads: [
      { uid: 'c1//v1/Pod/default/client', name: 'client', namespace: 'default', serviceAccount: 'client', workloadIps: [CLIENT], protocol: 'HBONE', node: 'local', workloadName: 'client' },
      {
        uid: 'c1//v1/Pod/default/server', name: 'server', namespace: 'default', serviceAccount: 'server', workloadIps: [SERVER], protocol: 'HBONE', node: 'local',
        workloadName: 'server', services: { 'default/server.default.svc.cluster.local': { 80: 8080 } },
      },
      { uid: 'c1//v1/Pod/default/legacy', name: 'legacy', namespace: 'default', workloadIps: [LEGACY], protocol: 'TCP', node: 'other', workloadName: 'legacy' },
    ],
    services: [{ name: 'server', namespace: 'default', hostname: 'server.default.svc.cluster.local', vips: [`/${VIP}`], ports: { 80: 8080 } }],
  }),
);

/** Env shared by the in-process app and the CLI runs; `ip` hosts SOCKS5/admin/stats/readiness. */
function env(ip: string, port: (base: number) => number, deadline: string): Record<string, string> {
  return {
    LOCAL_XDS_PATH: snapshotPath,
    UNSTABLE_ENABLE_SOCKS5: 'true',
    ZTUNNEL_SOCKS5_ADDR: `${ip}:${port(15080)}`,
    ZTUNNEL_ADMIN_ADDR: `${ip}:${port(15000)}`,
    ZTUNNEL_STATS_ADDR: `${ip}:${port(15020)}`,
    ZTUNNEL_READINESS_ADDR: `${ip}:${port(15021)}`,
    CONNECTION_TERMINATION_DEADLINE: deadline,
  };
}

async function startNode(deadline: string, extra: Record<string, string> = {}): Promise<{ app: App; lines: Record<string, unknown>[]; socks: { host: string; port: number } }> {
  const config = parseConfig({ ...env(net.ip(240), () => 0, deadline), LOG_FORMAT: 'json', ...extra }, { logicalCpus: 2 });
  const lines: Record<string, unknown>[] = [];
  const logging = new Logging({ ...config.log, destination: { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) } });
  const app = await startApp(config, logging);
  await app.data.settled();
  const a = app.data.addresses().get('socks5')!;
  return { app, lines, socks: { host: a.host, port: a.port } };
}

async function getText(addr: { text: string } | string, path: string): Promise<{ status: number; body: string }> {
  const res = await fetch(`http://${typeof addr === 'string' ? addr : addr.text}${path}`);
  return { status: res.status, body: await res.text() };
}


/** Collects what comes back; resolves once the far end has closed, with the bytes and how it ended. */
function collect(s: Socket): { hash: ReturnType<typeof createHash>; bytes: () => number; closed: Promise<{ error: string | null; farEnd: boolean }> } {
  const hash = createHash('sha256');
  let n = 0;
  let error: string | null = null;
  let farEnd = false;
  s.on('data', (d: Buffer) => {
    hash.update(d);
    n += d.length;
  });
  s.on('error', (e: NodeJS.ErrnoException) => (error = e.code ?? e.message));
  // the socket allows half-open: once the far end is done, finish our side so 'close' follows
  s.on('end', () => {
    farEnd = true;
    s.end();
  });
  s.resume();
  return { hash, bytes: () => n, closed: new Promise((resolve) => s.once('close', () => resolve({ error, farEnd }))) };
}

function echoOn(ip: string): Promise<Server> {
  const server = createServer({ allowHalfOpen: true }, (s) => {
    s.pipe(s);
    s.on('error', () => undefined);
  });
  return new Promise<Server>((r) => server.listen(8080, ip, () => r(server)));
}

let echo: Server;
let legacyEcho: Server;
t.before(async () => {
  echo = await echoOn(SERVER);
  legacyEcho = await echoOn(LEGACY);
});
t.teardown(() => {
  echo.close();
  legacyEcho.close();
});

t.test('a drain keeps a live transfer intact until it finishes, then the app closes', async (t) => {
  const node = await startNode('30s');
  t.teardown(() => node.app.close());
  await eventually(async () => (await getText(node.app.servers.readiness, '/healthz/ready')).status === 200, 'ready');
  const s = await socksConnect(node.socks, CLIENT, { host: VIP, port: 80 });
  const back = collect(s);
  const sent = createHash('sha256');
  const chunk = Buffer.alloc(64 << 10);
  const write = async (count: number): Promise<void> => {
    for (let i = 0; i < count; i++) {
      chunk.fill(i & 0xff);
      sent.update(chunk);
      if (!s.write(chunk)) await once(s, 'drain');
    }
  };
  await write(32); // 2 MiB before the drain
  const shutdown = node.app.shutdown();
  t.equal(node.app.shutdown(), shutdown, 'shutdown() is idempotent');
  const ready = await getText(node.app.servers.readiness, '/healthz/ready');
  t.same(ready, { status: 500, body: 'not ready, pending: draining\n' }, 'readiness goes to 500 at once');
  const late = await socksConnect(node.socks, CLIENT, { host: VIP, port: 80 }).catch((e: NodeJS.ErrnoException) => e);
  t.equal((late as NodeJS.ErrnoException).code, 'ECONNREFUSED', 'no new connection is accepted');
  await write(96); // 6 MiB more while draining
  s.end();
  const end = await back.closed;
  t.equal(end.error, null, 'the connection ended cleanly');
  t.equal(back.bytes(), 128 * (64 << 10), 'every byte came back');
  t.equal(back.hash.digest('hex'), sent.digest('hex'), 'byte-exact (sha256)');
  await shutdown;
  await node.app.closed;
  t.notOk(node.lines.some((l) => String(l['msg']).startsWith('drain deadline reached')), 'the drain ended because the connection finished');
  const complete = node.lines.filter((l) => l['msg'] === 'connection complete');
  t.same(complete.map((l) => [l['direction'], l['error'] ?? null]).sort(), [['inbound', null], ['outbound', null]], 'both legs complete without error');
});

t.test('a connection that outlives the deadline is closed, and counted', async (t) => {
  const node = await startNode('300ms');
  t.teardown(() => node.app.close());
  await eventually(async () => (await getText(node.app.servers.readiness, '/healthz/ready')).status === 200, 'ready');
  const s = await socksConnect(node.socks, CLIENT, { host: VIP, port: 80 });
  const back = collect(s);
  s.write('hello');
  await eventually(() => back.bytes() === 5, 'the echo');
  await node.app.shutdown(); // resolves only once everything is closed
  const end = await back.closed;
  t.ok(end.error !== null || end.farEnd, `the proxy ended the connection the client never ended (${end.error ?? 'FIN'})`);
  t.equal(back.bytes(), 5, 'nothing but the echo came back');
  const reached = node.lines.find((l) => l['msg'] === 'drain deadline reached: closing the remaining connections');
  t.match(reached, { connections: Number }, 'the forced close is logged with the count');
  const samples = parseProm(await node.app.metrics.render('prometheus'));
  t.equal(sumOf(samples, 'istio_tcp_connections_closed_total', { reporter: 'source' }), 1, 'source close counted');
  t.equal(sumOf(samples, 'istio_tcp_connections_closed_total', { reporter: 'destination' }), 1, 'destination close counted');
  t.equal(sumOf(samples, 'istio_tcp_received_bytes_total', { reporter: 'destination' }), 5, 'its bytes counted');
  t.equal(sumOf(samples, 'istio_tcp_sockets_open'), 0, 'nothing open any more');
  t.ok(node.lines.some((l) => l['msg'] === 'connection complete' && l['direction'] === 'inbound' && l['error'] === 'proxy shutting down'), 'the inbound leg says why it ended');
});

for (const engine of ['splice', 'js'] as const) {
  const extra = { ZTUNNEL_NATIVE_RELAY: engine === 'splice' ? 'true' : 'false' };

  t.test(`plaintext leg (${engine} relay): a live transfer survives the drain byte for byte`, async (t) => {
    const node = await startNode('30s', extra);
    t.teardown(() => node.app.close());
    const s = await socksConnect(node.socks, CLIENT, { host: LEGACY, port: 8080 });
    const back = collect(s);
    const sent = createHash('sha256');
    const chunk = Buffer.alloc(64 << 10);
    const write = async (count: number): Promise<void> => {
      for (let i = 0; i < count; i++) {
        chunk.fill((i * 7) & 0xff);
        sent.update(chunk);
        if (!s.write(chunk)) await once(s, 'drain');
      }
    };
    await write(16);
    t.same(node.app.data.relayCounts(), { splice: engine === 'splice' ? 1 : 0, js: engine === 'js' ? 1 : 0 }, `relayed by ${engine}`);
    const shutdown = node.app.shutdown();
    await write(48); // more while draining
    s.end();
    const end = await back.closed;
    t.equal(end.error, null, 'the connection ended cleanly');
    t.equal(back.bytes(), 64 * (64 << 10), 'every byte came back');
    t.equal(back.hash.digest('hex'), sent.digest('hex'), 'byte-exact (sha256)');
    await shutdown;
    await node.app.closed;
    t.notOk(node.lines.some((l) => String(l['msg']).startsWith('drain deadline reached')), 'the drain ended because the connection finished');
    const complete = node.lines.filter((l) => l['msg'] === 'connection complete');
    t.same(complete.map((l) => [l['direction'], l['dst.addr'], l['error'] ?? null]), [['outbound', `${LEGACY}:8080`, null]], 'one clean outbound line');
  });

  t.test(`plaintext leg (${engine} relay): a connection that outlives the deadline is cut`, async (t) => {
    const node = await startNode('300ms', extra);
    t.teardown(() => node.app.close());
    const s = await socksConnect(node.socks, CLIENT, { host: LEGACY, port: 8080 });
    const back = collect(s);
    s.write('hello');
    await eventually(() => back.bytes() === 5, 'the echo');
    t.equal(node.app.data.relayCounts()[engine], 1, `relayed by ${engine}`);
    await node.app.shutdown(); // resolves only once everything is closed
    const end = await back.closed;
    t.ok(end.error !== null || end.farEnd, `the proxy ended the connection the client never ended (${end.error ?? 'FIN'})`);
    t.match(node.lines.find((l) => l['msg'] === 'drain deadline reached: closing the remaining connections'), { connections: 1 }, 'cut at the deadline, and counted');
    t.equal(await node.app.data.liveConnections(), 0, 'nothing live any more');
    const samples = parseProm(await node.app.metrics.render('prometheus'));
    t.equal(sumOf(samples, 'istio_tcp_connections_closed_total', { reporter: 'source', destination_workload: 'legacy' }), 1, 'its close counted');
    t.equal(sumOf(samples, 'istio_tcp_sockets_open'), 0, 'nothing open any more');
  });
}

/** Connects once; 'connected' or the error code (a listener that is not there yet refuses). */
function probe(host: string, port: number): Promise<string> {
  return new Promise((resolve) => {
    const s = connect({ host, port });
    s.once('connect', () => {
      s.destroy();
      resolve('connected');
    });
    s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
  });
}

t.test('`proxy` command: a signal before anything is bound (the snapshot check) stops it at once, exit 0', async (t) => {
  const ip = net.ip(251);
  const io = { env: { ...env(ip, (p) => p, '60s'), LOG_LEVEL: 'off' }, out: () => undefined, err: (s: string) => void t.comment(s) };
  let before!: Promise<string>;
  const code = await runCli(['proxy'], io, {
    onSignal: (h) => {
      // the handler must be in place before start-up binds anything: nothing answers yet
      before = probe(ip, 15021);
      h('SIGTERM');
    },
  });
  t.equal(await before, 'ECONNREFUSED', 'signal handlers are installed before start-up');
  t.equal(code, 0, 'stopped cleanly');
  for (const port of [15000, 15020, 15021, 15080]) t.equal(await probe(ip, port), 'ECONNREFUSED', `port ${port} closed`);
});

t.test('`proxy` command: a signal once start-up has bound its first port stops the proxy cleanly once started, exit 0', async (t) => {
  const ip = net.ip(249);
  const io = { env: { ...env(ip, (p) => p, '60s'), LOG_LEVEL: 'off' }, out: () => undefined, err: (s: string) => void t.comment(s) };
  let signal: (name: string) => void = () => undefined;
  const code = runCli(['proxy'], io, { onSignal: (h) => (signal = h) });
  // readiness is bound first; the CA, certificates and worker threads come after it, so the signal
  // usually lands mid start-up (if start-up was quicker, this is an ordinary drain: same outcome)
  await eventually(async () => (await probe(ip, 15021)) === 'connected', 'readiness bound');
  signal('SIGTERM');
  t.equal(await code, 0, 'started, drained (nothing open), exit 0');
  for (const port of [15000, 15020, 15021, 15080]) t.equal(await probe(ip, port), 'ECONNREFUSED', `port ${port} closed`);
});

t.test('`proxy` command: a signal drains and exits 0; a second SIGINT exits at once with 0', async (t) => {
  const ip = net.ip(250);
  const cliEnv = { ...env(ip, (p) => p, '60s'), LOG_LEVEL: 'off' };
  const io = { env: cliEnv, out: () => undefined, err: (s: string) => void t.comment(s) };

  let signal: (name: string) => void = () => undefined;
  const first = runCli(['proxy'], io, { onSignal: (h) => (signal = h) });
  await eventually(async () => (await getText(`${ip}:15021`, '/healthz/ready')).status === 200, 'ready');
  signal('SIGTERM');
  t.equal(await first, 0, 'nothing open: the drain ends at once, exit 0');
  const gone = await fetch(`http://${ip}:15000/`).catch((e: Error & { cause?: { code?: string } }) => e.cause?.code);
  t.equal(gone, 'ECONNREFUSED', 'admin is closed after the shutdown');

  const second = runCli(['proxy'], io, { onSignal: (h) => (signal = h) });
  await eventually(async () => (await getText(`${ip}:15021`, '/healthz/ready')).status === 200, 'ready');
  const s = await socksConnect({ host: ip, port: 15080 }, CLIENT, { host: VIP, port: 80 });
  const back = collect(s);
  s.write('x');
  await eventually(() => back.bytes() === 1, 'the echo');
  signal('SIGINT');
  t.equal((await getText(`${ip}:15021`, '/healthz/ready')).status, 500, 'draining, with a 60 s deadline ahead');
  signal('SIGINT');
  // the 60 s deadline is far beyond tap's timeout: resolving here means the second signal did it
  t.equal(await second, 0, 'a second SIGINT exits at once, with 0 as ztunnel');
  await back.closed;
  t.ok(s.destroyed, 'the live connection was cut');
});
