import t from 'tap';
import { ValueError } from '../../../src/config/issues';
import { formatLogFilter, parseLogFilter } from '../../../src/config/log-filter';
import {
  formatListenAddr,
  isLoopbackHost,
  parseBool,
  parseCpuQuantity,
  parseInteger,
  parseListenAddr,
  parseTrustDomain,
} from '../../../src/config/values';

function expectedOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (err instanceof ValueError) return err.expected;
    throw err;
  }
  throw new Error('did not throw');
}

t.test('parseBool: true/false/1/0 in any case, nothing else', async (t) => {
  const good: [string, boolean][] = [['true', true], ['TRUE', true], ['True', true], ['1', true], ['false', false], ['FALSE', false], ['0', false]];
  for (const [s, want] of good) t.equal(parseBool(s), want, s);
  for (const s of ['yes', 'no', 'on', 'off', 't', '2', ' true', '']) t.match(expectedOf(() => parseBool(s)), /true or false/, s);
});

t.test('parseInteger: decimal digits within range', async (t) => {
  t.equal(parseInteger('0', 0, 10), 0);
  t.equal(parseInteger('10', 0, 10), 10);
  t.equal(parseInteger('007', 0, 10), 7);
  for (const s of ['11', '-1', '1.0', '1e1', '0x5', ' 5', '', '9007199254740993']) {
    t.match(expectedOf(() => parseInteger(s, 0, 10, 'a count')), /^a count from 0 to 10$/, JSON.stringify(s));
  }
});

t.test('parseCpuQuantity: cores or millicores', async (t) => {
  const good: [string, number][] = [['2', 2], ['1.5', 1.5], ['0.25', 0.25], ['.5', 0.5], ['500m', 0.5], ['2500m', 2.5], ['3000m', 3], ['1m', 0.001]];
  for (const [s, want] of good) t.equal(parseCpuQuantity(s, false), want, s);
  t.equal(parseCpuQuantity('0', true), 0);
  t.equal(parseCpuQuantity('0m', true), 0);
  for (const s of ['0', '0m', '0.0']) t.match(expectedOf(() => parseCpuQuantity(s, false)), /more than 0/, s);
  for (const s of ['', 'm', '2 ', '-1', '1Gi', '2k', '1e3', '1.5.5', 'two']) {
    t.match(expectedOf(() => parseCpuQuantity(s, true)), /CPU quantity like 2, 1.5 or 500m/, JSON.stringify(s));
  }
});

t.test('parseListenAddr: IP host and port, IPv6 bracketed', async (t) => {
  const good: [string, string, number][] = [
    ['127.0.0.1:15000', '127.0.0.1', 15000],
    ['0.0.0.0:0', '0.0.0.0', 0],
    ['[::]:15020', '::', 15020],
    ['[::1]:65535', '::1', 65535],
    ['[2001:DB8::0:1]:80', '2001:db8::1', 80],
    ['[fe80::1%eth0]:15021', 'fe80::1%eth0', 15021],
  ];
  for (const [s, host, port] of good) {
    const a = parseListenAddr(s);
    t.same(a, { host, port }, s);
  }
  t.equal(formatListenAddr({ host: '::', port: 15020 }), '[::]:15020');
  t.equal(formatListenAddr({ host: '10.0.0.1', port: 1 }), '10.0.0.1:1');
  for (const s of ['localhost:15000', '::1:15000', '127.0.0.1', '127.0.0.1:', '127.0.0.1:65536', ':15021', '[::1]15000', '10.0.0.300:1', '1.2.3.4:-1']) {
    t.match(expectedOf(() => parseListenAddr(s)), /host:port with an IP address/, s);
  }
});

t.test('parseListenAddr loopbackOnly keeps admin and SOCKS5 on localhost', async (t) => {
  for (const s of ['127.0.0.1:15000', '127.1.2.3:0', '[::1]:15000', '[::ffff:127.0.0.1]:1']) t.ok(parseListenAddr(s, true), s);
  for (const s of ['0.0.0.0:15000', '[::]:15000', '10.0.0.1:15000', '128.0.0.1:1']) {
    t.match(expectedOf(() => parseListenAddr(s, true)), /loopback host:port/, s);
  }
  t.equal(isLoopbackHost('127.255.255.255'), true);
  t.equal(isLoopbackHost('::2'), false);
  t.equal(isLoopbackHost('not-an-ip'), false);
});

t.test('parseTrustDomain: SPIFFE trust domain characters', async (t) => {
  for (const s of ['cluster.local', 'example.org', 'td_1-a']) t.equal(parseTrustDomain(s), s);
  for (const s of ['Cluster.Local', 'a/b', 'has space', 'spiffe://x']) t.match(expectedOf(() => parseTrustDomain(s)), /trust domain/, s);
});

t.test('parseLogFilter: levels and target=level lists', async (t) => {
  const good: [string, string, Record<string, string>][] = [
    ['info', 'info', {}],
    ['debug', 'debug', {}],
    ['WARN', 'warn', {}],
    ['off', 'off', {}],
    ['info,access=debug', 'info', { access: 'debug' }],
    ['access=debug', 'info', { access: 'debug' }], // target-only keeps the default level
    ['access=debug,error', 'error', { access: 'debug' }],
    ['debug,info', 'info', {}], // the last bare level wins
    ['proxy::inbound=trace, access = warn ,', 'info', { access: 'warn', 'proxy::inbound': 'trace' }],
    ['access=debug,access=error', 'info', { access: 'error' }],
  ];
  for (const [s, level, targets] of good) {
    const f = parseLogFilter(s);
    t.equal(f.level, level, `${s}: level`);
    t.same(f.targets, targets, `${s}: targets`);
  }
  t.same(Object.keys(parseLogFilter('z=info,a=info,m=info').targets), ['a', 'm', 'z'], 'targets sorted');
  t.equal(formatLogFilter(parseLogFilter('warn,b=trace,a=debug')), 'warn,a=debug,b=trace');
  const bad: [string, RegExp][] = [
    ['verbose', /"verbose" is not a level/],
    ['debgu', /"debgu" is not a level/],
    ['info,access=loud', /"access=loud" is not target=level/],
    ['=debug', /"=debug" is not target=level/],
    ['a b=debug', /is not target=level/],
    [',', /a log level/],
  ];
  for (const [s, want] of bad) t.match(expectedOf(() => parseLogFilter(s)), want, s);
});
