/**
 * Faults during live transfers (issue 9, "Overload and faults"), end to end on loopback
 * 127.10.3.0/24 with the real app: client → SOCKS5 on node A → HBONE (mTLS, HTTP/2) → node B →
 * app, two proxies in this process sharing a plug-in CA, on both relay engines.
 *  - the app resets mid-stream: that client sees a reset (not a clean EOF), bystanders are intact;
 *  - the app closes its side mid-stream: the FIN reaches the client, the other direction goes on;
 *  - node B dies mid-transfer: its tunnels' clients see a reset, node A stays up and serves, and
 *    once B is back the first new connection works;
 *  - a snapshot swap that keeps everything allowed, certificate rotations (SECRET_TTL shorter than
 *    the 2-minute notBefore backdating makes both nodes re-issue every timer tick), then a swap
 *    that denies half of 200 live transfers: the allowed half completes byte-exact, the denied
 *    half is reset, logged "no longer allowed" and counted with response_flags="DENY";
 *  - a worker thread killed mid-transfer (2 workers): only its connections fail, the survivor's
 *    finish byte-exact, the replacement serves new ones.
 * Every transfer that must complete is checked with sha256.
 */
import t, { type Test as Tap } from 'tap';
import { mkdtempSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initCaDir } from '../../src/identity/ca-dir';
import { socksConnect, SocksError } from '../../src/proxy/socks5-client';
import type { App } from '../../src/app';
import { loopbackBlock } from '../helpers/loopback';
import { eventually } from '../helpers/eventually';
import { parseProm, sumOf } from '../helpers/prom-text';
import { denyPrincipal, echoHash, endingOf, get, pattern, sha, startNode, startWorkerNode, workloadDoc, writeSnapshot, type MeshNode } from '../helpers/mesh-nodes';

const lb = loopbackBlock(10, 3);
const CLIENT = lb.ip(1);
const BATCH = lb.ip(2);
const SERVER = lb.ip(11);
const OUTSIDE = lb.ip(200);
const NODE_A = lb.ip(250);
const NODE_B = lb.ip(251);
const NODE_W = lb.ip(252);
const PORT = { echo: 8080, reset: 8081, fin: 8082, watch: 8083 } as const;

const dir = mkdtempSync(join(tmpdir(), 'ztunnel-faults-'));
const caDir = join(dir, 'ca');

function snapshotText(policies: unknown[] = []): string {
  return JSON.stringify({
    workloads: [workloadDoc('client', CLIENT, 'node-a'), workloadDoc('batch', BATCH, 'node-a'), workloadDoc('server', SERVER, 'node-b')],
    policies,
  });
}

function listen(server: Server, port: number, host: string): Promise<number> {
  return new Promise((r) => server.listen(port, host, () => r((server.address() as { port: number }).port)));
}

function echoApp(): Server {
  return createServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => undefined);
    s.pipe(s);
  });
}

/** Certificate serials of every local workload, to see a rotation happen. */
const serials = (app: App): string => app.control.certs.states().map((c) => c.cert?.serial ?? '').join(',');

t.before(() => initCaDir(caDir));

for (const nativeRelay of [true, false]) {
  t.test(`faults between two nodes (${nativeRelay ? 'splice' : 'JS'} relay)`, (t) => twoNodeFaults(t, nativeRelay));
}
for (const nativeRelay of [true, false]) {
  t.test(`a worker killed mid-transfer (${nativeRelay ? 'splice' : 'JS'} relay)`, (t) => workerKill(t, nativeRelay));
}

