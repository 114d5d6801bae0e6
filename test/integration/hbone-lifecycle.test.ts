/**
 * Connection lifecycle on loopback 127.5.3.0/24: the pool's clocked behaviours (idle release,
 * connect deadline, PING timeout) driven by an injected clock and manual ticks, certificate
 * rotation, drain from either end, listener management, a policy change during the upstream
 * connect, and the relay used socket↔socket (the native relay's JS fallback shape).
 */
import t from 'tap';
import * as net from 'node:net';
import * as tls from 'node:tls';
import { loopbackBlock } from '../helpers/loopback';
import { authorize } from '../../src/authz/authorize';
import { serverTlsOptions } from '../../src/tls/contexts';
import { relay } from '../../src/proxy/copy';
import { tcpConnect, type UpstreamConnect } from '../../src/proxy/inbound';
import { startInbound } from '../../src/proxy/hbone-server';
import type { Duplex } from 'node:stream';
import {
  DENY_SLEEP,
  ECHO,
  HOUR,
  SLEEP,
  closed,
  echoServer,
  makeCerts,
  readAll,
  snapshotDoc,
  startHarness,
  tcpServer,
} from './hbone-fixtures';

const lb = loopbackBlock(5, 3);
const MIN = 60_000;

async function rejection(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected a rejection');
}

/** Resolves after pending I/O callbacks have run (no wall-clock dependence). */
function turn(): Promise<void> {
  return new Promise((r) => setImmediate(r));
}

