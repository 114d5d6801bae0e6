/**
 * Hostile SOCKS5 clients against the real Socks5Server of the real app (issue 9, "SOCKS5 and
 * :15001"), on loopback 127.10.5.0/24, both relay engines: bad versions, BIND and UDP ASSOCIATE,
 * only unsupported auth methods, truncated greetings and requests followed by a close, a greeting
 * sent one byte at a time, a request for the proxy's own ports (self-call) and for the SOCKS5
 * listener itself. Each is answered with the RFC 1928 reply (or the "no acceptable methods"
 * greeting reply) and closed; a bystander tunnel opened before them still moves bytes intact after,
 * nothing reached the app, and the process answers readiness.
 */
import t, { type Test as Tap } from 'tap';
import { mkdtempSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initCaDir } from '../../src/identity/ca-dir';
import { socksConnect } from '../../src/proxy/socks5-client';
import { loopbackBlock } from '../helpers/loopback';
import { echoHash, get, pattern, sha, startNode, workloadDoc, writeSnapshot } from '../helpers/mesh-nodes';

const lb = loopbackBlock(10, 5);
const CLIENT = lb.ip(1);
const APP = lb.ip(20);
const NODE = lb.ip(250);

const dir = mkdtempSync(join(tmpdir(), 'ztunnel-socks-hostile-'));

/** Connects from CLIENT, sends `parts` (with a pause between them), then reads until close. */
function exchange(addr: { host: string; port: number }, parts: Buffer[], endAfter = false): Promise<{ reply: Buffer; how: string }> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: addr.host, port: addr.port, localAddress: CLIENT });
    const got: Buffer[] = [];
    let how = '';
    s.on('data', (d: Buffer) => got.push(d));
    s.on('error', (e: NodeJS.ErrnoException) => void (how ||= e.code ?? e.message));
    s.on('end', () => void (how ||= 'end'));
    s.on('close', () => resolve({ reply: Buffer.concat(got), how: how || 'closed' }));
    s.once('connect', async () => {
      try {
        for (const p of parts) {
          if (s.destroyed) break;
          s.write(p);
          await new Promise((r) => setTimeout(r, 5));
        }
        if (endAfter && !s.destroyed) s.end();
      } catch (err) {
        reject(err);
      }
    });
  });
}

const GREETING = Buffer.from([5, 1, 0]);
const ACCEPT = Buffer.from([5, 0]);
const NO_METHODS = Buffer.from([5, 0xff]);
const reply = (code: number): Buffer => Buffer.from([5, code, 0, 1, 0, 0, 0, 0, 0, 0]);
function request(cmd: number, ip: string, port: number): Buffer {
  const b = Buffer.from([5, cmd, 0, 1, 0, 0, 0, 0, port >> 8, port & 0xff]);
  ip.split('.').forEach((o, i) => (b[4 + i] = Number(o)));
  return b;
}

t.before(() => initCaDir(join(dir, 'ca')));

for (const nativeRelay of [true, false]) {
  t.test(`hostile SOCKS5 clients (${nativeRelay ? 'splice' : 'JS'} relay)`, (t) => hostile(t, nativeRelay));
}

