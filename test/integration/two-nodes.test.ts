/**
 * Two proxies acting as two nodes, in one process (nothing global may leak between them), sharing
 * a plug-in CA: client → SOCKS5 on node A → HBONE (mTLS, HTTP/2 CONNECT) → node B's listener on
 * the server pod IP → authorize → server. Real sockets, real TLS, real HTTP/2, the real app
 * composition (startApp) configured from env maps.
 */
import t from 'tap';
import { createHash } from 'node:crypto';
import { mkdtempSync, renameSync, writeFileSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { once } from 'node:events';
import type * as http2 from 'node:http2';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig } from '../../src/config/config';
import { initCaDir } from '../../src/identity/ca-dir';
import { Logging } from '../../src/logging/logger';
import { startApp, type App } from '../../src/app';
import { loopbackBlock } from '../helpers/loopback';
import { nodeEnv } from '../helpers/mesh-nodes';
import { socksConnect, SocksError } from '../../src/proxy/socks5-client';
import { eventually } from '../helpers/eventually';
import { parseBaggage } from '../../src/proxy/baggage';
import { parseForwarded } from '../../src/proxy/forwarded';
import { parseTraceparent } from '../../src/proxy/traceparent';

const net = loopbackBlock(6, 1);
const CLIENT = net.ip(1);
const DENIED = net.ip(2);
const SERVER = net.ip(11);
const TCPAPP = net.ip(12);
const VIP = net.ip(100);
const OUTSIDE = net.ip(200);

const dir = mkdtempSync(join(tmpdir(), 'ztunnel-2n-'));
const snapshotPath = join(dir, 'snapshot.json');
/** The pool's per-connection stream cap both nodes run with. */
const MAX_STREAMS = 50;

function snapshot(extraPolicies: unknown[] = [], without: string[] = []): string {
  const wl = (name: string, ip: string, node: string, protocol = 'HBONE', services?: unknown) => ({
    uid: `c1//v1/Pod/default/${name}`, name, namespace: 'default', serviceAccount: name, workloadIps: [ip], protocol, node,
    canonicalName: name, workloadName: name, ...(services ? { services } : {}),
  });
  return JSON.stringify({
    workloads: [
      wl('client', CLIENT, 'node-a'),
      wl('denied', DENIED, 'node-a'),
      wl('server', SERVER, 'node-b', 'HBONE', { 'default/server.default.svc.cluster.local': { 80: 8080 } }),
      wl('tcpapp', TCPAPP, 'node-b', 'TCP'),
    ].filter((w) => !without.includes(w.name)),
    services: [{ name: 'server', namespace: 'default', hostname: 'server.default.svc.cluster.local', vips: [`/${VIP}`], ports: { 80: 8080 } }],
    policies: [
      { name: 'deny-denied', namespace: 'default', scope: 'Namespace', action: 'Deny', rules: [[[{ principals: [{ Exact: 'cluster.local/ns/default/sa/denied' }] }]]] },
      ...extraPolicies,
    ],
  });
}

/** Rename-replace, as editors and ConfigMap updates do. */
function writeSnapshot(text: string): void {
  writeFileSync(`${snapshotPath}.tmp`, text);
  renameSync(`${snapshotPath}.tmp`, snapshotPath);
}

interface Node {
  app: App;
  lines: string[];
  socks: { host: string; port: number };
}

async function startNode(name: string, socksIp: string, nativeRelay: string): Promise<Node> {
  // two proxies in one process: admin/stats/readiness on free ports of this file's block
  const env = nodeEnv({ name, ip: socksIp, snapshotPath, caDir: join(dir, 'ca'), nativeRelay: nativeRelay === 'true', env: { POOL_MAX_STREAMS_PER_CONNECTION: String(MAX_STREAMS) } });
  const config = parseConfig(env, { logicalCpus: 2 });
  const lines: string[] = [];
  const logging = new Logging({ ...config.log, destination: { write: (s: string) => void lines.push(s) } });
  const app = await startApp(config, logging);
  await app.data.settled();
  const a = app.data.addresses().get('socks5')!;
  return { app, lines, socks: { host: a.host, port: a.port } };
}

