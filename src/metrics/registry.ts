/**
 * ProxyMetrics: one prom-client Registry per thread (never prom-client's global registry) with
 * ztunnel's metric names: the Istio TCP traffic metrics (traffic.ts), `istio_build`, the process
 * metrics (fds, memory, CPU, event-loop lag, GC — prom-client's standard collectors, bound to this
 * registry), and whatever the app registers on `registry` (control-plane.ts).
 *
 * Worker threads (when the pool lands): every worker builds its own ProxyMetrics with
 * `processMetrics: false` (one process, one set of process metrics: the main thread's) and answers
 * a "metrics" message with `registry.getMetricsAsJSON()`. The main thread passes those arrays to
 * render(), which merges them with its own through prom-client's AggregatorRegistry.aggregate():
 * counters and gauges are summed per label set (istio_tcp_* are additive across workers), and
 * metrics declared with `aggregator: 'first'` (istio_build) are taken once. Nothing here assumes
 * a single thread.
 *
 * Every scrape renders from JSON into a throwaway registry, so the live registry is never mutated
 * by a format switch and two concurrent scrapes in different formats cannot disturb each other.
 */
import { AggregatorRegistry, collectDefaultMetrics, Gauge, Registry, type MetricObjectWithValues, type MetricValue } from 'prom-client';
import { TrafficMetrics } from './traffic';

export type MetricsJson = MetricObjectWithValues<MetricValue<string>>[];

export type MetricsFormat = 'prometheus' | 'openmetrics';

export interface ProxyMetricsOptions {
  /** The `tag` label of istio_build (ztunnel reports the Istio version; we report ours). */
  readonly version: string;
  /** The process-wide collectors; only the main thread's registry has them. Default true. */
  readonly processMetrics?: boolean;
}

export const CONTENT_TYPES: Readonly<Record<MetricsFormat, string>> = {
  prometheus: 'text/plain; version=0.0.4; charset=utf-8',
  openmetrics: 'application/openmetrics-text; version=1.0.0; charset=utf-8',
};

export class ProxyMetrics {
  readonly registry = new Registry();
  readonly traffic: TrafficMetrics;

  constructor(opts: ProxyMetricsOptions) {
    if (opts.processMetrics ?? true) collectDefaultMetrics({ register: this.registry });
    const build = new Gauge({
      name: 'istio_build',
      help: 'Istio component build info',
      labelNames: ['component', 'tag'],
      registers: [this.registry],
      aggregator: 'first',
    });
    build.set({ component: 'ztunnel', tag: opts.version }, 1);
    this.traffic = new TrafficMetrics(this.registry);
  }

  /** This thread's metrics as JSON (what a worker would send to the main thread). */
  json(): Promise<MetricsJson> {
    return this.registry.getMetricsAsJSON() as Promise<MetricsJson>;
  }

  /** The exposition text of this registry merged with `others` (e.g. workers' json()). */
  async render(format: MetricsFormat, others: readonly MetricsJson[] = []): Promise<string> {
    const all = [ownedOnce(await this.json()), ...others];
    const input = format === 'openmetrics' ? all.map(toOpenMetricsNames) : all;
    const merged = AggregatorRegistry.aggregate(input as object[]);
    merged.setContentType(CONTENT_TYPES[format] as never);
    return merged.metrics();
  }
}

/**
 * prom-client marks process_start_time_seconds `aggregator: 'omit'` because in its cluster mode
 * every worker *process* has a start time of its own. Here the process metrics exist in the main
 * thread's registry only, so there is exactly one value, and omitting it would drop the metric
 * from every merged scrape: take it as it is.
 */
function ownedOnce(metrics: MetricsJson): MetricsJson {
  return metrics.map((m) => ((m.aggregator as string) === 'omit' ? { ...m, aggregator: 'first' as never } : m));
}

/**
 * OpenMetrics names a counter family without `_total` and its sample with it; prom-client adds the
 * suffix to the samples itself, so the family names lose theirs here (otherwise `_total_total`).
 */
function toOpenMetricsNames(metrics: MetricsJson): MetricsJson {
  // at run time `type` is the string prom-client serialises ('counter'), not the typings' enum
  return metrics.map((m) => ((m.type as unknown) === 'counter' && m.name.endsWith('_total') ? { ...m, name: m.name.slice(0, -'_total'.length) } : m));
}

/** What the client asked for in Accept (ztunnel: any `application/openmetrics-text` entry). */
export function negotiateFormat(accept: string | undefined): MetricsFormat {
  if (!accept) return 'prometheus';
  for (const entry of accept.split(',')) {
    if (entry.split(';')[0]!.trim().toLowerCase() === 'application/openmetrics-text') return 'openmetrics';
  }
  return 'prometheus';
}
