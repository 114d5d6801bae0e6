/**
 * ztunnel_worker_eventloop_lag_seconds{worker,stat}: how late each data-plane worker's event loop
 * runs. The workers' registries have no process collectors (one process, one set: the main
 * thread's), and the main thread's nodejs_eventloop_lag_* only says how the control plane fares,
 * so without this a worker stuck on CPU would be invisible.
 *
 * Measured with perf_hooks.monitorEventLoopDelay (a histogram the runtime fills). Windows are
 * turned by one unref'd timer, never by a read: the reported mean, p99 and max cover the current
 * window plus the previous complete one, so a stall stays visible for at least one whole window
 * after the loop wakes. Clearing on read lost exactly the stalls that matter: a worker blocked
 * past the scrape deadline answers that scrape late (and the answer may be dropped), so the next
 * read would start from an empty window. It also let one scraper empty the window of another.
 * The `worker` label keeps every worker its own series: the main thread sums series with equal
 * labels across registries, and a sum of two workers' lags means nothing.
 */
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import { Gauge, type Registry } from 'prom-client';

/** Sampling resolution of the delay monitor (ms); also the smallest lag it can see. */
const RESOLUTION_MS = 10;
/**
 * Window length: longer than any usual scrape interval (15-60 s), so a stall is seen by the next
 * scrape whenever it comes, even when the scrape during the stall was answered too late.
 */
const DEFAULT_WINDOW_MS = 60_000;

export const LOOP_LAG_METRIC = 'ztunnel_worker_eventloop_lag_seconds';

/** One window's figures in seconds of lag (what exceeds the resolution). */
interface WindowStats {
  readonly count: number;
  readonly mean: number;
  readonly p99: number;
  readonly max: number;
}

const EMPTY: WindowStats = { count: 0, mean: 0, p99: 0, max: 0 };

function statsOf(h: IntervalHistogram): WindowStats {
  // the histogram holds nanoseconds between the monitor's ticks, so an idle loop reads as the
  // resolution itself: the lag is what exceeds it. An empty window (no tick yet) counts as nothing.
  if (h.count === 0) return EMPTY;
  const sec = (ns: number): number => (Number.isFinite(ns) ? Math.max(0, ns / 1e6 - RESOLUTION_MS) / 1e3 : 0);
  return { count: h.count, mean: sec(h.mean), p99: sec(h.percentile(99)), max: sec(h.max) };
}

/**
 * The two windows as one. The mean is exact (weighted by tick count); the p99 is the larger of
 * the two, an upper bound of the union's p99 (at most 1% of either window lies above it).
 */
function merge(a: WindowStats, b: WindowStats): WindowStats {
  const count = a.count + b.count;
  if (count === 0) return EMPTY;
  return { count, mean: (a.mean * a.count + b.mean * b.count) / count, p99: Math.max(a.p99, b.p99), max: Math.max(a.max, b.max) };
}

/** Registers the gauge for worker `workerId`; returns the function that stops the monitor and its timer. */
export function registerLoopLag(registry: Registry, workerId: number, opts: { windowMs?: number } = {}): () => void {
  const h: IntervalHistogram = monitorEventLoopDelay({ resolution: RESOLUTION_MS });
  h.enable();
  const windowMs = opts.windowMs ?? DEFAULT_WINDOW_MS;
  let previous = EMPTY;
  // unref'd: a worker with nothing else to do must still be able to exit
  const turn = setInterval(() => {
    previous = statsOf(h);
    h.reset();
  }, windowMs).unref();
  const worker = String(workerId);
  new Gauge({
    name: LOOP_LAG_METRIC,
    help: `Event-loop delay of a data-plane worker thread over the current and the previous window of ${windowMs / 1000} s (stat: mean, p99, max)`,
    labelNames: ['worker', 'stat'],
    registers: [registry],
    collect(): void {
      const s = merge(previous, statsOf(h));
      this.set({ worker, stat: 'mean' }, s.mean);
      this.set({ worker, stat: 'p99' }, s.p99);
      this.set({ worker, stat: 'max' }, s.max);
    },
  });
  return () => {
    clearInterval(turn);
    h.disable();
  };
}
