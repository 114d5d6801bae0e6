/**
 * The offline commands: check-config (validate a snapshot), authz (the policy simulator:
 * "why was this connection denied?") and ca init (a CA folder several proxies can share).
 * Exit codes everywhere: 0 ok; 1 invalid input or denied; 2 usage error or unreadable file.
 */
import { parseArgs } from 'node:util';
import { authorize } from '../authz/authorize';
import { isProxyError, ProxyError } from '../errors';
import { initCaDir } from '../identity/ca-dir';
import { parseSpiffe } from '../identity/spiffe';
import { normalizeIp, splitHostPort } from '../net/ip';
import { SnapshotError } from '../state/parse';
import type { Workload } from '../state/model';
import type { Snapshot } from '../state/snapshot';
import { EXIT_INVALID, EXIT_OK, EXIT_USAGE, type CliIo } from './io';
import { loadSnapshotFile } from './snapshot-file';

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

export async function checkConfig(args: readonly string[], io: CliIo): Promise<number> {
  if (args.length !== 1) {
    io.err('usage: ztunnel-ts check-config FILE\n');
    return EXIT_USAGE;
  }
  const file = args[0]!;
  try {
    const snap = await loadSnapshotFile(file, io);
    const { workloads, services, policies } = snap.doc;
    io.out(
      `${file}: ok: ${plural(workloads.length, 'workload')} (${snap.localWorkloads().length} on node ${JSON.stringify(snap.nodeName)}), ` +
        `${plural(services.length, 'service')}, ${plural(policies.length, 'policy').replace(/policys$/, 'policies')}\n`,
    );
    return EXIT_OK;
  } catch (err) {
    return reportLoadError(err, io);
  }
}

function reportLoadError(err: unknown, io: CliIo): number {
  if (err instanceof SnapshotError) {
    io.err(`${err.message}\n`);
    return EXIT_INVALID;
  }
  if (isProxyError(err, 'ERR_CLI_READ') || isProxyError(err, 'ERR_CLI_USAGE')) {
    io.err(`ztunnel-ts: ${err.message}\n`);
    return EXIT_USAGE;
  }
  if (isProxyError(err)) {
    io.err(`ztunnel-ts: ${err.message}\n`);
    return EXIT_INVALID;
  }
  throw err;
}

const AUTHZ_USAGE = 'usage: ztunnel-ts authz --config FILE --src IP:PORT [--identity spiffe://TD/ns/NS/sa/SA] --dst IP:PORT [--network NET]\n';

function parseEndpoint(flag: string, value: string | undefined): { ip: string; port: number } {
  if (value === undefined) throw new ProxyError('ERR_CLI_USAGE', `--${flag} is required`);
  const hp = splitHostPort(value);
  const ip = hp === null ? null : normalizeIp(hp.host);
  if (hp === null || ip === null || hp.port === 0) {
    throw new ProxyError('ERR_CLI_USAGE', `--${flag} ${JSON.stringify(value)}: expected IP:PORT (IPv6 as [addr]:port), port 1-65535`);
  }
  return { ip, port: hp.port };
}

/**
 * Evaluates one connection as the destination node would: the destination must be a workload IP
 * (the node authorizes the final pod IP and target port), the identity is the peer's SPIFFE id
 * (absent = plaintext). The destination is looked up in --network when given, else in whichever
 * network has a workload with that IP (ambiguous when several do: give --network). Prints one
 * JSON line; exit 0 allowed, 1 denied, 2 bad input.
 */
export async function authzCommand(args: readonly string[], io: CliIo): Promise<number> {
  let values: { config?: string; src?: string; dst?: string; identity?: string; network?: string };
  try {
    ({ values } = parseArgs({
      args: [...args],
      options: { config: { type: 'string' }, src: { type: 'string' }, dst: { type: 'string' }, identity: { type: 'string' }, network: { type: 'string' } },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    io.err(`ztunnel-ts authz: ${(err as Error).message}\n${AUTHZ_USAGE}`);
    return EXIT_USAGE;
  }
  try {
    if (values.config === undefined) throw new ProxyError('ERR_CLI_USAGE', '--config is required');
    const src = parseEndpoint('src', values.src);
    const dst = parseEndpoint('dst', values.dst);
    let identity = null;
    if (values.identity !== undefined) {
      try {
        identity = parseSpiffe(values.identity);
      } catch (err) {
        throw new ProxyError('ERR_CLI_USAGE', `--identity: ${(err as Error).message}`);
      }
    }
    const snap = await loadSnapshotFile(values.config, io);
    const workload = destinationOf(snap, dst.ip, values.network);
    const d = authorize({ srcIp: src.ip, srcPort: src.port, identity, dstIp: dst.ip, dstPort: dst.port }, workload, snap);
    const line: Record<string, unknown> = { allowed: d.allowed, reason: d.reason, policy: d.policy };
    if (d.dryRun !== undefined && d.dryRun.length > 0) line['dryRun'] = d.dryRun;
    io.out(`${JSON.stringify(line)}\n`);
    return d.allowed ? EXIT_OK : EXIT_INVALID;
  } catch (err) {
    if (isProxyError(err, 'ERR_CLI_USAGE')) {
      io.err(`ztunnel-ts authz: ${err.message}\n${AUTHZ_USAGE}`);
      return EXIT_USAGE;
    }
    // a bad or unreadable snapshot is bad input for this command: exit 2, as its contract says
    const code = reportLoadError(err, io);
    return code === EXIT_OK ? code : EXIT_USAGE;
  }
}

/** The workload with IP `ip` in `network`, or (no --network) the only one with it in any network. */
function destinationOf(snap: Snapshot, ip: string, network: string | undefined): Workload {
  const found = network !== undefined ? [snap.workloadByIp(ip, network)].filter((w) => w !== undefined) : snap.doc.workloads.filter((w) => w.workloadIps.includes(ip));
  if (found.length === 1) return found[0]!;
  const where = network !== undefined ? ` in network ${JSON.stringify(network)}` : '';
  if (found.length > 1) {
    const nets = found.map((w) => JSON.stringify(w.network)).join(', ');
    throw new ProxyError('ERR_CLI_USAGE', `--dst ${ip}: workloads in several networks have this IP (${nets}): give --network`);
  }
  const svc = snap.serviceByVip(ip, network ?? '');
  const hint = svc !== undefined ? ` (it is the VIP of service ${svc.hostname}: give one of its endpoints' IPs)` : '';
  throw new ProxyError('ERR_CLI_USAGE', `--dst ${ip}: no workload has this IP${where}${hint}`);
}

export async function caCommand(args: readonly string[], io: CliIo): Promise<number> {
  if (args[0] !== 'init' || args.length !== 2) {
    io.err('usage: ztunnel-ts ca init DIR\n');
    return EXIT_USAGE;
  }
  try {
    const res = await initCaDir(args[1]!);
    io.out(`wrote a new CA to ${res.dir} (${res.subject}, valid until ${res.notAfter.toISOString()}):\n${res.files.map((f) => `  ${f}\n`).join('')}`);
    return EXIT_OK;
  } catch (err) {
    if (isProxyError(err, 'ERR_CA_EXISTS')) {
      io.err(`ztunnel-ts ca init: ${err.message}\n`);
      return EXIT_INVALID;
    }
    if (isProxyError(err)) {
      io.err(`ztunnel-ts ca init: ${err.message}\n`);
      return EXIT_USAGE;
    }
    throw err;
  }
}
