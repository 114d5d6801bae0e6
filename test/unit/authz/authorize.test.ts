/**
 * Policy selection and the DENY → ALLOW decision order (ZTUNNEL-FACTS "L4 authorization";
 * istio/ztunnel DemandProxyState::assert_rbac), with exact reason and policy values.
 */
import t from 'tap';
import { authorize } from '../../../src/authz/authorize';
import { compilePolicies } from '../../../src/authz/compile';
import type { ConnInfo, Decision } from '../../../src/authz/types';
import type { Policy, Workload } from '../../../src/state/model';
import { MATCH_PORT, MISS_PORT, conn, only, policy, workload } from './fixtures';

const MATCH = only(MATCH_PORT);
const MISS = only(MISS_PORT);
const DEFAULT_ALLOW = { allowed: true, reason: 'no allow policies', policy: null };
const NONE_ALLOWED = { allowed: false, reason: 'allow policies exist, but none allowed', policy: null };
const denied = (key: string) => ({ allowed: false, reason: `explicitly denied by: ${key}`, policy: key });
const allowed = (key: string) => ({ allowed: true, reason: `allowed by: ${key}`, policy: key });

function decide(policies: readonly Policy[], dst: Partial<Workload> = {}, c: Partial<ConnInfo> = {}): Decision {
  return authorize(conn(c), workload(dst), { policies: compilePolicies(policies) });
}

type Case = [name: string, policies: readonly Policy[], dst: Partial<Workload>, want: Decision];

t.test('selection: namespace, global, and named WorkloadSelector policies', async (t) => {
  const cases: Case[] = [
    ['no policies: allowed by default', [], {}, DEFAULT_ALLOW],
    ['Namespace DENY in the destination namespace', [policy('d', { action: 'Deny', rules: MATCH })], {}, denied('default/d')],
    ['Namespace DENY in another namespace is ignored', [policy('d', { namespace: 'prod', action: 'Deny', rules: MATCH })], {}, DEFAULT_ALLOW],
    ['Namespace ALLOW elsewhere does not make allow policies exist', [policy('a', { namespace: 'prod', rules: MISS })], {}, DEFAULT_ALLOW],
    ['Global DENY applies in any namespace', [policy('g', { namespace: 'istio-system', scope: 'Global', action: 'Deny', rules: MATCH })], { namespace: 'prod' }, denied('istio-system/g')],
    ['Global ALLOW applies in any namespace', [policy('g', { namespace: 'istio-system', scope: 'Global', rules: MISS })], { namespace: 'prod' }, NONE_ALLOWED],
    ['WorkloadSelector DENY not named is ignored', [policy('w', { scope: 'WorkloadSelector', action: 'Deny', rules: MATCH })], {}, DEFAULT_ALLOW],
    ['WorkloadSelector DENY named applies', [policy('w', { scope: 'WorkloadSelector', action: 'Deny', rules: MATCH })], { authorizationPolicies: ['default/w'] }, denied('default/w')],
    ['WorkloadSelector ALLOW named applies', [policy('w', { scope: 'WorkloadSelector', rules: MATCH })], { authorizationPolicies: ['default/w'] }, allowed('default/w')],
    ['WorkloadSelector from another namespace named applies (by key)', [policy('w', { namespace: 'prod', scope: 'WorkloadSelector', action: 'Deny', rules: MATCH })], { authorizationPolicies: ['prod/w'] }, denied('prod/w')],
    ['a named policy that does not exist is ignored', [], { authorizationPolicies: ['default/gone'] }, DEFAULT_ALLOW],
    ['an unknown name does not hide a known one', [policy('w', { scope: 'WorkloadSelector', rules: MISS })], { authorizationPolicies: ['default/gone', 'default/w'] }, NONE_ALLOWED],
    // ztunnel looks named policies up by key whatever their scope
    ['a Namespace policy of another namespace, named, applies', [policy('n', { namespace: 'prod', action: 'Deny', rules: MATCH })], { authorizationPolicies: ['prod/n'] }, denied('prod/n')],
    ['a named Global policy is evaluated (once)', [policy('g', { namespace: 'istio-system', scope: 'Global', action: 'Deny', rules: MATCH })], { authorizationPolicies: ['istio-system/g'] }, denied('istio-system/g')],
  ];
  for (const [name, pols, dst, want] of cases) t.same(decide(pols, dst), want, name);
});

