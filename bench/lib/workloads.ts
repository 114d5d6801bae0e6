/**
 * One measurement of one workload through one variant. Each is bounded in time (iperf3 -t,
 * autocannon -d, a deadline on the idle-tunnel step) and returns its figures together with the
 * cost of every process of the variant over exactly that step: CPU seconds from /proc/<pid>/stat
 * (utime+stime, all threads) before/after, and the step's peak RSS (VmHWM, reset at step start).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { resolve } from 'node:path';
import { load, percentileMs, type LoadResult } from './http-client';
import { holdTunnels, type Holder } from './idle-holder';
import { runAutocannon, type AutocannonSummary, type RunnerSpec } from './load-runner';
import { ECHO_PORT, HTTP_PORT } from './origin';
import { cpuSeconds, resetPeakRss, statusKiB, type Managed } from './procs';
import { IPERF_PORT, type Variant } from './topology';

export interface ProcCost {
  readonly role: string;
  readonly cpuSec: number;
  readonly peakRssKiB: number;
}

export interface Costs {
  /** The variant's proxy processes (not the hop, the client, the origin). */
  readonly proxies: ProcCost[];
  readonly hop: ProcCost | null;
}

async function withCosts<T>(v: Variant, fn: () => Promise<T>): Promise<{ value: T; costs: Costs }> {
  const all: Array<{ role: string; m: Managed }> = [...v.proxies, ...(v.hop ? [{ role: 'hop', m: v.hop }] : [])];
  all.forEach((p) => resetPeakRss(p.m.pid));
  const before = all.map((p) => cpuSeconds(p.m.pid) ?? NaN);
  const value = await fn();
  const costs = all.map((p, i) => ({ role: p.role, cpuSec: (cpuSeconds(p.m.pid) ?? NaN) - before[i]!, peakRssKiB: statusKiB(p.m.pid, 'VmHWM') ?? NaN }));
  return { value, costs: { proxies: costs.filter((c) => c.role !== 'hop'), hop: costs.find((c) => c.role === 'hop') ?? null } };
}

export interface IperfSample {
  readonly gbps: number;
  readonly bytes: number;
  readonly costs: Costs;
}

export function iperf(v: Variant, secs: number, streams: number): Promise<IperfSample> {
  const t = v.target(IPERF_PORT);
  const args = ['-c', t.host, '-p', String(t.port), '-t', String(secs), '-P', String(streams), '-J'];
  return withCosts(v, async () => {
    const out = await clientOutput(v, ['iperf3', ...args], secs + 20);
    try {
      const j = JSON.parse(out) as { error?: string; end: { sum_received: { bits_per_second: number; bytes: number } } };
      if (j.error) throw new Error(j.error);
      return { gbps: j.end.sum_received.bits_per_second / 1e9, bytes: j.end.sum_received.bytes };
    } catch (err) {
      throw new Error(`iperf3 ${args.join(' ')} (${v.label}) failed: ${(err as Error).message}; output: ${out.slice(0, 300)}`);
    }
  }).then(({ value, costs }) => ({ ...value, costs }));
}

/**
 * Runs a load client to completion where the variant's clients live (v.runClient: inside a pod's
 * namespace; else here) and returns its stdout. Killed after `boundS` whatever it is doing.
 */
function clientOutput(v: Variant, argv: readonly string[], boundS: number): Promise<string> {
  return new Promise((res, rej) => {
    const p: ChildProcess = v.runClient ? v.runClient(argv) : spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr!.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-1000)));
    const kill = setTimeout(() => p.kill('SIGKILL'), boundS * 1000);
    p.once('error', (e) => {
      clearTimeout(kill);
      rej(e);
    });
    p.once('close', (code, signal) => {
      clearTimeout(kill);
      // iperf3 -J reports its own failures in the JSON with exit 1: the caller reads them
      if (out.trim() === '') rej(new Error(`${argv[0]} (${v.label}) exited ${code ?? signal} with no output: ${err.trim()}`));
      else res(out);
    });
  });
}

/** The HTTP load client inside the variant's client namespace (bench/lib/load-runner.ts). */
async function runnerIn<T>(v: Variant, spec: RunnerSpec): Promise<T> {
  const out = await clientOutput(v, [process.execPath, resolve(__dirname, 'load-runner.js'), JSON.stringify(spec)], spec.seconds + 45);
  try {
    return JSON.parse(out) as T;
  } catch {
    throw new Error(`load-runner (${v.label}) printed no result: ${out.slice(0, 300)}`);
  }
}

export interface HttpSample {
  readonly client: 'autocannon' | 'node';
  readonly reqPerSec: number;
  readonly requests: number;
  readonly seconds: number;
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  readonly errors: number;
  readonly non2xx: number;
  readonly costs: Costs;
}

export interface HttpOpts {
  readonly seconds: number;
  readonly connections: number;
  /** Fixed overall request rate (requests/s), else as fast as possible. */
  readonly rate?: number;
  /** Each request on a new TCP connection (new connections per second). */
  readonly newConnEach?: boolean;
}

/**
 * Max rate: autocannon. Fixed rate and new-connection-per-request: bench/lib/http-client.ts
 * (sub-millisecond latencies; autocannon's are whole milliseconds, and its reconnectRate does not
 * count the response that triggers each reconnect).
 */
