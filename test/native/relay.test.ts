// Both relay engines (native splice, JS streams) against one table of cases: half-close each way,
// bytes Node buffered (or an EOF Node read) before the hand-over, resets (also after a half-close),
// stop(), live counters, 256 MiB with sha256 equality; plus the JS engine with sockets already
// closed when it starts; plus the splice relay's ownership rules and its cleanup when a worker dies.
import t from 'tap';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { readFileSync, readdirSync } from 'node:fs';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { resolve } from 'node:path';
import { TLSSocket } from 'node:tls';
import { Worker } from 'node:worker_threads';
import { isProxyError } from '../../src/errors';
import { loadNative } from '../../src/native/addon';
import { startJsRelay, startRelay, startSpliceRelay, type RelayDone, type RelayHandle, type RelayResult } from '../../src/native/relay';
import { loopbackBlock } from '../helpers/loopback';

const net = loopbackBlock(4, 2);
const native = loadNative();

type Start = (a: Socket, b: Socket, onDone: RelayDone) => RelayHandle;
const ENGINES: [string, Start][] = [
  ['splice', (a, b, onDone) => startSpliceRelay(native, a, b, onDone)],
  ['js', startJsRelay],
];

let nextHost = 1;
/** Each harness gets its own two addresses in the block so cases never see each other's traffic. */
function hosts(): [string, string] {
  const h = nextHost;
  nextHost += 2;
  return [net.ip(h), net.ip(h + 1)];
}

interface Harness {
  client: Socket;
  /** the backend's accepted socket */
  backend: Promise<Socket>;
  relay: Promise<RelayHandle>;
  done: Promise<RelayResult>;
}

interface HarnessOptions {
  /** runs on the proxy before the relay starts (e.g. wait until Node buffered bytes) */
  beforeRelay?: (a: Socket, b: Socket) => Promise<void>;
}

/** client -> proxy (accepts A with pauseOnConnect, dials B) -> backend; the relay joins A and B. */
async function harness(t: tap.Test, start: Start, onBackend: (s: Socket) => void, opts: HarnessOptions = {}): Promise<Harness> {
  const [proxyHost, backendHost] = hosts();
  const servers: Server[] = [];
  const sockets: Socket[] = [];
  t.teardown(() => {
    // server.close() waits for its connections; half-closed test peers would hold it forever.
    for (const s of sockets) s.destroy();
    return Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  });
  let backendResolve!: (s: Socket) => void;
  const backend = new Promise<Socket>((r) => (backendResolve = r));
  const backendSrv = createServer({ allowHalfOpen: true }, (s) => {
    sockets.push(s);
    backendResolve(s);
    onBackend(s);
  });
  servers.push(backendSrv);
  backendSrv.listen(0, backendHost);
  await once(backendSrv, 'listening');
  let relayResolve!: (r: RelayHandle) => void;
  let doneResolve!: (r: RelayResult) => void;
  const relay = new Promise<RelayHandle>((r) => (relayResolve = r));
  const done = new Promise<RelayResult>((r) => (doneResolve = r));
  const proxy = createServer({ pauseOnConnect: true }, (a) => {
    const b = connect((backendSrv.address() as AddressInfo).port, backendHost);
    b.once('connect', () => {
      void (opts.beforeRelay ?? (async () => undefined))(a, b).then(() => relayResolve(start(a, b, doneResolve)));
    });
  });
  servers.push(proxy);
  proxy.listen(0, proxyHost);
  await once(proxy, 'listening');
  const client = connect({ port: (proxy.address() as AddressInfo).port, host: proxyHost, allowHalfOpen: true });
  sockets.push(client);
  await once(client, 'connect');
  return { client, backend, relay, done };
}

/** Collects a socket's bytes until 'end' (or 'close'). */
function collect(s: Socket): Promise<string> {
  return new Promise((resolve) => {
    let data = '';
    s.setEncoding('utf8');
    s.on('data', (d: string) => (data += d));
    s.on('error', () => undefined);
    s.once('end', () => resolve(data));
    s.once('close', () => resolve(data));
  });
}

