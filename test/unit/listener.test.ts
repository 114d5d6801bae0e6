import t from 'tap';
import { connect, createServer, type Socket } from 'node:net';
import { once } from 'node:events';
import { Listener } from '../../src/net/listener';
import { loopbackBlock } from '../helpers/loopback';
import { isProxyError } from '../../src/errors';

const net = loopbackBlock(1, 1);

t.test('binds port 0, reports the address, tracks and drains sockets', async (t) => {
  const l = new Listener('test', createServer((s) => s.resume()));
  const addr = await l.listen(net.ip(1), 0);
  t.equal(addr.host, net.ip(1));
  t.ok(addr.port > 0);
  t.equal(addr.text, `${net.ip(1)}:${addr.port}`);
  const c1 = connect(addr.port, addr.host);
  await once(c1, 'connect');
  while (l.connectionCount < 1) await new Promise((r) => setImmediate(r));
  t.equal(l.connectionCount, 1);

  await l.stopAccepting();
  const refused = connect(addr.port, addr.host);
  const [err] = (await once(refused, 'error')) as [NodeJS.ErrnoException];
  t.equal(err.code, 'ECONNREFUSED', 'no new connections after stopAccepting');
  t.equal(l.connectionCount, 1, 'existing connection survives stopAccepting');

  const closed = once(c1, 'close');
  l.destroyAll();
  await closed;
  t.equal(l.connectionCount, 0);
});

t.test('a busy address is a coded error naming the listener', async (t) => {
  const a = new Listener('first', createServer());
  const { port } = await a.listen(net.ip(2), 0);
  const b = new Listener('second', createServer());
  const err = await b.listen(net.ip(2), port).catch((e: unknown) => e);
  t.ok(isProxyError(err, 'ERR_LISTEN'));
  t.match((err as Error).message, new RegExp(`second: cannot listen on ${net.ip(2).replace(/\./g, '\\.')}:${port}: EADDRINUSE`));
  await a.close();
});

t.test('close() ends tracked sockets', async (t) => {
  const sockets: Socket[] = [];
  const l = new Listener('x', createServer((s) => sockets.push(s)));
  const { port } = await l.listen(net.ip(3), 0);
  const c = connect(port, net.ip(3));
  await once(c, 'connect');
  while (sockets.length < 1) await new Promise((r) => setImmediate(r));
  const closed = once(c, 'close');
  await l.close();
  await closed;
  t.equal(l.connectionCount, 0);
  t.notOk(l.server.listening);
});
