/**
 * What survives a dead worker (src/metrics/retained.ts), table-driven on the JSON shape
 * prom-client's getMetricsAsJSON() gives, plus a round trip through real registries and the
 * main thread's merge: live workers + retained baseline render as one family per name.
 */
import t from 'tap';
import { Counter, Gauge, Histogram, Registry, Summary } from 'prom-client';
import { addMetrics, cumulativePart } from '../../../src/metrics/retained';
import { ProxyMetrics, type MetricsJson } from '../../../src/metrics/registry';
import { parseProm, sumOf } from '../../helpers/prom-text';

type V = { value: number; labels: Record<string, string | number>; metricName?: string };
const metric = (name: string, type: string, values: V[], aggregator = 'sum'): MetricsJson[number] =>
  ({ name, help: name, type, aggregator, values }) as unknown as MetricsJson[number];

/** name{metricName|labels} → value, order-free, for comparing results. */
function flat(json: MetricsJson): Record<string, number> {
  const out: Record<string, number> = {};
  for (const m of json) {
    for (const v of m.values as V[]) {
      const labels = Object.entries(v.labels).sort(([a], [b]) => a.localeCompare(b)).map(([k, x]) => `${k}=${x}`).join(',');
      out[`${m.name}|${v.metricName ?? ''}{${labels}}`] = v.value;
    }
  }
  return out;
}

t.test('cumulativePart keeps what must outlive a worker, by metric type', async (t) => {
  const cases: Array<{ name: string; input: MetricsJson; want: Record<string, number> }> = [
    {
      name: 'counter: every series',
      input: [metric('c_total', 'counter', [{ value: 3, labels: { reporter: 'source' } }, { value: 4, labels: { reporter: 'destination' } }])],
      want: { 'c_total|{reporter=source}': 3, 'c_total|{reporter=destination}': 4 },
    },
    { name: 'gauge: nothing (a current value dies with its worker)', input: [metric('istio_tcp_sockets_open', 'gauge', [{ value: 9, labels: { reporter: 'source' } }])], want: {} },
    {
      name: 'histogram: buckets, sum and count',
      input: [metric('h', 'histogram', [
        { value: 1, labels: { le: 0.1 }, metricName: 'h_bucket' },
        { value: 2, labels: { le: '+Inf' }, metricName: 'h_bucket' },
        { value: 0.5, labels: {}, metricName: 'h_sum' },
        { value: 2, labels: {}, metricName: 'h_count' },
      ])],
      want: { 'h|h_bucket{le=0.1}': 1, 'h|h_bucket{le=+Inf}': 2, 'h|h_sum{}': 0.5, 'h|h_count{}': 2 },
    },
    {
      name: 'summary: sum and count, not quantiles',
      input: [metric('s', 'summary', [
        { value: 0.3, labels: { quantile: 0.99 }, metricName: 's' },
        { value: 7, labels: {}, metricName: 's_sum' },
        { value: 5, labels: {}, metricName: 's_count' },
      ])],
      want: { 's|s_sum{}': 7, 's|s_count{}': 5 },
    },
    { name: 'a summary with only quantiles leaves no empty family behind', input: [metric('q', 'summary', [{ value: 1, labels: { quantile: 0.5 }, metricName: 'q' }])], want: {} },
  ];
  for (const c of cases) {
    const frozen = JSON.stringify(c.input);
    const got = cumulativePart(c.input);
    t.same(flat(got), c.want, c.name);
    t.ok(got.every((m) => m.values.length > 0), `${c.name}: no empty family`);
    t.equal(JSON.stringify(c.input), frozen, `${c.name}: input untouched`);
  }
});

t.test('addMetrics sums series with the same name and labels, label order aside', async (t) => {
  const cases: Array<{ name: string; a: MetricsJson; b: MetricsJson; want: Record<string, number> }> = [
    { name: 'empty + x = x', a: [], b: [metric('c', 'counter', [{ value: 2, labels: { x: '1' } }])], want: { 'c|{x=1}': 2 } },
    {
      name: 'same series add; label order does not matter',
      a: [metric('c', 'counter', [{ value: 2, labels: { a: '1', b: '2' } }])],
      b: [metric('c', 'counter', [{ value: 5, labels: { b: '2', a: '1' } }])],
      want: { 'c|{a=1,b=2}': 7 },
    },
    {
      name: 'different label sets stay apart',
      a: [metric('c', 'counter', [{ value: 1, labels: { r: 'source' } }])],
      b: [metric('c', 'counter', [{ value: 1, labels: { r: 'destination' } }])],
      want: { 'c|{r=source}': 1, 'c|{r=destination}': 1 },
    },
    {
      name: 'histogram parts with equal labels stay apart (sum vs count)',
      a: [metric('h', 'histogram', [{ value: 0.5, labels: {}, metricName: 'h_sum' }, { value: 1, labels: {}, metricName: 'h_count' }])],
      b: [metric('h', 'histogram', [{ value: 0.25, labels: {}, metricName: 'h_sum' }, { value: 1, labels: {}, metricName: 'h_count' }])],
      want: { 'h|h_sum{}': 0.75, 'h|h_count{}': 2 },
    },
    {
      name: 'families only in one side are kept',
      a: [metric('a_total', 'counter', [{ value: 1, labels: {} }])],
      b: [metric('b_total', 'counter', [{ value: 2, labels: {} }])],
      want: { 'a_total|{}': 1, 'b_total|{}': 2 },
    },
  ];
  for (const c of cases) {
    const before = JSON.stringify([c.a, c.b]);
    t.same(flat(addMetrics(c.a, c.b)), c.want, c.name);
    t.equal(JSON.stringify([c.a, c.b]), before, `${c.name}: inputs untouched`);
  }
});

t.test('real registries: two dead workers retained + one live one render monotonic counters and live gauges', async (t) => {
  const worker = (opened: number, open: number) => {
    const registry = new Registry();
    new Counter({ name: 'istio_tcp_connections_opened_total', help: 'h', labelNames: ['reporter'], registers: [registry] }).inc({ reporter: 'source' }, opened);
    new Gauge({ name: 'istio_tcp_sockets_open', help: 'h', labelNames: ['reporter'], registers: [registry] }).set({ reporter: 'source' }, open);
    const h = new Histogram({ name: 'x_seconds', help: 'h', buckets: [1], registers: [registry] });
    h.observe(0.5);
    new Summary({ name: 'y_seconds', help: 'h', registers: [registry] }).observe(2);
    return registry.getMetricsAsJSON() as Promise<MetricsJson>;
  };
  const [d1, d2, live] = await Promise.all([worker(10, 3), worker(5, 2), worker(1, 1)]);
  const retained = addMetrics(cumulativePart(d1), cumulativePart(d2));
  const main = new ProxyMetrics({ version: '1.0.0', processMetrics: false });
  const samples = parseProm(await main.render('prometheus', [live, retained]));
  t.equal(sumOf(samples, 'istio_tcp_connections_opened_total', { reporter: 'source' }), 16, 'dead workers still count');
  t.equal(sumOf(samples, 'istio_tcp_sockets_open', { reporter: 'source' }), 1, 'only the live worker is open');
  t.equal(sumOf(samples, 'x_seconds_count'), 3, 'histogram counts add up');
  t.equal(sumOf(samples, 'x_seconds_bucket', { le: '1' }), 3);
  t.equal(sumOf(samples, 'y_seconds_count'), 3, 'summary counts add up');
  t.equal(sumOf(samples, 'y_seconds_sum'), 6);
});
