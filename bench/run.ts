/**
 * `npm run bench`: the full mesh path against direct and against peer proxies, in one run.
 *
 *   npm run bench -- [--suite=iperf,http,newconn,idle,micro,profile] [--reps=3] [--iperf-time=5]
 *                    [--http-time=4] [--idle=1000] [--variants=direct,stunnel,...] [--quick] [--netns]
 *
 * Topology (bench/lib/topology.ts): client → entry hop → ztunnel-ts A → HBONE → ztunnel-ts B →
 * origin, as real `dist/src/main.js proxy` processes, next to direct, an stunnel mTLS pair, HAProxy
 * (TCP, splice-auto) and ztunnel-ts's plaintext path on the splice and the JS copy relay. Every
 * workload alternates its variants (rep 1 of each, then rep 2, ...) so machine drift hits them
 * alike. --netns (root) runs the same workloads on a cluster of network namespaces with in-pod
 * proxies instead (bench/lib/netns-topology.ts). Writes bench/results/<timestamp>.json and .md. Every process started is killed at the end,
 * also on failure or Ctrl-C (bench/lib/procs.ts); every load step is bounded in time.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, release, tmpdir, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { netnsUnavailable } from '../test/netns/harness';
import { haproxyBinary, stunnelBinary, toolVersion } from './lib/baselines';
import { NETNS_VARIANTS, startNetnsTopology, type NetnsTopology } from './lib/netns-topology';
import { perfRecord, summariseProfiles, type ProfileSummary } from './lib/profile';
import { findBinary, ProcSet } from './lib/procs';
import { markdown, type WorkloadKind, type WorkloadResult } from './lib/report';
import { PROFILE_PAIR, pairRoutes, startHop, startTopology, VARIANT_LABELS, type Variant, type VariantKey } from './lib/topology';
import { http, idleTunnels, iperf, type HttpSample, type IdleSample, type IperfSample } from './lib/workloads';
import { startPair } from './lib/ztunnel';

const SUITES = ['iperf', 'http', 'newconn', 'idle', 'micro', 'profile'] as const;
type Suite = (typeof SUITES)[number];

interface Options {
  suites: Suite[];
  reps: number;
  iperfTime: number;
  httpTime: number;
  idle: number;
  variants: VariantKey[] | null;
  quick: boolean;
  /** Run on the netns cluster (root) instead of the loopback. */
  netns: boolean;
  out: string;
}

/** Suites the netns topology runs (the profile is loopback only, for now). */
const NETNS_SUITES: readonly Suite[] = ['iperf', 'http', 'newconn', 'idle', 'micro'];

function parseArgs(argv: string[]): Options {
  const get = (name: string): string | undefined => {
    const eq = argv.find((a) => a.startsWith(`--${name}=`));
    if (eq) return eq.slice(name.length + 3);
    const i = argv.indexOf(`--${name}`);
    return i >= 0 && argv[i + 1] && !argv[i + 1]!.startsWith('--') ? argv[i + 1] : undefined;
  };
  const num = (name: string, dflt: number): number => {
    const v = get(name);
    const n = v === undefined ? dflt : Number(v);
    if (!Number.isFinite(n) || n <= 0) throw new Error(`--${name} must be a positive number, got ${v}`);
    return n;
  };
  const netns = argv.includes('--netns');
  if (netns) {
    const why = netnsUnavailable();
    if (why !== null) throw new Error(`--netns runs the bench in network namespaces and needs root: ${why}. Run without --netns for the loopback topology.`);
  }
  const quick = argv.includes('--quick');
  const suiteArg = get('suite');
  const suites = (suiteArg ? suiteArg.split(',') : netns ? [...NETNS_SUITES] : [...SUITES]) as Suite[];
  for (const s of suites) if (!SUITES.includes(s)) throw new Error(`unknown suite "${s}" (known: ${SUITES.join(', ')})`);
  const offNetns = netns ? suites.filter((s) => !NETNS_SUITES.includes(s)) : [];
  if (offNetns.length > 0) throw new Error(`--netns does not run suite(s) ${offNetns.join(', ')} (it runs ${NETNS_SUITES.join(', ')}); run them without --netns`);
  const varArg = get('variants');
  const variants = varArg ? (varArg.split(',') as VariantKey[]) : null;
  for (const v of variants ?? []) if (!(v in VARIANT_LABELS)) throw new Error(`unknown variant "${v}" (known: ${Object.keys(VARIANT_LABELS).join(', ')})`);
  const offVariants = netns ? (variants ?? []).filter((v) => !NETNS_VARIANTS.includes(v)) : [];
  if (offVariants.length > 0) throw new Error(`--netns does not run variant(s) ${offVariants.join(', ')} (it runs ${NETNS_VARIANTS.join(', ')})`);
  return {
    suites,
    reps: Math.floor(num('reps', quick ? 1 : 3)),
    iperfTime: Math.floor(num('iperf-time', quick ? 2 : 5)),
    httpTime: Math.floor(num('http-time', quick ? 2 : 4)),
    idle: Math.floor(num('idle', quick ? 200 : 1000)),
    variants,
    quick,
    netns,
    out: get('out') ?? resolve(__dirname, '../../bench/results'),
  };
}

