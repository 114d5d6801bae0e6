/**
 * Overload (issue 9): ZTUNNEL_MAX_CONNECTIONS and ZTUNNEL_HANDSHAKE_TIMEOUT on loopback
 * 127.10.1.0/24.
 *  - HboneServer level: handshakes that never finish hold places in the limit only until the
 *    handshake deadline cuts them; a good client refused while they hold the budget gets in after;
 *    every refusal and every cut is logged with its reason.
 *  - The real app with 2 workers (both relay engines): past the limit new SOCKS5 clients are reset
 *    while the admitted ones keep moving bytes intact, the budget is one for the whole process (not
 *    a per-worker share), closed connections give their places back, and a dead worker's places
 *    are reclaimed (on both relay engines).
 */
import t, { type Test as Tap } from 'tap';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig } from '../../src/config/config';
import { initCaDir } from '../../src/identity/ca-dir';
import { Logging } from '../../src/logging/logger';
import { startNodeApp } from '../../src/app';
import { ConnectionLimit, refusalLogger } from '../../src/net/conn-limit';
import { socksConnect } from '../../src/proxy/socks5-client';
import { loopbackBlock } from '../helpers/loopback';
import { eventually } from '../helpers/eventually';
import { echoHash, nodeEnv } from '../helpers/mesh-nodes';
import { echoServer, makeCerts, readAll, startHarness } from './hbone-fixtures';

const lb = loopbackBlock(10, 1);
const CLIENT = lb.ip(1);
const PROXY = lb.ip(2);
const ECHO = lb.ip(20);

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');


/** A raw TCP connection that sends `bytes` and then nothing; resolves with it once connected. */
function stalled(host: string, port: number, bytes: Buffer): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host, port, localAddress: CLIENT }, () => {
      s.write(bytes);
      resolve(s);
    });
    s.on('error', () => undefined);
    s.once('error', reject);
  });
}

const closedSocket = (s: net.Socket): Promise<void> => new Promise((r) => (s.destroyed ? r() : s.once('close', () => r())));

t.test('HBONE listener: stalled handshakes are cut at the deadline and give their places back', async (t) => {
  const certs = await makeCerts();
  const limit = new ConnectionLimit(ConnectionLimit.create(3, 1), 0);
  const refusals: Record<string, unknown>[] = [];
  const h = await startHarness(lb, { src: 1, dst: 10 }, certs, {
    handshakeTimeoutMs: 400,
    connectionLimit: limit,
    onLimitRefused: refusalLogger({ warn: (o) => refusals.push(o as Record<string, unknown>) }, limit),
  });
  const echo = await echoServer(h.dstIp);
  t.teardown(async () => {
    await echo.close();
    await h.close();
  });

  // one good tunnel first: it holds one place and must keep working through all of this
  const good = await h.client().connect(h.request(echo.port));
  t.equal(limit.inUse, 1);

  // two peers that open TCP and never finish a handshake: one silent, one stuck after a partial
  // ClientHello (a TLS record header announcing more than it sends)
  const silent = await stalled(h.dstIp, h.hbonePort, Buffer.alloc(0));
  const partial = await stalled(h.dstIp, h.hbonePort, Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc]));
  await eventually(() => limit.inUse === 3, 'the stalled peers to be admitted');

  // the budget is full: a new client (on its own pool) is reset before any TLS
  const refused = h.client();
  await t.rejects(refused.connect(h.request(echo.port)), 'a fourth connection is refused while the limit is reached');
  t.match(refusals[0], { limit: 3, listener: `${h.dstIp}:${h.hbonePort}` }, 'the refusal is logged');
  t.equal(h.events.opened, 1, 'the refused client never reached the app');

  // the deadline cuts both stalled peers, with the reason logged
  await Promise.all([closedSocket(silent), closedSocket(partial)]);
  const cut = h.logs.filter((l) => l.msg === 'HBONE TLS connection refused' && /timeout/i.test(String(l.obj['reason'])));
  t.equal(cut.length, 2, 'both stalled handshakes are logged as timed out');
  await eventually(() => limit.inUse === 1, 'their places to be given back');

  // the good tunnel never noticed, and a new client gets in now
  const echoed = readAll(good.stream);
  good.stream.end('still here');
  t.equal((await echoed).toString(), 'still here', 'the established tunnel kept working');
  const again = await h.client().connect(h.request(echo.port));
  t.equal(again.status, 200, 'a new connection is admitted once the stalled ones are gone');
  // ended, not destroyed: a client RST_STREAM left behind makes Node 20 spin at exit (see src/main.ts)
  const done = readAll(again.stream);
  again.stream.end();
  await done;
});

const dir = mkdtempSync(join(tmpdir(), 'ztunnel-overload-'));
let echoPort = 0;
let echoSrv: net.Server;

