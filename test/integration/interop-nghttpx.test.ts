/**
 * HBONE interop with a third-party HTTP/2 CONNECT implementation, nghttpx (Debian nghttp2-proxy),
 * on loopback 127.7.1.0/24 — proof that our HBONE is plain RFC 9113 §8.5 CONNECT over mTLS, not
 * something only our own client and server agree on.
 *
 * 1. nghttpx as the HBONE CLIENT of our inbound: a raw HTTP/1.1 CONNECT to nghttpx's plain
 *    frontend is forwarded as an h2 CONNECT stream over TLS 1.3 to our HboneServer, nghttpx
 *    presenting a client certificate from our CA (`--insecure`: our server certificate has only a
 *    URI SAN, which nghttpx cannot match against a host name).
 * 2. nghttpx as the mTLS h2 FRONT our OUTBOUND HboneClient dials: `-s` (HTTP/2 proxy mode) with
 *    `--verify-client` against our root, a certificate from our CA whose identity the client
 *    expects, and tinyproxy as the HTTP/1 forward proxy that dials the target.
 *
 * Bytes are checked by sha256. Each daemon runs under a hard lifetime and is stopped in teardown.
 * nghttpx's HTTP/1 frontend tears a CONNECT tunnel down on the client's FIN (it resets the h2
 * stream), so the transfers here read the whole echo before closing instead of half-closing.
 */
import t from 'tap';
import * as net from 'node:net';
import { randomBytes } from 'node:crypto';
import { loopbackBlock } from '../helpers/loopback';
import { findBinary, freePort, secretDir, startDaemon, type Daemon } from '../helpers/external-proc';
import { LocalCa } from '../../src/identity/ca';
import { formatSpiffe, type Identity } from '../../src/identity/spiffe';
import type { WorkloadCert } from '../../src/identity/workload-cert';
import { HboneClient } from '../../src/proxy/hbone-client';
import { ProxyError } from '../../src/errors';
import { HOUR, SLEEP, makeCerts, sha256, snapshotDoc, startHarness, tcpServer } from './hbone-fixtures';

const lb = loopbackBlock(7, 1);
const MiB = 1024 * 1024;
const PAYLOAD = 4 * MiB;
const LIFETIME_S = 50;
const NGHTTPX = findBinary('nghttpx');
const TINYPROXY = findBinary('tinyproxy');
const MISSING = 'is not installed (Debian nghttp2-proxy / tinyproxy; .ci/run installs them) — INTEROP NOT TESTED';

const INTRUDER: Identity = { trustDomain: 'cluster.local', namespace: 'default', serviceAccount: 'intruder' };
const GATEWAY: Identity = { trustDomain: 'cluster.local', namespace: 'istio-system', serviceAccount: 'nghttpx' };
const DENY_INTRUDER = {
  name: 'deny-intruder',
  namespace: 'default',
  scope: 'Namespace',
  action: 'Deny',
  rules: [[[{ principals: [{ Exact: 'cluster.local/ns/default/sa/intruder' }] }]]],
};

/** Always the same nghttpx basics: no config file, no OCSP fetcher, one worker, NOTICE log to stderr. */
const NGHTTPX_BASE = ['--conf=/dev/null', '--no-ocsp', '--single-thread', '--backend-connect-timeout=5s'];
const NGHTTPX_READY = /Worker process \[\d+\] spawned/;

/** Leaf + chain, as nghttpx's certificate files want it. */
function certChain(c: WorkloadCert): string {
  return [c.certPem, ...c.chainPem].join('');
}

/** An echo app that counts the connections it accepted. */
async function countingEcho(host: string): Promise<{ port: number; accepted(): number; close(): Promise<void> }> {
  let n = 0;
  const app = await tcpServer(host, (s) => {
    n++;
    s.pipe(s);
  });
  return { port: app.port, accepted: () => n, close: () => app.close() };
}

interface ConnectResponse {
  readonly status: number;
  readonly head: string;
  readonly socket: net.Socket;
  /** Tunnel bytes that arrived together with the response head. */
  readonly rest: Buffer;
}

