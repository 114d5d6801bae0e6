/**
 * Compiles snapshot policies once, when a snapshot is installed, into plain lookup structures so that
 * `authorize()` does no parsing and no allocation per policy on the connection path:
 *   - string matches → an exact-value Set plus prefix/suffix lists and a Presence flag;
 *   - service accounts → namespace → Set(serviceAccount);
 *   - CIDRs → Int32Array (network, mask) pairs, IPv4 one word each, IPv6 four words each;
 *   - ports → Set(number).
 *
 * Semantics follow ZTUNNEL-FACTS "L4 authorization" and istio/ztunnel src/rbac.rs. Notably an empty
 * list is the same as an absent field there (the loader also drops them), and an IPv6 CIDR never
 * contains an IPv4 address (ztunnel's IpNet::contains compares within one family only).
 */
import { ProxyError } from '../errors';
import { ipFamily, ipv4ToInt, ipv6Words } from '../net/ip';
import type { Cidr, Match, Policy, PolicyAction, PolicyScope, ServiceAccountMatch, StringMatch } from '../state/model';
import { resourceKey } from '../state/model';
import type { Decision } from './types';

/** A list of string matches: matches a value if any item does. */
export interface CompiledStrings {
  /** Presence: any non-empty value. */
  readonly presence: boolean;
  readonly exact: ReadonlySet<string> | null;
  readonly prefixes: readonly string[];
  readonly suffixes: readonly string[];
}

/** A list of CIDRs: `v4` holds (net, mask) pairs, `v6` holds 4 net words then 4 mask words per CIDR. */
export interface CompiledCidrs {
  readonly v4: Int32Array;
  readonly v6: Int32Array;
}

/** namespace → service accounts. */
export type CompiledServiceAccounts = ReadonlyMap<string, ReadonlySet<string>>;

/** One match object; null fields were absent (or empty). `empty` = no field present: never matches. */
export interface CompiledMatch {
  readonly empty: boolean;
  readonly namespaces: CompiledStrings | null;
  readonly notNamespaces: CompiledStrings | null;
  readonly principals: CompiledStrings | null;
  readonly notPrincipals: CompiledStrings | null;
  readonly serviceAccounts: CompiledServiceAccounts | null;
  readonly notServiceAccounts: CompiledServiceAccounts | null;
  readonly sourceIps: CompiledCidrs | null;
  readonly notSourceIps: CompiledCidrs | null;
  readonly destinationIps: CompiledCidrs | null;
  readonly notDestinationIps: CompiledCidrs | null;
  readonly destinationPorts: ReadonlySet<number> | null;
  readonly notDestinationPorts: ReadonlySet<number> | null;
}

