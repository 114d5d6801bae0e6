/**
 * The compiled form of one match's parts, and the compilers for each kind of list. Lists are flat
 * arrays rather than Sets/Maps: with 10^5 rules the evaluation cost is cache misses, so fewer and
 * smaller objects per match is what makes it fast (see bench/authz.ts). Equal lists within one
 * compilePolicies call are interned (one shared, never-mutated object).
 */
import { ProxyError } from '../errors';
import { ipFamily, ipv4ToInt, ipv6Words } from '../net/ip';
import type { Cidr, ServiceAccountMatch, StringMatch } from '../state/model';

/**
 * A list of string matches: matches a value if any item does. Exact values are sorted and unique
 * (linear scan when short, binary search when long): one array, no hashing, no Set per match.
 */
export interface CompiledStrings {
  /** Presence: any non-empty value. */
  readonly presence: boolean;
  readonly exact: readonly string[];
  readonly prefixes: readonly string[];
  readonly suffixes: readonly string[];
}

/**
 * A list of CIDRs, CIDR_WORDS int32 words each: [family, net0..net3, mask0..mask3]. IPv4 uses word 0
 * only. One flat array per list keeps a large policy set compact (cache misses dominate the cost).
 */
export type CompiledCidrs = Int32Array;
export const CIDR_WORDS = 9;

/** Service accounts as flat pairs: [namespace0, account0, namespace1, account1, ...]. */
export type CompiledServiceAccounts = readonly string[];

/** Ports, sorted and unique. */
export type CompiledPorts = readonly number[];

/** One match object; null fields were absent (or empty). `empty` = no field present: never matches. */
export interface CompiledMatch {
  /** No field present: never matches. */
  readonly empty: boolean;
  /** Bit set of the fields present (FIELD_*), so evaluation skips absent ones with one test. */
  readonly present: number;
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
  readonly destinationPorts: CompiledPorts | null;
  readonly notDestinationPorts: CompiledPorts | null;
}

export const FIELD_NAMESPACES = 1 << 0;
export const FIELD_NOT_NAMESPACES = 1 << 1;
export const FIELD_PRINCIPALS = 1 << 2;
export const FIELD_NOT_PRINCIPALS = 1 << 3;
export const FIELD_SERVICE_ACCOUNTS = 1 << 4;
export const FIELD_NOT_SERVICE_ACCOUNTS = 1 << 5;
export const FIELD_SOURCE_IPS = 1 << 6;
export const FIELD_NOT_SOURCE_IPS = 1 << 7;
export const FIELD_DESTINATION_IPS = 1 << 8;
export const FIELD_NOT_DESTINATION_IPS = 1 << 9;
export const FIELD_DESTINATION_PORTS = 1 << 10;
export const FIELD_NOT_DESTINATION_PORTS = 1 << 11;

/** A clause matches if ANY of its matches does (an empty clause matches). */
export type CompiledClause = readonly CompiledMatch[];
/** A rule matches if ALL of its clauses do (a rule with no clauses matches). */
export type CompiledRule = readonly CompiledClause[];

/**
 * State for one compilePolicies call: where we are (for error messages, built only on failure) and
 * an intern table so that equal lists (the same ports, CIDRs or names repeated across policies, as
 * generated policies do) share one compiled object. Compiled values are never mutated, so sharing
 * is safe; it keeps large policy sets small and cache-friendly.
 */
export interface Context {
  key: string;
  rule: number;
  clause: number;
  match: number;
  readonly interned: Map<string, unknown>;
  /** Small numbers naming interned objects, so a whole match can be interned by its parts. */
  readonly ids: Map<object, number>;
}

export function newContext(): Context {
  return { key: '', rule: 0, clause: 0, match: 0, interned: new Map(), ids: new Map() };
}

export function intern<T>(ctx: Context, id: string, value: T): T {
  const had = ctx.interned.get(id);
  if (had !== undefined) return had as T;
  ctx.interned.set(id, value);
  return value;
}

export function idOf(ctx: Context, o: object): number {
  let id = ctx.ids.get(o);
  if (id === undefined) ctx.ids.set(o, (id = ctx.ids.size));
  return id;
}

function fail(ctx: Context, field: string, i: number, why: string): never {
  const at = `policy ${ctx.key} rules[${ctx.rule}][${ctx.clause}][${ctx.match}].${field}[${i}]`;
  throw new ProxyError('ERR_POLICY', `${at}: ${why}`);
}

const NONE: readonly string[] = Object.freeze([]);

// Intern keys are built from the input text before anything is allocated, so a repeated list costs
// one string build and one Map lookup. Every value is length-prefixed (`<len>:<text>`) so no two
// different lists can share a key, whatever characters the values contain.

function tag(value: string): string {
  return `${value.length}:${value}`;
}

