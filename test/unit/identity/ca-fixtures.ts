/**
 * Test-only certificate factory: roots, intermediates and deliberately broken CA material, built
 * with @peculiar/x509 so CA-loading tests need no openssl binary.
 */
import { KeyObject, type webcrypto as WebCryptoTypes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { x509, webcrypto } from '../../../src/identity/x509';

export interface TestCert {
  readonly certPem: string;
  readonly keyPem: string;
  readonly cert: x509.X509Certificate;
  readonly keys: WebCryptoTypes.CryptoKeyPair;
}

export interface MakeCertOptions {
  readonly name: string;
  readonly issuer?: TestCert;
  readonly ca?: boolean;
  readonly notBefore?: Date;
  readonly notAfter?: Date;
  readonly keyAlg?: 'ec' | 'ec384' | 'rsa' | 'ed25519';
  readonly keyUsage?: number;
  /** Add a subjectKeyIdentifier (default true). */
  readonly ski?: boolean;
}

const HOUR = 3600_000;

async function genKeys(alg: MakeCertOptions['keyAlg']): Promise<WebCryptoTypes.CryptoKeyPair> {
  switch (alg) {
    case 'rsa':
      return (await webcrypto.subtle.generateKey(
        { name: 'RSASSA-PKCS1-v1_5', modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]), hash: 'SHA-256' },
        true,
        ['sign', 'verify'],
      )) as WebCryptoTypes.CryptoKeyPair;
    case 'ec384':
      return (await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-384' }, true, ['sign', 'verify'])) as WebCryptoTypes.CryptoKeyPair;
    case 'ed25519':
      return (await webcrypto.subtle.generateKey({ name: 'Ed25519' }, true, ['sign', 'verify'])) as WebCryptoTypes.CryptoKeyPair;
    default:
      return (await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify'])) as WebCryptoTypes.CryptoKeyPair;
  }
}

function sigAlg(keys: WebCryptoTypes.CryptoKeyPair): WebCryptoTypes.Algorithm {
  const name = keys.privateKey.algorithm.name;
  if (name === 'ECDSA') {
    const curve = (keys.privateKey.algorithm as WebCryptoTypes.EcKeyAlgorithm).namedCurve;
    return { name, hash: curve === 'P-384' ? 'SHA-384' : 'SHA-256' } as WebCryptoTypes.Algorithm;
  }
  return { name } as WebCryptoTypes.Algorithm;
}

export async function makeCert(o: MakeCertOptions): Promise<TestCert> {
  const keys = await genKeys(o.keyAlg);
  const now = Date.now();
  const isCa = o.ca ?? true;
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(isCa, undefined, true),
    new x509.KeyUsagesExtension(
      o.keyUsage ?? (isCa ? x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign : x509.KeyUsageFlags.digitalSignature),
      true,
    ),
  ];
  if (o.ski !== false) extensions.push(await x509.SubjectKeyIdentifierExtension.create(keys.publicKey));
  const signer = o.issuer ?? null;
  const cert = await x509.X509CertificateGenerator.create({
    subject: o.name,
    issuer: signer ? signer.cert.subjectName : o.name,
    notBefore: o.notBefore ?? new Date(now - HOUR),
    notAfter: o.notAfter ?? new Date(now + 24 * HOUR),
    publicKey: keys.publicKey,
    signingKey: signer ? signer.keys.privateKey : keys.privateKey,
    signingAlgorithm: sigAlg(signer ? signer.keys : keys),
    extensions,
  });
  return {
    certPem: cert.toString('pem') + '\n',
    keyPem: KeyObject.from(keys.privateKey).export({ type: 'pkcs8', format: 'pem' }) as string,
    cert,
    keys,
  };
}

export interface CaFolder {
  caCert: string;
  caKey: string;
  rootCert: string;
  certChain: string;
}

/** Writes a CA folder into a fresh temp dir; `keyMode` applies to ca-key.pem. Returns the dir. */
export async function writeCaFolder(files: Partial<CaFolder>, keyMode = 0o600): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ztunnel-ts-ca-'));
  const names: [keyof CaFolder, string][] = [
    ['caCert', 'ca-cert.pem'],
    ['caKey', 'ca-key.pem'],
    ['rootCert', 'root-cert.pem'],
    ['certChain', 'cert-chain.pem'],
  ];
  for (const [k, name] of names) {
    const text = files[k];
    if (text === undefined) continue;
    await fs.writeFile(path.join(dir, name), text, { mode: 0o600 });
  }
  if (files.caKey !== undefined) await fs.chmod(path.join(dir, 'ca-key.pem'), keyMode);
  return dir;
}

export async function removeDir(dir: string): Promise<void> {
  await fs.rm(dir, { recursive: true, force: true });
}
