/**
 * Medians, ratios and the markdown tables of a run. Raw samples stay in the JSON; the tables show
 * medians over the repetitions, ratios against the direct path measured in the same run, and the
 * cost of each proxy process (CPU per unit of work, peak RSS) next to the entry hop's own cost.
 */
import type { Costs, HttpSample, IdleSample, IperfSample } from './workloads';

export const median = (xs: readonly number[]): number => {
  const s = [...xs].filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

const f = (x: number, d = 2): string => (Number.isFinite(x) ? x.toFixed(d) : '–');
const mib = (kib: number): string => (Number.isFinite(kib) ? (kib / 1024).toFixed(0) : '–');

export type WorkloadKind = 'iperf' | 'http' | 'idle';

export interface VariantSamples {
  readonly key: string;
  readonly label: string;
  readonly samples: Array<IperfSample | HttpSample | IdleSample>;
}

export interface WorkloadResult {
  readonly key: string;
  readonly title: string;
  readonly kind: WorkloadKind;
  readonly variants: VariantSamples[];
}

/** Per process role: median of `perUnit(cpuSec, sample)` and max peak RSS over the repetitions. */
function procCosts<S extends { costs: Costs }>(ss: readonly S[], perUnit: (cpu: number, s: S) => number): { sum: number; per: string; hop: number; rss: string } {
  const roles = ss[0]?.costs.proxies.map((p) => p.role) ?? [];
  const per = roles.map((role) => ({ role, v: median(ss.map((s) => perUnit(s.costs.proxies.find((p) => p.role === role)!.cpuSec, s))) }));
  // no proxy process (direct, hop only): no proxy cost to show
  const sum = roles.length === 0 ? NaN : median(ss.map((s) => perUnit(s.costs.proxies.reduce((a, p) => a + p.cpuSec, 0), s)));
  const hop = median(ss.map((s) => (s.costs.hop ? perUnit(s.costs.hop.cpuSec, s) : NaN)));
  const rss = roles.map((role) => mib(Math.max(...ss.map((s) => s.costs.proxies.find((p) => p.role === role)!.peakRssKiB)))).join(' + ');
  return { sum, per: per.length > 1 ? per.map((p) => `${p.role} ${f(p.v)}`).join(', ') : '', hop, rss: rss || '–' };
}

function iperfTable(w: WorkloadResult): string[] {
  const direct = w.variants.find((v) => v.key === 'direct');
  const dGbps = direct ? median((direct.samples as IperfSample[]).map((s) => s.gbps)) : NaN;
  const out = [
    '| path | Gbit/s | runs | × direct | proxy cpu-s/GB (sum; per process) | hop cpu-s/GB | peak RSS MiB |',
    '|---|---|---|---|---|---|---|',
  ];
  for (const v of w.variants) {
    const ss = v.samples as IperfSample[];
    const g = median(ss.map((s) => s.gbps));
    const c = procCosts(ss, (cpu, s) => cpu / (s.bytes / 1e9));
    out.push(`| ${v.label} | ${f(g)} | ${ss.map((s) => f(s.gbps, 1)).join(' / ')} | ${f(g / dGbps)} | ${v.key === 'direct' ? '–' : `${f(c.sum)}${c.per ? ` (${c.per})` : ''}`} | ${f(c.hop)} | ${c.rss} |`);
  }
  return out;
}

function httpTable(w: WorkloadResult): string[] {
  const direct = w.variants.find((v) => v.key === 'direct');
  const dss = (direct?.samples ?? []) as HttpSample[];
  const d = { rps: median(dss.map((s) => s.reqPerSec)), p50: median(dss.map((s) => s.p50)), p99: median(dss.map((s) => s.p99)) };
  const out = [
    '| path | req/s (conn/s) | × direct | p50 ms | p90 ms | p99 ms | +p50 / +p99 ms over direct | proxy cpu-s per 1k req (sum; per process) | proxy vCPU | hop cpu-s per 1k | peak RSS MiB | errors |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const v of w.variants) {
    const ss = v.samples as HttpSample[];
    const rps = median(ss.map((s) => s.reqPerSec));
    const p50 = median(ss.map((s) => s.p50));
    const p90 = median(ss.map((s) => s.p90));
    const p99 = median(ss.map((s) => s.p99));
    const c = procCosts(ss, (cpu, s) => cpu / (s.requests / 1000));
    const vcpu = procCosts(ss, (cpu, s) => cpu / s.seconds);
    const errs = ss.reduce((a, s) => a + s.errors + s.non2xx, 0);
    const isDirect = v.key === 'direct';
    out.push(`| ${v.label} | ${f(rps, 0)} | ${f(rps / d.rps)} | ${f(p50, 3)} | ${f(p90, 3)} | ${f(p99, 3)} | ${isDirect ? '–' : `${f(p50 - d.p50, 3)} / ${f(p99 - d.p99, 3)}`} | ${isDirect ? '–' : `${f(c.sum, 3)}${c.per ? ` (${c.per})` : ''}`} | ${isDirect ? '–' : f(vcpu.sum, 3)} | ${f(c.hop, 3)} | ${c.rss} | ${errs} |`);
  }
  return out;
}

function idleTable(w: WorkloadResult): string[] {
  const out = ['| path | tunnels | RSS growth per tunnel, per process | proxies total | peak RSS MiB |', '|---|---|---|---|---|'];
  for (const v of w.variants) {
    const ss = v.samples as IdleSample[];
    const roles = ss[0]?.perTunnelBytes.map((p) => p.role) ?? [];
    const per = roles.map((role) => ({ role, b: median(ss.map((s) => s.perTunnelBytes.find((p) => p.role === role)!.bytes)) }));
    const proxies = per.filter((p) => p.role !== 'hop');
    const total = proxies.reduce((a, p) => a + p.b, 0);
    const rss = procCosts(ss, (cpu) => cpu).rss;
    out.push(`| ${v.label} | ${ss[0]?.tunnels ?? 0} | ${per.map((p) => `${p.role} ${f(p.b / 1024, 1)} KiB`).join(', ')} | ${proxies.length ? `${f(total / 1024, 1)} KiB` : '–'} | ${rss} |`);
  }
  return out;
}

export function markdown(w: WorkloadResult): string {
  const rows = w.kind === 'iperf' ? iperfTable(w) : w.kind === 'http' ? httpTable(w) : idleTable(w);
  return [`### ${w.title}`, '', ...rows, ''].join('\n');
}