export function compileStrings(list: readonly StringMatch[] | undefined, ctx: Context, field: string): CompiledStrings | null {
  if (list === undefined || list.length === 0) return null;
  let id = 's';
  for (let i = 0; i < list.length; i++) {
    const sm = list[i];
    // Property reads, not `in`: far cheaper in V8, and the loader guarantees exactly one key.
    const any = sm as { Exact?: unknown; Prefix?: unknown; Suffix?: unknown; Presence?: unknown } | null;
    if (typeof any?.Exact === 'string') id += `e${tag(any.Exact)}`;
    else if (typeof any?.Prefix === 'string') id += `p${tag(any.Prefix)}`;
    else if (typeof any?.Suffix === 'string') id += `s${tag(any.Suffix)}`;
    else if (any?.Presence !== undefined) id += '*';
    else fail(ctx, field, i, `expected one of Exact, Prefix, Suffix, Presence; got ${JSON.stringify(sm)}`);
  }
  const had = ctx.interned.get(id);
  if (had !== undefined) return had as CompiledStrings;
  let presence = false;
  const exact: string[] = [];
  const prefixes: string[] = [];
  const suffixes: string[] = [];
  for (const sm of list as readonly { Exact?: string; Prefix?: string; Suffix?: string }[]) {
    if (typeof sm.Exact === 'string') exact.push(sm.Exact);
    else if (typeof sm.Prefix === 'string') prefixes.push(sm.Prefix);
    else if (typeof sm.Suffix === 'string') suffixes.push(sm.Suffix);
    else presence = true;
  }
  // "" is a prefix/suffix of every value, exactly like ztunnel's starts_with("")/ends_with("").
  const compiled: CompiledStrings = {
    presence,
    exact: exact.length === 0 ? NONE : sortedUnique(exact),
    prefixes: prefixes.length === 0 ? NONE : prefixes.slice(), // slice: exact size, see compilePolicy
    suffixes: suffixes.length === 0 ? NONE : suffixes.slice(),
  };
  ctx.interned.set(id, compiled);
  return compiled;
}

export function compileServiceAccounts(
  list: readonly ServiceAccountMatch[] | undefined,
  ctx: Context,
  field: string,
): CompiledServiceAccounts | null {
  if (list === undefined || list.length === 0) return null;
  let id = 'a';
  for (let i = 0; i < list.length; i++) {
    const sa = list[i];
    if (typeof sa?.namespace !== 'string' || typeof sa.serviceAccount !== 'string') {
      fail(ctx, field, i, `expected {namespace, serviceAccount} strings; got ${JSON.stringify(sa)}`);
    }
    id += `${tag(sa.namespace)}${tag(sa.serviceAccount)}`;
  }
  return intern(ctx, id, list.flatMap((sa) => [sa.namespace, sa.serviceAccount]));
}

export function compilePorts(list: readonly number[] | undefined, ctx: Context, field: string): CompiledPorts | null {
  if (list === undefined || list.length === 0) return null;
  for (let i = 0; i < list.length; i++) {
    const p = list[i];
    if (!Number.isInteger(p) || p! < 0 || p! > 65535) fail(ctx, field, i, `${JSON.stringify(p)} is not a port (0..65535)`);
  }
  const ports = sortedUnique(list);
  return intern(ctx, `p${ports.join(',')}`, ports);
}

export function compileCidrs(list: readonly Cidr[] | undefined, ctx: Context, field: string): CompiledCidrs | null {
  if (list === undefined || list.length === 0) return null;
  // Only well-typed input gets a key; anything else goes straight to validation (and fails there).
  let id: string | null = 'c';
  for (let i = 0; i < list.length && id !== null; i++) {
    const c = list[i];
    id = typeof c?.address === 'string' && typeof c.prefixLen === 'number' ? `${id}${tag(c.address)}/${c.prefixLen},` : null;
  }
  const had = id === null ? undefined : ctx.interned.get(id);
  if (had !== undefined) return had as CompiledCidrs; // same text: validated and compiled before
  const out = new Int32Array(list.length * CIDR_WORDS);
  for (let i = 0; i < list.length; i++) {
    const c = list[i]!;
    const bad = (why: string): never => fail(ctx, field, i, `${JSON.stringify(c)} is not a CIDR: ${why}`);
    const fam = typeof c?.address === 'string' ? ipFamily(c.address) : null;
    if (fam === null) return bad('address is not an IP address');
    const max = fam === 4 ? 32 : 128;
    if (!Number.isInteger(c.prefixLen) || c.prefixLen < 0 || c.prefixLen > max) bad(`prefix length must be 0..${max}`);
    const at = i * CIDR_WORDS;
    out[at] = fam;
    // Masked again here although the loader masks: host bits must never take part in a comparison.
    if (fam === 4) {
      const mask = maskWord(c.prefixLen);
      out[at + 1] = ipv4ToInt(c.address) & mask;
      out[at + 5] = mask;
      continue;
    }
    const words = ipv6Words(c.address)!; // ipFamily said 6, so the words parse
    for (let w = 0; w < 4; w++) {
      const mask = maskWord(c.prefixLen - w * 32);
      out[at + 1 + w] = ((words[w * 2]! << 16) | words[w * 2 + 1]!) & mask;
      out[at + 5 + w] = mask;
    }
  }
  ctx.interned.set(id!, out); // non-null: input without a key failed validation above
  return out;
}

function sortedUnique<T extends string | number>(list: readonly T[]): T[] {
  if (list.length === 1) return [list[0]!];
  const sorted = [...new Set(list)];
  return sorted.sort((a, b) => (a < b ? -1 : 1)); // unique, so never equal
}

/** The int32 mask for `bits` leading one-bits of a 32-bit word (clamped to 0..32). */
function maskWord(bits: number): number {
  if (bits <= 0) return 0;
  if (bits >= 32) return -1;
  return (-1 << (32 - bits)) | 0;
}
