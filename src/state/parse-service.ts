/**
 * One service entry of the local snapshot (ztunnel's Service, serde names). VIPs are written in
 * ztunnel's NetworkAddress text form "network/ip"; a bare "ip" is accepted as network "".
 */
import {
  checkFields, describe, EMPTY_LIST, fieldSpec, normalizeAddress, readBool, readEnum, readList, readPortMap,
  readString, readStringList, type Interner, type RawObject,
} from './fields';
import { indexPath, keyPath, type IssueList } from './issues';
import type { LoadBalancer, NetworkAddress, PortMap, Service } from './model';

const SERVICE_FIELDS = fieldSpec(
  ['name', 'namespace', 'hostname', 'vips', 'ports', 'subjectAltNames', 'loadBalancer', 'canonical'],
  ['name', 'namespace', 'hostname', 'ports'],
  // endpoints come from the workloads' `services` field here; waypoints and IP-family selection
  // are not implemented
  ['endpoints', 'waypoint', 'ipFamilies'],
);
const LB_FIELDS = fieldSpec(['mode', 'routingPreferences', 'healthPolicy']);
const LB_MODES: readonly LoadBalancer['mode'][] = ['Standard', 'Strict', 'Failover'];
const LB_SCOPES: readonly LoadBalancer['routingPreferences'][number][] = ['Network', 'Region', 'Zone', 'Subzone', 'Node', 'Cluster'];
const LB_HEALTH: readonly LoadBalancer['healthPolicy'][] = ['OnlyHealthy', 'AllowAll'];

/** Parses "network/ip" or "ip"; null when the address part is not an IP. */
export function parseNetworkAddress(text: string): NetworkAddress | null {
  const slash = text.indexOf('/');
  const network = slash < 0 ? '' : text.slice(0, slash);
  const address = normalizeAddress(slash < 0 ? text : text.slice(slash + 1));
  return address === null ? null : { network, address };
}

function readVips(o: RawObject, path: string, issues: IssueList): readonly NetworkAddress[] {
  const raw = readList(o, 'vips', path, issues);
  if (raw.length === 0) return EMPTY_LIST;
  const out: NetworkAddress[] = [];
  for (let i = 0; i < raw.length; i++) {
    const v = raw[i];
    const na = typeof v === 'string' ? parseNetworkAddress(v) : null;
    if (na === null) {
      const what = typeof v === 'string' ? JSON.stringify(v) : describe(v);
      issues.add(indexPath(keyPath(path, 'vips'), i), `${what} is not a VIP ("network/ip" or "ip")`);
    } else out.push(Object.freeze(na));
  }
  return Object.freeze(out);
}

function readLoadBalancer(o: RawObject, path: string, issues: IssueList): LoadBalancer | null {
  const v = o['loadBalancer'];
  if (v === undefined || v === null) return null;
  const p = keyPath(path, 'loadBalancer');
  if (!checkFields(v, p, LB_FIELDS, issues)) return null;
  if (v['mode'] === 'Passthrough') {
    issues.addAt(p, 'mode', 'ztunnel\'s "Passthrough" mode is not supported by ztunnel-ts (use Standard, Strict or Failover)');
  }
  const prefs = readList(v, 'routingPreferences', p, issues);
  const routingPreferences: LoadBalancer['routingPreferences'][number][] = [];
  for (let i = 0; i < prefs.length; i++) {
    const s = prefs[i];
    if (typeof s === 'string' && (LB_SCOPES as readonly string[]).includes(s)) {
      routingPreferences.push(s as LoadBalancer['routingPreferences'][number]);
    } else {
      issues.add(indexPath(keyPath(p, 'routingPreferences'), i), `${describe(s)} is not one of ${LB_SCOPES.join(', ')}`);
    }
  }
  return Object.freeze({
    mode: v['mode'] === 'Passthrough' ? 'Standard' : readEnum(v, 'mode', p, issues, LB_MODES, 'Standard'),
    routingPreferences: Object.freeze(routingPreferences),
    healthPolicy: readEnum(v, 'healthPolicy', p, issues, LB_HEALTH, 'OnlyHealthy'),
  });
}

/** Returns null only when the entry is not a mapping at all. */
export function parseService(
  raw: unknown,
  path: string,
  issues: IssueList,
  intern: (s: string) => string,
  portMaps: Interner<PortMap>,
): Service | null {
  if (!checkFields(raw, path, SERVICE_FIELDS, issues)) return null;
  const o = raw;
  return Object.freeze<Service>({
    name: readString(o, 'name', path, issues, { nonEmpty: true }),
    namespace: intern(readString(o, 'namespace', path, issues, { nonEmpty: true })),
    hostname: readString(o, 'hostname', path, issues, { nonEmpty: true }),
    vips: readVips(o, path, issues),
    ports: readPortMap(o['ports'], () => keyPath(path, 'ports'), issues, portMaps),
    subjectAltNames: readStringList(o, 'subjectAltNames', path, issues),
    loadBalancer: readLoadBalancer(o, path, issues),
    canonical: readBool(o, 'canonical', path, issues),
  });
}
