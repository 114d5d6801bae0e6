/**
 * Small typed readers over the raw parsed document (the output of JSON.parse / yaml). Each reader
 * either returns a clean value or records an issue and returns the field's default, so validation
 * continues and every problem in the file is reported in one pass.
 *
 * A YAML key with no value (`node:`) parses as null; like an absent key it means "the default".
 */
import { indexPath, keyPath, type IssueList } from './issues';
import { normalizeIp } from '../net/ip';
import type { PortMap } from './model';

export type RawObject = Record<string, unknown>;

export const EMPTY_LIST: readonly never[] = Object.freeze([]);
export const EMPTY_PORTS: PortMap = Object.freeze({});

export function isObject(v: unknown): v is RawObject {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** "got ..." text for a wrong-type message. */
export function describe(v: unknown): string {
  if (v === null || v === undefined) return 'nothing';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  if (typeof v === 'string') return `string ${JSON.stringify(v.length > 60 ? `${v.slice(0, 57)}...` : v)}`;
  return `${typeof v} ${String(v)}`;
}

/** The fields a mapping may have; anything else is an error (ztunnel: deny_unknown_fields). */
export interface FieldSpec {
  readonly known: ReadonlySet<string>;
  readonly required: readonly string[];
  /** Fields ztunnel accepts that ztunnel-ts does not implement: rejected with a clearer message. */
  readonly unsupported?: ReadonlySet<string>;
}

export function fieldSpec(known: readonly string[], required: readonly string[] = [], unsupported: readonly string[] = []): FieldSpec {
  return Object.freeze({ known: new Set(known), required: Object.freeze(required.slice()), unsupported: new Set(unsupported) });
}

/** Case, `_`/`-` and a trailing plural "s" ignored: workload_ips, sourceIp → workloadIps, sourceIps. */
function squash(s: string): string {
  return s.toLowerCase().replace(/[_-]/g, '').replace(/s$/, '');
}

/** Checks keys against the spec. Returns false when the value is not a mapping at all. */
export function checkFields(o: unknown, path: string, spec: FieldSpec, issues: IssueList): o is RawObject {
  if (!isObject(o)) {
    issues.add(path, `expected a mapping, got ${describe(o)}`);
    return false;
  }
  for (const k in o) {
    if (spec.known.has(k)) continue;
    if (spec.unsupported?.has(k)) {
      issues.addAt(path, k, 'ztunnel accepts this field but ztunnel-ts does not support it; remove it');
      continue;
    }
    // snake_case or wrong-case spellings are the common mistake: point at the camelCase name
    const near = [...spec.known].find((name) => squash(name) === squash(k));
    issues.addAt(path, k, near === undefined ? 'unknown field' : `unknown field (did you mean "${near}"?)`);
  }
  for (const r of spec.required) {
    if (o[r] === undefined || o[r] === null) issues.addAt(path, r, 'required field is missing');
  }
  return true;
}

export function readString(o: RawObject, key: string, path: string, issues: IssueList, opts?: { nonEmpty?: boolean }): string {
  const v = o[key];
  if (v === undefined || v === null) return '';
  if (typeof v !== 'string') {
    issues.addAt(path, key, `expected a string, got ${describe(v)}`);
    return '';
  }
  if (opts?.nonEmpty === true && v === '') issues.addAt(path, key, 'must not be empty');
  return v;
}

export function readBool(o: RawObject, key: string, path: string, issues: IssueList): boolean {
  const v = o[key];
  if (v === undefined || v === null) return false;
  if (typeof v !== 'boolean') {
    issues.addAt(path, key, `expected true or false, got ${describe(v)}`);
    return false;
  }
  return v;
}

export function readEnum<T extends string>(o: RawObject, key: string, path: string, issues: IssueList, values: readonly T[], dflt: T): T {
  const v = o[key];
  if (v === undefined || v === null) return dflt;
  if (typeof v === 'string' && (values as readonly string[]).includes(v)) return v as T;
  issues.addAt(path, key, `${typeof v === 'string' ? JSON.stringify(v) : describe(v)} is not one of ${values.join(', ')}`);
  return dflt;
}

/** A list field: returns the raw items (empty when absent or wrong). */
export function readList(o: RawObject, key: string, path: string, issues: IssueList): readonly unknown[] {
  const v = o[key];
  if (v === undefined || v === null) return EMPTY_LIST;
  if (!Array.isArray(v)) {
    issues.addAt(path, key, `expected a list, got ${describe(v)}`);
    return EMPTY_LIST;
  }
  return v;
}

export function readStringList(o: RawObject, key: string, path: string, issues: IssueList): readonly string[] {
  const items = readList(o, key, path, issues);
  if (items.length === 0) return EMPTY_LIST;
  const out: string[] = [];
  for (let i = 0; i < items.length; i++) {
    const s = items[i];
    if (typeof s === 'string') out.push(s);
    else issues.add(indexPath(keyPath(path, key), i), `expected a string, got ${describe(s)}`);
  }
  return Object.freeze(out);
}

function isPortNumber(v: unknown, min: number): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= min && v <= 65535;
}

