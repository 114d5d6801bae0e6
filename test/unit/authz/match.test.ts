/**
 * Match semantics, field by field (ZTUNNEL-FACTS "L4 authorization"; istio/ztunnel src/rbac.rs).
 * Each case compiles one policy with a single rule/clause/match and checks whether it matches.
 */
import t from 'tap';
import { compilePolicy } from '../../../src/authz/compile';
import { connFacts, policyMatches } from '../../../src/authz/match';
import type { ConnInfo } from '../../../src/authz/types';
import type { Match, Rule } from '../../../src/state/model';
import { MATCH_PORT, MISS_PORT, SLEEP, conn, only, policy } from './fixtures';

const PLAIN: Partial<ConnInfo> = { identity: null };
const OTHER_TD: Partial<ConnInfo> = { identity: { trustDomain: 'other.td', namespace: 'default', serviceAccount: 'sleep' } };

function matches(rules: readonly Rule[], over: Partial<ConnInfo> = {}): boolean {
  return policyMatches(compilePolicy(policy('p', { rules })), connFacts(conn(over)));
}

type Case = [name: string, m: Match, over: Partial<ConnInfo>, want: boolean];

/** [name, got, want] per case, for t.equal in the caller. */
function run(cases: readonly Case[]): [string, boolean, boolean][] {
  return cases.map(([name, m, over, want]) => [name, matches(only(m), over), want]);
}

t.test('namespaces: every string-match kind, and plaintext namespace ""', async (t) => {
  for (const [name, got, want] of run([
    ['Exact hit', { namespaces: [{ Exact: 'default' }] }, {}, true],
    ['Exact miss', { namespaces: [{ Exact: 'prod' }] }, {}, false],
    ['Exact is not a prefix', { namespaces: [{ Exact: 'def' }] }, {}, false],
    ['Prefix hit', { namespaces: [{ Prefix: 'def' }] }, {}, true],
    ['Prefix miss', { namespaces: [{ Prefix: 'fault' }] }, {}, false],
    ['Suffix hit', { namespaces: [{ Suffix: 'ault' }] }, {}, true],
    ['Suffix miss', { namespaces: [{ Suffix: 'def' }] }, {}, false],
    ['Presence with identity', { namespaces: [{ Presence: [] }] }, {}, true],
    ['Presence plaintext', { namespaces: [{ Presence: [] }] }, PLAIN, false],
    ['Exact plaintext', { namespaces: [{ Exact: 'default' }] }, PLAIN, false],
    ['Prefix plaintext', { namespaces: [{ Prefix: 'd' }] }, PLAIN, false],
    // ztunnel matches the plaintext namespace as "", so an Exact "" (or Prefix "") holds for it
    ['Exact "" plaintext (ztunnel: namespace is "")', { namespaces: [{ Exact: '' }] }, PLAIN, true],
    ['Exact "" with identity', { namespaces: [{ Exact: '' }] }, {}, false],
    ['any of several items', { namespaces: [{ Exact: 'prod' }, { Suffix: 'xyz' }, { Prefix: 'de' }] }, {}, true],
    ['none of several items', { namespaces: [{ Exact: 'prod' }, { Suffix: 'xyz' }] }, {}, false],
    ['notNamespaces hit', { notNamespaces: [{ Exact: 'default' }] }, {}, false],
    ['notNamespaces miss', { notNamespaces: [{ Exact: 'prod' }] }, {}, true],
    ['notNamespaces Prefix hit', { notNamespaces: [{ Prefix: 'de' }] }, {}, false],
    ['notNamespaces Suffix hit', { notNamespaces: [{ Suffix: 'lt' }] }, {}, false],
    ['notNamespaces Presence with identity', { notNamespaces: [{ Presence: [] }] }, {}, false],
    ['notNamespaces Presence plaintext', { notNamespaces: [{ Presence: [] }] }, PLAIN, true],
    ['notNamespaces any item excludes', { notNamespaces: [{ Exact: 'prod' }, { Exact: 'default' }] }, {}, false],
    ['positive holds but negative excludes', { namespaces: [{ Prefix: 'd' }], notNamespaces: [{ Exact: 'default' }] }, {}, false],
    ['positive and negative both hold', { namespaces: [{ Prefix: 'd' }], notNamespaces: [{ Exact: 'dev' }] }, {}, true],
  ])) t.equal(got, want, name);
});

