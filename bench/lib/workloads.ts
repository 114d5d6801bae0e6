/**
 * One measurement of one workload through one variant. Each is bounded in time (iperf3 -t,
 * autocannon -d, a deadline on the idle-tunnel step) and returns its figures together with the
 * cost of every process of the variant over exactly that step: CPU seconds from /proc/<pid>/stat
 * (utime+stime, all threads) before/after, and the step's peak RSS (VmHWM, reset at step start).
 */
import { spawn } from 'node:child_process';
import { connect, type Socket } from 'node:net';
import autocannon from 'autocannon';
import { load, percentileMs } from './http-client';
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
  return withCosts(v, () => new Promise<{ gbps: number; bytes: number }>((res, rej) => {
    const p = spawn('iperf3', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const kill = setTimeout(() => p.kill('SIGKILL'), (secs + 20) * 1000);
    p.once('exit', () => {
      clearTimeout(kill);
      try {
        const j = JSON.parse(out) as { error?: string; end: { sum_received: { bits_per_second: number; bytes: number } } };
        if (j.error) throw new Error(j.error);
        res({ gbps: j.end.sum_received.bits_per_second / 1e9, bytes: j.end.sum_received.bytes });
      } catch (err) {
        rej(new Error(`iperf3 ${args.join(' ')} (${v.label}) failed: ${(err as Error).message}; output: ${out.slice(0, 300)}`));
      }
    });
  })).then(({ value, costs }) => ({ ...value, costs }));
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
    return withCosts(v, () => load({ ...t, seconds: o.seconds, concurrency: o.connections, rate: o.rate, newConnEach: o.newConnEach })).then(({ value: r, costs }) => {
      const sorted = [...r.latUs].sort((a, b) => a - b);
      return {
        client: 'node' as const, reqPerSec: r.requests / r.seconds, requests: r.requests, seconds: r.seconds,
        p50: percentileMs(sorted, 50), p90: percentileMs(sorted, 90), p99: percentileMs(sorted, 99), errors: r.errors, non2xx: 0, costs,
      };
    });
  }
  return withCosts(v, () => new Promise<autocannon.Result>((res, rej) => {
    const opts: autocannon.Options = {
      url: `http://${t.host}:${t.port}/`,
      connections: o.connections,
      duration: o.seconds,
      pipelining: 1,
      timeout: 5,
    };
    const kill = setTimeout(() => rej(new Error(`autocannon (${v.label}) did not finish within ${o.seconds + 30} s`)), (o.seconds + 30) * 1000);
    autocannon(opts, (err, result) => {
      clearTimeout(kill);
      if (err) rej(err);
      else res(result);
    });
  })).then(({ value: r, costs }): HttpSample => ({
    client: 'autocannon',
    reqPerSec: r.requests.total / r.duration,
    requests: r.requests.total,
    seconds: r.duration,
    p50: r.latency.p50,
    p90: r.latency.p90,
    p99: r.latency.p99,
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

/** Opens one connection through `v` to the echo origin and proves it end to end with one byte. */
function openTunnel(v: Variant): Promise<Socket> {
  const t = v.target(ECHO_PORT);
  return new Promise((res, rej) => {
    const s = connect(t);
    const timer = setTimeout(() => {
      s.destroy();
      rej(new Error(`idle tunnel through ${v.label}: no echo within 10 s`));
    }, 10_000);
    s.once('error', (err) => {
      clearTimeout(timer);
      rej(err);
    });
    s.once('connect', () => s.write('x'));
    s.once('data', () => {
      clearTimeout(timer);
      s.on('error', () => undefined);
      res(s);
    });
  });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** `n` tunnels held open; RSS per process before and after (after a settle), divided by n. */
export async function idleTunnels(v: Variant, n: number): Promise<IdleSample> {
  const procs = [...v.proxies, ...(v.hop ? [{ role: 'hop', m: v.hop }] : [])];
  const sockets: Socket[] = [];
  try {
    // warm: pools and TLS sessions exist before the baseline reading
    sockets.push(await openTunnel(v));
    await sleep(2000);
    const before = procs.map((p) => statusKiB(p.m.pid, 'VmRSS') ?? NaN);
    const { costs } = await withCosts(v, async () => {
      const deadline = Date.now() + 60_000;
      while (sockets.length < n + 1) {
        if (Date.now() > deadline) throw new Error(`idle tunnels through ${v.label}: only ${sockets.length - 1} of ${n} open after 60 s`);
        const batch = Math.min(50, n + 1 - sockets.length);
        sockets.push(...(await Promise.all(Array.from({ length: batch }, () => openTunnel(v)))));
      }
      await sleep(3000);
    });
    const after = procs.map((p) => statusKiB(p.m.pid, 'VmRSS') ?? NaN);
    return { tunnels: n, perTunnelBytes: procs.map((p, i) => ({ role: p.role, bytes: ((after[i]! - before[i]!) * 1024) / n })), costs };
  } finally {
    sockets.forEach((s) => s.destroy());
    await sleep(1000);
  }
}