t.test('pool lifecycle with an injected clock', async (t) => {
  const certs = await makeCerts();
  const h = await startHarness(lb, { src: 2, dst: 10 }, certs);
  const echo = await echoServer(h.dstIp);
  t.teardown(async () => {
    await echo.close();
    await h.close();
  });
  let clock = 1_000_000;
  const now = (): number => clock;

  t.test('a connection unused for unusedReleaseMs is closed, not before', async (t) => {
    const client = h.client({ tickMs: 0, now, unusedReleaseMs: 5 * MIN });
    const tun = await client.connect(h.request(echo.port));
    const session = tun.stream.session!;
    tun.stream.end();
    await readAll(tun.stream);
    await closed(tun.stream);
    client.pool.tick(clock + 5 * MIN - 1);
    t.equal(client.stats().connections, 1, 'kept just before the deadline');
    const gone = new Promise<void>((r) => session.once('close', () => r()));
    client.pool.tick(clock + 5 * MIN);
    await gone;
    t.equal(client.stats().connections, 0, 'released at the deadline');
  });

  t.test('a busy connection is not released however old', async (t) => {
    const client = h.client({ tickMs: 0, now, unusedReleaseMs: 5 * MIN });
    const tun = await client.connect(h.request(echo.port));
    client.pool.tick(clock + 60 * MIN);
    t.equal(client.stats().connections, 1);
    const got = readAll(tun.stream);
    tun.stream.end('still here');
    t.equal((await got).toString(), 'still here');
  });

  t.test('connection setup past connectTimeoutMs fails with ERR_TIMEOUT', async (t) => {
    // accepts TCP, never answers the TLS ClientHello
    const mute = await tcpServer(lb.ip(20), () => undefined);
    t.teardown(() => mute.close());
    const client = h.client({ tickMs: 0, now, connectTimeoutMs: 10_000 });
    const p = rejection(client.connect(h.request(echo.port, { nextHop: { ip: lb.ip(20), port: mute.port } })));
    client.pool.tick(clock + 9_999);
    t.equal(client.stats().connections, 1, 'still connecting before the deadline');
    client.pool.tick(clock + 10_000);
    t.match(await p, { code: 'ERR_TIMEOUT', message: /took longer than 10000 ms/ });
  });

  t.test('a session whose PING goes unanswered is destroyed (ERR_TIMEOUT)', async (t) => {
    // completes TLS as echo, then never reads: HTTP/2 frames (and PINGs) go unanswered
    const held = new Set<tls.TLSSocket>();
    let secured!: () => void;
    const handshakeDone = new Promise<void>((r) => (secured = r));
    const deaf = tls.createServer(serverTlsOptions(certs.server), (s) => {
      held.add(s);
      s.pause();
      s.on('error', () => undefined);
      secured();
    });
    await new Promise<void>((r) => deaf.listen(0, lb.ip(21), r));
    t.teardown(() => {
      // a paused socket never notices the client's FIN: cut it, or close() waits forever
      for (const s of held) s.destroy();
      return new Promise<void>((r) => deaf.close(() => r()));
    });
    const port = (deaf.address() as net.AddressInfo).port;
    const client = h.client({ tickMs: 0, now });
    const p = rejection(client.connect(h.request(echo.port, { nextHop: { ip: lb.ip(21), port } })));
    await handshakeDone;
    // the client finished its side of the handshake before the server did (TLS 1.3)
    // wait for the state, not a number of loop turns: a loaded CI machine may need many (30 s safety net)
    const until = Date.now() + 30_000;
    while (client.stats().byConnection[0]?.state !== 'ready' && Date.now() < until) await turn();
    t.equal(client.stats().byConnection[0]?.state, 'ready');
    client.pool.tick(clock + 10_000);
    client.pool.tick(clock + 29_999);
    t.equal(client.stats().connections, 1, 'PING outstanding but not yet timed out');
    client.pool.tick(clock + 30_000);
    t.match(await p, { code: 'ERR_TIMEOUT', message: /PING not answered within 20000 ms/ });
  });

  t.test('a rotated source certificate gets a new connection; the old one keeps its tunnel', async (t) => {
    const client = h.client({ tickMs: 0, now });
    const old = await client.connect(h.request(echo.port));
    const rotated = await certs.ca.sign(SLEEP, HOUR);
    const fresh = await client.connect(h.request(echo.port, { source: rotated }));
    t.equal(client.stats().connections, 2);
    t.not(old.stream.session, fresh.stream.session);
    const again = await client.connect(h.request(echo.port, { source: rotated }));
    t.equal(again.stream.session, fresh.stream.session, 'the new certificate reuses its own connection');
    const got = readAll(old.stream);
    old.stream.end('old cert');
    t.equal((await got).toString(), 'old cert');
    for (const x of [fresh, again]) x.stream.end();
    await Promise.all([fresh, again].map((x) => closed(x.stream)));
  });

  t.test('different expected identities or source IPs do not share a connection', async (t) => {
    const client = h.client({ tickMs: 0, now });
    const a = await client.connect(h.request(echo.port));
    const b = await client.connect(h.request(echo.port, { expected: [SLEEP, ECHO] }));
    const c = await client.connect(h.request(echo.port, { sourceIp: lb.ip(3) }));
    const d = await client.connect(h.request(echo.port, { expected: [ECHO] }));
    t.equal(client.stats().connections, 3);
    t.equal(d.stream.session, a.stream.session);
    t.not(b.stream.session, a.stream.session);
    t.not(c.stream.session, a.stream.session);
    t.equal(h.manager.list().filter((r) => r.src.startsWith(`${lb.ip(3)}:`)).length, 1, 'bound to the other source IP');
    for (const x of [a, b, c, d]) x.stream.end();
    await Promise.all([a, b, c, d].map((x) => closed(x.stream)));
  });

  t.test('client close(): GOAWAY, open tunnels finish, new connects are refused', async (t) => {
    const client = h.client({ tickMs: 0, now });
    const tun = await client.connect(h.request(echo.port));
    let closedDone = false;
    const closing = client.close().then(() => (closedDone = true));
    t.match(await rejection(client.connect(h.request(echo.port))), { code: 'ERR_POOL_CLOSED' });
    const echoed = new Promise<Buffer>((r) => tun.stream.once('data', r));
    tun.stream.write('after close()');
    t.equal((await echoed).toString(), 'after close()', 'the open tunnel still works');
    t.equal(closedDone, false, 'close() waits for the open tunnel');
    tun.stream.end();
    tun.stream.resume();
    await closing;
    t.equal(client.stats().connections, 0);
  });
});