t.test('principals: the SPIFFE id without spiffe://; plaintext never matches a positive list', async (t) => {
  const id = 'cluster.local/ns/default/sa/sleep';
  for (const [name, got, want] of run([
    ['Exact hit', { principals: [{ Exact: id }] }, {}, true],
    ['Exact with spiffe:// never matches', { principals: [{ Exact: `spiffe://${id}` }] }, {}, false],
    ['Exact other SA', { principals: [{ Exact: 'cluster.local/ns/default/sa/other' }] }, {}, false],
    ['Exact checks the trust domain', { principals: [{ Exact: id }] }, OTHER_TD, false],
    ['Prefix hit', { principals: [{ Prefix: 'cluster.local/ns/default/' }] }, {}, true],
    ['Prefix miss', { principals: [{ Prefix: 'cluster.local/ns/prod/' }] }, {}, false],
    ['Suffix hit', { principals: [{ Suffix: '/sa/sleep' }] }, {}, true],
    ['Suffix miss', { principals: [{ Suffix: '/sa/curl' }] }, {}, false],
    ['Presence with identity', { principals: [{ Presence: [] }] }, {}, true],
    ['Presence plaintext', { principals: [{ Presence: [] }] }, PLAIN, false],
    ['Prefix "" plaintext', { principals: [{ Prefix: '' }] }, PLAIN, false],
    ['Exact "" plaintext', { principals: [{ Exact: '' }] }, PLAIN, false],
    ['notPrincipals hit', { notPrincipals: [{ Exact: id }] }, {}, false],
    ['notPrincipals miss', { notPrincipals: [{ Suffix: '/sa/curl' }] }, {}, true],
    ['notPrincipals Presence with identity', { notPrincipals: [{ Presence: [] }] }, {}, false],
    ['notPrincipals Presence plaintext', { notPrincipals: [{ Presence: [] }] }, PLAIN, true],
    ['notPrincipals Prefix "" plaintext', { notPrincipals: [{ Prefix: '' }] }, PLAIN, true],
  ])) t.equal(got, want, name);
});

t.test('serviceAccounts: namespace and account of the identity, trust domain ignored', async (t) => {
  for (const [name, got, want] of run([
    ['hit', { serviceAccounts: [{ namespace: 'default', serviceAccount: 'sleep' }] }, {}, true],
    ['account differs', { serviceAccounts: [{ namespace: 'default', serviceAccount: 'curl' }] }, {}, false],
    ['namespace differs', { serviceAccounts: [{ namespace: 'prod', serviceAccount: 'sleep' }] }, {}, false],
    ['other trust domain still matches', { serviceAccounts: [{ namespace: 'default', serviceAccount: 'sleep' }] }, OTHER_TD, true],
    ['any of several', { serviceAccounts: [{ namespace: 'prod', serviceAccount: 'x' }, { namespace: 'default', serviceAccount: 'sleep' }] }, {}, true],
    ['plaintext', { serviceAccounts: [{ namespace: '', serviceAccount: '' }] }, PLAIN, false],
    ['notServiceAccounts hit', { notServiceAccounts: [{ namespace: 'default', serviceAccount: 'sleep' }] }, {}, false],
    ['notServiceAccounts miss', { notServiceAccounts: [{ namespace: 'default', serviceAccount: 'curl' }] }, {}, true],
    ['notServiceAccounts plaintext', { notServiceAccounts: [{ namespace: '', serviceAccount: '' }] }, PLAIN, true],
  ])) t.equal(got, want, name);
});

