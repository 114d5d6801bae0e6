/**
 * CertManager: one leaf certificate per workload identity, issued ahead of need and rotated at
 * half-life, like ztunnel's SecretManager in front of istiod's CA.
 *
 * Invariants:
 * - get() only ever returns a certificate valid at now() (never expired, never not-yet-valid);
 *   callers call get() for each new connection, so a rotation reaches new connections at once and
 *   never disturbs connections already established.
 * - A failed issuance keeps the previous certificate (until it expires) and is retried with
 *   exponential backoff (1 s doubling up to 60 s, ztunnel's retry delay).
 * - At most `concurrency` issuances run at once; each identity has at most one in flight.
 * - One coarse, unref'd interval timer drives all rotations and retries (not one timer per cert).
 * - Results for an identity that was forgotten meanwhile are dropped.
 * - Only identities handed to ensure() are ever issued: the control plane hands it exactly the
 *   identities of this node's workloads (and forgets those that leave), so fetch() of any other
 *   identity is refused (ERR_CERT_NOT_LOCAL) and starts nothing — a connection can never make the
 *   node mint, or keep rotating, a certificate for another node's workload.
 */
import { ProxyError } from '../errors';
import { formatSpiffe, type Identity } from './spiffe';
import { isUsableAt, type CertIssuer, type WorkloadCert } from './workload-cert';

export type CertStateName = 'Initializing' | 'Available' | 'Unavailable';

/** One row of the admin page's `certificates` list. */
export interface CertStatus {
  readonly identity: Identity;
  /** The SPIFFE URI. */
  readonly id: string;
  readonly state: CertStateName;
  /** Why the state is Unavailable; null otherwise. */
  readonly reason: string | null;
  /** The latest issued certificate even if no longer usable (for diagnosis); null before the first. */
  readonly cert: WorkloadCert | null;
  /** When the next issuance (rotation or retry) is due; null while one is in flight. */
  readonly refreshAt: Date | null;
}

export interface CertManagerOptions {
  readonly issuer: CertIssuer;
  /** Leaf validity; Istio's default is 24 h. */
  readonly ttlMs: number;
  /** Clock in ms since epoch; tests inject one to drive time. Default Date.now. */
  readonly now?: () => number;
  /** Period of the shared timer; 0 disables it (tests then call tick()). Default 1000. */
  readonly tickMs?: number;
  readonly retryInitialMs?: number;
  readonly retryMaxMs?: number;
  /** Issuances in flight at once. Default 8. */
  readonly concurrency?: number;
  /** Told about each failed issuance (for logging); `retryAt` is when the next attempt is due. */
  readonly onError?: (identity: Identity, err: unknown, retryAt: Date) => void;
}

export const DEFAULT_CERT_TTL_MS = 24 * 3600 * 1000;

interface Waiter {
  resolve(cert: WorkloadCert): void;
  reject(err: Error): void;
}

interface Entry {
  readonly identity: Identity;
  readonly key: string;
  current: WorkloadCert | null;
  inFlight: boolean;
  failures: number;
  lastError: string | null;
  /** When to issue next (ms); 0 = as soon as a slot is free. */
  dueAt: number;
  waiters: Waiter[];
}

export class CertManager {
  private readonly entries = new Map<string, Entry>();
  private readonly listeners = new Set<(cert: WorkloadCert) => void>();
  private readonly inFlight = new Set<Promise<void>>();
  private readonly now: () => number;
  private readonly timer: NodeJS.Timeout | null;
  private readonly retryInitialMs: number;
  private readonly retryMaxMs: number;
  private readonly concurrency: number;
  private closed = false;

  constructor(private readonly opts: CertManagerOptions) {
    if (!(opts.ttlMs > 0)) throw new ProxyError('ERR_CERT_TTL', `certificate TTL must be positive, got ${opts.ttlMs}`);
    this.now = opts.now ?? Date.now;
    this.retryInitialMs = opts.retryInitialMs ?? 1000;
    this.retryMaxMs = opts.retryMaxMs ?? 60_000;
    this.concurrency = Math.max(1, opts.concurrency ?? 8);
    const tickMs = opts.tickMs ?? 1000;
    this.timer = tickMs > 0 ? setInterval(() => this.tick(), tickMs) : null;
    this.timer?.unref();
  }

  /** Starts managing these identities (issuing in the background); known ones are left alone. */
  ensure(ids: Iterable<Identity>): void {
    if (this.closed) return;
    for (const identity of ids) {
      const key = formatSpiffe(identity);
      if (this.entries.has(key)) continue;
      this.entries.set(key, {
        identity: { trustDomain: identity.trustDomain, namespace: identity.namespace, serviceAccount: identity.serviceAccount },
        key,
        current: null,
        inFlight: false,
        failures: 0,
        lastError: null,
        dueAt: 0,
        waiters: [],
      });
    }
    this.pump();
  }

  /** The certificate to use for a new connection now, or null if none is valid at this instant. */
  get(id: Identity): WorkloadCert | null {
    const cur = this.entries.get(formatSpiffe(id))?.current;
    return cur && isUsableAt(cur, this.now()) ? cur : null;
  }

