/**
 * ztunnel_worker_eventloop_lag_seconds{worker,stat}: how late each data-plane worker's event loop
 * runs. The workers' registries have no process collectors (one process, one set: the main
 * thread's), and the main thread's nodejs_eventloop_lag_* only says how the control plane fares,
 * so without this a worker stuck on CPU would be invisible.
 *
 * Measured with perf_hooks.monitorEventLoopDelay (a histogram the runtime fills, no timer of ours);
 * each scrape reports mean, p99 and max since the previous scrape and starts a new window. The
 * `worker` label keeps every worker its own series: the main thread sums series with equal labels
 * across registries, and a sum of two workers' lags means nothing.
 */
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import { Gauge, type Registry } from 'prom-client';

/** Sampling resolution of the delay monitor (ms); also the smallest lag it can see. */
const RESOLUTION_MS = 10;

export const LOOP_LAG_METRIC = 'ztunnel_worker_eventloop_lag_seconds';

/** Registers the gauge for worker `workerId`; returns the function that stops the monitor. */
export function registerLoopLag(registry: Registry, workerId: number): () => void {
  const h: IntervalHistogram = monitorEventLoopDelay({ resolution: RESOLUTION_MS });
  h.enable();
  const worker = String(workerId);
  new Gauge({
    name: LOOP_LAG_METRIC,
    help: 'Event-loop delay of a data-plane worker thread since the previous scrape (stat: mean, p99, max)',
    labelNames: ['worker', 'stat'],
    registers: [registry],
    collect(): void {
      // The histogram holds nanoseconds between the monitor's ticks, so an idle loop reads as the
      // resolution itself: the lag is what exceeds it. An empty window (no tick yet) reads 0.
      const empty = h.count === 0;
      const sec = (ns: number): number => (empty || !Number.isFinite(ns) ? 0 : Math.max(0, ns / 1e6 - RESOLUTION_MS) / 1e3);
      this.set({ worker, stat: 'mean' }, sec(h.mean));
      this.set({ worker, stat: 'p99' }, sec(h.percentile(99)));
      this.set({ worker, stat: 'max' }, sec(h.max));
      h.reset();
    },
  });
  return () => h.disable();
}