t.test('sourceIps / notSourceIps: IPv4, IPv6, /0, host bits, mapped addresses', async (t) => {
  const v6: Partial<ConnInfo> = { srcIp: '2001:db8::5' };
  for (const [name, got, want] of run([
    ['v4 /24 hit', { sourceIps: [{ address: '10.0.1.0', prefixLen: 24 }] }, {}, true],
    ['v4 /24 miss', { sourceIps: [{ address: '10.0.0.0', prefixLen: 24 }] }, {}, false],
    ['v4 /32 hit', { sourceIps: [{ address: '10.0.1.5', prefixLen: 32 }] }, {}, true],
    ['v4 /32 miss', { sourceIps: [{ address: '10.0.1.4', prefixLen: 32 }] }, {}, false],
    ['v4 /31 boundary', { sourceIps: [{ address: '10.0.1.4', prefixLen: 31 }] }, {}, true],
    ['v4 /0 matches any v4', { sourceIps: [{ address: '0.0.0.0', prefixLen: 0 }] }, {}, true],
    ['v4 /1 top bit', { sourceIps: [{ address: '128.0.0.0', prefixLen: 1 }] }, { srcIp: '200.1.1.1' }, true],
    ['v4 /1 top bit miss', { sourceIps: [{ address: '128.0.0.0', prefixLen: 1 }] }, {}, false],
    ['v4 high address (sign bit) /32', { sourceIps: [{ address: '255.255.255.255', prefixLen: 32 }] }, { srcIp: '255.255.255.255' }, true],
    ['v4 host bits set are masked', { sourceIps: [{ address: '10.0.1.99', prefixLen: 24 }] }, {}, true],
    ['v4 host bits set, /0', { sourceIps: [{ address: '10.9.9.9', prefixLen: 0 }] }, { srcIp: '192.168.0.1' }, true],
    ['v6 /0 never contains v4', { sourceIps: [{ address: '::', prefixLen: 0 }] }, {}, false],
    ['mapped v4 source folds to v4', { sourceIps: [{ address: '10.0.1.0', prefixLen: 24 }] }, { srcIp: '::ffff:10.0.1.5' }, true],
    ['mapped v4 source (hex) folds to v4', { sourceIps: [{ address: '10.0.1.0', prefixLen: 24 }] }, { srcIp: '::ffff:a00:105' }, true],
    ['v6 /64 hit', { sourceIps: [{ address: '2001:db8::', prefixLen: 64 }] }, v6, true],
    ['v6 /64 miss', { sourceIps: [{ address: '2001:db8:1::', prefixLen: 64 }] }, v6, false],
    ['v6 /0 matches any v6', { sourceIps: [{ address: '::', prefixLen: 0 }] }, v6, true],
    ['v4 /0 never contains v6', { sourceIps: [{ address: '0.0.0.0', prefixLen: 0 }] }, v6, false],
    ['v6 /128 hit', { sourceIps: [{ address: '2001:db8::5', prefixLen: 128 }] }, v6, true],
    ['v6 /128 miss', { sourceIps: [{ address: '2001:db8::4', prefixLen: 128 }] }, v6, false],
    ['v6 /127 boundary', { sourceIps: [{ address: '2001:db8::4', prefixLen: 127 }] }, v6, true],
    ['v6 /33 crosses a word', { sourceIps: [{ address: '2001:db8:8000::', prefixLen: 33 }] }, { srcIp: '2001:db8:ffff::1' }, true],
    ['v6 /33 crosses a word, miss', { sourceIps: [{ address: '2001:db8:8000::', prefixLen: 33 }] }, { srcIp: '2001:db8:7fff::1' }, false],
    ['v6 host bits set are masked', { sourceIps: [{ address: '2001:db8::ff', prefixLen: 120 }] }, v6, true],
    ['v6 with zone suffix', { sourceIps: [{ address: 'fe80::', prefixLen: 10 }] }, { srcIp: 'fe80::1%eth0' }, true],
    ['any of several CIDRs', { sourceIps: [{ address: '192.168.0.0', prefixLen: 16 }, { address: '10.0.0.0', prefixLen: 8 }] }, {}, true],
    ['mixed-family list, v6 source', { sourceIps: [{ address: '10.0.0.0', prefixLen: 8 }, { address: '2001:db8::', prefixLen: 32 }] }, v6, true],
    ...['not-an-ip', '1.2.3', '1.2.3.4.5', '1..2.3', '1.2.3.', '.1.2.3', '1.2.3.256', '1.2.3.0001', '1:2:3', ''].map(
      (srcIp): Case => [`unparseable source ${JSON.stringify(srcIp)} matches no CIDR`, { sourceIps: [{ address: '0.0.0.0', prefixLen: 0 }, { address: '::', prefixLen: 0 }] }, { srcIp }, false],
    ),
    ['unparseable source is outside every notSourceIps', { notSourceIps: [{ address: '0.0.0.0', prefixLen: 0 }] }, { srcIp: '1.2.3' }, true],
    ['non-string source matches no CIDR', { sourceIps: [{ address: '0.0.0.0', prefixLen: 0 }] }, { srcIp: undefined as unknown as string }, false],
    ['notSourceIps hit', { notSourceIps: [{ address: '10.0.0.0', prefixLen: 8 }] }, {}, false],
    ['notSourceIps miss', { notSourceIps: [{ address: '192.168.0.0', prefixLen: 16 }] }, {}, true],
    ['notSourceIps v6 /0 vs v4 source', { notSourceIps: [{ address: '::', prefixLen: 0 }] }, {}, true],
    ['notSourceIps v6 hit', { notSourceIps: [{ address: '2001:db8::', prefixLen: 32 }] }, v6, false],
  ])) t.equal(got, want, name);
});

