/**
 * The admin building blocks on their own: readiness transitions over real HTTP, the admin routes
 * (methods, 404/405 with help), POST /logging against a real Logging, and the access-log lines.
 */
import t from 'tap';
import { adminHandler } from '../../../src/admin/admin-server';
import { startHttpEndpoint, type HttpEndpoint } from '../../../src/admin/http';
import { changeLogLevel } from '../../../src/admin/logging';
import { Readiness, readinessHandler } from '../../../src/admin/readiness';
import { AccessLog } from '../../../src/logging/access-log';
import { Logging } from '../../../src/logging/logger';
import { loopbackBlock } from '../../helpers/loopback';

const net = loopbackBlock(8, 3);

async function get(ep: HttpEndpoint, path: string, method = 'GET'): Promise<{ status: number; body: string; allow: string | null }> {
  const res = await fetch(`http://${ep.address.text}${path}`, { method });
  return { status: res.status, body: await res.text(), allow: res.headers.get('allow') };
}

function collector(): { lines: Record<string, unknown>[]; write(s: string): void } {
  const lines: Record<string, unknown>[] = [];
  return { lines, write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) };
}

t.test('readiness: 500 with the pending tasks until all are done, 500 again once draining', async (t) => {
  const r = new Readiness();
  const snapshot = r.register('snapshot');
  const certs = r.register('certificates');
  const ep = await startHttpEndpoint('readiness', { host: net.ip(1), port: 0 }, readinessHandler(r));
  t.teardown(() => ep.close());
  t.same(await get(ep, '/healthz/ready'), { status: 500, body: 'not ready, pending: certificates, snapshot\n', allow: null });
  snapshot();
  snapshot();
  t.same(await get(ep, '/healthz/ready'), { status: 500, body: 'not ready, pending: certificates\n', allow: null });
  certs();
  t.same(await get(ep, '/healthz/ready'), { status: 200, body: 'ready\n', allow: null });
  t.ok(r.ready());
  r.markDraining();
  t.same(await get(ep, '/healthz/ready'), { status: 500, body: 'not ready, pending: draining\n', allow: null });
  t.equal((await get(ep, '/healthz/ready', 'POST')).status, 405);
  t.equal((await get(ep, '/other')).status, 404);
});

t.test('admin routes: list, methods, 404 and 405 with help', async (t) => {
  const out = collector();
  const logging = new Logging({ format: 'json', level: 'info', destination: out });
  let quits = 0;
  const changes: string[] = [];
  const ep = await startHttpEndpoint(
    'admin',
    { host: net.ip(2), port: 0 },
    adminHandler({
      configDump: () => ({ workloads: [], secret: undefined }),
      logging,
      initialLog: { level: 'info', targets: {} },
      onLogLevels: (f) => changes.push(`${f.level}:${JSON.stringify(f.targets)}`),
      quit: () => void quits++,
    }),
  );
  t.teardown(() => ep.close());

  const root = await get(ep, '/');
  t.equal(root.status, 200);
  for (const p of ['/config_dump', '/logging', '/quitquitquit']) t.match(root.body, p, `/ lists ${p}`);
  const dump = await get(ep, '/config_dump');
  t.same(JSON.parse(dump.body), { workloads: [] });

  const wrong = await get(ep, '/config_dump', 'POST');
  t.equal(wrong.status, 405);
  t.equal(wrong.allow, 'GET');
  t.match(wrong.body, /use GET/);
  const getLogging = await get(ep, '/logging');
  t.equal(getLogging.status, 405);
  t.match(getLogging.body, /usage: POST \/logging\?level=<level>/, 'the 405 carries the usage text');
  t.equal((await get(ep, '/quitquitquit')).status, 405);
  t.equal(quits, 0, 'GET /quitquitquit does not quit');
  const missing = await get(ep, '/nope');
  t.equal(missing.status, 404);
  t.match(missing.body, /\/config_dump/);

  t.same(await get(ep, '/logging', 'POST'), { status: 200, body: 'current log level is info\n', allow: null });
  t.same(await get(ep, '/logging?level=access%3Ddebug', 'POST'), { status: 200, body: 'current log level is info,access=debug\n', allow: null });
  t.same(changes, ['info:{"access":"debug"}']);
  const quit = await get(ep, '/quitquitquit', 'POST');
  t.same([quit.status, quit.body, quits], [200, 'shutdown now\n', 1]);
});

