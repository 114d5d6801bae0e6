/**
 * Everything a data-path run needs, started once and shared by every workload so that variants
 * alternate within one run: the origin (HTTP + echo) and one iperf3 server per origin IP, the
 * stunnel pair, HAProxy, the ztunnel-ts pairs, and the entry hop with one listener per
 * (variant, origin port). Only the variants some selected workload needs are started.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { initCaDir } from '../../src/identity/ca-dir';
import { haproxyBinary, startHaproxy, startStunnelPair, stunnelBinary } from './baselines';
import type { HopConfig, HopRoute } from './entry-hop';
import { ECHO_PORT, HTTP_PORT } from './origin';
import type { Managed, ProcSet } from './procs';
import { SOCKS_PORT, snapshotFor, startPair, type Pair, type PairSpec } from './ztunnel';

export const IPERF_PORT = 5201;
export const ORIGIN_PORTS = [IPERF_PORT, HTTP_PORT, ECHO_PORT] as const;

export type VariantKey =
  | 'direct' | 'hop' | 'stunnel' | 'haproxy'
  | 'zt-plain-splice' | 'zt-plain-js' | 'zt-hbone-w1' | 'zt-hbone-w2' | 'zt-hbone-w0';

export const VARIANT_LABELS: Record<VariantKey, string> = {
  'direct': 'direct (no proxy)',
  'hop': 'entry hop only',
  'stunnel': 'stunnel mTLS pair',
  'haproxy': 'HAProxy TCP splice-auto',
  'zt-plain-splice': 'ztunnel-ts plaintext, splice',
  'zt-plain-js': 'ztunnel-ts plaintext, JS copy',
  'zt-hbone-w1': 'ztunnel-ts HBONE, 1 worker',
  'zt-hbone-w2': 'ztunnel-ts HBONE, 2 workers',
  'zt-hbone-w0': 'ztunnel-ts HBONE, workers=0 (all cores)',
};

/** Which ztunnel-ts pair serves a variant: pairs differ by worker count or relay engine (process-wide settings). */
export const PAIR_OF: Partial<Record<VariantKey, PairSpec>> = {
  'zt-plain-splice': { id: 1, workers: 1, nativeRelay: true },
  'zt-hbone-w1': { id: 1, workers: 1, nativeRelay: true },
  'zt-plain-js': { id: 2, workers: 1, nativeRelay: false },
  'zt-hbone-w2': { id: 3, workers: 2, nativeRelay: true },
  'zt-hbone-w0': { id: 4, workers: 0, nativeRelay: true },
};
/** Pair used only by the profile suite (proxy A under --cpu-prof). */
export const PROFILE_PAIR: PairSpec = { id: 5, workers: 1, nativeRelay: true };

export interface Variant {
  readonly key: VariantKey;
  readonly label: string;
  /** Where a client connects to reach origin port `port` through this variant. */
  target(port: number): { host: string; port: number };
  /** The proxy processes: their CPU and memory are the variant's cost. */
  readonly proxies: ReadonlyArray<{ role: string; m: Managed }>;
  /** The entry hop (its cost reported apart), or null for direct (and for every netns variant). */
  readonly hop: Managed | null;
  /**
   * Starts a load client (argv, stdout/stderr piped) where this variant's clients live: inside a
   * pod's network namespace for --netns (bench/lib/netns-topology.ts). Absent: in the bench's own
   * namespace (the loopback topology), HTTP clients then run in-process.
   */
  readonly runClient?: (argv: readonly string[]) => ChildProcess;
}

/**
 * Addresses of the loopback run, all in 127.200.0.0/16 (bench's range). The --netns run has its
 * own topology (bench/lib/netns-topology.ts: pods, real veths, in-pod capture, no entry hop).
 */
export function placement(): { origin: string; hop: string; stunnelClient: string; stunnelServer: string; haproxy: string } {
  return { origin: '127.200.9.10', hop: '127.200.9.1', stunnelClient: '127.200.9.20', stunnelServer: '127.200.9.21', haproxy: '127.200.9.30' };
}

export interface Topology {
  readonly variants: ReadonlyMap<VariantKey, Variant>;
  readonly pairs: readonly Pair[];
  readonly snapshotPath: string;
  readonly caDir: string;
  readonly originIps: readonly string[];
  readonly hop: Managed;
}

export async function startOriginAndIperf(procs: ProcSet, ips: readonly string[]): Promise<void> {
  const origin = await procs.spawn({ name: 'origin', bin: process.execPath, args: [resolve(__dirname, 'origin.js'), ips.join(',')] });
  await origin.line(/origin ready/, 15_000);
  for (const ip of ips) {
    const s = await procs.spawn({ name: `iperf3 -s ${ip}`, bin: 'iperf3', args: ['-s', '--forceflush', '-B', ip, '-p', String(IPERF_PORT)] });
    await s.line(/Server listening/, 10_000);
  }
}