t.test('destinationIps / notDestinationIps use the final target pod IP', async (t) => {
  for (const [name, got, want] of run([
    ['v4 hit', { destinationIps: [{ address: '10.0.2.0', prefixLen: 24 }] }, {}, true],
    ['v4 miss', { destinationIps: [{ address: '10.0.1.0', prefixLen: 24 }] }, {}, false],
    ['source IP is not the destination', { destinationIps: [{ address: '10.0.1.5', prefixLen: 32 }] }, {}, false],
    ['v6 hit', { destinationIps: [{ address: 'fd00::', prefixLen: 8 }] }, { dstIp: 'fd00::7' }, true],
    ['mapped destination folds to v4', { destinationIps: [{ address: '10.0.2.7', prefixLen: 32 }] }, { dstIp: '::ffff:10.0.2.7' }, true],
    ['/0 v4', { destinationIps: [{ address: '0.0.0.0', prefixLen: 0 }] }, {}, true],
    ['notDestinationIps hit', { notDestinationIps: [{ address: '10.0.2.7', prefixLen: 32 }] }, {}, false],
    ['notDestinationIps miss', { notDestinationIps: [{ address: '10.0.3.0', prefixLen: 24 }] }, {}, true],
  ])) t.equal(got, want, name);
});

t.test('destinationPorts / notDestinationPorts use the target port', async (t) => {
  for (const [name, got, want] of run([
    ['hit', { destinationPorts: [8080] }, {}, true],
    ['miss', { destinationPorts: [80] }, {}, false],
    ['any of several', { destinationPorts: [80, 443, 8080] }, {}, true],
    ['15008 is not the target', { destinationPorts: [15008] }, {}, false],
    ['notDestinationPorts hit', { notDestinationPorts: [8080] }, {}, false],
    ['notDestinationPorts miss', { notDestinationPorts: [80, 443] }, {}, true],
    ['port 0 entry', { destinationPorts: [0] }, { dstPort: 0 }, true],
  ])) t.equal(got, want, name);
});

