/**
 * Evaluates compiled policies against one connection. ConnFacts are derived once per connection
 * (`connFacts`: one object, plus the principal string if a principal is ever compared); matching a
 * policy then only reads numbers, arrays and strings: no parsing, no allocation per policy, rule or
 * match.
 *
 * Semantics (ZTUNNEL-FACTS "L4 authorization", istio/ztunnel src/rbac.rs):
 *   policy  = ANY rule (no rules → never matches)
 *   rule    = ALL clauses (no clauses → matches)
 *   clause  = ANY match (no matches → matches)
 *   match   = every present field holds; an empty match never matches
 *   field   = (positive empty or one item matches) AND (negative empty or none matches)
 */
import { ipv6Words } from '../net/ip';
import { principalOf } from '../identity/spiffe';
import type { Identity } from '../identity/spiffe';
import type { ConnInfo } from './types';
import {
  CIDR_WORDS,
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
  type CompiledCidrs,
  type CompiledMatch,
  type CompiledPorts,
  type CompiledRule,
  type CompiledServiceAccounts,
  type CompiledStrings,
} from './compile-parts';
import type { CompiledPolicy } from './compile';

/** 0 = not an IP address (matches no CIDR). */
type Family = 0 | 4 | 6;

/**
 * What the policy engine compares against, derived once per connection. Filled in place (no
 * intermediate objects): this runs for every inbound connection.
 */
export interface ConnFacts {
  readonly identity: Identity | null;
  /**
   * The SPIFFE id without "spiffe://", built on first use: most policy sets never look at it.
   * Plaintext never has one (and never matches).
   */
  principal: string | null;
  /** The identity's namespace; "" for plaintext, as ztunnel does. */
  readonly namespace: string;
  readonly serviceAccount: string;
  srcFamily: Family;
  /** IPv4: word 0 only; IPv6: four 32-bit words (int32). */
  src0: number;
  src1: number;
  src2: number;
  src3: number;
  dstFamily: Family;
  dst0: number;
  dst1: number;
  dst2: number;
  dst3: number;
  readonly dstPort: number;
}

export function connFacts(conn: ConnInfo): ConnFacts {
  const id = conn.identity;
  const f: ConnFacts = {
    identity: id,
    principal: null,
    namespace: id === null ? '' : id.namespace,
    serviceAccount: id === null ? '' : id.serviceAccount,
    srcFamily: 0,
    src0: 0,
    src1: 0,
    src2: 0,
    src3: 0,
    dstFamily: 0,
    dst0: 0,
    dst1: 0,
    dst2: 0,
    dst3: 0,
    dstPort: conn.dstPort,
  };
  parseIpInto(conn.srcIp, f, true);
  parseIpInto(conn.dstIp, f, false);
  return f;
}

function setIp(f: ConnFacts, src: boolean, family: Family, w0: number, w1: number, w2: number, w3: number): void {
  if (src) {
    f.srcFamily = family;
    f.src0 = w0;
    f.src1 = w1;
    f.src2 = w2;
    f.src3 = w3;
  } else {
    f.dstFamily = family;
    f.dst0 = w0;
    f.dst1 = w1;
    f.dst2 = w2;
    f.dst3 = w3;
  }
}

/**
 * Numeric form of a socket address; family 0 (matches no CIDR) when `s` is not an address.
 * IPv4-mapped IPv6 (::ffff:a.b.c.d, what dual-stack sockets report) folds to IPv4, as ztunnel
 * canonicalises peer addresses before authorization.
 */
function parseIpInto(s: string, f: ConnFacts, src: boolean): void {
  if (typeof s !== 'string') return;
  if (s.indexOf(':') < 0) {
    const v4 = parseIpv4(s);
    if (v4 !== null) setIp(f, src, 4, v4, 0, 0, 0);
    return;
  }
  const w = ipv6Words(s);
  if (w === null) return;
  if (w[0] === 0 && w[1] === 0 && w[2] === 0 && w[3] === 0 && w[4] === 0 && w[5] === 0xffff) {
    setIp(f, src, 4, (w[6]! << 16) | w[7]!, 0, 0, 0);
    return;
  }
  setIp(f, src, 6, (w[0]! << 16) | w[1]!, (w[2]! << 16) | w[3]!, (w[4]! << 16) | w[5]!, (w[6]! << 16) | w[7]!);
}

/** Dotted quad → int32, or null. Hand-rolled: this runs once per connection. */
function parseIpv4(s: string): number | null {
  let value = 0;
  let octet = 0;
  let digits = 0;
  let dots = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 46 /* . */) {
      if (digits === 0 || dots === 3) return null;
      value = (value << 8) | octet;
      octet = 0;
      digits = 0;
      dots++;
    } else if (c >= 48 && c <= 57) {
      octet = octet * 10 + (c - 48);
      if (++digits > 3 || octet > 255) return null;
    } else {
      return null;
    }
  }
  if (dots !== 3 || digits === 0) return null;
  return ((value << 8) | octet) | 0;
}

export function policyMatches(p: CompiledPolicy, f: ConnFacts): boolean {
  const rules = p.rules;
  for (let r = 0; r < rules.length; r++) {
    if (ruleMatches(rules[r]!, f)) return true;
  }
  return false; // includes "no rules": a policy with no rules never matches
}

function ruleMatches(rule: CompiledRule, f: ConnFacts): boolean {
  for (let c = 0; c < rule.length; c++) {
    const clause = rule[c]!;
    if (clause.length === 0) continue; // an empty clause matches
    let any = false;
    for (let m = 0; m < clause.length; m++) {
      if (matchHolds(clause[m]!, f)) {
        any = true;
        break;
      }
    }
    if (!any) return false;
  }
  return true;
}

