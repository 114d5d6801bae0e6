import t from 'tap';
import { ProxyError } from '../../../src/errors';
import { AccessLog } from '../../../src/logging/access-log';
import { Logging } from '../../../src/logging/logger';
import { ConnObserver } from '../../../src/metrics/conn-observer';
import { ProxyMetrics } from '../../../src/metrics/registry';
import { parseSnapshot } from '../../../src/state/parse';
import { buildSnapshot } from '../../../src/state/snapshot';
import { planOutbound } from '../../../src/proxy/outbound-plan';
import type { InboundConnRecord } from '../../../src/proxy/inbound';
import { parseProm, sumOf } from '../../helpers/prom-text';

const snap = buildSnapshot(
  parseSnapshot(
    JSON.stringify({
      workloads: [
        { uid: 'a', name: 'sleep-1', namespace: 'default', serviceAccount: 'sleep', workloadIps: ['10.0.0.1'], protocol: 'HBONE', workloadName: 'sleep', node: 'n' },
        { uid: 'b', name: 'echo-1', namespace: 'default', serviceAccount: 'echo', workloadIps: ['10.0.0.2'], protocol: 'HBONE', workloadName: 'echo', services: { 'default/echo.svc': { 80: 8080 } } },
        { uid: 'c', name: 'legacy', namespace: 'default', workloadIps: ['10.0.0.3'], workloadName: 'legacy' },
      ],
      services: [{ name: 'echo', namespace: 'default', hostname: 'echo.svc', vips: ['/10.96.0.1'], ports: { 80: 8080 }, subjectAltNames: ['spiffe://cluster.local/ns/default/sa/echo-svc'] }],
    }),
    { source: 'test', trustDomain: 'cluster.local' },
  ),
  { version: 1, nodeName: 'n' },
);
const sleep = snap.workloadByIp('10.0.0.1')!;
const echo = snap.workloadByIp('10.0.0.2')!;
const sleepId = { trustDomain: 'cluster.local', namespace: 'default', serviceAccount: 'sleep' };

function setup(): { observer: ConnObserver; metrics: ProxyMetrics; lines: Record<string, unknown>[]; clock: { now: number } } {
  const lines: Record<string, unknown>[] = [];
  const logging = new Logging({ format: 'json', level: 'info', destination: { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) } });
  const metrics = new ProxyMetrics({ version: '1', processMetrics: false });
  const clock = { now: 1000 };
  const observer = new ConnObserver({ traffic: metrics.traffic, access: new AccessLog(logging.for('access')), snapshot: () => snap, clusterId: 'K', now: () => clock.now });
  return { observer, metrics, lines, clock };
}

t.test('inbound: open, live bytes, close; the connections list follows', async (t) => {
  const { observer, metrics, lines, clock } = setup();
  const live = { received: 0, sent: 0 };
  const info = { srcIp: '10.0.0.1', srcPort: 4000, identity: sleepId, dstIp: '10.0.0.2', dstPort: 8080 };
  const rec: InboundConnRecord = { info, dst: echo, baggage: {}, traceparent: null, openedAt: 0, bytes: () => live };
  observer.inbound.onOpen!(rec);
  t.same(observer.connections(), { inbound: [{ src: '10.0.0.1:4000', originalDst: 'echo.svc', actualDst: '10.0.0.2:8080', protocol: 'HBONE' }], outbound: [] });
  live.received = 40;
  let s = parseProm(await metrics.render('prometheus'));
  t.equal(sumOf(s, 'istio_tcp_received_bytes_total', { reporter: 'destination', source_workload: 'sleep', destination_service: 'echo.svc' }), 40);
  clock.now += 250;
  observer.inbound.onClose!(rec, { received: 50, sent: 60 }, 'complete');
  observer.inbound.onClose!(rec, { received: 50, sent: 60 }, 'complete');
  s = parseProm(await metrics.render('prometheus'));
  t.equal(sumOf(s, 'istio_tcp_received_bytes_total', { reporter: 'destination' }), 50);
  t.equal(sumOf(s, 'istio_tcp_sent_bytes_total', { reporter: 'destination' }), 60);
  t.equal(sumOf(s, 'istio_tcp_connections_closed_total', { reporter: 'destination', response_flags: '-' }), 1, 'closed once');
  t.equal(observer.liveCount, 0);
  t.match(lines, [{ msg: 'connection complete', level: 30, direction: 'inbound', 'src.workload': 'sleep-1', 'dst.service': 'echo.svc', duration: '250ms', bytes_sent: 60, bytes_recv: 50 }]);
});

t.test('inbound refusals: TLS, malformed, denied, connect failure — each with its flag', async (t) => {
  const { observer, metrics, lines } = setup();
  observer.inbound.onReject!({ srcIp: '10.9.9.9' }, 0, 'client certificate from another trust domain');
  observer.inbound.onReject!({ srcIp: '10.0.0.1', srcPort: 1, identity: sleepId }, 400, 'method GET is not CONNECT');
  const full = { srcIp: '10.0.0.1', srcPort: 2, identity: sleepId, dstIp: '10.0.0.2', dstPort: 8080 };
  observer.inbound.onReject!(full, 401, 'denied by policy: x');
  observer.inbound.onReject!(full, 503, 'upstream connect to 10.0.0.2:8080 failed: ECONNREFUSED');
  observer.inbound.onReject!(full, 0, 'client went away during the upstream connect');
  const s = parseProm(await metrics.render('prometheus'));
  const failed = (flags: string): number => sumOf(s, 'istio_tcp_connections_failed_total', { reporter: 'destination', response_flags: flags });
  t.same([failed('TLS_FAILURE'), failed('BAD_REQUEST'), failed('DENY'), failed('CONNECT'), failed('-')], [1, 1, 1, 1, 0]);
  t.equal(sumOf(s, 'istio_tcp_connections_opened_total', { reporter: 'destination' }), 3, 'identified requests are opened (then closed with their flag)');
  t.equal(sumOf(s, 'istio_tcp_connections_closed_total', { reporter: 'destination', response_flags: '-' }), 1, 'an abandoned setup closes without a failure flag');
  t.same(lines.map((l) => [l['level'], l['msg']]), [
    [40, 'connection failed'],
    [40, 'connection failed'],
    [50, 'connection complete'],
    [50, 'connection complete'],
    [50, 'connection complete'],
  ]);
  t.equal(observer.liveCount, 0);
});

