/**
 * LocalCa: a certificate authority inside the proxy that issues workload leaf certificates, in place
 * of istiod's CA. Its material is either Istio's plug-in CA folder (see ca-dir.ts) or an ephemeral
 * self-signed root generated at start-up (the embedded default).
 *
 * Invariants, checked once when the CA is built (each failure has its own ProxyError code):
 * - the signing key matches ca-cert.pem, and ca-cert.pem is a CA (basicConstraints CA:TRUE, and
 *   keyCertSign if key usage is present) that is currently valid;
 * - ca-cert.pem chains (through cert-chain.pem) to a certificate in root-cert.pem, so peers that
 *   trust root-cert.pem accept every leaf this CA issues.
 * Leaves follow Istio's workload certificates: ECDSA P-256 key, empty subject, the SPIFFE URI as the
 * only (critical) SAN, 128-bit random serial, notBefore 2 minutes in the past (Istio's clock-skew
 * grace), notAfter = now + ttl capped at the CA's own expiry, digitalSignature+keyEncipherment,
 * serverAuth+clientAuth, CA:FALSE.
 */
import { createPrivateKey, KeyObject, X509Certificate as NodeX509, type webcrypto as WebCryptoTypes } from 'node:crypto';
import { ProxyError } from '../errors';
import { formatSpiffe, type Identity } from './spiffe';
import { x509, webcrypto } from './x509';
import { CLOCK_SKEW_GRACE_MS, generateRootCa, randomSerialHex, type RootCaOptions } from './ca-root';
import { readCaDir } from './ca-dir';
import type { CertIssuer, WorkloadCert } from './workload-cert';

/** The four PEM texts of an Istio plug-in CA folder. */
export interface CaPem {
  readonly caCertPem: string;
  readonly caKeyPem: string;
  readonly rootCertPem: string;
  readonly certChainPem: string;
}

/** Where the material came from, for messages: a directory path or a label such as "embedded". */
export interface CaOrigin {
  readonly kind: 'dir' | 'embedded';
  readonly where: string;
}

const EC_P256 = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const CERT_RE = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g;

/** Splits a PEM bundle into its certificates; throws ERR_CA_PEM naming `file` if there is none or one is bad. */
export function splitCertsPem(text: string, file: string): { pem: string; cert: NodeX509 }[] {
  const blocks = text.match(CERT_RE) ?? [];
  if (blocks.length === 0) {
    throw new ProxyError('ERR_CA_PEM', `${file}: no PEM "CERTIFICATE" block found`);
  }
  return blocks.map((pem, i) => {
    try {
      return { pem: pem + '\n', cert: new NodeX509(pem) };
    } catch (err) {
      throw new ProxyError('ERR_CA_PEM', `${file}: certificate #${i + 1} cannot be parsed: ${(err as Error).message}`, {
        cause: err,
      });
    }
  });
}

interface SigningAlg {
  readonly importAlg: WebCryptoTypes.EcKeyImportParams | WebCryptoTypes.RsaHashedImportParams;
  readonly signAlg: { name: string; hash?: string };
}