/** Resolves when `s` has received at least `n` bytes in total (counted by `count`). */
function untilBytes(s: Socket, n: number, count: { bytes: number }): Promise<void> {
  return new Promise((resolve) => {
    const check = (): void => {
      if (count.bytes >= n) {
        s.off('data', onData);
        resolve();
      }
    };
    const onData = (d: Buffer): void => {
      count.bytes += d.length;
      check();
    };
    s.on('data', onData);
    check();
  });
}

for (const [engine, start] of ENGINES) {
  t.test(`${engine}: EOF from A is forwarded as a half-close while B keeps answering`, async (t) => {
    const h = await harness(t, start, (s) => {
      void collect(s).then((got) => s.end(`got:${got}`));
    });
    const reply = collect(h.client);
    h.client.end('ping');
    t.equal(await reply, 'got:ping', 'B saw EOF after the bytes, then its answer came back');
    const r = await h.done;
    t.match(r, { reason: 'eof', errno: 0, aToB: 4, bToA: 8 });
    t.equal((await h.relay).kind, engine);
  });

  t.test(`${engine}: EOF from B is forwarded while A keeps sending`, async (t) => {
    let backendGot!: Promise<string>;
    const h = await harness(t, start, (s) => {
      backendGot = collect(s);
      s.end('hello');
    });
    t.equal(await collect(h.client), 'hello', 'A got the bytes then EOF');
    t.notOk(h.client.destroyed, 'A still open for writing');
    h.client.end('after');
    t.equal(await backendGot, 'after', 'bytes sent after the half-close reached B');
    t.match(await h.done, { reason: 'eof', aToB: 5, bToA: 5 });
  });

  t.test(`${engine}: bytes Node already buffered on both sockets go first`, async (t) => {
    let backendGot!: Promise<string>;
    const h = await harness(
      t,
      start,
      (s) => {
        backendGot = collect(s);
        s.write('greeting;');
      },
      {
        beforeRelay: async (a, b) => {
          // 'readable' makes Node read the waiting bytes into each socket's buffer.
          a.resume();
          await Promise.all([once(a, 'readable'), once(b, 'readable')]);
          t.ok(a.readableLength > 0 && b.readableLength > 0, 'both sockets hold buffered bytes');
        },
      },
    );
    h.client.write('early;');
    const reply = collect(h.client);
    await h.relay;
    h.client.end('late');
    (await h.backend).end('bye');
    t.equal(await reply, 'greeting;bye');
    t.equal(await backendGot, 'early;late');
    t.match(await h.done, { reason: 'eof', aToB: 10, bToA: 12 });
  });

  t.test(`${engine}: a reset from B ends the relay with reason 'reset' and resets A`, async (t) => {
    const h = await harness(t, start, (s) => {
      s.once('data', () => s.resetAndDestroy());
    });
    // what A's peer sees: a reset, never a clean EOF that would pass for a complete transfer
    const clientSaw = new Promise<string>((res) => {
      h.client.once('error', (e: NodeJS.ErrnoException) => res(e.code ?? e.message));
      h.client.once('end', () => res('end'));
    });
    h.client.resume();
    await h.relay;
    h.client.write('trigger');
    const r = await h.done;
    t.equal(r.reason, 'reset');
    t.ok(r.code === 'ECONNRESET' || r.code === 'EPIPE', `code ${r.code}`);
    t.ok(r.errno < 0, 'negative errno');
    t.equal(await clientSaw, 'ECONNRESET', 'A was reset');
  });

  t.test(`${engine}: stop() closes both sides and reports 'stopped'`, async (t) => {
    const h = await harness(t, start, (s) => s.on('data', (d) => s.write(d)));
    h.client.write('x');
    await once(h.client, 'data');
    const relay = await h.relay;
    const backend = await h.backend;
    // Both peers see the relay's sockets close (EOF; they are allowHalfOpen, so no 'close' yet).
    const closed = Promise.all([collect(h.client), collect(backend)]);
    relay.stop();
    relay.stop();
    const r = await h.done;
    t.match(r, { reason: 'stopped', errno: 0, aToB: 1, bToA: 1 });
    await closed;
    t.same(relay.stats(), { aToB: 1, bToA: 1 }, 'final counters after completion');
    relay.stop();
  });

  t.test(`${engine}: stop() closes both sockets cleanly: the peers see EOF, not a reset`, async (t) => {
    const h = await harness(t, start, (s) => s.on('data', (d) => s.write(d)));
    h.client.write('x');
    await once(h.client, 'data');
    const relay = await h.relay;
    const seen = (s: Socket): Promise<string> =>
      new Promise((res) => {
        s.once('error', (e: NodeJS.ErrnoException) => res(e.code ?? e.message));
        s.once('end', () => res('end'));
      });
    const peers = Promise.all([seen(h.client), seen(await h.backend)]);
    relay.stop();
    t.same(await peers, ['end', 'end']);
    t.match(await h.done, { reason: 'stopped', errno: 0 });
  });

  t.test(`${engine}: a reset from B after its own EOF is reported as 'reset' once A's EOF goes to B`, async (t) => {
    const h = await harness(t, start, (s) => {
      s.on('error', () => undefined);
      s.end('bye');
    });
    h.client.on('error', () => undefined);
    t.equal(await collect(h.client), 'bye', "B's bytes and EOF reached A");
    const backend = await h.backend;
    backend.resetAndDestroy();
    await once(backend, 'close');
    // the JS engine stopped reading B at its EOF: the reset must not pass for a clean shutdown
    h.client.end();
    const r = await h.done;
    t.equal(r.reason, 'reset');
    t.ok(r.code === 'EPIPE' || r.code === 'ECONNRESET', `code ${r.code}`);
    t.ok(r.errno < 0, 'negative errno');
  });

  t.test(`${engine}: an EOF that A got before the relay started is forwarded to B`, async (t) => {
    const h = await harness(
      t,
      start,
      (s) => {
        void collect(s).then((got) => s.end(`got:${got}`));
      },
      {
        beforeRelay: async (a) => {
          a.allowHalfOpen = true; // so Node does not end A's write side at this EOF
          a.resume();
          await once(a, 'end');
        },
      },
    );
    const reply = collect(h.client);
    h.client.end();
    t.equal(await reply, 'got:', 'B saw the EOF and its answer came back');
    t.match(await h.done, { reason: 'eof', errno: 0, aToB: 0, bToA: 4 });
  });

  t.test(`${engine}: counters are live during a transfer`, async (t) => {
    const received = { bytes: 0 };
    let backendSock!: Socket;
    const h = await harness(t, start, (s) => (backendSock = s));
    const relay = await h.relay;
    const chunk = Buffer.alloc(1 << 20, 7);
    let sent = 0;
    let last = -1;
    for (let step = 1; step <= 3; step++) {
      h.client.write(chunk);
      sent += chunk.length;
      await untilBytes(backendSock, sent, received);
      const s = relay.stats();
      t.ok(s.aToB >= received.bytes && s.aToB <= sent, `step ${step}: aToB ${s.aToB} between received and sent`);
      t.ok(s.aToB > last, 'grows while the relay runs');
      last = s.aToB;
    }
    backendSock.write('pong');
    await once(h.client, 'data');
    t.equal(relay.stats().bToA, 4);
    h.client.end();
    backendSock.end();
    t.match(await h.done, { reason: 'eof', aToB: 3 << 20, bToA: 4 });
  });

  t.test(`${engine}: 256 MiB A->B arrive intact (sha256)`, async (t) => {
    const TOTAL_CHUNKS = 256;
    const base = randomBytes(1 << 20);
    let backendHash!: Promise<string>;
    const h = await harness(t, start, (s) => {
      const hash = createHash('sha256');
      s.on('data', (d: Buffer) => hash.update(d));
      backendHash = once(s, 'end').then(() => {
        s.end();
        return hash.digest('hex');
      });
    });
    await h.relay;
    const sent = createHash('sha256');
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < TOTAL_CHUNKS; i++) {
      // Each MiB differs (its index in the first bytes), so lost, repeated or reordered chunks
      // change the digest; cheaper than fresh random bytes per chunk.
      const chunk = Buffer.from(base);
      chunk.writeUInt32LE(i, 0);
      chunk.writeUInt32LE(i ^ 0x5a5a5a5a, chunk.length - 4);
      sent.update(chunk);
      if (!h.client.write(chunk)) await once(h.client, 'drain');
    }
    h.client.end();
    const got = await backendHash;
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    t.equal(got, sent.digest('hex'), 'sha256 of what B received equals what A sent');
    const r = await h.done;
    t.match(r, { reason: 'eof', aToB: TOTAL_CHUNKS << 20, bToA: 0 });
    t.comment(`${engine}: 256 MiB in ${ms.toFixed(0)} ms (${((256 / ms) * 1000).toFixed(0)} MiB/s, both hashes included)`);
  });
}