t.test('decision order: DENY first, then default allow, then ALLOW', async (t) => {
  const cases: Case[] = [
    ['DENY beats a matching ALLOW', [policy('a', { rules: MATCH }), policy('d', { action: 'Deny', rules: MATCH })], {}, denied('default/d')],
    ['Global DENY beats a matching WorkloadSelector ALLOW', [policy('g', { namespace: 'istio-system', scope: 'Global', action: 'Deny', rules: MATCH }), policy('w', { scope: 'WorkloadSelector', rules: MATCH })], { authorizationPolicies: ['default/w'] }, denied('istio-system/g')],
    ['non-matching DENY only: allowed by default', [policy('d', { action: 'Deny', rules: MISS })], {}, DEFAULT_ALLOW],
    ['DENY with no rules never matches', [policy('d', { action: 'Deny', rules: [] })], {}, DEFAULT_ALLOW],
    ['DENY with an empty rule matches everything', [policy('d', { action: 'Deny', rules: [[]] })], {}, denied('default/d')],
    ['ALLOW matches', [policy('a', { rules: MATCH })], {}, allowed('default/a')],
    ['ALLOW with no rules: allow policies exist, none allowed', [policy('a', { rules: [] })], {}, NONE_ALLOWED],
    ['ALLOW not matching', [policy('a', { rules: MISS })], {}, NONE_ALLOWED],
    ['second ALLOW decides', [policy('a1', { rules: MISS }), policy('a2', { rules: MATCH })], {}, allowed('default/a2')],
    ['first matching DENY named', [policy('d1', { action: 'Deny', rules: MISS }), policy('d2', { action: 'Deny', rules: MATCH }), policy('d3', { action: 'Deny', rules: MATCH })], {}, denied('default/d2')],
    ['ALLOW with an empty match object never allows', [policy('a', { rules: [[[{}]]] })], {}, NONE_ALLOWED],
  ];
  for (const [name, pols, dst, want] of cases) t.same(decide(pols, dst), want, name);
});

t.test('identity-based ALLOW and plaintext', async (t) => {
  const onlySleep = [policy('a', { rules: only({ principals: [{ Exact: 'cluster.local/ns/default/sa/sleep' }] }) })];
  t.same(decide(onlySleep), allowed('default/a'), 'mTLS sleep allowed');
  t.same(decide(onlySleep, {}, { identity: null }), NONE_ALLOWED, 'plaintext not allowed');
  const anyId = [policy('a', { rules: only({ principals: [{ Presence: [] }] }) })];
  t.same(decide(anyId, {}, { identity: null }), NONE_ALLOWED, 'Presence requires an identity');
  const denyPlain = [policy('d', { action: 'Deny', rules: only({ notPrincipals: [{ Presence: [] }] }) })];
  t.same(decide(denyPlain, {}, { identity: null }), denied('default/d'), 'DENY notPrincipals Presence rejects plaintext');
  t.same(decide(denyPlain), DEFAULT_ALLOW, '... and lets mTLS through');
  const bySrc = [policy('a', { rules: only({ sourceIps: [{ address: '10.0.1.0', prefixLen: 24 }] }) })];
  t.same(decide(bySrc, {}, { srcIp: '::ffff:10.0.1.5' }), allowed('default/a'), 'IPv4-mapped peer address is normalised');
});

