/**
 * tcpConnect, the inbound side's upstream dial (app connect after an HBONE CONNECT): its deadline
 * (ztunnel's 10 s connect timeout), its error shape, and that a connected socket is handed over
 * with the deadline cleared. The opener is injected, so "never answers" needs no blackhole route.
 */
import t from 'tap';
import { createServer, Socket, type AddressInfo } from 'node:net';
import { once } from 'node:events';
import { DEFAULT_UPSTREAM_CONNECT_TIMEOUT_MS, tcpConnect } from '../../../src/proxy/inbound';
import { ProxyError } from '../../../src/errors';
import type { ConnInfo } from '../../../src/authz/types';
import { loopbackBlock } from '../../helpers/loopback';

const net = loopbackBlock(12, 5);
const info: ConnInfo = { srcIp: net.ip(1), srcPort: 40000, identity: null, dstIp: net.ip(2), dstPort: 1 };

t.test('an upstream that never answers fails with ERR_CONNECT "no answer within <timeout> ms"', async (t) => {
  // a socket that is never told to connect: neither 'connect' nor 'error' ever comes on its own
  const opened: Socket[] = [];
  const never = (): Socket => {
    const s = new Socket();
    opened.push(s);
    return s;
  };
  // socket deadlines are unref'd timers and an unconnected socket holds no handle: keep the
  // process alive meanwhile (bounded; cleared as soon as the answer is in)
  const keepAlive = setTimeout(() => undefined, 5000);
  const err = await tcpConnect(50, never)({ ip: net.ip(2), port: 1 }, info).then(
    () => null,
    (e: unknown) => e,
  );
  clearTimeout(keepAlive);
  t.ok(err instanceof ProxyError, 'a ProxyError');
  t.equal((err as ProxyError).code, 'ERR_CONNECT');
  t.match((err as ProxyError).message, `upstream ${net.ip(2)}:1: no answer within 50 ms`);
  t.equal((err as ProxyError & { cause?: ProxyError }).cause?.code, 'ERR_TIMEOUT', 'the cause says it was the deadline');
  t.ok(opened[0]!.destroyed, 'the abandoned socket is destroyed');
});

t.test('the default deadline is 10 000 ms', async (t) => {
  t.equal(DEFAULT_UPSTREAM_CONNECT_TIMEOUT_MS, 10_000);
  // read the deadline tcpConnect put on the socket instead of waiting 10 s for it
  let socket: Socket | undefined;
  const pending = tcpConnect(undefined, () => (socket = new Socket()))({ ip: net.ip(2), port: 1 }, info).catch((e: unknown) => e);
  t.equal(socket!.timeout, 10_000, 'the connecting socket carries a 10 000 ms timeout');
  socket!.destroy(Object.assign(new Error('test over'), { code: 'ETEST' }));
  const err = (await pending) as ProxyError;
  t.equal(err.code, 'ERR_CONNECT', 'an error during the connect is ERR_CONNECT too');
  t.match(err.message, /ETEST/);
});

t.test('a real connect resolves with the socket, its deadline cleared; a refused one is ERR_CONNECT', async (t) => {
  const server = createServer((s) => s.end());
  server.listen(0, net.ip(3));
  await once(server, 'listening');
  t.teardown(() => server.close());
  const { port } = server.address() as AddressInfo;
  const s = (await tcpConnect(1000)({ ip: net.ip(3), port }, { ...info, srcIp: net.ip(4) })) as Socket;
  t.equal(s.timeout, 0, 'no timeout left on a connected socket (it would cut idle tunnels)');
  t.equal(s.localAddress, net.ip(4), 'bound to the client pod IP when both ends are loopback');
  s.destroy();
  server.close();
  await once(server, 'close');
  const refused = (await tcpConnect(1000)({ ip: net.ip(3), port }, info).catch((e: unknown) => e)) as ProxyError;
  t.equal(refused.code, 'ERR_CONNECT');
  t.match(refused.message, /ECONNREFUSED/);
});