t.test('POST /logging: levels, targets, reset, errors — observed on real loggers', async (t) => {
  const out = collector();
  const logging = new Logging({ format: 'json', level: 'info', targets: { state: 'warn' }, destination: out });
  const initial = { level: 'info' as const, targets: { state: 'warn' as const } };
  const access = logging.for('access');
  const proxy = logging.for('proxy');
  const q = (s: string): URLSearchParams => new URLSearchParams(s);
  const seen = (): string[] => out.lines.map((l) => String(l['msg']));

  access.debug('before');
  t.same(changeLogLevel(logging, q('level=access=debug'), initial), { status: 200, body: 'current log level is info,access=debug,state=warn\n', changed: { level: 'info', targets: { access: 'debug', state: 'warn' } } });
  access.debug('after');
  proxy.debug('proxy stays at info');
  t.same(seen(), ['after'], 'only the access target moved to debug');

  t.equal(changeLogLevel(logging, q('level=warn'), initial).body, 'current log level is warn\n', 'a new default clears target levels');
  proxy.info('hidden');
  access.debug('hidden too');
  t.same(seen(), ['after']);
  t.equal(changeLogLevel(logging, q('level=debug,proxy=error'), initial).body, 'current log level is debug,proxy=error\n');
  t.equal(changeLogLevel(logging, q('reset'), initial).body, 'current log level is info,state=warn\n', 'reset: the start-up filter');

  const bad = changeLogLevel(logging, q('level=loud'), initial);
  t.equal(bad.status, 400);
  t.match(bad.body, /^Invalid level provided: loud\n/);
  t.equal(bad.changed, null);
  t.equal(changeLogLevel(logging, q('level=x=y'), initial).status, 400);
  t.equal(logging.levels().level, 'info', 'a refused change changes nothing');
  t.same(changeLogLevel(logging, q(''), initial), { status: 200, body: 'current log level is info,state=warn\n', changed: null });
});

t.test("access log lines: ztunnel's fields, bytes from the proxy's point of view", async (t) => {
  const out = collector();
  const logging = new Logging({ format: 'json', level: 'info', destination: out });
  const access = new AccessLog(logging.for('access'));
  const base = { srcAddr: '10.0.0.1:5000', srcWorkload: 'sleep', srcNamespace: 'default', dstAddr: '10.0.0.2:15008', dstHboneAddr: '10.0.0.2:8080', dstWorkload: 'echo' };
  access.opened({ ...base, direction: 'outbound' });
  t.equal(out.lines.length, 0, '"connection opened" is a debug line');
  access.complete({ ...base, direction: 'outbound' }, { received: 100, sent: 7 }, 12.4, null);
  access.complete({ ...base, direction: 'inbound' }, { received: 100, sent: 7 }, 3, 'upstream error: EHOSTUNREACH');
  access.failed({ direction: 'inbound', srcAddr: '10.0.0.9:1' }, 'TLS handshake refused');
  const [out1, in1, early] = out.lines;
  t.match(out1, {
    level: 30, target: 'access', msg: 'connection complete', 'src.addr': '10.0.0.1:5000', 'src.workload': 'sleep', 'src.namespace': 'default',
    'dst.addr': '10.0.0.2:15008', 'dst.hbone_addr': '10.0.0.2:8080', 'dst.workload': 'echo', direction: 'outbound', bytes_sent: 100, bytes_recv: 7, duration: '12ms',
  });
  t.notOk('error' in out1!, 'no error field on success');
  t.notOk('src.identity' in out1!, 'unknown values are left out');
  t.match(in1, { level: 50, direction: 'inbound', bytes_sent: 7, bytes_recv: 100, error: 'upstream error: EHOSTUNREACH' });
  t.match(early, { level: 40, msg: 'connection failed', 'src.addr': '10.0.0.9:1', direction: 'inbound', error: 'TLS handshake refused' });
  logging.setLevels('debug');
  access.opened({ ...base, direction: 'outbound' });
  t.match(out.lines[3], { level: 20, msg: 'connection opened', 'src.addr': '10.0.0.1:5000' });
});
