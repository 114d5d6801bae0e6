/**
 * WorkerPool: the main thread's side of the worker_threads data plane (issue 4, "Worker pool").
 * The main thread keeps the control plane; N workers each run the data plane with SO_REUSEPORT
 * listeners on the same addresses. The pool
 *  - starts N workers with {config, snapshot bytes, certificates} and waits until each listens;
 *  - forwards every snapshot swap (one SharedArrayBuffer per swap, shared by all workers), every
 *    certificate issue/rotation, and every identity that left the node;
 *  - logs a dead worker with its error, replaces it with backoff, and holds a readiness task
 *    (`proxy worker <slot>`) while the slot is empty; other workers' connections are untouched;
 *  - answers scrapes with each worker's registry JSON, deadline per worker: a late worker counts
 *    with the last answer it gave (an answer that comes after the deadline is kept for the next
 *    scrape: it is newer than the one used instead), and a dead worker's counters live on in a
 *    retained baseline (src/metrics/retained.ts), so no counter of the node ever goes backwards;
 *  - keeps the log levels set at run time (POST /logging) and starts every replacement with them.
 *
 * Ports: where the config says port 0, the pool binds a SO_REUSEPORT socket on port 0 first, hands
 * the port it got to every worker, and closes its own socket once the first workers listen (no
 * one can connect before the port is published, so nothing waits in its queue).
 *
 * Invariants: `slots[i].worker` is the live thread of slot i or null while it is being replaced;
 * every pending request of a worker is settled when it exits; after close() no worker is spawned;
 * `slots[i].lastMetrics` is only ever the live worker's own newest answer (cleared when it dies,
 * after its cumulative series were added to `retained`); a slot keeps at most one late metrics
 * request waiting (`lateRequest`), so a worker stuck for good cannot grow `pending`.
 */
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import type { Logger } from 'pino';
import type { Config } from '../config/config';
import { localIdentities } from '../control-plane';
import type { CertManager } from '../identity/cert-manager';
import type { Identity } from '../identity/spiffe';
import type { LogLevelName } from '../logging/logger';
import type { MetricsJson } from '../metrics/registry';
import { addMetrics, cumulativePart } from '../metrics/retained';
import type { ConnectionDump } from '../metrics/conn-observer';
import type { ConnectionsDump } from '../admin/config-dump';
import type { NativeApi } from '../native/addon';
import type { BoundAddress } from '../net/listener';
import { ConnectionLimit, type ConnectionLimitState } from '../net/conn-limit';
import { encodeDoc } from '../state/doc-bytes';
import type { Snapshot } from '../state/snapshot';
import type { SnapshotStore } from '../state/store';
import { ProxyError } from '../errors';
import type { InpodPod, PodState } from '../inpod/pod';
import { snapshotMessage, type AddressList, type MainToWorker, type WorkerRequest, type WorkerStats, type WorkerToMain } from './protocol';

/** The compiled worker entry, beside this file in dist/ (the only place it is resolved). */
export const WORKER_ENTRY = join(__dirname, 'worker-main.js');

export interface WorkerPoolDeps {
  readonly config: Config;
  readonly store: Pick<SnapshotStore, 'current' | 'subscribe'>;
  readonly certs: Pick<CertManager, 'subscribe' | 'states'>;
  readonly log: Logger;
  /** Readiness.register: a task per empty slot while its replacement starts. */
  readonly readiness: { register(task: string): () => void };
  /** The addon, loaded on this thread (it picks port-0 ports with SO_REUSEPORT). */
  readonly native: NativeApi;
  readonly entry?: string;
  /** Deadline of a metrics/stats request to one worker (default 2000 ms). */
  readonly requestTimeoutMs?: number;
  /** Replacement backoff: first delay and cap (default 100 ms, 10 s), doubled per quick death. */
  readonly restartBackoffMs?: { readonly initial: number; readonly max: number };
}

interface Pending {
  resolve(v: unknown): void;
  reject(e: Error): void;
  /** The deadline; undefined once it passed and only a late answer is still awaited. */
  timer: NodeJS.Timeout | undefined;
}

interface Slot {
  readonly index: number;
  worker: Worker | null;
  ready: boolean;
  version: number;
  addresses: AddressList;
  startedAt: number;
  failures: number;
  lastError: Error | null;
  pending: Map<number, Pending>;
  /** In-pod mode: the last pods message this worker has applied, and what it made of the pods. */
  podSeq: number;
  podStates: Readonly<Record<string, PodState>>;
  /** Ends the readiness gap task; set while the slot has no ready worker after a death. */
  gapDone: (() => void) | null;
  restartTimer: NodeJS.Timeout | null;
  /** The newest registry JSON this slot's live worker answered with (stands in when it is late). */
  lastMetrics: MetricsJson | null;
  /** Request id of the metrics request whose deadline passed and whose answer is still awaited. */
  lateRequest: number | null;
  /** Request id that `lastMetrics` answered (answers may not overtake one another). */
  lastMetricsId: number;
}

