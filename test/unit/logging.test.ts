import t from 'tap';
import { formatPlain, Logging } from '../../src/logging/logger';

function collector(): { lines: string[]; write(s: string): void } {
  const lines: string[] = [];
  return { lines, write: (s: string) => void lines.push(s) };
}

t.test('plain format: time, level, target, message, fields', async (t) => {
  const line = formatPlain({ time: 0, level: 30, target: 'access', msg: 'connection complete', 'src.addr': '10.0.0.1:5', bytes: 7, note: 'a b' });
  t.equal(line, '1970-01-01T00:00:00.000Z\tinfo\taccess\tconnection complete\tsrc.addr=10.0.0.1:5 bytes=7 note="a b"\n');
});

// ztunnel's plain format (telemetry.rs): str fields print with Debug (always quoted), `%` Display
// fields such as socket addresses print bare, numbers and bools print bare. An access line reads
// src.addr=10.0.0.1:5 src.workload="sleep" ... direction="inbound" bytes_sent=7 duration="1ms".
const quoting: Array<[string, unknown, string]> = [
  ['direction', 'inbound', 'direction="inbound"'],
  ['duration', '1ms', 'duration="1ms"'],
  ['src.workload', 'sleep-1', 'src.workload="sleep-1"'],
  ['src.identity', 'spiffe://cluster.local/ns/default/sa/sleep', 'src.identity="spiffe://cluster.local/ns/default/sa/sleep"'],
  ['error', 'say "no"\tnow', 'error="say \\"no\\"\\tnow"'],
  ['empty', '', 'empty=""'],
  ['src.addr', '10.0.0.1:5', 'src.addr=10.0.0.1:5'],
  ['dst.addr', '[fd00::2]:15008', 'dst.addr=[fd00::2]:15008'],
  ['dst.hbone_addr', '10.0.0.2:8080', 'dst.hbone_addr=10.0.0.2:8080'],
  ['address', '127.0.0.1:15000', 'address=127.0.0.1:15000'],
  ['bytes_sent', 7, 'bytes_sent=7'],
  ['transparent', false, 'transparent=false'],
  ['pods', { a: 1 }, 'pods={"a":1}'],
];
for (const [key, value, want] of quoting) {
  t.test(`plain format quoting: ${key}=${JSON.stringify(value)}`, async (t) => {
    const line = formatPlain({ time: 0, level: 30, target: 'access', msg: 'm', [key]: value });
    t.equal(line, `1970-01-01T00:00:00.000Z\tinfo\taccess\tm\t${want}\n`);
  });
}

t.test('plain format: a whole access line', async (t) => {
  const line = formatPlain({
    time: 0, level: 30, target: 'access', msg: 'connection complete',
    'src.addr': '10.0.0.1:40000', 'src.workload': 'sleep', 'src.namespace': 'default', 'dst.addr': '10.0.0.2:15008',
    'dst.hbone_addr': '10.0.0.2:8080', direction: 'inbound', bytes_sent: 5, bytes_recv: 3, duration: '2ms',
  });
  t.equal(
    line,
    '1970-01-01T00:00:00.000Z\tinfo\taccess\tconnection complete\t' +
      'src.addr=10.0.0.1:40000 src.workload="sleep" src.namespace="default" dst.addr=10.0.0.2:15008 dst.hbone_addr=10.0.0.2:8080 direction="inbound" bytes_sent=5 bytes_recv=3 duration="2ms"\n',
  );
});

t.test('levels per target and at run time', async (t) => {
  const out = collector();
  const logging = new Logging({ format: 'plain', level: 'info', targets: { access: 'debug' }, destination: out });
  const access = logging.for('access');
  const proxy = logging.for('proxy');
  access.debug('a1');
  proxy.debug('p1');
  proxy.info('p2');
  t.same(out.lines.map((l) => l.trimEnd().split('\t')[3]), ['a1', 'p2'], 'access at debug, proxy at info');
  logging.setLevels('warn');
  access.info('a2');
  proxy.warn('p3');
  logging.setLevels(null, { proxy: 'debug' });
  proxy.debug('p4');
  t.same(out.lines.map((l) => l.trimEnd().split('\t')[3]), ['a1', 'p2', 'p3', 'p4']);
  t.same(logging.levels(), { level: 'warn', targets: { proxy: 'debug' } });
  logging.setLevels('off');
  proxy.error('never');
  t.equal(out.lines.length, 4, 'off silences everything');
});

t.test('json format passes pino records through', async (t) => {
  const out = collector();
  const logging = new Logging({ format: 'json', level: 'info', destination: out });
  logging.for('state').info({ version: 3 }, 'snapshot installed');
  const rec = JSON.parse(out.lines[0]!);
  t.match(rec, { level: 30, target: 'state', version: 3, msg: 'snapshot installed' });
});