t.test('server side lifecycle', async (t) => {
  const certs = await makeCerts();
  const direct = tcpConnect();
  let upstream: UpstreamConnect = direct;
  const h = await startHarness(lb, { src: 2, dst: 30 }, certs, { connect: (target, info) => upstream(target, info) });
  const echo = await echoServer(h.dstIp);
  t.teardown(async () => {
    await echo.close();
    await h.close();
  });

  t.test('listeners: one per workload IP, duplicates and bad IPs refused, async certificates', async (t) => {
    await t.rejects(h.server.open({ ip: h.dstIp, port: 0, cert: () => certs.server }), { code: 'ERR_LISTENER_EXISTS' });
    await t.rejects(h.server.open({ ip: 'not-an-ip', port: 0, cert: () => certs.server }), { code: 'ERR_LISTEN' });
    const ip = lb.ip(31);
    const addr = await h.server.open({ ip, port: 0, cert: async () => certs.server });
    t.equal(h.server.addresses().get(ip)?.port, addr.port);
    h.snapshot = snapshotDoc(h.srcIp, ip);
    t.teardown(() => void (h.snapshot = snapshotDoc(h.srcIp, h.dstIp)));
    const app = await echoServer(ip);
    t.teardown(() => app.close());
    const client = h.client({ tickMs: 0 });
    const tun = await client.connect(h.request(app.port, { nextHop: { ip, port: addr.port }, authority: `${ip}:${app.port}` }));
    const got = readAll(tun.stream);
    tun.stream.end('via a second listener');
    t.equal((await got).toString(), 'via a second listener');
    await h.server.close(ip);
    t.notOk(h.server.addresses().has(ip), 'closed');
    t.match(await rejection(client.connect(h.request(app.port, { nextHop: { ip, port: addr.port }, authority: `${ip}:${app.port}` }))), {
      code: /ERR_CONNECT|ERR_HBONE_STREAM/,
    });
  });

  t.test('startInbound fails as a whole when one listener cannot bind', async (t) => {
    const taken = h.server.addresses().get(h.dstIp)!;
    const probe = net.createServer();
    await new Promise<void>((r) => probe.listen(0, lb.ip(33), r));
    const port = (probe.address() as net.AddressInfo).port;
    await new Promise<void>((r) => probe.close(() => r()));
    await t.rejects(
      startInbound({ snapshot: () => h.snapshot, authorize, connections: h.manager, tickMs: 0 }, [
        { ip: lb.ip(33), port, cert: () => certs.server },
        { ip: h.dstIp, port: taken.port, cert: () => certs.server },
      ]),
      { code: 'ERR_LISTEN', message: new RegExp(`${h.dstIp.replace(/\./g, '\\.')}:${taken.port}.*EADDRINUSE`) },
    );
    // the listener it had opened was closed again: the address is free
    const again = await startInbound({ snapshot: () => h.snapshot, authorize, connections: h.manager, tickMs: 0 }, [{ ip: lb.ip(33), port, cert: () => certs.server }]);
    t.equal(again.addresses().get(lb.ip(33))?.port, port);
    await again.shutdown();
  });

  t.test('a certificate getter that fails drops the connection and logs why', async (t) => {
    const ip = lb.ip(32);
    const addr = await h.server.open({ ip, port: 0, cert: () => Promise.reject(new Error('CA unreachable')) });
    t.teardown(() => h.server.close(ip));
    const client = h.client({ tickMs: 0 });
    const err = await rejection(client.connect(h.request(echo.port, { nextHop: { ip, port: addr.port }, authority: `${ip}:${echo.port}` })));
    t.match(err, { code: /ERR_TLS|ERR_CONNECT/ });
    t.ok(h.logs.some((l) => l.msg.includes('no certificate for the workload') && l.obj['err'] === 'CA unreachable'));
  });

  t.test('a policy change during the upstream connect refuses the stream', async (t) => {
    let release!: (d: Duplex) => void;
    let called!: () => void;
    const upstreamCalled = new Promise<void>((r) => (called = r));
    upstream = () => {
      called();
      return new Promise<Duplex>((r) => (release = r));
    };
    t.teardown(() => void (upstream = direct));
    const client = h.client({ tickMs: 0 });
    const p = rejection(client.connect(h.request(echo.port)));
    await upstreamCalled;
    t.equal(h.manager.size, 1, 'registered before the upstream connect finished');
    t.equal(h.manager.recheck(snapshotDoc(h.srcIp, h.dstIp, [DENY_SLEEP], 5), authorize).length, 1);
    t.match(await p, { code: 'ERR_HBONE_STREAM' });
    const late = net.connect({ host: h.dstIp, port: echo.port });
    await new Promise((r) => late.once('connect', r));
    release(late);
    await closed(late);
    t.ok(late.destroyed, 'the late upstream socket was dropped');
    t.equal(h.manager.size, 0);
    t.match(h.events.rejected.at(-1)?.reason, /no longer allowed/);
  });

  t.test('drain: GOAWAY keeps open tunnels, then closeAll cuts them', async (t) => {
    const client = h.client({ tickMs: 0 });
    const tun = await client.connect(h.request(echo.port));
    const goaway = new Promise<void>((r) => tun.stream.session!.once('goaway', () => r()));
    await h.server.drain();
    await goaway;
    t.equal(client.stats().byConnection[0]?.state, 'draining', 'the client stops using the connection');
    tun.stream.write('during drain');
    await new Promise((r) => tun.stream.once('data', r));
    t.equal(h.manager.closeAll('draining: deadline reached'), 1);
    await closed(tun.stream);
    t.not(tun.stream.rstCode, 0, 'cut with a reset');
    t.match(await rejection(client.connect(h.request(echo.port))), { code: 'ERR_CONNECT' }, 'no longer accepting');
  });
});

