/**
 * One workload entry of the local snapshot (ztunnel's LocalWorkload: a Workload plus the services
 * it is an endpoint of). Field names follow ztunnel's serde names (camelCase, deny_unknown_fields).
 * References to services and policies are checked here (they are parsed first); duplicate uids
 * and IPs across workloads are checked in parse.ts.
 */
import {
  checkFields, describe, EMPTY_LIST, fieldSpec, isObject, normalizeAddress, portMapOf, portMapText, readEnum, readList,
  readString, readStringList, type Interner, type RawObject,
} from './fields';
import { segmentProblem, trustDomainProblem } from '../identity/spiffe';
import { indexPath, keyPath, type IssueList } from './issues';
import type { HealthStatus, Locality, PortMap, Protocol, Service, Workload } from './model';

const WORKLOAD_FIELDS = fieldSpec(
  [
    'uid', 'name', 'namespace', 'workloadIps', 'protocol', 'trustDomain', 'serviceAccount', 'node', 'network',
    'workloadName', 'workloadType', 'canonicalName', 'canonicalRevision', 'clusterId', 'locality', 'status',
    'authorizationPolicies', 'capacity', 'services',
  ],
  ['uid', 'name', 'namespace', 'workloadIps'],
  // ztunnel fields for waypoints, network gateways, host networking and tunnels: silently ignoring
  // them would route differently from ztunnel, so they are refused by name
  ['waypoint', 'networkGateway', 'networkMode', 'hostname', 'nativeTunnel', 'applicationTunnel'],
);
const LOCALITY_FIELDS = fieldSpec(['region', 'zone', 'subzone']);
const PROTOCOLS: readonly Protocol[] = ['TCP', 'HBONE'];
const STATUSES: readonly HealthStatus[] = ['Healthy', 'Unhealthy'];
const MAX_CAPACITY = 0xffffffff; // ztunnel: u32

export interface WorkloadContext {
  readonly issues: IssueList;
  readonly intern: (s: string) => string;
  /** TRUST_DOMAIN: the default for workloads that do not name one. */
  readonly trustDomain: string;
  /** Services by "namespace/hostname" (parsed first): endpoint entries must name one of them. */
  readonly services: ReadonlyMap<string, Service>;
  /** Policies by "namespace/name": authorizationPolicies must name one of them. */
  readonly policies: ReadonlyMap<string, unknown>;
  readonly portMaps: Interner<PortMap>;
  readonly serviceRefs: Interner<Readonly<Record<string, PortMap>>>;
}

function readLocality(o: RawObject, path: string, cx: WorkloadContext): Locality | null {
  const v = o['locality'];
  if (v === undefined || v === null) return null;
  const p = keyPath(path, 'locality');
  if (!checkFields(v, p, LOCALITY_FIELDS, cx.issues)) return null;
  return Object.freeze({
    region: cx.intern(readString(v, 'region', p, cx.issues)),
    zone: cx.intern(readString(v, 'zone', p, cx.issues)),
    subzone: cx.intern(readString(v, 'subzone', p, cx.issues)),
  });
}

function readIps(o: RawObject, path: string, issues: IssueList): readonly string[] {
  const raw = readList(o, 'workloadIps', path, issues);
  if (raw.length === 0) return EMPTY_LIST;
  const out: string[] = [];
  for (let i = 0; i < raw.length; i++) {
    const v = raw[i];
    const ip = typeof v === 'string' ? normalizeAddress(v) : null;
    if (ip === null) {
      const what = typeof v === 'string' ? JSON.stringify(v) : describe(v);
      issues.add(indexPath(keyPath(path, 'workloadIps'), i), `${what} is not an IP address`);
    } else out.push(ip);
  }
  return Object.freeze(out);
}

function readCapacity(o: RawObject, path: string, issues: IssueList): number {
  const v = o['capacity'];
  if (v === undefined || v === null) return 1;
  if (typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= MAX_CAPACITY) return v;
  issues.addAt(path, 'capacity', `must be a positive integer, got ${describe(v)}`);
  return 1;
}

/**
 * "ns/hostname" → port map: each entry must name a service of this snapshot and only ports that
 * service has. Identical maps are shared (every pod of a deployment has the same one).
 */
