import t from 'tap';
import { compilePolicies, compilePolicy } from '../../../src/authz/compile';
import { CIDR_WORDS, FIELD_DESTINATION_PORTS } from '../../../src/authz/compile-parts';
import { isProxyError } from '../../../src/errors';
import type { Match, Policy } from '../../../src/state/model';
import { MATCH_PORT, only, policy } from './fixtures';

t.test('indexes: Global in global, Namespace by namespace, every policy by ns/name', async (t) => {
  const c = compilePolicies([
    policy('g1', { namespace: 'istio-system', scope: 'Global' }),
    policy('n1', { namespace: 'default' }),
    policy('n2', { namespace: 'default', action: 'Deny' }),
    policy('n3', { namespace: 'prod' }),
    policy('w1', { namespace: 'default', scope: 'WorkloadSelector' }),
  ]);
  t.same(c.global.map((p) => p.key), ['istio-system/g1']);
  t.same([...c.byNamespace.keys()].sort(), ['default', 'prod']);
  t.same(c.byNamespace.get('default')!.map((p) => p.key), ['default/n1', 'default/n2']);
  t.same(c.byNamespace.get('prod')!.map((p) => p.key), ['prod/n3']);
  t.same([...c.byKey.keys()].sort(), ['default/n1', 'default/n2', 'default/w1', 'istio-system/g1', 'prod/n3']);
  t.equal(c.byKey.get('default/w1')!.scope, 'WorkloadSelector', 'WorkloadSelector only by key');
  t.notOk(
    [...c.byNamespace.values()].flat().some((p) => p.scope === 'WorkloadSelector'),
    'WorkloadSelector policies are not indexed by namespace',
  );
});

t.test('a later policy with the same key replaces the earlier one', async (t) => {
  const c = compilePolicies([
    policy('p', { action: 'Allow' }),
    policy('p', { action: 'Deny' }),
  ]);
  t.equal(c.byKey.size, 1);
  t.same(c.byNamespace.get('default')!.map((p) => p.action), ['Deny']);
});

t.test('precomputed decisions carry ztunnel-style reasons', async (t) => {
  const d = compilePolicy(policy('no-evil', { namespace: 'prod', action: 'Deny' }));
  t.same(d.decision, { allowed: false, reason: 'explicitly denied by: prod/no-evil', policy: 'prod/no-evil' });
  const a = compilePolicy(policy('ok', { namespace: 'prod', action: 'Allow' }));
  t.same(a.decision, { allowed: true, reason: 'allowed by: prod/ok', policy: 'prod/ok' });
  t.ok(Object.isFrozen(d.decision));
});

t.test('CIDRs become masked (net, mask) words; host bits never survive', async (t) => {
  const p = compilePolicy(
    policy('c', {
      rules: only({
        sourceIps: [
          { address: '10.0.1.99', prefixLen: 24 },
          { address: '255.255.255.255', prefixLen: 32 },
          { address: '1.2.3.4', prefixLen: 0 },
        ],
        destinationIps: [{ address: '2001:db8::ff', prefixLen: 120 }],
      }),
    }),
  );
  const m = p.rules[0]![0]![0]!;
  // CIDR_WORDS per CIDR: family, 4 network words, 4 mask words
  t.equal(CIDR_WORDS, 9);
  t.same([...m.sourceIps!], [
    4, 0x0a000100, 0, 0, 0, 0xffffff00 | 0, 0, 0, 0,
    4, -1, 0, 0, 0, -1, 0, 0, 0,
    4, 0, 0, 0, 0, 0, 0, 0, 0,
  ]);
  t.same([...m.destinationIps!], [6, 0x20010db8, 0, 0, 0, -1, -1, -1, 0xffffff00 | 0]);
});

t.test('empty lists are the same as absent fields', async (t) => {
  const p = compilePolicy(policy('e', { rules: only({ namespaces: [], notSourceIps: [], destinationPorts: [] }) }));
  t.equal(p.rules[0]![0]![0]!.empty, true);
  t.equal(p.rules[0]![0]![0]!.present, 0);
  const f = compilePolicy(policy('f', { rules: only(MATCH_PORT) })).rules[0]![0]![0]!;
  t.equal(f.empty, false);
  t.equal(f.present, FIELD_DESTINATION_PORTS);
});

