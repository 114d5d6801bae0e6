/**
 * A worker's certificate source: the main thread's CertManager issues and rotates; workers
 * receive each certificate as plain data and serve it. Same get/fetch surface as CertManager.
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
  private readonly waiting = new Map<string, Waiter[]>();

  constructor(private readonly opts: { waitMs: number; now?: () => number }) {}

  private now(): number {
    return (this.opts.now ?? Date.now)();
  }

  /** A newer certificate for its identity (rotation) replaces the older one. */
  put(cert: WorkloadCert): void {
    const key = formatSpiffe(cert.identity);
    const old = this.certs.get(key);
    if (old !== undefined && old.notAfter.getTime() > cert.notAfter.getTime()) return;
    this.certs.set(key, cert);
    if (!isUsableAt(cert, this.now())) return;
    const waiters = this.waiting.get(key);
    this.waiting.delete(key);
    for (const w of waiters ?? []) w.resolve(cert);
  }

  forget(id: Identity): void {
    const key = formatSpiffe(id);
    this.certs.delete(key);
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
