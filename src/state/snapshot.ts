/**
 * An installed snapshot: the validated document plus the indexes the data path looks things up in,
 * and the policies compiled once for authorize(). Immutable: a change is a new Snapshot (see
 * SnapshotStore), so a connection that captured one sees a consistent view for its whole life.
 *
 * Invariants:
 *  - workloads are indexed by (network, ip) for every IP they have, and by uid;
 *  - services by (network, vip) and by "namespace/hostname";
 *  - a service's endpoints are the workloads whose `services` field names it, in document order,
 *    healthy or not (the outbound plan filters on health, as ztunnel does per load-balancer policy);
 *  - lookups accept any textual form of an IP (mapped IPv4, upper-case IPv6) and fold it to the
 *    stored normal form, but only after a miss: the common, already-normal case costs one Map get.
 *
 * The document is trusted here (parseSnapshot or decodeDoc produced it); if it still holds a
 * duplicate, the first entry wins.
 */
import { compilePolicies, type CompiledPolicies } from '../authz/compile';
import { tryParseSpiffe, type Identity } from '../identity/spiffe';
import { normalizeIp } from '../net/ip';
import { resourceKey, type PortMap, type Service, type SnapshotDoc, type Workload } from './model';

/** A workload serving a service, with its own svcPort → targetPort map for it. */
export interface Endpoint {
  readonly workload: Workload;
  readonly ports: PortMap;
}

export interface SnapshotOptions {
  /** Increases by one with each install (SnapshotStore); 0 for the empty starting snapshot. */
  readonly version: number;
  /** NODE_NAME: workloads whose `node` equals it are this proxy's local workloads. */
  readonly nodeName: string;
}

const NO_ENDPOINTS: readonly Endpoint[] = Object.freeze([]);
const NO_IDENTITIES: readonly Identity[] = Object.freeze([]);

/** A service's subjectAltNames that are SPIFFE ids, parsed (the others are ignored, as ztunnel does). */
function spiffeSans(s: Service): readonly Identity[] {
  if (s.subjectAltNames.length === 0) return NO_IDENTITIES;
  const ids: Identity[] = [];
  for (const san of s.subjectAltNames) {
    const id = tryParseSpiffe(san);
    if (id !== null) ids.push(Object.freeze(id));
  }
  return Object.freeze(ids);
}

/** network → ip → value. Nested so that a lookup builds no key string. */
type ByAddress<T> = Map<string, Map<string, T>>;

function putAddress<T>(index: ByAddress<T>, network: string, ip: string, value: T): void {
  let inner = index.get(network);
  if (inner === undefined) index.set(network, (inner = new Map()));
  if (!inner.has(ip)) inner.set(ip, value);
}

function getAddress<T>(index: ByAddress<T>, ip: string, network: string): T | undefined {
  const inner = index.get(network);
  if (inner === undefined) return undefined;
  const hit = inner.get(ip);
  if (hit !== undefined) return hit;
  const norm = normalizeIp(ip);
  return norm === null || norm === ip ? undefined : inner.get(norm);
}

export class Snapshot {
  readonly doc: SnapshotDoc;
  readonly version: number;
  readonly nodeName: string;
  readonly policies: CompiledPolicies;
  private readonly workloadsByAddr: ByAddress<Workload> = new Map();
  private readonly workloadsByUid = new Map<string, Workload>();
  private readonly servicesByVip: ByAddress<Service> = new Map();
  private readonly servicesByKey = new Map<string, Service>();
  private readonly endpointsByKey = new Map<string, Endpoint[]>();
  /** Each service's SPIFFE SANs, parsed once here rather than on every outbound connection. */
  private readonly sanIdentities = new Map<Service, readonly Identity[]>();
  private readonly local: readonly Workload[];

  constructor(doc: SnapshotDoc, opts: SnapshotOptions) {
    this.doc = doc;
    this.version = opts.version;
    this.nodeName = opts.nodeName;
    for (const s of doc.services) {
      const key = resourceKey(s.namespace, s.hostname);
      if (this.servicesByKey.has(key)) continue;
      this.servicesByKey.set(key, s);
      this.endpointsByKey.set(key, []);
      for (const vip of s.vips) putAddress(this.servicesByVip, vip.network, vip.address, s);
      this.sanIdentities.set(s, spiffeSans(s));
    }
    const local: Workload[] = [];
    for (const w of doc.workloads) {
      if (this.workloadsByUid.has(w.uid)) continue;
      this.workloadsByUid.set(w.uid, w);
      for (const ip of w.workloadIps) putAddress(this.workloadsByAddr, w.network, ip, w);
      for (const key in w.services) {
        // a reference to a missing service is rejected by the loader; ignore it defensively
        this.endpointsByKey.get(key)?.push(Object.freeze({ workload: w, ports: w.services[key]! }));
      }
      if (w.node === opts.nodeName) local.push(w);
    }
    for (const eps of this.endpointsByKey.values()) Object.freeze(eps);
    this.local = Object.freeze(local);
    this.policies = compilePolicies(doc.policies);
  }

  /** The workload with this IP in `network` ("" = the default network). */
  workloadByIp(ip: string, network = ''): Workload | undefined {
    return getAddress(this.workloadsByAddr, ip, network);
  }

  workloadByUid(uid: string): Workload | undefined {
    return this.workloadsByUid.get(uid);
  }

  /** The service with this VIP in `network` ("" = the default network). */
  serviceByVip(ip: string, network = ''): Service | undefined {
    return getAddress(this.servicesByVip, ip, network);
  }

  serviceByHostname(namespace: string, hostname: string): Service | undefined {
    return this.servicesByKey.get(resourceKey(namespace, hostname));
  }

  /** Every workload that serves `service` (also works for an equal Service from another snapshot). */
  endpointsOf(service: Service): readonly Endpoint[] {
    return this.endpointsByKey.get(resourceKey(service.namespace, service.hostname)) ?? NO_ENDPOINTS;
  }

  /**
   * The SPIFFE ids among `service`'s subjectAltNames, in order: parsed when the snapshot was built
   * for its own services; a Service object from elsewhere is parsed now.
   */
  serviceIdentities(service: Service): readonly Identity[] {
    return this.sanIdentities.get(service) ?? spiffeSans(service);
  }

  /** The services `workload` is an endpoint of (for metrics' destination_service labels). */
  servicesOf(workload: Workload): Service[] {
    const out: Service[] = [];
    for (const key in workload.services) {
      const s = this.servicesByKey.get(key);
      if (s !== undefined) out.push(s);
    }
    return out;
  }

  /** Workloads on this node (`node` === nodeName), in document order. */
  localWorkloads(): readonly Workload[] {
    return this.local;
  }
}

export function buildSnapshot(doc: SnapshotDoc, opts: SnapshotOptions): Snapshot {
  return new Snapshot(doc, opts);
}

const EMPTY_DOC: SnapshotDoc = Object.freeze({ workloads: Object.freeze([]), services: Object.freeze([]), policies: Object.freeze([]) });

/** The snapshot in force before any document is installed: nothing known, version 0. */
export function emptySnapshot(nodeName: string): Snapshot {
  return new Snapshot(EMPTY_DOC, { version: 0, nodeName });
}