t.test('js: a socket closed before the relay started still ends it, and the other peer sees a reset', async (t) => {
  const h = await harness(t, startJsRelay, (s) => s.on('error', () => undefined), {
    beforeRelay: async (a) => {
      a.destroy();
      await once(a, 'close');
    },
  });
  const backend = await h.backend;
  const seen = new Promise<string>((res) => {
    backend.once('error', (e: NodeJS.ErrnoException) => res(e.code ?? e.message));
    backend.once('end', () => res('end'));
  });
  backend.resume();
  t.same(await h.done, { aToB: 0, bToA: 0, reason: 'error', errno: 0 }, 'no error to name: closed from outside');
  t.equal(await seen, 'ECONNRESET');
});

t.test('js: a socket reset by its peer before the relay started is reported as a reset', async (t) => {
  let clientReset!: () => void;
  const reset = new Promise<void>((r) => (clientReset = r));
  const h = await harness(t, startJsRelay, (s) => s.on('error', () => undefined), {
    beforeRelay: async (a) => {
      await reset;
      a.on('error', () => undefined);
      // not events.once: it rejects on the 'error' (the reset) that comes before 'close'
      const closed = new Promise((r) => a.once('close', r));
      a.resume();
      await closed;
      t.ok(a.errored, 'A errored and closed before the relay got it');
    },
  });
  h.client.resetAndDestroy();
  clientReset();
  t.match(await h.done, { reason: 'reset', code: 'ECONNRESET', errno: -104 });
});