interface Workload {
  readonly key: string;
  readonly title: string;
  readonly suite: Suite;
  readonly kind: WorkloadKind;
  readonly variants: readonly VariantKey[];
  /** Repetitions: idle is one pass (memory, not a rate). */
  readonly once?: boolean;
  run(v: Variant): Promise<IperfSample | HttpSample | IdleSample>;
}

const BASE: VariantKey[] = ['direct', 'hop', 'stunnel', 'haproxy'];

function workloads(o: Options): Workload[] {
  const t = o.iperfTime;
  const h = o.httpTime;
  const all: Workload[] = [
    { key: 'iperf-1', title: `iperf3, 1 stream, ${t} s`, suite: 'iperf', kind: 'iperf', variants: [...BASE, 'zt-plain-splice', 'zt-plain-js', 'zt-hbone-w1'], run: (v) => iperf(v, t, 1) },
    { key: 'iperf-8', title: `iperf3, 8 streams (-P 8), ${t} s`, suite: 'iperf', kind: 'iperf', variants: [...BASE, 'zt-plain-splice', 'zt-plain-js', 'zt-hbone-w1', 'zt-hbone-w2', 'zt-hbone-w0'], run: (v) => iperf(v, t, 8) },
    { key: 'http-max', title: `HTTP/1.1 keep-alive, 1 KiB responses, max rate, 16 connections, ${h} s`, suite: 'http', kind: 'http', variants: [...BASE, 'zt-plain-splice', 'zt-hbone-w1', 'zt-hbone-w2', 'zt-hbone-w0'], run: (v) => http(v, { seconds: h, connections: 16 }) },
    { key: 'http-1000', title: `HTTP/1.1 keep-alive, 1 KiB responses, fixed 1000 req/s, 10 connections, ${h} s`, suite: 'http', kind: 'http', variants: [...BASE, 'zt-plain-splice', 'zt-hbone-w1'], run: (v) => http(v, { seconds: h, connections: 10, rate: 1000 }) },
    { key: 'newconn', title: `New connections per second (one request per TCP connection), 8 concurrent, ${h} s`, suite: 'newconn', kind: 'http', variants: [...BASE, 'zt-plain-splice', 'zt-hbone-w1'], run: (v) => http(v, { seconds: h, connections: 8, newConnEach: true }) },
    { key: 'idle', title: `${o.idle} idle tunnels held open (echo-proved), memory per tunnel`, suite: 'idle', kind: 'idle', once: true, variants: ['hop', 'stunnel', 'haproxy', 'zt-hbone-w1'], run: (v) => idleTunnels(v, o.idle) },
  ];
  // netns has no entry hop, stunnel or HAProxy: those rows are left out (the report says so)
  return all.filter((w) => o.suites.includes(w.suite))
    .map((w) => ({ ...w, variants: w.variants.filter((k) => (o.variants === null || o.variants.includes(k)) && (!o.netns || NETNS_VARIANTS.includes(k))) }))
    .filter((w) => w.variants.length > 0);
}

