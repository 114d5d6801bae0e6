/**
 * The main thread's control plane: the snapshot store (with hot reload), the CA and the
 * certificate manager that keeps a leaf for every local workload identity.
 *
 * Invariant: after start() resolves, `store.current` is the last good snapshot and the cert
 * manager has been asked for the identity of every local workload in it; each snapshot swap
 * re-asks (new identities) and forgets identities no local workload uses any more. These are the
 * only identities the manager issues for: a fetch of any other (a non-local SOCKS5 source, say) is
 * refused with ERR_CERT_NOT_LOCAL, so no identity outside this set is ever issued or kept.
 */
import { join } from 'node:path';
import { readFile } from 'node:fs/promises';
import type { Logger } from 'pino';
import type { Config } from './config/config';
import { LocalCa } from './identity/ca';
import { CertManager } from './identity/cert-manager';
import type { CertIssuer } from './identity/workload-cert';
import { formatSpiffe, type Identity } from './identity/spiffe';
import { identityOf } from './proxy/outbound-plan';
import type { Snapshot } from './state/snapshot';
import { SnapshotStore, type PreparedSnapshot } from './state/store';

/** The bundled example snapshot (the embedded default): examples/ beside dist/. */
export const EMBEDDED_SNAPSHOT = join(__dirname, '..', '..', 'examples', 'local-snapshot.yaml');

export interface ControlPlane {
  readonly store: SnapshotStore;
  readonly ca: LocalCa;
  readonly certs: CertManager;
  close(): void;
}

export function localIdentities(snap: Snapshot): Map<string, Identity> {
  const ids = new Map<string, Identity>();
  for (const w of snap.localWorkloads()) {
    const id = identityOf(w);
    ids.set(formatSpiffe(id), id);
  }
  return ids;
}

/** Live stand-ins a test may inject (src/app.ts AppSeams): the issuer wrapped around the CA. */
export interface ControlPlaneSeams {
  readonly wrapIssuer?: (ca: CertIssuer) => CertIssuer;
}

/**
 * `prepared`: the configured snapshot, already built by the proxy's start-up check
 * (src/cli/snapshot-file.ts), adopted as version 1 instead of being parsed again; a file is still
 * watched and reloaded as usual.
 */
export async function startControlPlane(
  config: Config,
  log: { state: Logger; identity: Logger },
  seams: ControlPlaneSeams = {},
  prepared: PreparedSnapshot | null = null,
): Promise<ControlPlane> {
  const store = new SnapshotStore({ nodeName: config.nodeName, trustDomain: config.trustDomain, logger: log.state });
  const expected = config.xds.kind === 'path' ? config.xds.path : config.xds.kind === 'inline' ? 'LOCAL_XDS' : null;
  if (prepared !== null && prepared.source !== expected) {
    // a programming error: a snapshot built from something other than what the config names
    throw new Error(`prepared snapshot from ${prepared.source} does not match the configured ${expected ?? 'bundled example'}`);
  }
  switch (config.xds.kind) {
    case 'path':
      if (prepared !== null) store.adopt(prepared);
      else await store.loadFile(config.xds.path);
      store.watch(config.xds.path);
      break;
    case 'inline':
      if (prepared !== null) store.adopt(prepared);
      else store.loadText(config.xds.text, 'LOCAL_XDS');
      break;
    case 'embedded':
      store.loadText(await readFile(EMBEDDED_SNAPSHOT, 'utf8'), EMBEDDED_SNAPSHOT);
      log.state.info({ path: EMBEDDED_SNAPSHOT }, 'no LOCAL_XDS_PATH or LOCAL_XDS: running the bundled example snapshot');
      break;
  }

  let ca: LocalCa;
  if (config.localCaDir !== null) {
    ca = await LocalCa.load(config.localCaDir);
    log.identity.info({ dir: config.localCaDir, subject: ca.subject, notAfter: ca.notAfter.toISOString() }, 'loaded plug-in CA');
  } else {
    ca = await LocalCa.generate({ organization: config.trustDomain });
    log.identity.warn(
      { subject: ca.subject },
      'no LOCAL_CA_DIR: generated an ephemeral root CA for this process only (proxies on other nodes will not trust it; use `ztunnel-ts ca init DIR` for a shared one)',
    );
  }

  const certs = new CertManager({
    issuer: seams.wrapIssuer ? seams.wrapIssuer(ca) : ca,
    ttlMs: config.secretTtlMs,
    onError: (identity, err, retryAt) =>
      log.identity.error({ identity: formatSpiffe(identity), err: (err as Error).message, retryAt: new Date(retryAt).toISOString() }, 'certificate issuance failed'),
  });
  let known = localIdentities(store.current);
  certs.ensure(known.values());
  const unsubscribe = store.subscribe((next) => {
    const now = localIdentities(next);
    certs.ensure(now.values());
    for (const [key, id] of known) if (!now.has(key)) certs.forget(id);
    known = now;
  });

  return {
    store,
    ca,
    certs,
    close(): void {
      unsubscribe();
      store.close();
      certs.close();
    },
  };
}