/** A worker that stayed up this long is considered healthy again: its next death restarts fast. */
const HEALTHY_AFTER_MS = 30_000;

export class WorkerPool {
  /** The config the workers run (port-0 addresses replaced by the ports picked here). */
  readonly config: Config;
  private readonly slots: Slot[] = [];
  private readonly offs: Array<() => void> = [];
  private readonly waiters: Array<() => void> = [];
  private nextRequestId = 1;
  private stopping = false;
  private held: number | null;
  private known: Map<string, Identity>;
  private fatal: ((err: Error) => void) | null = null;
  private pods: readonly InpodPod[] = [];
  private podSeq = 0;
  /** Last sequence number given to a 'cert' message (CertMirror orders certificates by it). */
  private certSeq = 0;
  /** ZTUNNEL_MAX_CONNECTIONS, shared by every worker (src/net/conn-limit.ts); null = no limit. */
  private readonly limit: ConnectionLimitState | null;
  /** Cumulative series of every dead worker, merged into each scrape (counters never go back). */
  private retained: MetricsJson = [];
  /** The log levels in force (start-up filter, then every POST /logging), for replacement workers. */
  private logLevels: { level: LogLevelName; targets: Readonly<Record<string, LogLevelName>> };

  private constructor(private readonly deps: WorkerPoolDeps) {
    const { config, native } = deps;
    this.held = null;
    let workerConfig = config;
    if (config.socks5Addr !== null && config.socks5Addr.port === 0) {
      const { fd, port } = native.listen({ host: config.socks5Addr.host, port: 0, backlog: 1, reusePort: true });
      this.held = fd;
      workerConfig = Object.freeze({ ...config, socks5Addr: Object.freeze({ host: config.socks5Addr.host, port }) });
    }
    this.config = workerConfig;
    this.limit = config.maxConnections === null ? null : ConnectionLimit.create(config.maxConnections, Math.max(1, config.numWorkerThreads));
    this.known = localIdentities(deps.store.current);
    this.logLevels = { level: config.log.level, targets: { ...config.log.targets } };
  }

  /** Starts `config.numWorkerThreads` workers; resolves once each listens, rejects on a worker's start failure. */
  static async start(deps: WorkerPoolDeps): Promise<WorkerPool> {
    const pool = new WorkerPool(deps);
    try {
      await pool.boot();
    } catch (err) {
      await pool.close();
      throw err;
    }
    return pool;
  }

  private async boot(): Promise<void> {
    const failed = new Promise<never>((_, reject) => (this.fatal = reject));
    this.offs.push(this.deps.store.subscribe((next) => this.onSnapshot(next)));
    this.offs.push(this.deps.certs.subscribe((cert) => this.broadcast({ type: 'cert', cert, seq: ++this.certSeq })));
    const n = Math.max(1, this.deps.config.numWorkerThreads);
    for (let i = 0; i < n; i++) {
      const slot: Slot = { index: i, worker: null, ready: false, version: 0, addresses: [], startedAt: 0, failures: 0, lastError: null, pending: new Map(), podSeq: 0, podStates: {}, gapDone: null, restartTimer: null, lastMetrics: null, lateRequest: null, lastMetricsId: 0 };
      this.slots.push(slot);
      this.spawn(slot);
    }
    await Promise.race([this.until(() => this.slots.every((s) => s.ready)), failed]);
    this.fatal = null;
    if (this.held !== null) {
      this.deps.native.close(this.held);
      this.held = null;
    }
  }

  get size(): number {
    return this.slots.length;
  }

  /** Slots whose worker is up and listening. */
  readyCount(): number {
    return this.slots.filter((s) => s.ready).length;
  }

  /** The workers' data-plane addresses (every worker listens on the same ones). */
  addresses(): Map<string, BoundAddress> {
    const slot = this.slots.find((s) => s.ready) ?? this.slots[0];
    return new Map(slot?.addresses ?? []);
  }

  /** Resolves once every slot has a ready worker whose listeners match the current snapshot. */
  settled(): Promise<void> {
    const want = this.deps.store.current.version;
    return this.until(() => this.stopping || this.slots.every((s) => s.ready && s.version >= want));
  }

