import { readFile } from 'node:fs/promises';
import type { Config } from '../config/config';
import { parseTrustDomain } from '../config/values';
import { ValueError } from '../config/issues';
import { isProxyError, ProxyError } from '../errors';
import { parseSnapshot } from '../state/parse';
import { buildSnapshot, type Snapshot } from '../state/snapshot';
import { digestOf, type PreparedSnapshot } from '../state/store';
import type { CliIo } from './io';

/**
 * Loads a snapshot file for the offline commands (check-config, authz) the way the proxy would:
 * TRUST_DOMAIN and NODE_NAME from the environment when set. Throws ProxyError: ERR_CLI_READ for an
 * unreadable file (exit 2), ERR_SNAPSHOT for an invalid one.
 */
export async function loadSnapshotFile(file: string, io: CliIo): Promise<Snapshot> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new ProxyError('ERR_CLI_READ', `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err });
  }
  let trustDomain = 'cluster.local';
  const td = io.env['TRUST_DOMAIN'];
  if (td !== undefined && td !== '') {
    try {
      trustDomain = parseTrustDomain(td);
    } catch (err) {
      if (err instanceof ValueError) throw new ProxyError('ERR_CLI_USAGE', `TRUST_DOMAIN=${JSON.stringify(td)}: expected ${err.expected}`);
      throw err;
    }
  }
  // an offline check lists every problem (the 100-issue cap is for the proxy's reload log lines)
  const doc = parseSnapshot(text, { source: file, trustDomain, maxErrors: Infinity });
  return buildSnapshot(doc, { version: 1, nodeName: io.env['NODE_NAME'] || 'local' });
}

/** The start-up check's verdict: an operator message, or the snapshot to start with (null: the bundled example). */
export type StartupSnapshot = { readonly ok: false; readonly message: string } | { readonly ok: true; readonly prepared: PreparedSnapshot | null };

/**
 * The proxy's start-up check of LOCAL_XDS / LOCAL_XDS_PATH, run before anything is bound: reads,
 * validates and builds the snapshot the way the control plane would, and returns either an
 * operator message naming the variable (and the file) when it cannot be used, or the built
 * snapshot, which the control plane then adopts instead of parsing it again (a 200k-workload
 * snapshot takes seconds and much memory to parse and index). Without the check a bad snapshot
 * was reported only after the readiness port was bound, and a missing file as a raw ENOENT stack.
 * The bundled example (neither variable set) is not checked: it ships with the code.
 */
export async function checkStartupSnapshot(config: Config): Promise<StartupSnapshot> {
  const started = performance.now();
  let text: string;
  let source: string;
  let digest: string | null = null;
  switch (config.xds.kind) {
    case 'embedded':
      return { ok: true, prepared: null };
    case 'inline':
      text = config.xds.text;
      source = 'LOCAL_XDS';
      break;
    case 'path': {
      source = config.xds.path;
      let buf: Buffer;
      try {
        buf = await readFile(source);
      } catch (err) {
        return { ok: false, message: `LOCAL_XDS_PATH: cannot read ${source}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}` };
      }
      // the store's digest of these very bytes: its file watch then skips them while unchanged
      digest = digestOf(buf);
      text = buf.toString('utf8');
      break;
    }
  }
  let snapshot: Snapshot;
  try {
    snapshot = buildSnapshot(parseSnapshot(text, { source, trustDomain: config.trustDomain }), { version: 1, nodeName: config.nodeName });
  } catch (err) {
    if (!isProxyError(err)) throw err;
    // a SnapshotError's message already starts with its source (LOCAL_XDS or the file's path)
    return { ok: false, message: config.xds.kind === 'path' ? `LOCAL_XDS_PATH: ${err.message}` : err.message };
  }
  return { ok: true, prepared: { snapshot, source, digest, ms: performance.now() - started } };
}
