/** baggage, forwarded and traceparent: the HBONE request/response headers, formatting and parsing. */
import t from 'tap';
import { formatBaggage, parseBaggage, workloadBaggage, type Baggage } from '../../../src/proxy/baggage';
import { formatForwardedFor, forwardedFor, parseForwarded } from '../../../src/proxy/forwarded';
import { formatTraceparent, newTraceparent, parseTraceparent } from '../../../src/proxy/traceparent';
import type { Workload } from '../../../src/state/model';

t.test('formatBaggage: ztunnel key order, empty values left out', async (t) => {
  const cases: [Baggage, string][] = [
    [{}, ''],
    [
      { clusterId: 'K1', namespace: 'NS1', workloadName: 'N1', workloadType: 'deployment', serviceName: 'N2', revision: 'V1' },
      'k8s.cluster.name=K1,k8s.namespace.name=NS1,k8s.deployment.name=N1,service.name=N2,service.version=V1',
    ],
    [{ namespace: 'ns', workloadName: 'job-1', workloadType: 'job' }, 'k8s.namespace.name=ns,k8s.job.name=job-1'],
    [{ workloadName: 'w' }, 'k8s.deployment.name=w'],
    [{ clusterId: '', namespace: 'ns', serviceName: '' }, 'k8s.namespace.name=ns'],
    [{ region: 'eu-west1', zone: 'eu-west1-b' }, 'cloud.region=eu-west1,cloud.availability_zone=eu-west1-b'],
    [{ namespace: 'a,b', serviceName: 'x=y', revision: 'has space' }, ''],
  ];
  for (const [b, want] of cases) t.equal(formatBaggage(b), want, JSON.stringify(b));
});

t.test('parseBaggage', async (t) => {
  const cases: [string | string[] | undefined, Baggage][] = [
    [undefined, {}],
    ['', {}],
    [
      'k8s.cluster.name=K1,k8s.namespace.name=NS1,k8s.deployment.name=N1,service.name=N2,service.version=V1',
      { clusterId: 'K1', namespace: 'NS1', workloadName: 'N1', workloadType: 'deployment', serviceName: 'N2', revision: 'V1' },
    ],
    ['k8s.cluster.name=,k8s.namespace.name=,k8s.deployment.name=,service.name=,service.version=', {}],
    [['k8s.cluster.name=K1', 'k8s.namespace.name=NS1', 'k8s.pod.name=p'], { clusterId: 'K1', namespace: 'NS1', workloadName: 'p', workloadType: 'pod' }],
    ['k8s.cronjob.name=c;prop=1, service.name = s ', { workloadName: 'c', workloadType: 'cronjob', serviceName: 's' }],
    ['k8s.statefulset.name=x,unknown=1,novalue,=v', {}],
    ['service.name=a,service.name=b', { serviceName: 'b' }],
    ['cloud.region=r,cloud.availability_zone=z', { region: 'r', zone: 'z' }],
  ];
  for (const [v, want] of cases) t.same(parseBaggage(v), want, JSON.stringify(v));
});

t.test('workloadBaggage and a round trip', async (t) => {
  const w = {
    clusterId: 'Kubernetes',
    namespace: 'default',
    workloadName: 'echo',
    workloadType: '',
    canonicalName: 'echo',
    canonicalRevision: 'v1',
    locality: { region: 'r1', zone: 'z1', subzone: '' },
  } as unknown as Workload;
  const b = workloadBaggage(w);
  t.equal(b.workloadType, 'deployment', 'the type defaults to deployment, as ztunnel');
  const text = formatBaggage(b);
  t.equal(text, 'k8s.cluster.name=Kubernetes,k8s.namespace.name=default,k8s.deployment.name=echo,service.name=echo,service.version=v1,cloud.region=r1,cloud.availability_zone=z1');
  t.same(parseBaggage(text), b);
  t.same(workloadBaggage({ ...w, locality: null } as unknown as Workload).region, undefined);
});

t.test('forwarded: for="ip:port", IPv6 bracketed inside quotes', async (t) => {
  t.equal(formatForwardedFor('10.0.0.1', 34567), 'for="10.0.0.1:34567"');
  t.equal(formatForwardedFor('2001:db8::1', 80), 'for="[2001:db8::1]:80"');
  const cases: [string | undefined, { ip: string; port: number | null } | null][] = [
    ['for="10.0.0.1:34567"', { ip: '10.0.0.1', port: 34567 }],
    ['for="[2001:db8::1]:80"', { ip: '2001:db8::1', port: 80 }],
    ['for=192.0.2.43', { ip: '192.0.2.43', port: null }],
    ['For="[::1]"', { ip: '::1', port: null }],
    ['for=192.0.2.43, for=198.51.100.17', { ip: '192.0.2.43', port: null }],
    ['host=example.com;for="10.1.1.1:5"', { ip: '10.1.1.1', port: 5 }],
    ['proto=http', null],
    [undefined, null],
    ['for=', null],
  ];
  for (const [v, want] of cases) t.same(forwardedFor(v), want, String(v));
});

t.test('parseForwarded: elements and pairs', async (t) => {
  t.same(parseForwarded('for="_gazonk"'), [{ for: '_gazonk' }]);
  t.same(parseForwarded('for=192.0.2.60;proto=http;by=203.0.113.43'), [{ for: '192.0.2.60', proto: 'http', by: '203.0.113.43' }]);
  t.same(parseForwarded('for=a, for=b;host="h\\"q"'), [{ for: 'a' }, { for: 'b', host: 'h"q' }]);
  t.same(parseForwarded('garbage'), []);
  t.same(parseForwarded('bad name=x;ok=1'), [{ ok: '1' }]);
  t.same(parseForwarded(undefined), []);
});

t.test('traceparent', async (t) => {
  const tp = newTraceparent();
  t.match(tp, /^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/);
  t.not(newTraceparent(), tp, 'fresh ids each time');
  t.same(parseTraceparent(tp)?.flags, 0);
  t.equal(newTraceparent(() => Buffer.alloc(24)), `00-${'0'.repeat(31)}1-${'0'.repeat(15)}1-00`, 'all-zero ids are avoided');
  const fixed = Buffer.from('0af7651916cd43dd8448eb211c80319cb7ad6b7169203331', 'hex');
  t.equal(newTraceparent(() => fixed), '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00');
  t.same(parseTraceparent('00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01'), {
    traceId: '0af7651916cd43dd8448eb211c80319c',
    spanId: 'b7ad6b7169203331',
    flags: 1,
  });
  for (const bad of [undefined, '', '01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01', `00-${'0'.repeat(32)}-b7ad6b7169203331-01`, `00-0af7651916cd43dd8448eb211c80319c-${'0'.repeat(16)}-01`, '00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01', '00-abc-def-01']) {
    t.equal(parseTraceparent(bad), null, String(bad));
  }
  t.equal(formatTraceparent({ traceId: 'a'.repeat(32), spanId: 'b'.repeat(16), flags: 1 }), `00-${'a'.repeat(32)}-${'b'.repeat(16)}-01`);
});
