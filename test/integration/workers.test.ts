/**
 * The worker_threads data plane end to end (issue 4, "Worker pool"): the real startNodeApp with 2
 * workers behind one SOCKS5 address (SO_REUSEPORT), a plain echo server as passthrough
 * destination. Checks that the kernel spreads connections over both workers (per-worker relay
 * counters), that killing one worker leaves the other's live connections moving bytes (sha256)
 * while the replacement starts and readiness reports the gap, that the replacement serves new
 * connections, that config_dump shows the thread count, that /metrics merges both workers, that
 * a snapshot swap reaches every worker (new listener, certificate, tunnel), and that a worker that
 * cannot bind fails the start. Both relay engines run every case, the kill included.
 */
import t, { type Test as Tap } from 'tap';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { request } from 'node:http';
import { createServer, type Server, type Socket } from 'node:net';
import { createInterface } from 'node:readline';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig } from '../../src/config/config';
import { initCaDir } from '../../src/identity/ca-dir';
import { Logging } from '../../src/logging/logger';
import { startNodeApp, type NodeApp } from '../../src/app';
import { socksConnect } from '../../src/proxy/socks5-client';
import type { WorkerPool } from '../../src/workers/supervisor';
import { loopbackBlock } from '../helpers/loopback';
import { parseProm, select, sumOf } from '../helpers/prom-text';
import { eventually } from '../helpers/eventually';
import { echoHash, get, nodeEnv } from '../helpers/mesh-nodes';
import { echoServer } from './hbone-fixtures';

const net = loopbackBlock(9, 1);
const CLIENT = net.ip(1);
const PROXY = net.ip(2);
const ECHO = net.ip(20);
const SERVER = net.ip(21);

const dir = mkdtempSync(join(tmpdir(), 'ztunnel-workers-'));
const snapshotPath = join(dir, 'snapshot.json');
const workload = (name: string, ip: string) => ({ uid: `c1//v1/Pod/default/${name}`, name, namespace: 'default', serviceAccount: name, workloadIps: [ip], protocol: 'HBONE', node: 'node-w' });
const snapshotText = (names: Array<[string, string]>): string => JSON.stringify({ workloads: names.map(([n, ip]) => workload(n, ip)) });
writeFileSync(snapshotPath, snapshotText([['client', CLIENT]]));




const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

async function openMany(app: NodeApp, n: number): Promise<Socket[]> {
  const socks = app.addresses().get('socks5')!;
  const out: Socket[] = [];
  // in batches, so the SOCKS5 listen backlog is never the thing under test
  for (let i = 0; i < n; i += 50) {
    const batch = await Promise.all(Array.from({ length: Math.min(50, n - i) }, () => socksConnect(socks, CLIENT, { host: ECHO, port: echoPort })));
    for (const s of batch) s.on('error', () => undefined);
    out.push(...batch);
  }
  // one round trip each: every relay is wired before the counters are read
  const ping = Buffer.from('ping');
  await Promise.all(out.map((s) => echoHash(s, ping)));
  return out;
}

async function relaysBySlot(pool: WorkerPool): Promise<number[]> {
  const stats = await pool.stats();
  const out = new Array<number>(pool.size).fill(0);
  for (const s of stats) out[s.workerId] = s.relays.splice + s.relays.js;
  return out;
}

let echoPort = 0;
let echo: Server;

t.before(async () => {
  await initCaDir(join(dir, 'ca'));
  echo = createServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => undefined);
    s.pipe(s);
  });
  await new Promise<void>((r) => echo.listen(0, ECHO, r));
  echoPort = (echo.address() as { port: number }).port;
});
t.teardown(() => void echo.close());

t.test('a worker that cannot bind fails the start, like the main-thread data plane', async (t) => {
  const busy = createServer();
  await new Promise<void>((r) => busy.listen(0, PROXY, r));
  t.teardown(() => void busy.close());
  const port = (busy.address() as { port: number }).port;
  const config = parseConfig(
    nodeEnv({
      name: 'node-w',
      ip: PROXY,
      snapshotPath,
      caDir: join(dir, 'ca'),
      nativeRelay: true,
      env: { ZTUNNEL_SOCKS5_ADDR: `${PROXY}:${port}`, ZTUNNEL_WORKER_THREADS: '2', LOG_LEVEL: 'off' },
    }),
    { logicalCpus: 2 },
  );
  // the workers are terminated on the way out: a leftover thread would keep this file from ending
  await t.rejects(startNodeApp(config, new Logging({ ...config.log, destination: { write: () => undefined } })), {
    code: 'ERR_LISTEN',
    message: new RegExp(`proxy worker \\d could not start: cannot listen on ${PROXY.replace(/\./g, '\\.')}:${port} .*EADDRINUSE`),
  });
});

