/**
 * The messages between the main thread (control plane) and the data-plane workers.
 * Everything is structured-cloneable plain data. Snapshots travel as encoded bytes
 * (src/state/doc-bytes.ts) in a SharedArrayBuffer made once per swap and shared by every worker,
 * not as an object graph cloned per worker; each worker decodes and indexes its own copy.
 * Certificates travel as WorkloadCert (PEM strings and dates).
 *
 * Requests that want an answer (metrics, stats, drain, close) carry a requestId that the worker
 * echoes in its 'reply'; the supervisor gives each a deadline, so a stuck worker cannot hang a
 * scrape or a shutdown.
 */
import type { Config } from '../config/config';
import type { WorkloadCert } from '../identity/workload-cert';
import type { Identity } from '../identity/spiffe';
import type { LogLevelName } from '../logging/logger';
import type { BoundAddress } from '../net/listener';
import type { InpodPod, PodState } from '../inpod/pod';
import type { ConnectionLimitState } from '../net/conn-limit';

export interface SnapshotMessage {
  readonly type: 'snapshot';
  readonly version: number;
  /** encodeDoc() output, in a SharedArrayBuffer so N workers do not get N copies in flight. */
  readonly bytes: Uint8Array;
}

export type MainToWorker =
  | {
      readonly type: 'init';
      readonly workerId: number;
      readonly config: Config;
      readonly snapshot: SnapshotMessage;
      readonly certs: readonly WorkloadCert[];
      /** The cert sequence the init certs carry: the last one sent ('cert' messages go above it). */
      readonly certSeq: number;
      /** The process-wide ZTUNNEL_MAX_CONNECTIONS counter (shared memory); null = no limit. */
      readonly limit: ConnectionLimitState | null;
      /** In-pod mode: the pods to serve, as of the last 'pods' message (podSeq; 0 = none yet). */
      readonly pods: readonly InpodPod[];
      readonly podSeq: number;
    }
  /** In-pod mode: serve exactly these pods; answered by 'pods-applied' with the same seq. */
  | { readonly type: 'pods'; readonly seq: number; readonly pods: readonly InpodPod[] }
  | SnapshotMessage
  /** seq: one counter for all identities, so newer per identity; CertMirror ignores any not newer */
  | { readonly type: 'cert'; readonly cert: WorkloadCert; readonly seq: number }
  | { readonly type: 'forget-cert'; readonly identity: Identity }
  | { readonly type: 'log-levels'; readonly level: LogLevelName | null; readonly targets: Readonly<Record<string, LogLevelName>> }
  | { readonly type: 'request'; readonly requestId: number; readonly what: WorkerRequest };

/**
 * metrics → the worker registry's getMetricsAsJSON(); stats → WorkerStats; connections → its live
 * connections as /config_dump lists them (ConnectionsDump); drain → null once its listeners
 * stopped accepting (live connections go on); close → null once everything is cut.
 */
export type WorkerRequest = 'metrics' | 'stats' | 'connections' | 'drain' | 'close';

/** One worker's counters, for the supervisor's tests and diagnostics. */
export interface WorkerStats {
  readonly workerId: number;
  /** Live connections: inbound tunnels + SOCKS5 clients. */
  readonly live: number;
  /** Socket↔socket relays started so far, by engine (one per relayed connection). */
  readonly relays: { readonly splice: number; readonly js: number };
}

/** The data-plane addresses a worker listens on ("socks5", "hbone <ip>"), as [key, address] pairs. */
export type AddressList = ReadonlyArray<readonly [string, BoundAddress]>;

export type WorkerToMain =
  | { readonly type: 'ready'; readonly workerId: number; readonly version: number; readonly addresses: AddressList }
  | { readonly type: 'snapshot-applied'; readonly workerId: number; readonly version: number; readonly addresses: AddressList }
  | { readonly type: 'pods-applied'; readonly workerId: number; readonly seq: number; readonly states: Readonly<Record<string, PodState>>; readonly addresses: AddressList }
  | { readonly type: 'error'; readonly workerId: number; readonly code: string; readonly message: string; readonly fatal: boolean }
  | { readonly type: 'reply'; readonly requestId: number; readonly value: unknown; readonly error: string | null };

/** Copies encoded snapshot bytes into one SharedArrayBuffer for every worker. */
export function snapshotMessage(version: number, encoded: Uint8Array): SnapshotMessage {
  const shared = new Uint8Array(new SharedArrayBuffer(encoded.byteLength));
  shared.set(encoded);
  return { type: 'snapshot', version, bytes: shared };
}
