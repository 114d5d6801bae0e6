/**
 * Small typed readers over the raw parsed document (the output of JSON.parse / yaml). Each reader
 * either returns a clean value or records an issue and returns the field's default, so validation
 * continues and every problem in the file is reported in one pass.
 *
 * A YAML key with no value (`node:`) parses as null; like an absent key it means "the default".
 */
import { indexPath, keyPath, type IssueList } from './issues';
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

function squash(s: string): string {
  return s.toLowerCase().replace(/[_-]/g, '');
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
 * svcPort → targetPort. Keys arrive as strings (JSON object keys; YAML numeric keys become "80"),
 * so they are checked as decimal text. Target 0 means "the service port itself" (ztunnel).
 */
export function readPortMap(v: unknown, path: string, issues: IssueList): PortMap {
  if (v === undefined || v === null) return EMPTY_PORTS;
  if (!isObject(v)) {
    issues.add(path, `expected a mapping of service port to target port, got ${describe(v)}`);
    return EMPTY_PORTS;
  }
  const out: Record<number, number> = {};
  let n = 0;
  for (const k in v) {
    const port = /^[0-9]{1,5}$/.test(k) ? Number(k) : NaN;
    const target = v[k];
    if (!isPortNumber(port, 1)) {
      issues.add(keyPath(path, k), `service port ${JSON.stringify(k)} is out of range 1..65535`);
      continue;
    }
    if (!isPortNumber(target, 0)) {
      issues.add(keyPath(path, k), `target port ${describe(target)} is out of range 0..65535 (0 = same as the service port)`);
      continue;
    }
    out[port] = target;
    n++;
  }
  return n === 0 ? EMPTY_PORTS : Object.freeze(out);
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