async function twoNodeFaults(t: Tap, nativeRelay: boolean): Promise<void> {
  const snapshotPath = join(dir, `snapshot-${nativeRelay}.json`);
  writeSnapshot(snapshotPath, snapshotText());
  // what the "fin" app received from each client, hashed once the client half-closes
  const finReceived: string[] = [];
  const finReply = pattern(300 << 10, 11);
  const watchEndings: string[] = [];
  const apps = {
    echo: echoApp(),
    outside: echoApp(),
    // reads 64 KiB, then answers with a TCP RST
    reset: createServer({ allowHalfOpen: true }, (s) => {
      s.on('error', () => undefined);
      let got = 0;
      s.on('data', (d: Buffer) => {
        got += d.length;
        if (got >= 64 << 10 && !s.destroyed) s.resetAndDestroy();
      });
    }),
    // sends 300 KiB and its FIN at once, then keeps reading until the client's FIN
    // echoes, and records how each connection ended ('end' or the error code)
    watch: createServer({ allowHalfOpen: true }, (s) => {
      let how = '';
      s.on('error', (e: NodeJS.ErrnoException) => void (how ||= e.code ?? e.message));
      s.on('end', () => void (how ||= 'end'));
      s.on('close', () => watchEndings.push(how || 'closed'));
      s.pipe(s);
    }),
    fin: createServer({ allowHalfOpen: true }, (s) => {
      s.on('error', () => undefined);
      const parts: Buffer[] = [];
      s.on('data', (d: Buffer) => parts.push(d));
      s.on('end', () => finReceived.push(sha(Buffer.concat(parts))));
      s.end(finReply);
    }),
  };
  await Promise.all([
    listen(apps.echo, PORT.echo, SERVER),
    listen(apps.reset, PORT.reset, SERVER),
    listen(apps.fin, PORT.fin, SERVER),
    listen(apps.watch, PORT.watch, SERVER),
    listen(apps.outside, PORT.echo, OUTSIDE),
  ]);
  // SECRET_TTL < 2 min: the leaf's half-life is already past at issuance, so every tick re-issues
  const env = { SECRET_TTL: '90s', POOL_MAX_STREAMS_PER_CONNECTION: '50', LOG_LEVEL: 'info' };
  const nodeB = (): Promise<MeshNode> => startNode({ name: 'node-b', ip: NODE_B, snapshotPath, caDir, nativeRelay, env });
  const nodeA = (): Promise<MeshNode> => startNode({ name: 'node-a', ip: NODE_A, snapshotPath, caDir, nativeRelay, env });
  let a = await nodeA();
  let b = await nodeB();
  const sockets: Socket[] = [];
  t.teardown(async () => {
    for (const s of sockets) s.destroy();
    await Promise.all([a.app.close(), b.app.close()]);
    for (const s of Object.values(apps)) s.close();
  });
  t.equal(a.app.data.native !== null, nativeRelay, 'the relay engine follows ZTUNNEL_NATIVE_RELAY');
  const connect = async (src: string, port: number = PORT.echo, host = SERVER): Promise<Socket> => {
    const s = await socksConnect(a.socks, src, { host, port });
    sockets.push(s);
    return s;
  };

  t.test('the app resets mid-stream: that client sees a reset; ten bystanders stay intact', async (t) => {
    const bystanders = await Promise.all(Array.from({ length: 10 }, () => connect(CLIENT)));
    const first = pattern(256 << 10, 1);
    const half = await Promise.all(bystanders.map((s) => echoHash(s, first)));
    t.ok(half.every((h) => h === sha(first)), 'bystanders moved their first 256 KiB');
    const victim = await connect(CLIENT, PORT.reset);
    const ending = endingOf(victim);
    victim.resume();
    victim.write(pattern(256 << 10, 2));
    t.equal(await ending, 'ECONNRESET', 'the reset reaches the client as a reset, not a clean end');
    const second = pattern(1 << 20, 3);
    const rest = await Promise.all(bystanders.map((s) => echoHash(s, second)));
    t.ok(rest.every((h) => h === sha(second)), 'bystanders then moved 1 MiB each, byte-exact');
    const ends = bystanders.map((s) => endingOf(s));
    for (const s of bystanders) s.end();
    t.same(await Promise.all(ends), bystanders.map(() => 'end'), 'and end cleanly');
  });

  t.test('the app closes its side mid-stream: the FIN reaches the client, the client keeps sending', async (t) => {
    const s = await connect(CLIENT, PORT.fin);
    const parts: Buffer[] = [];
    s.on('data', (d: Buffer) => parts.push(d));
    s.resume(); // socksConnect hands the socket over paused
    s.write(pattern(100 << 10, 4));
    await once(s, 'end');
    t.equal(sha(Buffer.concat(parts)), sha(finReply), 'all 300 KiB the app sent before its FIN arrived, then a clean end');
    t.notOk(s.destroyed, 'the client side is still open for writing (half-close, not a close)');
    const more = pattern(400 << 10, 5);
    const before = finReceived.length;
    s.end(more);
    await eventually(() => finReceived.length > before, 'the app to see the client FIN');
    t.equal(finReceived[before], sha(Buffer.concat([pattern(100 << 10, 4), more])), 'the app got every byte sent before and after its own FIN');
  });

  t.test('node B dies mid-transfer: its tunnels are reset, node A stays up, B back = new connections work', async (t) => {
    const live = await Promise.all(Array.from({ length: 20 }, () => connect(CLIENT)));
    const chunk = pattern(128 << 10, 6);
    t.ok((await Promise.all(live.map((s) => echoHash(s, chunk)))).every((h) => h === sha(chunk)), '20 tunnels moving bytes');
    const endings = live.map((s) => endingOf(s));
    // bytes in flight while the node goes away
    for (const s of live) s.write(pattern(1 << 20, 7));
    await b.app.close();
    const how = await Promise.all(endings);
    t.ok(how.every((h) => h === 'ECONNRESET'), `every client of a tunnel through B sees a reset (${[...new Set(how)].join(',')})`);

    t.equal((await get(a.app.servers.readiness, '/healthz/ready')).status, 200, 'node A is still ready');
    const outside = await connect(CLIENT, PORT.echo, OUTSIDE);
    t.equal(await echoHash(outside, chunk), sha(chunk), 'node A still relays (passthrough to a non-mesh address)');
    const refused = await connect(CLIENT).catch((e: unknown) => e);
    t.ok(refused instanceof SocksError, 'while B is down a tunnel to it fails with a SOCKS reply');

    b = await nodeB();
    const fresh = await connect(CLIENT);
    const big = pattern(4 << 20, 8);
    t.equal(await echoHash(fresh, big), sha(big), 'the first new connection once B is back works, 4 MiB byte-exact');
  });

  t.test('node A dies mid-transfer: the apps behind B see a reset, not a clean end', async (t) => {
    const live = await Promise.all(Array.from({ length: 10 }, () => connect(CLIENT, PORT.watch)));
    const chunk = pattern(128 << 10, 9);
    t.ok((await Promise.all(live.map((s) => echoHash(s, chunk)))).every((h) => h === sha(chunk)), '10 tunnels moving bytes');
    const before = watchEndings.length;
    // the clients lose their proxy too; what matters here is the app side
    for (const s of live) s.on('error', () => undefined);
    for (const s of live) s.write(pattern(1 << 20, 10));
    await a.app.close();
    await eventually(() => watchEndings.length >= before + 10, 'the app to see all 10 connections end');
    const how = watchEndings.slice(before);
    t.ok(how.every((h) => h === 'ECONNRESET'), `every app connection of a tunnel from A ends with a reset (${[...new Set(how)].join(',')})`);
    a = await nodeA();
    const fresh = await connect(CLIENT);
    t.equal(await echoHash(fresh, chunk), sha(chunk), 'A back: new connections work');
  });

  t.test('swaps and certificate rotations during 200 transfers; a swap that denies half of them', async (t) => {
    const conns = await Promise.all(Array.from({ length: 200 }, (_v, i) => connect(i % 2 === 0 ? CLIENT : BATCH)));
    const allowed = conns.filter((_s, i) => i % 2 === 0);
    const denied = conns.filter((_s, i) => i % 2 === 1);
    const round = async (set: Socket[], seed: number): Promise<boolean> => {
      const hashes = await Promise.all(set.map((s, i) => echoHash(s, pattern(16 << 10, seed + i))));
      return hashes.every((h, i) => h === sha(pattern(16 << 10, seed + i)));
    };
    t.ok(await round(conns, 100), 'phase 1: all 200 byte-exact');

    const certsBefore = [serials(a.app), serials(b.app)];
    const version = b.app.control.store.current.version;
    writeSnapshot(snapshotPath, snapshotText([denyPrincipal('deny-nobody', 'nobody')]));
    await eventually(() => b.app.control.store.current.version > version && a.app.control.store.current.version > version, 'both nodes to load swap 1');
    await eventually(() => serials(a.app) !== certsBefore[0] && serials(b.app) !== certsBefore[1], 'a certificate rotation on both nodes');
    t.ok(await round(conns, 1000), 'phase 2, after a swap that keeps them allowed and a rotation: all 200 byte-exact');

    const endings = denied.map((s) => endingOf(s));
    const cuts = (): number =>
      b.lines.filter((l) => {
        const o = JSON.parse(l) as { msg?: string; policy?: string };
        return o.msg?.startsWith('connection closed because it is no longer allowed') === true && o.policy === 'default/deny-batch';
      }).length;
    const closedBefore = cuts();
    writeSnapshot(snapshotPath, snapshotText([denyPrincipal('deny-batch', 'batch')]));
    const how = await Promise.all(endings);
    t.ok(how.every((h) => h === 'ECONNRESET'), `the 100 denied transfers are reset (${[...new Set(how)].join(',')})`);
    t.equal(cuts() - closedBefore, 100, 'each cut is logged "no longer allowed" with the deciding policy');
    t.ok(await round(allowed, 5000), 'phase 3: the 100 allowed ones, byte-exact');
    const ends = allowed.map((s) => endingOf(s));
    for (const s of allowed) s.end();
    t.same(await Promise.all(ends), allowed.map(() => 'end'), 'and complete with a clean end');

    const batch = 'spiffe://cluster.local/ns/default/sa/batch';
    await eventually(async () => {
      const m = parseProm((await get(b.app.servers.stats, '/metrics')).body);
      return sumOf(m, 'istio_tcp_connections_closed_total', { reporter: 'destination', source_principal: batch, response_flags: 'DENY' }) === 100;
    }, 'the 100 cuts in the metrics');
    const m = parseProm((await get(b.app.servers.stats, '/metrics')).body);
    t.equal(sumOf(m, 'istio_tcp_connections_closed_total', { reporter: 'destination', source_principal: batch, response_flags: 'DENY' }), 100, 'node B counts the 100 cuts with response_flags="DENY"');
    t.equal(sumOf(m, 'istio_tcp_connections_closed_total', { reporter: 'destination', source_principal: 'spiffe://cluster.local/ns/default/sa/client', response_flags: 'DENY' }), 0, 'and none of the allowed ones');
    const again = await connect(BATCH).catch((e: unknown) => e);
    t.ok(again instanceof SocksError && again.reply === 2, 'a new connection from the denied workload is refused (reply 2)');
  });
}