  /**
   * The registries to merge into a scrape: each ready worker's JSON, plus the retained counters of
   * dead workers. A worker that misses the deadline counts with its previous answer (logged), so a
   * slow scrape cannot make a counter dip for one scrape (Prometheus would read a reset).
   */
  async metrics(): Promise<MetricsJson[]> {
    const asked = this.readySlots().map((s) => ({ slot: s, worker: s.worker }));
    const answers = await Promise.all(
      asked.map(({ slot: s }) =>
        this.send<MetricsJson>(s, 'metrics', (json, id) => this.tookMetrics(s, json, id)).then(
          ({ value, id }) => this.tookMetrics(s, value, id),
          (err: unknown) => {
            this.deps.log.warn({ worker: s.index, err: (err as Error).message, previous: s.lastMetrics !== null }, 'worker metrics late: this scrape uses its previous answer');
            return s.lastMetrics;
          },
        ),
      ),
    );
    // a worker that died while others were still answering is in `retained` now: counting its
    // answer too would count it twice in this scrape (and the next one would look like a reset)
    const out = answers.filter((a, i): a is MetricsJson => a !== null && asked[i]!.slot.worker === asked[i]!.worker);
    if (this.retained.length > 0) out.push(this.retained);
    return out;
  }

  /**
   * Keeps `json` as the slot's newest answer unless a newer one (higher request id) is already
   * kept: a worker may finish an older scrape after a newer one. Returns the answer to use now.
   */
  private tookMetrics(slot: Slot, json: MetricsJson, id: number): MetricsJson | null {
    if (id > slot.lastMetricsId) {
      slot.lastMetrics = json;
      slot.lastMetricsId = id;
    }
    return slot.lastMetrics;
  }

  /** Every ready worker's counters (workers that do not answer in time are left out). */
  async stats(): Promise<WorkerStats[]> {
    const answers = await Promise.all(this.readySlots().map((s) => this.request<WorkerStats>(s, 'stats').catch(() => null)));
    return answers.filter((a): a is WorkerStats => a !== null);
  }

  /** Every ready worker's live connections, for /config_dump (a worker that does not answer in time is left out). */
  async connections(): Promise<ConnectionsDump> {
    const answers = await Promise.all(this.readySlots().map((s) => this.request<ConnectionsDump>(s, 'connections').catch(() => null)));
    const out = { inbound: [] as ConnectionDump[], outbound: [] as ConnectionDump[] };
    for (const a of answers) {
      if (a === null) continue;
      out.inbound.push(...a.inbound);
      out.outbound.push(...a.outbound);
    }
    return out;
  }

  async liveConnections(): Promise<number> {
    return (await this.stats()).reduce((n, s) => n + s.live, 0);
  }

  /**
   * In-pod mode: every worker serves exactly `pods` (a replacement worker gets them at start).
   * Resolves once each running worker has applied them, with each pod's state (podStates()).
   */
  async applyPods(pods: readonly InpodPod[]): Promise<Record<string, PodState>> {
    this.pods = pods;
    const seq = ++this.podSeq;
    this.broadcast({ type: 'pods', seq, pods });
    const applied = (): boolean => this.stopping || this.slots.every((s) => s.worker === null || s.podSeq >= seq);
    // a live but stuck worker must not hold every ZDS ack forever
    const deadlineMs = (this.deps.requestTimeoutMs ?? 2000) * 10;
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<void>((resolve) => (timer = setTimeout(resolve, deadlineMs)));
    await Promise.race([this.until(applied), late]);
    clearTimeout(timer);
    if (!applied()) {
      const slow = this.slots.filter((s) => s.worker !== null && s.podSeq < seq).map((s) => s.index);
      this.deps.log.error({ workers: slow, deadlineMs }, 'proxy workers did not apply the pod set in time; answering with what the others report');
    }
    return this.podStates();
  }

  /** Each pod's state across the running workers: failed in any → failed; else pending in any → pending; else up. */
  podStates(): Record<string, PodState> {
    const rank = { failed: 2, pending: 1, up: 0 } as const;
    const out: Record<string, PodState> = {};
    for (const s of this.slots) {
      if (s.worker === null) continue;
      for (const [uid, st] of Object.entries(s.podStates)) {
        const prev = out[uid];
        if (prev === undefined || rank[st.state] > rank[prev.state]) out[uid] = st;
      }
    }
    return out;
  }