/** A clause matches if ANY of its matches does (an empty clause matches). */
export type CompiledClause = readonly CompiledMatch[];
/** A rule matches if ALL of its clauses do (a rule with no clauses matches). */
export type CompiledRule = readonly CompiledClause[];

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
  const byKey = new Map<string, CompiledPolicy>();
  for (const p of policies) {
    const c = compilePolicy(p);
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

export function compilePolicy(p: Policy): CompiledPolicy {
  const key = resourceKey(p.namespace, p.name);
  if (p.scope !== 'Global' && p.scope !== 'Namespace' && p.scope !== 'WorkloadSelector') {
    throw new ProxyError('ERR_POLICY', `policy ${key}: scope must be Global, Namespace or WorkloadSelector; got ${JSON.stringify(p.scope)}`);
  }
  if (p.action !== 'Allow' && p.action !== 'Deny') {
    throw new ProxyError('ERR_POLICY', `policy ${key}: action must be Allow or Deny; got ${JSON.stringify(p.action)}`);
  }
  const rules = p.rules.map((rule, r) =>
    rule.map((clause, c) => clause.map((m, i) => compileMatch(m, `policy ${key} rules[${r}][${c}][${i}]`))),
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

function compileMatch(m: Match, where: string): CompiledMatch {
  const strings = (l: readonly StringMatch[] | undefined, f: string) =>
    l === undefined || l.length === 0 ? null : compileStrings(l, `${where}.${f}`);
  const cidrs = (l: readonly Cidr[] | undefined, f: string) =>
    l === undefined || l.length === 0 ? null : compileCidrs(l, `${where}.${f}`);
  const sas = (l: readonly ServiceAccountMatch[] | undefined) =>
    l === undefined || l.length === 0 ? null : compileServiceAccounts(l);
  const ports = (l: readonly number[] | undefined, f: string) =>
    l === undefined || l.length === 0 ? null : compilePorts(l, `${where}.${f}`);
  const out: CompiledMatch = {
    empty: false,
    namespaces: strings(m.namespaces, 'namespaces'),
    notNamespaces: strings(m.notNamespaces, 'notNamespaces'),
    principals: strings(m.principals, 'principals'),
    notPrincipals: strings(m.notPrincipals, 'notPrincipals'),
    serviceAccounts: sas(m.serviceAccounts),
    notServiceAccounts: sas(m.notServiceAccounts),
    sourceIps: cidrs(m.sourceIps, 'sourceIps'),
    notSourceIps: cidrs(m.notSourceIps, 'notSourceIps'),
    destinationIps: cidrs(m.destinationIps, 'destinationIps'),
    notDestinationIps: cidrs(m.notDestinationIps, 'notDestinationIps'),
    destinationPorts: ports(m.destinationPorts, 'destinationPorts'),
    notDestinationPorts: ports(m.notDestinationPorts, 'notDestinationPorts'),
  };
  const empty = Object.entries(out).every(([k, v]) => k === 'empty' || v === null);
  return { ...out, empty };
}

function compileStrings(list: readonly StringMatch[], where: string): CompiledStrings {
  let presence = false;
  const exact = new Set<string>();
  const prefixes: string[] = [];
  const suffixes: string[] = [];
  list.forEach((sm, i) => {
    if (sm !== null && typeof sm === 'object') {
      if ('Exact' in sm && typeof sm.Exact === 'string') return void exact.add(sm.Exact);
      if ('Prefix' in sm && typeof sm.Prefix === 'string') return void prefixes.push(sm.Prefix);
      if ('Suffix' in sm && typeof sm.Suffix === 'string') return void suffixes.push(sm.Suffix);
      if ('Presence' in sm) return void (presence = true);
    }
    throw new ProxyError('ERR_POLICY', `${where}[${i}]: expected one of Exact, Prefix, Suffix, Presence; got ${JSON.stringify(sm)}`);
  });
  // "" is a prefix/suffix of every value, exactly like ztunnel's starts_with("")/ends_with("").
  return { presence, exact: exact.size === 0 ? null : exact, prefixes, suffixes };
}

function compileServiceAccounts(list: readonly ServiceAccountMatch[]): CompiledServiceAccounts {
  const byNs = new Map<string, Set<string>>();
  for (const sa of list) {
    let set = byNs.get(sa.namespace);
    if (set === undefined) byNs.set(sa.namespace, (set = new Set()));
    set.add(sa.serviceAccount);
  }
  return byNs;
}

function compilePorts(list: readonly number[], where: string): ReadonlySet<number> {
  list.forEach((p, i) => {
    if (!Number.isInteger(p) || p < 0 || p > 65535) {
      throw new ProxyError('ERR_POLICY', `${where}[${i}]: ${JSON.stringify(p)} is not a port (0..65535)`);
    }
  });
  return new Set(list);
}

function compileCidrs(list: readonly Cidr[], where: string): CompiledCidrs {
  const v4: number[] = [];
  const v6: number[] = [];
  list.forEach((c, i) => {
    const bad = (why: string): never => {
      throw new ProxyError('ERR_POLICY', `${where}[${i}]: ${JSON.stringify(c)} is not a CIDR: ${why}`);
    };
    const fam = typeof c?.address === 'string' ? ipFamily(c.address) : null;
    if (fam === null) bad('address is not an IP address');
    const max = fam === 4 ? 32 : 128;
    if (!Number.isInteger(c.prefixLen) || c.prefixLen < 0 || c.prefixLen > max) bad(`prefix length must be 0..${max}`);
    if (fam === 4) {
      const mask = maskWord(c.prefixLen);
      // Masked again defensively: host bits never take part in the comparison.
      v4.push(ipv4ToInt(c.address) & mask, mask);
      return;
    }
    const words = ipv6Words(c.address)!; // ipFamily said 6, so the words parse
    const nets: number[] = [];
    const masks: number[] = [];
    for (let w = 0; w < 4; w++) {
      const mask = maskWord(c.prefixLen - w * 32);
      nets.push((((words[w * 2]! << 16) | words[w * 2 + 1]!) & mask) | 0);
      masks.push(mask);
    }
    v6.push(...nets, ...masks);
  });
  return { v4: Int32Array.from(v4), v6: Int32Array.from(v6) };
}

/** The int32 mask for `bits` leading one-bits of a 32-bit word (clamped to 0..32). */
function maskWord(bits: number): number {
  if (bits <= 0) return 0;
  if (bits >= 32) return -1;
  return (-1 << (32 - bits)) | 0;
}