async function hostile(t: Tap, nativeRelay: boolean): Promise<void> {
  const snapshotPath = join(dir, `snapshot-${nativeRelay}.json`);
  writeSnapshot(snapshotPath, JSON.stringify({ workloads: [workloadDoc('client', CLIENT, 'node-s')] }));
  let accepted = 0;
  const app = net.createServer({ allowHalfOpen: true }, (s) => {
    accepted++;
    s.on('error', () => undefined);
    s.pipe(s);
  });
  await new Promise<void>((r) => app.listen(0, APP, r));
  const appPort = (app.address() as net.AddressInfo).port;
  const node = await startNode({ name: 'node-s', ip: NODE, snapshotPath, caDir: join(dir, 'ca'), nativeRelay, env: { LOG_LEVEL: 'info' } });
  const bystander = await socksConnect(node.socks, CLIENT, { host: APP, port: appPort });
  t.teardown(async () => {
    bystander.destroy();
    await node.app.close();
    app.close();
  });
  const warm = pattern(64 << 10, 1);
  t.equal(await echoHash(bystander, warm), sha(warm), 'the bystander tunnel works before');
  const acceptedBefore = accepted;
  const socks = node.socks;
  const dst = request(1, APP, appPort);

  const cases: Array<{ name: string; parts: Buffer[]; end?: boolean; want: Buffer; how?: string }> = [
    { name: 'SOCKS4 greeting', parts: [Buffer.from([4, 1, 0, 80, 127, 0, 0, 1, 0])], want: NO_METHODS },
    { name: 'version 0 greeting', parts: [Buffer.from([0, 1, 0])], want: NO_METHODS },
    { name: 'only username/password and GSSAPI offered', parts: [Buffer.from([5, 2, 2, 1])], want: NO_METHODS },
    { name: 'zero methods offered', parts: [Buffer.from([5, 0])], want: NO_METHODS },
    { name: 'bad version in the request', parts: [GREETING, Buffer.from([4, 1, 0, 1, 127, 0, 0, 1, 0, 80])], want: Buffer.concat([ACCEPT, reply(1)]) },
    { name: 'BIND', parts: [GREETING, request(2, APP, appPort)], want: Buffer.concat([ACCEPT, reply(7)]) },
    { name: 'UDP ASSOCIATE', parts: [GREETING, request(3, APP, appPort)], want: Buffer.concat([ACCEPT, reply(7)]) },
    { name: 'unknown address type', parts: [GREETING, Buffer.from([5, 1, 0, 9, 1, 2, 3, 4, 0, 80])], want: Buffer.concat([ACCEPT, reply(8)]) },
    { name: 'port 0', parts: [GREETING, request(1, APP, 0)], want: Buffer.concat([ACCEPT, reply(4)]) },
    { name: 'truncated greeting, then FIN', parts: [Buffer.from([5, 3, 0])], end: true, want: Buffer.alloc(0) },
    { name: 'truncated request, then FIN', parts: [GREETING, dst.subarray(0, 6)], end: true, want: ACCEPT },
    { name: 'greeting and request one byte at a time, then a self-call to :15008', parts: [...GREETING, ...request(1, '127.0.0.1', 15008)].map((b) => Buffer.from([b])), want: Buffer.concat([ACCEPT, reply(2)]) },
    { name: 'self-call to :15001', parts: [GREETING, request(1, '127.0.0.1', 15001)], want: Buffer.concat([ACCEPT, reply(2)]) },
    { name: 'self-call to :15006', parts: [GREETING, request(1, '127.0.0.1', 15006)], want: Buffer.concat([ACCEPT, reply(2)]) },
    { name: 'the SOCKS5 listener itself', parts: [GREETING, request(1, socks.host, socks.port)], want: Buffer.concat([ACCEPT, reply(2)]) },
  ];
  for (const c of cases) {
    const r = await exchange(socks, c.parts, c.end);
    t.same([...r.reply], [...c.want], `${c.name}: answered ${c.want.toString('hex') || 'nothing'}`);
    t.notOk(['ECONNRESET'].includes(r.how) && c.want.length > 0 && r.reply.length < c.want.length, `${c.name}: the reply arrives before the close (${r.how})`);
  }
  t.equal(accepted, acceptedBefore, 'none of them reached the app');
  const more = pattern(1 << 20, 2);
  t.equal(await echoHash(bystander, more), sha(more), 'the bystander tunnel still moves 1 MiB intact');
  t.equal((await get(node.app.servers.readiness, '/healthz/ready')).status, 200, 'the proxy is alive and ready');
  t.ok(node.lines.some((l) => l.includes('SOCKS5 request refused') && l.includes('unsupported SOCKS command 2')), 'refusals are logged with their reason');
  const fresh = await socksConnect(node.socks, CLIENT, { host: APP, port: appPort });
  t.equal(await echoHash(fresh, more), sha(more), 'and a new tunnel works');
  fresh.destroy();
}