/** A single port (1..65535), e.g. a policy's destinationPorts item. */
export function checkPort(v: unknown, path: string, issues: IssueList): v is number {
  if (isPortNumber(v, 1)) return true;
  issues.add(path, `port ${describe(v)} is out of range 1..65535`);
  return false;
}

/**
 * A fresh object for integer keys. V8 keeps small integer keys (80, 443) in a flat array sized to
 * the largest key: {80, 443} would cost ~5 KiB. One out-of-range index first switches the object to
 * dictionary elements (~200 B), which is what JSON.parse would have produced.
 */
function sparseObject(): Record<number, number> {
  const o: Record<number, number> = {};
  o[0x7ffffffe] = 0;
  delete o[0x7ffffffe];
  return o;
}

/**
 * Validates a svcPort → targetPort mapping and returns its canonical text ("80:8080,443:8443,"; ""
 * when empty or absent). Keys arrive as strings (JSON object keys; YAML numeric keys become "80"),
 * so they are checked as decimal text. Target 0 means "the service port itself" (ztunnel).
 * `pathOf` is called only to report an issue, so the happy path builds no path strings.
 */
export function portMapText(v: unknown, pathOf: () => string, issues: IssueList): string {
  if (v === undefined || v === null) return '';
  if (!isObject(v)) {
    issues.add(pathOf(), `expected a mapping of service port to target port, got ${describe(v)}`);
    return '';
  }
  let text = '';
  for (const k in v) {
    const port = /^[0-9]{1,5}$/.test(k) ? Number(k) : NaN;
    const target = v[k];
    if (!isPortNumber(port, 1)) {
      issues.add(keyPath(pathOf(), k), `service port ${JSON.stringify(k)} is out of range 1..65535`);
    } else if (!isPortNumber(target, 0)) {
      issues.add(keyPath(pathOf(), k), `target port ${describe(target)} is out of range 0..65535 (0 = same as the service port)`);
    } else text += `${port}:${target},`;
  }
  return text;
}

/** The PortMap for a canonical text, shared through `shared` (most workloads of a service have the same one). */
export function portMapOf(text: string, shared: Interner<PortMap>): PortMap {
  if (text === '') return EMPTY_PORTS;
  return shared(text, () => {
    const out = sparseObject();
    for (const pair of text.split(',')) {
      if (pair === '') continue;
      const colon = pair.indexOf(':');
      out[Number(pair.slice(0, colon))] = Number(pair.slice(colon + 1));
    }
    return Object.freeze(out);
  });
}

export function readPortMap(v: unknown, pathOf: () => string, issues: IssueList, shared: Interner<PortMap>): PortMap {
  return portMapOf(portMapText(v, pathOf, issues), shared);
}

/** Returns the value already made for `key`, or makes, remembers and returns it. */
export type Interner<T> = (key: string, make: () => T) => T;

export function makeSharedCache<T>(): Interner<T> {
  const seen = new Map<string, T>();
  return (key, make) => {
    let v = seen.get(key);
    if (v === undefined) seen.set(key, (v = make()));
    return v;
  };
}

function isDigit(c: number): boolean {
  return c >= 48 && c <= 57;
}

/**
 * normalizeIp with a fast path for the common case, an IPv4 address already in canonical form:
 * returned as-is without allocating (normalizeIp splits and re-joins every address).
 */
export function normalizeAddress(s: string): string | null {
  const n = s.length;
  let i = 0;
  for (let part = 0; part < 4; part++) {
    const start = i;
    let value = 0;
    while (i < n && isDigit(s.charCodeAt(i)) && i - start < 3) value = value * 10 + s.charCodeAt(i++) - 48;
    const len = i - start;
    if (len === 0 || value > 255 || (len > 1 && s.charCodeAt(start) === 48)) return normalizeIp(s);
    if (part < 3) {
      if (i >= n || s.charCodeAt(i) !== 46) return normalizeIp(s);
      i++;
    }
  }
  return i === n ? s : normalizeIp(s);
}

/**
 * Shares one string instance for values that repeat across thousands of workloads (namespace,
 * node, trust domain, ...): JSON.parse allocates each occurrence separately.
 */
export function makeInterner(): (s: string) => string {
  const seen = new Map<string, string>();
  return (s: string): string => {
    if (s === '') return '';
    const prev = seen.get(s);
    if (prev !== undefined) return prev;
    seen.set(s, s);
    return s;
  };
}
