/**
 * What a dead worker leaves behind in the node's metrics. Prometheus reads any decrease of a
 * counter as a reset, so a worker's counters must not vanish with its thread: the supervisor folds
 * the last registry JSON it got from a worker into a retained baseline when that worker dies, and
 * passes the baseline to every scrape as one more registry to merge (src/metrics/registry.ts).
 *
 * Only cumulative series survive a death:
 *   counter    every series;
 *   histogram  every `_bucket`, `_sum` and `_count` series (all cumulative, so they add up);
 *   summary    `_sum` and `_count` only: quantiles of a dead window cannot be merged with live ones;
 *   gauge      nothing: a gauge is a current value (istio_tcp_sockets_open, pool sizes, loop lag),
 *              and a dead worker's connections and pools are gone.
 *
 * Pure functions over prom-client's getMetricsAsJSON() shape; the inputs are never mutated.
 */
import type { MetricsJson } from './registry';

type Metric = MetricsJson[number];
// histogram and summary samples carry the name of their part (`_bucket`, `_sum`, `_count`)
type Value = Metric['values'][number] & { readonly metricName?: string };

/** The series of `metrics` that must outlive their worker (see the file comment). */
export function cumulativePart(metrics: MetricsJson): MetricsJson {
  const out: MetricsJson = [];
  for (const m of metrics) {
    // at run time `type` is the string prom-client serialises ('counter'), not the typings' enum
    const type = m.type as unknown as string;
    const all: readonly Value[] = m.values;
    let values: Value[];
    if (type === 'counter' || type === 'histogram') values = [...all];
    else if (type === 'summary') values = all.filter((v) => /_(sum|count)$/.test(v.metricName ?? ''));
    else continue;
    if (values.length > 0) out.push({ ...m, values: values.map((v) => ({ ...v, labels: { ...v.labels } })) });
  }
  return out;
}

/** One series' identity: its sample name (histogram parts differ only by it) and its label set. */
function seriesKey(v: Value): string {
  const labels = Object.entries(v.labels).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `${v.metricName ?? ''}\u0000${JSON.stringify(labels)}`;
}

/** `a` + `b`, series by series (a series in only one of them is kept as it is). */
export function addMetrics(a: MetricsJson, b: MetricsJson): MetricsJson {
  const byName = new Map<string, { metric: Metric; series: Map<string, Value> }>();
  for (const m of [...a, ...b]) {
    let entry = byName.get(m.name);
    if (entry === undefined) {
      entry = { metric: m, series: new Map() };
      byName.set(m.name, entry);
    }
    for (const v of m.values as readonly Value[]) {
      const key = seriesKey(v);
      const prev = entry.series.get(key);
      entry.series.set(key, prev === undefined ? { ...v, labels: { ...v.labels } } : { ...prev, value: prev.value + v.value });
    }
  }
  return [...byName.values()].map(({ metric, series }) => ({ ...metric, values: [...series.values()] }));
}