t.test('relay(): socket to socket, as the native relay fallback uses it', async (t) => {
  // left ⇄ [a | relay | b] ⇄ right, with two TCP hops
  const pairs: { outer: net.Socket; inner: net.Socket }[] = [];
  const server = net.createServer({ allowHalfOpen: true }, (inner) => {
    inner.on('error', () => undefined);
    const outer = pending.shift()!;
    pairs.push({ outer, inner });
    wake();
  });
  const pending: net.Socket[] = [];
  let wake: () => void = () => undefined;
  await new Promise<void>((r) => server.listen(0, lb.ip(40), r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const port = (server.address() as net.AddressInfo).port;
  const pair = async (): Promise<{ outer: net.Socket; inner: net.Socket }> => {
    const outer = net.connect({ host: lb.ip(40), port, allowHalfOpen: true });
    outer.on('error', () => undefined);
    pending.push(outer);
    await new Promise<void>((r) => (wake = r));
    return pairs.shift()!;
  };

  t.test('half-close both ways, counters, result', async (t) => {
    const left = await pair();
    const right = await pair();
    const r = relay(left.inner, right.inner, { aName: 'left', bName: 'right' });
    const toRight = readAll(right.outer);
    left.outer.end('hello right');
    t.equal((await toRight).toString(), 'hello right', 'EOF passed on');
    t.equal(r.aToB, 11, 'live counter');
    const toLeft = readAll(left.outer);
    right.outer.end('hello left, after your EOF');
    t.equal((await toLeft).toString(), 'hello left, after your EOF');
    t.same(await r.done, { aToB: 11, bToA: 26, reason: 'complete', error: null });
  });

  t.test('close(reason) resets both sides', async (t) => {
    const left = await pair();
    const right = await pair();
    const r = relay(left.inner, right.inner);
    const errs = Promise.all([left.outer, right.outer].map((s) => new Promise<string>((res) => {
      s.once('error', (e: NodeJS.ErrnoException) => res(e.code ?? 'error'));
      s.once('close', () => res('closed'));
    })));
    r.close('policy changed');
    const res = await r.done;
    t.equal(res.reason, 'policy changed');
    t.match(res.error, { code: 'ERR_CONN_CLOSED' });
    t.same(await errs, ['ECONNRESET', 'ECONNRESET'], 'both peers see a reset, not a clean EOF');
  });
});
