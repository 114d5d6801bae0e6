/**
 * Generates a self-signed ECDSA P-256 root CA certificate and key (PEM). Used for the embedded
 * ephemeral CA (LocalCa.generate) and by `ztunnel-ts ca init DIR` (initCaDir).
 */
import { KeyObject, randomBytes } from 'node:crypto';
import { x509, webcrypto } from './x509';

export interface RootCaOptions {
  /** Start of validity, ms since epoch; defaults to the current time. */
  readonly now?: number;
  /** Validity; Istio's self-signed root defaults to 10 years. */
  readonly ttlMs?: number;
  /** Subject O=; Istio's self-signed root uses the trust domain's organisation. */
  readonly organization?: string;
  readonly commonName?: string;
}

export interface RootCaPem {
  readonly certPem: string;
  /** PKCS#8 PEM. */
  readonly keyPem: string;
}

export const DEFAULT_ROOT_TTL_MS = 10 * 365 * 24 * 3600 * 1000;
/** Same grace Istio applies to issued certificates, so a root made "now" is valid on slightly slow peers. */
export const CLOCK_SKEW_GRACE_MS = 2 * 60 * 1000;

const EC_P256 = { name: 'ECDSA', namedCurve: 'P-256' } as const;

/** Random positive serial: 16 bytes like Istio's 128-bit serials, top bit cleared so DER keeps it positive. */
export function randomSerialHex(): string {
  const b = randomBytes(16);
  b[0] = (b[0]! & 0x7f) | 0x01; // positive and without a leading zero byte
  return b.toString('hex');
}

/** Escapes a value for an RFC 4514 string DN as @peculiar/x509 parses it. */
function dnValue(v: string): string {
  return v.replace(/([\\,+"<>;=#])/g, '\\$1');
}

export async function generateRootCa(opts: RootCaOptions = {}): Promise<RootCaPem> {
  const now = opts.now ?? Date.now();
  const ttlMs = opts.ttlMs ?? DEFAULT_ROOT_TTL_MS;
  const keys = (await webcrypto.subtle.generateKey(EC_P256, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const name = `O=${dnValue(opts.organization ?? 'cluster.local')}, CN=${dnValue(opts.commonName ?? 'ztunnel-ts root CA')}`;
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerialHex(),
    name,
    notBefore: new Date(now - CLOCK_SKEW_GRACE_MS),
    notAfter: new Date(now + ttlMs),
    keys,
    signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' } as webcrypto.EcdsaParams,
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(
        x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign | x509.KeyUsageFlags.digitalSignature,
        true,
      ),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  const keyPem = KeyObject.from(keys.privateKey).export({ type: 'pkcs8', format: 'pem' }) as string;
  return { certPem: cert.toString('pem') + '\n', keyPem };
}
