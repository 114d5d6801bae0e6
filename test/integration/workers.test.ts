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
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig } from '../../src/config/config';
import { initCaDir } from '../../src/identity/ca-dir';
import { Logging } from '../../src/logging/logger';
import { startNodeApp, type NodeApp } from '../../src/app';
import { socksConnect } from '../../src/proxy/socks5-client';
import type { WorkerPool } from '../../src/workers/supervisor';
import { loopbackBlock } from '../helpers/loopback';
import { parseProm, sumOf } from '../helpers/prom-text';
import { eventually } from '../helpers/eventually';
import { echoHash, get, nodeEnv } from '../helpers/mesh-nodes';

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

  t.test('a snapshot swap reaches every worker: new HBONE listener, its certificate, a tunnel through it', async (t) => {
    const server = createServer({ allowHalfOpen: true }, (s) => {
      s.on('error', () => undefined);
      s.pipe(s);
    });
    await new Promise<void>((r) => server.listen(0, SERVER, r));
    t.teardown(() => void server.close());
    const port = (server.address() as { port: number }).port;
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

  // On the splice path the dead worker's relays are stopped by the addon's environment cleanup
  // hook (native/README.md), so their sockets close like the JS ones.
  t.test('a dead worker is replaced; the other one keeps its connections', async (t) => {
    const live = (await pool.stats()).sort((a, b) => a.workerId - b.workerId).map((s) => s.live);
    t.ok(live[0]! > 0 && live[1]! > 0, `both workers hold live connections (${live.join(', ')})`);
    const victim = 0;
    const gaps: string[] = [];
    const register = app.readiness.register.bind(app.readiness);
    app.readiness.register = (task: string) => {
      gaps.push(task);
      return register(task);
    };
    await pool.terminateWorker(victim);
    t.same(gaps, [`proxy worker ${victim}`], 'readiness holds a task for the empty slot');

    // the victim's connections are cut; exactly the survivor's remain
    await eventually(() => sockets.filter((s) => !s.destroyed && !s.readableEnded).length === live[1], 'the dead worker connections to close');
    const survivors = sockets.filter((s) => !s.destroyed && !s.readableEnded);
    t.equal(survivors.length, live[1], 'the survivor worker connections are all still open');
    const payload = randomBytes(256 * 1024);
    const hashes = await Promise.all(survivors.map((s) => echoHash(s, payload)));
    t.ok(hashes.every((h) => h === sha(payload)), `${survivors.length} connections moved 256 KiB each both ways intact`);

    await eventually(() => pool.readyCount() === 2 && app.readiness.ready(), 'the replacement worker');
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
  });
}