t.test('malformed input is rejected with ERR_POLICY naming the policy and field', async (t) => {
  const bad = (m: unknown): Policy => policy('bad', { namespace: 'ns', rules: only(m as Match) });
  const cases: [string, Policy, RegExp][] = [
    ['scope', { ...policy('bad', { namespace: 'ns' }), scope: 'Cluster' as never }, /policy ns\/bad: scope must be/],
    ['action', { ...policy('bad', { namespace: 'ns' }), action: 'Audit' as never }, /policy ns\/bad: action must be/],
    ['cidr address', bad({ sourceIps: [{ address: 'ten', prefixLen: 8 }] }), /ns\/bad rules\[0\]\[0\]\[0\]\.sourceIps\[0\].*not an IP/],
    ['cidr not an object', bad({ sourceIps: [null] }), /sourceIps\[0\]: null is not a CIDR/],
    ['v4 prefix > 32', bad({ destinationIps: [{ address: '10.0.0.0', prefixLen: 33 }] }), /destinationIps\[0\].*0\.\.32/],
    ['v6 prefix > 128', bad({ notSourceIps: [{ address: '::', prefixLen: 129 }] }), /notSourceIps\[0\].*0\.\.128/],
    ['negative prefix', bad({ notDestinationIps: [{ address: '::', prefixLen: -1 }] }), /notDestinationIps\[0\]/],
    ['port', bad({ destinationPorts: [70000] }), /destinationPorts\[0\]: 70000 is not a port/],
    ['fractional port', bad({ notDestinationPorts: [80, 1.5] }), /notDestinationPorts\[1\]/],
    ['string match', bad({ principals: [{ Regex: '.*' }] }), /principals\[0\]: expected one of Exact, Prefix, Suffix, Presence/],
    ['service account shape', bad({ serviceAccounts: [{ namespace: 'a' }] }), /serviceAccounts\[0\]: expected \{namespace, serviceAccount\}/],
    ['non-string Exact', bad({ namespaces: [{ Exact: 7 }] }), /namespaces\[0\]/],
  ];
  for (const [name, p, re] of cases) {
    const err = t.throws(() => compilePolicies([p]), re, name) as unknown;
    t.ok(isProxyError(err, 'ERR_POLICY'), `${name}: code ERR_POLICY`);
  }
});

t.test('equal lists are compiled once and shared; values sorted and de-duplicated', async (t) => {
  const m = (ports: number[], ns: string[]): Match => ({
    destinationPorts: ports,
    namespaces: ns.map((Exact) => ({ Exact })),
    sourceIps: [{ address: '10.0.0.0', prefixLen: 8 }],
    serviceAccounts: [{ namespace: 'a', serviceAccount: 'b' }],
  });
  const c = compilePolicies([
    policy('p1', { rules: only(m([443, 80, 443], ['b', 'a'])) }),
    policy('p2', { rules: only(m([80, 443], ['b', 'a'])) }),
    policy('p3', { rules: [[[m([80], ['b', 'a'])], [{}]]] }),
  ]);
  const [a, b] = ['default/p1', 'default/p2'].map((k) => c.byKey.get(k)!.rules[0]![0]![0]!);
  t.same(a!.destinationPorts, [80, 443]);
  t.same(a!.namespaces!.exact, ['a', 'b']);
  t.equal(a!.destinationPorts, b!.destinationPorts, 'ports shared');
  t.equal(a!.namespaces, b!.namespaces, 'string matches shared');
  t.equal(a!.sourceIps, b!.sourceIps, 'CIDRs shared');
  t.equal(a!.serviceAccounts, b!.serviceAccounts, 'service accounts shared');
  t.equal(a, b, 'equal matches are one object');
  const other = c.byKey.get('default/p3')!.rules[0]!;
  t.not(other[0]![0], a, 'a different match is not shared');
  t.equal(other[0]![0]!.namespaces, a!.namespaces, '... though its equal parts are');
  t.ok(Object.isFrozen(other[1]![0]), 'the empty match is one frozen object');
});

t.test('intern keys cannot confuse different lists, whatever the values contain', async (t) => {
  const c = compilePolicies([
    policy('two', { rules: only({ namespaces: [{ Exact: 'a' }, { Exact: 'b' }] }) }),
    policy('one', { rules: only({ namespaces: [{ Exact: 'ae1:b' }] }) }),
    policy('one-nul', { rules: only({ namespaces: [{ Exact: 'a\u0000eb' }] }) }),
    policy('sa1', { rules: only({ serviceAccounts: [{ namespace: 'a1:b', serviceAccount: '' }] }) }),
    policy('sa2', { rules: only({ serviceAccounts: [{ namespace: 'a', serviceAccount: 'b0:' }] }) }),
  ]);
  const ns = (k: string) => c.byKey.get(`default/${k}`)!.rules[0]![0]![0]!;
  t.same(ns('two').namespaces!.exact, ['a', 'b']);
  t.same(ns('one').namespaces!.exact, ['ae1:b']);
  t.same(ns('one-nul').namespaces!.exact, ['a\u0000eb']);
  t.same(ns('sa1').serviceAccounts, ['a1:b', '']);
  t.same(ns('sa2').serviceAccounts, ['a', 'b0:']);
});

t.test('a malformed CIDR is rejected even after a valid list with the same text', async (t) => {
  const good = policy('good', { rules: only({ sourceIps: [{ address: '10.0.0.0', prefixLen: 8 }] }) });
  const bad = policy('bad', { rules: only({ sourceIps: [{ address: '10.0.0.0', prefixLen: '8' as unknown as number }] }) });
  t.throws(() => compilePolicies([good, bad]), { code: 'ERR_POLICY', message: /default\/bad .*sourceIps\[0\].*prefix length/ });
});