t.test('startSpliceRelay refuses sockets it cannot own and leaves them untouched', async (t) => {
  const [host] = hosts();
  const srv = createServer((s) => s.resume());
  srv.listen(0, host);
  await once(srv, 'listening');
  t.teardown(() => new Promise((r) => srv.close(r)));
  const port = (srv.address() as AddressInfo).port;
  const a = connect(port, host);
  const b = connect(port, host);
  await Promise.all([once(a, 'connect'), once(b, 'connect')]);
  const tlsLike = new TLSSocket(connect(port, host));
  const gone = connect(port, host);
  gone.destroy();
  // 64 MiB cannot fit in the kernel's socket buffers at once: some stays queued in Node.
  b.write(Buffer.alloc(64 << 20));
  t.ok(b.writableLength > 0, 'B has writes Node has not flushed yet');
  const cases: [Socket, Socket, RegExp][] = [
    [a, tlsLike, /socket B cannot be spliced: it is a TLS socket/],
    [a, b, /socket B cannot be spliced: it has writes not yet flushed/],
    [gone, a, /socket A cannot be spliced: it is destroyed/],
  ];
  for (const [x, y, re] of cases) {
    let err: unknown;
    try {
      startSpliceRelay(native, x, y, () => t.fail('no relay'));
    } catch (e) {
      err = e;
    }
    t.ok(isProxyError(err, 'ERR_RELAY_INELIGIBLE'), 'coded refusal');
    t.match((err as Error).message, re);
  }
  t.notOk(a.destroyed, 'A untouched');
  t.equal(native.relayCount(), 0, 'no relay started');
  // startRelay falls back to JS for what splice refuses, and uses JS when told to (native = null).
  const viaTls = startRelay(a, tlsLike, () => undefined, { native });
  t.equal(viaTls.kind, 'js');
  viaTls.stop();
  const c = connect(port, host);
  const d = connect(port, host);
  await Promise.all([once(c, 'connect'), once(d, 'connect')]);
  const forcedJs = startRelay(c, d, () => undefined, { native: null });
  t.equal(forcedJs.kind, 'js');
  forcedJs.stop();
  b.destroy();
});

