import t from 'tap';
import { checkClientSan, checkServerSan, sanIdentities, sanUris } from '../../../src/tls/peer';
import { isProxyError } from '../../../src/errors';
import { parseSpiffe } from '../../../src/identity/spiffe';

const A = 'spiffe://cluster.local/ns/default/sa/sleep';
const B = 'spiffe://cluster.local/ns/prod/sa/api';
const X = 'spiffe://other.example/ns/default/sa/sleep';

t.test('URI SANs out of node:tls subjectaltname strings', async (t) => {
  const cases: [string | undefined | null, string[]][] = [
    [undefined, []],
    [null, []],
    ['', []],
    [`URI:${A}`, [A]],
    [`URI:${A}, URI:${B}`, [A, B]],
    [`DNS:example.com, URI:${A}, IP Address:10.0.0.1`, [A]],
    ['DNS:example.com', []],
    // Node JSON-quotes values holding separators; the comma must not split the entry.
    [`URI:"spiffe://cluster.local/ns/a, b/sa/c", URI:${B}`, ['spiffe://cluster.local/ns/a, b/sa/c', B]],
    [`DNS:"a\\"b", URI:${A}`, [A]],
    ['URI:"unterminated', []],
    ['garbage-without-colon', []],
  ];
  for (const [input, want] of cases) t.same(sanUris(input), want, JSON.stringify(input));
});

t.test('identities are the URI SANs that parse as SPIFFE ids, in order', async (t) => {
  const cases: [string, string[]][] = [
    [`URI:${A}`, [A]],
    [`URI:https://example.com/x, URI:${B}`, [B]],
    [`URI:spiffe://cluster.local/ns/a/sa/b/extra, URI:${A}, URI:${X}`, [A, X]],
    ['URI:spiffe://Bad_TD/ns/a/sa/b', []],
    [`DNS:${A.slice(9)}`, []],
  ];
  for (const [san, want] of cases) t.same(sanIdentities(san), want.map(parseSpiffe), san);
});

t.test('server side: client identity must be a SPIFFE id of our trust domain', async (t) => {
  const cases: [string | null, string, string | null, string | null][] = [
    // [subjectaltname (null = no cert), trust domain, wanted identity, or error code]
    [`URI:${A}`, 'cluster.local', A, null],
    [`URI:${X}, URI:${B}`, 'cluster.local', B, null],
    [`URI:${X}`, 'cluster.local', null, 'ERR_TLS_TRUST_DOMAIN'],
    [`URI:${A}`, 'other.example', null, 'ERR_TLS_TRUST_DOMAIN'],
    [null, 'cluster.local', null, 'ERR_TLS_NO_PEER_CERT'],
    ['', 'cluster.local', null, 'ERR_TLS_PEER_NO_SPIFFE'],
    ['DNS:sleep.default.svc', 'cluster.local', null, 'ERR_TLS_PEER_NO_SPIFFE'],
    ['URI:spiffe://cluster.local/sleep', 'cluster.local', null, 'ERR_TLS_PEER_NO_SPIFFE'],
  ];
  for (const [san, td, want, code] of cases) {
    const r = checkClientSan(san, td);
    const label = `${JSON.stringify(san)} in ${td}`;
    if (want) {
      t.ok(r.ok, label);
      if (r.ok) t.same(r.identity, parseSpiffe(want), `${label}: identity`);
    } else {
      t.notOk(r.ok, label);
      if (!r.ok) t.ok(isProxyError(r.error, code!), `${label}: ${code} (got ${r.error.code})`);
    }
  }
  const r = checkClientSan(`URI:${X}`, 'cluster.local');
  t.match(!r.ok && r.error.message, /client identity spiffe:\/\/other\.example\/ns\/default\/sa\/sleep is not in trust domain cluster\.local/);
});

t.test('client side: server identity must be one of the expected', async (t) => {
  const cases: [string | undefined, string[], boolean][] = [
    [`URI:${A}`, [A], true],
    [`URI:${A}`, [B, A], true],
    [`URI:${B}, URI:${A}`, [A], true],
    [`URI:${A}`, [B], false],
    [`URI:${X}`, [A], false], // same namespace/sa, other trust domain
    [`DNS:${A}`, [A], false],
    [undefined, [A], false],
    [`URI:${A}`, [], false],
  ];
  for (const [san, expected, ok] of cases) {
    const err = checkServerSan(san, expected.map(parseSpiffe));
    const label = `${JSON.stringify(san)} vs ${JSON.stringify(expected)}`;
    if (ok) t.equal(err, undefined, label);
    else t.ok(isProxyError(err, 'ERR_TLS_SAN_MISMATCH'), label);
  }
  t.match(checkServerSan(`URI:${B}`, [parseSpiffe(A)])?.message, /server identity .*ns\/prod\/sa\/api is not one of the expected .*ns\/default\/sa\/sleep/);
  t.match(checkServerSan(undefined, [parseSpiffe(A)])?.message, /no SPIFFE id \(no SAN\)/);
});
