// The native addon's socket calls: loads per thread, Node-shaped errors for every call, listeners
// that Node adopts with listen({fd}) and share with SO_REUSEPORT across worker_threads, and
// outbound sockets with kernel options that Node then connects.
import t from 'tap';
import { once } from 'node:events';
import { connect, createServer, type Socket } from 'node:net';
import { constants } from 'node:os';
import { resolve } from 'node:path';
import { Worker } from 'node:worker_threads';
import { isProxyError } from '../../src/errors';
import { loadNative } from '../../src/native/addon';
import { connectSocket } from '../../src/native/connect';
import { checkNative, errnoError } from '../../src/native/errno';
import { adoptListener, closeServer } from '../helpers/native-fixtures';
import { loopbackBlock } from '../helpers/loopback';

const net = loopbackBlock(4, 1);
const native = loadNative();
const ADDON_JS = resolve(__dirname, '../../src/native/addon.js');

function fdOf(s: Socket): number {
  return (s as unknown as { _handle: { fd: number } })._handle.fd;
}

/** Asserts a Node-style errno error: code, negative errno matching os.constants, syscall. */
function isErrno(t: tap.Test, err: unknown, codes: string[], syscall: string): void {
  const e = err as NodeJS.ErrnoException;
  t.ok(e instanceof Error, 'an Error');
  t.ok(codes.includes(e.code ?? ''), `code ${e.code} is one of ${codes.join('/')}`);
  t.equal(e.errno, -(constants.errno as Record<string, number>)[e.code ?? ''], 'errno is -os.constants.errno[code]');
  t.equal(e.syscall, syscall, 'syscall');
  t.match(e.message, new RegExp(`^${syscall} ${e.code}`), 'message like Node: "<syscall> <code>"');
}

function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  throw new Error('expected a throw');
}

t.test('errnoError / checkNative build Node-shaped errors', async (t) => {
  for (const [errno, syscall] of [[-constants.errno.EBADF, 'setsockopt'], [-constants.errno.EADDRINUSE, 'bind'], [-constants.errno.ENOENT, 'getsockopt']] as const) {
    isErrno(t, errnoError(errno, syscall), [errnoError(errno, syscall).code as string], syscall);
  }
  const e = errnoError(-constants.errno.EADDRINUSE, 'bind', { address: '127.0.0.1', port: 80 });
  t.equal(e.message, 'bind EADDRINUSE 127.0.0.1:80');
  t.match(e, { address: '127.0.0.1', port: 80 });
  t.equal(checkNative(5, 'dup'), 5, 'values pass through');
  t.same(checkNative({ fd: 3 }, 'listen'), { fd: 3 });
  isErrno(t, thrown(() => checkNative(-constants.errno.EBADF, 'close')), ['EBADF'], 'close');
  isErrno(t, thrown(() => checkNative([-constants.errno.EACCES, 'bind'], 'listen')), ['EACCES'], 'bind');
});

t.test('loadNative reports a missing addon with a coded error', async (t) => {
  const err = thrown(() => loadNative('/nonexistent/ztunnel_native.node'));
  t.ok(isProxyError(err, 'ERR_NATIVE_UNAVAILABLE'));
  t.match((err as Error).message, /\/nonexistent\/ztunnel_native.node/);
});

t.test('the addon loads in a worker_thread and works there independently', async (t) => {
  const w = new Worker(
    `const { parentPort, workerData } = require('node:worker_threads');
     const n = require(workerData.addonJs).loadNative();
     const l = n.listen({ host: workerData.host, port: 0, backlog: 8, reusePort: false });
     let code;
     try { n.dup(-1); } catch (e) { code = [e.code, e.errno, e.syscall]; }
     n.close(l.fd);
     parentPort.postMessage({ port: l.port, code, relays: n.relayCount() });`,
    { eval: true, workerData: { addonJs: ADDON_JS, host: net.ip(1) } },
  );
  // listened for from the start: the worker exits right after its message, and Node emits that
  // 'exit' in the same callback that drains the message, before this test resumes
  const exited = once(w, 'exit');
  const [msg] = (await once(w, 'message')) as [{ port: number; code: unknown[]; relays: number }];
  t.ok(msg.port > 0, 'listened in the worker');
  t.same(msg.code, ['EBADF', -constants.errno.EBADF, 'fcntl'], 'errors shaped the same in the worker');
  t.equal(msg.relays, 0);
  await exited;
  t.equal(native.relayCount(), 0, 'the main thread has its own instance');
});

t.test('every call turns a bad or closed fd into a Node-style error', async (t) => {
  const closed = native.dup(1);
  native.close(closed);
  for (const fd of [-1, closed]) {
    isErrno(t, thrown(() => native.originalDst(fd)), ['EBADF'], 'getsockname');
    isErrno(t, thrown(() => native.socketInfo(fd)), ['EBADF'], 'getsockname');
    isErrno(t, thrown(() => native.dup(fd)), ['EBADF'], 'fcntl');
    isErrno(t, thrown(() => native.close(fd)), ['EBADF'], 'close');
    isErrno(t, thrown(() => native.relayStart(fd, fd === -1 ? -2 : -1, () => undefined)), ['EBADF'], 'fcntl');
  }
  t.equal(native.relayStats(12345), null, 'unknown relay id: no stats');
  t.equal(native.relayStop(12345), false, 'unknown relay id: nothing to stop');
});

