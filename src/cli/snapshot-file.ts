import { readFile } from 'node:fs/promises';
import { parseTrustDomain } from '../config/values';
import { ValueError } from '../config/issues';
import { ProxyError } from '../errors';
import { parseSnapshot } from '../state/parse';
import { buildSnapshot, type Snapshot } from '../state/snapshot';
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
  const doc = parseSnapshot(text, { source: file, trustDomain });
  return buildSnapshot(doc, { version: 1, nodeName: io.env['NODE_NAME'] || 'local' });
}
