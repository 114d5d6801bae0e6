/**
 * The snapshot model: ztunnel's local-config format (LOCAL_XDS / LOCAL_XDS_PATH) after validation
 * and normalisation. Everything here is plain, frozen, structured-cloneable data, so a validated
 * document can cross into worker threads as-is.
 *
 * Defaults are applied by the loader (src/state/parse.ts): after parsing, every optional scalar has
 * its ztunnel default ("" for absent strings), so consumers never test for undefined.
 */

export type Protocol = 'TCP' | 'HBONE';
export type HealthStatus = 'Healthy' | 'Unhealthy';
export type PolicyScope = 'Global' | 'Namespace' | 'WorkloadSelector';
export type PolicyAction = 'Allow' | 'Deny';

export interface Locality {
  readonly region: string;
  readonly zone: string;
  readonly subzone: string;
}

/** svcPort → targetPort (0 = same as svcPort, as in ztunnel). */
export type PortMap = Readonly<Record<number, number>>;

export interface Workload {
  readonly uid: string;
  readonly name: string;
  readonly namespace: string;
  /** Normalised textual IPs (IPv4 dotted quad, IPv6 compressed lower-case). */
  readonly workloadIps: readonly string[];
  readonly protocol: Protocol;
  /** Already defaulted to TRUST_DOMAIN when absent in the document. */
  readonly trustDomain: string;
  /** Defaults to "default", as Kubernetes does. */
  readonly serviceAccount: string;
  readonly node: string;
  readonly network: string;
  readonly workloadName: string;
  readonly workloadType: string;
  readonly canonicalName: string;
  readonly canonicalRevision: string;
  readonly clusterId: string;
  readonly locality: Locality | null;
  readonly status: HealthStatus;
  /** WorkloadSelector policies that select this workload, as "namespace/name". */
  readonly authorizationPolicies: readonly string[];
  readonly capacity: number;
  /** "namespace/hostname" → port map: this workload is an endpoint of those services. */
  readonly services: Readonly<Record<string, PortMap>>;
}

export interface NetworkAddress {
  readonly network: string;
  readonly address: string;
}

export interface Service {
  readonly name: string;
  readonly namespace: string;
  readonly hostname: string;
  readonly vips: readonly NetworkAddress[];
  readonly ports: PortMap;
  readonly subjectAltNames: readonly string[];
  readonly loadBalancer: LoadBalancer | null;
  readonly canonical: boolean;
}

/** ztunnel's LoadBalancer (serde names). Its `Passthrough` mode is not supported and is refused. */
export interface LoadBalancer {
  readonly mode: 'Standard' | 'Strict' | 'Failover';
  readonly routingPreferences: readonly ('Network' | 'Region' | 'Zone' | 'Subzone' | 'Node' | 'Cluster')[];
  readonly healthPolicy: 'OnlyHealthy' | 'AllowAll';
}

/** A string match in ztunnel's local format: exactly one of the keys. */
export type StringMatch =
  | { readonly Exact: string }
  | { readonly Prefix: string }
  | { readonly Suffix: string }
  | { readonly Presence: readonly [] };

export interface ServiceAccountMatch {
  readonly namespace: string;
  readonly serviceAccount: string;
}

/** A CIDR as written, normalised: base address with host bits masked + prefix length. */
export interface Cidr {
  readonly address: string;
  readonly prefixLen: number;
}

/** One match object: every field present must hold (ZTUNNEL-FACTS, L4 authorization). */
export interface Match {
  readonly namespaces?: readonly StringMatch[];
  readonly notNamespaces?: readonly StringMatch[];
  readonly principals?: readonly StringMatch[];
  readonly notPrincipals?: readonly StringMatch[];
  readonly serviceAccounts?: readonly ServiceAccountMatch[];
  readonly notServiceAccounts?: readonly ServiceAccountMatch[];
  readonly sourceIps?: readonly Cidr[];
  readonly notSourceIps?: readonly Cidr[];
  readonly destinationIps?: readonly Cidr[];
  readonly notDestinationIps?: readonly Cidr[];
  readonly destinationPorts?: readonly number[];
  readonly notDestinationPorts?: readonly number[];
}

/** rules → clauses → matches. */
export type Rule = readonly (readonly Match[])[];

export interface Policy {
  readonly name: string;
  readonly namespace: string;
  readonly scope: PolicyScope;
  readonly action: PolicyAction;
  readonly rules: readonly Rule[];
  readonly dryRun: boolean;
}

/** A validated, normalised snapshot document: what crosses into workers. */
export interface SnapshotDoc {
  readonly workloads: readonly Workload[];
  readonly services: readonly Service[];
  readonly policies: readonly Policy[];
}

/** "namespace/name": how policies and services are referred to. */
export function resourceKey(namespace: string, name: string): string {
  return `${namespace}/${name}`;
}
