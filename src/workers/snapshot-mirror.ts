/**
 * A worker's view of the snapshot: installs the versioned bytes the main thread sends, with the
 * same `current` + `subscribe` surface as the main thread's SnapshotStore, so the data plane
 * runs unchanged on either.
 *
 * Invariants: `current.version` only increases (an older or equal version is ignored, since
 * messages from a restarted supervisor or a reordered resend must not roll state back); bytes
 * that fail to decode leave the last good snapshot in force and are reported to the caller.
 */
import { decodeDoc } from '../state/doc-bytes';
import { buildSnapshot, emptySnapshot, type Snapshot } from '../state/snapshot';
import type { SnapshotListener } from '../state/store';
import type { SnapshotMessage } from './protocol';

export class SnapshotMirror {
  private snap: Snapshot;
  private readonly listeners = new Set<SnapshotListener>();

  constructor(private readonly nodeName: string) {
    this.snap = emptySnapshot(nodeName);
  }

  get current(): Snapshot {
    return this.snap;
  }

  subscribe(fn: SnapshotListener): () => void {
    this.listeners.add(fn);
    return () => void this.listeners.delete(fn);
  }

  /** Applies a snapshot message; returns false when it was not newer. Throws ERR_SNAPSHOT_BYTES on bad bytes. */
  apply(msg: SnapshotMessage): boolean {
    if (msg.version <= this.snap.version) return false;
    const next = buildSnapshot(decodeDoc(msg.bytes), { version: msg.version, nodeName: this.nodeName });
    const prev = this.snap;
    this.snap = next;
    for (const fn of this.listeners) fn(next, prev);
    return true;
  }
}
