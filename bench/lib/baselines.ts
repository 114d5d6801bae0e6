/**
 * The off-the-shelf peers measured in the same run as ztunnel-ts:
 *  - an stunnel mTLS pair (C + OpenSSL): stunnel "client" accepts plaintext and opens mTLS to the
 *    stunnel "server", which verifies the client certificate and forwards plaintext to the origin —
 *    the same shape as ztunnel A → HBONE → ztunnel B, without HTTP/2;
 *  - HAProxy in TCP mode with `option splice-auto` (a plaintext L4 relay, kernel splicing on).
 * Certificates are generated at run time with the openssl CLI into the run's temp dir, ECDSA P-256
 * like ztunnel-ts's workload certificates, and deleted with it.
 * Neither tool is installed by CI: `apt-get install -y stunnel4 haproxy` (bench only).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { findBinary, waitPort, type Managed, type ProcSet } from './procs';

export interface Front {
  readonly ip: string;
  /** Ports served: the same numbers as the origin's (iperf3, HTTP, echo), on the front's own IP. */
  readonly ports: readonly number[];
}

/** waitPort, with the daemon's own output in the error (a bad config says why there). */
function ready(m: Managed, ip: string, port: number): Promise<void> {
  return waitPort(ip, port, 10_000).catch((err: Error) => {
    throw new Error(`${m.name}: ${err.message}; its output: ${m.output().slice(-1500)}`);
  });
}

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'], timeout: 30_000 });
}

/** CA + server + client certificates (P-256, SHA-256), valid 1 day. */
export function makeCerts(dir: string): void {
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  openssl(['req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '1', '-subj', '/CN=bench-ca'], dir);
  for (const who of ['server', 'client']) {
    openssl(['req', ...ec, '-keyout', `${who}.key`, '-out', `${who}.csr`, '-subj', `/CN=${who}`], dir);
    writeFileSync(join(dir, `${who}.ext`), 'basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=DNS:bench\n');
    openssl(['x509', '-req', '-in', `${who}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${who}.pem`, '-days', '1', '-extfile', `${who}.ext`], dir);
  }
}

export function stunnelBinary(): string | null {
  return findBinary('stunnel4', 'stunnel');
}

export function haproxyBinary(): string | null {
  return findBinary('haproxy');
}

/**
 * Starts the stunnel pair: client side listening on `client.ip:<port>`, server side on
 * `serverIp:<port>`, forwarding to `origin:<port>`, for each port.
 */
export async function startStunnelPair(procs: ProcSet, bin: string, dir: string, client: Front, serverIp: string, origin: string): Promise<Managed[]> {
  makeCerts(dir);
  const common = ['foreground = yes', 'pid =', 'debug = 4', `CAfile = ${join(dir, 'ca.pem')}`, 'verifyChain = yes', 'sslVersionMin = TLSv1.3'];
  const cli = [...common, `cert = ${join(dir, 'client.pem')}`, `key = ${join(dir, 'client.key')}`, 'client = yes'];
  const srv = [...common, `cert = ${join(dir, 'server.pem')}`, `key = ${join(dir, 'server.key')}`, 'requireCert = yes'];
  for (const p of client.ports) {
    cli.push(`[c${p}]`, `accept = ${client.ip}:${p}`, `connect = ${serverIp}:${p}`, 'checkHost = bench');
    srv.push(`[s${p}]`, `accept = ${serverIp}:${p}`, `connect = ${origin}:${p}`);
  }
  writeFileSync(join(dir, 'stunnel-client.conf'), cli.join('\n') + '\n');
  writeFileSync(join(dir, 'stunnel-server.conf'), srv.join('\n') + '\n');
  const s = await procs.spawn({ name: 'stunnel server', bin, args: [join(dir, 'stunnel-server.conf')] });
  const c = await procs.spawn({ name: 'stunnel client', bin, args: [join(dir, 'stunnel-client.conf')] });
  for (const p of client.ports) {
    await ready(s, serverIp, p);
    await ready(c, client.ip, p);
  }
  return [c, s];
}

/** HAProxy, TCP mode, splice-auto, default threads (one per core), forwarding each port to the origin. */
export async function startHaproxy(procs: ProcSet, bin: string, dir: string, front: Front, origin: string): Promise<Managed> {
  const lines = [
    'global', '  maxconn 4000', '',
    'defaults', '  mode tcp', '  option splice-auto', '  timeout connect 5s', '  timeout client 5m', '  timeout server 5m', '',
  ];
  for (const p of front.ports) {
    lines.push(`frontend f${p}`, `  bind ${front.ip}:${p}`, `  default_backend b${p}`, '', `backend b${p}`, `  server origin ${origin}:${p}`, '');
  }
  const cfg = join(dir, 'haproxy.cfg');
  writeFileSync(cfg, lines.join('\n'));
  const h = await procs.spawn({ name: 'haproxy', bin, args: ['-db', '-f', cfg] });
  for (const p of front.ports) await ready(h, front.ip, p);
  return h;
}

export function toolVersion(bin: string, args: string[]): string {
  // stunnel prints its version on stderr (and exits non-zero): look at both streams
  const r = spawnSync(bin, args, { encoding: 'utf8', timeout: 10_000 });
  const lines = `${r.stdout ?? ''}\n${r.stderr ?? ''}`.split('\n').map((l) => l.trim()).filter(Boolean);
  return lines.find((l) => /stunnel|HAProxy|OpenSSL|iperf/i.test(l)) ?? lines[0] ?? 'unknown';
}
