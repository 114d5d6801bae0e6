/**
 * Observability end to end: two proxies (node A: client and denied; node B: server behind a
 * service VIP) built by the real startApp in one process, real connections through A's SOCKS5 and
 * an HBONE tunnel to B. Checks exact Istio metric values from both reporters, the exposition
 * formats, /config_dump against the snapshot and the issued certificates, a run-time log-level
 * change, readiness, and a drain started by POST /quitquitquit.
 */
import t from 'tap';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { createServer, type Server, type Socket } from 'node:net';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { parseConfig } from '../../src/config/config';
import { initCaDir } from '../../src/identity/ca-dir';
import { Logging } from '../../src/logging/logger';
import { startApp, type App } from '../../src/app';
import { socksConnect, SocksError } from '../../src/proxy/socks5-client';
import { loopbackBlock } from '../helpers/loopback';
import { parseProm, select, sumOf, type Sample } from '../helpers/prom-text';
import { eventually } from '../helpers/eventually';
import { nodeEnv, writeSnapshot } from '../helpers/mesh-nodes';

const net = loopbackBlock(8, 1);
const CLIENT = net.ip(1);
const DENIED = net.ip(2);
const SERVER = net.ip(11);
const VIP = net.ip(100);
const HOSTNAME = 'server.default.svc.cluster.local';

const dir = mkdtempSync(join(tmpdir(), 'ztunnel-obs-'));
const snapshotPath = join(dir, 'snapshot.json');
const wl = (name: string, ip: string, node: string, extra: object = {}) => ({
  uid: `c1//v1/Pod/default/${name}`, name, namespace: 'default', serviceAccount: name, workloadIps: [ip], protocol: 'HBONE', node,
  canonicalName: name, canonicalRevision: 'v1', workloadName: name, ...extra,
});
const SNAPSHOT = {
  workloads: [
    wl('server', SERVER, 'node-b', { services: { [`default/${HOSTNAME}`]: { 80: 8080 } } }),
    wl('client', CLIENT, 'node-a'),
    wl('denied', DENIED, 'node-a'),
  ],
  services: [{ name: 'server', namespace: 'default', hostname: HOSTNAME, vips: [`/${VIP}`], ports: { 80: 8080 } }],
  policies: [
    { name: 'deny-denied', namespace: 'default', scope: 'Namespace', action: 'Deny', rules: [[[{ principals: [{ Exact: 'cluster.local/ns/default/sa/denied' }] }]]] },
  ],
};
writeFileSync(snapshotPath, JSON.stringify(SNAPSHOT));

interface Node {
  app: App;
  lines: Record<string, unknown>[];
  socks: { host: string; port: number };
}

async function startNode(name: string, ip: string): Promise<Node> {
  const config = parseConfig(
    nodeEnv({ name, ip, snapshotPath, caDir: join(dir, 'ca'), nativeRelay: true, env: { CONNECTION_TERMINATION_DEADLINE: '20s' } }),
    { logicalCpus: 2 },
  );
  const lines: Record<string, unknown>[] = [];
  const logging = new Logging({ ...config.log, destination: { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) } });
  const app = await startApp(config, logging);
  await app.data.settled();
  const a = app.data.addresses().get('socks5')!;
  return { app, lines, socks: { host: a.host, port: a.port } };
}

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

/** Raw HTTP (no transparent decompression, unlike fetch). */
function http(addr: { host: string; port: number }, path: string, opts: { method?: string; headers?: Record<string, string> } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request({ host: addr.host, port: addr.port, path, method: opts.method ?? 'GET', headers: opts.headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
    });
    req.on('error', reject);
    req.end();
  });
}

async function scrape(n: Node): Promise<Sample[]> {
  const r = await http(n.app.servers.stats, '/metrics');
  return parseProm(r.body.toString());
}


/** Writes `bytes` and reads exactly as many back (the far end echoes). */
async function exchange(s: Socket, bytes: number): Promise<void> {
  let got = 0;
  const done = new Promise<void>((resolve) => {
    const onData = (d: Buffer): void => {
      got += d.length;
      if (got >= bytes) {
        s.off('data', onData);
        resolve();
      }
    };
    s.on('data', onData);
  });
  s.resume();
  s.write(Buffer.alloc(bytes, 7));
  await done;
  s.pause();
}