t.test('log levels set at run time reach the workers, and a replacement worker starts with them', async (t) => {
  // a process of its own: worker threads log straight to fd 1, which only another process can read
  const LOG_CLIENT = net.ip(41);
  const xdsPath = join(dir, 'snapshot-log.json');
  writeFileSync(xdsPath, snapshotText([['logclient', LOG_CLIENT]]));
  const env = nodeEnv({ name: 'node-w', ip: net.ip(40), snapshotPath: xdsPath, caDir: join(dir, 'ca'), nativeRelay: true, env: { ZTUNNEL_WORKER_THREADS: '2', LOG_LEVEL: 'info' } });
  const driver = join(__dirname, 'worker-app-driver.js');
  // under coreutils timeout: even a test killed mid-run cannot leave the child behind
  const child = spawn('timeout', ['-k', '2', '120', process.execPath, driver, JSON.stringify(env)], { stdio: ['pipe', 'pipe', 'pipe'] });
  const lines: Record<string, unknown>[] = [];
  let stderr = '';
  child.stderr.on('data', (b: Buffer) => void (stderr += b.toString()));
  createInterface({ input: child.stdout }).on('line', (l) => {
    try {
      lines.push(JSON.parse(l) as Record<string, unknown>);
    } catch {
      lines.push({ text: l });
    }
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const sockets: Socket[] = [];
  t.teardown(async () => {
    for (const s of sockets) s.destroy();
    child.stdin.end();
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), 15_000)));
    if (await Promise.race([exited.then(() => false), late])) child.kill('SIGTERM');
    clearTimeout(timer);
    await exited;
  });
  const driverSaid = async (event: string, from = 0): Promise<Record<string, unknown>> => {
    await eventually(() => lines.slice(from).some((l) => l['driver'] === true && (l['event'] === event || l['event'] === 'failed')), `the driver's "${event}" (stderr: ${stderr})`);
    const l = lines.slice(from).find((x) => x['driver'] === true && (x['event'] === event || x['event'] === 'failed'))!;
    if (l['event'] === 'failed') throw new Error(String(l['err']));
    return l;
  };
  const relays = async (): Promise<number[]> => {
    const from = lines.length;
    child.stdin.write('{"cmd":"stats"}\n');
    return (await driverSaid('stats', from))['relays'] as number[];
  };
  const ready = await driverSaid('ready');
  const socks = ready['socks'] as { host: string; port: number };
  const admin = ready['admin'] as { host: string; port: number };
  const opened = (from: number): number => lines.slice(from).filter((l) => l['target'] === 'access' && l['msg'] === 'connection opened').length;
  const completed = (): number => lines.filter((l) => l['target'] === 'access' && l['msg'] === 'connection complete').length;
  const connect = async (n: number): Promise<void> => {
    const batch = await Promise.all(Array.from({ length: n }, () => socksConnect(socks, LOG_CLIENT, { host: ECHO, port: echoPort })));
    for (const s of batch) s.on('error', () => undefined);
    sockets.push(...batch);
    await Promise.all(batch.map((s) => echoHash(s, Buffer.from('ping'))));
  };

  // at the start-up level (info) a worker logs a connection when it completes, never when it opens
  await connect(1);
  sockets.pop()!.end();
  await eventually(() => completed() === 1, 'the access line of the first connection');
  t.equal(opened(0), 0, 'no "connection opened" line at info');

  const set = await new Promise<string>((resolve, reject) => {
    const req = request({ host: admin.host, port: admin.port, path: '/logging?level=access=debug', method: 'POST', agent: false }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve(body));
    });
    req.on('error', reject);
    req.end();
  });
  t.equal(set, 'current log level is info,access=debug\n');
  let mark = lines.length;
  let r0 = await relays();
  await connect(20);
  let r1 = await relays();
  t.ok(r1[0]! > r0[0]! && r1[1]! > r0[1]!, `both workers served some (${r0.join(', ')} → ${r1.join(', ')})`);
  t.equal(opened(mark), 20, 'every worker logs "connection opened" after POST /logging');

  const killFrom = lines.length;
  child.stdin.write('{"cmd":"kill","worker":0}\n');
  await driverSaid('replaced', killFrom);
  t.ok(lines.slice(killFrom).some((l) => l['msg'] === 'proxy worker died; replacing it' && l['worker'] === 0), 'worker 0 died and was replaced');
  mark = lines.length;
  r0 = await relays();
  t.equal(r0[0], 0, 'slot 0 runs a fresh worker');
  await connect(40);
  r1 = await relays();
  t.ok(r1[0]! > 0, `the replacement served ${r1[0]} of 40`);
  t.equal(opened(mark), 40, 'the replacement logs "connection opened" too: it started at the run-time levels');
  t.ok(lines.slice(mark).every((l) => l['target'] !== 'access' || l['level'] === 20), 'only debug access lines since (nothing closed)');
});

