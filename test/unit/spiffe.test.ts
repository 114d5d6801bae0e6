import t from 'tap';
import { formatSpiffe, identityProblem, parseSpiffe, principalOf, tryParseSpiffe, type Identity } from '../../src/identity/spiffe';
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

t.test('formatSpiffe refuses parts that cannot appear in a SPIFFE id', async (t) => {
  const ok: Identity = { trustDomain: 'cluster.local', namespace: 'default', serviceAccount: 'sleep' };
  // [what changes, expected message]
  const cases: [Partial<Identity>, string][] = [
    [{ trustDomain: 'Example.COM' }, `trust domain "Example.COM": may only hold lower-case letters, digits, '.', '-' and '_'`],
    [{ trustDomain: '' }, 'trust domain "": must not be empty'],
    [{ trustDomain: 'a/b' }, `trust domain "a/b": may only hold lower-case letters, digits, '.', '-' and '_'`],
    [{ namespace: '' }, 'namespace "": must not be empty'],
    [{ namespace: 'a/b' }, `namespace "a/b": may only hold letters, digits, '.', '-' and '_'`],
    [{ namespace: 'ns 1' }, `namespace "ns 1": may only hold letters, digits, '.', '-' and '_'`],
    [{ serviceAccount: 'a/b' }, `service account "a/b": may only hold letters, digits, '.', '-' and '_'`],
    [{ serviceAccount: '' }, 'service account "": must not be empty'],
    [{ serviceAccount: 'sä' }, `service account "sä": may only hold letters, digits, '.', '-' and '_'`],
    // the first bad part is named
    [{ trustDomain: 'X', serviceAccount: '' }, `trust domain "X": may only hold lower-case letters, digits, '.', '-' and '_'`],
  ];
  for (const [change, want] of cases) {
    const id = { ...ok, ...change };
    const err = t.throws(() => formatSpiffe(id), { message: `cannot form a SPIFFE id: ${want}` }, JSON.stringify(change)) as unknown;
    t.ok(isProxyError(err, 'ERR_SPIFFE_ID'), `${JSON.stringify(change)}: code ERR_SPIFFE_ID`);
    t.equal(identityProblem(id), want);
  }
  // legal: mixed case and punctuation in the path segments, '_' in the trust domain
  const legal: Identity = { trustDomain: 'td_1.example-x', namespace: 'Kube.System-1', serviceAccount: 'Sa_2.x-y' };
  t.equal(formatSpiffe(legal), 'spiffe://td_1.example-x/ns/Kube.System-1/sa/Sa_2.x-y');
  t.same(parseSpiffe(formatSpiffe(legal)), legal, 'what formatSpiffe writes, parseSpiffe reads back');
  t.equal(identityProblem(legal), null);
});