/** A raw HTTP/1.1 CONNECT through `proxy`; resolves with the response head (or rejects at `timeoutMs`). */
function http1Connect(proxy: { ip: string; port: number }, target: string, timeoutMs: number): Promise<ConnectResponse> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: proxy.ip, port: proxy.port, noDelay: true });
    let buf = Buffer.alloc(0);
    const fail = (err: Error): void => {
      socket.destroy();
      reject(err);
    };
    socket.setTimeout(timeoutMs, () => fail(new Error(`no CONNECT response within ${timeoutMs} ms`)));
    socket.once('error', fail);
    socket.once('connect', () => socket.write(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`));
    const onData = (chunk: Buffer): void => {
      buf = Buffer.concat([buf, chunk]);
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      socket.off('data', onData);
      socket.off('error', fail);
      socket.setTimeout(0);
      socket.pause();
      const head = buf.subarray(0, end).toString('latin1');
      const m = /^HTTP\/1\.1 (\d{3}) /.exec(head);
      if (!m) return fail(new Error(`not an HTTP/1.1 response: ${JSON.stringify(head)}`));
      resolve({ status: Number(m[1]), head, socket, rest: buf.subarray(end + 4) });
    };
    socket.on('data', onData);
  });
}

/**
 * Sends `data` (honouring backpressure) and collects what comes back until as many bytes arrived;
 * no half-close (see the file comment). Rejects if the stream ends or errors first.
 */
function roundTrip(s: net.Socket | NodeJS.ReadWriteStream, data: Buffer, already: Buffer = Buffer.alloc(0)): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [already];
    let got = already.length;
    const done = (): void => {
      s.removeListener('data', onData);
      resolve(Buffer.concat(parts));
    };
    const onData = (c: Buffer): void => {
      parts.push(c);
      got += c.length;
      if (got >= data.length) done();
    };
    s.on('data', onData);
    s.once('end', () => reject(new Error(`tunnel ended after ${got} of ${data.length} bytes`)));
    s.once('error', (err: Error) => reject(err));
    s.resume();
    if (got >= data.length) return done();
    void (async () => {
      for (let off = 0; off < data.length; off += 64 * 1024) {
        if (!s.write(data.subarray(off, off + 64 * 1024))) await new Promise<void>((r) => s.once('drain', () => r()));
      }
    })().catch(reject);
  });
}

t.test('nghttpx is the HBONE client of our inbound (HTTP/1 CONNECT in, h2 CONNECT over mTLS out)', { skip: NGHTTPX ? false : `nghttpx ${MISSING}`, timeout: 30_000 }, async (t) => {
  const certs = await makeCerts();
  const h = await startHarness(lb, { src: 2, dst: 10 }, certs);
  h.snapshot = snapshotDoc(h.srcIp, h.dstIp, [DENY_INTRUDER]);
  const echo = await countingEcho(h.dstIp);
  const dir = secretDir('ztunnel-nghttpx-client-');
  const daemons: Daemon[] = [];
  t.teardown(async () => {
    await Promise.all(daemons.map((d) => d.stop()));
    dir.remove();
    await echo.close();
    await h.close();
  });

  const intruder = await certs.ca.sign(INTRUDER, HOUR);
  /** One nghttpx whose backend is our HBONE listener, authenticating as `cert`. */
  const frontFor = async (name: string, host: number, cert: WorkloadCert): Promise<{ ip: string; port: number }> => {
    const ip = lb.ip(host);
    const port = await freePort(ip);
    const args = [
      ...NGHTTPX_BASE,
      `--frontend=${ip},${port};no-tls`,
      `--backend=${h.dstIp},${h.hbonePort};;tls;proto=h2`,
      `--client-cert-file=${dir.write(`${name}.crt`, certChain(cert))}`,
      `--client-private-key-file=${dir.write(`${name}.key`, cert.keyPem)}`,
      '--insecure',
    ];
    daemons.push(await startDaemon({ bin: NGHTTPX as string, args, ready: NGHTTPX_READY, lifetimeS: LIFETIME_S, readyTimeoutMs: 10_000 }));
    return { ip, port };
  };
  const asSleep = await frontFor('sleep', 20, certs.client);
  const asIntruder = await frontFor('intruder', 21, intruder);
  const target = `${h.dstIp}:${echo.port}`;

  t.test('bytes go end to end: test client → nghttpx → our inbound → echo', async (t) => {
    const res = await http1Connect(asSleep, target, 10_000);
    t.teardown(() => res.socket.destroy());
    t.equal(res.status, 200, `nghttpx relayed our 200 (${res.head.split('\r\n')[0]})`);
    t.match(res.head, /\r\nbaggage: [^\r]*k8s\.deployment\.name=echo/i, "our response baggage came through nghttpx");
    const data = randomBytes(PAYLOAD);
    const back = await roundTrip(res.socket, data, res.rest);
    t.equal(back.length, data.length, `${PAYLOAD} bytes came back`);
    t.equal(sha256(back), sha256(data), 'the echo is byte-exact');
    t.equal(echo.accepted(), 1, 'the echo app saw exactly one connection');
    res.socket.destroy();
    await h.waitClosed(1);
    const closedLine = h.logs.find((l) => l.msg === 'inbound tunnel closed');
    t.equal(closedLine?.obj['srcIdentity'], formatSpiffe(SLEEP), "our server saw the identity of the client certificate nghttpx presented");
    t.equal(h.events.closed[0]?.received, PAYLOAD, 'our server counted every byte nghttpx sent');
  });

  t.test('a denied identity gets the 401, which nghttpx hands to its client', async (t) => {
    const before = echo.accepted();
    const res = await http1Connect(asIntruder, target, 10_000);
    res.socket.destroy();
    t.equal(res.status, 401, `the test client sees the refusal (${res.head.split('\r\n')[0]})`);
    const refused = h.events.rejected.find((r) => r.status === 401);
    t.match(refused?.reason, /denied by policy/, 'our server refused it by policy');
    t.match(h.logs.find((l) => l.obj['status'] === 401)?.obj['srcIdentity'], formatSpiffe(INTRUDER), 'as the intruder identity');
    t.equal(echo.accepted(), before, 'the echo app was never dialled');
  });
});

t.test('our HboneClient through nghttpx -s (mTLS h2 front) and tinyproxy to an echo app', { skip: NGHTTPX && TINYPROXY ? false : `nghttpx or tinyproxy ${MISSING}`, timeout: 30_000 }, async (t) => {
  const certs = await makeCerts();
  const gatewayCert = await certs.ca.sign(GATEWAY, HOUR);
  const echo = await countingEcho(lb.ip(40));
  const dir = secretDir('ztunnel-nghttpx-front-');
  const daemons: Daemon[] = [];
  const client = new HboneClient({ tickMs: 0, connectTimeoutMs: 5_000 });
  t.teardown(async () => {
    client.destroy();
    await Promise.all(daemons.map((d) => d.stop()));
    dir.remove();
    await echo.close();
  });

  const proxy = { ip: lb.ip(30), port: await freePort(lb.ip(30)) };
  const tinyConf = dir.write(
    'tinyproxy.conf',
    [
      `Port ${proxy.port}`,
      `Listen ${proxy.ip}`,
      'Timeout 30',
      'MaxClients 20',
      'Allow 127.0.0.0/8',
      `ConnectPort ${echo.port}`,
      'LogLevel Info',
      '',
    ].join('\n'),
  );
  daemons.push(
    await startDaemon({ bin: TINYPROXY as string, args: ['-d', '-c', tinyConf], ready: /Accepting connections/, lifetimeS: LIFETIME_S, readyTimeoutMs: 10_000 }),
  );

  const front = { ip: lb.ip(25), port: await freePort(lb.ip(25)) };
  daemons.push(
    await startDaemon({
      bin: NGHTTPX as string,
      args: [
        ...NGHTTPX_BASE,
        '--http2-proxy',
        `--frontend=${front.ip},${front.port}`,
        `--backend=${proxy.ip},${proxy.port}`,
        '--verify-client',
        `--verify-client-cacert=${dir.write('root.pem', certs.client.rootsPem.join(''))}`,
        '--tls-min-proto-version=TLSv1.3',
        '--tls-max-proto-version=TLSv1.3',
        '--npn-list=h2',
        dir.write('gateway.key', gatewayCert.keyPem),
        dir.write('gateway.crt', certChain(gatewayCert)),
      ],
      ready: NGHTTPX_READY,
      lifetimeS: LIFETIME_S,
      readyTimeoutMs: 10_000,
    }),
  );
  const request = (source: WorkloadCert, expected: Identity[] = [GATEWAY]) => ({
    source,
    sourceIp: lb.ip(2),
    expected,
    nextHop: front,
    authority: `${lb.ip(40)}:${echo.port}`,
  });

  t.test('the CONNECT tunnel moves bytes end to end', async (t) => {
    const tun = await client.connect(request(certs.client));
    t.teardown(() => tun.stream.destroy());
    t.equal(tun.status, 200, 'nghttpx accepted our CONNECT once tinyproxy had dialled the target');
    const data = randomBytes(PAYLOAD);
    const back = await roundTrip(tun.stream, data);
    t.equal(back.length, data.length, `${PAYLOAD} bytes came back`);
    t.equal(sha256(back), sha256(data), 'the echo is byte-exact');
    t.equal(echo.accepted(), 1, 'the echo app saw exactly one connection');
  });

  t.test('nghttpx refuses a client certificate from another CA', async (t) => {
    const other = await LocalCa.generate();
    // The leaf comes from the other CA, but the client still trusts our root, so the handshake
    // can only fail because nghttpx refuses the certificate (not because we refuse nghttpx).
    const foreign: WorkloadCert = { ...(await other.sign(SLEEP, HOUR)), rootsPem: certs.client.rootsPem };
    const before = echo.accepted();
    const err = await client.connect(request(foreign)).then(
      () => null,
      (e: unknown) => e,
    );
    t.ok(err instanceof ProxyError, `connect() failed (${String(err)})`);
    t.equal((err as ProxyError).code, 'ERR_TLS', 'as a TLS refusal');
    t.match((err as Error).message, /unknown.ca/i, "nghttpx's alert: unknown CA");
    t.equal(echo.accepted(), before, 'nothing reached the echo app');
  });

  t.test('our client refuses nghttpx when its identity is not the expected one', async (t) => {
    const err = await client.connect(request(certs.client, [SLEEP])).then(
      () => null,
      (e: unknown) => e,
    );
    t.ok(err instanceof ProxyError, `connect() failed (${String(err)})`);
    t.equal((err as ProxyError).code, 'ERR_TLS', 'as a TLS refusal');
  });
});