export function matchHolds(m: CompiledMatch, f: ConnFacts): boolean {
  const b = m.present;
  if (b === 0) return false; // an empty match never matches
  // Cheapest checks first; the result does not depend on the order.
  if (b & (FIELD_DESTINATION_PORTS | FIELD_NOT_DESTINATION_PORTS)) {
    if (b & FIELD_DESTINATION_PORTS && !portIn(m.destinationPorts!, f.dstPort)) return false;
    if (b & FIELD_NOT_DESTINATION_PORTS && portIn(m.notDestinationPorts!, f.dstPort)) return false;
  }
  if (b & (FIELD_DESTINATION_IPS | FIELD_NOT_DESTINATION_IPS)) {
    if (b & FIELD_DESTINATION_IPS && !cidrsContain(m.destinationIps!, f.dstFamily, f.dst0, f.dst1, f.dst2, f.dst3)) return false;
    if (b & FIELD_NOT_DESTINATION_IPS && cidrsContain(m.notDestinationIps!, f.dstFamily, f.dst0, f.dst1, f.dst2, f.dst3)) return false;
  }
  if (b & (FIELD_SOURCE_IPS | FIELD_NOT_SOURCE_IPS)) {
    if (b & FIELD_SOURCE_IPS && !cidrsContain(m.sourceIps!, f.srcFamily, f.src0, f.src1, f.src2, f.src3)) return false;
    if (b & FIELD_NOT_SOURCE_IPS && cidrsContain(m.notSourceIps!, f.srcFamily, f.src0, f.src1, f.src2, f.src3)) return false;
  }
  if (b & (FIELD_SERVICE_ACCOUNTS | FIELD_NOT_SERVICE_ACCOUNTS)) {
    if (b & FIELD_SERVICE_ACCOUNTS && !serviceAccountIn(m.serviceAccounts!, f)) return false;
    if (b & FIELD_NOT_SERVICE_ACCOUNTS && serviceAccountIn(m.notServiceAccounts!, f)) return false;
  }
  if (b & (FIELD_PRINCIPALS | FIELD_NOT_PRINCIPALS)) {
    if (b & FIELD_PRINCIPALS && !principalIn(m.principals!, f)) return false;
    if (b & FIELD_NOT_PRINCIPALS && principalIn(m.notPrincipals!, f)) return false;
  }
  if (b & (FIELD_NAMESPACES | FIELD_NOT_NAMESPACES)) {
    if (b & FIELD_NAMESPACES && !stringsMatch(m.namespaces!, f.namespace)) return false;
    if (b & FIELD_NOT_NAMESPACES && stringsMatch(m.notNamespaces!, f.namespace)) return false;
  }
  return true;
}

/** Plaintext has no principal: ztunnel requires the "spiffe://" form, so nothing matches it. */
function principalIn(m: CompiledStrings, f: ConnFacts): boolean {
  if (f.identity === null) return false;
  return stringsMatch(m, f.principal ?? (f.principal = principalOf(f.identity)));
}

/** Namespace and account of the identity (trust domain not compared); plaintext matches none. */
function serviceAccountIn(pairs: CompiledServiceAccounts, f: ConnFacts): boolean {
  if (f.identity === null) return false;
  for (let i = 0; i < pairs.length; i += 2) {
    if (pairs[i] === f.namespace && pairs[i + 1] === f.serviceAccount) return true;
  }
  return false;
}

export function stringsMatch(m: CompiledStrings, s: string): boolean {
  if (m.presence && s.length > 0) return true;
  if (m.exact.length > 0 && exactIn(m.exact, s)) return true;
  const pre = m.prefixes;
  for (let i = 0; i < pre.length; i++) if (s.startsWith(pre[i]!)) return true;
  const suf = m.suffixes;
  for (let i = 0; i < suf.length; i++) if (s.endsWith(suf[i]!)) return true;
  return false;
}

// Separate number and string lookups on purpose: one function seeing both element kinds turns
// polymorphic in V8 and costs several times more per call.

/** Membership in sorted unique values: a scan when short, binary search when long. */
export function exactIn(a: readonly string[], v: string): boolean {
  const n = a.length;
  if (n <= 8) {
    // Length first: most candidates differ in length, and that avoids a full string compare.
    for (let i = 0; i < n; i++) {
      const x = a[i]!;
      if (x.length === v.length && x === v) return true;
    }
    return false;
  }
  let lo = 0;
  let hi = n - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    const x = a[mid]!;
    if (x === v) return true;
    if (x < v) lo = mid + 1;
    else hi = mid - 1;
  }
  return false;
}

/** Membership in sorted unique ports: a scan when short, binary search when long. */
export function portIn(a: CompiledPorts, v: number): boolean {
  const n = a.length;
  if (n <= 8) {
    for (let i = 0; i < n; i++) if (a[i] === v) return true;
    return false;
  }
  let lo = 0;
  let hi = n - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    const x = a[mid]!;
    if (x === v) return true;
    if (x < v) lo = mid + 1;
    else hi = mid - 1;
  }
  return false;
}

/** An IPv4 address is only in IPv4 CIDRs and an IPv6 one only in IPv6 CIDRs (as ipnet does). */
export function cidrsContain(a: CompiledCidrs, fam: Family, w0: number, w1: number, w2: number, w3: number): boolean {
  if (fam === 0) return false;
  for (let i = 0; i < a.length; i += CIDR_WORDS) {
    if (a[i] !== fam || (w0 & a[i + 5]!) !== a[i + 1]) continue;
    if (fam === 4) return true;
    if ((w1 & a[i + 6]!) === a[i + 2] && (w2 & a[i + 7]!) === a[i + 3] && (w3 & a[i + 8]!) === a[i + 4]) return true;
  }
  return false;
}
