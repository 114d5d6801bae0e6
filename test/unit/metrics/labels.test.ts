import t from 'tap';
import { ProxyError } from '../../../src/errors';
import { HboneStatusError } from '../../../src/proxy/hbone-client';
import { parseSnapshot } from '../../../src/state/parse';
import { buildSnapshot } from '../../../src/state/snapshot';
import { trafficLabels, TRAFFIC_LABEL_NAMES, withFlags } from '../../../src/metrics/labels';
import { responseFlagsFor, responseFlagsForStatus } from '../../../src/metrics/response-flags';
import { guessService, isCleanEnd } from '../../../src/metrics/conn-observer';
import { negotiateFormat } from '../../../src/metrics/registry';
import { acceptsGzip } from '../../../src/metrics/server';

const doc = parseSnapshot(
  JSON.stringify({
    workloads: [
      {
        uid: 'c1//v1/Pod/default/sleep-1', name: 'sleep-1', namespace: 'default', serviceAccount: 'sleep', workloadIps: ['10.0.0.1'],
        workloadName: 'sleep', canonicalName: 'sleep-app', canonicalRevision: 'v1', clusterId: 'east',
      },
      {
        uid: 'c1//v1/Pod/prod/echo-1', name: 'echo-1', namespace: 'prod', serviceAccount: 'echo', workloadIps: ['10.0.0.2'], protocol: 'HBONE',
        workloadName: 'echo', canonicalName: 'echo', services: { 'prod/echo.prod.svc.cluster.local': { 80: 8080, 9000: 0 } },
      },
    ],
    services: [{ name: 'echo', namespace: 'prod', hostname: 'echo.prod.svc.cluster.local', vips: ['/10.96.0.1'], ports: { 80: 8080, 9000: 9000 } }],
  }),
  { source: 'test', trustDomain: 'cluster.local' },
);
const snap = buildSnapshot(doc, { version: 1, nodeName: 'n' });
const sleep = snap.workloadByIp('10.0.0.1')!;
const echo = snap.workloadByIp('10.0.0.2')!;
const echoSvc = snap.serviceByHostname('prod', 'echo.prod.svc.cluster.local')!;
const sleepId = { trustDomain: 'cluster.local', namespace: 'default', serviceAccount: 'sleep' };

t.test('traffic labels: the full Istio set, unknown where nothing is known', async (t) => {
  const none = trafficLabels({ reporter: 'source', mtls: false, clusterId: 'Kubernetes' });
  t.same(Object.keys(none), [...TRAFFIC_LABEL_NAMES], 'every label, in order');
  for (const k of TRAFFIC_LABEL_NAMES) {
    if (k === 'reporter' || k === 'request_protocol' || k === 'response_flags') continue;
    t.equal(none[k], 'unknown', `${k} is unknown`);
  }
  t.match(none, { reporter: 'source', request_protocol: 'tcp', response_flags: '-' });
});

t.test('traffic labels from snapshot workloads and services', async (t) => {
  const l = trafficLabels({ reporter: 'source', source: sleep, sourceIdentity: sleepId, destination: echo, service: echoSvc, mtls: true, clusterId: 'Kubernetes' });
  t.same(l, {
    reporter: 'source',
    source_workload: 'sleep',
    source_canonical_service: 'sleep-app',
    source_canonical_revision: 'v1',
    source_workload_namespace: 'default',
    source_principal: 'spiffe://cluster.local/ns/default/sa/sleep',
    source_app: 'sleep-app',
    source_version: 'v1',
    source_cluster: 'east',
    destination_service: 'echo.prod.svc.cluster.local',
    destination_service_namespace: 'prod',
    destination_service_name: 'echo',
    destination_workload: 'echo',
    destination_canonical_service: 'echo',
    destination_canonical_revision: 'unknown',
    destination_workload_namespace: 'prod',
    destination_principal: 'spiffe://cluster.local/ns/prod/sa/echo',
    destination_app: 'echo',
    destination_version: 'unknown',
    destination_cluster: 'Kubernetes',
    request_protocol: 'tcp',
    response_flags: '-',
    connection_security_policy: 'mutual_tls',
  });
  const plain = trafficLabels({ reporter: 'source', source: sleep, destination: echo, mtls: false, clusterId: 'Kubernetes' });
  t.equal(plain.source_principal, 'unknown', 'no identity without mTLS: source_principal comes only from the TLS identity');
  t.equal(plain.connection_security_policy, 'unknown');
  t.equal(withFlags(plain, 'DENY').response_flags, 'DENY');
  t.equal(plain.response_flags, '-', 'withFlags does not mutate');
});

