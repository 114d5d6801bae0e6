/**
 * Evaluates compiled policies against one connection. ConnFacts are derived once per connection
 * (`connFacts`); matching a policy then only reads numbers, Sets and strings: no parsing, no
 * allocation per policy, rule or match.
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
import type { ConnInfo } from './types';
import type { CompiledCidrs, CompiledMatch, CompiledPolicy, CompiledServiceAccounts, CompiledStrings } from './compile';

/** 0 = not an IP address (matches no CIDR). */
type Family = 0 | 4 | 6;

/** What the policy engine compares against, derived once per connection. */
export interface ConnFacts {
  readonly hasIdentity: boolean;
  /** The SPIFFE id without "spiffe://"; "" for plaintext (and then never matched). */
  readonly principal: string;
  /** The identity's namespace; "" for plaintext, as ztunnel does. */
  readonly namespace: string;
  readonly serviceAccount: string;
  readonly srcFamily: Family;
  /** IPv4: word 0 only; IPv6: four 32-bit words (int32). */
  readonly src0: number;
  readonly src1: number;
  readonly src2: number;
  readonly src3: number;
  readonly dstFamily: Family;
  readonly dst0: number;
  readonly dst1: number;
  readonly dst2: number;
  readonly dst3: number;
  readonly dstPort: number;
}

export function connFacts(conn: ConnInfo): ConnFacts {
  const id = conn.identity;
  const src = parseIp(conn.srcIp);
  const dst = parseIp(conn.dstIp);
  return {
    hasIdentity: id !== null,
    principal: id === null ? '' : principalOf(id),
    namespace: id === null ? '' : id.namespace,
    serviceAccount: id === null ? '' : id.serviceAccount,
    srcFamily: src.family,
    src0: src.w0,
    src1: src.w1,
    src2: src.w2,
    src3: src.w3,
    dstFamily: dst.family,
    dst0: dst.w0,
    dst1: dst.w1,
    dst2: dst.w2,
    dst3: dst.w3,
    dstPort: conn.dstPort,
  };
}

interface ParsedIp {
  family: Family;
  w0: number;
  w1: number;
  w2: number;
  w3: number;
}

const NOT_AN_IP: ParsedIp = Object.freeze({ family: 0, w0: 0, w1: 0, w2: 0, w3: 0 });

/**
 * Numeric form of a socket address. IPv4-mapped IPv6 (::ffff:a.b.c.d, what dual-stack sockets
 * report) folds to IPv4, as ztunnel canonicalises peer addresses before authorization.
 */
function parseIp(s: string): ParsedIp {
  if (typeof s !== 'string') return NOT_AN_IP;
  if (s.indexOf(':') < 0) {
    const v4 = parseIpv4(s);
    return v4 === null ? NOT_AN_IP : { family: 4, w0: v4, w1: 0, w2: 0, w3: 0 };
  }
  const w = ipv6Words(s);
  if (w === null) return NOT_AN_IP;
  if (w[0] === 0 && w[1] === 0 && w[2] === 0 && w[3] === 0 && w[4] === 0 && w[5] === 0xffff) {
    return { family: 4, w0: ((w[6]! << 16) | w[7]!) | 0, w1: 0, w2: 0, w3: 0 };
  }
  return {
    family: 6,
    w0: ((w[0]! << 16) | w[1]!) | 0,
    w1: ((w[2]! << 16) | w[3]!) | 0,
    w2: ((w[4]! << 16) | w[5]!) | 0,
    w3: ((w[6]! << 16) | w[7]!) | 0,
  };
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

function ruleMatches(rule: CompiledPolicy['rules'][number], f: ConnFacts): boolean {
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
  if (m.empty) return false;
  // Cheapest checks first; the result does not depend on the order.
  if (m.destinationPorts !== null && !m.destinationPorts.has(f.dstPort)) return false;
  if (m.notDestinationPorts !== null && m.notDestinationPorts.has(f.dstPort)) return false;
  if (m.destinationIps !== null && !cidrsContain(m.destinationIps, f.dstFamily, f.dst0, f.dst1, f.dst2, f.dst3)) return false;
  if (m.notDestinationIps !== null && cidrsContain(m.notDestinationIps, f.dstFamily, f.dst0, f.dst1, f.dst2, f.dst3)) return false;
  if (m.sourceIps !== null && !cidrsContain(m.sourceIps, f.srcFamily, f.src0, f.src1, f.src2, f.src3)) return false;
  if (m.notSourceIps !== null && cidrsContain(m.notSourceIps, f.srcFamily, f.src0, f.src1, f.src2, f.src3)) return false;
  if (m.serviceAccounts !== null && !serviceAccountIn(m.serviceAccounts, f)) return false;
  if (m.notServiceAccounts !== null && serviceAccountIn(m.notServiceAccounts, f)) return false;
  if (m.principals !== null && !principalIn(m.principals, f)) return false;
  if (m.notPrincipals !== null && principalIn(m.notPrincipals, f)) return false;
  if (m.namespaces !== null && !stringsMatch(m.namespaces, f.namespace)) return false;
  if (m.notNamespaces !== null && stringsMatch(m.notNamespaces, f.namespace)) return false;
  return true;
}

/** Plaintext has no principal: ztunnel requires the "spiffe://" form, so nothing matches it. */
function principalIn(m: CompiledStrings, f: ConnFacts): boolean {
  return f.hasIdentity && stringsMatch(m, f.principal);
}

/** Namespace and account of the identity (trust domain not compared); plaintext matches none. */
function serviceAccountIn(m: CompiledServiceAccounts, f: ConnFacts): boolean {
  if (!f.hasIdentity) return false;
  const accounts = m.get(f.namespace);
  return accounts !== undefined && accounts.has(f.serviceAccount);
}

export function stringsMatch(m: CompiledStrings, s: string): boolean {
  if (m.presence && s.length > 0) return true;
  if (m.exact !== null && m.exact.has(s)) return true;
  const pre = m.prefixes;
  for (let i = 0; i < pre.length; i++) if (s.startsWith(pre[i]!)) return true;
  const suf = m.suffixes;
  for (let i = 0; i < suf.length; i++) if (s.endsWith(suf[i]!)) return true;
  return false;
}

/** An IPv4 address is only in IPv4 CIDRs and an IPv6 one only in IPv6 CIDRs (as ipnet does). */
export function cidrsContain(c: CompiledCidrs, fam: Family, w0: number, w1: number, w2: number, w3: number): boolean {
  if (fam === 4) {
    const a = c.v4;
    for (let i = 0; i < a.length; i += 2) if ((w0 & a[i + 1]!) === a[i]) return true;
    return false;
  }
  if (fam === 6) {
    const a = c.v6;
    for (let i = 0; i < a.length; i += 8) {
      if (
        (w0 & a[i + 4]!) === a[i] &&
        (w1 & a[i + 5]!) === a[i + 1] &&
        (w2 & a[i + 6]!) === a[i + 2] &&
        (w3 & a[i + 7]!) === a[i + 3]
      ) {
        return true;
      }
    }
  }
  return false;
}
