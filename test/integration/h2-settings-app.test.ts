/**
 * HTTP2_STREAM_WINDOW_SIZE / HTTP2_CONNECTION_WINDOW_SIZE / HTTP2_FRAME_SIZE reach the real
 * sessions: two nodes built by the real composition with non-default values, one tunnel between
 * them, and both ends' HTTP/2 sessions inspected — what each advertised (localSettings), what
 * each received from the other (remoteSettings), and the connection windows each granted with
 * WINDOW_UPDATE (seen from the other side as its remote window). The unit tests cover the option
 * builders; this covers the wiring from env to the sessions (src/data-plane.ts h2SettingsFrom).
 */
import t from 'tap';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { createServer } from 'node:net';
import type * as http2 from 'node:http2';
import { initCaDir } from '../../src/identity/ca-dir';
import { socksConnect } from '../../src/proxy/socks5-client';
import { loopbackBlock } from '../helpers/loopback';
import { eventually } from '../helpers/eventually';
import { echoHash, pattern, sha, startNode, workloadDoc, writeSnapshot } from '../helpers/mesh-nodes';

const net = loopbackBlock(12, 8);
const CLIENT = net.ip(1);
const SERVER = net.ip(11);

const KiB = 1024;
const MiB = 1024 * KiB;
// none of them a default (4 MiB, 16 MiB, 1 MiB), and all different from each other
const STREAM_WINDOW = 3 * MiB + 7;
const CONNECTION_WINDOW = 6 * MiB + 13;
const FRAME_SIZE = 32 * KiB;

const dir = mkdtempSync(join(tmpdir(), 'ztunnel-h2app-'));
const snapshotPath = join(dir, 'snapshot.json');

t.before(async () => {
  await initCaDir(join(dir, 'ca'));
  writeSnapshot(snapshotPath, JSON.stringify({ workloads: [workloadDoc('client', CLIENT, 'node-a'), workloadDoc('server', SERVER, 'node-b')], services: [], policies: [] }));
});

for (const nativeRelay of [true, false]) t.test(`HTTP2_* settings on both ends' sessions (ZTUNNEL_NATIVE_RELAY=${nativeRelay})`, async (t) => {
  const app = createServer({ allowHalfOpen: true }, (s) => s.pipe(s).on('error', () => undefined));
  app.listen(8080, SERVER);
  await once(app, 'listening');
  t.teardown(() => app.close());
  const env = {
    HTTP2_STREAM_WINDOW_SIZE: String(STREAM_WINDOW),
    HTTP2_CONNECTION_WINDOW_SIZE: String(CONNECTION_WINDOW),
    HTTP2_FRAME_SIZE: String(FRAME_SIZE),
  };
  const common = { snapshotPath, caDir: join(dir, 'ca'), nativeRelay, env };
  const a = await startNode({ name: 'node-a', ip: net.ip(250), ...common });
  const b = await startNode({ name: 'node-b', ip: net.ip(251), ...common });
  t.teardown(async () => {
    await Promise.all([a.app.close(), b.app.close()]);
  });

  // the sessions are private to the pool and the server; their 'stream' event and connection
  // set are where they can be seen from outside
  const serverSessions: http2.ServerHttp2Session[] = [];
  (b.app.data.hbone as unknown as { h2: http2.Http2Server }).h2.on('stream', (s: http2.ServerHttp2Stream) => void serverSessions.push(s.session as http2.ServerHttp2Session));
  const s = await socksConnect(a.socks, CLIENT, { host: SERVER, port: 8080 });
  const pooled = [...(a.app.data.client.pool as unknown as { all: Set<{ session: http2.ClientHttp2Session }> }).all];
  t.equal(pooled.length, 1, 'one pooled connection from A to B');
  t.equal(serverSessions.length, 1, 'B saw the CONNECT');
  const client = pooled[0]!.session;
  const server = serverSessions[0]!;

  const advertised = { initialWindowSize: STREAM_WINDOW, maxFrameSize: FRAME_SIZE };
  t.match(client.localSettings, advertised, 'the client session advertises the stream window and frame size');
  t.match(server.localSettings, advertised, 'the server session advertises them');
  t.match(server.remoteSettings, advertised, 'B received them from A');
  t.match(client.remoteSettings, advertised, 'A received them from B');
  // no DATA has flowed yet (CONNECT and 200 are HEADERS): the windows are whole
  await eventually(
    () => client.state.remoteWindowSize === CONNECTION_WINDOW && server.state.remoteWindowSize === CONNECTION_WINDOW,
    `each side granted a ${CONNECTION_WINDOW}-byte connection window (A may send ${client.state.remoteWindowSize}, B ${server.state.remoteWindowSize})`,
  );
  t.equal(client.state.localWindowSize, CONNECTION_WINDOW, "A's receive window is the configured connection window");
  t.equal(server.state.localWindowSize, CONNECTION_WINDOW, "B's receive window is the configured connection window");

  // and the tunnel works with them: more than a connection window each way, byte-exact
  const payload = pattern(16 * MiB, 3);
  t.equal(await echoHash(s, payload), sha(payload), '16 MiB echoed byte-exact');
  s.destroy();
});
