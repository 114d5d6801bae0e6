/**
 * The messages between the main thread (control plane) and the data-plane workers.
 * Everything is structured-cloneable plain data. Snapshots travel as encoded bytes
 * (src/state/doc-bytes.ts) in a SharedArrayBuffer made once per swap and shared by every worker,
 * not as an object graph cloned per worker; each worker decodes and indexes its own copy.
 * Certificates travel as WorkloadCert (PEM strings and dates).
 *
 * Status: the supervisor and worker entry that speak this protocol are not wired yet (the data
 * plane runs on the main thread today).
 */
import type { Config } from '../config/config';
import type { WorkloadCert } from '../identity/workload-cert';
import type { Identity } from '../identity/spiffe';

export interface SnapshotMessage {
  readonly type: 'snapshot';
  readonly version: number;
  /** encodeDoc() output, in a SharedArrayBuffer so N workers do not get N copies in flight. */
  readonly bytes: Uint8Array;
}

export type MainToWorker =
  | { readonly type: 'init'; readonly workerId: number; readonly config: Config; readonly snapshot: SnapshotMessage; readonly certs: readonly WorkloadCert[] }
  | SnapshotMessage
  | { readonly type: 'cert'; readonly cert: WorkloadCert }
  | { readonly type: 'forget-cert'; readonly identity: Identity }
  | { readonly type: 'drain' }
  | { readonly type: 'metrics'; readonly requestId: number };

export type WorkerToMain =
  | { readonly type: 'ready'; readonly workerId: number }
  | { readonly type: 'snapshot-applied'; readonly workerId: number; readonly version: number }
  | { readonly type: 'error'; readonly workerId: number; readonly code: string; readonly message: string }
  | { readonly type: 'metrics'; readonly requestId: number; readonly metrics: unknown };

/** Copies encoded snapshot bytes into one SharedArrayBuffer for every worker. */
export function snapshotMessage(version: number, encoded: Uint8Array): SnapshotMessage {
  const shared = new Uint8Array(new SharedArrayBuffer(encoded.byteLength));
  shared.set(encoded);
  return { type: 'snapshot', version, bytes: shared };
}
