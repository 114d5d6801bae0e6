/**
 * SnapshotStore: the one mutable holder of "the snapshot in force" on a thread.
 *
 * Invariants:
 *  - `current` is always a complete, validated Snapshot; it is replaced in one assignment
 *    (install), never edited, so readers need no locks and never see half a reload;
 *  - versions increase by exactly one per install; the empty starting snapshot is version 0;
 *  - a document that fails validation (or a file that cannot be read) changes nothing except
 *    `reloadFailures` / `lastError` and an error log line: the last good snapshot stays in force;
 *  - at most one file reload runs at a time; events arriving meanwhile cause one more pass.
 *
 * Watching: fs.watch on the file's DIRECTORY, not the file. Editors save by writing a new file and
 * renaming it over the old one, and Kubernetes ConfigMap volumes swap a `..data` symlink; a watch
 * on the file itself would follow the old inode and go silent. Any event in the directory schedules
 * a debounced re-read; a content digest skips events that did not change the file.
 */
import { createHash } from 'node:crypto';
import { watch as fsWatch, type FSWatcher } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import type { SnapshotDoc } from './model';
import { parseSnapshot } from './parse';
import { buildSnapshot, emptySnapshot, type Snapshot } from './snapshot';

/** The logging the store needs (pino's Logger satisfies it). */
export interface StoreLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

export interface SnapshotStoreOptions {
  readonly nodeName: string;
  /** TRUST_DOMAIN: the default for workloads that do not name one. */
  readonly trustDomain: string;
  readonly logger: StoreLogger;
  /** Quiet time after the last directory event before re-reading (default 100 ms). */
  readonly debounceMs?: number;
}

export type SnapshotListener = (next: Snapshot, prev: Snapshot) => void;

/**
 * A snapshot read, validated and built before the store existed (the proxy's start-up check of
 * LOCAL_XDS / LOCAL_XDS_PATH), handed over so that a large one is not parsed and indexed twice.
 */
export interface PreparedSnapshot {
  /** Built as version 1 for this store's node name and trust domain. */
  readonly snapshot: Snapshot;
  /** LOCAL_XDS or the file's path (for the log, and to check it is the configured one). */
  readonly source: string;
  /** digestOf the file's bytes for a file, so the watch skips it while unchanged; null for inline text. */
  readonly digest: string | null;
  /** How long reading, parsing and building took, for the log line. */
  readonly ms: number;
}

export function digestOf(buf: Buffer): string {
  return createHash('sha256').update(buf).digest('hex');
}

export class SnapshotStore {
  private snap: Snapshot;
  private readonly listeners = new Set<SnapshotListener>();
  private failures = 0;
  private lastErr: Error | null = null;
  private watcher: FSWatcher | null = null;
  private watchedPath: string | null = null;
  private timer: NodeJS.Timeout | null = null;
  private reloading = false;
  private again = false;
  /** Digest of the last file content judged (good or bad): unchanged content is not re-judged. */
  private lastDigest: string | null = null;
  private readonly debounceMs: number;

  constructor(private readonly opts: SnapshotStoreOptions) {
    this.snap = emptySnapshot(opts.nodeName);
    this.debounceMs = opts.debounceMs ?? 100;
  }

  get current(): Snapshot {
    return this.snap;
  }

  /** Reloads rejected since start (bad document or unreadable file); the initial load is not counted. */
  get reloadFailures(): number {
    return this.failures;
  }

  /** Why the last load or reload failed; null once a later one succeeds. */
  get lastError(): Error | null {
    return this.lastErr;
  }

  /** Swaps in a validated document as version+1 and tells subscribers. */
  install(doc: SnapshotDoc): Snapshot {
    return this.swapIn(buildSnapshot(doc, { version: this.snap.version + 1, nodeName: this.opts.nodeName }));
  }

  /**
   * Installs the first snapshot, already built (start-up): no second parse. It must be the next
   * version for this node; anything else is a programming error and throws.
   */
  adopt(prepared: PreparedSnapshot): Snapshot {
    const snap = prepared.snapshot;
    if (snap.version !== this.snap.version + 1 || snap.nodeName !== this.opts.nodeName) {
      throw new Error(`prepared snapshot v${snap.version} for node ${JSON.stringify(snap.nodeName)} does not follow v${this.snap.version} for ${JSON.stringify(this.opts.nodeName)}`);
    }
    this.lastDigest = prepared.digest;
    this.swapIn(snap);
    this.logInstalled(prepared.source, snap, prepared.ms);
    return snap;
  }

