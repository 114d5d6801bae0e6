/**
 * Istio's traffic label set (ZTUNNEL-FACTS "Metrics"; ztunnel's CommonTrafficLabels), built from
 * snapshot workloads and services. Every value that is not known is the string `unknown`, so a
 * series always carries the whole set and dashboards written for ztunnel match ours.
 *
 * Pure: no I/O, no clock. Built once per connection (at open), never per chunk.
 */
import { formatSpiffe, type Identity } from '../identity/spiffe';
import type { Service, Workload } from '../state/model';
import type { ResponseFlag } from './response-flags';

export const TRAFFIC_LABEL_NAMES = [
  'reporter',
  'source_workload',
  'source_canonical_service',
  'source_canonical_revision',
  'source_workload_namespace',
  'source_principal',
  'source_app',
  'source_version',
  'source_cluster',
  'destination_service',
  'destination_service_namespace',
  'destination_service_name',
  'destination_workload',
  'destination_canonical_service',
  'destination_canonical_revision',
  'destination_workload_namespace',
  'destination_principal',
  'destination_app',
  'destination_version',
  'destination_cluster',
  'request_protocol',
  'response_flags',
  'connection_security_policy',
] as const;

export type TrafficLabelName = (typeof TRAFFIC_LABEL_NAMES)[number];
export type TrafficLabels = Record<TrafficLabelName, string>;
export type Reporter = 'source' | 'destination';

export const UNKNOWN = 'unknown';

function known(v: string | null | undefined): string {
  return v === undefined || v === null || v === '' ? UNKNOWN : v;
}

/** Source facts from the peer's baggage (ztunnel's DerivedWorkload). */
export interface DerivedSource {
  readonly workloadName?: string;
  readonly app?: string;
  readonly revision?: string;
  readonly namespace?: string;
  readonly clusterId?: string;
}

/** What is known about one side of a connection when its labels are built. */
export interface TrafficParties {
  readonly reporter: Reporter;
  /** The source workload (outbound: the local caller; inbound: looked up by the peer IP). */
  readonly source?: Workload;
  /**
   * What the peer said about itself (inbound: its HBONE baggage), used when the source workload is
   * not in our snapshot.
   */
  readonly derivedSource?: DerivedSource;
  /** The source's identity as proven by mTLS (inbound) or about to be presented (outbound HBONE). */
  readonly sourceIdentity?: Identity | null;
  readonly destination?: Workload;
  readonly service?: Service | null;
  readonly mtls: boolean;
  /** This proxy's cluster: the default for workloads that do not name theirs. */
  readonly clusterId: string;
}

/**
 * ztunnel's order: identity-derived facts first, the source workload overrides them (it is more
 * complete); source_principal only ever comes from the (m)TLS identity, never from the snapshot.
 */
export function trafficLabels(p: TrafficParties, flags: ResponseFlag = '-'): TrafficLabels {
  const s = p.source;
  const g = p.derivedSource ?? {};
  const d = p.destination;
  const svc = p.service ?? null;
  return {
    reporter: p.reporter,
    source_workload: known(s ? s.workloadName : g.workloadName),
    source_canonical_service: known(s ? s.canonicalName : g.app),
    source_canonical_revision: known(s ? s.canonicalRevision : g.revision),
    source_workload_namespace: known(s ? s.namespace : (g.namespace ?? p.sourceIdentity?.namespace)),
    source_principal: p.sourceIdentity ? formatSpiffe(p.sourceIdentity) : UNKNOWN,
    // ztunnel: from baggage the app is the workload name; from the snapshot, the canonical name
    source_app: known(s ? s.canonicalName : g.workloadName),
    source_version: known(s ? s.canonicalRevision : g.revision),
    source_cluster: known(s ? s.clusterId || p.clusterId : g.clusterId),
    destination_service: known(svc?.hostname),
    destination_service_namespace: known(svc?.namespace),
    destination_service_name: known(svc?.name),
    destination_workload: known(d?.workloadName),
    destination_canonical_service: known(d?.canonicalName),
    destination_canonical_revision: known(d?.canonicalRevision),
    destination_workload_namespace: known(d?.namespace),
    destination_principal: d ? formatSpiffe({ trustDomain: d.trustDomain, namespace: d.namespace, serviceAccount: d.serviceAccount }) : UNKNOWN,
    destination_app: known(d?.canonicalName),
    destination_version: known(d?.canonicalRevision),
    destination_cluster: d ? known(d.clusterId || p.clusterId) : UNKNOWN,
    request_protocol: 'tcp',
    response_flags: flags,
    connection_security_policy: p.mtls ? 'mutual_tls' : UNKNOWN,
  };
}

/** The same labels with another response_flags value (a fresh object; labels are never mutated). */
export function withFlags(labels: TrafficLabels, flags: ResponseFlag): TrafficLabels {
  return labels.response_flags === flags ? labels : { ...labels, response_flags: flags };
}
