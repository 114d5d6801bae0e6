import t from 'tap';
import { ProxyMetrics } from '../../../src/metrics/registry';
import { trafficLabels } from '../../../src/metrics/labels';
import { registerControlPlaneMetrics, registerPoolMetrics } from '../../../src/metrics/control-plane';
import type { CertStatus } from '../../../src/identity/cert-manager';

const labels = (reporter: 'source' | 'destination') => trafficLabels({ reporter, mtls: true, clusterId: 'K' });

/** name{reporter=..,response_flags=..} → value, from a fresh JSON read of the registry. */
async function values(m: ProxyMetrics): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const metric of await m.json()) {
    for (const v of metric.values) {
      const l = v.labels as Record<string, string>;
      const key = l.reporter !== undefined && metric.name.startsWith('istio_tcp') ? `${metric.name}{${l.reporter},${l.response_flags ?? ''}}` : metric.name;
      out.set(key, (out.get(key) ?? 0) + v.value);
    }
  }
  return out;
}

t.test('bytes move while a connection is open, each byte counted once', async (t) => {
  const m = new ProxyMetrics({ version: '9.9.9', processMetrics: false });
  const live = { received: 0, sent: 0 };
  const conn = m.traffic.open(labels('source'));
  let v = await values(m);
  t.equal(v.get('istio_tcp_connections_opened_total{source,-}'), 1);
  t.equal(v.get('istio_tcp_received_bytes_total{source,-}'), 0, 'byte series exist from the open, at 0');
  t.equal(v.get('istio_tcp_sockets_open{source,}'), 1);
  m.traffic.attach(conn, () => live);
  live.received = 1000;
  live.sent = 10;
  v = await values(m);
  t.equal(v.get('istio_tcp_received_bytes_total{source,-}'), 1000, 'a scrape flushes the live counters');
  t.equal(v.get('istio_tcp_sent_bytes_total{source,-}'), 10);
  v = await values(m);
  t.equal(v.get('istio_tcp_received_bytes_total{source,-}'), 1000, 'a second scrape adds nothing new');
  live.received = 1500;
  m.traffic.close(conn, '-', { received: 1600, sent: 20 });
  m.traffic.close(conn, 'DENY', { received: 9999, sent: 9999 });
  v = await values(m);
  t.equal(v.get('istio_tcp_received_bytes_total{source,-}'), 1600, 'the final totals at close');
  t.equal(v.get('istio_tcp_sent_bytes_total{source,-}'), 20);
  t.equal(v.get('istio_tcp_connections_closed_total{source,-}'), 1, 'closed once (a second close is ignored)');
  t.notOk(v.has('istio_tcp_connections_failed_total{source,-}'), 'a clean close is no failure');
  t.equal(v.get('istio_tcp_sockets_open{source,}'), 0);
});

t.test('failures: closed and failed with the outcome flag; early ones only failed', async (t) => {
  const m = new ProxyMetrics({ version: '9.9.9', processMetrics: false });
  const c = m.traffic.open(labels('destination'));
  m.traffic.close(c, 'DENY', null);
  m.traffic.failedEarly({ ...labels('destination'), response_flags: 'TLS_FAILURE' });
  const v = await values(m);
  t.equal(v.get('istio_tcp_connections_opened_total{destination,-}'), 1, 'opened carries no outcome');
  t.equal(v.get('istio_tcp_connections_closed_total{destination,DENY}'), 1);
  t.equal(v.get('istio_tcp_connections_failed_total{destination,DENY}'), 1);
  t.equal(v.get('istio_tcp_connections_failed_total{destination,TLS_FAILURE}'), 1);
  t.notOk(v.has('istio_tcp_connections_closed_total{destination,TLS_FAILURE}'), 'an early failure never opened');
});

t.test('exposition: Prometheus text and OpenMetrics, merged with other threads', async (t) => {
  const m = new ProxyMetrics({ version: '1.2.3', processMetrics: false });
  m.traffic.close(m.traffic.open(labels('source')), '-', { received: 5, sent: 7 });
  const worker = new ProxyMetrics({ version: '1.2.3', processMetrics: false });
  worker.traffic.close(worker.traffic.open(labels('source')), '-', { received: 1, sent: 1 });

  const prom = await m.render('prometheus', [await worker.json()]);
  t.match(prom, /^# TYPE istio_tcp_connections_opened_total counter$/m);
  t.match(prom, /^istio_tcp_connections_opened_total\{reporter="source",.*\} 2$/m, 'counters summed across registries');
  t.match(prom, /^istio_tcp_received_bytes_total\{reporter="source",.*\} 6$/m);
  t.match(prom, /^istio_build\{component="ztunnel",tag="1\.2\.3"\} 1$/m, 'istio_build taken once, not summed');

  const om = await m.render('openmetrics');
  t.match(om, /^# TYPE istio_tcp_connections_opened counter$/m, 'OpenMetrics family name without _total');
  t.match(om, /^istio_tcp_connections_opened_total\{/m, 'sample with _total');
  t.notMatch(om, /_total_total/);
  t.ok(om.endsWith('# EOF\n'));
  t.match(await m.render('prometheus'), /^istio_tcp_connections_opened_total\{.*\} 1$/m, 'rendering OpenMetrics left the live registry as it was');
});

t.test('control-plane and pool metrics are read at scrape time', async (t) => {
  const m = new ProxyMetrics({ version: '1', processMetrics: true });
  const state = { version: 3, failures: 0, certs: [] as CertStatus[], pool: { connections: 2, streams: 5 } };
  registerControlPlaneMetrics(m.registry, { snapshotVersion: () => state.version, reloadFailures: () => state.failures, certs: () => state.certs });
  registerPoolMetrics(m.registry, { stats: () => state.pool });
  const notAfter = new Date('2030-01-02T03:04:05Z');
  state.certs = [{ id: 'spiffe://td/ns/a/sa/b', cert: { notAfter } } as unknown as CertStatus, { id: 'spiffe://td/ns/a/sa/c', cert: null } as unknown as CertStatus];
  state.failures = 2;
  let text = await m.render('prometheus');
  t.match(text, /^ztunnel_snapshot_version 3$/m);
  t.match(text, /^ztunnel_snapshot_reload_failures_total 2$/m);
  t.match(text, new RegExp(`^istio_cert_expiry_seconds\\{identity="spiffe://td/ns/a/sa/b"\\} ${notAfter.getTime() / 1000}$`, 'm'));
  t.notMatch(text, /sa\/c"/, 'no expiry for an identity without a certificate');
  t.match(text, /^ztunnel_pool_connections 2$/m);
  t.match(text, /^ztunnel_pool_streams 5$/m);
  t.match(text, /^process_open_fds \d+$/m, 'process metrics');
  t.match(text, /^nodejs_eventloop_lag_seconds /m, 'event-loop lag');
  state.failures = 3;
  state.certs = [];
  text = await m.render('prometheus');
  t.match(text, /^ztunnel_snapshot_reload_failures_total 3$/m, 'the counter follows the store');
  t.notMatch(text, /^istio_cert_expiry_seconds\{/m, 'a forgotten identity disappears');
});
