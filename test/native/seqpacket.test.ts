// Unix SOCK_SEQPACKET with SCM_RIGHTS through the addon (the ZDS transport): message boundaries,
// fds that arrive working and close-on-exec, EOF, truncation, a full queue, coded errors, and a
// worker_thread that dies with watched fds (its uv handles and fds are cleaned up, the process
// stays healthy).
import t from 'tap';
import { once } from 'node:events';
import { closeSync, mkdtempSync, openSync, readFileSync, readdirSync, readlinkSync, rmSync, writeSync, existsSync } from 'node:fs';
import { constants, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Worker } from 'node:worker_threads';
import { isProxyError } from '../../src/errors';
import { loadNative } from '../../src/native/addon';
import { SeqpacketServer, SeqpacketSocket, type SeqpacketCloseInfo } from '../../src/native/seqpacket';
import { thrown } from '../helpers/native-fixtures';

const native = loadNative();
const dir = mkdtempSync(join(tmpdir(), 'zt-sp-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
let seq = 0;
const sockPath = (): string => join(dir, `s${seq++}.sock`);

const openFds = (): number => readdirSync('/proc/self/fd').length;

/** A server and one connected client; both closed in teardown. */
async function pair(t: tap.Test): Promise<{ server: SeqpacketServer; client: SeqpacketSocket; peer: SeqpacketSocket }> {
  const server = SeqpacketServer.listen(native, sockPath());
  const accepted = once(server, 'connection') as Promise<[SeqpacketSocket]>;
  const client = SeqpacketSocket.connect(native, server.path);
  const [peer] = await accepted;
  t.teardown(() => {
    client.close();
    peer.close();
    server.close();
  });
  return { server, client, peer };
}

function collect(sock: SeqpacketSocket, n: number): Promise<[Buffer, number[]][]> {
  return new Promise((resolve) => {
    const got: [Buffer, number[]][] = [];
    const on = (data: Buffer, fds: number[]): void => {
      got.push([data, fds]);
      if (got.length === n) {
        sock.off('message', on);
        resolve(got);
      }
    };
    sock.on('message', on);
  });
}

t.test('messages keep their boundaries both ways (an empty one included)', async (t) => {
  const { client, peer } = await pair(t);
  const sent = ['a', 'bb', '', 'ccc', 'x'.repeat(60000)];
  const atPeer = collect(peer, sent.length);
  for (const s of sent) client.send(Buffer.from(s));
  const got = await atPeer;
  t.same(got.map(([d]) => d.toString()), sent, 'one message per send, in order');
  t.same(got.map(([, fds]) => fds), sent.map(() => []));
  const atClient = collect(client, 2);
  peer.send(Buffer.from('reply-1'));
  peer.send(Buffer.from('reply-2'));
  t.same((await atClient).map(([d]) => d.toString()), ['reply-1', 'reply-2']);
  t.equal(client.closed, false);
});

t.test('fds passed with SCM_RIGHTS arrive working and close-on-exec', async (t) => {
  const { client, peer } = await pair(t);
  const file = join(dir, 'passed.txt');
  const wfd = openSync(file, 'w');
  const nsfd = openSync('/proc/self/ns/net', 'r');
  const atPeer = collect(peer, 1);
  client.send(Buffer.from('add'), [wfd, nsfd]);
  closeSync(wfd); // the sender's copies are its own
  closeSync(nsfd);
  const [[data, fds]] = await atPeer;
  t.equal(data.toString(), 'add');
  t.equal(fds.length, 2, 'two fds arrived');
  t.equal(readlinkSync(`/proc/self/fd/${fds[0]}`), file, 'the file fd points at the file');
  writeSync(fds[0], 'written through the passed fd');
  t.equal(readFileSync(file, 'utf8'), 'written through the passed fd');
  t.equal(readlinkSync(`/proc/self/fd/${fds[1]}`), readlinkSync('/proc/self/ns/net'), 'the netns fd names the same namespace');
  for (const fd of fds) {
    const flags = parseInt(/flags:\s+([0-7]+)/.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'))![1], 8);
    t.ok(flags & 0o2000000, `fd ${fd} is O_CLOEXEC`);
    closeSync(fd);
  }
});

t.test('EOF: closing one end emits close(eof) on the other; close() inside a message handler', async (t) => {
  const { client, peer } = await pair(t);
  const peerClosed = once(peer, 'close') as Promise<[SeqpacketCloseInfo]>;
  const clientClosed = once(client, 'close') as Promise<[SeqpacketCloseInfo]>;
  client.send(Buffer.from('last words'));
  client.close();
  client.close(); // idempotent
  const [local] = await clientClosed;
  t.same(local, { reason: 'local' });
  // queued messages are delivered before the EOF
  const [[last]] = await collect(peer, 1);
  t.equal(last.toString(), 'last words');
  const [info] = await peerClosed;
  t.same(info, { reason: 'eof' });
  t.equal(peer.fd, -1);
  t.match(thrown(() => peer.send(Buffer.from('x'))), { code: 'ERR_SEQPACKET_CLOSED' });

  // A socket closed from its own 'message' handler, with more messages queued behind it.
  const p2 = await pair(t);
  p2.peer.on('message', () => p2.peer.close());
  const c2 = once(p2.peer, 'close') as Promise<[SeqpacketCloseInfo]>;
  for (const s of ['1', '2', '3']) p2.client.send(Buffer.from(s));
  t.same((await c2)[0], { reason: 'local' });
  // The peer closed with messages unread: the kernel resets the connection, as TCP would.
  const [c2info] = (await once(p2.client, 'close')) as [SeqpacketCloseInfo];
  t.equal(c2info.reason, 'error');
  t.match(c2info.error, { code: 'ECONNRESET', syscall: 'recvmsg' });
});

t.test('raw calls: truncation closes the fds that arrived (EMSGSIZE); EAGAIN; EPIPE; null EOF', async (t) => {
  const path = sockPath();
  const lfd = native.seqpacketListen(path, 4);
  t.teardown(() => native.close(lfd));
  t.equal(native.seqpacketAccept(lfd), null, 'no pending connection: null');
  const cfd = native.seqpacketConnect(path);
  const sfd = native.seqpacketAccept(lfd)!;
  t.ok(sfd > 0, 'accepted');
  t.match(native.socketInfo(sfd), { nonBlocking: 1, cloexec: 1 });
  t.equal(native.seqpacketRecv(sfd, 100), undefined, 'nothing queued: undefined');

  const extra = [openSync('/dev/null', 'r'), openSync('/dev/null', 'r')];
  t.equal(native.seqpacketSend(cfd, Buffer.alloc(100, 1), extra), 100);
  const before = openFds();
  const e = thrown(() => native.seqpacketRecv(sfd, 10));
  t.match(e, { code: 'EMSGSIZE', syscall: 'recvmsg', errno: -constants.errno.EMSGSIZE });
  t.equal(openFds(), before, 'the truncated message left no fd open');
  for (const fd of extra) closeSync(fd);

  // A full queue: EAGAIN, coded, never blocking (bounded loop).
  let err: NodeJS.ErrnoException | undefined;
  for (let i = 0; i < 100000 && err === undefined; i++) {
    try {
      native.seqpacketSend(cfd, Buffer.alloc(1024));
    } catch (x) {
      err = x as NodeJS.ErrnoException;
    }
  }
  t.match(err, { code: 'EAGAIN', syscall: 'sendmsg', errno: -constants.errno.EAGAIN });
  native.close(sfd); // with messages unread: a reset, then a broken pipe
  t.match(thrown(() => native.seqpacketSend(cfd, Buffer.from('x'))), { code: 'ECONNRESET', syscall: 'sendmsg' });
  t.match(thrown(() => native.seqpacketSend(cfd, Buffer.from('x'))), { code: 'EPIPE', syscall: 'sendmsg' });

  // EOF after a zero-length message: the empty message first, then null.
  const c2 = native.seqpacketConnect(path);
  const s2 = native.seqpacketAccept(lfd)!;
  native.seqpacketSend(c2, Buffer.alloc(0));
  native.close(c2);
  t.same(native.seqpacketRecv(s2, 10), { data: Buffer.alloc(0), fds: [] }, 'an empty message is a message');
  t.equal(native.seqpacketRecv(s2, 10), null, 'then EOF is null');
  t.equal(native.seqpacketRecv(s2, 10), null, 'and stays null');
  native.close(s2);
  native.close(cfd);
});

t.test('coded errors and argument checks', async (t) => {
  t.match(thrown(() => SeqpacketSocket.connect(native, join(dir, 'missing.sock'))), { code: 'ENOENT', syscall: 'connect' });
  const srv = SeqpacketServer.listen(native, sockPath());
  t.match(thrown(() => SeqpacketServer.listen(native, srv.path)), { code: 'EADDRINUSE', syscall: 'bind' });
  srv.close();
  t.notOk(existsSync(srv.path), 'close() unlinks the path');
  // a stale socket file with nobody listening
  const stale = sockPath();
  native.close(native.seqpacketListen(stale, 1));
  t.match(thrown(() => native.seqpacketConnect(stale)), { code: 'ECONNREFUSED', syscall: 'connect' });
  t.match(thrown(() => native.seqpacketAccept(-1)), { code: 'EBADF', syscall: 'accept' });
  t.match(thrown(() => native.seqpacketRecv(-1, 10)), { code: 'EBADF', syscall: 'recvmsg' });
  t.match(thrown(() => native.seqpacketSend(-1, Buffer.from('x'))), { code: 'EBADF', syscall: 'sendmsg' });
  t.match(thrown(() => native.watchFd(-1, () => undefined)), { code: 'EBADF', syscall: 'uv_poll_start' });
  t.equal(native.unwatchFd(987654), false);
  const bad: [() => unknown, RegExp][] = [
    [() => native.seqpacketConnect(''), /path must be a non-empty string/],
    [() => native.seqpacketConnect('/tmp/' + 'x'.repeat(200)), /at most 107 bytes/],
    [() => native.seqpacketConnect('/tmp/a\0b'), /without NUL/],
    [() => native.seqpacketListen(join(dir, 'b.sock'), 0), /backlog/],
    [() => native.seqpacketSend(3, 'str' as unknown as Buffer), /data must be a Buffer/],
    [() => native.seqpacketSend(3, Buffer.from('x'), [1.5]), /each of fds/],
    [() => native.seqpacketSend(3, Buffer.from('x'), new Array(254).fill(0)), /at most 253 fds/],
    [() => native.seqpacketRecv(3, 0), /maxLen/],
    [() => native.watchFd(3, 'cb' as unknown as () => void), /cb must be a function/],
    [() => native.unwatchFd(0), /id must be an integer/],
  ];
  for (const [fn, re] of bad) {
    const e = thrown(fn);
    t.ok(isProxyError(e, 'ERR_NATIVE_ARG'), String(re));
    t.match(e.message, re);
  }
});

t.test('a message longer than maxMessage closes the socket with EMSGSIZE', async (t) => {
  const server = SeqpacketServer.listen(native, sockPath(), { maxMessage: 16 });
  t.teardown(() => server.close());
  const accepted = once(server, 'connection') as Promise<[SeqpacketSocket]>;
  const client = SeqpacketSocket.connect(native, server.path);
  t.teardown(() => client.close());
  const [peer] = await accepted;
  const closed = once(peer, 'close') as Promise<[SeqpacketCloseInfo]>;
  client.send(Buffer.alloc(17));
  const [info] = await closed;
  t.equal(info.reason, 'error');
  t.match(info.error, { code: 'EMSGSIZE', syscall: 'recvmsg' });
});

t.test('a throwing message listener is an uncaught exception; promises resolve after the callback', async (t) => {
  const ADDON_JS = resolve(__dirname, '../../src/native/addon.js');
  const SEQ_JS = resolve(__dirname, '../../src/native/seqpacket.js');
  // In a worker, so the uncaught exception handler is the test's own, not tap's.
  const w = new Worker(
    `const { parentPort, workerData } = require('node:worker_threads');
     const native = require(workerData.addonJs).loadNative();
     const { SeqpacketSocket, SeqpacketServer } = require(workerData.seqJs);
     const srv = SeqpacketServer.listen(native, workerData.path);
     const seen = [];
     process.on('uncaughtException', (e) => {
       seen.push(e.message);
       if (seen.filter((x) => x.startsWith('boom')).length === 2) setTimeout(() => { c.close(); srv.close(); parentPort.postMessage(seen); }, 10);
     });
     srv.on('connection', (s) => s.on('message', (d) => {
       Promise.resolve().then(() => seen.push('microtask ' + d));
       throw new Error('boom ' + d);
     }));
     const c = SeqpacketSocket.connect(native, workerData.path);
     c.send(Buffer.from('1'));
     setTimeout(() => c.send(Buffer.from('2')), 10);`,
    { eval: true, workerData: { addonJs: ADDON_JS, seqJs: SEQ_JS, path: sockPath() } },
  );
  // listened for from the start: a worker that exits right after its last message has its 'exit'
  // emitted in the same callback that drains that message, before this test resumes
  const exited = once(w, 'exit');
  const [seen] = (await once(w, 'message')) as [string[]];
  t.same(seen.filter((x) => x.startsWith('boom')), ['boom 1', 'boom 2'], 'each throw reached uncaughtException; the socket kept working');
  t.ok(seen.includes('microtask 1') && seen.includes('microtask 2'), `microtasks queued in the callback ran (${seen.join(', ')})`);
  await exited;
});

t.test('a worker that dies with watched fds leaves no handle and no fd behind', async (t) => {
  const server = SeqpacketServer.listen(native, sockPath());
  t.teardown(() => server.close());
  const baseWatches = native.watchCount();
  const baseFds = openFds();
  const ADDON_JS = resolve(__dirname, '../../src/native/addon.js');
  const SEQ_JS = resolve(__dirname, '../../src/native/seqpacket.js');
  for (const how of ['terminate', 'exit'] as const) {
    const accepted = once(server, 'connection') as Promise<[SeqpacketSocket]>;
    const w = new Worker(
      `const { parentPort, workerData } = require('node:worker_threads');
       const native = require(workerData.addonJs).loadNative();
       const { SeqpacketSocket, SeqpacketServer } = require(workerData.seqJs);
       const c = SeqpacketSocket.connect(native, workerData.path);
       // its own server too: a listening fd and a path it never gets to unlink
       SeqpacketServer.listen(native, workerData.path + '.w');
       c.on('message', (d) => {
         if (workerData.how === 'exit') process.exit(0);
         parentPort.postMessage({ watches: native.watchCount(), got: d.toString() });
       });
       c.send(Buffer.from('hello from worker'));`,
      { eval: true, workerData: { addonJs: ADDON_JS, seqJs: SEQ_JS, path: server.path, how } },
    );
    const [peer] = await accepted;
    const [[hello]] = await collect(peer, 1);
    t.equal(hello.toString(), 'hello from worker');
    const peerClosed = once(peer, 'close') as Promise<[SeqpacketCloseInfo]>;
    peer.send(Buffer.from('ping'));
    if (how === 'terminate') {
      const [m] = (await once(w, 'message')) as [{ watches: number; got: string }];
      t.same(m, { watches: 2, got: 'ping' }, 'the worker watches its client and its server');
      await w.terminate();
    } else {
      await once(w, 'exit');
    }
    const [info] = await peerClosed;
    t.same(info, { reason: 'eof' }, `${how}: the worker's watched socket was closed by the addon`);
    rmSync(server.path + '.w', { force: true });
  }
  t.equal(native.watchCount(), baseWatches, "the main thread's watches are its own (the workers' peers closed on EOF)");
  // The process is healthy: the main thread still does seqpacket I/O.
  const { client, peer } = await pair(t);
  const got = collect(peer, 1);
  client.send(Buffer.from('still fine'));
  t.equal((await got)[0][0].toString(), 'still fine');
  client.close();
  peer.close();
  t.ok(openFds() <= baseFds + 2, `no fd left behind by the workers (${openFds()} vs ${baseFds})`);
});