/** Half-closes and reads everything until the far end closes too; returns the bytes read. */
async function finish(s: Socket): Promise<number> {
  let got = 0;
  s.on('data', (d: Buffer) => (got += d.length));
  s.resume();
  const ended = once(s, 'end');
  s.end();
  await ended;
  return got;
}

const access = (n: Node, match: Record<string, unknown>): Record<string, unknown>[] =>
  n.lines.filter((l) => l['target'] === 'access' && Object.entries(match).every(([k, v]) => (v instanceof RegExp ? v.test(String(l[k])) : l[k] === v)));

t.before(() => initCaDir(join(dir, 'ca')));

t.test('observability across two proxies', async (t) => {
  const echo: Server = createServer({ allowHalfOpen: true }, (s) => {
    s.pipe(s);
    s.on('error', () => undefined);
  });
  await new Promise<void>((r) => echo.listen(8080, SERVER, r));
  const a = await startNode('node-a', net.ip(250));
  const b = await startNode('node-b', net.ip(251));
  t.teardown(async () => {
    await Promise.all([a.app.close(), b.app.close()]);
    echo.close();
  });

  t.test('readiness: 200 ready once the snapshot, certificates and listeners are up', async (t) => {
    for (const n of [a, b]) {
      await eventually(async () => (await http(n.app.servers.readiness, '/healthz/ready')).status === 200, 'readiness');
      const r = await http(n.app.servers.readiness, '/healthz/ready');
      t.same([r.status, r.body.toString()], [200, 'ready\n']);
    }
  });

  t.test('one connection: exact counts from both reporters, bytes visible while it is open', async (t) => {
    const src = { reporter: 'source', source_workload: 'client' };
    const dst = { reporter: 'destination', source_workload: 'client' };
    const s = await socksConnect(a.socks, CLIENT, { host: VIP, port: 80 });
    await exchange(s, 3000);
    // the HBONE legs relay in JS, which counts a chunk before forwarding it: the echo is home, so
    // every counter on the way has seen the 3000 bytes both ways
    let sa = await scrape(a);
    let sb = await scrape(b);
    t.equal(sumOf(sa, 'istio_tcp_received_bytes_total', src), 3000, 'source: request bytes while open');
    t.equal(sumOf(sa, 'istio_tcp_sent_bytes_total', src), 3000, 'source: response bytes while open');
    t.equal(sumOf(sb, 'istio_tcp_received_bytes_total', dst), 3000, 'destination: request bytes while open');
    t.equal(sumOf(sb, 'istio_tcp_sent_bytes_total', dst), 3000, 'destination: response bytes while open');
    t.equal(sumOf(sa, 'istio_tcp_sockets_open', { reporter: 'source' }), 1);
    t.equal(sumOf(sb, 'istio_tcp_sockets_open', { reporter: 'destination' }), 1);
    t.equal(sumOf(sa, 'istio_tcp_connections_closed_total', src), 0, 'not closed yet');

    await exchange(s, 2000);
    t.equal(await finish(s), 0, 'nothing more after the half-close');
    await eventually(async () => sumOf(await scrape(a), 'istio_tcp_connections_closed_total', src) > 0, 'source close');
    await eventually(async () => sumOf(await scrape(b), 'istio_tcp_connections_closed_total', dst) > 0, 'destination close');
    sa = await scrape(a);
    sb = await scrape(b);
    for (const [samples, match, who] of [[sa, src, 'source'], [sb, dst, 'destination']] as const) {
      t.equal(sumOf(samples, 'istio_tcp_connections_opened_total', match), 1, `${who}: 1 opened`);
      t.equal(sumOf(samples, 'istio_tcp_connections_closed_total', { ...match, response_flags: '-' }), 1, `${who}: 1 closed cleanly`);
      t.equal(sumOf(samples, 'istio_tcp_connections_failed_total', match), 0, `${who}: no failure`);
      t.equal(sumOf(samples, 'istio_tcp_received_bytes_total', match), 5000, `${who}: 5000 bytes client → server`);
      t.equal(sumOf(samples, 'istio_tcp_sent_bytes_total', match), 5000, `${who}: 5000 bytes server → client`);
      t.equal(sumOf(samples, 'istio_tcp_sockets_open', { reporter: match.reporter }), 0, `${who}: nothing open`);
    }
    const [series] = select(sa, 'istio_tcp_connections_opened_total', src);
    t.match(series?.labels, {
      source_workload_namespace: 'default',
      source_principal: 'spiffe://cluster.local/ns/default/sa/client',
      source_canonical_service: 'client',
      source_canonical_revision: 'v1',
      source_cluster: 'Kubernetes',
      destination_service: HOSTNAME,
      destination_service_name: 'server',
      destination_service_namespace: 'default',
      destination_workload: 'server',
      destination_principal: 'spiffe://cluster.local/ns/default/sa/server',
      request_protocol: 'tcp',
      response_flags: '-',
      connection_security_policy: 'mutual_tls',
    });
    const [inbound] = select(sb, 'istio_tcp_connections_opened_total', dst);
    t.match(inbound?.labels, { source_principal: 'spiffe://cluster.local/ns/default/sa/client', destination_service: HOSTNAME, destination_workload: 'server' });

    const outLog = access(a, { msg: 'connection complete', direction: 'outbound', 'src.workload': 'client' });
    t.equal(outLog.length, 1, 'one access line at close on the source');
    t.match(outLog[0], {
      level: 30, 'src.addr': new RegExp(`^${CLIENT}:\\d+$`), 'src.identity': 'spiffe://cluster.local/ns/default/sa/client',
      'dst.addr': `${SERVER}:15008`, 'dst.hbone_addr': `${SERVER}:8080`, 'dst.service': HOSTNAME, 'dst.workload': 'server',
      'dst.identity': 'spiffe://cluster.local/ns/default/sa/server', bytes_sent: 5000, bytes_recv: 5000, duration: /^\d+ms$/,
    });
    const inLog = access(b, { msg: 'connection complete', direction: 'inbound', 'src.workload': 'client' });
    t.equal(inLog.length, 1, 'one access line at close on the destination');
    // as ztunnel: where the client connected (the HBONE port) is dst.addr, the CONNECT target dst.hbone_addr
    t.match(inLog[0], { 'dst.addr': `${SERVER}:15008`, 'dst.hbone_addr': `${SERVER}:8080`, 'dst.identity': 'spiffe://cluster.local/ns/default/sa/server', 'src.namespace': 'default', bytes_sent: 5000, bytes_recv: 5000 });
  });

  t.test('a denied connection is counted failed with DENY by both reporters', async (t) => {
    const err = await socksConnect(a.socks, DENIED, { host: VIP, port: 80 }).catch((e: unknown) => e);
    t.ok(err instanceof SocksError && err.reply === 2, 'the client is told "not allowed"');
    const src = { reporter: 'source', source_workload: 'denied' };
    const dst = { reporter: 'destination', source_principal: 'spiffe://cluster.local/ns/default/sa/denied' };
    await eventually(async () => sumOf(await scrape(a), 'istio_tcp_connections_failed_total', src) > 0, 'source failure');
    await eventually(async () => sumOf(await scrape(b), 'istio_tcp_connections_failed_total', dst) > 0, 'destination failure');
    const sa = await scrape(a);
    const sb = await scrape(b);
    t.equal(sumOf(sa, 'istio_tcp_connections_failed_total', { ...src, response_flags: 'DENY' }), 1, 'source: failed{DENY} = 1');
    t.equal(sumOf(sa, 'istio_tcp_connections_failed_total', src), 1, 'source: no other failure');
    t.equal(sumOf(sa, 'istio_tcp_connections_closed_total', { ...src, response_flags: 'DENY' }), 1);
    t.equal(sumOf(sa, 'istio_tcp_connections_opened_total', src), 1);
    t.equal(sumOf(sb, 'istio_tcp_connections_failed_total', { ...dst, response_flags: 'DENY' }), 1, 'destination: failed{DENY} = 1');
    t.equal(sumOf(sb, 'istio_tcp_connections_failed_total', dst), 1);
    t.equal(sumOf(sb, 'istio_tcp_received_bytes_total', dst), 0, 'no byte crossed');
    t.match(access(a, { direction: 'outbound', 'src.workload': 'denied' })[0], { level: 50, msg: 'connection complete', error: /401/ });
    t.match(access(b, { direction: 'inbound', 'src.identity': 'spiffe://cluster.local/ns/default/sa/denied' })[0], { level: 50, error: /denied by policy/ });
  });

  t.test('exposition: /stats/prometheus, OpenMetrics when asked, gzip when allowed', async (t) => {
    const plain = await http(a.app.servers.stats, '/stats/prometheus');
    t.equal(plain.status, 200);
    t.match(plain.headers['content-type'], /^text\/plain; version=0\.0\.4/);
    t.match(plain.body.toString(), /^# TYPE istio_tcp_connections_opened_total counter$/m);
    t.match(plain.body.toString(), /^istio_build\{component="ztunnel",tag="\d+\.\d+\.\d+"\} 1$/m);
    const om = await http(a.app.servers.stats, '/metrics', { headers: { accept: 'application/openmetrics-text;version=1.0.0', 'accept-encoding': 'gzip' } });
    t.equal(om.headers['content-encoding'], 'gzip');
    t.match(om.headers['content-type'], /^application\/openmetrics-text; version=1\.0\.0/);
    const text = gunzipSync(om.body).toString();
    t.match(text, /^# TYPE istio_tcp_connections_opened counter$/m);
    t.match(text, /^istio_tcp_connections_opened_total\{reporter="source"/m);
    t.match(text, /^process_open_fds \d+$/m);
    t.ok(text.endsWith('# EOF\n'));
    t.equal((await http(a.app.servers.stats, '/nope')).status, 404);
  });

  t.test('config_dump: the snapshot, the issued certificates, live connections, never a key', async (t) => {
    const s = await socksConnect(a.socks, CLIENT, { host: VIP, port: 80 });
    await exchange(s, 10);
    const rb = await http(b.app.servers.admin, '/config_dump');
    const ra = await http(a.app.servers.admin, '/config_dump');
    t.equal(rb.status, 200);
    t.match(rb.headers['content-type'], /application\/json/);
    const dump = JSON.parse(rb.body.toString()) as Record<string, any>;
    t.same(dump.workloads.map((w: { uid: string }) => w.uid), SNAPSHOT.workloads.map((w) => w.uid).sort(), 'every workload, sorted by uid');
    t.match(dump.workloads.find((w: { name: string }) => w.name === 'server'), { workloadIps: [SERVER], protocol: 'HBONE', node: 'node-b' });
    t.equal(dump.services.length, 1);
    t.match(dump.services[0], { hostname: HOSTNAME, vips: [`/${VIP}`], ports: { 80: 8080 } });
    t.same(Object.keys(dump.services[0].endpoints), ['c1//v1/Pod/default/server']);
    t.same(dump.policies.map((p: { name: string }) => p.name), ['deny-denied']);
    t.equal(dump.config.numWorkerThreads, b.app.config.numWorkerThreads, 'jq .config.numWorkerThreads');
    t.equal(dump.config.localNode, 'node-b');
    t.match(dump.version, { version: /^\d+\.\d+\.\d+$/ });

    const id = { trustDomain: 'cluster.local', namespace: 'default', serviceAccount: 'server' };
    const cert = b.app.control.certs.get(id)!;
    t.ok(cert, 'node B holds a certificate for the server');
    t.same(dump.certificates.map((c: { identity: string }) => c.identity), ['spiffe://cluster.local/ns/default/sa/server'], 'certificates of local workloads only');
    const c = dump.certificates[0];
    t.equal(c.state, 'Available');
    t.equal(c.certChain.length, 1 + cert.chainPem.length, 'leaf and intermediates');
    const leaf = c.certChain[0];
    t.equal(Buffer.from(leaf.pem, 'base64').toString(), cert.certPem, 'the leaf PEM, base64 as ztunnel dumps it');
    t.equal(leaf.serialNumber, BigInt(`0x${cert.serial}`).toString(10), 'serial number (decimal)');
    t.equal(leaf.validFrom, cert.notBefore.toISOString().replace(/\.\d+Z$/, 'Z'));
    t.equal(leaf.expirationTime, cert.notAfter.toISOString().replace(/\.\d+Z$/, 'Z'));
    t.same(c.rootCerts.map((r: { pem: string }) => Buffer.from(r.pem, 'base64').toString()), cert.rootsPem, 'the trust roots');

    const raw = rb.body.toString() + ra.body.toString();
    const decoded = [...raw.matchAll(/"pem": "([A-Za-z0-9+/=]+)"/g)].map((m) => Buffer.from(m[1]!, 'base64').toString());
    t.ok(decoded.length >= 2, 'certificate PEMs found');
    t.notOk(raw.includes('PRIVATE KEY'), 'no private key in the dump');
    t.notOk(decoded.some((p) => p.includes('PRIVATE KEY')), 'no private key inside the encoded PEMs either');
    const keyBody = cert.keyPem.split('\n').filter((l) => l && !l.startsWith('-----')).join('');
    t.notOk(raw.includes(keyBody.slice(0, 40)) || decoded.some((p) => p.replace(/\n/g, '').includes(keyBody.slice(0, 40))), 'the key material appears nowhere');

    t.match(dump.connections.inbound, [{ src: new RegExp(`^${CLIENT}:\\d+$`), originalDst: HOSTNAME, actualDst: `${SERVER}:8080`, protocol: 'HBONE' }]);
    t.same(dump.connections.outbound, []);
    const dumpA = JSON.parse(ra.body.toString()) as Record<string, any>;
    t.match(dumpA.connections.outbound, [{ src: new RegExp(`^${CLIENT}:\\d+$`), originalDst: `${VIP}:80`, actualDst: `${SERVER}:8080`, protocol: 'HBONE' }]);
    t.same(dumpA.certificates.map((x: { identity: string }) => x.identity), ['spiffe://cluster.local/ns/default/sa/client', 'spiffe://cluster.local/ns/default/sa/denied']);
    await finish(s);
  });

  t.test('a log level changed at run time is observed', async (t) => {
    const opened = (): number => access(a, { msg: 'connection opened' }).length;
    const completed = (): number => access(a, { msg: 'connection complete', direction: 'outbound' }).length;
    t.equal(opened(), 0, 'debug access lines are off at the default level');
    const set = await http(a.app.servers.admin, '/logging?level=access=debug', { method: 'POST' });
    t.same([set.status, set.body.toString()], [200, 'current log level is info,access=debug\n']);
    let before = completed();
    await finish(await socksConnect(a.socks, CLIENT, { host: VIP, port: 80 }));
    await eventually(() => completed() > before, 'the access line of the connection');
    t.equal(opened(), 1, '"connection opened" now logged');
    t.match(access(a, { msg: 'connection opened' })[0], { level: 20, direction: 'outbound', 'dst.service': HOSTNAME });

    const reset = await http(a.app.servers.admin, '/logging?level=info', { method: 'POST' });
    t.equal(reset.body.toString(), 'current log level is info\n');
    before = completed();
    await finish(await socksConnect(a.socks, CLIENT, { host: VIP, port: 80 }));
    await eventually(() => completed() > before, 'the access line of the connection');
    t.equal(opened(), 1, 'off again');
    const wrong = await http(a.app.servers.admin, '/logging');
    t.equal(wrong.status, 405, 'GET /logging is the wrong method');
    t.match(wrong.body.toString(), /usage: POST \/logging/);
  });

  t.test('control-plane and pool metrics follow the live store, certificates and HBONE pool', async (t) => {
    // snapshot version: the store's own number, on both nodes
    for (const n of [a, b]) t.equal(sumOf(await scrape(n), 'ztunnel_snapshot_version'), n.app.control.store.current.version, 'ztunnel_snapshot_version = the version in force');

    // certificate expiry: each local identity's notAfter, in Unix seconds
    for (const [n, sas] of [[a, ['client', 'denied']], [b, ['server']]] as const) {
      const samples = await scrape(n);
      t.equal(select(samples, 'istio_cert_expiry_seconds').length, sas.length, 'one series per local identity');
      for (const sa of sas) {
        const cert = n.app.control.certs.get({ trustDomain: 'cluster.local', namespace: 'default', serviceAccount: sa });
        t.ok(cert, `a certificate for ${sa}`);
        t.equal(sumOf(samples, 'istio_cert_expiry_seconds', { identity: `spiffe://cluster.local/ns/default/sa/${sa}` }), Math.floor(cert!.notAfter.getTime() / 1000), `${sa}: notAfter`);
      }
    }

    // the HBONE pool: a pooled connection and a stream while a tunnel is open
    const s = await socksConnect(a.socks, CLIENT, { host: VIP, port: 80 });
    await exchange(s, 10);
    const open = await scrape(a);
    t.ok(sumOf(open, 'ztunnel_pool_connections') >= 1, `ztunnel_pool_connections ${sumOf(open, 'ztunnel_pool_connections')} >= 1 while a tunnel is open`);
    t.ok(sumOf(open, 'ztunnel_pool_streams') >= 1, 'and at least one stream on it');
    await finish(s);
    await eventually(async () => sumOf(await scrape(a), 'ztunnel_pool_streams') === 0, 'the stream to end');

    // a bad snapshot file: counted once on each node, the last good snapshot stays in force
    const before = await Promise.all([a, b].map(async (n) => ({ version: n.app.control.store.current.version, failures: sumOf(await scrape(n), 'ztunnel_snapshot_reload_failures_total') })));
    t.same(before.map((x) => x.failures), [0, 0], 'no failure yet');
    writeSnapshot(snapshotPath, '{"workloads": [ not json');
    for (const [i, n] of [a, b].entries()) {
      await eventually(async () => sumOf(await scrape(n), 'ztunnel_snapshot_reload_failures_total') > 0, 'the reload failure');
      const samples = await scrape(n);
      t.equal(sumOf(samples, 'ztunnel_snapshot_reload_failures_total'), 1, 'ztunnel_snapshot_reload_failures_total = 1');
      t.equal(sumOf(samples, 'ztunnel_snapshot_version'), before[i]!.version, 'the version in force did not move');
      t.equal(n.app.control.store.current.version, before[i]!.version);
    }
    writeSnapshot(snapshotPath, JSON.stringify(SNAPSHOT));
    for (const [i, n] of [a, b].entries()) {
      await eventually(() => n.app.control.store.current.version > before[i]!.version, 'the good snapshot again');
      const samples = await scrape(n);
      t.equal(sumOf(samples, 'ztunnel_snapshot_version'), n.app.control.store.current.version, 'the version metric follows the reload');
      t.equal(sumOf(samples, 'ztunnel_snapshot_reload_failures_total'), 1, 'a counter: the failure stays counted');
    }
  });

  t.test('POST /quitquitquit: not ready, no new connections, the live one finishes, then the app closes', async (t) => {
    const s = await socksConnect(a.socks, CLIENT, { host: VIP, port: 80 });
    await exchange(s, 100);
    const quit = await http(a.app.servers.admin, '/quitquitquit', { method: 'POST' });
    t.same([quit.status, quit.body.toString()], [200, 'shutdown now\n']);
    const ready = await http(a.app.servers.readiness, '/healthz/ready');
    t.same([ready.status, ready.body.toString()], [500, 'not ready, pending: draining\n']);
    const refused = await socksConnect(a.socks, CLIENT, { host: VIP, port: 80 }).catch((e: NodeJS.ErrnoException) => e);
    t.equal((refused as NodeJS.ErrnoException).code, 'ECONNREFUSED', 'the SOCKS5 listener stopped accepting');
    await exchange(s, 100_000);
    t.equal(await finish(s), 0);
    await a.app.closed;
    t.ok(access(a, { msg: 'connection complete', bytes_sent: 100_100 }).length === 1, 'the live connection completed with every byte');
    t.notOk(a.lines.some((l) => String(l['msg']).startsWith('drain deadline reached')), 'it finished before the deadline');
  });
});