  /** Run-time log level change (POST /logging), applied in every worker too. */
  setLogLevels(level: LogLevelName | null, targets: Readonly<Record<string, LogLevelName>>): void {
    // the same rule as Logging.setLevels: a new default level drops the per-target overrides
    const base = level === null ? this.logLevels : { level, targets: {} };
    this.logLevels = { level: base.level, targets: { ...base.targets, ...targets } };
    this.broadcast({ type: 'log-levels', level, targets: { ...targets } });
  }

  /** Drain: every worker stops accepting; their live connections continue. */
  async drain(): Promise<void> {
    this.stopping = true;
    this.flushWaiters();
    await Promise.all(this.readySlots().map((s) => this.request(s, 'drain').catch(() => undefined)));
  }

  /** Cuts everything and ends every worker thread. Idempotent. */
  async close(): Promise<void> {
    this.stopping = true;
    this.flushWaiters();
    for (const off of this.offs.splice(0)) off();
    if (this.held !== null) {
      this.deps.native.close(this.held);
      this.held = null;
    }
    await Promise.all(
      this.slots.map(async (s) => {
        if (s.restartTimer) clearTimeout(s.restartTimer);
        s.gapDone?.();
        const w = s.worker;
        if (w === null) return;
        if (s.ready) await this.request(s, 'close').catch(() => undefined);
        await w.terminate();
      }),
    );
  }

  /** Test hook: terminates slot `index`'s worker as if it had crashed (it is replaced). */
  async terminateWorker(index: number): Promise<void> {
    const w = this.slots[index]?.worker;
    if (w) await w.terminate();
  }

  private readySlots(): Slot[] {
    return this.slots.filter((s) => s.ready && s.worker !== null);
  }

  private spawn(slot: Slot): void {
    slot.restartTimer = null;
    if (this.stopping) return;
    const worker = new Worker(this.deps.entry ?? WORKER_ENTRY);
    slot.worker = worker;
    slot.ready = false;
    slot.startedAt = Date.now();
    slot.lastError = null;
    const snap = this.deps.store.current;
    const certs = this.deps.certs.states().flatMap((s) => (s.cert ? [s.cert] : []));
    slot.podSeq = 0;
    slot.podStates = {};
    slot.lastMetrics = null;
    // a replacement runs at the levels in force now, not the start-up ones
    const config: Config = { ...this.config, log: { ...this.config.log, level: this.logLevels.level, targets: this.logLevels.targets } };
    const init: MainToWorker = { type: 'init', workerId: slot.index, config, snapshot: snapshotMessage(snap.version, encodeDoc(snap.doc)), certs, certSeq: this.certSeq, limit: this.limit, pods: this.pods, podSeq: this.podSeq };
    worker.on('message', (msg: WorkerToMain) => this.onMessage(slot, msg));
    worker.on('error', (err) => (slot.lastError = err));
    worker.on('exit', (code) => this.onExit(slot, worker, code));
    worker.postMessage(init);
  }

  private onMessage(slot: Slot, msg: WorkerToMain): void {
    switch (msg.type) {
      case 'ready':
        slot.ready = true;
        slot.version = msg.version;
        slot.addresses = msg.addresses;
        slot.gapDone?.();
        slot.gapDone = null;
        this.deps.log.info({ worker: slot.index, addresses: msg.addresses.map(([k, a]) => `${k}=${a.text}`) }, 'proxy worker listening');
        break;
      case 'snapshot-applied':
        slot.version = Math.max(slot.version, msg.version);
        slot.addresses = msg.addresses;
        break;
      case 'pods-applied':
        // an answer about an older set than the newest one this worker reported is stale
        if (msg.seq < slot.podSeq) break;
        slot.podSeq = msg.seq;
        slot.podStates = msg.states;
        if (msg.addresses.length > 0) slot.addresses = msg.addresses;
        break;
      case 'error':
        slot.lastError = new ProxyError(msg.code, msg.message);
        if (msg.fatal && this.fatal) this.fatal(new ProxyError(msg.code, `proxy worker ${slot.index} could not start: ${msg.message}`));
        else this.deps.log.error({ worker: slot.index, code: msg.code, err: msg.message }, 'proxy worker reported an error');
        break;
      case 'reply': {
        const p = slot.pending.get(msg.requestId);
        if (!p) break;
        slot.pending.delete(msg.requestId);
        if (slot.lateRequest === msg.requestId) slot.lateRequest = null;
        clearTimeout(p.timer);
        if (msg.error === null) p.resolve(msg.value);
        else p.reject(new ProxyError('ERR_WORKER_REQUEST', `proxy worker ${slot.index}: ${msg.error}`));
        break;
      }
    }
    this.flushWaiters();
  }

