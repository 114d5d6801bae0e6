/**
 * The HBONE data path end to end on loopback 127.5.1.0/24: HboneClient (pooled HTTP/2 over real
 * mTLS from the LocalCa) → HboneServer (:15008-style listener of the destination workload) →
 * a TCP app on the destination IP. Bytes are checked by sha256, not by size.
 */
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { loopbackBlock } from '../helpers/loopback';
import { parseBaggage } from '../../src/proxy/baggage';
import {
  closed,
  echoServer,
  makeCerts,
  readAll,
  sha256,
  startHarness,
  tcpServer,
  writeAll,
  type HboneTunnel,
} from './hbone-fixtures';

const lb = loopbackBlock(5, 1);
const MiB = 1024 * 1024;

t.test('HBONE data path', async (t) => {
  const certs = await makeCerts();
  const h = await startHarness(lb, { src: 2, dst: 10 }, certs);
  const echo = await echoServer(h.dstIp);
  t.teardown(async () => {
    await echo.close();
    await h.close();
  });

  t.test('64 MiB each way, byte-exact', async (t) => {
    const up = randomBytes(64 * MiB);
    const down = randomBytes(64 * MiB);
    let upstreamGot: Promise<Buffer> = Promise.resolve(Buffer.alloc(0));
    const app = await tcpServer(h.dstIp, (s) => {
      upstreamGot = readAll(s);
      void writeAll(s, down, 256 * 1024).catch(() => undefined);
    });
    t.teardown(() => app.close());
    const client = h.client();
    const tun = await client.connect(h.request(app.port));
    t.equal(tun.status, 200);
    const received = readAll(tun.stream);
    await writeAll(tun.stream, up, 256 * 1024);
    const got = await received;
    const sent = await upstreamGot;
    t.equal(got.length, down.length, 'client received every byte');
    t.equal(sha256(got), sha256(down), 'upstream → client intact');
    t.equal(sent.length, up.length, 'upstream received every byte');
    t.equal(sha256(sent), sha256(up), 'client → upstream intact');
    await closed(tun.stream);
    // the server records the connection once the relay has finished on its side too
    await h.waitClosed(1);
    const last = h.events.closed.at(-1);
    t.same(last, { reason: 'complete', received: up.length, sent: down.length }, 'byte counters and reason recorded');
    t.equal(h.manager.size, 0, 'released from the connection manager');
  });

  t.test('200 concurrent tunnels share pooled connections, never more than the cap each', async (t) => {
    const client = h.client({ maxStreamsPerConnection: 50 });
    const before = h.server.sessionCount;
    const tunnels = await Promise.all(Array.from({ length: 200 }, () => client.connect(h.request(echo.port))));
    t.equal(tunnels.length, 200);
    const stats = client.stats();
    t.equal(stats.connections, 4, '200 streams / cap 50 = 4 connections');
    t.equal(stats.streams, 200, 'all 200 streams open at once');
    for (const c of stats.byConnection) t.ok(c.peakStreams <= 50, `connection ${c.id} peaked at ${c.peakStreams} streams`);
    t.equal(h.server.sessionCount - before, 4, 'the server saw 4 TLS sessions');
    t.equal(h.manager.size, 200, 'every tunnel is registered with the connection manager');
    const echoes = await Promise.all(
      tunnels.map(async (tun, i) => {
        const got = readAll(tun.stream);
        tun.stream.end(`tunnel ${i}\n`);
        return (await got).toString();
      }),
    );
    t.same(echoes, tunnels.map((_, i) => `tunnel ${i}\n`), 'each tunnel carries its own bytes');
    await Promise.all(tunnels.map((x) => closed(x.stream)));
    t.equal(client.stats().streams, 0, 'stream slots released');
    const again = await client.connect(h.request(echo.port));
    t.equal(client.stats().connections, 4, 'a later tunnel reuses a pooled connection');
    again.stream.end();
    await closed(again.stream);
  });

  t.test('the 200 answer carries the destination baggage; the server sees the source IP and identity', async (t) => {
    const client = h.client();
    const tun = await client.connect(h.request(echo.port));
    t.same(parseBaggage(tun.responseHeaders['baggage'] as string), {
      clusterId: 'Kubernetes',
      namespace: 'default',
      workloadName: 'echo',
      workloadType: 'deployment',
      serviceName: 'echo',
      revision: 'v1',
    });
    const rec = h.events.records.at(-1);
    t.match(rec, {
      info: { srcIp: h.srcIp, identity: { serviceAccount: 'sleep' }, dstIp: h.dstIp, dstPort: echo.port },
      dst: { uid: 'c1//v1/Pod/default/echo' },
      baggage: { namespace: 'default', workloadName: 'sleep', workloadType: 'deployment' },
      traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00',
    }, 'onOpen gets the connection, the destination and the client headers');
    const [row] = h.manager.list();
    t.match(row, { dst: `${h.dstIp}:${echo.port}`, srcIdentity: 'spiffe://cluster.local/ns/default/sa/sleep', dstWorkload: 'c1//v1/Pod/default/echo' });
    t.match(row?.src, new RegExp(`^${h.srcIp.replace(/\./g, '\\.')}:\\d+$`), 'bound to the source IP');
    const session = tun.stream.session!;
    t.equal(session.state.effectiveLocalWindowSize, 16 * MiB, 'client raised its connection window');
    t.equal(session.state.remoteWindowSize, 16 * MiB, 'server raised its connection window');
    t.match(session.remoteSettings, { initialWindowSize: 4 * MiB, maxFrameSize: MiB, maxConcurrentStreams: 200 }, 'server settings');
    t.match(session.localSettings, { initialWindowSize: 4 * MiB, maxFrameSize: MiB }, 'client settings');
    tun.stream.end();
    await closed(tun.stream);
  });

  t.test('half-close: client EOF reaches upstream, which still answers', async (t) => {
    const app = await tcpServer(h.dstIp, (s) => {
      let n = 0;
      s.on('data', (c: Buffer) => (n += c.length));
      s.on('end', () => s.end(`after your EOF: ${n} bytes\n`));
    });
    t.teardown(() => app.close());
    const tun = await h.client().connect(h.request(app.port));
    const got = readAll(tun.stream);
    tun.stream.end(Buffer.alloc(5000, 1));
    t.equal((await got).toString(), 'after your EOF: 5000 bytes\n');
  });

  t.test('half-close: upstream EOF reaches the client, which can still send', async (t) => {
    let upstreamGot!: Promise<Buffer>;
    const app = await tcpServer(h.dstIp, (s) => {
      upstreamGot = readAll(s);
      s.end('bye\n');
    });
    t.teardown(() => app.close());
    const tun: HboneTunnel = await h.client().connect(h.request(app.port));
    const got = await readAll(tun.stream);
    t.equal(got.toString(), 'bye\n', 'client saw the upstream EOF');
    t.notOk(tun.stream.writableEnded, 'client side still open for writing');
    tun.stream.end('still talking after your EOF\n');
    t.equal((await upstreamGot).toString(), 'still talking after your EOF\n');
    await closed(tun.stream);
  });

  t.test('tiny writes: 1-byte ping-pong and a burst of 1-byte writes', async (t) => {
    const tun = await h.client().connect(h.request(echo.port));
    const s = tun.stream;
    const echoed: number[] = [];
    for (let i = 0; i < 200; i++) {
      const back = new Promise<Buffer>((r) => s.once('data', r));
      s.write(Buffer.of(i));
      const b = await back;
      echoed.push(...b);
      if (b.length !== 1 || b[0] !== i) break;
    }
    t.same(echoed, Array.from({ length: 200 }, (_, i) => i), '200 single bytes, each echoed alone before the next');
    const got = readAll(s);
    const burst = randomBytes(10_000);
    for (let i = 0; i < burst.length; i++) s.write(burst.subarray(i, i + 1));
    s.end();
    t.equal(sha256(await got), sha256(burst), '10,000 single-byte writes arrive intact and in order');
  });

  t.test('an upstream reset resets the tunnel (no clean EOF)', async (t) => {
    const app = await tcpServer(h.dstIp, (s) => {
      s.once('data', () => s.resetAndDestroy());
    });
    t.teardown(() => app.close());
    const tun = await h.client().connect(h.request(app.port));
    const ended = new Promise<boolean>((r) => {
      tun.stream.once('end', () => r(true));
      tun.stream.once('close', () => r(false));
    });
    tun.stream.write('x');
    t.equal(await ended, false, 'the stream closed without a clean end');
    t.not(tun.stream.rstCode, 0, `RST_STREAM code ${tun.stream.rstCode}`);
  });
});