t.before(async () => {
  await initCaDir(join(dir, 'ca'));
  echoSrv = net.createServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => undefined);
    s.pipe(s);
  });
  await new Promise<void>((r) => echoSrv.listen(0, ECHO, r));
  echoPort = (echoSrv.address() as net.AddressInfo).port;
});
t.teardown(() => void echoSrv.close());

for (const nativeRelay of [true, false]) {
  t.test(`app with 2 workers, ZTUNNEL_MAX_CONNECTIONS=20 (${nativeRelay ? 'splice' : 'JS'} relay)`, (t) => appLimit(t, nativeRelay));
}

async function appLimit(t: Tap, nativeRelay: boolean): Promise<void> {
  const MAX = 20;
  const xdsPath = join(dir, `snapshot-${nativeRelay}.json`);
  writeFileSync(xdsPath, JSON.stringify({ workloads: [{ uid: 'c1//v1/Pod/default/client', name: 'client', namespace: 'default', serviceAccount: 'client', workloadIps: [CLIENT], protocol: 'HBONE', node: 'node-o' }] }));
  const config = parseConfig(
    nodeEnv({
      name: 'node-o',
      ip: PROXY,
      snapshotPath: xdsPath,
      caDir: join(dir, 'ca'),
      nativeRelay,
      env: { ZTUNNEL_WORKER_THREADS: '2', ZTUNNEL_MAX_CONNECTIONS: String(MAX), ZTUNNEL_HANDSHAKE_TIMEOUT: '2s', LOG_LEVEL: 'error' },
    }),
    { logicalCpus: 2 },
  );
  const app = await startNodeApp(config, new Logging({ ...config.log, destination: { write: () => undefined } }));
  const sockets: net.Socket[] = [];
  t.teardown(async () => {
    for (const s of sockets) s.destroy();
    await app.close();
  });
  const pool = app.pool;
  if (pool === null) {
    t.fail('the addon did not load: no worker pool');
    return;
  }
  await eventually(() => app.readiness.ready(), 'readiness');
  const socks = app.addresses().get('socks5')!;
  const open = async (): Promise<net.Socket> => {
    const s = await socksConnect(socks, CLIENT, { host: ECHO, port: echoPort });
    s.on('error', () => undefined);
    sockets.push(s);
    return s;
  };
  /** Tries `n` connections at once; resolves with how many the proxy admitted. */
  const attempt = async (n: number): Promise<{ ok: net.Socket[]; refused: number }> => {
    const results = await Promise.allSettled(Array.from({ length: n }, open));
    const ok = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
    return { ok, refused: n - ok.length };
  };

  const admitted: net.Socket[] = [];
  for (let i = 0; i < MAX; i++) admitted.push(await open());
  const ping = Buffer.from('ping');
  await Promise.all(admitted.map((s) => echoHash(s, ping)));
  const live = (await pool.stats()).map((s) => s.live);
  t.ok(live.every((n) => n > 0), `both workers hold some of the ${MAX} (${live.join(', ')}): one budget, not a per-worker share`);

  const rssBefore = process.memoryUsage().rss;
  // a flood of 200 while every admitted connection moves 1 MiB each way
  const payload = randomBytes(1024 * 1024);
  const [hashes, flood] = await Promise.all([Promise.all(admitted.map((s) => echoHash(s, payload))), attempt(200)]);
  t.equal(flood.refused, 200, 'every connection over the limit is refused');
  t.ok(hashes.every((h) => h === sha(payload)), `${MAX} admitted connections moved 1 MiB each way intact during the flood`);
  const grewMiB = (process.memoryUsage().rss - rssBefore) / 1024 / 1024;
  t.comment(`RSS change across the flood: ${grewMiB.toFixed(1)} MiB`);
  t.ok(grewMiB < 256, 'memory stays bounded through the flood');

  // closing connections gives their places back, to whichever worker accepts next
  for (const s of admitted.splice(0, 10)) s.destroy();
  await eventually(async () => (await pool.liveConnections()) === MAX - 10, 'the closed connections to be released');
  const refill = await attempt(15);
  t.equal(refill.ok.length, 10, 'exactly the freed places are taken again');
  admitted.push(...refill.ok);
  t.equal(refill.refused, 5);

  const before = (await pool.stats()).find((s) => s.workerId === 0)!.live;
  t.ok(before > 0, 'worker 0 holds connections');
  await pool.terminateWorker(0);
  await eventually(() => pool.readyCount() === 2, 'the replacement worker');
  await eventually(() => admitted.filter((s) => !s.destroyed && !s.readableEnded).length === MAX - before, 'the dead worker connections to close');
  const after = await attempt(before + 5);
  t.equal(after.ok.length, before, "the dead worker's places are reclaimed, no more");
}
