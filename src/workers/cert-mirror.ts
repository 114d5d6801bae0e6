/**
 * A worker's certificate source: the main thread's CertManager issues and rotates; workers
 * receive each certificate as plain data and serve it. Same get/fetch surface as CertManager.
 *
 * Order: every certificate comes with the supervisor's sequence number (one counter, so it grows
 * for each identity); a certificate whose number is not above the last one taken for its identity
 * is ignored. Sequence, not notAfter: a re-issue (a new CA, a shorter TTL) may expire no later
 * than the certificate it replaces and must still win, and a resent old one must never roll back.
 *
 * Invariants: get() never returns a certificate outside its validity window; fetch() waits for
 * the first certificate of an identity at most `waitMs`, then rejects ERR_CERT_UNAVAILABLE
 * (one shared wait list per identity, no timer per caller beyond that deadline).
 */
import { ProxyError } from '../errors';
import { formatSpiffe, type Identity } from '../identity/spiffe';
import { isUsableAt, type WorkloadCert } from '../identity/workload-cert';

interface Waiter {
  resolve(cert: WorkloadCert): void;
  reject(err: Error): void;
}

export class CertMirror {
  private readonly certs = new Map<string, WorkloadCert>();
  /**
   * Highest sequence taken per identity, dropped by forget(): the supervisor's counter only grows
   * and its messages arrive in order, so no message sent before a forget-cert can follow it, and
   * keeping the entry would grow the map by every identity that ever passed through the node.
   */
  private readonly seqs = new Map<string, number>();
  private readonly waiting = new Map<string, Waiter[]>();

  constructor(private readonly opts: { waitMs: number; now?: () => number }) {}

  private now(): number {
    return (this.opts.now ?? Date.now)();
  }

  /**
   * Takes `cert` when `seq` is newer than the last one for its identity (rotation, re-issue);
   * returns false for a message that is not newer (ignored).
   */
  put(cert: WorkloadCert, seq: number): boolean {
    const key = formatSpiffe(cert.identity);
    const last = this.seqs.get(key);
    if (last !== undefined && seq <= last) return false;
    this.seqs.set(key, seq);
    this.certs.set(key, cert);
    if (!isUsableAt(cert, this.now())) return true;
    const waiters = this.waiting.get(key);
    this.waiting.delete(key);
    for (const w of waiters ?? []) w.resolve(cert);
    return true;
  }

  forget(id: Identity): void {
    const key = formatSpiffe(id);
    this.certs.delete(key);
    this.seqs.delete(key);
    const waiters = this.waiting.get(key);
    this.waiting.delete(key);
    for (const w of waiters ?? []) w.reject(new ProxyError('ERR_CERT_UNAVAILABLE', `${key}: the workload left this node`));
  }

  get(id: Identity): WorkloadCert | null {
    const cert = this.certs.get(formatSpiffe(id));
    return cert !== undefined && isUsableAt(cert, this.now()) ? cert : null;
  }

  fetch(id: Identity): Promise<WorkloadCert> {
    const now = this.get(id);
    if (now !== null) return Promise.resolve(now);
    const key = formatSpiffe(id);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        const list = this.waiting.get(key);
        if (list) this.waiting.set(key, list.filter((w) => w !== waiter));
        reject(new ProxyError('ERR_CERT_UNAVAILABLE', `${key}: no certificate from the control plane within ${this.opts.waitMs} ms`));
      }, this.opts.waitMs);
      timer.unref();
      const waiter: Waiter = {
        resolve: (c) => {
          clearTimeout(timer);
          resolve(c);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      };
      const list = this.waiting.get(key) ?? [];
      list.push(waiter);
      this.waiting.set(key, list);
    });
  }
}
