/**
 * Real TLS on loopback between a server and a client built from src/tls/contexts.ts: the HBONE
 * handshake (TLS 1.3, AES-GCM, ALPN h2, no SNI, SPIFFE identities both ways) and each refusal.
 * Every attempt gets its own listener address and TlsContexts, so outcomes never cross.
 */
import t from 'tap';
import * as net from 'node:net';
import * as tls from 'node:tls';
import * as http2 from 'node:http2';
import { loopbackBlock } from '../helpers/loopback';
import { LocalCa } from '../../src/identity/ca';
import { formatSpiffe, parseSpiffe, type Identity } from '../../src/identity/spiffe';
import type { WorkloadCert } from '../../src/identity/workload-cert';
import { HBONE_CIPHERS, TlsContexts, serverTlsOptions } from '../../src/tls/contexts';
import { checkClientIdentity, peerIdentity } from '../../src/tls/peer';
import { makeCert, removeDir, writeCaFolder } from '../unit/identity/ca-fixtures';

const lb = loopbackBlock(3, 1);
const HOUR = 3600_000;
const SLEEP: Identity = { trustDomain: 'cluster.local', namespace: 'default', serviceAccount: 'sleep' };
const API: Identity = { trustDomain: 'cluster.local', namespace: 'prod', serviceAccount: 'api' };
const FOREIGN: Identity = { trustDomain: 'other.example', namespace: 'default', serviceAccount: 'sleep' };

type ServerOutcome =
  | { kind: 'secure'; peer: string; servername: string | false | null; protocol: string | null; cipher: string; alpn: string | false | null }
  | { kind: 'rejected'; code: string; message: string };

interface ClientOutcome {
  secure: boolean;
  error: string | null;
  data: string;
  peer: Identity | null;
  alpn: string | false | null;
  protocol: string | null;
  cipher: string | null;
  serial: string | null;
}

let nextHost = 10;