function machine(): Record<string, unknown> {
  const cpu = cpus();
  return {
    date: new Date().toISOString(), node: process.version, kernel: release(), cpus: cpu.length, cpuModel: cpu[0]?.model,
    memGiB: +(totalmem() / 2 ** 30).toFixed(1), loadavgAtStart: loadavg(),
    iperf3: toolVersion('iperf3', ['--version']),
    stunnel: stunnelBinary() ? toolVersion(stunnelBinary()!, ['-version']) : null,
    haproxy: haproxyBinary() ? toolVersion(haproxyBinary()!, ['-v']) : null,
    openssl: toolVersion('openssl', ['version']),
  };
}

/** The existing micro-benchmarks, each in its own process (fresh heap), bounded in time. */
function micro(o: Options, log: (s: string) => void): Array<{ name: string; command: string; output: string }> {
  const d = resolve(__dirname);
  const runs: Array<[string, string[]]> = [
    ['authz', [join(d, 'authz.js'), '--seconds', o.quick ? '0.3' : '1', ...(o.quick ? ['--policies', '1000'] : [])]],
    ['snapshot-load', ['--expose-gc', join(d, 'snapshot-load.js'), ...(o.quick ? ['--workloads', '20000', '--services', '1400'] : [])]],
    ['cert-issuance', [join(d, 'cert-issuance.js'), '--seconds', o.quick ? '0.5' : '2']],
  ];
  return runs.map(([name, args]) => {
    log(`micro: ${name}`);
    const r = spawnSync(process.execPath, args, { encoding: 'utf8', timeout: 240_000, killSignal: 'SIGKILL' });
    const output = (r.stdout ?? '') + (r.status !== 0 ? `\n[exit ${r.status ?? r.signal}] ${(r.stderr ?? '').slice(-1000)}` : '');
    return { name, command: `node ${args.map((a) => a.replace(`${d}/`, 'dist/bench/')).join(' ')}`, output: output.trim() };
  });
}

type ProfileResult = ProfileSummary & { gbps: number; perf: Awaited<ReturnType<typeof perfRecord>> };

async function profileRun(o: Options, procs: ProcSet, dir: string, snapshotPath: string, caDir: string, log: (s: string) => void): Promise<ProfileResult> {
  const profDir = join(dir, 'cpuprof');
  mkdirSync(profDir);
  log('profile: proxy A under --cpu-prof, iperf3 1 stream through HBONE');
  const pair = await startPair(procs, { ...PROFILE_PAIR, nodeArgsA: ['--cpu-prof', `--cpu-prof-dir=${profDir}`] }, snapshotPath, caDir);
  const hop = await startHop(procs, pair.addrs.client.replace(/\.1$/, '.2'), pairRoutes('prof', pair, false), 'profile hop');
  const v: Variant = { key: 'zt-hbone-w1', label: 'profile', target: (port) => ({ host: pair.addrs.client.replace(/\.1$/, '.2'), port: hop.ports[`prof:${port}`]! }), proxies: [{ role: 'A', m: pair.a }], hop: hop.m };
  const secs = Math.max(o.iperfTime, 5);
  // warm first (certificate issuance, TLS contexts, HBONE pool, JIT): the window shows steady state
  await iperf(v, 1, 1);
  const from = Number(process.hrtime.bigint() / 1000n);
  // perf samples the middle of the load (start-up and the tail left out)
  const perf = findBinary('perf') ? perfRecord(pair.a.pid, Math.max(1, secs - 2), join(dir, 'perf.data')) : Promise.resolve({ error: 'perf not installed' });
  const s = await iperf(v, secs, 1);
  const to = Number(process.hrtime.bigint() / 1000n);
  const perfOut = await perf;
  log(`profile: ${s.gbps.toFixed(2)} Gbit/s; stopping A so it writes its profiles`);
  await procs.terminate(pair.a, 15_000);
  return { ...summariseProfiles(profDir, { from, to }), gbps: s.gbps, perf: perfOut };
}