t.test('a failed relayStart leaves the fds with the caller', async (t) => {
  const fd = native.dup(0);
  // the real step that failed: fcntl(F_GETFL) on the closed fd, as native/README.md promises
  t.throws(() => native.relayStart(fd, 987654, () => undefined), { code: 'EBADF', syscall: 'fcntl' });
  t.doesNotThrow(() => native.close(fd), 'still open: the caller owns it');
});

/** Relay engine threads alive in this process (the engine names its thread `zt-relay`). */
function relayThreads(): number {
  let n = 0;
  for (const tid of readdirSync('/proc/self/task')) {
    try {
      if (readFileSync(`/proc/self/task/${tid}/comm`, 'utf8').trim() === 'zt-relay') n++;
    } catch {
      // the thread exited between readdir and read: not alive
    }
  }
  return n;
}

t.test('a worker that dies takes its relays down: fds closed, relay thread gone', async (t) => {
  const [host] = hosts();
  const accepted: Socket[] = [];
  const srv = createServer({ allowHalfOpen: true }, (s) => accepted.push(s));
  srv.listen(0, host);
  await once(srv, 'listening');
  t.teardown(() => new Promise((r) => srv.close(r)));
  const port = (srv.address() as AddressInfo).port;
  const workerSrc = `
    const { parentPort, workerData } = require('node:worker_threads');
    const netm = require('node:net');
    const n = require(workerData.addonJs).loadNative();
    const { startSpliceRelay } = require(workerData.relayJs);
    const a = netm.connect(workerData.port, workerData.host);
    a.once('connect', () => {
      const b = netm.connect(workerData.port, workerData.host);
      b.once('connect', () => {
        startSpliceRelay(n, a, b, () => parentPort.postMessage('done (unexpected)'));
        parentPort.postMessage(n.relayCount());
      });
    });`;
  const baseline = relayThreads();
  const run = async (): Promise<void> => {
    const w = new Worker(workerSrc, {
      eval: true,
      workerData: {
        addonJs: resolve(__dirname, '../../src/native/addon.js'),
        relayJs: resolve(__dirname, '../../src/native/relay.js'),
        host,
        port,
      },
    });
    const [count] = (await once(w, 'message')) as [number];
    t.equal(count, 1, 'one relay running in the worker');
    while (accepted.length < 2) await new Promise((r) => setImmediate(r));
    const [sa, sb] = accepted.splice(0, 2) as [Socket, Socket];
    // Bytes cross the worker's relay: the relay is really up before the worker dies.
    sa.write('via-worker');
    const [d] = (await once(sb, 'data')) as [Buffer];
    t.equal(d.toString(), 'via-worker');
    t.ok(relayThreads() > baseline, 'the worker runs its own zt-relay thread');
    const ends = Promise.all([once(sa, 'end'), once(sb, 'end')]);
    await w.terminate();
    await ends;
    t.pass('both sockets saw EOF: the cleanup hook closed the relay fds');
    sa.destroy();
    sb.destroy();
  };
  // Counting every thread of the process is flaky (V8 and libuv start helpers lazily, and the
  // worker's own OS thread is joined after 'exit'); the relay engine's thread has a name instead.
  await run();
  await run();
  t.equal(relayThreads(), baseline, 'no relay engine thread left behind by the dead workers');
});
