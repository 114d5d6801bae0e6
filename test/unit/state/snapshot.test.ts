import t from 'tap';
import type { PlanSnapshot } from '../../../src/proxy/outbound-plan';
import { parseSnapshot } from '../../../src/state/parse';
import { buildSnapshot, emptySnapshot } from '../../../src/state/snapshot';

const doc = parseSnapshot(
  JSON.stringify({
    workloads: [
      { uid: 'a', name: 'a', namespace: 'default', workloadIps: ['10.0.0.1', 'fd00::1'], node: 'node-1', services: { 'default/echo.svc': { 80: 8080 } } },
      { uid: 'b', name: 'b', namespace: 'default', workloadIps: ['10.0.0.2'], node: 'node-2', status: 'Unhealthy', services: { 'default/echo.svc': { 80: 9090 } } },
      { uid: 'c', name: 'c', namespace: 'other', workloadIps: ['10.0.0.1'], network: 'net2', node: 'node-1' },
      { uid: 'd', name: 'd', namespace: 'other', workloadIps: [], node: 'node-1' },
    ],
    services: [
      { name: 'echo', namespace: 'default', hostname: 'echo.svc', vips: ['/10.96.0.1', 'net2/10.96.0.1', 'fd00:96::1'], ports: { 80: 8080 } },
      { name: 'idle', namespace: 'default', hostname: 'idle.svc', vips: ['10.96.0.2'], ports: { 80: 80 } },
      { name: 'echo', namespace: 'other', hostname: 'echo.svc', vips: [], ports: { 80: 80 } },
    ],
    policies: [
      { name: 'g', namespace: 'istio-system', scope: 'Global', action: 'Deny', rules: [] },
      { name: 'n', namespace: 'default', scope: 'Namespace', action: 'Allow', rules: [[[{ namespaces: [{ Exact: 'default' }] }]]] },
    ],
  }),
  { source: 'test', trustDomain: 'cluster.local' },
);
const snap = buildSnapshot(doc, { version: 7, nodeName: 'node-1' });

t.test('workloads by IP, per network, any textual form', async (t) => {
  const cases: [string, string | undefined, string | undefined][] = [
    ['10.0.0.1', undefined, 'a'],
    ['10.0.0.1', '', 'a'],
    ['10.0.0.1', 'net2', 'c'],
    ['10.0.0.2', 'net2', undefined],
    ['::ffff:10.0.0.1', undefined, 'a'],
    ['::FFFF:10.0.0.2', '', 'b'],
    ['fd00::1', undefined, 'a'],
    ['FD00:0:0:0:0:0:0:1', undefined, 'a'],
    ['fd00::1', 'net2', undefined],
    ['10.0.0.9', undefined, undefined],
    ['not-an-ip', undefined, undefined],
  ];
  for (const [ip, network, uid] of cases) {
    t.equal(snap.workloadByIp(ip, network)?.uid, uid, `${network ?? '(default)'}/${ip}`);
  }
  t.equal(snap.workloadByUid('c')?.network, 'net2');
  t.equal(snap.workloadByUid('zz'), undefined);
});

t.test('services by VIP and by hostname', async (t) => {
  const echo = snap.serviceByHostname('default', 'echo.svc');
  t.equal(echo?.name, 'echo');
  t.equal(snap.serviceByHostname('other', 'echo.svc')?.namespace, 'other', 'the same hostname in two namespaces');
  t.equal(snap.serviceByHostname('nope', 'echo.svc'), undefined);
  t.equal(snap.serviceByVip('10.96.0.1'), echo);
  t.equal(snap.serviceByVip('10.96.0.1', 'net2'), echo);
  t.equal(snap.serviceByVip('::ffff:10.96.0.1'), echo);
  t.equal(snap.serviceByVip('FD00:96:0::1'), echo);
  t.equal(snap.serviceByVip('10.96.0.2')?.hostname, 'idle.svc');
  t.equal(snap.serviceByVip('10.96.0.2', 'net2'), undefined);
  t.equal(snap.serviceByVip('10.0.0.1'), undefined, 'a workload IP is not a VIP');
});

t.test('endpoints of a service: every workload naming it, with its own ports', async (t) => {
  const echo = snap.serviceByHostname('default', 'echo.svc')!;
  const eps = snap.endpointsOf(echo);
  t.same(eps.map((e) => [e.workload.uid, e.ports]), [['a', { 80: 8080 }], ['b', { 80: 9090 }]], 'unhealthy ones too, in document order');
  t.ok(Object.isFrozen(eps));
  t.same(snap.endpointsOf(snap.serviceByHostname('default', 'idle.svc')!), []);
  t.same(snap.endpointsOf(snap.serviceByHostname('other', 'echo.svc')!), [], 'same hostname, other namespace: not mixed up');
  const copy = { ...echo };
  t.equal(snap.endpointsOf(copy).length, 2, 'an equal Service object from another snapshot works too');
  t.same(snap.servicesOf(snap.workloadByUid('a')!).map((s) => s.name), ['echo']);
  t.same(snap.servicesOf(snap.workloadByUid('c')!), []);
});

t.test('a Snapshot is what the outbound plan looks things up in', async (t) => {
  const forPlan: PlanSnapshot = snap; // compile-time: the shapes agree
  t.equal(forPlan.serviceByVip('10.96.0.1')?.hostname, 'echo.svc');
});

t.test('local workloads are those on this node', async (t) => {
  t.same(snap.localWorkloads().map((w) => w.uid), ['a', 'c', 'd']);
  t.same(buildSnapshot(doc, { version: 1, nodeName: 'node-2' }).localWorkloads().map((w) => w.uid), ['b']);
  t.same(buildSnapshot(doc, { version: 1, nodeName: 'elsewhere' }).localWorkloads(), []);
});

t.test('version, doc and compiled policies', async (t) => {
  t.equal(snap.version, 7);
  t.equal(snap.nodeName, 'node-1');
  t.equal(snap.doc, doc);
  t.same(snap.policies.global.map((p) => p.key), ['istio-system/g']);
  t.same(snap.policies.byNamespace.get('default')?.map((p) => p.key), ['default/n']);
  t.same([...snap.policies.byKey.keys()].sort(), ['default/n', 'istio-system/g']);
});

t.test('the empty snapshot knows nothing', async (t) => {
  const e = emptySnapshot('node-1');
  t.equal(e.version, 0);
  t.equal(e.workloadByIp('10.0.0.1'), undefined);
  t.equal(e.serviceByVip('10.96.0.1'), undefined);
  t.same(e.localWorkloads(), []);
  t.equal(e.policies.byKey.size, 0);
});

t.test('a trusted document with duplicates keeps the first entry', async (t) => {
  const w = doc.workloads[0]!;
  const s = doc.services[0]!;
  const dup = buildSnapshot(
    { workloads: [w, { ...w, name: 'second' }], services: [s, { ...s, name: 'second' }], policies: [] },
    { version: 1, nodeName: '' },
  );
  t.equal(dup.workloadByUid('a')?.name, 'a');
  t.equal(dup.serviceByVip('10.96.0.1')?.name, 'echo');
  t.equal(dup.endpointsOf(s).length, 1);
});