/** A one-connection HBONE server: greets a verified client with its identity as seen by the server, then echoes. */
async function hboneServer(t: tap.Test, cert: () => WorkloadCert) {
  let settle!: (o: ServerOutcome) => void;
  const outcome = new Promise<ServerOutcome>((r) => (settle = r));
  const contexts = new TlsContexts({
    server: {
      onSecureConnection(sock, peer) {
        settle({
          kind: 'secure',
          peer: formatSpiffe(peer),
          servername: sock.servername,
          protocol: sock.getProtocol(),
          cipher: sock.getCipher().name,
          alpn: sock.alpnProtocol,
        });
        sock.write(formatSpiffe(peer) + '\n');
        sock.pipe(sock);
      },
      onClientRejected(err) {
        settle({ kind: 'rejected', code: err.code, message: err.message });
      },
    },
  });
  const host = lb.ip(nextHost++);
  const server = net.createServer((raw) => contexts.accept(raw, cert()));
  await new Promise<void>((r) => server.listen(0, host, r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  return { host, port: (server.address() as net.AddressInfo).port, outcome, contexts };
}

interface Conn {
  readonly socket: tls.TLSSocket;
  readonly out: ClientOutcome;
  /** Resolves on close with everything the client saw. */
  readonly done: Promise<ClientOutcome>;
}

/** Connects; unless keepOpen, ends after the greeting line. */
function open(opts: tls.ConnectionOptions, host: string, port: number, keepOpen = false): Conn {
  const out: ClientOutcome = { secure: false, error: null, data: '', peer: null, alpn: null, protocol: null, cipher: null, serial: null };
  const socket = tls.connect({ ...opts, host, port });
  const done = new Promise<ClientOutcome>((resolve) => {
    socket.on('secureConnect', () => {
      out.secure = true;
      out.peer = peerIdentity(socket);
      out.alpn = socket.alpnProtocol;
      out.protocol = socket.getProtocol();
      out.cipher = socket.getCipher().name;
      out.serial = socket.getPeerCertificate().serialNumber?.toLowerCase() ?? null;
    });
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => {
      out.data += d;
      if (!keepOpen && out.data.includes('\n')) socket.end();
    });
    socket.on('error', (e: NodeJS.ErrnoException) => (out.error ??= e.code ?? e.message));
    socket.on('close', () => resolve(out));
  });
  return { socket, out, done };
}

function connect(opts: tls.ConnectionOptions, host: string, port: number): Promise<ClientOutcome> {
  return open(opts, host, port).done;
}

/** Resolves once the data received so far satisfies `pred`, or the connection closed. */
function untilData(c: Conn, pred: (data: string) => boolean): Promise<void> {
  return new Promise((resolve) => {
    if (pred(c.out.data) || c.socket.destroyed) return resolve();
    const onData = (): void => {
      if (pred(c.out.data)) finish();
    };
    const finish = (): void => {
      c.socket.off('data', onData);
      c.socket.off('close', finish);
      resolve();
    };
    c.socket.on('data', onData);
    c.socket.on('close', finish);
  });
}

t.test('HBONE TLS', async (t) => {
  const ca = await LocalCa.generate();
  const otherCa = await LocalCa.generate({ organization: 'other' });
  const now = Date.now();
  const serverCert = await ca.sign(API, HOUR);
  const clientCert = await ca.sign(SLEEP, HOUR);
  const foreignCert = await ca.sign(FOREIGN, HOUR);
  const expiredCert = await ca.sign(SLEEP, HOUR, now - 3 * HOUR);
  const otherCaClient = await otherCa.sign(SLEEP, HOUR);
  const otherCaServer = await otherCa.sign(API, HOUR);
  const client = new TlsContexts();
  const ctxWith = (c: WorkloadCert | null, roots: readonly string[], extra: tls.SecureContextOptions = {}) =>
    tls.createSecureContext({
      ...(c ? { key: c.keyPem, cert: [c.certPem, ...c.chainPem].join('') } : {}),
      ca: [...roots],
      minVersion: 'TLSv1.3',
      ...extra,
    });

  t.test('handshake: TLS 1.3, AES-GCM, h2, no SNI, identities both ways', async (t) => {
    const s = await hboneServer(t, () => serverCert);
    const c = await connect(client.clientTlsOptions(clientCert, [SLEEP, API]), s.host, s.port);
    const o = await s.outcome;
    t.equal(c.error, null);
    t.ok(c.secure);
    t.same(c.peer, API, 'client sees the server identity');
    t.equal(c.alpn, 'h2');
    t.equal(c.protocol, 'TLSv1.3');
    t.ok(HBONE_CIPHERS.split(':').includes(c.cipher!), `cipher ${c.cipher} is AES-GCM`);
    t.equal(c.serial, serverCert.serial);
    t.equal(c.data, formatSpiffe(SLEEP) + '\n', 'server greeted the client by its identity');
    t.same(o, { kind: 'secure', peer: formatSpiffe(SLEEP), servername: false, protocol: 'TLSv1.3', cipher: c.cipher, alpn: 'h2' });
  });

  const refusals: [string, () => tls.ConnectionOptions, string, RegExp][] = [
    [
      'client cert from another CA',
      () => ({ ...client.clientTlsOptions(clientCert, [API]), secureContext: ctxWith(otherCaClient, serverCert.rootsPem) }),
      'ERR_TLS_PEER_UNVERIFIED',
      /client certificate rejected: \w+/,
    ],
    ['no client cert', () => ({ ...client.clientTlsOptions(clientCert, [API]), secureContext: ctxWith(null, serverCert.rootsPem) }), 'ERR_TLS_NO_PEER_CERT', /no certificate/],
    ['client of another trust domain', () => client.clientTlsOptions(foreignCert, [API]), 'ERR_TLS_TRUST_DOMAIN', /other\.example.*not in trust domain cluster\.local/],
    ['expired client cert', () => client.clientTlsOptions(expiredCert, [API]), 'ERR_TLS_PEER_UNVERIFIED', /CERT_HAS_EXPIRED/],
    [
      'TLS 1.2-only client',
      () => ({ ...client.clientTlsOptions(clientCert, [API]), secureContext: ctxWith(clientCert, serverCert.rootsPem, { minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2' }) }),
      'ERR_TLS_HANDSHAKE',
      /unsupported protocol/,
    ],
    [
      'client offering only ChaCha20',
      () => ({ ...client.clientTlsOptions(clientCert, [API]), secureContext: ctxWith(clientCert, serverCert.rootsPem, { ciphers: 'TLS_CHACHA20_POLY1305_SHA256' }) }),
      'ERR_TLS_HANDSHAKE',
      /no shared cipher/,
    ],
    ['client without ALPN', () => ({ ...client.clientTlsOptions(clientCert, [API]), ALPNProtocols: [] }), 'ERR_TLS_ALPN', /did not negotiate ALPN h2/],
    ['client offering http/1.1 only', () => ({ ...client.clientTlsOptions(clientCert, [API]), ALPNProtocols: ['http/1.1'] }), 'ERR_TLS_HANDSHAKE', /no application protocol/],
  ];
  for (const [label, opts, code, re] of refusals) {
    t.test(`server refuses: ${label}`, async (t) => {
      const s = await hboneServer(t, () => serverCert);
      const c = await connect(opts(), s.host, s.port);
      const o = await s.outcome;
      t.equal(o.kind, 'rejected', 'refused by the server');
      if (o.kind === 'rejected') {
        t.equal(o.code, code);
        t.match(o.message, re);
      }
      t.equal(c.data, '', 'the client got no data');
    });
  }

  t.test('client refuses a server whose identity is not expected', async (t) => {
    const s = await hboneServer(t, () => serverCert);
    const c = await connect(client.clientTlsOptions(clientCert, [SLEEP]), s.host, s.port);
    t.equal(c.error, 'ERR_TLS_SAN_MISMATCH');
    t.notOk(c.secure, 'never reported as connected');
    t.equal(c.data, '');
  });

  t.test('client refuses a server from another CA', async (t) => {
    const s = await hboneServer(t, () => otherCaServer);
    const c = await connect(client.clientTlsOptions(clientCert, [API]), s.host, s.port);
    t.notOk(c.secure);
    t.ok(c.error, `error ${c.error}`);
    t.not(c.error, 'ERR_TLS_SAN_MISMATCH', 'the chain check fails first');
  });

  t.test('rotation: new connections get the new cert, established ones keep going', async (t) => {
    let current = serverCert;
    const s = await hboneServer(t, () => current);
    const first = open(client.clientTlsOptions(clientCert, [API]), s.host, s.port, true);
    await untilData(first, (d) => d.includes('\n'));
    current = await ca.sign(API, HOUR);
    const second = await connect(client.clientTlsOptions(clientCert, [API]), s.host, s.port);
    t.equal(second.serial, current.serial, 'new connection: new cert');
    t.not(second.serial, serverCert.serial);
    first.socket.write('still here\n');
    await untilData(first, (d) => d.endsWith('still here\n'));
    first.socket.end();
    const f = await first.done;
    t.equal(f.serial, serverCert.serial, 'old connection: old cert');
    t.match(f.data, /still here\n$/, 'old connection still echoes');
  });

  t.test('a plug-in CA with an intermediate: the chain is sent, peers trust the root only', async (t) => {
    const root = await makeCert({ name: 'O=Istio, CN=Root CA', keyAlg: 'rsa' });
    const inter = await makeCert({ name: 'O=Istio, CN=Intermediate CA', issuer: root });
    const dir = await writeCaFolder({ caCert: inter.certPem, caKey: inter.keyPem, rootCert: root.certPem, certChain: inter.certPem + root.certPem });
    t.teardown(() => removeDir(dir));
    const plug = await LocalCa.load(dir);
    const sc = await plug.sign(API, HOUR);
    const cc = await plug.sign(SLEEP, HOUR);
    t.equal(sc.rootsPem.length, 1);
    const s = await hboneServer(t, () => sc);
    const c = await connect(new TlsContexts().clientTlsOptions(cc, [API]), s.host, s.port);
    t.equal(c.error, null);
    t.same(c.peer, API);
    t.same(await s.outcome, { kind: 'secure', peer: formatSpiffe(SLEEP), servername: false, protocol: 'TLSv1.3', cipher: c.cipher, alpn: 'h2' });
  });

  t.test('HTTP/2 CONNECT-style request over the handshake (the data path shape)', async (t) => {
    const h2 = http2.createServer();
    h2.on('stream', (stream, headers) => {
      const sock = stream.session?.socket as tls.TLSSocket | undefined;
      stream.respond({ ':status': 200, 'x-peer': sock ? formatSpiffe(peerIdentity(sock)!) : '', 'x-method': String(headers[':method']) });
      stream.end();
    });
    const contexts = new TlsContexts({ server: { onSecureConnection: (sock) => h2.emit('connection', sock) } });
    const host = lb.ip(nextHost++);
    const server = net.createServer((raw) => contexts.accept(raw, serverCert));
    await new Promise<void>((r) => server.listen(0, host, r));
    const port = (server.address() as net.AddressInfo).port;
    const session = http2.connect(`https://${host}:${port}`, {
      createConnection: () => tls.connect({ ...client.clientTlsOptions(clientCert, [API]), host, port }),
    });
    t.teardown(() => {
      session.destroy();
      server.close();
    });
    const headers = await new Promise<http2.IncomingHttpHeaders>((resolve, reject) => {
      const req = session.request({ ':method': 'CONNECT', ':authority': `${lb.ip(200)}:8080` });
      req.on('response', (h) => resolve(h));
      req.on('error', reject);
      req.end();
    });
    t.equal(headers[':status'], 200);
    t.equal(headers['x-peer'], formatSpiffe(SLEEP), 'the h2 layer can read the client identity');
    t.equal(headers['x-method'], 'CONNECT');
  });

  t.test('serverTlsOptions works on a plain tls.Server too', async (t) => {
    const seen: string[] = [];
    const server = tls.createServer(serverTlsOptions(serverCert), (sock) => {
      const r = checkClientIdentity(sock, 'cluster.local');
      seen.push(r.ok ? formatSpiffe(r.identity) : r.error.code);
      sock.end('ok\n');
    });
    const host = lb.ip(nextHost++);
    await new Promise<void>((r) => server.listen(0, host, r));
    t.teardown(() => new Promise<void>((r) => server.close(() => r())));
    const port = (server.address() as net.AddressInfo).port;
    const good = await connect(client.clientTlsOptions(clientCert, [API]), host, port);
    t.equal(good.data, 'ok\n');
    const foreign = await connect(client.clientTlsOptions(foreignCert, [API]), host, port);
    t.equal(foreign.data, 'ok\n', 'same CA, so the TLS layer accepts ...');
    t.same(seen, [formatSpiffe(SLEEP), 'ERR_TLS_TRUST_DOMAIN'], '... and checkClientIdentity refuses the other trust domain');
  });

  t.test('a bare server-side TLSSocket is never treated as verified', async (t) => {
    let result: string | null = null;
    const server = net.createServer((raw) => {
      const sock = new tls.TLSSocket(raw, { isServer: true, ...client.serverTlsOptions(serverCert) });
      sock.on('secure', () => {
        const r = checkClientIdentity(sock, 'cluster.local');
        result = r.ok ? 'ok' : r.error.code;
        sock.end('done\n');
      });
      sock.on('error', () => undefined);
    });
    const host = lb.ip(nextHost++);
    await new Promise<void>((r) => server.listen(0, host, r));
    t.teardown(() => new Promise<void>((r) => server.close(() => r())));
    const c = await connect(client.clientTlsOptions(clientCert, [API]), host, (server.address() as net.AddressInfo).port);
    t.equal(c.data, 'done\n');
    t.equal(result, 'ERR_TLS_PEER_UNVERIFIED', 'fails closed without a tls.Server');
  });
});

t.test('context cache: once per serial, two per identity', async (t) => {
  const ca = await LocalCa.generate();
  const contexts = new TlsContexts();
  const a1 = await ca.sign(API, HOUR);
  const a2 = await ca.sign(API, HOUR);
  const a3 = await ca.sign(API, HOUR);
  const s1 = await ca.sign(SLEEP, HOUR);
  const c1 = contexts.secureContext(a1);
  t.equal(contexts.secureContext(a1), c1, 'same serial: same context');
  t.equal(contexts.clientTlsOptions(a1, [SLEEP]).secureContext, c1, 'client options use it');
  t.equal(contexts.serverTlsOptions(a1).secureContext, c1, 'server options carry it');
  const c2 = contexts.secureContext(a2);
  t.not(c2, c1, 'rotation: new context');
  t.equal(contexts.secureContext(a1), c1, 'the previous one is kept for racing connections');
  contexts.secureContext(s1);
  t.equal(contexts.size, 3);
  contexts.secureContext(a3);
  t.equal(contexts.size, 3, 'at most two per identity');
  t.not(contexts.secureContext(a1), c1, 'the oldest was evicted (rebuilt on demand)');
  contexts.forget(API);
  t.equal(contexts.size, 1);
  contexts.clear();
  t.equal(contexts.size, 0);

  t.throws(() => contexts.clientTlsOptions(a1, []), { code: 'ERR_TLS_NO_EXPECTED_SANS' });
  const raw = new net.Socket();
  t.throws(() => contexts.accept(raw, a1), { code: 'ERR_TLS_NO_HANDLERS' });
  raw.destroy();
  const o = contexts.clientTlsOptions(a1, [parseSpiffe(formatSpiffe(SLEEP))]);
  t.equal(o.servername, '', 'no SNI');
  t.same(o.ALPNProtocols, ['h2']);
  t.equal(o.minVersion, 'TLSv1.3');
  t.equal(o.maxVersion, 'TLSv1.3');
  const so = serverTlsOptions(a1);
  t.equal(so.requestCert, true);
  t.equal(so.rejectUnauthorized, true);
  t.equal(so.ciphers, 'TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384');
});
