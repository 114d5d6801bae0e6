// KEEPALIVE_* reach every socket the proxy connects, through each opener: node mode's upstream
// opener (HBONE inbound leg, SOCKS5 TCP/passthrough legs), the HBONE pool's TCP, and the in-pod
// sockets the addon makes inside a namespace (here: this process's own, as root). Read back from
// the kernel with getsockopt (native.socketInfo).
import t from 'tap';
import { once } from 'node:events';
import { openSync, closeSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { parseConfig } from '../../src/config/config';
import { loadNative, type NativeApi } from '../../src/native/addon';
import { fdOf } from '../../src/native/relay';
import { applyKeepalive, keepaliveOptions, withKeepalive } from '../../src/net/keepalive';
import { podInboundSocket, podOutboundSocket, podTunnelSocket, type PodSocketOptions } from '../../src/inpod/pod-sockets';
import { openLoopbackAware, tcpConnect } from '../../src/proxy/inbound';
import { HbonePool } from '../../src/proxy/pool';
import { DEFAULT_H2_SETTINGS } from '../../src/proxy/h2-settings';
import type { ConnInfo } from '../../src/authz/types';
import { closeServer } from '../helpers/native-fixtures';
import { loopbackBlock } from '../helpers/loopback';

const net = loopbackBlock(13, 1);
const native = loadNative();
const TUNED = { KEEPALIVE_TIME: '30s', KEEPALIVE_INTERVAL: '5s', KEEPALIVE_RETRIES: '4' };
const ON = { keepalive: 1, keepIdle: 30, keepIntvl: 5, keepCnt: 4 };

function kaOf(env: Record<string, string>): ReturnType<typeof keepaliveOptions> {
  return keepaliveOptions(parseConfig(env, { logicalCpus: 2 }).keepalive);
}

async function server(t: tap.Test): Promise<{ srv: Server; port: number }> {
  const srv = createServer((s) => s.on('error', () => undefined).resume());
  srv.listen(0, net.ip(1));
  await once(srv, 'listening');
  t.teardown(() => closeServer(srv));
  return { srv, port: (srv.address() as { port: number }).port };
}

function info(s: Socket): Record<string, number> {
  const { keepalive, keepIdle, keepIntvl, keepCnt } = native.socketInfo(fdOf(s) as number);
  return { keepalive, keepIdle, keepIntvl, keepCnt };
}

const conn = { srcIp: net.ip(9), srcPort: 1 } as unknown as ConnInfo;

t.test('config.keepalive becomes whole-second socket options, or none when disabled', async (t) => {
  t.same(kaOf(TUNED), { idleSec: 30, intervalSec: 5, count: 4 });
  t.same(kaOf({}), { idleSec: 180, intervalSec: 180, count: 9 }, "ztunnel's defaults");
  t.equal(kaOf({ ...TUNED, KEEPALIVE_ENABLED: 'false' }), null);
});

t.test('node mode upstream opener: keepalive set once connected (addon, and Node fallback)', async (t) => {
  const { port } = await server(t);
  for (const [label, addon] of [['addon', native], ['no addon', null]] as [string, NativeApi | null][]) {
    const s = (await tcpConnect(undefined, withKeepalive(openLoopbackAware, kaOf(TUNED), addon))({ ip: net.ip(1), port }, conn)) as Socket;
    const got = info(s);
    if (addon) t.same(got, ON, `${label}: idle, interval and count`);
    // libuv's setKeepAlive sets SO_KEEPALIVE and TCP_KEEPIDLE only
    else t.match(got, { keepalive: 1, keepIdle: 30 }, `${label}: Node sets the idle time`);
    s.destroy();
  }
  // one shared 'connect' listener per opener, not a closure per socket; gone once it ran
  const opener = withKeepalive(openLoopbackAware, kaOf(TUNED), native);
  const [x, y] = [opener({ ip: net.ip(1), port }, conn), opener({ ip: net.ip(1), port }, conn)];
  t.equal(x.listeners('connect').length, 1);
  t.equal(x.listeners('connect')[0], y.listeners('connect')[0], 'both sockets share the one listener');
  await Promise.all([once(x, 'connect'), once(y, 'connect')]);
  t.same([info(x), info(y)], [ON, ON], 'and it set keepalive on each');
  t.equal(x.listenerCount('connect') + y.listenerCount('connect'), 0, 'removed after it ran');
  x.destroy();
  y.destroy();
  const off = (await tcpConnect(undefined, withKeepalive(openLoopbackAware, kaOf({ ...TUNED, KEEPALIVE_ENABLED: 'false' }), native))({ ip: net.ip(1), port }, conn)) as Socket;
  t.equal(info(off).keepalive, 0, 'KEEPALIVE_ENABLED=false: off');
  off.destroy();
});

t.test('HBONE pool: the TCP under a new connection gets keepalive before TLS runs', async (t) => {
  const { port } = await server(t);
  for (const [label, env, want] of [
    ['tuned', TUNED, ON],
    ['disabled', { ...TUNED, KEEPALIVE_ENABLED: 'false' }, { keepalive: 0 }],
  ] as const) {
    const ka = kaOf(env);
    let seen: Record<string, number> | null = null;
    const pool = new HbonePool({
      h2: DEFAULT_H2_SETTINGS,
      maxStreamsPerConnection: 100,
      unusedReleaseMs: 60_000,
      connectTimeoutMs: 5_000,
      tickMs: 0,
      onTcpConnect: (tcp) => {
        applyKeepalive(tcp, ka, native);
        seen = info(tcp);
        tcp.destroy(); // the plain server never speaks TLS: end the attempt here
      },
    });
    await pool.acquire('k', () => ({ host: net.ip(1), port, tls: { rejectUnauthorized: false, ALPNProtocols: ['h2'] } })).catch(() => undefined);
    pool.destroy();
    t.match(seen, want, label);
  }
});

t.test('in-pod sockets (addon, inside a namespace) carry keepalive from creation', async (t) => {
  const { port } = await server(t);
  const nsFd = openSync('/proc/self/ns/net', 'r');
  t.teardown(() => closeSync(nsFd));
  for (const [label, env, want] of [
    ['tuned', TUNED, ON],
    ['disabled', { ...TUNED, KEEPALIVE_ENABLED: 'false' }, { keepalive: 0 }],
  ] as const) {
    const o: PodSocketOptions = { native, netns: { fd: nsFd, closed: false }, mark: 1337, keepalive: kaOf(env) };
    const openers: [string, () => Socket][] = [
      ['podOutboundSocket', () => podOutboundSocket(o, net.ip(1), port)],
      ['podTunnelSocket', () => podTunnelSocket(o, net.ip(1), port)],
      ['podInboundSocket', () => podInboundSocket(o, net.ip(1), port, net.ip(7))],
    ];
    for (const [name, open] of openers) {
      const s = open();
      await once(s, 'connect');
      t.match(info(s), want, `${label}: ${name}`);
      s.destroy();
    }
  }
});

t.test('native.setKeepalive: sets all three on a connected socket, null turns it off, errors are Node-shaped', async (t) => {
  const { port } = await server(t);
  const s = (await tcpConnect()({ ip: net.ip(1), port }, conn)) as Socket;
  const fd = fdOf(s) as number;
  native.setKeepalive(fd, { idleSec: 7, intervalSec: 3, count: 2 });
  t.same(info(s), { keepalive: 1, keepIdle: 7, keepIntvl: 3, keepCnt: 2 });
  native.setKeepalive(fd, null);
  t.equal(info(s).keepalive, 0);
  t.throws(() => native.setKeepalive(fd, { idleSec: 0, intervalSec: 1, count: 1 }), { code: 'ERR_NATIVE_ARG', message: /keepalive\.idleSec must be an integer in 1\.\.32767, got 0/ });
  t.throws(() => native.setKeepalive(fd, { idleSec: 1, intervalSec: 1, count: 128 }), { code: 'ERR_NATIVE_ARG', message: /keepalive\.count/ });
  s.destroy();
  const closed = native.dup(1);
  native.close(closed);
  t.throws(() => native.setKeepalive(closed, { idleSec: 1, intervalSec: 1, count: 1 }), { code: 'EBADF', syscall: 'setsockopt' });
  // a socket already gone is left alone by the helper (no throw)
  t.doesNotThrow(() => applyKeepalive(s, { idleSec: 1, intervalSec: 1, count: 1 }, native));
});