async function workerKill(t: Tap, nativeRelay: boolean): Promise<void> {
  const snapshotPath = join(dir, `snapshot-w-${nativeRelay}.json`);
  writeSnapshot(snapshotPath, JSON.stringify({ workloads: [workloadDoc('client', CLIENT, 'node-w')] }));
  const echo = echoApp();
  const port = await listen(echo, 0, OUTSIDE);
  const w = await startWorkerNode({ name: 'node-w', ip: NODE_W, snapshotPath, caDir, nativeRelay, env: { ZTUNNEL_WORKER_THREADS: '2', LOG_LEVEL: 'warn' } });
  const sockets: Socket[] = [];
  t.teardown(async () => {
    for (const s of sockets) s.destroy();
    await w.app.close();
    echo.close();
  });
  const pool = w.app.pool;
  if (pool === null) return void t.fail('the addon did not load: no worker pool');
  await eventually(() => w.app.readiness.ready(), 'readiness');
  const open = async (n: number): Promise<Socket[]> => {
    const out = await Promise.all(Array.from({ length: n }, () => socksConnect(w.socks, CLIENT, { host: OUTSIDE, port })));
    for (const s of out) s.on('error', () => undefined);
    sockets.push(...out);
    return out;
  };
  const conns = await open(40);
  const first = pattern(64 << 10, 20);
  t.ok((await Promise.all(conns.map((s) => echoHash(s, first)))).every((h) => h === sha(first)), '40 transfers under way');
  const live = (await pool.stats()).sort((x, y) => x.workerId - y.workerId).map((s) => s.live);
  t.ok(live[0]! > 0 && live[1]! > 0, `both workers hold transfers (${live.join(', ')})`);

  // half of the rest of every transfer is in flight when the worker goes; the other half is
  // written after, so no transfer can complete before the kill
  const rest = pattern(2 << 20, 21);
  const results = conns.map((s) => echoHash(s, rest, rest.subarray(0, 1 << 20)).then((h) => h === sha(rest), () => 'failed' as const));
  await pool.terminateWorker(0);
  for (const s of conns) if (!s.destroyed && s.writable) s.write(rest.subarray(1 << 20));
  const outcome = await Promise.all(results);
  t.equal(outcome.filter((o) => o === 'failed').length, live[0], "exactly the dead worker's transfers failed");
  t.equal(outcome.filter((o) => o === true).length, live[1], "every transfer of the surviving worker completed byte-exact");

  await eventually(() => pool.readyCount() === 2 && w.app.readiness.ready(), 'the replacement worker');
  const fresh = await open(40);
  const again = await Promise.all(fresh.map((s) => echoHash(s, first)));
  t.ok(again.every((h) => h === sha(first)), '40 new connections byte-exact');
  const relays = (await pool.stats()).find((s) => s.workerId === 0)!;
  t.ok(relays.relays.splice + relays.relays.js > 0, `the replacement serves some of them (${relays.relays.splice + relays.relays.js})`);
}