t.test('outbound: refused before a plan, failed setup, established and closed', async (t) => {
  const { observer, metrics, lines } = setup();
  observer.outbound.refused({ src: { ip: '10.0.0.1', port: 1 }, dst: { ip: '127.0.0.1', port: 15008 }, source: sleep, error: new ProxyError('ERR_SELF_CALL', 'self call') });
  const plan = planOutbound({ source: sleep, dstIp: '10.96.0.1', dstPort: 80 }, snap, { random: () => 0 });
  if (plan.kind === 'reject') throw new Error('plan');
  const src = { ip: '10.0.0.1', port: 2 };
  const failing = observer.outbound.opened({ src, originalDst: { ip: '10.96.0.1', port: 80 }, source: sleep, plan });
  failing.failed(new ProxyError('ERR_CONNECT', 'upstream 10.0.0.2:15008: ECONNREFUSED'));
  const ok = observer.outbound.opened({ src, originalDst: { ip: '10.96.0.1', port: 80 }, source: sleep, plan });
  t.same(observer.connections().outbound, [{ src: '10.0.0.1:2', originalDst: '10.96.0.1:80', actualDst: '10.0.0.2:8080', protocol: 'HBONE' }]);
  const live = { received: 7, sent: 3 };
  ok.established(() => live);
  ok.closed(null, 'eof');
  const tcpPlan = planOutbound({ source: sleep, dstIp: '10.0.0.3', dstPort: 9 }, snap, { random: () => 0 });
  if (tcpPlan.kind === 'reject') throw new Error('plan');
  const tcp = observer.outbound.opened({ src, originalDst: { ip: '10.0.0.3', port: 9 }, source: sleep, plan: tcpPlan });
  tcp.closed({ received: 1, sent: 1 }, 'stopped');

  const s = parseProm(await metrics.render('prometheus'));
  const m = { reporter: 'source', source_workload: 'sleep' };
  t.equal(sumOf(s, 'istio_tcp_connections_failed_total', { ...m, response_flags: 'DENY' }), 1, 'self-call: DENY, no open');
  t.equal(sumOf(s, 'istio_tcp_connections_failed_total', { ...m, response_flags: 'CONNECT' }), 1);
  t.equal(sumOf(s, 'istio_tcp_connections_opened_total', { ...m, connection_security_policy: 'mutual_tls' }), 2);
  t.equal(sumOf(s, 'istio_tcp_connections_opened_total', { ...m, destination_workload: 'legacy', connection_security_policy: 'unknown', source_principal: 'unknown' }), 1, 'plain TCP: no mTLS, no principal');
  t.equal(sumOf(s, 'istio_tcp_received_bytes_total', { ...m, destination_service: 'echo.svc' }), 7, 'final bytes read from the live counters when none are given');
  t.equal(observer.liveCount, 0);
  const complete = lines.filter((l) => l['msg'] === 'connection complete');
  t.same(complete.map((l) => [l['dst.workload'], l['error'] ?? null]), [
    ['echo-1', 'upstream 10.0.0.2:15008: ECONNREFUSED'],
    ['echo-1', null],
    ['legacy', 'stopped'],
  ]);
  t.match(complete[1], { 'dst.addr': '10.0.0.2:15008', 'dst.hbone_addr': '10.0.0.2:8080', 'src.identity': 'spiffe://cluster.local/ns/default/sa/sleep', bytes_sent: 7, bytes_recv: 3 });
  // the service's SANs widen who may answer, but the destination is still the workload: its identity
  // is dst.identity and destination_principal, as ztunnel reports the destination workload
  t.equal(complete[1]!['dst.identity'], 'spiffe://cluster.local/ns/default/sa/echo');
  t.equal(sumOf(s, 'istio_tcp_connections_opened_total', { ...m, destination_principal: 'spiffe://cluster.local/ns/default/sa/echo' }), 2);
});

t.test('outbound: a destination principal that is not known is left out of the access log, as inbound', async (t) => {
  // HBONE plans carry a workload today; this keeps the rule the inbound side follows (omit, never
  // print "unknown") should a plan ever come without one
  const { observer, lines } = setup();
  const plan = planOutbound({ source: sleep, dstIp: '10.96.0.1', dstPort: 80 }, snap, { random: () => 0 });
  if (plan.kind !== 'hbone') throw new Error('plan');
  const anonymous = { ...plan, workload: undefined as unknown as typeof plan.workload };
  observer.outbound.opened({ src: { ip: '10.0.0.1', port: 3 }, originalDst: { ip: '10.96.0.1', port: 80 }, source: sleep, plan: anonymous }).closed({ received: 0, sent: 0 }, 'eof');
  const line = lines.find((l) => l['msg'] === 'connection complete')!;
  t.equal(line['dst.service'], 'echo.svc');
  t.notOk('dst.identity' in line, 'no dst.identity rather than "unknown"');
  t.equal(line['src.identity'], 'spiffe://cluster.local/ns/default/sa/sleep', 'the known source identity is still there');
});
