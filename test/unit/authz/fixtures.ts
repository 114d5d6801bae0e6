/** Builders for authorization tests: policies, workloads and connections with plain defaults. */
import type { Match, Policy, PolicyAction, PolicyScope, Rule, Workload } from '../../../src/state/model';
import type { ConnInfo } from '../../../src/authz/types';
import type { Identity } from '../../../src/identity/spiffe';

export const SLEEP: Identity = Object.freeze({ trustDomain: 'cluster.local', namespace: 'default', serviceAccount: 'sleep' });

/** spiffe://cluster.local/ns/default/sa/sleep at 10.0.1.5 → 10.0.2.7:8080. */
export function conn(over: Partial<ConnInfo> = {}): ConnInfo {
  return { srcIp: '10.0.1.5', srcPort: 40000, identity: SLEEP, dstIp: '10.0.2.7', dstPort: 8080, ...over };
}

export function policy(
  name: string,
  opts: { namespace?: string; scope?: PolicyScope; action?: PolicyAction; rules?: readonly Rule[]; dryRun?: boolean } = {},
): Policy {
  return {
    name,
    namespace: opts.namespace ?? 'default',
    scope: opts.scope ?? 'Namespace',
    action: opts.action ?? 'Allow',
    rules: opts.rules ?? [],
    dryRun: opts.dryRun ?? false,
  };
}

/** A one-rule, one-clause, one-match rule list. */
export function only(m: Match): readonly Rule[] {
  return [[[m]]];
}

export function workload(over: Partial<Workload> = {}): Workload {
  return {
    uid: 'cluster1//Pod/default/httpbin',
    name: 'httpbin',
    namespace: 'default',
    workloadIps: ['10.0.2.7'],
    protocol: 'HBONE',
    trustDomain: 'cluster.local',
    serviceAccount: 'httpbin',
    node: 'node1',
    network: '',
    workloadName: 'httpbin',
    workloadType: 'deployment',
    canonicalName: 'httpbin',
    canonicalRevision: 'v1',
    clusterId: 'Kubernetes',
    locality: null,
    status: 'Healthy',
    authorizationPolicies: [],
    capacity: 1,
    services: {},
    ...over,
  };
}

/** Matches the default conn(); handy as the "true" arm of nesting cases. */
export const MATCH_PORT: Match = { destinationPorts: [8080] };
/** Never matches the default conn(). */
export const MISS_PORT: Match = { destinationPorts: [9090] };
