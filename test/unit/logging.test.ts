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
