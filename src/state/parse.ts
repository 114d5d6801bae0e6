/**
 * The snapshot loader: ztunnel's local-config text (LOCAL_XDS / LOCAL_XDS_PATH, YAML or JSON) →
 * a validated, normalised, deeply frozen SnapshotDoc, or a SnapshotError listing every problem.
 *
 * Stricter than ztunnel where ztunnel would silently accept a document that routes or authorizes
 * differently from what its author meant: duplicate uids, an IP claimed by two workloads in one
 * network, two services on one VIP, an endpoint of a service or port that does not exist, a
 * workload naming a policy that does not exist. Everything is checked before anything is
 * installed, so a bad reload leaves the last good snapshot in force.
 *
 * Objects are frozen as they are built (no second walk over 200k workloads).
 */
import YAML from 'yaml';
import { checkFields, fieldSpec, makeInterner, makeSharedCache, readList, type Interner } from './fields';
import { indexPath, keyPath, IssueList } from './issues';
import { resourceKey, type Policy, type PortMap, type Service, type SnapshotDoc, type Workload } from './model';
import { parsePolicy } from './parse-policy';
import { parseService } from './parse-service';
import { parseWorkload, type WorkloadContext } from './parse-workload';

export { SnapshotError, type SnapshotIssue } from './issues';

export interface ParseOptions {
  /** Names the document in every message: a file path, or "LOCAL_XDS" for inline text. */
  readonly source: string;
  /** TRUST_DOMAIN: given to workloads that do not name their own. */
  readonly trustDomain: string;
  /** Issues listed before "... and N more" (default 100). */
  readonly maxErrors?: number;
}

const TOP_FIELDS = fieldSpec(['workloads', 'services', 'policies']);