t.test('every present field must hold', async (t) => {
  const all: Match = {
    namespaces: [{ Exact: 'default' }],
    principals: [{ Suffix: '/sa/sleep' }],
    serviceAccounts: [{ namespace: 'default', serviceAccount: 'sleep' }],
    sourceIps: [{ address: '10.0.1.0', prefixLen: 24 }],
    destinationIps: [{ address: '10.0.2.7', prefixLen: 32 }],
    destinationPorts: [8080],
    notNamespaces: [{ Exact: 'prod' }],
    notPrincipals: [{ Prefix: 'evil/' }],
    notServiceAccounts: [{ namespace: 'default', serviceAccount: 'curl' }],
    notSourceIps: [{ address: '10.0.9.0', prefixLen: 24 }],
    notDestinationIps: [{ address: '10.0.9.0', prefixLen: 24 }],
    notDestinationPorts: [9090],
  };
  t.equal(matches(only(all)), true, 'all twelve fields hold');
  const breakers: [string, Partial<ConnInfo>][] = [
    ['other namespace', { identity: { ...SLEEP, namespace: 'prod' } }],
    ['other account', { identity: { ...SLEEP, serviceAccount: 'curl' } }],
    ['plaintext', PLAIN],
    ['other source', { srcIp: '10.0.9.1' }],
    ['other destination', { dstIp: '10.0.2.8' }],
    ['other port', { dstPort: 9090 }],
  ];
  for (const [name, over] of breakers) t.equal(matches(only(all), over), false, name);
  t.equal(matches(only({ destinationPorts: [8080], namespaces: [{ Exact: 'prod' }] })), false, 'one failing field fails the match');
});

t.test('rules → clauses → matches nesting', async (t) => {
  const cases: [string, readonly Rule[], boolean][] = [
    ['no rules never matches', [], false],
    ['a rule with no clauses matches', [[]], true],
    ['an empty clause matches', [[[]]], true],
    ['an empty match object never matches', [[[{}]]], false],
    ['a match whose lists are all empty is empty', [[[{ namespaces: [], destinationPorts: [], sourceIps: [] }]]], false],
    ['a clause of only empty matches does not match', [[[{}, {}]]], false],
    ['a clause matches if ANY match does (empty match skipped)', [[[{}, MATCH_PORT]]], true],
    ['a clause with only missing matches fails', [[[MISS_PORT, { destinationPorts: [1] }]]], false],
    ['a rule needs ALL clauses', [[[MATCH_PORT], [MISS_PORT]]], false],
    ['a rule with all clauses holding', [[[MATCH_PORT], [{ namespaces: [{ Exact: 'default' }] }]]], true],
    ['an empty clause beside a failing one', [[[], [MISS_PORT]]], false],
    ['an empty clause beside a holding one', [[[], [MATCH_PORT]]], true],
    ['ANY rule is enough', [[[MISS_PORT]], [[MATCH_PORT]]], true],
    ['no rule holds', [[[MISS_PORT]], [[{}]]], false],
    ['an empty rule after failing ones', [[[MISS_PORT]], []], true],
  ];
  for (const [name, rules, want] of cases) t.equal(matches(rules), want, name);
});

t.test('long lists (binary search) find every member and reject non-members', async (t) => {
  const names = Array.from({ length: 40 }, (_, i) => `ns-${String(i).padStart(2, '0')}`);
  const ports = Array.from({ length: 40 }, (_, i) => 1000 + i * 7);
  const nsRules = only({ namespaces: names.map((Exact) => ({ Exact })) });
  const portRules = only({ destinationPorts: ports });
  for (const ns of [...names, 'ns-', 'ns-40', 'ns-000', 'a', 'zzz', '']) {
    const want = names.includes(ns);
    t.equal(matches(nsRules, { identity: { ...SLEEP, namespace: ns } }), want, `namespace ${JSON.stringify(ns)}`);
  }
  for (const port of [...ports, 0, 999, 1001, 1273, 65535]) {
    t.equal(matches(portRules, { dstPort: port }), ports.includes(port), `port ${port}`);
  }
});