function readServiceRefs(o: RawObject, path: string, cx: WorkloadContext): Readonly<Record<string, PortMap>> {
  const v = o['services'];
  if (v === undefined || v === null) return EMPTY_SERVICES;
  const { issues } = cx;
  if (!isObject(v)) {
    issues.addAt(path, 'services', `expected a mapping of "namespace/hostname" to ports, got ${describe(v)}`);
    return EMPTY_SERVICES;
  }
  let shareKey = '';
  let shareable = true;
  const texts: string[] = [];
  for (const key in v) {
    const pathOf = (): string => keyPath(keyPath(path, 'services'), key);
    const text = portMapText(v[key], pathOf, issues);
    // NUL separates the parts; a (senseless) key holding one is simply not shared
    if (key.includes('\0')) shareable = false;
    shareKey += `${key}\0${text}\0`;
    texts.push(text);
    const svc = cx.services.get(key);
    if (svc === undefined) {
      const slash = key.indexOf('/');
      const shape = slash > 0 && slash < key.length - 1;
      issues.add(pathOf(), shape ? `no service ${JSON.stringify(key)} in this snapshot` : `expected "namespace/hostname", got ${JSON.stringify(key)}`);
      continue;
    }
    const ports = portMapOf(text, cx.portMaps);
    for (const port in ports) {
      if (svc.ports[Number(port)] === undefined) issues.add(keyPath(pathOf(), port), `service ${JSON.stringify(key)} has no port ${port}`);
    }
  }
  if (shareKey === '') return EMPTY_SERVICES;
  const make = (): Readonly<Record<string, PortMap>> => {
    const out: Record<string, PortMap> = {};
    let i = 0;
    for (const key in v) out[cx.intern(key)] = portMapOf(texts[i++]!, cx.portMaps);
    return Object.freeze(out);
  };
  return shareable ? cx.serviceRefs(shareKey, make) : make();
}

function checkPolicyRefs(list: readonly string[], path: string, cx: WorkloadContext): readonly string[] {
  if (list.length === 0) return EMPTY_LIST;
  list.forEach((name, j) => {
    if (!cx.policies.has(name)) {
      cx.issues.add(indexPath(keyPath(path, 'authorizationPolicies'), j), `no policy ${JSON.stringify(name)} in this snapshot`);
    }
  });
  return Object.freeze(list.map(cx.intern));
}

const EMPTY_SERVICES: Readonly<Record<string, PortMap>> = Object.freeze({});

/** An optional part of the SPIFFE id: "" (absent) means the default, anything else must be valid. */
function readIdentityPart(o: RawObject, key: string, path: string, issues: IssueList, problem: (v: string) => string | null): string {
  const v = readString(o, key, path, issues);
  if (v !== '') checkIdentityPart(v, key, path, issues, problem);
  return v;
}

/** Required, and the middle part of the SPIFFE id. */
function readNamespace(o: RawObject, path: string, issues: IssueList): string {
  const v = readString(o, 'namespace', path, issues, { nonEmpty: true });
  if (v !== '') checkIdentityPart(v, 'namespace', path, issues, segmentProblem);
  return v;
}

function checkIdentityPart(v: string, key: string, path: string, issues: IssueList, problem: (v: string) => string | null): void {
  const why = problem(v);
  if (why !== null) issues.addAt(path, key, `${JSON.stringify(v)} cannot be part of a SPIFFE id: it ${why}`);
}

/** Returns null only when the entry is not a mapping at all. */
export function parseWorkload(raw: unknown, path: string, cx: WorkloadContext): Workload | null {
  const { issues, intern } = cx;
  if (!checkFields(raw, path, WORKLOAD_FIELDS, issues)) return null;
  const o = raw;
  // the three parts of the workload's SPIFFE id: a value no URI SAN can carry is refused here,
  // not when the CA would issue a leaf that no peer can parse back
  const trustDomain = readIdentityPart(o, 'trustDomain', path, issues, trustDomainProblem);
  const serviceAccount = readIdentityPart(o, 'serviceAccount', path, issues, segmentProblem);
  const policies = readStringList(o, 'authorizationPolicies', path, issues);
  // Key order is fixed so every workload shares one hidden class (memory at 200k workloads).
  return Object.freeze<Workload>({
    uid: readString(o, 'uid', path, issues, { nonEmpty: true }),
    name: readString(o, 'name', path, issues, { nonEmpty: true }),
    namespace: intern(readNamespace(o, path, issues)),
    workloadIps: readIps(o, path, issues),
    protocol: readEnum(o, 'protocol', path, issues, PROTOCOLS, 'TCP'),
    trustDomain: trustDomain === '' ? cx.trustDomain : intern(trustDomain),
    // Kubernetes' default service account
    serviceAccount: serviceAccount === '' ? 'default' : intern(serviceAccount),
    node: intern(readString(o, 'node', path, issues)),
    network: intern(readString(o, 'network', path, issues)),
    workloadName: intern(readString(o, 'workloadName', path, issues)),
    workloadType: intern(readString(o, 'workloadType', path, issues)),
    canonicalName: intern(readString(o, 'canonicalName', path, issues)),
    canonicalRevision: intern(readString(o, 'canonicalRevision', path, issues)),
    clusterId: intern(readString(o, 'clusterId', path, issues)),
    locality: readLocality(o, path, cx),
    status: readEnum(o, 'status', path, issues, STATUSES, 'Healthy'),
    authorizationPolicies: checkPolicyRefs(policies, path, cx),
    capacity: readCapacity(o, path, issues),
    services: readServiceRefs(o, path, cx),
  });
}