/** JSON first when it looks like JSON (several times faster than the YAML parser on big files). */
function toRaw(text: string, issues: IssueList): unknown {
  const body = text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
  if (/^\s*\{/.test(body)) {
    try {
      return JSON.parse(body) as unknown;
    } catch {
      // not strict JSON: YAML is a superset and reports the error with a line and column
    }
  }
  const doc = YAML.parseDocument(body, { uniqueKeys: true, prettyErrors: true });
  if (doc.errors.length > 0) {
    for (const e of doc.errors) issues.add('', e.message.split('\n')[0]!.replace(/:$/, ''));
    return undefined;
  }
  try {
    return doc.toJS({ maxAliasCount: 1000 }) as unknown;
  } catch (err) {
    // the YAML library throws (not reports) for an alias to a missing anchor or an alias bomb
    issues.add('', (err as Error).message.split('\n')[0]!);
    return undefined;
  }
}

interface Shared {
  readonly intern: (s: string) => string;
  readonly portMaps: Interner<PortMap>;
}

function parseServices(raw: readonly unknown[], issues: IssueList, shared: Shared): Map<string, Service> {
  const byKey = new Map<string, Service>();
  const firstAt = new Map<string, number>();
  const vipAt = new Map<string, number>();
  for (let i = 0; i < raw.length; i++) {
    const path = indexPath('services', i);
    const svc = parseService(raw[i], path, issues, shared.intern, shared.portMaps);
    if (svc === null) continue;
    const key = resourceKey(svc.namespace, svc.hostname);
    const prev = firstAt.get(key);
    if (prev !== undefined) {
      issues.addAt(path, 'hostname', `duplicate service ${JSON.stringify(key)} (first at services[${prev}])`);
      continue;
    }
    firstAt.set(key, i);
    byKey.set(key, svc);
    svc.vips.forEach((vip, v) => {
      const vk = `${vip.network}/${vip.address}`;
      const owner = vipAt.get(vk);
      if (owner === undefined) vipAt.set(vk, i);
      else issues.add(indexPath(keyPath(path, 'vips'), v), `VIP ${JSON.stringify(vk)} is already used by services[${owner}]`);
    });
  }
  return byKey;
}

function parsePolicies(raw: readonly unknown[], issues: IssueList): Map<string, Policy> {
  const byKey = new Map<string, Policy>();
  const firstAt = new Map<string, number>();
  for (let i = 0; i < raw.length; i++) {
    const path = indexPath('policies', i);
    const pol = parsePolicy(raw[i], path, issues);
    if (pol === null) continue;
    const key = resourceKey(pol.namespace, pol.name);
    const prev = firstAt.get(key);
    if (prev !== undefined) {
      issues.addAt(path, 'name', `duplicate policy ${JSON.stringify(key)} (first at policies[${prev}])`);
      continue;
    }
    firstAt.set(key, i);
    byKey.set(key, pol);
  }
  return byKey;
}

/** Workloads, after services and policies so references can be checked as each entry is read. */
function parseWorkloads(raw: readonly unknown[], cx: WorkloadContext): Workload[] {
  const { issues } = cx;
  const out: Workload[] = [];
  const uidAt = new Map<string, number>();
  // network → ip → index of the workload that has it (nested: no key string per IP)
  const ipAt = new Map<string, Map<string, number>>();
  for (let i = 0; i < raw.length; i++) {
    const path = indexPath('workloads', i);
    const w = parseWorkload(raw[i], path, cx);
    if (w === null) continue;
    const prev = uidAt.get(w.uid);
    if (prev !== undefined && w.uid !== '') {
      issues.addAt(path, 'uid', `duplicate uid ${JSON.stringify(w.uid)} (first at workloads[${prev}])`);
      continue;
    }
    uidAt.set(w.uid, i);
    let inNetwork = ipAt.get(w.network);
    if (inNetwork === undefined) ipAt.set(w.network, (inNetwork = new Map()));
    for (let j = 0; j < w.workloadIps.length; j++) {
      const ip = w.workloadIps[j]!;
      const owner = inNetwork.get(ip);
      if (owner === undefined) inNetwork.set(ip, i);
      else {
        const who = owner === i ? 'this workload already' : `workloads[${owner}]`;
        issues.add(indexPath(keyPath(path, 'workloadIps'), j), `${ip} in network ${JSON.stringify(w.network)} is already used by ${who}`);
      }
    }
    out.push(w);
  }
  return out;
}

/**
 * Parses and validates a snapshot document. Throws SnapshotError (code ERR_SNAPSHOT) listing
 * every issue found, each message naming `opts.source` and the path of the offending value.
 */
export function parseSnapshot(text: string, opts: ParseOptions): SnapshotDoc {
  const issues = new IssueList(opts.source, opts.maxErrors ?? 100);
  if (typeof text !== 'string' || text.trim() === '') {
    // an empty file is far more often a half-written file than an intent to remove everything
    issues.add('', 'the document is empty (write {} for a snapshot with nothing in it)');
    issues.throwIfAny();
  }
  const raw = toRaw(text, issues);
  issues.throwIfAny();
  if (raw === null || raw === undefined) {
    issues.add('', 'the document is empty (write {} for a snapshot with nothing in it)');
    issues.throwIfAny();
  }
  if (!checkFields(raw, '', TOP_FIELDS, issues)) {
    issues.throwIfAny();
  }
  const top = raw as Record<string, unknown>;
  const shared: Shared = { intern: makeInterner(), portMaps: makeSharedCache() };
  const services = parseServices(readList(top, 'services', '', issues), issues, shared);
  const policies = parsePolicies(readList(top, 'policies', '', issues), issues);
  const workloads = parseWorkloads(readList(top, 'workloads', '', issues), {
    issues,
    intern: shared.intern,
    trustDomain: opts.trustDomain,
    services,
    policies,
    portMaps: shared.portMaps,
    serviceRefs: makeSharedCache(),
  });
  issues.throwIfAny();
  return Object.freeze({
    workloads: Object.freeze(workloads),
    services: Object.freeze([...services.values()]),
    policies: Object.freeze([...policies.values()]),
  });
}

