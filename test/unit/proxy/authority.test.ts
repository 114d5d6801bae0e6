import t from 'tap';
import { formatAuthority, parseAuthority } from '../../../src/proxy/authority';

t.test('parseAuthority: accepted forms', async (t) => {
  const ok: [string, string, number][] = [
    ['10.0.0.1:8080', '10.0.0.1', 8080],
    ['127.5.1.10:1', '127.5.1.10', 1],
    ['255.255.255.255:65535', '255.255.255.255', 65535],
    ['[::1]:80', '::1', 80],
    ['[2001:DB8:0:0:0:0:0:1]:443', '2001:db8::1', 443],
    ['[::ffff:10.1.2.3]:9090', '10.1.2.3', 9090],
    ['[fd00::a:b]:15006', 'fd00::a:b', 15006],
  ];
  for (const [text, ip, port] of ok) t.same(parseAuthority(text), { ok: true, ip, port }, text);
});

t.test('parseAuthority: refused forms, each with its reason', async (t) => {
  const bad: [unknown, RegExp][] = [
    [undefined, /missing/],
    ['', /missing/],
    [42, /missing/],
    ['10.0.0.1', /expected <ip>:<port>/],
    ['10.0.0.1:', /port must be a number 1\.\.65535/],
    ['10.0.0.1:0', /port must be/],
    ['10.0.0.1:65536', /port must be/],
    ['10.0.0.1:080', /port must be/],
    ['10.0.0.1:+80', /port must be/],
    ['10.0.0.1:80 ', /port must be/],
    ['10.0.0.1:8a', /port must be/],
    ['10.0.0.1:123456', /port must be/],
    ['echo.default.svc.cluster.local:80', /hostnames are not supported/],
    ['localhost:80', /hostnames are not supported/],
    ['010.0.0.1:80', /not an IP address/],
    ['10.0.0:80', /not an IP address/],
    [':80', /not an IP address/],
    ['::1:80', /must be in brackets/],
    ['[::1]80', /expected ":<port>" after "]"/],
    ['[::1:80', /unclosed/],
    ['[10.0.0.1]:80', /not an IPv6 address/],
    ['[fe80::1%eth0]:80', /not an IPv6 address/],
    ['[]:80', /not an IPv6 address/],
  ];
  for (const [text, re] of bad) {
    const r = parseAuthority(text);
    t.equal(r.ok, false, `${JSON.stringify(text)} refused`);
    if (!r.ok) t.match(r.reason, re, `${JSON.stringify(text)}: ${r.reason}`);
  }
});

t.test('formatAuthority round-trips', async (t) => {
  for (const [ip, port, text] of [['10.0.0.1', 80, '10.0.0.1:80'], ['2001:db8::1', 443, '[2001:db8::1]:443']] as const) {
    t.equal(formatAuthority(ip, port), text);
    t.same(parseAuthority(text), { ok: true, ip, port });
  }
});