export function http(v: Variant, o: HttpOpts): Promise<HttpSample> {
  const t = v.target(HTTP_PORT);
  if (o.rate !== undefined || o.newConnEach) {
    const spec = { ...t, seconds: o.seconds, concurrency: o.connections, rate: o.rate, newConnEach: o.newConnEach };
    const run = (): Promise<LoadResult> => (v.runClient ? runnerIn<LoadResult>(v, { tool: 'node', ...spec }) : load(spec));
    return withCosts(v, run).then(({ value: r, costs }) => {
      const sorted = [...r.latUs].sort((a, b) => a - b);
      return {
        client: 'node' as const, reqPerSec: r.requests / r.seconds, requests: r.requests, seconds: r.seconds,
        p50: percentileMs(sorted, 50), p90: percentileMs(sorted, 90), p99: percentileMs(sorted, 99), errors: r.errors, non2xx: 0, costs,
      };
    });
  }
  const run = (): Promise<AutocannonSummary> => (v.runClient
    ? runnerIn<AutocannonSummary>(v, { tool: 'autocannon', ...t, seconds: o.seconds, connections: o.connections })
    : runAutocannon(t.host, t.port, o.seconds, o.connections).catch((err: Error) => {
      throw new Error(`autocannon (${v.label}): ${err.message}`);
    }));
  return withCosts(v, run).then(({ value: r, costs }): HttpSample => ({
    client: 'autocannon',
    reqPerSec: r.requests / r.duration,
    requests: r.requests,
    seconds: r.duration,
    p50: r.p50,
    p90: r.p90,
    p99: r.p99,
    errors: r.errors,
    non2xx: r.non2xx,
    costs,
  }));
}

export interface IdleSample {
  readonly tunnels: number;
  /** RSS growth per tunnel, per process (bytes). */
  readonly perTunnelBytes: Array<{ role: string; bytes: number }>;
  readonly costs: Costs;
}

/**
 * The tunnel holder inside the variant's client namespace (idle-holder.ts as a child): the same
 * steps as in-process, driven line by line over its stdin/stdout.
 */
async function childHolder(v: Variant, runClient: NonNullable<Variant['runClient']>): Promise<Holder> {
  const p = runClient([process.execPath, resolve(__dirname, 'idle-holder.js'), JSON.stringify(v.target(ECHO_PORT))]);
  const lines: string[] = [];
  const waiters: Array<() => void> = [];
  let buf = '';
  p.stdout!.on('data', (d: Buffer) => {
    buf += d.toString();
    const parts = buf.split('\n');
    buf = parts.pop()!;
    lines.push(...parts);
    waiters.splice(0).forEach((w) => w());
  });
  p.once('exit', () => waiters.splice(0).forEach((w) => w()));
  const next = async (ms: number): Promise<string> => {
    const until = Date.now() + ms;
    while (lines.length === 0) {
      if (p.exitCode !== null || p.signalCode !== null) throw new Error(`idle holder (${v.label}) exited (${p.exitCode ?? p.signalCode})`);
      if (Date.now() > until) throw new Error(`idle holder (${v.label}): no answer within ${ms} ms`);
      await new Promise<void>((r) => {
        waiters.push(r);
        setTimeout(r, 500);
      });
    }
    return lines.shift()!;
  };
  const kill = (): void => void p.kill('SIGKILL');
  try {
    const first = await next(15_000);
    if (first !== 'warm') throw new Error(`idle holder (${v.label}): ${first}`);
  } catch (err) {
    kill();
    throw err;
  }
  return {
    async open(n: number): Promise<void> {
      p.stdin!.write(`open ${n}\n`);
      const l = await next(70_000);
      if (l !== `open ${n}`) throw new Error(`idle holder (${v.label}): ${l}`);
    },
    close(): void {
      // stdin's end closes every tunnel and exits; SIGKILL if it has not within 5 s
      p.stdin!.end();
      setTimeout(kill, 5000).unref();
    },
  };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** `n` tunnels held open; RSS per process before and after (after a settle), divided by n. */
export async function idleTunnels(v: Variant, n: number): Promise<IdleSample> {
  const procs = [...v.proxies, ...(v.hop ? [{ role: 'hop', m: v.hop }] : [])];
  // warm (inside holdTunnels/childHolder): one tunnel, so pools and TLS sessions exist before the baseline
  const holder = v.runClient ? await childHolder(v, v.runClient) : await holdTunnels(v.target(ECHO_PORT), v.label);
  try {
    await sleep(2000);
    const before = procs.map((p) => statusKiB(p.m.pid, 'VmRSS') ?? NaN);
    const { costs } = await withCosts(v, async () => {
      await holder.open(n);
      await sleep(3000);
    });
    const after = procs.map((p) => statusKiB(p.m.pid, 'VmRSS') ?? NaN);
    return { tunnels: n, perTunnelBytes: procs.map((p, i) => ({ role: p.role, bytes: ((after[i]! - before[i]!) * 1024) / n })), costs };
  } finally {
    holder.close();
    await sleep(1000);
  }
}