/** Servers: an echo on the server pod, one on the TCP workload, one outside the mesh. */
const accepted = { server: 0 };
const peers: string[] = [];
/**
 * Every CONNECT node B's HBONE server receives, headers as they arrived. The http2 server behind
 * all of B's :15008 listeners is private to HboneServer; its 'stream' event is the one place the
 * raw request headers are visible, and an extra listener there changes nothing for the handler.
 */
function captureConnects(hbone: object): http2.IncomingHttpHeaders[] {
  const seen: http2.IncomingHttpHeaders[] = [];
  (hbone as unknown as { h2: http2.Http2Server }).h2.on('stream', (_s: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => void seen.push(headers));
  return seen;
}

function echoServer(onConn?: (s: Socket) => void): Server {
  return createServer({ allowHalfOpen: true }, (s) => {
    onConn?.(s);
    s.pipe(s);
    s.on('error', () => undefined);
  });
}

function pattern(size: number, seed: number): Buffer {
  const b = Buffer.alloc(Math.ceil(size / 4) * 4);
  for (let i = 0; i < b.length; i += 4) b.writeUInt32LE((i * 2654435761 + seed) >>> 0, i);
  return b.subarray(0, size);
}

/** Writes `total` bytes in `chunk`-sized pieces (respecting backpressure), half-closes, reads all back. */
async function roundTrip(s: Socket, total: number, chunk: number): Promise<{ sent: string; got: string; bytes: number }> {
  const sent = createHash('sha256');
  const got = createHash('sha256');
  let bytes = 0;
  s.on('data', (d: Buffer) => {
    got.update(d);
    bytes += d.length;
  });
  s.resume();
  const ended = once(s, 'end');
  const block = pattern(Math.min(chunk, total), 7);
  for (let off = 0; off < total; off += block.length) {
    const piece = block.subarray(0, Math.min(block.length, total - off));
    sent.update(piece);
    if (!s.write(piece)) await once(s, 'drain');
  }
  s.end();
  await ended;
  return { sent: sent.digest('hex'), got: got.digest('hex'), bytes };
}

t.before(() => initCaDir(join(dir, 'ca')));

// every data-path case runs on both relay engines: the splice addon and the JS copy path
for (const nativeRelay of ['true', 'false']) t.test(`two nodes (ZTUNNEL_NATIVE_RELAY=${nativeRelay})`, async (t) => {
  writeSnapshot(snapshot());
  const servers = [
    echoServer((s) => {
      accepted.server++;
      peers.push(s.remoteAddress ?? '');
    }),
    echoServer(),
    echoServer(),
  ];
  await Promise.all([
    new Promise<void>((r) => servers[0]!.listen(8080, SERVER, r)),
    new Promise<void>((r) => servers[1]!.listen(7000, TCPAPP, r)),
    new Promise<void>((r) => servers[2]!.listen(9000, OUTSIDE, r)),
  ]);
  const a = await startNode('node-a', net.ip(250), nativeRelay);
  const b = await startNode('node-b', net.ip(251), nativeRelay);
  t.equal(a.app.data.native !== null, nativeRelay === 'true', 'the relay engine follows ZTUNNEL_NATIVE_RELAY');
  const connects = captureConnects(b.app.data.hbone);
  t.teardown(async () => {
    await Promise.all([a.app.close(), b.app.close()]);
    for (const s of servers) s.close();
  });
  t.same([...a.app.data.addresses().keys()].sort(), ['hbone ' + CLIENT, 'hbone ' + DENIED, 'socks5'], 'node A listens for its own workloads only');
  t.same([...b.app.data.addresses().keys()].sort(), ['hbone ' + SERVER, 'socks5'], 'node B: no HBONE listener for the TCP workload');

  t.test('64 MiB each way through the service VIP, byte-exact', async (t) => {
    const s = await socksConnect(a.socks, CLIENT, { host: VIP, port: 80 });
    const r = await roundTrip(s, 64 << 20, 256 << 10);
    t.equal(peers[peers.length - 1], CLIENT, 'the app sees the client pod IP as the source, not the proxy');
    t.equal(r.bytes, 64 << 20);
    t.equal(r.got, r.sent, 'sha256 of what came back equals what was sent');
  });

  t.test('tiny writes and the service hostname', async (t) => {
    const s = await socksConnect(a.socks, CLIENT, { host: 'server.default.svc.cluster.local', port: 80 });
    const r = await roundTrip(s, 2000, 1);
    t.equal(r.got, r.sent);
    t.equal(r.bytes, 2000);
  });

  t.test('half-close: the client ends its side, the reply still arrives in full', async (t) => {
    const s = await socksConnect(a.socks, CLIENT, { host: SERVER, port: 8080 });
    const chunks: Buffer[] = [];
    s.on('data', (d: Buffer) => chunks.push(d));
    s.resume();
    s.end('ping-after-which-the-client-half-closes');
    await once(s, 'end');
    t.equal(Buffer.concat(chunks).toString(), 'ping-after-which-the-client-half-closes');
  });

  t.test('the CONNECT node B receives carries the source\'s forwarded, baggage and a W3C traceparent', async (t) => {
    const from = connects.length;
    const s1 = await socksConnect(a.socks, CLIENT, { host: VIP, port: 80 });
    const s2 = await socksConnect(a.socks, CLIENT, { host: SERVER, port: 8080 });
    const ports = [s1.localPort, s2.localPort]; // read before the sockets close
    for (const s of [s1, s2]) t.equal((await roundTrip(s, 1000, 100)).bytes, 1000);
    const [h1, h2] = connects.slice(from);
    t.ok(h1 !== undefined && h2 !== undefined, 'node B saw both CONNECTs');
    t.equal(h1![':method'], 'CONNECT');
    t.equal(h1![':authority'], `${SERVER}:8080`, 'the authority is the chosen endpoint and its target port');
    t.equal(h1!['forwarded'], `for="${CLIENT}:${ports[0]}"`, 'forwarded names the client pod IP and its port');
    t.same(parseForwarded(h2!['forwarded'] as string), [{ for: `${CLIENT}:${ports[1]}` }], 'and per connection');
    t.same(
      parseBaggage(h1!['baggage']),
      { clusterId: 'Kubernetes', namespace: 'default', workloadName: 'client', workloadType: 'deployment', serviceName: 'client' },
      `the source workload's baggage (${String(h1!['baggage'])})`,
    );
    const tp1 = String(h1!['traceparent']);
    const tp2 = String(h2!['traceparent']);
    t.match(tp1, /^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$/, 'traceparent: version 00, 32-hex trace id, 16-hex span id, flags');
    t.ok(parseTraceparent(tp1) !== null && parseTraceparent(tp2) !== null, 'neither id is all zeros');
    t.not(parseTraceparent(tp1)?.traceId, parseTraceparent(tp2)?.traceId, 'a new trace per connection');
  });

  t.test(`200 concurrent connections share pooled HTTP/2 connections, at most ${MAX_STREAMS} streams each`, async (t) => {
    // earlier tunnels must have released their slots, or they would count against the cap
    await eventually(() => a.app.data.client.stats().streams === 0, 'no stream left from earlier tests');
    const N = 200;
    const sockets = await Promise.all(Array.from({ length: N }, () => socksConnect(a.socks, CLIENT, { host: VIP, port: 80 })));
    const stats = a.app.data.client.stats();
    const toB = stats.byConnection.filter((c) => c.streams > 0);
    // a new connection is dialled only when every usable one is full: ceil(N / cap) of them, each full
    t.equal(toB.length, Math.ceil(N / MAX_STREAMS), `${N} streams at a cap of ${MAX_STREAMS}: exactly ${Math.ceil(N / MAX_STREAMS)} connections carry them`);
    t.same(toB.map((c) => c.streams), Array(N / MAX_STREAMS).fill(MAX_STREAMS), 'each of them full');
    t.ok(stats.byConnection.every((c) => c.peakStreams <= MAX_STREAMS), `no connection ever carried more than ${MAX_STREAMS} streams`);
    t.equal(stats.streams, N, 'every tunnel is one stream on a pooled connection');
    const results = await Promise.all(sockets.map((s) => roundTrip(s, 64 << 10, 16 << 10)));
    t.ok(results.every((r) => r.got === r.sent && r.bytes === 64 << 10), 'all 200 byte-exact');
  });

  t.test('denied by policy: the client is told "not allowed" and the server never sees it', async (t) => {
    const before = accepted.server;
    const err = await socksConnect(a.socks, DENIED, { host: VIP, port: 80 }).catch((e: unknown) => e);
    t.ok(err instanceof SocksError && err.reply === 2, 'SOCKS reply 2 (connection not allowed by ruleset)');
    t.equal(accepted.server, before, 'no connection reached the app');
    t.ok(b.lines.some((l) => l.includes('explicitly denied by: default/deny-denied')), 'node B logs the reason');
  });

  t.test('a TCP-protocol workload is reached with plain TCP; a non-mesh destination passes through', async (t) => {
    for (const dst of [{ host: TCPAPP, port: 7000 }, { host: OUTSIDE, port: 9000 }]) {
      const s = await socksConnect(a.socks, CLIENT, dst);
      const r = await roundTrip(s, 4 << 20, 64 << 10);
      t.equal(r.got, r.sent, `${dst.host}:${dst.port}`);
    }
    const used = a.app.data.relayCounts();
    if (nativeRelay === 'true') t.ok(used.splice >= 2 && used.js === 0, `socket legs relayed by splice (${JSON.stringify(used)})`);
    else t.ok(used.splice === 0 && used.js >= 2, `socket legs relayed in JS (${JSON.stringify(used)})`);
  });

  t.test('self-calls and unknown sources are refused', async (t) => {
    const self = await socksConnect(a.socks, CLIENT, { host: '127.0.0.1', port: 15008 }).catch((e: unknown) => e);
    t.ok(self instanceof SocksError && self.reply === 2, 'a call to the proxy port is not allowed');
    const stranger = await socksConnect(a.socks, net.ip(99), { host: VIP, port: 80 }).catch((e: unknown) => e);
    t.ok(stranger instanceof SocksError && stranger.reply === 2, 'a source that is no local workload is refused');
  });

  t.test('a policy change closes a live connection that is now denied', async (t) => {
    const s = await socksConnect(a.socks, CLIENT, { host: VIP, port: 80 });
    s.write('hello');
    s.resume();
    const [echo] = (await once(s, 'data')) as [Buffer];
    t.equal(echo.toString(), 'hello', 'the connection works before the change');
    const errors: string[] = [];
    s.on('error', (e: NodeJS.ErrnoException) => errors.push(e.code ?? e.message));
    // not events.once: it rejects on the 'error' (the reset) we expect before 'close'
    const closed = new Promise((resolve) => s.once('close', resolve));
    const versionBefore = b.app.control.store.current.version;
    writeSnapshot(
      snapshot([{ name: 'deny-client', namespace: 'default', scope: 'Namespace', action: 'Deny', rules: [[[{ principals: [{ Exact: 'cluster.local/ns/default/sa/client' }] }]]] }]),
    );
    await closed;
    t.ok(errors.every((c) => c === 'ECONNRESET'), `the client sees a reset, not a clean end (${errors.join(',') || 'no error'})`);
    t.ok(b.app.control.store.current.version > versionBefore, 'node B reloaded the file');
    t.ok(b.lines.some((l) => l.includes('no longer allowed') && l.includes('deny-client')), 'the close is logged with the deciding policy');
    const again = await socksConnect(a.socks, CLIENT, { host: VIP, port: 80 }).catch((e: unknown) => e);
    t.ok(again instanceof SocksError && again.reply === 2, 'new connections are denied too');
  });

  // last: it removes a workload the other subtests use
  t.test('a local workload leaving the snapshot closes its :15008 listener', async (t) => {
    t.ok(a.app.data.addresses().has('hbone ' + DENIED), 'listening before');
    writeSnapshot(snapshot([], ['denied']));
    await eventually(() => !a.app.data.addresses().has('hbone ' + DENIED), `node A's listener on ${DENIED}:15008 is gone`);
    await a.app.data.settled();
    t.same([...a.app.data.addresses().keys()].sort(), ['hbone ' + CLIENT, 'socks5'], 'the other workload keeps its listener');
    const dial = createConnection({ host: DENIED, port: 15008 });
    const [err] = (await once(dial, 'error').catch((e: unknown) => [e])) as [NodeJS.ErrnoException];
    t.equal(err.code, 'ECONNREFUSED', `dialling ${DENIED}:15008 is refused`);
  });
});
