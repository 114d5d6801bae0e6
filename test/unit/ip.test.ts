import t from 'tap';
import { isLoopbackIp, joinHostPort, loopbackSourceFor, normalizeIp, parseCidr, splitHostPort } from '../../src/net/ip';

t.test('normalizeIp', async (t) => {
  const cases: [string, string | null][] = [
    ['10.0.0.1', '10.0.0.1'],
    ['::1', '::1'],
    ['2001:DB8:0:0:0:0:0:1', '2001:db8::1'],
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'],
    ['fe80:0:0:0:0:0:0:0', 'fe80::'],
    ['0:0:0:0:0:0:0:0', '::'],
    ['::ffff:10.1.2.3', '10.1.2.3'],
    ['::ffff:a01:203', '10.1.2.3'],
    ['64:ff9b::10.1.2.3', '64:ff9b::a01:203'],
    ['1:2:3:4:5:6:7:8', '1:2:3:4:5:6:7:8'],
    ['10.0.0.300', null],
    ['10.0.0', null],
    ['hello', null],
    ['', null],
    ['1::2::3', null],
  ];
  for (const [input, want] of cases) t.equal(normalizeIp(input), want, input);
});

t.test('parseCidr masks host bits and rejects junk', async (t) => {
  const good: [string, string, number][] = [
    ['10.0.0.7/24', '10.0.0.0', 24],
    ['10.0.0.7', '10.0.0.7', 32],
    ['0.0.0.0/0', '0.0.0.0', 0],
    ['255.255.255.255/1', '128.0.0.0', 1],
    ['2001:db8::ff/120', '2001:db8::', 120],
    ['2001:db8:ffff::/33', '2001:db8:8000::', 33],
    ['::/0', '::', 0],
    ['::1', '::1', 128],
  ];
  for (const [input, address, prefixLen] of good) {
    const c = parseCidr(input);
    t.same([c.address, c.prefixLen], [address, prefixLen], input);
  }
  for (const bad of ['10.0.0.0/33', '10.0.0.0/', '10.0.0.0/-1', 'x/8', '::/129', '10.0.0.0/8/8']) {
    t.throws(() => parseCidr(bad), { code: 'ERR_CIDR' }, bad);
  }
});

t.test('splitHostPort / joinHostPort', async (t) => {
  const cases: [string, { host: string; port: number } | null][] = [
    ['127.0.0.1:15000', { host: '127.0.0.1', port: 15000 }],
    ['[::1]:15000', { host: '::1', port: 15000 }],
    ['localhost:0', { host: 'localhost', port: 0 }],
    ['::1:15000', null],
    ['127.0.0.1', null],
    ['127.0.0.1:65536', null],
    ['127.0.0.1:abc', null],
    [':80', null],
    ['[::1]15000', null],
  ];
  for (const [input, want] of cases) t.same(splitHostPort(input), want, input);
  t.equal(joinHostPort('::1', 8), '[::1]:8');
  t.equal(joinHostPort('10.0.0.1', 8), '10.0.0.1:8');
});

t.test('loopback and the node-mode source-address rule', async (t) => {
  const loop: [string, boolean][] = [['127.0.0.1', true], ['127.100.0.3', true], ['::1', true], ['10.0.0.1', false], ['128.0.0.1', false], ['::2', false]];
  for (const [ip, want] of loop) t.equal(isLoopbackIp(ip), want, ip);
  const bind: [string, string, string | undefined][] = [
    ['127.6.1.1', '127.6.1.11', '127.6.1.1'],
    ['::1', '::1', '::1'],
    ['127.6.1.1', '10.0.0.5', undefined],
    ['10.0.0.1', '127.0.0.1', undefined],
    ['10.0.0.1', '10.0.0.2', undefined],
  ];
  for (const [src, dst, want] of bind) t.equal(loopbackSourceFor(src, dst), want, `${src} → ${dst}`);
});