t.test('destination reporter: a source outside the snapshot is described by its baggage and identity', async (t) => {
  const l = trafficLabels({
    reporter: 'destination',
    derivedSource: { workloadName: 'web', app: 'web-app', revision: 'v2', namespace: 'shop', clusterId: 'west' },
    sourceIdentity: { trustDomain: 'cluster.local', namespace: 'shop', serviceAccount: 'web' },
    destination: echo,
    mtls: true,
    clusterId: 'Kubernetes',
  });
  t.match(l, {
    source_workload: 'web',
    source_canonical_service: 'web-app',
    source_canonical_revision: 'v2',
    source_workload_namespace: 'shop',
    source_app: 'web',
    source_version: 'v2',
    source_cluster: 'west',
    source_principal: 'spiffe://cluster.local/ns/shop/sa/web',
  });
  const known = trafficLabels({ reporter: 'destination', source: sleep, derivedSource: { workloadName: 'liar' }, mtls: true, clusterId: 'K' });
  t.equal(known.source_workload, 'sleep', 'the snapshot wins over what the peer says');
});

t.test('response_flags: one table for codes and statuses', async (t) => {
  const cases: [unknown, string][] = [
    [new HboneStatusError(401, 'x'), 'DENY'],
    [new HboneStatusError(503, 'x'), 'CONNECT'],
    [new HboneStatusError(400, 'x'), 'BAD_REQUEST'],
    [new ProxyError('ERR_CONNECT', 'x'), 'CONNECT'],
    [new ProxyError('ERR_TIMEOUT', 'x'), 'CONNECT'],
    [new ProxyError('ERR_NO_HEALTHY_UPSTREAM', 'x'), 'CONNECT'],
    [new ProxyError('ERR_TLS_SAN_MISMATCH', 'x'), 'TLS_FAILURE'],
    [new ProxyError('ERR_TLS', 'x'), 'TLS_FAILURE'],
    [new ProxyError('ERR_SELF_CALL', 'x'), 'DENY'],
    [new ProxyError('ERR_CERT_NOT_LOCAL', 'x'), 'DENY'],
    [new ProxyError('ERR_SOMETHING_ELSE', 'x'), '-'],
    [new Error('plain'), '-'],
  ];
  for (const [err, want] of cases) t.equal(responseFlagsFor(err), want, `${(err as { code?: string }).code ?? 'Error'} ${(err as { status?: number }).status ?? ''}`);
  t.same([401, 403, 400, 500, 503, 200].map(responseFlagsForStatus), ['DENY', 'DENY', 'BAD_REQUEST', 'CONNECT', 'CONNECT', '-']);
});

t.test('inbound service guess: the service whose target port is the tunnel port', async (t) => {
  t.equal(guessService(echo, 8080, snap)?.hostname, 'echo.prod.svc.cluster.local');
  t.equal(guessService(echo, 9000, snap)?.hostname, 'echo.prod.svc.cluster.local', 'target 0 means the service port itself');
  t.equal(guessService(echo, 1234, snap), null);
  t.equal(guessService(sleep, 8080, snap), null);
});

t.test('clean ends are not errors', async (t) => {
  for (const r of ['complete', 'eof', 'reset', 'downstream closed before both directions finished', 'upstream error: ECONNRESET: read ECONNRESET']) t.ok(isCleanEnd(r), r);
  for (const r of ['stopped', 'proxy shutting down', 'connection closed because it is no longer allowed: x']) t.notOk(isCleanEnd(r), r);
});

t.test('content negotiation', async (t) => {
  const formats: [string | undefined, string][] = [
    [undefined, 'prometheus'],
    ['text/plain', 'prometheus'],
    ['application/json', 'prometheus'],
    ['application/openmetrics-text; version=1.0.0', 'openmetrics'],
    ['application/vnd.google.protobuf;q=0.6,application/openmetrics-text;version=1.0.0;q=0.5,text/plain;q=0.3', 'openmetrics'],
    ['APPLICATION/OPENMETRICS-TEXT', 'openmetrics'],
  ];
  for (const [accept, want] of formats) t.equal(negotiateFormat(accept), want, String(accept));
  const gzip: [string | undefined, boolean][] = [
    [undefined, false],
    ['', false],
    ['identity', false],
    ['gzip', true],
    ['deflate, gzip;q=0.8', true],
    ['gzip;q=0', false],
    ['*', true],
    ['br, GZIP', true],
  ];
  for (const [enc, want] of gzip) t.equal(acceptsGzip(enc), want, String(enc));
});
