import t from 'tap';
import { DOC_BYTES_FORMAT, decodeDoc, encodeDoc } from '../../../src/state/doc-bytes';
import { parseSnapshot } from '../../../src/state/parse';
import { buildSnapshot } from '../../../src/state/snapshot';

const doc = parseSnapshot(
  JSON.stringify({
    workloads: [
      {
        uid: 'a', name: 'a', namespace: 'ns', workloadIps: ['10.0.0.1'], locality: { region: 'r' }, authorizationPolicies: ['ns/p'],
        services: { 'ns/s.ns': { 80: 8080, 443: 0 } },
      },
      { uid: 'b', name: 'b', namespace: 'ns', workloadIps: ['fd00::2'], services: { 'ns/s.ns': { 80: 8080, 443: 0 } } },
    ],
    services: [{ name: 's', namespace: 'ns', hostname: 's.ns', vips: ['net/10.96.0.1'], ports: { 80: 8080, 443: 443 }, loadBalancer: { mode: 'Failover', routingPreferences: ['Zone'] } }],
    policies: [{
      name: 'p', namespace: 'ns', scope: 'WorkloadSelector', action: 'Allow',
      rules: [[[{ principals: [{ Presence: [] }, { Suffix: '/sa/x' }], notSourceIps: ['10.0.0.0/8'], destinationPorts: [80] }]]],
    }],
  }),
  { source: 'test', trustDomain: 'td' },
);

t.test('round trip gives an equal, deeply frozen document', async (t) => {
  const bytes = encodeDoc(doc);
  t.ok(bytes instanceof Uint8Array);
  t.equal(bytes[4], DOC_BYTES_FORMAT);
  const back = decodeDoc(bytes);
  t.same(back, doc);
  t.not(back, doc);
  const w = back.workloads[0]!;
  for (const v of [back, back.workloads, w, w.workloadIps, w.locality, w.authorizationPolicies, w.services, w.services['ns/s.ns'],
    back.services[0], back.services[0]!.vips[0], back.services[0]!.loadBalancer, back.policies[0]!.rules[0]![0]![0]]) {
    t.ok(Object.isFrozen(v));
  }
  t.equal(back.workloads[1]!.services, w.services, 'repeated endpoint maps are shared again');
  t.equal(back.workloads[1]!.namespace, 'ns');
  // indexes built from the decoded copy answer like the original
  const snap = buildSnapshot(back, { version: 1, nodeName: '' });
  t.equal(snap.workloadByIp('fd00::2')?.uid, 'b');
  t.equal(snap.serviceByVip('10.96.0.1', 'net')?.name, 's');
  t.equal(snap.endpointsOf(snap.serviceByVip('10.96.0.1', 'net')!)[0]!.ports[443], 0);
  t.ok(snap.policies.byKey.has('ns/p'));
});

t.test('a copy inside a bigger buffer decodes (as after a postMessage into a pool)', async (t) => {
  const bytes = encodeDoc(doc);
  const big = new Uint8Array(bytes.length + 16);
  big.set(bytes, 8);
  t.same(decodeDoc(big.subarray(8, 8 + bytes.length)), doc);
});

t.test('foreign or mismatched bytes are refused', async (t) => {
  t.throws(() => decodeDoc(new Uint8Array([1, 2, 3])), { code: 'ERR_SNAPSHOT_BYTES', message: /bad magic/ });
  t.throws(() => decodeDoc(Buffer.from('{"workloads":[]}')), { code: 'ERR_SNAPSHOT_BYTES' });
  const bytes = encodeDoc(doc);
  bytes[4] = DOC_BYTES_FORMAT + 1;
  t.throws(() => decodeDoc(bytes), { code: 'ERR_SNAPSHOT_BYTES', message: /different builds/ });
});
