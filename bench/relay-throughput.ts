/**
 * Relay and HBONE throughput with iperf3 (issue 4, "Tests and figures"), all variants in ONE run,
 * alternated (rep 1 of every variant, then rep 2, ...) so that machine drift hits them alike:
 *  - direct: iperf3 client -> iperf3 server;
 *  - splice / js: a tiny plaintext TCP relay using src/native/relay.ts (native splice vs JS copy);
 *  - hbone wN: a bench-only entry hop (TCP listener on the client workload IP -> SOCKS5 of proxy A,
 *    relayed with the splice relay) -> proxy A -> HBONE (mTLS, HTTP/2 CONNECT) -> proxy B -> server,
 *    two startNodeApp instances per worker count, in this process.
 * Reports medians of 3 runs (Gbit/s, ratio to direct, CPU seconds per GB of this process, which
 * includes worker threads). iperf3 must be installed; this script installs nothing.
 * Usage: node dist/bench/relay-throughput.js [--time 5] [--reps 3]
 *        node dist/bench/relay-throughput.js --memory [200000]   (RSS with 1 vs 2 workers)
 * Loopback addresses: 127.200.0.0/24 only.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { parseConfig } from '../src/config/config';
import { initCaDir } from '../src/identity/ca-dir';
import { Logging } from '../src/logging/logger';
import { startNodeApp, type NodeApp } from '../src/app';
import { socksConnect } from '../src/proxy/socks5-client';
import { startRelay } from '../src/native/relay';
import { loadNative, type NativeApi } from '../src/native/addon';

const BLOCK = '127.200.0.';
const DIRECT_SERVER = `${BLOCK}10`;
const RELAY_IP = `${BLOCK}20`;
const IPERF_PORT = 5201;

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
}

function requireIperf3(): string {
  try {
    return execFileSync('iperf3', ['--version'], { encoding: 'utf8' }).split('\n')[0] ?? 'iperf3';
  } catch {
    console.error('relay-throughput: iperf3 is not installed (or not on PATH). Install it, e.g. `apt-get install -y iperf3`, and rerun.');
    process.exit(2);
  }
}

function startIperfServer(ip: string, spawned: ChildProcess[]): Promise<ChildProcess> {
  const p = spawn('iperf3', ['-s', '--forceflush', '-B', ip, '-p', String(IPERF_PORT)], { stdio: ['ignore', 'pipe', 'pipe'] });
  spawned.push(p);
  return new Promise((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`iperf3 server on ${ip} did not start within 5 s`)), 5000);
    p.stdout!.on('data', (d: Buffer) => {
      if (d.toString().includes('Server listening')) {
        clearTimeout(timer);
        res(p);
      }
    });
    p.once('exit', (code) => rej(new Error(`iperf3 server on ${ip} exited (${code})`)));
  });
}

interface Sample {
  gbps: number;
  bytes: number;
  cpuSec: number;
}

/** One iperf3 client run against host:port; CPU is this process's user+system delta over the run. */
function runIperf(host: string, port: number, secs: number, streams: number, bind?: string): Promise<Sample> {
  const args = ['-c', host, '-p', String(port), '-t', String(secs), '-P', String(streams), '-J'];
  if (bind !== undefined) args.push('-B', bind);
  const cpu0 = process.cpuUsage();
  return new Promise((res, rej) => {
    const p = spawn('iperf3', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const kill = setTimeout(() => p.kill('SIGKILL'), (secs + 20) * 1000);
    p.once('exit', () => {
      clearTimeout(kill);
      const cpu = process.cpuUsage(cpu0);
      try {
        const j = JSON.parse(out) as { error?: string; end: { sum_received: { bits_per_second: number; bytes: number } } };
        if (j.error) throw new Error(j.error);
        res({ gbps: j.end.sum_received.bits_per_second / 1e9, bytes: j.end.sum_received.bytes, cpuSec: (cpu.user + cpu.system) / 1e6 });
      } catch (err) {
        rej(new Error(`iperf3 ${args.join(' ')} failed: ${(err as Error).message}; output: ${out.slice(0, 300)}`));
      }
    });
  });
}

/** A plaintext relay listener: each accepted connection goes to `upstream`, relayed by startRelay. */
function plainRelay(ip: string, upstream: { host: string; port: number }, native: NativeApi | null): Promise<Server> {
  const srv = createServer({ pauseOnConnect: true, allowHalfOpen: true }, (a: Socket) => {
    a.on('error', () => undefined);
    const b = connect({ ...upstream, allowHalfOpen: true });
    b.on('error', () => a.destroy());
    b.once('connect', () => {
      b.pause();
      startRelay(a, b, () => undefined, { native });
    });
  });
  return new Promise((r) => srv.listen(0, ip, () => r(srv)));
}

/** The bench-only entry hop: iperf3 cannot speak SOCKS5, so this does it, from the client workload IP. */
function socksEntry(ip: string, socks: { host: string; port: number }, dst: { host: string; port: number }, native: NativeApi | null): Promise<Server> {
  const srv = createServer({ pauseOnConnect: true, allowHalfOpen: true }, (a: Socket) => {
    a.on('error', () => undefined);
    socksConnect(socks, ip, dst).then(
      (b) => {
        b.on('error', () => undefined);
        startRelay(a, b, () => undefined, { native });
      },
      () => a.destroy(),
    );
  });
  return new Promise((r) => srv.listen(0, ip, () => r(srv)));
}

const discard = { write: (): void => undefined };

async function startProxy(node: string, ip: string, snapshotPath: string, caDir: string, workers: number): Promise<NodeApp> {
  const env = {
    NODE_NAME: node,
    LOCAL_XDS_PATH: snapshotPath,
    LOCAL_CA_DIR: caDir,
    UNSTABLE_ENABLE_SOCKS5: 'true',
    ZTUNNEL_SOCKS5_ADDR: `${ip}:0`,
    ZTUNNEL_ADMIN_ADDR: `${ip}:0`,
    ZTUNNEL_STATS_ADDR: `${ip}:0`,
    ZTUNNEL_READINESS_ADDR: `${ip}:0`,
    ZTUNNEL_WORKER_THREADS: String(workers),
    LOG_FORMAT: 'json',
    // workers log to their own stdout (the discarding destination only reaches the main thread)
    LOG_LEVEL: 'off',
  };
  const config = parseConfig(env, { logicalCpus: cpus().length });
  const logging = new Logging({ ...config.log, destination: discard });
  return startNodeApp(config, logging);
}

interface Variant {
  name: string;
  streams: number;
  target: { host: string; port: number };
  bind?: string;
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main(): Promise<void> {
  const iperfVersion = requireIperf3();
  const secs = arg('time', 5);
  const reps = arg('reps', 3);
  const native = loadNative();
  const dir = mkdtempSync(join(tmpdir(), 'ztunnel-bench-tp-'));
  const caDir = join(dir, 'ca');
  await initCaDir(caDir);

  // HBONE pairs, one per worker count: client workload on node-aN, iperf3 server workload on node-bN
  const pairs = [1, 2].map((w) => ({ w, client: `${BLOCK}${w}`, server: `${BLOCK}${10 + w}`, proxyA: `${BLOCK}${100 + w}`, proxyB: `${BLOCK}${110 + w}` }));
  const wl = (name: string, ip: string, node: string) => ({
    uid: `c1//v1/Pod/default/${name}`, name, namespace: 'default', serviceAccount: name, workloadIps: [ip], protocol: 'HBONE', node,
  });
  const snapshotPath = join(dir, 'snapshot.json');
  writeFileSync(snapshotPath, JSON.stringify({
    workloads: pairs.flatMap((p) => [wl(`client${p.w}`, p.client, `node-a${p.w}`), wl(`server${p.w}`, p.server, `node-b${p.w}`)]),
  }));

  const servers: ChildProcess[] = [];
  const closers: Array<() => Promise<unknown> | void> = [];
  try {
    await Promise.all([DIRECT_SERVER, ...pairs.map((p) => p.server)].map((ip) => startIperfServer(ip, servers)));
    const direct = { host: DIRECT_SERVER, port: IPERF_PORT };
    const splice = await plainRelay(RELAY_IP, direct, native);
    const js = await plainRelay(RELAY_IP, direct, null);
    closers.push(() => void splice.close(), () => void js.close());
    const portOf = (s: Server): number => (s.address() as { port: number }).port;

    const variants: Variant[] = [
      { name: 'direct', streams: 1, target: direct },
      { name: 'relay, splice (native)', streams: 1, target: { host: RELAY_IP, port: portOf(splice) } },
      { name: 'relay, JS copy', streams: 1, target: { host: RELAY_IP, port: portOf(js) } },
    ];
    const multi: Variant[] = [];
    for (const p of pairs) {
      const a = await startProxy(`node-a${p.w}`, p.proxyA, snapshotPath, caDir, p.w);
      closers.push(() => a.close());
      const b = await startProxy(`node-b${p.w}`, p.proxyB, snapshotPath, caDir, p.w);
      closers.push(() => b.close());
      if (a.pool === null || b.pool === null) throw new Error('startNodeApp fell back to the main thread: no worker pool to measure');
      const socks = a.addresses().get('socks5')!;
      const entry = await socksEntry(p.client, { host: socks.host, port: socks.port }, { host: p.server, port: IPERF_PORT }, native);
      closers.push(() => void entry.close());
      const target = { host: p.client, port: portOf(entry) };
      variants.push({ name: `HBONE, ${p.w} worker${p.w > 1 ? 's' : ''}`, streams: 1, target, bind: p.client });
      multi.push({ name: `HBONE, ${p.w} worker${p.w > 1 ? 's' : ''}, -P 4`, streams: 4, target, bind: p.client });
    }
    variants.push(...multi);

    // warm-up: one short run per HBONE variant (pools, TLS sessions, JIT), not counted
    for (const v of variants.filter((x) => x.name.startsWith('HBONE'))) await runIperf(v.target.host, v.target.port, 1, v.streams, v.bind);

    const samples = new Map<string, Sample[]>(variants.map((v) => [v.name, []]));
    const t0 = Date.now();
    for (let r = 0; r < reps; r++) {
      for (const v of variants) {
        const s = await runIperf(v.target.host, v.target.port, secs, v.streams, v.bind);
        samples.get(v.name)!.push(s);
        console.error(`rep ${r + 1} ${v.name}: ${s.gbps.toFixed(2)} Gbit/s, ${(s.cpuSec / (s.bytes / 1e9)).toFixed(2)} cpu-s/GB`);
      }
    }

    const directGbps = median(samples.get('direct')!.map((s) => s.gbps));
    const rows = variants.map((v) => {
      const ss = samples.get(v.name)!;
      const gbps = median(ss.map((s) => s.gbps));
      const cpuPerGb = median(ss.map((s) => s.cpuSec / (s.bytes / 1e9)));
      return { variant: v.name, streams: v.streams, gbps, runs: ss.map((s) => s.gbps), ratioToDirect: gbps / directGbps, cpuSecPerGB: v.name === 'direct' ? null : cpuPerGb };
    });
    const result = {
      date: new Date().toISOString(), iperf3: iperfVersion, node: process.version, cpus: cpus().length, memGiB: totalmem() / 2 ** 30,
      loadavg: loadavg(), secondsPerRun: secs, reps, measureSeconds: (Date.now() - t0) / 1000, rows,
    };
    const outDir = resolve(__dirname, '../../bench/results');
    mkdirSync(outDir, { recursive: true });
    const file = join(outDir, `relay-throughput-${result.date.replace(/[:.]/g, '-')}.json`);
    writeFileSync(file, JSON.stringify(result, null, 2));

    console.log(`| path | streams | Gbit/s (median of ${reps}) | runs | × direct | cpu-s/GB (this process) |`);
    console.log('|---|---|---|---|---|---|');
    for (const r of rows) {
      console.log(`| ${r.variant} | ${r.streams} | ${r.gbps.toFixed(2)} | ${r.runs.map((g) => g.toFixed(1)).join(' / ')} | ${r.ratioToDirect.toFixed(2)} | ${r.cpuSecPerGB === null ? '–' : r.cpuSecPerGB.toFixed(2)} |`);
    }
    console.log(`\nload average at the end: ${result.loadavg.map((x) => x.toFixed(1)).join(' ')}; results: ${file}`);
  } finally {
    // iperf3 servers first: they are separate processes and must not outlive the bench even if a
    // proxy's close() never settles (the process then exits with an empty event loop)
    servers.forEach((s) => s.kill());
    for (const c of closers.reverse()) await Promise.race([c(), new Promise((r) => setTimeout(r, 5000).unref())]);
  }
}

/**
 * Memory per worker (--memory [workloads]): each worker holds its own decoded copy of the snapshot,
 * so RSS grows with the worker count. Every worker count runs in a fresh child process (no leftover
 * heap from a previous start) on a generated snapshot of `workloads` pods spread over 1,000 nodes.
 */
function generateSnapshot(workloads: number): string {
  const ip = (n: number): string => `10.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
  const wl = [];
  for (let w = 0; w < workloads; w++) {
    const ns = `ns-${w % 400}`;
    const app = `app-${w % 14000}`;
    wl.push({ uid: `Kubernetes//Pod/${ns}/${app}-${w.toString(36)}`, name: `${app}-${w.toString(36)}`, namespace: ns, serviceAccount: app, workloadIps: [ip(w + 1)], protocol: 'HBONE', node: `node-${w % 1000}` });
  }
  return JSON.stringify({ workloads: wl });
}

async function memoryChild(workers: number, snapshotPath: string, caDir: string): Promise<void> {
  const app = await startProxy('node-mem', `${BLOCK}200`, snapshotPath, caDir, workers);
  await new Promise((r) => setTimeout(r, 3000)); // let post-start garbage settle a little
  const rss = process.memoryUsage().rss;
  await app.close();
  process.stdout.write(JSON.stringify({ workers, pool: app.pool !== null, rss }) + '\n');
}

async function memoryMain(workloads: number): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'ztunnel-bench-mem-'));
  await initCaDir(join(dir, 'ca'));
  writeFileSync(join(dir, 'snapshot.json'), generateSnapshot(workloads));
  const rows: Array<{ workers: number; rssMiB: number }> = [];
  for (const w of [1, 2, 1, 2]) {
    const out = execFileSync(process.execPath, [__filename, '--memory-child', String(w), join(dir, 'snapshot.json'), join(dir, 'ca')], { encoding: 'utf8', timeout: 180_000 });
    const r = JSON.parse(out.trim().split('\n').pop()!) as { workers: number; pool: boolean; rss: number };
    if (!r.pool) throw new Error('startNodeApp fell back to the main thread');
    rows.push({ workers: w, rssMiB: r.rss / 2 ** 20 });
    console.error(`workers=${w}: RSS ${(r.rss / 2 ** 20).toFixed(0)} MiB`);
  }
  const med = (w: number): number => median(rows.filter((r) => r.workers === w).map((r) => r.rssMiB));
  console.log(`| workloads | RSS, 1 worker | RSS, 2 workers | per extra worker |\n|---|---|---|---|\n| ${workloads} | ${med(1).toFixed(0)} MiB | ${med(2).toFixed(0)} MiB | ${(med(2) - med(1)).toFixed(0)} MiB |`);
  console.log(`runs: ${rows.map((r) => `${r.workers}w ${r.rssMiB.toFixed(0)}`).join(', ')}`);
}

function entry(): Promise<void> {
  const child = process.argv.indexOf('--memory-child');
  if (child >= 0) return memoryChild(Number(process.argv[child + 1]), process.argv[child + 2]!, process.argv[child + 3]!);
  if (process.argv.includes('--memory')) return memoryMain(arg('memory', 200_000) || 200_000);
  return main();
}

entry().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
