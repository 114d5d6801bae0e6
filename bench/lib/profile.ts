/**
 * Summarises V8 .cpuprofile files (node --cpu-prof writes one per thread: the main thread and each
 * worker): self time per function, and per category — ztunnel-ts's own code, Node's JS internals
 * (node:*), dependencies, GC, "(program)" (native code outside JS: syscalls, OpenSSL, nghttp2,
 * libuv) and "(idle)".
 */
import { readdirSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';

interface CpuProfile {
  startTime: number;
  nodes: Array<{ id: number; callFrame: { functionName: string; url: string; lineNumber: number } }>;
  samples: number[];
  timeDeltas: number[];
}

export interface ProfileRow {
  readonly fn: string;
  readonly where: string;
  readonly selfMs: number;
  readonly share: number;
}

export interface ProfileSummary {
  readonly files: string[];
  readonly windowed: string;
  readonly totalMs: number;
  readonly busyMs: number;
  readonly categories: Array<{ category: string; ms: number; share: number }>;
  readonly top: ProfileRow[];
}

function category(url: string, fn: string): string {
  if (fn === '(idle)') return 'idle';
  if (fn === '(garbage collector)') return 'GC';
  if (fn === '(program)') return 'native (program)';
  if (url.startsWith('node:')) return 'Node JS internals';
  if (url.includes('/node_modules/')) return 'dependencies';
  if (url.includes('/dist/src/')) return 'ztunnel-ts';
  if (url === '') return 'native builtins';
  return 'other';
}

/**
 * `windowUs`: only samples taken in [from, to] count (the load, not the start-up's module loading).
 * V8 stamps samples with the monotonic clock in microseconds, the clock process.hrtime reads, so
 * the bench's own hrtime readings select the window. If no sample falls inside it (another clock),
 * every sample counts and `windowed` says so.
 */
export function summariseProfiles(dir: string, windowUs?: { from: number; to: number }, topN = 15): ProfileSummary {
  const files = readdirSync(dir).filter((f) => f.endsWith('.cpuprofile'));
  const byFn = new Map<string, { fn: string; where: string; ms: number }>();
  const byCat = new Map<string, number>();
  let total = 0;
  let windowed = 0;
  for (const f of files) {
    const p = JSON.parse(readFileSync(join(dir, f), 'utf8')) as CpuProfile;
    const nodeById = new Map(p.nodes.map((n) => [n.id, n]));
    let at = p.startTime;
    const stamps = p.timeDeltas.map((d) => (at += d));
    const inWindow = windowUs !== undefined && stamps.some((t) => t >= windowUs.from && t <= windowUs.to);
    if (inWindow) windowed++;
    for (let i = 0; i < p.samples.length; i++) {
      const n = nodeById.get(p.samples[i]!);
      if (!n) continue;
      if (inWindow && (stamps[i]! < windowUs!.from || stamps[i]! > windowUs!.to)) continue;
      const ms = (p.timeDeltas[i] ?? 0) / 1000;
      const { functionName, url, lineNumber } = n.callFrame;
      const fn = functionName || '(anonymous)';
      const where = url ? `${basename(url)}:${lineNumber + 1}` : '';
      const key = `${fn}@${where}`;
      const row = byFn.get(key) ?? { fn, where, ms: 0 };
      row.ms += ms;
      byFn.set(key, row);
      const cat = category(url, fn);
      byCat.set(cat, (byCat.get(cat) ?? 0) + ms);
      total += ms;
    }
  }
  const busy = total - (byCat.get('idle') ?? 0);
  return {
    files,
    windowed: `${windowed} of ${files.length} profile(s) cut to the load window`,
    totalMs: total,
    busyMs: busy,
    categories: [...byCat].map(([category, ms]) => ({ category, ms, share: ms / total })).sort((a, b) => b.ms - a.ms),
    top: [...byFn.values()].filter((r) => r.fn !== '(idle)').sort((a, b) => b.ms - a.ms).slice(0, topN)
      .map((r) => ({ fn: r.fn, where: r.where, selfMs: r.ms, share: r.ms / busy })),
  };
}

/**
 * `perf` (when installed and permitted) splits what V8 calls "(program)": the kernel's TCP and
 * syscalls, OpenSSL's AES-GCM, nghttp2, memcpy. Records proxy A (all its threads) for `seconds`
 * while the load runs, then reports self time by shared object and by symbol.
 */
export async function perfRecord(pid: number, seconds: number, file: string): Promise<{ byDso: string[]; bySym: string[] } | { error: string }> {
  const { spawn, spawnSync } = await import('node:child_process');
  const rec = spawn('timeout', ['-k', '5', String(seconds + 20), 'perf', 'record', '-F', '499', '-p', String(pid), '-o', file, '--', 'sleep', String(seconds)], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  rec.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const code = await new Promise<number | null>((r) => rec.once('exit', r));
  if (code !== 0) return { error: `perf record exited ${code}: ${err.slice(-300)}` };
  const report = (sort: string, n: number): string[] => {
    const r = spawnSync('perf', ['report', '-i', file, '--stdio', '--no-children', '--sort', sort], { encoding: 'utf8', timeout: 60_000, maxBuffer: 64 << 20 });
    return (r.stdout ?? '').split('\n').filter((l) => /^\s+\d+\.\d+%/.test(l)).slice(0, n).map((l) => l.trim().replace(/\s+/g, ' '));
  };
  return { byDso: report('dso', 8), bySym: report('dso,sym', 25) };
}
