/**
 * GET /config_dump (ZTUNNEL-FACTS "Admin"): ztunnel's shape, which `istioctl ztunnel-config`
 * reads — `workloads` (sorted by uid), `services` (sorted by hostname, VIPs as "network/ip", with
 * their endpoints), `policies`, `certificates`, `config`, `version` — plus `connections`, the live
 * inbound/outbound connections as ztunnel's connection manager lists them.
 *
 * Certificates as ztunnel dumps them: `identity`, `state` ("Initializing", "Available",
 * "Unavailable: <why>"), and once available `certChain` (leaf first, then intermediates) and
 * `rootCerts`, each `{pem (base64 of the PEM), serialNumber (decimal), validFrom, expirationTime}`
 * with RFC 3339 second-precision UTC times. Private keys are never read here: only certificate
 * PEMs leave WorkloadCert.
 */
import { X509Certificate } from 'node:crypto';
import type { Config } from '../config/config';
import { toConfigDump } from '../config/dump';
import type { CertStatus } from '../identity/cert-manager';
import type { ConnectionDump } from '../metrics/conn-observer';
import type { Snapshot } from '../state/snapshot';

export interface CertDump {
  readonly pem: string;
  readonly serialNumber: string;
  readonly validFrom: string;
  readonly expirationTime: string;
}

export interface CertsDump {
  readonly identity: string;
  readonly state: string;
  readonly certChain: CertDump[];
  readonly rootCerts: CertDump[];
}

export interface ConnectionsDump {
  readonly inbound: readonly ConnectionDump[];
  readonly outbound: readonly ConnectionDump[];
}

export interface ConfigDumpSources {
  readonly config: Config;
  snapshot(): Snapshot;
  certs(): readonly CertStatus[];
  /** Live connections; a promise when they are gathered from worker threads. */
  connections(): ConnectionsDump | Promise<ConnectionsDump>;
  readonly version: Readonly<Record<string, string>>;
  /** In-pod mode: the pods registered over ZDS by uid, with what the proxy made of them. */
  workloadState?(): Readonly<Record<string, unknown>>;
}

function rfc3339(d: Date): string {
  return d.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

export function dumpCert(pem: string): CertDump {
  const x = new X509Certificate(pem);
  return {
    pem: Buffer.from(pem).toString('base64'),
    serialNumber: BigInt(`0x${x.serialNumber}`).toString(10),
    validFrom: rfc3339(new Date(x.validFrom)),
    expirationTime: rfc3339(new Date(x.validTo)),
  };
}

export function dumpCerts(states: readonly CertStatus[]): CertsDump[] {
  return states
    .map((s) => {
      if (s.state !== 'Available' || s.cert === null) {
        return { identity: s.id, state: s.state === 'Unavailable' ? `Unavailable: ${s.reason ?? 'unknown'}` : s.state, certChain: [], rootCerts: [] };
      }
      const c = s.cert;
      return { identity: s.id, state: 'Available', certChain: [c.certPem, ...c.chainPem].map(dumpCert), rootCerts: c.rootsPem.map(dumpCert) };
    })
    .sort((a, b) => (a.identity < b.identity ? -1 : a.identity > b.identity ? 1 : 0));
}

function byKey<T>(key: (t: T) => string): (a: T, b: T) => number {
  return (a, b) => {
    const ka = key(a);
    const kb = key(b);
    return ka < kb ? -1 : ka > kb ? 1 : 0;
  };
}

export async function buildConfigDump(src: ConfigDumpSources): Promise<Record<string, unknown>> {
  const connections = await src.connections();
  const snap = src.snapshot();
  const workloads = [...snap.doc.workloads].sort(byKey((w) => w.uid));
  const services = [...snap.doc.services].sort(byKey((s) => s.hostname)).map((s) => {
    const endpoints: Record<string, unknown> = {};
    for (const ep of snap.endpointsOf(s)) {
      endpoints[ep.workload.uid] = { workloadUid: ep.workload.uid, service: `${s.namespace}/${s.hostname}`, port: ep.ports };
    }
    return { ...s, vips: s.vips.map((v) => `${v.network}/${v.address}`), endpoints };
  });
  return {
    workloads,
    services,
    policies: snap.doc.policies,
    certificates: dumpCerts(src.certs()),
    config: toConfigDump(src.config),
    version: { ...src.version },
    snapshotVersion: snap.version,
    connections,
    ...(src.workloadState ? { workloadState: src.workloadState() } : {}),
  };
}
