/**
 * Compiles snapshot policies once, when a snapshot is installed, into plain lookup structures so that
 * `authorize()` does no parsing and no allocation per policy on the connection path:
 *   - string matches → sorted exact values plus prefix/suffix lists and a Presence flag;
 *   - service accounts → flat (namespace, account) pairs;
 *   - CIDRs → one Int32Array per list of (family, masked network words, mask words);
 *   - ports → a sorted array.
 * Flat arrays rather than Sets/Maps: with 10^5 rules the cost is cache misses, so fewer and smaller
 * objects per match is what makes evaluation fast (see bench/authz.ts).
 *
 * Semantics follow ZTUNNEL-FACTS "L4 authorization" and istio/ztunnel src/rbac.rs. Notably an empty
 * list is the same as an absent field there (the loader also drops them), and an IPv6 CIDR never
 * contains an IPv4 address (ztunnel's IpNet::contains compares within one family only).
 */
import { ProxyError } from '../errors';
import type { Match, Policy, PolicyAction, PolicyScope } from '../state/model';
import { resourceKey } from '../state/model';
import {
  FIELD_DESTINATION_IPS,
  FIELD_DESTINATION_PORTS,
  FIELD_NAMESPACES,
  FIELD_NOT_DESTINATION_IPS,
  FIELD_NOT_DESTINATION_PORTS,
  FIELD_NOT_NAMESPACES,
  FIELD_NOT_PRINCIPALS,
  FIELD_NOT_SERVICE_ACCOUNTS,
  FIELD_NOT_SOURCE_IPS,
  FIELD_PRINCIPALS,
  FIELD_SERVICE_ACCOUNTS,
  FIELD_SOURCE_IPS,
  compileCidrs,
  compilePorts,
  compileServiceAccounts,
  compileStrings,
  idOf,
  intern,
  newContext,
  type CompiledCidrs,
  type CompiledMatch,
  type CompiledPorts,
  type CompiledRule,
  type CompiledServiceAccounts,
  type CompiledStrings,
  type Context,
} from './compile-parts';
import type { Decision } from './types';

// The compiled shapes, for consumers that only know this module.
export type {
  CompiledCidrs,
  CompiledClause,
  CompiledMatch,
  CompiledPorts,
  CompiledRule,
  CompiledServiceAccounts,
  CompiledStrings,
} from './compile-parts';


export interface CompiledPolicy {
  /** "namespace/name", as in decisions and a workload's `authorizationPolicies`. */
  readonly key: string;
  readonly name: string;
  readonly namespace: string;
  readonly scope: PolicyScope;
  readonly action: PolicyAction;
  readonly dryRun: boolean;
  /** A policy matches if ANY rule matches; no rules → never matches. */
  readonly rules: readonly CompiledRule[];
  /** The decision when this policy decides (Deny: explicitly denied; Allow: allowed), built once. */
  readonly decision: Decision;
}

export interface CompiledPolicies {
  /** Global-scope policies: they apply to every workload. */
  readonly global: readonly CompiledPolicy[];
  /** Namespace-scope policies by their namespace. */
  readonly byNamespace: ReadonlyMap<string, readonly CompiledPolicy[]>;
  /** Every policy (any scope) by "namespace/name". */
  readonly byKey: ReadonlyMap<string, CompiledPolicy>;
}

/**
 * Compiles every policy. Throws ProxyError ERR_POLICY naming the policy and field when a value is
 * malformed (the loader validates first, so this is a defence, never a silent "matches nothing").
 * A later policy with the same key replaces an earlier one, as a keyed store would.
 */
export function compilePolicies(policies: readonly Policy[]): CompiledPolicies {
  const ctx = newContext();
  const byKey = new Map<string, CompiledPolicy>();
  for (const p of policies) {
    const c = compileOne(p, ctx);
    byKey.set(c.key, c);
  }
  const global: CompiledPolicy[] = [];
  const byNamespace = new Map<string, CompiledPolicy[]>();
  for (const c of byKey.values()) {
    if (c.scope === 'Global') global.push(c);
    else if (c.scope === 'Namespace') {
      let list = byNamespace.get(c.namespace);
      if (list === undefined) byNamespace.set(c.namespace, (list = []));
      list.push(c);
    }
    // WorkloadSelector policies are reached only through a workload's authorizationPolicies.
  }
  return { global, byNamespace, byKey };
}

/** Compiles one policy on its own (no sharing with others): for tests and tools. */
export function compilePolicy(p: Policy): CompiledPolicy {
  return compileOne(p, newContext());
}

