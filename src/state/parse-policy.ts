/**
 * One authorization policy of the local snapshot (ztunnel's Authorization / RbacMatch serde form):
 * rules → clauses → matches. CIDRs are normalised (host bits masked) and checked here so the
 * policy compiler never sees a malformed value.
 *
 * An empty list in a match is dropped from the result: ztunnel treats an empty list exactly like
 * an absent field, so `{namespaces: []}` is an empty match (which never matches), not a present one.
 */
import { parseCidr } from '../net/ip';
import { isProxyError } from '../errors';
import { checkFields, checkPort, describe, fieldSpec, isObject, readBool, readEnum, readList, readString } from './fields';
import { indexPath, keyPath, type IssueList } from './issues';
import type { Cidr, Match, Policy, PolicyAction, PolicyScope, Rule, ServiceAccountMatch, StringMatch } from './model';

const POLICY_FIELDS = fieldSpec(
  ['name', 'namespace', 'scope', 'action', 'rules', 'dryRun'],
  ['name', 'namespace', 'scope', 'action', 'rules'],
);
const STRING_MATCH_FIELDS = ['namespaces', 'notNamespaces', 'principals', 'notPrincipals'] as const;
const SA_MATCH_FIELDS = ['serviceAccounts', 'notServiceAccounts'] as const;
const CIDR_FIELDS = ['sourceIps', 'notSourceIps', 'destinationIps', 'notDestinationIps'] as const;
const PORT_FIELDS = ['destinationPorts', 'notDestinationPorts'] as const;
const MATCH_FIELDS = fieldSpec([...STRING_MATCH_FIELDS, ...SA_MATCH_FIELDS, ...CIDR_FIELDS, ...PORT_FIELDS]);
const SA_FIELDS = fieldSpec(['namespace', 'serviceAccount'], ['namespace', 'serviceAccount']);
const STRING_MATCH_KINDS = ['Exact', 'Prefix', 'Suffix', 'Presence'] as const;
const SCOPES: readonly PolicyScope[] = ['Global', 'Namespace', 'WorkloadSelector'];
const ACTIONS: readonly PolicyAction[] = ['Allow', 'Deny'];
const PRESENCE: StringMatch = Object.freeze({ Presence: Object.freeze([]) as readonly [] });

function parseStringMatch(v: unknown, path: string, issues: IssueList): StringMatch | null {
  const keys = isObject(v) ? Object.keys(v) : [];
  const kind = keys.length === 1 ? STRING_MATCH_KINDS.find((k) => k === keys[0]) : undefined;
  if (!isObject(v) || kind === undefined) {
    const got = isObject(v) ? `keys ${keys.length === 0 ? '(none)' : keys.join(', ')}` : describe(v);
    issues.add(path, `a string match must have exactly one of Exact, Prefix, Suffix, Presence; got ${got}`);
    return null;
  }
  const value = v[kind];
  if (kind === 'Presence') {
    if (value === null || (Array.isArray(value) && value.length === 0)) return PRESENCE;
    issues.addAt(path, kind, `expected [], got ${describe(value)}`);
    return null;
  }
  if (typeof value !== 'string') {
    issues.addAt(path, kind, `expected a string, got ${describe(value)}`);
    return null;
  }
  return Object.freeze({ [kind]: value } as StringMatch);
}

function parseSaMatch(v: unknown, path: string, issues: IssueList): ServiceAccountMatch | null {
  if (!checkFields(v, path, SA_FIELDS, issues)) return null;
  return Object.freeze({
    namespace: readString(v, 'namespace', path, issues),
    serviceAccount: readString(v, 'serviceAccount', path, issues),
  });
}

function parseCidrItem(v: unknown, path: string, issues: IssueList): Cidr | null {
  if (typeof v !== 'string') {
    issues.add(path, `expected a CIDR string, got ${describe(v)}`);
    return null;
  }
  try {
    const c = parseCidr(v);
    return Object.freeze({ address: c.address, prefixLen: c.prefixLen });
  } catch (err) {
    if (!isProxyError(err, 'ERR_CIDR')) throw err;
    issues.add(path, err.message);
    return null;
  }
}

function parsePortItem(v: unknown, path: string, issues: IssueList): number | null {
  return checkPort(v, path, issues) ? v : null;
}

type ItemParser<T> = (v: unknown, path: string, issues: IssueList) => T | null;

function parseMatch(v: unknown, path: string, issues: IssueList): Match | null {
  if (!checkFields(v, path, MATCH_FIELDS, issues)) return null;
  const out: Record<string, readonly unknown[]> = {};
  const take = <T>(fields: readonly string[], item: ItemParser<T>): void => {
    for (const f of fields) {
      const raw = readList(v, f, path, issues);
      if (raw.length === 0) continue;
      const list: T[] = [];
      for (let i = 0; i < raw.length; i++) {
        const parsed = item(raw[i], indexPath(keyPath(path, f), i), issues);
        if (parsed !== null) list.push(parsed);
      }
      out[f] = Object.freeze(list);
    }
  };
  take(STRING_MATCH_FIELDS, parseStringMatch);
  take(SA_MATCH_FIELDS, parseSaMatch);
  take(CIDR_FIELDS, parseCidrItem);
  take(PORT_FIELDS, parsePortItem);
  return Object.freeze(out as Match);
}

function parseRules(o: Record<string, unknown>, path: string, issues: IssueList): readonly Rule[] {
  const rulesPath = keyPath(path, 'rules');
  const listAt = (v: unknown, p: string, what: string): readonly unknown[] => {
    if (Array.isArray(v)) return v;
    issues.add(p, `expected a list of ${what}, got ${describe(v)}`);
    return [];
  };
  const rules = readList(o, 'rules', path, issues).map((rule, r) => {
    const rp = indexPath(rulesPath, r);
    const clauses = listAt(rule, rp, 'clauses').map((clause, c) => {
      const cp = indexPath(rp, c);
      const matches: Match[] = [];
      listAt(clause, cp, 'matches').forEach((m, i) => {
        const parsed = parseMatch(m, indexPath(cp, i), issues);
        if (parsed !== null) matches.push(parsed);
      });
      return Object.freeze(matches);
    });
    return Object.freeze(clauses);
  });
  return Object.freeze(rules);
}

/** Returns null only when the entry is not a mapping at all. */
export function parsePolicy(raw: unknown, path: string, issues: IssueList): Policy | null {
  if (!checkFields(raw, path, POLICY_FIELDS, issues)) return null;
  return Object.freeze<Policy>({
    name: readString(raw, 'name', path, issues, { nonEmpty: true }),
    namespace: readString(raw, 'namespace', path, issues, { nonEmpty: true }),
    scope: readEnum(raw, 'scope', path, issues, SCOPES, 'Namespace'),
    action: readEnum(raw, 'action', path, issues, ACTIONS, 'Allow'),
    rules: parseRules(raw, path, issues),
    dryRun: readBool(raw, 'dryRun', path, issues),
  });
}