t.test('arguments are validated in JS with operator-readable messages', async (t) => {
  const cases: [() => unknown, RegExp][] = [
    [() => native.listen({ host: 'localhost', port: 0, backlog: 1, reusePort: false }), /native\.listen: host must be an IPv4 or IPv6 literal/],
    [() => native.listen({ host: '127.0.0.1', port: 70000, backlog: 1, reusePort: false }), /port must be an integer in 0\.\.65535, got 70000/],
    [() => native.listen({ host: '127.0.0.1', port: 0, backlog: 0, reusePort: false }), /backlog/],
    [() => native.listen({ host: '127.0.0.1', port: 0, backlog: 1, reusePort: 'yes' as unknown as boolean }), /reusePort must be a boolean/],
    [() => native.listen({ host: '127.0.0.1', port: 0, backlog: 1, reusePort: false, mark: -1 }), /mark must be an integer/],
    [() => native.socketForConnect({ family: 5 as 4 }), /family must be 4 or 6/],
    [() => native.socketForConnect({ family: 4, bindAddress: '::1' }), /bindAddress must be an IPv4 address/],
    [() => native.socketForConnect({ family: 4, bindPort: 80 }), /bindPort needs bindAddress/],
    [() => native.socketForConnect({ family: 4, keepalive: { idleSec: 0, intervalSec: 1, count: 1 } }), /keepalive\.idleSec/],
    [() => native.dup(1.5), /native\.dup: fd must be an integer/],
    [() => native.relayStart(3, 3, () => undefined), /fdA and fdB must differ/],
    [() => native.relayStart(3, 4, () => undefined, { pipeSize: 1 }), /pipeSize/],
    [() => connectSocket(native, { host: 'example.com', port: 80 }, { family: 4 }), /host must be an IP literal/],
    [() => connectSocket(native, { host: '::1', port: 80 }, { family: 4 }), /is IPv6 but the socket family is 4/],
  ];
  for (const [fn, re] of cases) {
    const err = thrown(fn);
    t.ok(isProxyError(err, 'ERR_NATIVE_ARG'), String(re));
    t.match((err as Error).message, re);
  }
});

t.test('listen: Node adopts the fd; flags, port 0 and EADDRINUSE', async (t) => {
  const l = native.listen({ host: net.ip(2), port: 0, backlog: 16, reusePort: false });
  t.ok(l.port > 0, 'bound port reported for port 0');
  t.match(native.socketInfo(l.fd), { family: 4, reuseAddr: 1, reusePort: 0, nonBlocking: 1, cloexec: 1 });
  const srv = await adoptListener(l.fd, (s) => s.end('hello'));
  t.match(srv.address(), { address: net.ip(2), port: l.port });
  const c = connect(l.port, net.ip(2));
  c.setEncoding('utf8');
  let got = '';
  c.on('data', (d: string) => (got += d));
  await once(c, 'end');
  t.equal(got, 'hello', 'a connection accepted by Node on the native listener');
  const busy = thrown(() => native.listen({ host: net.ip(2), port: l.port, backlog: 16, reusePort: false }));
  isErrno(t, busy, ['EADDRINUSE'], 'bind');
  t.match(busy, { address: net.ip(2), port: l.port });
  await closeServer(srv);
  isErrno(t, thrown(() => native.socketInfo(l.fd)), ['EBADF'], 'getsockname');
});

t.test('listen with reusePort twice on one address, in two worker_threads: both get connections', async (t) => {
  const workerSrc = `
    const { parentPort, workerData } = require('node:worker_threads');
    const netm = require('node:net');
    const n = require(workerData.addonJs).loadNative();
    const l = n.listen({ host: workerData.host, port: workerData.port, backlog: 64, reusePort: true });
    const srv = netm.createServer((s) => s.end(String(workerData.id))).listen({ fd: l.fd }, () => parentPort.postMessage(l.port));
    parentPort.on('message', () => srv.close(() => parentPort.close()));`;
  const start = async (id: number, port: number): Promise<[Worker, number]> => {
    const w = new Worker(workerSrc, { eval: true, workerData: { addonJs: ADDON_JS, host: net.ip(3), port, id } });
    const [p] = (await once(w, 'message')) as [number];
    return [w, p];
  };
  const [w1, port] = await start(1, 0);
  const [w2, port2] = await start(2, port);
  t.equal(port2, port, 'second listener bound the same port');
  const seen = new Set<string>();
  // SO_REUSEPORT spreads connections by a hash of the 4-tuple; each new client port is a new
  // draw, so both listeners show up within a few tries (bounded).
  for (let i = 0; i < 200 && seen.size < 2; i++) {
    const c = connect(port, net.ip(3));
    c.setEncoding('utf8');
    let who = '';
    c.on('data', (d: string) => (who += d));
    await once(c, 'close');
    seen.add(who);
  }
  t.same([...seen].sort(), ['1', '2'], 'both workers accepted connections on the shared address');
  for (const w of [w1, w2]) {
    w.postMessage('close');
    await once(w, 'exit');
  }
});