for (const nativeRelay of [true, false]) {
  t.test(`two workers behind one SOCKS5 address (${nativeRelay ? 'splice' : 'JS'} relay)`, (t) => twoWorkers(t, nativeRelay));
}

async function twoWorkers(t: Tap, nativeRelay: boolean): Promise<void> {
  // a file per run: the swap below must not leak into the next run
  const xdsPath = join(dir, `snapshot-${nativeRelay}.json`);
  writeFileSync(xdsPath, snapshotText([['client', CLIENT]]));
  const config = parseConfig(
    nodeEnv({ name: 'node-w', ip: PROXY, snapshotPath: xdsPath, caDir: join(dir, 'ca'), nativeRelay, env: { ZTUNNEL_WORKER_THREADS: '2', LOG_LEVEL: 'warn' } }),
    { logicalCpus: 2 },
  );
  const lines: Record<string, unknown>[] = [];
  const logging = new Logging({ ...config.log, destination: { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) } });
  const app = await startNodeApp(config, logging);
  const sockets: Socket[] = [];
  t.teardown(async () => {
    for (const s of sockets) s.destroy();
    await app.close();
  });
  const pool = app.pool;
  if (pool === null) {
    t.fail('the addon did not load, so the app fell back to the main-thread data plane');
    return;
  }
  t.equal(pool.size, 2);
  t.equal(app.data, null, 'no data plane on the main thread');
  const socks = app.addresses().get('socks5');
  t.ok(socks && socks.port > 0, 'the port picked for SOCKS5 port 0 is published');
  t.ok(app.addresses().has(`hbone ${CLIENT}`), 'workers opened the local workload HBONE listener (SO_REUSEPORT on :15008)');
  await eventually(() => app.readiness.ready(), "readiness");

  t.test('config_dump shows the thread count', async (t) => {
    const r = await get(app.servers.admin, '/config_dump');
    const dump = JSON.parse(r.body) as { config: { numWorkerThreads: number } };
    t.equal(dump.config.numWorkerThreads, 2);
  });

  t.test('200 connections are spread over both workers; metrics merge both', async (t) => {
    const conns = await openMany(app, 200);
    sockets.push(...conns);
    const counts = await relaysBySlot(pool);
    t.equal(counts[0]! + counts[1]!, 200, `every connection relayed once (per worker: ${counts.join(', ')})`);
    t.ok(counts[0]! > 0 && counts[1]! > 0, 'both workers got connections');

    const perWorker = await pool.metrics();
    t.equal(perWorker.length, 2, 'both workers answered the scrape');
    const opened = perWorker.map((m) => {
      const metric = m.find((x) => x.name === 'istio_tcp_connections_opened_total');
      return (metric?.values ?? []).reduce((n, v) => n + v.value, 0);
    });
    t.same(opened, counts, 'each worker registry counted its own connections');
    const merged = parseProm((await get(app.servers.stats, '/metrics')).body);
    t.equal(sumOf(merged, 'istio_tcp_connections_opened_total', { reporter: 'source' }), 200, 'the merged scrape counts both workers');
    t.equal(sumOf(merged, 'istio_tcp_sockets_open', { reporter: 'source' }), 200);
    const dump = JSON.parse((await get(app.servers.admin, '/config_dump')).body) as { connections: { inbound: unknown[]; outbound: Array<{ src: string; actualDst: string }> } };
    t.equal(dump.connections.outbound.length, 200, 'config_dump lists the connections of both workers');
    t.ok(dump.connections.outbound.every((c) => c.src.startsWith(`${CLIENT}:`) && c.actualDst === `${ECHO}:${echoPort}`));
    t.ok(sumOf(merged, 'process_resident_memory_bytes') > 0 || sumOf(merged, 'process_cpu_seconds_total') > 0, 'process metrics come from the main thread');
  });

  t.test('process metrics come from the main thread only; each worker reports its own event-loop lag', async (t) => {
    const perWorker = await pool.metrics();
    t.equal(perWorker.length, 2);
    for (const [i, m] of perWorker.entries()) {
      const leaked = m.map((x) => x.name).filter((n) => n.startsWith('process_') || n.startsWith('nodejs_'));
      t.same(leaked, [], `answer ${i}: no process-wide collector in a worker registry`);
      const lag = m.find((x) => x.name === 'ztunnel_worker_eventloop_lag_seconds');
      t.same(new Set(lag?.values.map((v) => v.labels['worker'])).size, 1, `answer ${i}: the lag of one worker, labelled with its index`);
    }
    const text = (await get(app.servers.stats, '/metrics')).body;
    t.equal(text.match(/^process_start_time_seconds /gm)?.length, 1, 'process_start_time_seconds appears once in the merged scrape');
    t.equal(text.match(/^# TYPE process_start_time_seconds gauge$/gm)?.length, 1);
    const merged = parseProm(text);
    for (const worker of ['0', '1']) {
      const stats = select(merged, 'ztunnel_worker_eventloop_lag_seconds', { worker }).map((s) => s.labels['stat']).sort();
      t.same(stats, ['max', 'mean', 'p99'], `worker ${worker} has its own lag series (not summed with the other's)`);
      t.ok(select(merged, 'ztunnel_worker_eventloop_lag_seconds', { worker }).every((s) => s.value >= 0 && s.value < 60), 'values in seconds');
    }
  });

  t.test(`bytes of a ${nativeRelay ? 'spliced' : 'JS-relayed'} passthrough connection reach /metrics while it is open and after it closed`, async (t) => {
    const src = { reporter: 'source' };
    const scrape = async () => {
      const m = parseProm((await get(app.servers.stats, '/metrics')).body);
      return { received: sumOf(m, 'istio_tcp_received_bytes_total', src), sent: sumOf(m, 'istio_tcp_sent_bytes_total', src), closed: sumOf(m, 'istio_tcp_connections_closed_total', src) };
    };
    const engines = async () => (await pool.stats()).reduce((n, s) => ({ splice: n.splice + s.relays.splice, js: n.js + s.relays.js }), { splice: 0, js: 0 });
    const before = await scrape();
    const enginesBefore = await engines();
    const s = await socksConnect(app.addresses().get('socks5')!, CLIENT, { host: ECHO, port: echoPort });
    s.on('error', () => undefined);
    const N = 300_001;
    const payload = randomBytes(N);
    t.equal(await echoHash(s, payload), sha(payload), `${N} bytes there and back`);
    const enginesAfter = await engines();
    t.same({ splice: enginesAfter.splice - enginesBefore.splice, js: enginesAfter.js - enginesBefore.js }, nativeRelay ? { splice: 1, js: 0 } : { splice: 0, js: 1 }, 'relayed by the engine under test');
    const open = await scrape();
    t.same({ received: open.received - before.received, sent: open.sent - before.sent, closed: open.closed - before.closed }, { received: N, sent: N, closed: 0 }, 'while open: every byte, both ways');
    const ended = new Promise<void>((resolve) => s.once('close', () => resolve()));
    s.resume();
    s.end();
    await ended;
    await eventually(async () => (await scrape()).closed > before.closed, 'the close to be counted');
    const after = await scrape();
    t.same({ received: after.received - before.received, sent: after.sent - before.sent, closed: after.closed - before.closed }, { received: N, sent: N, closed: 1 }, 'after close: the same bytes, counted once');
    await eventually(async () => (await pool.liveConnections()) === 200, 'the connection to leave the worker');
  });

  t.test('a snapshot swap reaches every worker: new HBONE listener, its certificate, a tunnel through it', async (t) => {
    const { port, close } = await echoServer(SERVER);
    t.teardown(close);
    const before = app.control.store.current.version;
    writeFileSync(xdsPath, snapshotText([['client', CLIENT], ['server', SERVER]]));
    await eventually(() => app.control.store.current.version > before, 'the snapshot reload');
    await pool.settled();
    t.ok(app.addresses().has(`hbone ${SERVER}`), 'the workers opened the new workload listener');
    const s = await socksConnect(app.addresses().get('socks5')!, CLIENT, { host: SERVER, port });
    s.on('error', () => undefined);
    const payload = randomBytes(64 * 1024);
    t.equal(await echoHash(s, payload), sha(payload), 'SOCKS5 → HBONE (worker certs for both ends) → app and back, intact');
    const merged = parseProm((await get(app.servers.stats, '/metrics')).body);
    const inbound = { reporter: 'destination', destination_principal: 'spiffe://cluster.local/ns/default/sa/server', source_principal: 'spiffe://cluster.local/ns/default/sa/client' };
    t.equal(sumOf(merged, 'istio_tcp_connections_opened_total', inbound), 1, 'the inbound side (a worker registry) counted the tunnel');
    // its two legs may live in different workers: gone before the next test counts live connections per worker
    s.destroy();
    await eventually(async () => (await pool.liveConnections()) === 200, 'the tunnel to close');
  });

  t.test('a Deny policy written to the snapshot cuts every live tunnel in every worker, counted DENY', async (t) => {
    const { port, close } = await echoServer(SERVER);
    t.teardown(close);
    const deny = { reporter: 'destination', response_flags: 'DENY' };
    const denied = async () => {
      const m = parseProm((await get(app.servers.stats, '/metrics')).body);
      return { closed: sumOf(m, 'istio_tcp_connections_closed_total', deny), failed: sumOf(m, 'istio_tcp_connections_failed_total', deny) };
    };
    const d0 = await denied();
    const live0 = (await pool.stats()).sort((a, b) => a.workerId - b.workerId).map((s) => s.live);
    const N = 20;
    const tunnels = await Promise.all(Array.from({ length: N }, () => socksConnect(app.addresses().get('socks5')!, CLIENT, { host: SERVER, port })));
    const codes: string[] = [];
    for (const s of tunnels) {
      let code = 'closed';
      s.on('error', (e: NodeJS.ErrnoException) => (code = e.code ?? e.message));
      s.on('close', () => codes.push(code));
    }
    const ping = randomBytes(1024);
    t.ok((await Promise.all(tunnels.map((s) => echoHash(s, ping)))).every((h) => h === sha(ping)), `${N} tunnels carry bytes`);
    const live1 = (await pool.stats()).sort((a, b) => a.workerId - b.workerId).map((s) => s.live);
    t.ok(live1[0]! > live0[0]! && live1[1]! > live0[1]!, `the tunnels are spread over both workers (live ${live0.join(', ')} → ${live1.join(', ')})`);

    const policy = { name: 'deny-client', namespace: 'default', scope: 'Namespace', action: 'Deny', rules: [[[{ principals: [{ Exact: 'cluster.local/ns/default/sa/client' }] }]]] };
    const doc = JSON.parse(snapshotText([['client', CLIENT], ['server', SERVER]])) as Record<string, unknown>;
    const v0 = app.control.store.current.version;
    writeFileSync(xdsPath, JSON.stringify({ ...doc, policies: [policy] }));
    t.teardown(async () => {
      // the next case counts passthrough connections only: lift the policy again
      writeFileSync(xdsPath, JSON.stringify(doc));
      await eventually(() => app.control.store.current.version > v0 + 1, 'the policy to be lifted');
      await pool.settled();
    });
    await eventually(() => codes.length === N, 'every tunnel to be cut');
    t.ok(codes.every((c) => c === 'closed' || c === 'ECONNRESET'), `every tunnel was cut (${[...new Set(codes)].join(', ')})`);
    await eventually(async () => (await denied()).closed - d0.closed >= N, 'the cuts to be counted');
    const d1 = await denied();
    t.same({ closed: d1.closed - d0.closed, failed: d1.failed - d0.failed }, { closed: N, failed: N }, 'each cut counted once, closed and failed with response_flags="DENY"');
    await eventually(async () => (await pool.liveConnections()) === 200, 'the cut tunnels to leave both workers');
  });

  // On the splice path the dead worker's relays are stopped by the addon's environment cleanup
  // hook (native/README.md), so their sockets close like the JS ones.
  t.test('a dead worker is replaced; the other one keeps its connections', async (t) => {
    const live = (await pool.stats()).sort((a, b) => a.workerId - b.workerId).map((s) => s.live);
    t.ok(live[0]! > 0 && live[1]! > 0, `both workers hold live connections (${live.join(', ')})`);
    const src = { reporter: 'source' };
    const counters = async () => {
      const m = parseProm((await get(app.servers.stats, '/metrics')).body);
      return {
        opened: sumOf(m, 'istio_tcp_connections_opened_total', src),
        received: sumOf(m, 'istio_tcp_received_bytes_total', src),
        sent: sumOf(m, 'istio_tcp_sent_bytes_total', src),
        open: sumOf(m, 'istio_tcp_sockets_open', src),
      };
    };
    const c0 = await counters();
    t.equal(c0.open, live[0]! + live[1]!, 'every live connection is an open source socket');
    const victim = 0;
    const gaps: string[] = [];
    const register = app.readiness.register.bind(app.readiness);
    app.readiness.register = (task: string) => {
      gaps.push(task);
      return register(task);
    };
    await pool.terminateWorker(victim);
    t.same(gaps, [`proxy worker ${victim}`], 'readiness holds a task for the empty slot');
    // Prometheus reads any decrease of a counter as a reset: the dead worker's counts stay
    const c1 = await counters();
    t.same({ opened: c1.opened, received: c1.received, sent: c1.sent }, { opened: c0.opened, received: c0.received, sent: c0.sent }, "no counter lost the dead worker's share");
    t.equal(c1.open, live[1], "the dead worker's sockets are no longer open");

    // the victim's connections are cut; exactly the survivor's remain
    await eventually(() => sockets.filter((s) => !s.destroyed && !s.readableEnded).length === live[1], 'the dead worker connections to close');
    const survivors = sockets.filter((s) => !s.destroyed && !s.readableEnded);
    t.equal(survivors.length, live[1], 'the survivor worker connections are all still open');
    const payload = randomBytes(256 * 1024);
    const hashes = await Promise.all(survivors.map((s) => echoHash(s, payload)));
    t.ok(hashes.every((h) => h === sha(payload)), `${survivors.length} connections moved 256 KiB each both ways intact`);

    await eventually(() => pool.readyCount() === 2 && app.readiness.ready(), 'the replacement worker');
    const c2 = await counters();
    t.ok(c2.opened >= c0.opened && c2.received >= c0.received + survivors.length * payload.length && c2.sent >= c0.sent + survivors.length * payload.length, `counters only went up across the death and the replacement (${JSON.stringify(c0)} → ${JSON.stringify(c2)})`);
    t.equal(c2.open, live[1], 'open sockets: the survivors only');
    t.ok(lines.some((l) => l['msg'] === 'proxy worker died; replacing it' && l['worker'] === victim), 'the death is logged');

    const before = await relaysBySlot(pool);
    t.equal(before[victim], 0, 'the replacement starts with fresh counters');
    const fresh = await openMany(app, 100);
    sockets.push(...fresh);
    const after = await relaysBySlot(pool);
    t.ok(after[victim]! > 0, `the replacement serves new connections (${after[victim]} of 100)`);
    t.equal(after[0]! + after[1]! - before[0]! - before[1]!, 100);
    const again = await Promise.all(fresh.map((s) => echoHash(s, payload.subarray(0, 4096))));
    t.ok(again.every((h) => h === sha(payload.subarray(0, 4096))), 'new connections carry bytes');
    const c3 = await counters();
    t.equal(c3.opened, c2.opened + 100, 'the replacement counts on top of the retained counts');
    t.equal(c3.open, live[1]! + 100);
  });
}
