/**
 * ztunnel-ts pairs as two nodes: two real `node dist/src/main.js proxy` processes (node A holds the
 * client workload, node B the server workloads), a shared plug-in CA dir and one local snapshot.
 * Each pair has its own /24 (127.200.<10+id>.0): client .1, HBONE server workload .11, plain TCP
 * workload .12 (protocol TCP: A connects to it directly, the plaintext splice path), proxy A .101,
 * proxy B .111. Fixed ports per proxy IP (SOCKS5 15080, admin 15000, stats 15020, readiness 15021).
 * This is the loopback topology; `--netns` runs in-pod proxies in node namespaces instead
 * (bench/lib/netns-topology.ts).
 */
import { request } from 'node:http';
import { resolve } from 'node:path';
import type { Managed, ProcSet } from './procs';

export interface PairSpec {
  readonly id: number;
  /** ZTUNNEL_WORKER_THREADS: 1, 2, or 0 (= all cores). */
  readonly workers: number;
  readonly nativeRelay: boolean;
  /** Extra node flags for proxy A (e.g. --cpu-prof). */
  readonly nodeArgsA?: readonly string[];
}

export interface PairAddrs {
  readonly client: string;
  readonly server: string;
  readonly tcpApp: string;
  readonly proxyA: string;
  readonly proxyB: string;
}

export const SOCKS_PORT = 15080;
const READY_PORT = 15021;

export function pairAddrs(id: number): PairAddrs {
  const net = `127.200.${10 + id}.`;
  return { client: `${net}1`, server: `${net}11`, tcpApp: `${net}12`, proxyA: `${net}101`, proxyB: `${net}111` };
}

/** Snapshot workloads for every pair (one file for all proxies: each only serves its own node's). */
export function snapshotFor(pairs: readonly PairSpec[]): string {
  const wl = (name: string, ip: string, node: string, protocol: string) => ({
    uid: `c1//v1/Pod/bench/${name}`, name, namespace: 'bench', serviceAccount: name, workloadIps: [ip], protocol, node,
    canonicalName: name, workloadName: name,
  });
  return JSON.stringify({
    workloads: pairs.flatMap((p) => {
      const a = pairAddrs(p.id);
      return [
        wl(`client${p.id}`, a.client, `node-a${p.id}`, 'HBONE'),
        wl(`server${p.id}`, a.server, `node-b${p.id}`, 'HBONE'),
        wl(`tcpapp${p.id}`, a.tcpApp, `node-b${p.id}`, 'TCP'),
      ];
    }),
  });
}

function ready(host: string): Promise<boolean> {
  return new Promise((res) => {
    const req = request({ host, port: READY_PORT, path: '/healthz/ready', agent: false, timeout: 1000 }, (r) => {
      r.resume();
      res(r.statusCode === 200);
    });
    req.on('error', () => res(false));
    req.on('timeout', () => req.destroy());
    req.end();
  });
}

async function waitReady(m: Managed, host: string, ms: number): Promise<void> {
  const until = Date.now() + ms;
  while (!(await ready(host))) {
    if (m.child.exitCode !== null) throw new Error(`${m.name} exited (${m.child.exitCode}): ${m.output().slice(-1500)}`);
    if (Date.now() > until) throw new Error(`${m.name} not ready on ${host}:${READY_PORT} after ${ms} ms: ${m.output().slice(-1500)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

export interface Pair {
  readonly spec: PairSpec;
  readonly addrs: PairAddrs;
  readonly a: Managed;
  readonly b: Managed;
}

export async function startPair(procs: ProcSet, spec: PairSpec, snapshotPath: string, caDir: string): Promise<Pair> {
  const addrs = pairAddrs(spec.id);
  const main = resolve(__dirname, '../../src/main.js');
  const start = (node: string, ip: string, nodeArgs: readonly string[]): Promise<Managed> => procs.spawn({
    name: `ztunnel-ts ${node}`,
    bin: process.execPath,
    args: [...nodeArgs, main, 'proxy'],
    env: {
      PATH: process.env['PATH'],
      NODE_NAME: node,
      LOCAL_XDS_PATH: snapshotPath,
      LOCAL_CA_DIR: caDir,
      UNSTABLE_ENABLE_SOCKS5: 'true',
      ZTUNNEL_SOCKS5_ADDR: `${ip}:${SOCKS_PORT}`,
      ZTUNNEL_ADMIN_ADDR: `${ip}:15000`,
      ZTUNNEL_STATS_ADDR: `${ip}:15020`,
      ZTUNNEL_READINESS_ADDR: `${ip}:${READY_PORT}`,
      ZTUNNEL_WORKER_THREADS: String(spec.workers),
      ZTUNNEL_NATIVE_RELAY: String(spec.nativeRelay),
      CONNECTION_TERMINATION_DEADLINE: '2s',
      // errors still reach the bench's failure messages; access logs (info) would cost CPU
      LOG_LEVEL: 'warn',
    },
  });
  const a = await start(`node-a${spec.id}`, addrs.proxyA, spec.nodeArgsA ?? []);
  const b = await start(`node-b${spec.id}`, addrs.proxyB, []);
  await Promise.all([waitReady(a, addrs.proxyA, 30_000), waitReady(b, addrs.proxyB, 30_000)]);
  return { spec, addrs, a, b };
}
