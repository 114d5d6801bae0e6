/**
 * Summarises V8 .cpuprofile files (node --cpu-prof writes one per thread: the main thread and each
 * worker): self time per function, and per category — ztunnel-ts's own code, Node's JS internals
 * (node:*), dependencies, GC, "(program)" (native code outside JS: syscalls, OpenSSL, nghttp2,
 * libuv) and "(idle)".
 */
import { readdirSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';

interface CpuProfile {
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

export function summariseProfiles(dir: string, topN = 15): ProfileSummary {
  const files = readdirSync(dir).filter((f) => f.endsWith('.cpuprofile'));
  const byFn = new Map<string, { fn: string; where: string; ms: number }>();
  const byCat = new Map<string, number>();
  let total = 0;
  for (const f of files) {
    const p = JSON.parse(readFileSync(join(dir, f), 'utf8')) as CpuProfile;
    const nodeById = new Map(p.nodes.map((n) => [n.id, n]));
    for (let i = 0; i < p.samples.length; i++) {
      const n = nodeById.get(p.samples[i]!);
      if (!n) continue;
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
    totalMs: total,
    busyMs: busy,
    categories: [...byCat].map(([category, ms]) => ({ category, ms, share: ms / total })).sort((a, b) => b.ms - a.ms),
    top: [...byFn.values()].filter((r) => r.fn !== '(idle)').sort((a, b) => b.ms - a.ms).slice(0, topN)
      .map((r) => ({ fn: r.fn, where: r.where, selfMs: r.ms, share: r.ms / busy })),
  };
}