function profileMarkdown(p: ProfileResult): string {
  return [
    `### Profile: proxy A (HBONE client side), iperf3 1 stream at ${p.gbps.toFixed(2)} Gbit/s — ${p.files.length} profile(s) (main thread + workers; ${p.windowed}), ${(p.busyMs / 1000).toFixed(1)} s busy of ${(p.totalMs / 1000).toFixed(1)} s sampled`,
    '', '| category | self time | share |', '|---|---|---|',
    ...p.categories.map((c) => `| ${c.category} | ${(c.ms / 1000).toFixed(2)} s | ${(c.share * 100).toFixed(1)} % |`),
    '', '| top self-time functions (busy time) | where | self ms | share of busy |', '|---|---|---|---|',
    ...p.top.map((r) => `| ${r.fn} | ${r.where} | ${r.selfMs.toFixed(0)} | ${(r.share * 100).toFixed(1)} % |`), '',
    ...('error' in p.perf
      ? [`perf: ${p.perf.error}`, '']
      : ['`perf record -F 499 -p <proxy A>` (all threads), self time by object, then by object and symbol:', '', '```', ...p.perf.byDso, '', ...p.perf.bySym, '```', '']),
  ].join('\n');
}

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  const t0 = Date.now();
  const log = (s: string): void => void process.stderr.write(`[bench ${((Date.now() - t0) / 1000).toFixed(0).padStart(4)} s] ${s}\n`);
  try {
    execFileSync('iperf3', ['--version'], { stdio: 'ignore' });
  } catch {
    throw new Error('iperf3 is not installed: apt-get install -y iperf3');
  }
  const ws = workloads(o);
  // rough wall-time estimate (per-step overheads measured on the 2-vCPU machine) so a long run says so up front
  const estimate = 30 + ws.reduce((a, w) => a + (w.once ? 12 * w.variants.length : o.reps * w.variants.length * (w.kind === 'iperf' ? o.iperfTime + 1.5 : o.httpTime + 0.7)), 0)
    + (o.suites.includes('profile') ? Math.max(o.iperfTime, 5) + 15 : 0) + (o.suites.includes('micro') ? (o.quick ? 15 : 90) : 0)
    // netns: the cluster, one origin + iperf3 per server pod, two proxies per pair (readiness polled from the node)
    + (o.netns ? 20 : 0);
  log(`suites ${o.suites.join(',')}, ${o.reps} rep(s): expect about ${(estimate / 60).toFixed(1)} min`);
  const needed = new Set<VariantKey>(ws.flatMap((w) => w.variants));
  const dir = mkdtempSync(join(tmpdir(), 'ztunnel-bench-'));
  // Ctrl-C ends the run through ProcSet's process.exit (no finally): the run's CA keys go anyway
  const removeDir = (): void => rmSync(dir, { recursive: true, force: true });
  process.on('exit', removeDir);
  // a bound on every process's life, whatever happens to this one: twice the estimate plus slack
  const procs = new ProcSet(Math.ceil(Math.max(600, 2 * estimate + 300)));
  const result: Record<string, unknown> = { machine: machine(), options: o, workloads: [] as WorkloadResult[] };
  const md: string[] = [];
  let netnsTopo: NetnsTopology | null = null;
  try {
    if (ws.length > 0 || o.suites.includes('profile')) {
      const topo = o.netns ? (netnsTopo = await startNetnsTopology(procs, dir, needed, log)) : await startTopology(procs, dir, needed, log);
      if (netnsTopo) result['topology'] = netnsTopo.describe;
      const variants = [...needed].map((k) => topo.variants.get(k)!);
      // idle tunnels first, on fresh processes: after load, a proxy's heap shrinks while the
      // tunnels open and the RSS difference would mostly be garbage collection
      const ordered = [...ws.filter((w) => w.kind === 'idle'), ...ws.filter((w) => w.kind !== 'idle')];
      let warmed = false;
      for (const w of ordered) {
        if (w.kind !== 'idle' && !warmed) {
          log('warm-up: 1 s of HTTP through every variant (pools, TLS sessions, JIT), not counted');
          for (const v of variants) await http(v, { seconds: 1, connections: 4 });
          warmed = true;
        }
        const r: WorkloadResult = { key: w.key, title: w.title, kind: w.kind, variants: w.variants.map((k) => ({ key: k, label: VARIANT_LABELS[k], samples: [] })) };
        (result['workloads'] as WorkloadResult[]).push(r);
        for (let rep = 0; rep < (w.once ? 1 : o.reps); rep++) {
          for (const vs of r.variants) {
            const s = await w.run(topo.variants.get(vs.key as VariantKey)!);
            vs.samples.push(s);
            log(`${w.key} rep ${rep + 1} ${vs.label}: ${'gbps' in s ? `${s.gbps.toFixed(2)} Gbit/s` : 'reqPerSec' in s ? `${s.reqPerSec.toFixed(0)} req/s p50 ${s.p50} ms p99 ${s.p99} ms` : `${s.perTunnelBytes.map((p) => `${p.role} ${(p.bytes / 1024).toFixed(1)} KiB`).join(', ')}`}`);
          }
        }
        md.push(markdown(r));
      }
      if (o.suites.includes('profile') && 'snapshotPath' in topo) {
        const p = await profileRun(o, procs, dir, topo.snapshotPath, topo.caDir, log);
        result['profile'] = p;
        md.push(profileMarkdown(p));
      }
    }
  } finally {
    await procs.stop();
    await netnsTopo?.close();
    removeDir();
    process.off('exit', removeDir);
  }
  if (o.suites.includes('micro')) {
    const m = micro(o, log);
    result['micro'] = m;
    md.push('### Micro-benchmarks', '', ...m.flatMap((x) => [`\`${x.command}\``, '', '```', x.output, '```', '']));
  }
  const m = result['machine'] as Record<string, unknown>;
  m['loadavgAtEnd'] = loadavg();
  m['durationS'] = (Date.now() - t0) / 1000;
  const header = [
    `## Bench run ${String(m['date'])}`, '',
    `Machine: ${String(m['cpus'])} × ${String(m['cpuModel'])}, ${String(m['memGiB'])} GiB, Linux ${String(m['kernel'])}, Node ${String(m['node'])}; ${String(m['iperf3'])}; ${String(m['stunnel'] ?? 'no stunnel')}; ${String(m['haproxy'] ?? 'no haproxy')}; ${String(m['openssl'])}.`,
    `Load average start ${(m['loadavgAtStart'] as number[]).map((x) => x.toFixed(1)).join(' ')}, end ${(m['loadavgAtEnd'] as number[]).map((x) => x.toFixed(1)).join(' ')}; ${o.reps} rep(s), medians; iperf3 ${o.iperfTime} s, autocannon ${o.httpTime} s; run took ${(Number(m['durationS']) / 60).toFixed(1)} min.`,
    ...(o.netns ? [`Topology: ${String(result['topology'] ?? 'network namespaces')}.`] : []),
    `Command: \`npm run bench -- ${process.argv.slice(2).join(' ')}\``, '',
  ];
  const text = [...header, ...md].join('\n');
  mkdirSync(o.out, { recursive: true });
  const stamp = String(m['date']).replace(/[:.]/g, '-');
  writeFileSync(join(o.out, `${stamp}.json`), JSON.stringify(result, null, 2));
  writeFileSync(join(o.out, `${stamp}.md`), text);
  process.stdout.write(text + `\nresults: ${join(o.out, stamp)}.{json,md}\n`);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`bench: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