  private onExit(slot: Slot, worker: Worker, code: number): void {
    if (slot.worker !== worker) return;
    slot.worker = null;
    slot.ready = false;
    for (const p of slot.pending.values()) {
      clearTimeout(p.timer);
      p.reject(new ProxyError('ERR_WORKER_EXITED', `proxy worker ${slot.index} exited`));
    }
    slot.pending.clear();
    slot.lateRequest = null;
    // its counters as last scraped live on; anything it counted after that scrape is lost with it
    if (slot.lastMetrics !== null) this.retained = addMetrics(this.retained, cumulativePart(slot.lastMetrics));
    slot.lastMetrics = null;
    // the dead worker's connections are gone with it; it cannot give their places back itself
    if (this.limit !== null) ConnectionLimit.reclaim(this.limit, slot.index);
    this.flushWaiters();
    if (this.stopping) return;
    const err = slot.lastError;
    if (this.fatal) {
      // a worker that cannot start is a start failure of the proxy (e.g. its address is in use), as in
      // main-thread mode; when its own fatal report came first, that one already settled the start
      this.fatal(new ProxyError('ERR_WORKER_EXITED', `proxy worker ${slot.index} exited with code ${code} while starting: ${err?.message ?? 'no error reported'}`));
      return;
    }
    if (Date.now() - slot.startedAt > HEALTHY_AFTER_MS) slot.failures = 0;
    const { initial, max } = this.deps.restartBackoffMs ?? { initial: 100, max: 10_000 };
    const delay = Math.min(max, initial * 2 ** slot.failures);
    slot.failures++;
    slot.gapDone ??= this.deps.readiness.register(`proxy worker ${slot.index}`);
    this.deps.log.error({ worker: slot.index, code, err: err?.stack ?? err?.message ?? null, restartInMs: delay }, 'proxy worker died; replacing it');
    slot.restartTimer = setTimeout(() => this.spawn(slot), delay);
  }

  private onSnapshot(next: Snapshot): void {
    this.broadcast(snapshotMessage(next.version, encodeDoc(next.doc)));
    // identities no local workload uses any more: the main CertManager forgets them, so do the workers
    const now = localIdentities(next);
    for (const [key, identity] of this.known) if (!now.has(key)) this.broadcast({ type: 'forget-cert', identity });
    this.known = now;
  }

  private broadcast(msg: MainToWorker): void {
    for (const s of this.slots) s.worker?.postMessage(msg);
  }

  private request<T>(slot: Slot, what: WorkerRequest): Promise<T> {
    return this.send<T>(slot, what, null).then((r) => r.value);
  }

  /**
   * Sends request `what` to the slot's worker; rejects when it does not answer within the deadline.
   * With `late`, the request stays registered past the deadline and its answer, when it comes, goes
   * to `late`. One such request per slot: a newer one replaces the older (whose answer is older).
   */
  private send<T>(slot: Slot, what: WorkerRequest, late: ((value: T, id: number) => void) | null): Promise<{ value: T; id: number }> {
    const worker = slot.worker;
    if (worker === null) return Promise.reject(new ProxyError('ERR_WORKER_EXITED', `proxy worker ${slot.index} is not running`));
    const requestId = this.nextRequestId++;
    const timeoutMs = this.deps.requestTimeoutMs ?? 2000;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        slot.pending.delete(requestId);
        reject(new ProxyError('ERR_WORKER_TIMEOUT', `proxy worker ${slot.index} did not answer "${what}" within ${timeoutMs} ms`));
        if (late === null) return;
        if (slot.lateRequest !== null) slot.pending.delete(slot.lateRequest);
        slot.lateRequest = requestId;
        slot.pending.set(requestId, { resolve: (v) => late(v as T, requestId), reject: () => undefined, timer: undefined });
      }, timeoutMs);
      slot.pending.set(requestId, { resolve: (v) => resolve({ value: v as T, id: requestId }), reject, timer });
      worker.postMessage({ type: 'request', requestId, what } satisfies MainToWorker);
    });
  }

  /** Resolves when `cond` holds, re-checked on every worker event (no polling timer). */
  private until(cond: () => boolean): Promise<void> {
    if (cond()) return Promise.resolve();
    return new Promise((resolve) => {
      const check = (): void => {
        if (!cond()) return void this.waiters.push(check);
        resolve();
      };
      this.waiters.push(check);
    });
  }

  private flushWaiters(): void {
    for (const w of this.waiters.splice(0)) w();
  }
}
