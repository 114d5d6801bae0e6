/**
 * WorkloadCert: one issued leaf certificate for one SPIFFE identity, as plain data (strings and
 * Dates) so it can be posted to worker threads (structured clone) and logged/dumped by the admin page.
 */
import type { Identity } from './spiffe';

export interface WorkloadCert {
  readonly identity: Identity;
  /** The leaf certificate (PEM). Its only SAN is the identity's SPIFFE URI. */
  readonly certPem: string;
  /** The leaf's private key, PKCS#8 PEM (ECDSA P-256). */
  readonly keyPem: string;
  /** Certificates sent after the leaf: the issuing CA first, then up towards the root (PEM each). */
  readonly chainPem: readonly string[];
  /** Trust anchors used to verify peers (PEM each). */
  readonly rootsPem: readonly string[];
  /** Serial number, lower-case hex without separators; unique per issued certificate. */
  readonly serial: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
}

/** A source of leaf certificates: the local CA, or in tests a fake. */
export interface CertIssuer {
  sign(identity: Identity, ttlMs: number, now?: number): Promise<WorkloadCert>;
}

/** True when `now` lies inside the certificate's validity window (inclusive, as X.509 defines it). */
export function isUsableAt(cert: WorkloadCert, now: number): boolean {
  return cert.notBefore.getTime() <= now && now <= cert.notAfter.getTime();
}