  private logInstalled(source: string, snap: Snapshot, ms: number): void {
    const { doc } = snap;
    this.opts.logger.info(
      { source, version: snap.version, workloads: doc.workloads.length, services: doc.services.length, policies: doc.policies.length, ms: Math.round(ms) },
      'snapshot installed',
    );
  }

  private swapIn(next: Snapshot): Snapshot {
    const prev = this.snap;
    this.snap = next;
    this.lastErr = null;
    for (const fn of [...this.listeners]) {
      try {
        fn(next, prev);
      } catch (err) {
        // one broken subscriber must not stop the others from seeing the new snapshot
        this.opts.logger.error({ err, version: next.version }, 'snapshot subscriber failed');
      }
    }
    return next;
  }

  /** `fn(next, prev)` after each install. Returns the unsubscribe function. */
  subscribe(fn: SnapshotListener): () => void {
    this.listeners.add(fn);
    return () => void this.listeners.delete(fn);
  }

  /** Parses, validates and installs `text` (e.g. LOCAL_XDS). Throws SnapshotError; nothing changes then. */
  loadText(text: string, source: string): Snapshot {
    const started = performance.now();
    let snap: Snapshot;
    try {
      // compiling policies (in install) can still refuse the document
      snap = this.install(parseSnapshot(text, { source, trustDomain: this.opts.trustDomain }));
    } catch (err) {
      this.lastErr = err as Error;
      throw err;
    }
    this.logInstalled(source, snap, performance.now() - started);
    return snap;
  }

  /** Reads and installs a snapshot file (startup). Throws on a read or validation error. */
  async loadFile(path: string): Promise<Snapshot> {
    let buf: Buffer;
    try {
      buf = await readFile(path);
    } catch (err) {
      this.lastErr = err as Error;
      throw err;
    }
    const digest = digestOf(buf);
    const snap = this.loadText(buf.toString('utf8'), path);
    this.lastDigest = digest;
    return snap;
  }

  /**
   * Re-reads `path` whenever its directory changes, until close(). A bad or missing file is logged
   * and counted; the last good snapshot stays. Watching again replaces the previous watch.
   */
  watch(path: string): void {
    this.stopWatching();
    this.watchedPath = path;
    const w = fsWatch(dirname(path), { persistent: false }, () => this.schedule());
    w.on('error', (err) => {
      this.lastErr = err;
      this.opts.logger.error({ err, path }, 'snapshot watch failed; reloads stop until the proxy restarts');
    });
    this.watcher = w;
    this.opts.logger.info({ path, dir: dirname(path), file: basename(path) }, 'watching snapshot file');
    // A change between the read that gave the current snapshot and this watch raised no event (at
    // start-up that read can be the check before the listeners are bound): look once. The digest
    // makes this a read and a hash when nothing changed.
    if (this.lastDigest !== null) this.schedule();
  }

  /** Stops watching; pending reloads are dropped. */
  close(): void {
    this.stopWatching();
  }

  private stopWatching(): void {
    this.watcher?.close();
    this.watcher = null;
    this.watchedPath = null;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }

  private schedule(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.reload();
    }, this.debounceMs);
    this.timer.unref();
  }

  private async reload(): Promise<void> {
    if (this.reloading) {
      this.again = true;
      return;
    }
    this.reloading = true;
    try {
      do {
        this.again = false;
        const path = this.watchedPath;
        if (path === null) return;
        await this.reloadOnce(path);
      } while (this.again);
    } finally {
      this.reloading = false;
    }
  }

  private async reloadOnce(path: string): Promise<void> {
    let buf: Buffer;
    try {
      buf = await readFile(path);
    } catch (err) {
      this.reject(path, err as Error);
      return;
    }
    if (this.watchedPath !== path) return; // closed or re-pointed while reading
    const digest = digestOf(buf);
    if (digest === this.lastDigest) return;
    this.lastDigest = digest;
    try {
      this.loadText(buf.toString('utf8'), path);
    } catch (err) {
      this.reject(path, err as Error);
    }
  }

  private reject(path: string, err: Error): void {
    this.failures++;
    this.lastErr = err;
    const errors = (err as { errors?: unknown[] }).errors?.length;
    this.opts.logger.error(
      { path, err: err.message, errors, version: this.snap.version, reloadFailures: this.failures },
      'snapshot reload rejected; the last good snapshot stays in force',
    );
  }
}