/** WebCrypto parameters for the CA key; Istio plug-in CAs are usually RSA, generated ones are EC. */
function signingAlgFor(key: KeyObject, file: string): SigningAlg {
  if (key.asymmetricKeyType === 'ec') {
    const curve = key.asymmetricKeyDetails?.namedCurve;
    const table: Record<string, [string, string]> = {
      prime256v1: ['P-256', 'SHA-256'],
      secp384r1: ['P-384', 'SHA-384'],
      secp521r1: ['P-521', 'SHA-512'],
    };
    const found = curve !== undefined ? table[curve] : undefined;
    if (found) {
      return { importAlg: { name: 'ECDSA', namedCurve: found[0] }, signAlg: { name: 'ECDSA', hash: found[1] } };
    }
  } else if (key.asymmetricKeyType === 'rsa') {
    return {
      importAlg: { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' },
      signAlg: { name: 'RSASSA-PKCS1-v1_5' },
    };
  }
  const detail = key.asymmetricKeyDetails?.namedCurve ? ` (${key.asymmetricKeyDetails.namedCurve})` : '';
  throw new ProxyError(
    'ERR_CA_KEY_UNSUPPORTED',
    `${file}: key type ${key.asymmetricKeyType ?? 'unknown'}${detail} is not supported; use RSA or ECDSA P-256/P-384/P-521`,
  );
}

/** Finds a path ca-cert → (cert-chain)* → a root; returns false when there is none. */
function chainsToRoot(ca: NodeX509, chain: NodeX509[], roots: NodeX509[]): boolean {
  const issuedBy = (child: NodeX509, parent: NodeX509): boolean =>
    child.checkIssued(parent) && child.verify(parent.publicKey);
  let cur = ca;
  // Each step moves to a different chain certificate, so chain.length + 1 steps bound the walk.
  for (let step = 0; step <= chain.length; step++) {
    if (roots.some((r) => r.fingerprint256 === cur.fingerprint256 || issuedBy(cur, r))) return true;
    const next = chain.find((c) => c.fingerprint256 !== cur.fingerprint256 && issuedBy(cur, c));
    if (!next) return false;
    cur = next;
  }
  return false;
}

export class LocalCa implements CertIssuer {
  private constructor(
    readonly origin: CaOrigin,
    /** ca-cert.pem, parsed by @peculiar/x509 so the issuer name is copied byte for byte into leaves. */
    private readonly caCert: x509.X509Certificate,
    private readonly signingKey: WebCryptoTypes.CryptoKey,
    private readonly signAlg: SigningAlg['signAlg'],
    private readonly authorityKeyId: x509.Extension,
    /** Sent after each leaf: ca-cert first, then the rest of cert-chain.pem. */
    readonly chainPem: readonly string[],
    /** Trust anchors (root-cert.pem). */
    readonly rootsPem: readonly string[],
    /** No leaf outlives this: the earliest expiry of ca-cert and its chain. */
    readonly notAfter: Date,
  ) {}

  /** Loads Istio's plug-in CA folder (ca-cert.pem, ca-key.pem, root-cert.pem, cert-chain.pem). */
  static async load(dir: string, now: number = Date.now()): Promise<LocalCa> {
    const pem = await readCaDir(dir);
    return LocalCa.fromPem(pem, { kind: 'dir', where: dir }, now);
  }

  /** The embedded default: an ephemeral self-signed ECDSA P-256 root, valid for this process only. */
  static async generate(opts: RootCaOptions = {}): Promise<LocalCa> {
    const root = await generateRootCa(opts);
    const pem: CaPem = { caCertPem: root.certPem, caKeyPem: root.keyPem, rootCertPem: root.certPem, certChainPem: root.certPem };
    return LocalCa.fromPem(pem, { kind: 'embedded', where: 'embedded self-signed root' }, opts.now ?? Date.now());
  }

  /** Validates the four PEM texts (see the invariants above) and builds the CA. */
  static async fromPem(pem: CaPem, origin: CaOrigin, now: number = Date.now()): Promise<LocalCa> {
    const file = (name: string): string => (origin.kind === 'dir' ? `${origin.where}/${name}` : `${origin.where} ${name}`);
    const [ca] = splitCertsPem(pem.caCertPem, file('ca-cert.pem'));
    if (!ca) throw new ProxyError('ERR_CA_PEM', `${file('ca-cert.pem')}: no certificate`);
    const chain = splitCertsPem(pem.certChainPem, file('cert-chain.pem'));
    const roots = splitCertsPem(pem.rootCertPem, file('root-cert.pem'));

    let key: KeyObject;
    try {
      key = createPrivateKey(pem.caKeyPem);
    } catch (err) {
      throw new ProxyError('ERR_CA_PEM', `${file('ca-key.pem')}: private key cannot be parsed: ${(err as Error).message}`, {
        cause: err,
      });
    }
    const alg = signingAlgFor(key, file('ca-key.pem'));
    if (!ca.cert.checkPrivateKey(key)) {
      throw new ProxyError('ERR_CA_KEY_MISMATCH', `${file('ca-key.pem')} is not the private key of ${file('ca-cert.pem')}`);
    }
    const caX = new x509.X509Certificate(ca.pem);
    if (caX.getExtension(x509.BasicConstraintsExtension)?.ca !== true) {
      throw new ProxyError('ERR_CA_NOT_CA', `${file('ca-cert.pem')} is not a CA certificate (basicConstraints CA:TRUE missing)`);
    }
    const ku = caX.getExtension(x509.KeyUsagesExtension);
    if (ku && (ku.usages & x509.KeyUsageFlags.keyCertSign) === 0) {
      throw new ProxyError('ERR_CA_NOT_CA', `${file('ca-cert.pem')}: key usage does not allow keyCertSign`);
    }
    const validFrom = Date.parse(ca.cert.validFrom);
    const validTo = Date.parse(ca.cert.validTo);
    if (now > validTo) {
      throw new ProxyError('ERR_CA_EXPIRED', `${file('ca-cert.pem')} expired at ${new Date(validTo).toISOString()}`);
    }
    if (now < validFrom) {
      throw new ProxyError(
        'ERR_CA_NOT_YET_VALID',
        `${file('ca-cert.pem')} is not valid before ${new Date(validFrom).toISOString()} (check the clock)`,
      );
    }
    if (!chainsToRoot(ca.cert, chain.map((c) => c.cert), roots.map((r) => r.cert))) {
      throw new ProxyError(
        'ERR_CA_CHAIN',
        `${file('ca-cert.pem')} does not chain to any certificate in ${file('root-cert.pem')} (through ${file('cert-chain.pem')})`,
      );
    }

    // Istio sends cert-chain.pem after the leaf, and that file starts with ca-cert.pem; tolerate one that does not.
    const chainPem = chain.map((c) => c.pem);
    if (chain[0]?.cert.fingerprint256 !== ca.cert.fingerprint256) chainPem.unshift(ca.pem);
    let notAfter = validTo;
    for (const [i, c] of chain.entries()) {
      const to = Date.parse(c.cert.validTo);
      if (now > to) {
        throw new ProxyError(
          'ERR_CA_EXPIRED',
          `${file('cert-chain.pem')}: certificate #${i + 1} (${c.cert.subject.replace(/\n/g, ', ')}) expired at ${new Date(to).toISOString()}`,
        );
      }
      notAfter = Math.min(notAfter, to);
    }

    const pkcs8 = key.export({ type: 'pkcs8', format: 'der' });
    const signingKey = await webcrypto.subtle.importKey('pkcs8', pkcs8, alg.importAlg, false, ['sign']);
    const ski = caX.getExtension(x509.SubjectKeyIdentifierExtension);
    const authorityKeyId = ski
      ? new x509.AuthorityKeyIdentifierExtension(ski.keyId)
      : await x509.AuthorityKeyIdentifierExtension.create(await caX.publicKey.export());
    return new LocalCa(
      origin,
      caX,
      signingKey,
      alg.signAlg,
      authorityKeyId,
      Object.freeze(chainPem),
      Object.freeze(roots.map((r) => r.pem)),
      new Date(notAfter),
    );
  }

  /** ca-cert.pem's subject, for the start-up log line. */
  get subject(): string {
    return this.caCert.subject;
  }

  /** Issues a leaf for `identity` valid from now−2 min to min(now+ttl, CA expiry). */
  async sign(identity: Identity, ttlMs: number, now: number = Date.now()): Promise<WorkloadCert> {
    if (!(Number.isFinite(ttlMs) && ttlMs > 0)) {
      throw new ProxyError('ERR_CA_TTL', `certificate TTL must be a positive number of milliseconds, got ${ttlMs}`);
    }
    if (now >= this.notAfter.getTime()) {
      throw new ProxyError('ERR_CA_EXPIRED', `the CA (${this.origin.where}) expired at ${this.notAfter.toISOString()}`);
    }
    const uri = formatSpiffe(identity);
    const keys = (await webcrypto.subtle.generateKey(EC_P256, true, ['sign', 'verify'])) as WebCryptoTypes.CryptoKeyPair;
    const leaf = await x509.X509CertificateGenerator.create({
      serialNumber: randomSerialHex(),
      // Empty subject like Istio's workload certs; RFC 5280 then requires the SAN to be critical.
      issuer: this.caCert.subjectName,
      notBefore: new Date(now - CLOCK_SKEW_GRACE_MS),
      notAfter: new Date(Math.min(now + ttlMs, this.notAfter.getTime())),
      publicKey: keys.publicKey,
      signingKey: this.signingKey,
      signingAlgorithm: this.signAlg as WebCryptoTypes.Algorithm,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
        this.authorityKeyId,
        new x509.SubjectAlternativeNameExtension([{ type: 'url', value: uri }], true),
      ],
    });
    return {
      identity: { trustDomain: identity.trustDomain, namespace: identity.namespace, serviceAccount: identity.serviceAccount },
      certPem: leaf.toString('pem') + '\n',
      keyPem: KeyObject.from(keys.privateKey).export({ type: 'pkcs8', format: 'pem' }) as string,
      chainPem: this.chainPem,
      rootsPem: this.rootsPem,
      serial: leaf.serialNumber.toLowerCase(),
      notBefore: leaf.notBefore,
      notAfter: leaf.notAfter,
    };
  }
}