t.test('originalDst on a socket that was not redirected: Node-style getsockopt error', async (t) => {
  const l = native.listen({ host: net.ip(4), port: 0, backlog: 4, reusePort: false });
  const accepted = new Promise<Socket>((r) => {
    void adoptListener(l.fd, r).then((srv) => t.teardown(() => closeServer(srv)));
  });
  const c = connect(l.port, net.ip(4));
  const s = await accepted;
  // ENOENT: conntrack has no NAT entry; ENOPROTOOPT: nf_conntrack is not loaded at all.
  isErrno(t, thrown(() => native.originalDst(fdOf(s))), ['ENOENT', 'ENOPROTOOPT'], 'getsockopt');
  c.destroy();
  s.destroy();
});

t.test('connectSocket: Node connects the native socket; options and source bind apply', async (t) => {
  const srv = createServer((s) => s.end(`${s.remoteAddress} ${s.remotePort}`));
  srv.listen(0, net.ip(5));
  await once(srv, 'listening');
  t.teardown(() => closeServer(srv));
  const port = (srv.address() as { port: number }).port;

  const c = connectSocket(native, { host: net.ip(5), port }, {
    family: 4,
    bindAddress: net.ip(6),
    keepalive: { idleSec: 30, intervalSec: 5, count: 4 },
  });
  c.setEncoding('utf8');
  let got = '';
  c.on('data', (d: string) => (got += d));
  await once(c, 'connect');
  t.match(native.socketInfo(fdOf(c)), { keepalive: 1, keepIdle: 30, keepIntvl: 5, keepCnt: 4, nonBlocking: 1, cloexec: 1 });
  await once(c, 'end');
  t.equal(got.split(' ')[0], net.ip(6), 'the server sees the bound source address');

  // An explicit source port, then a dead port: ECONNREFUSED through Node's normal 'error'.
  const fixed = connectSocket(native, { host: net.ip(5), port }, { family: 4, bindAddress: net.ip(7), bindPort: 41999 });
  fixed.setEncoding('utf8');
  let got2 = '';
  fixed.on('data', (d: string) => (got2 += d));
  await once(fixed, 'end');
  t.equal(got2, `${net.ip(7)} 41999`);
  const dead = connectSocket(native, { host: net.ip(8), port: 9 }, { family: 4 });
  const [err] = (await once(dead, 'error')) as [NodeJS.ErrnoException];
  t.match(err, { code: 'ECONNREFUSED', syscall: 'connect', address: net.ip(8), port: 9 });
});

t.test('socketForConnect: bind, freebind, transparent and mark reach the kernel (or fail Node-style)', async (t) => {
  // 192.0.2.1 (TEST-NET-1) is not local: binding it needs IP_FREEBIND (or IP_TRANSPARENT).
  isErrno(t, thrown(() => native.socketForConnect({ family: 4, bindAddress: '192.0.2.1' })), ['EADDRNOTAVAIL'], 'bind');
  const fb = native.socketForConnect({ family: 4, freebind: true, bindAddress: '192.0.2.1' });
  t.match(native.socketInfo(fb), { freebind: 1, transparent: 0, family: 4 });
  native.close(fb);
  const v6 = native.socketForConnect({ family: 6, freebind: true });
  t.match(native.socketInfo(v6), { family: 6, freebind: 1 });
  native.close(v6);
  // IP_TRANSPARENT and SO_MARK need CAP_NET_ADMIN: either applied or EPERM from setsockopt.
  for (const opts of [{ transparent: true }, { mark: 0x539 }]) {
    let fd: number | undefined;
    try {
      fd = native.socketForConnect({ family: 4, ...opts });
    } catch (err) {
      isErrno(t, err, ['EPERM'], 'setsockopt');
      continue;
    }
    const info = native.socketInfo(fd);
    if (opts.transparent) t.equal(info.transparent, 1, 'IP_TRANSPARENT set');
    else t.equal(info.mark, 0x539, 'SO_MARK set');
    native.close(fd);
  }
  let lfd: number | undefined;
  try {
    lfd = native.listen({ host: net.ip(9), port: 0, backlog: 4, reusePort: true, transparent: true, mark: 7, freebind: true }).fd;
  } catch (err) {
    isErrno(t, err, ['EPERM'], 'setsockopt');
  }
  if (lfd !== undefined) {
    t.match(native.socketInfo(lfd), { reusePort: 1, transparent: 1, mark: 7, freebind: 1 });
    native.close(lfd);
  }
});