  /**
   * Like get(), but when no usable certificate exists it waits for the next issuance; rejects with
   * ERR_CERT_UNAVAILABLE if that attempt fails or the identity is forgotten, and with
   * ERR_CERT_NOT_LOCAL (issuing nothing) if the identity is not managed (see the invariants).
   */
  fetch(id: Identity): Promise<WorkloadCert> {
    if (this.closed) return Promise.reject(new ProxyError('ERR_CERT_UNAVAILABLE', 'certificate manager is closed'));
    let key: string;
    try {
      key = formatSpiffe(id);
    } catch (err) {
      return Promise.reject(err);
    }
    const entry = this.entries.get(key);
    if (entry === undefined) {
      return Promise.reject(
        new ProxyError('ERR_CERT_NOT_LOCAL', `no workload of this node has the identity ${key}: refusing to issue a certificate for it`),
      );
    }
    const ready = entry.current;
    if (ready && isUsableAt(ready, this.now())) return Promise.resolve(ready);
    if (!entry.inFlight && entry.lastError !== null) {
      // Like ztunnel: an identity whose last attempt failed answers with that failure at once;
      // the backoff timer, not connection attempts, decides when to try again.
      return Promise.reject(new ProxyError('ERR_CERT_UNAVAILABLE', `no certificate for ${entry.key}: ${entry.lastError}`));
    }
    return new Promise((resolve, reject) => {
      entry.waiters.push({ resolve, reject });
      if (!entry.inFlight) {
        entry.dueAt = 0; // e.g. the current cert is not valid yet (clock moved back): issue now
        this.pump();
      }
    });
  }

  /** Called on every issuance and rotation with the new certificate. Returns an unsubscribe function. */
  subscribe(fn: (cert: WorkloadCert) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** Stops managing an identity (its workload left); an issuance in flight is discarded. */
  forget(id: Identity): void {
    const key = formatSpiffe(id);
    const entry = this.entries.get(key);
    if (!entry) return;
    this.entries.delete(key);
    this.failWaiters(entry, `identity ${key} is no longer managed`);
  }

  /** States for the admin page, sorted by SPIFFE id. */
  states(): CertStatus[] {
    const now = this.now();
    const out: CertStatus[] = [];
    for (const e of this.entries.values()) {
      const cur = e.current;
      let state: CertStateName;
      let reason: string | null = null;
      if (cur && isUsableAt(cur, now)) state = 'Available';
      else if (e.lastError !== null) [state, reason] = ['Unavailable', e.lastError];
      else if (cur && now > cur.notAfter.getTime()) [state, reason] = ['Unavailable', `certificate expired at ${cur.notAfter.toISOString()}`];
      else if (cur) [state, reason] = ['Unavailable', `certificate not valid before ${cur.notBefore.toISOString()}`];
      else state = 'Initializing';
      out.push({ identity: e.identity, id: e.key, state, reason, cert: cur, refreshAt: e.inFlight ? null : new Date(e.dueAt) });
    }
    return out.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  /** Starts every issuance that is due. The shared timer calls this; tests call it after moving the clock. */
  tick(): void {
    this.pump();
  }

  /** Resolves once no issuance is in flight (tests, and orderly shutdown). Bounded: 1000 rounds. */
  async settled(): Promise<void> {
    for (let round = 0; round < 1000 && this.inFlight.size > 0; round++) {
      await Promise.allSettled([...this.inFlight]);
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    for (const e of this.entries.values()) this.failWaiters(e, 'certificate manager closed');
    this.entries.clear();
    this.listeners.clear();
  }

  private pump(): void {
    if (this.closed) return;
    const now = this.now();
    for (const e of this.entries.values()) {
      if (this.inFlight.size >= this.concurrency) return;
      if (!e.inFlight && e.dueAt <= now) this.issue(e);
    }
  }

  private issue(e: Entry): void {
    e.inFlight = true;
    const p = this.opts.issuer
      .sign(e.identity, this.opts.ttlMs, this.now())
      .then(
        (cert) => this.onIssued(e, cert),
        (err: unknown) => this.onFailed(e, err),
      )
      .finally(() => {
        this.inFlight.delete(p);
        this.pump();
      });
    this.inFlight.add(p);
  }

  private onIssued(e: Entry, cert: WorkloadCert): void {
    e.inFlight = false;
    if (this.entries.get(e.key) !== e) return; // forgotten (or closed) meanwhile
    const start = cert.notBefore.getTime();
    const end = cert.notAfter.getTime();
    e.current = cert;
    e.failures = 0;
    e.lastError = null;
    const now = this.now();
    // Half-life, as Istio/ztunnel refresh; at least 1 ms ahead so a degenerate cert cannot spin pump().
    e.dueAt = Math.max(start + (end - start) / 2, now + 1);
    const waiters = e.waiters.splice(0);
    const usable = isUsableAt(cert, now);
    for (const w of waiters) {
      if (usable) w.resolve(cert);
      else w.reject(new ProxyError('ERR_CERT_UNAVAILABLE', `the certificate issued for ${e.key} is not valid now`));
    }
    for (const fn of [...this.listeners]) {
      try {
        fn(cert);
      } catch (err) {
        this.opts.onError?.(e.identity, err, new Date(e.dueAt));
      }
    }
  }

  private onFailed(e: Entry, err: unknown): void {
    e.inFlight = false;
    if (this.entries.get(e.key) !== e) return;
    e.failures++;
    e.lastError = err instanceof Error ? err.message : String(err);
    const delay = Math.min(this.retryMaxMs, this.retryInitialMs * 2 ** Math.min(e.failures - 1, 30));
    e.dueAt = this.now() + delay;
    this.failWaiters(e, `issuing a certificate for ${e.key} failed: ${e.lastError}`, err);
    this.opts.onError?.(e.identity, err, new Date(e.dueAt));
  }

  private failWaiters(e: Entry, message: string, cause?: unknown): void {
    const waiters = e.waiters.splice(0);
    for (const w of waiters) w.reject(new ProxyError('ERR_CERT_UNAVAILABLE', message, { cause }));
  }
}