t.test('dry-run policies are reported, never enforced', async (t) => {
  const cases: Case[] = [
    ['dry-run DENY that matches: still allowed, would deny',
      [policy('d', { action: 'Deny', rules: MATCH, dryRun: true })], {},
      { ...DEFAULT_ALLOW, dryRun: [{ policy: 'default/d', wouldAllow: false }] }],
    ['dry-run DENY that matches, over an enforced ALLOW',
      [policy('d', { action: 'Deny', rules: MATCH, dryRun: true }), policy('a', { rules: MATCH })], {},
      { ...allowed('default/a'), dryRun: [{ policy: 'default/d', wouldAllow: false }] }],
    ['dry-run DENY that does not match: nothing to report',
      [policy('d', { action: 'Deny', rules: MISS, dryRun: true })], {}, DEFAULT_ALLOW],
    ['dry-run DENY when already denied: nothing would change',
      [policy('d', { action: 'Deny', rules: MATCH, dryRun: true }), policy('a', { rules: MISS })], {}, NONE_ALLOWED],
    ['dry-run ALLOW does not make allow policies exist; it would deny when it does not match',
      [policy('a', { rules: MISS, dryRun: true })], {},
      { ...DEFAULT_ALLOW, dryRun: [{ policy: 'default/a', wouldAllow: false }] }],
    ['dry-run ALLOW that matches, with no enforced ALLOW: nothing would change',
      [policy('a', { rules: MATCH, dryRun: true })], {}, DEFAULT_ALLOW],
    ['dry-run ALLOW that matches while enforced ALLOWs deny: would allow',
      [policy('a', { rules: MISS }), policy('dr', { rules: MATCH, dryRun: true })], {},
      { ...NONE_ALLOWED, dryRun: [{ policy: 'default/dr', wouldAllow: true }] }],
    ['dry-run ALLOW when an enforced ALLOW already allowed: nothing to report',
      [policy('a', { rules: MATCH }), policy('dr', { rules: MISS, dryRun: true })], {}, allowed('default/a')],
    ['enforced DENY wins; dry-run policies are not consulted',
      [policy('d', { action: 'Deny', rules: MATCH }), policy('dr', { rules: MATCH, dryRun: true }), policy('a', { rules: MISS })], {},
      denied('default/d')],
    ['several dry-run policies, in selection order',
      [policy('d1', { action: 'Deny', rules: MATCH, dryRun: true }),
        policy('g', { namespace: 'istio-system', scope: 'Global', action: 'Deny', rules: MATCH, dryRun: true }),
        policy('w', { scope: 'WorkloadSelector', action: 'Deny', rules: MATCH, dryRun: true })],
      { authorizationPolicies: ['default/w'] },
      { ...DEFAULT_ALLOW, dryRun: [
        { policy: 'default/d1', wouldAllow: false },
        { policy: 'istio-system/g', wouldAllow: false },
        { policy: 'default/w', wouldAllow: false },
      ] }],
    ['a policy named twice is reported once',
      [policy('w', { scope: 'WorkloadSelector', action: 'Deny', rules: MATCH, dryRun: true })],
      { authorizationPolicies: ['default/w', 'default/w'] },
      { ...DEFAULT_ALLOW, dryRun: [{ policy: 'default/w', wouldAllow: false }] }],
    ['a same-namespace policy also named is reported once',
      [policy('n', { action: 'Deny', rules: MATCH, dryRun: true })],
      { authorizationPolicies: ['default/n'] },
      { ...DEFAULT_ALLOW, dryRun: [{ policy: 'default/n', wouldAllow: false }] }],
  ];
  for (const [name, pols, dst, want] of cases) t.same(decide(pols, dst), want, name);
});

t.test('pure and frozen: same answer twice, decisions cannot be mutated', async (t) => {
  const snapshot = {
    policies: compilePolicies([
      policy('d', { action: 'Deny', rules: MATCH, dryRun: true }),
      policy('a', { rules: only({ namespaces: [{ Exact: 'default' }] }) }),
    ]),
  };
  const first = authorize(conn(), workload(), snapshot);
  const second = authorize(conn(), workload(), snapshot);
  t.same(first, second);
  t.same(first, { ...allowed('default/a'), dryRun: [{ policy: 'default/d', wouldAllow: false }] });
  t.ok(Object.isFrozen(first) && Object.isFrozen(first.dryRun), 'decision and dryRun list are frozen');
  t.same(authorize(conn({ identity: null }), workload(), snapshot), NONE_ALLOWED, 'a plaintext call after an mTLS one');
  t.ok(Object.isFrozen(authorize(conn(), workload(), { policies: compilePolicies([]) })), 'default decision is frozen');
});
