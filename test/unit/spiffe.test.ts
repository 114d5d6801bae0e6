import t from 'tap';
import { formatSpiffe, parseSpiffe, principalOf, tryParseSpiffe } from '../../src/identity/spiffe';
import { isProxyError } from '../../src/errors';

t.test('parse and format round-trip', async (t) => {
  const cases = [
    'spiffe://cluster.local/ns/default/sa/sleep',
    'spiffe://example.org/ns/kube-system/sa/ztunnel',
    'spiffe://td_1.example/ns/a.b/sa/x-y_z',
  ];
  for (const uri of cases) t.equal(formatSpiffe(parseSpiffe(uri)), uri, uri);
  t.equal(principalOf(parseSpiffe(cases[0]!)), 'cluster.local/ns/default/sa/sleep');
});

t.test('bad ids are rejected with a reason', async (t) => {
  const cases: [string, RegExp][] = [
    ['http://cluster.local/ns/a/sa/b', /must start with spiffe/],
    ['spiffe://cluster.local/ns/a', /expected spiffe/],
    ['spiffe://cluster.local/namespace/a/sa/b', /expected spiffe/],
    ['spiffe://cluster.local/ns/a/sa/b/extra', /expected spiffe/],
    ['spiffe://Cluster.Local/ns/a/sa/b', /bad trust domain/],
    ['spiffe:///ns/a/sa/b', /bad trust domain/],
    ['spiffe://cluster.local/ns//sa/b', /bad namespace/],
    ['spiffe://cluster.local/ns/a/sa/', /bad service account/],
    ['spiffe://cluster.local/ns/a b/sa/c', /bad namespace/],
  ];
  for (const [uri, re] of cases) {
    const err = t.throws(() => parseSpiffe(uri), re, uri) as unknown;
    t.ok(isProxyError(err, 'ERR_SPIFFE_ID'), `${uri}: code ERR_SPIFFE_ID`);
    t.equal(tryParseSpiffe(uri), null);
  }
});
