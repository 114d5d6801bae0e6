/**
 * Istio's plug-in CA folder ("cacerts"): reading it for LocalCa.load, and creating a new one for
 * `ztunnel-ts ca init DIR`.
 *
 * The signing key is the most sensitive file the proxy touches, so a key that every local user can
 * read is refused outright. Group-readable (0640/0440) is accepted: Kubernetes Secret volumes with
 * fsGroup produce exactly that.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { X509Certificate as NodeX509 } from 'node:crypto';
import { ProxyError } from '../errors';
import { generateRootCa, type RootCaOptions } from './ca-root';
import type { CaPem } from './ca';

export const CA_FILES = Object.freeze({
  caCert: 'ca-cert.pem',
  caKey: 'ca-key.pem',
  rootCert: 'root-cert.pem',
  certChain: 'cert-chain.pem',
});

const WORLD_READABLE = 0o004;

function isNotFound(err: unknown): boolean {
  return (err as NodeJS.ErrnoException | undefined)?.code === 'ENOENT';
}

/** Reads the four files; refuses a world-readable ca-key.pem. Contents are validated by LocalCa.fromPem. */
export async function readCaDir(dir: string): Promise<CaPem> {
  try {
    const st = await fs.stat(dir);
    if (!st.isDirectory()) throw new ProxyError('ERR_CA_FILE_MISSING', `CA directory ${dir} is not a directory`);
  } catch (err) {
    if (isNotFound(err)) throw new ProxyError('ERR_CA_FILE_MISSING', `CA directory ${dir} does not exist`, { cause: err });
    throw err instanceof ProxyError ? err : new ProxyError('ERR_CA_FILE_READ', `cannot read CA directory ${dir}: ${(err as Error).message}`, { cause: err });
  }

  const names = [CA_FILES.caCert, CA_FILES.caKey, CA_FILES.rootCert, CA_FILES.certChain];
  const texts = new Map<string, string>();
  const missing: string[] = [];
  for (const name of names) {
    const file = path.join(dir, name);
    try {
      texts.set(name, await fs.readFile(file, 'utf8'));
    } catch (err) {
      if (isNotFound(err)) missing.push(name);
      else throw new ProxyError('ERR_CA_FILE_READ', `cannot read ${file}: ${(err as Error).message}`, { cause: err });
    }
  }
  if (missing.length > 0) {
    throw new ProxyError(
      'ERR_CA_FILE_MISSING',
      `CA directory ${dir} lacks ${missing.join(', ')} (an Istio plug-in CA folder holds ${names.join(', ')})`,
    );
  }

  const keyFile = path.join(dir, CA_FILES.caKey);
  // stat follows symlinks: Kubernetes Secret volumes link ca-key.pem → ..data/ca-key.pem.
  const mode = (await fs.stat(keyFile)).mode & 0o777;
  if ((mode & WORLD_READABLE) !== 0) {
    throw new ProxyError(
      'ERR_CA_KEY_PERMISSIONS',
      `${keyFile} is readable by every user (mode 0${mode.toString(8)}); restrict it to 0600/0640 ` +
        `(for a Kubernetes Secret volume set defaultMode 0400 or 0440)`,
    );
  }
  return {
    caCertPem: texts.get(CA_FILES.caCert)!,
    caKeyPem: texts.get(CA_FILES.caKey)!,
    rootCertPem: texts.get(CA_FILES.rootCert)!,
    certChainPem: texts.get(CA_FILES.certChain)!,
  };
}

export interface InitCaResult {
  readonly dir: string;
  /** Absolute paths of the files written. */
  readonly files: readonly string[];
  readonly subject: string;
  readonly notAfter: Date;
}

/**
 * Writes a new self-signed root as a plug-in CA folder: ca-cert.pem = root-cert.pem = cert-chain.pem
 * (a root signs leaves directly), ca-key.pem. Files are 0600; the directory is created 0700 when
 * missing (an existing directory keeps its mode). Refuses to overwrite an existing ca-key.pem, so a
 * slip of the command line cannot destroy a CA that workloads already trust.
 */
export async function initCaDir(dir: string, opts: RootCaOptions = {}): Promise<InitCaResult> {
  const abs = path.resolve(dir);
  const keyFile = path.join(abs, CA_FILES.caKey);
  await fs.mkdir(abs, { recursive: true, mode: 0o700 });
  const root = await generateRootCa(opts);
  // 'wx' makes the refusal atomic: if ca-key.pem appeared meanwhile, nothing is overwritten.
  try {
    await fs.writeFile(keyFile, root.keyPem, { mode: 0o600, flag: 'wx' });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
      throw new ProxyError('ERR_CA_EXISTS', `${keyFile} already exists; refusing to overwrite a CA key (remove it first)`, {
        cause: err,
      });
    }
    throw new ProxyError('ERR_CA_FILE_WRITE', `cannot write ${keyFile}: ${(err as Error).message}`, { cause: err });
  }
  const files = [keyFile];
  for (const name of [CA_FILES.caCert, CA_FILES.rootCert, CA_FILES.certChain]) {
    const file = path.join(abs, name);
    try {
      await fs.writeFile(file, root.certPem, { mode: 0o600 });
      await fs.chmod(file, 0o600); // writeFile's mode only applies when it creates the file
    } catch (err) {
      throw new ProxyError('ERR_CA_FILE_WRITE', `cannot write ${file}: ${(err as Error).message}`, { cause: err });
    }
    files.push(file);
  }
  await fs.chmod(keyFile, 0o600); // the umask may have cleared bits, never added; make the mode exact
  const cert = new NodeX509(root.certPem);
  return { dir: abs, files, subject: cert.subject.replace(/\n/g, ', '), notAfter: new Date(cert.validTo) };
}