function compileOne(p: Policy, ctx: Context): CompiledPolicy {
  const key = resourceKey(p.namespace, p.name);
  if (p.scope !== 'Global' && p.scope !== 'Namespace' && p.scope !== 'WorkloadSelector') {
    throw new ProxyError('ERR_POLICY', `policy ${key}: scope must be Global, Namespace or WorkloadSelector; got ${JSON.stringify(p.scope)}`);
  }
  if (p.action !== 'Allow' && p.action !== 'Deny') {
    throw new ProxyError('ERR_POLICY', `policy ${key}: action must be Allow or Deny; got ${JSON.stringify(p.action)}`);
  }
  ctx.key = key;
  // map(), not push(): map allocates exactly-sized arrays, push leaves spare capacity in each of the
  // (many, tiny) rule and clause arrays.
  const rules = p.rules.map((rule, r) =>
    rule.map((clause, c) =>
      clause.map((m, i) => {
        ctx.rule = r;
        ctx.clause = c;
        ctx.match = i;
        return compileMatch(m, ctx);
      }),
    ),
  );
  return {
    key,
    name: p.name,
    namespace: p.namespace,
    scope: p.scope,
    action: p.action,
    dryRun: p.dryRun,
    rules,
    decision: Object.freeze(
      p.action === 'Deny'
        ? { allowed: false, reason: `explicitly denied by: ${key}`, policy: key }
        : { allowed: true, reason: `allowed by: ${key}`, policy: key },
    ),
  };
}

function compileMatch(m: Match, ctx: Context): CompiledMatch {
  const namespaces = compileStrings(m.namespaces, ctx, 'namespaces');
  const notNamespaces = compileStrings(m.notNamespaces, ctx, 'notNamespaces');
  const principals = compileStrings(m.principals, ctx, 'principals');
  const notPrincipals = compileStrings(m.notPrincipals, ctx, 'notPrincipals');
  const serviceAccounts = compileServiceAccounts(m.serviceAccounts, ctx, 'serviceAccounts');
  const notServiceAccounts = compileServiceAccounts(m.notServiceAccounts, ctx, 'notServiceAccounts');
  const sourceIps = compileCidrs(m.sourceIps, ctx, 'sourceIps');
  const notSourceIps = compileCidrs(m.notSourceIps, ctx, 'notSourceIps');
  const destinationIps = compileCidrs(m.destinationIps, ctx, 'destinationIps');
  const notDestinationIps = compileCidrs(m.notDestinationIps, ctx, 'notDestinationIps');
  const destinationPorts = compilePorts(m.destinationPorts, ctx, 'destinationPorts');
  const notDestinationPorts = compilePorts(m.notDestinationPorts, ctx, 'notDestinationPorts');
  const present =
    (namespaces === null ? 0 : FIELD_NAMESPACES) |
    (notNamespaces === null ? 0 : FIELD_NOT_NAMESPACES) |
    (principals === null ? 0 : FIELD_PRINCIPALS) |
    (notPrincipals === null ? 0 : FIELD_NOT_PRINCIPALS) |
    (serviceAccounts === null ? 0 : FIELD_SERVICE_ACCOUNTS) |
    (notServiceAccounts === null ? 0 : FIELD_NOT_SERVICE_ACCOUNTS) |
    (sourceIps === null ? 0 : FIELD_SOURCE_IPS) |
    (notSourceIps === null ? 0 : FIELD_NOT_SOURCE_IPS) |
    (destinationIps === null ? 0 : FIELD_DESTINATION_IPS) |
    (notDestinationIps === null ? 0 : FIELD_NOT_DESTINATION_IPS) |
    (destinationPorts === null ? 0 : FIELD_DESTINATION_PORTS) |
    (notDestinationPorts === null ? 0 : FIELD_NOT_DESTINATION_PORTS);
  if (present === 0) return EMPTY_MATCH;
  // The parts are interned, so equal matches have identical parts: share one object for them
  // (generated policies repeat matches such as a port list thousands of times).
  let id = `m${present}`;
  const parts = [namespaces, notNamespaces, principals, notPrincipals, serviceAccounts, notServiceAccounts,
    sourceIps, notSourceIps, destinationIps, notDestinationIps, destinationPorts, notDestinationPorts];
  for (const part of parts) if (part !== null) id += `,${idOf(ctx, part)}`;
  return intern(ctx, id, newMatch(
    present,
    namespaces,
    notNamespaces,
    principals,
    notPrincipals,
    serviceAccounts,
    notServiceAccounts,
    sourceIps,
    notSourceIps,
    destinationIps,
    notDestinationIps,
    destinationPorts,
    notDestinationPorts,
  ));
}

/** Every CompiledMatch is built here, fields always in this order: they all share one hidden class. */
function newMatch(
  present: number,
  namespaces: CompiledStrings | null,
  notNamespaces: CompiledStrings | null,
  principals: CompiledStrings | null,
  notPrincipals: CompiledStrings | null,
  serviceAccounts: CompiledServiceAccounts | null,
  notServiceAccounts: CompiledServiceAccounts | null,
  sourceIps: CompiledCidrs | null,
  notSourceIps: CompiledCidrs | null,
  destinationIps: CompiledCidrs | null,
  notDestinationIps: CompiledCidrs | null,
  destinationPorts: CompiledPorts | null,
  notDestinationPorts: CompiledPorts | null,
): CompiledMatch {
  return {
    empty: present === 0,
    present,
    namespaces,
    notNamespaces,
    principals,
    notPrincipals,
    serviceAccounts,
    notServiceAccounts,
    sourceIps,
    notSourceIps,
    destinationIps,
    notDestinationIps,
    destinationPorts,
    notDestinationPorts,
  };
}

const EMPTY_MATCH: CompiledMatch = Object.freeze(
  newMatch(0, null, null, null, null, null, null, null, null, null, null, null, null),
);