export async function startHop(procs: ProcSet, listenIp: string, routes: HopRoute[], name = 'entry hop'): Promise<{ m: Managed; ports: Record<string, number> }> {
  const cfg: HopConfig = { listenIp, routes };
  const m = await procs.spawn({ name, bin: process.execPath, args: [resolve(__dirname, 'entry-hop.js'), JSON.stringify(cfg)] });
  const line = await m.line(/^\{"ports"/, 15_000);
  return { m, ports: (JSON.parse(line) as { ports: Record<string, number> }).ports };
}

export function pairRoutes(prefix: string, p: Pair, plain: boolean): HopRoute[] {
  return ORIGIN_PORTS.map((port) => ({
    name: `${prefix}:${port}`, mode: 'socks' as const, socks: { host: p.addrs.proxyA, port: SOCKS_PORT }, bindIp: p.addrs.client,
    target: { host: plain ? p.addrs.tcpApp : p.addrs.server, port },
  }));
}

export async function startTopology(procs: ProcSet, dir: string, needed: ReadonlySet<VariantKey>, log: (s: string) => void): Promise<Topology> {
  const at = placement();
  const pairSpecs = [...new Map([...needed].flatMap((k) => (PAIR_OF[k] ? [[PAIR_OF[k]!.id, PAIR_OF[k]!] as const] : []))).values()];
  const allSpecs = [...pairSpecs, PROFILE_PAIR];
  const pairIps = allSpecs.flatMap((s) => {
    const n = `127.200.${10 + s.id}.`;
    return [`${n}11`, `${n}12`];
  });
  const originIps = [at.origin, ...pairIps];
  log(`starting origin + ${originIps.length} iperf3 servers`);
  await startOriginAndIperf(procs, originIps);

  const caDir = join(dir, 'ca');
  await initCaDir(caDir);
  const snapshotPath = join(dir, 'snapshot.json');
  writeFileSync(snapshotPath, snapshotFor(allSpecs));

  const proxiesOf = new Map<VariantKey, Array<{ role: string; m: Managed }>>();
  const routes: HopRoute[] = [];
  const plainRoutes = (key: VariantKey, host: string): void => {
    for (const port of ORIGIN_PORTS) routes.push({ name: `${key}:${port}`, mode: 'plain', target: { host, port } });
  };
  if (needed.has('hop')) plainRoutes('hop', at.origin);
  if (needed.has('stunnel')) {
    const bin = stunnelBinary();
    if (bin === null) throw new Error('stunnel is not installed: apt-get install -y stunnel4 (or drop the stunnel variant)');
    const sdir = join(dir, 'stunnel');
    mkdirSync(sdir, { mode: 0o700 });
    log('starting stunnel pair');
    const [c, s] = await startStunnelPair(procs, bin, sdir, { ip: at.stunnelClient, ports: ORIGIN_PORTS }, at.stunnelServer, at.origin);
    proxiesOf.set('stunnel', [{ role: 'client side', m: c! }, { role: 'server side', m: s! }]);
    plainRoutes('stunnel', at.stunnelClient);
  }
  if (needed.has('haproxy')) {
    const bin = haproxyBinary();
    if (bin === null) throw new Error('haproxy is not installed: apt-get install -y haproxy (or drop the haproxy variant)');
    log('starting haproxy');
    const h = await startHaproxy(procs, bin, dir, { ip: at.haproxy, ports: ORIGIN_PORTS }, at.origin);
    proxiesOf.set('haproxy', [{ role: 'haproxy', m: h }]);
    plainRoutes('haproxy', at.haproxy);
  }
  const pairs: Pair[] = [];
  for (const spec of pairSpecs) {
    log(`starting ztunnel-ts pair ${spec.id} (workers=${spec.workers}, native relay ${spec.nativeRelay})`);
    pairs.push(await startPair(procs, spec, snapshotPath, caDir));
  }
  for (const [k, spec] of Object.entries(PAIR_OF) as Array<[VariantKey, PairSpec]>) {
    if (!needed.has(k)) continue;
    const p = pairs.find((x) => x.spec.id === spec.id)!;
    const plain = k.startsWith('zt-plain');
    // the plaintext path never reaches node B: only A's cost is the variant's
    proxiesOf.set(k, plain ? [{ role: 'A', m: p.a }] : [{ role: 'A', m: p.a }, { role: 'B', m: p.b }]);
    routes.push(...pairRoutes(k, p, plain));
  }
  log('starting entry hop');
  const hop = await startHop(procs, at.hop, routes);

  const variants = new Map<VariantKey, Variant>();
  for (const key of needed) {
    variants.set(key, key === 'direct'
      ? { key, label: VARIANT_LABELS[key], target: (port) => ({ host: at.origin, port }), proxies: [], hop: null }
      : { key, label: VARIANT_LABELS[key], target: (port) => ({ host: at.hop, port: hop.ports[`${key}:${port}`]! }), proxies: proxiesOf.get(key) ?? [], hop: hop.m });
  }
  return { variants, pairs, snapshotPath, caDir, originIps, hop: hop.m };
}
