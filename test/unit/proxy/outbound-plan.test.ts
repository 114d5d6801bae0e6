/**
 * planOutbound, table-driven over one parsed snapshot: no sockets, the random source injected.
 * Each table row names the rule it pins (ztunnel's outbound `build_request` order: self-call
 * refusal, service VIP → weighted healthy endpoint, workload IP directly, passthrough).
 */
import t from 'tap';
import { planOutbound, type OutboundPlan } from '../../../src/proxy/outbound-plan';
import { formatSpiffe } from '../../../src/identity/spiffe';
import { parseSnapshot } from '../../../src/state/parse';
import { buildSnapshot } from '../../../src/state/snapshot';
import type { Workload } from '../../../src/state/model';

const wl = (name: string, ips: string[], extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  uid: `c1//v1/Pod/default/${name}`, name, namespace: 'default', serviceAccount: `sa-${name}`, workloadIps: ips, protocol: 'HBONE', node: 'node-1', ...extra,
});

const doc = parseSnapshot(
  JSON.stringify({
    workloads: [
      wl('client', ['10.0.0.1']),
      // weighted: heavy (3) and light (1) serve "weighted"; sick is Unhealthy and serves it too
      wl('heavy', ['10.0.1.1'], { capacity: 3, services: { 'default/weighted.svc': { 80: 8080 } } }),
      wl('light', ['10.0.1.2'], { capacity: 1, services: { 'default/weighted.svc': { 80: 8080 } } }),
      wl('sick', ['10.0.1.3'], { capacity: 100, status: 'Unhealthy', services: { 'default/weighted.svc': { 80: 8080 } } }),
      // every endpoint of "down" is unhealthy or has no IP
      wl('down1', ['10.0.2.1'], { status: 'Unhealthy', services: { 'default/down.svc': { 80: 80 } } }),
      wl('noip', [], { services: { 'default/down.svc': { 80: 80 } } }),
      // port mapping: the endpoint overrides 80 → 9090; 81 follows the service (0 = same port); 82 → 0 on the endpoint
      wl('mapped', ['10.0.3.1'], { services: { 'default/ports.svc': { 80: 9090, 82: 0 } } }),
      // dual stack endpoint of a dual stack service; v4-only endpoint of another
      wl('dual', ['10.0.4.1', 'fd00::4:1'], { services: { 'default/dual.svc': { 80: 8080 } } }),
      wl('v4only', ['10.0.5.1'], { services: { 'default/v4only.svc': { 80: 8080 } } }),
      // plain TCP endpoint
      wl('legacy', ['10.0.6.1'], { protocol: 'TCP', services: { 'default/legacy.svc': { 80: 8080 } } }),
      // behind a service with SANs
      wl('sanned', ['10.0.7.1'], { services: { 'default/sans.svc': { 443: 8443 } } }),
    ],
    services: [
      { name: 'weighted', namespace: 'default', hostname: 'weighted.svc', vips: ['/10.96.0.1'], ports: { 80: 8080 } },
      { name: 'down', namespace: 'default', hostname: 'down.svc', vips: ['/10.96.0.2'], ports: { 80: 80 } },
      { name: 'ports', namespace: 'default', hostname: 'ports.svc', vips: ['/10.96.0.3'], ports: { 80: 8080, 81: 0, 82: 8282 } },
      { name: 'dual', namespace: 'default', hostname: 'dual.svc', vips: ['/10.96.0.4', '/fd00:96::4'], ports: { 80: 8080 } },
      { name: 'v4only', namespace: 'default', hostname: 'v4only.svc', vips: ['/fd00:96::5'], ports: { 80: 8080 } },
      { name: 'legacy', namespace: 'default', hostname: 'legacy.svc', vips: ['/10.96.0.6'], ports: { 80: 8080 } },
      {
        name: 'sans', namespace: 'default', hostname: 'sans.svc', vips: ['/10.96.0.7'], ports: { 443: 8443 },
        subjectAltNames: ['spiffe://other.domain/ns/shared/sa/frontend', 'not-a-spiffe-id', 'spiffe://cluster.local/ns/default/sa/canary'],
      },
    ],
    policies: [],
  }),
  { source: 'test', trustDomain: 'cluster.local' },
);
const snap = buildSnapshot(doc, { version: 1, nodeName: 'node-1' });
const client = snap.workloadByIp('10.0.0.1')!;

const fixed = (r: number) => (): number => r;
const plan = (dstIp: string, dstPort: number, random: () => number = fixed(0), source: Workload = client): OutboundPlan =>
  planOutbound({ source, dstIp, dstPort }, snap, { random });

/** Where a plan sends the bytes, flattened for table comparison. */
function summary(p: OutboundPlan): Record<string, unknown> {
  switch (p.kind) {
    case 'reject':
      return { kind: p.kind, code: p.code };
    case 'passthrough':
      return { kind: p.kind, target: `${p.target.ip}:${p.target.port}` };
    case 'tcp':
      return { kind: p.kind, target: `${p.target.ip}:${p.target.port}`, workload: p.workload.name, service: p.service?.hostname ?? null };
    case 'hbone':
      return {
        kind: p.kind,
        target: `${p.target.ip}:${p.target.port}`,
        nextHop: `${p.nextHop.ip}:${p.nextHop.port}`,
        authority: p.authority,
        workload: p.workload.name,
        service: p.service?.hostname ?? null,
        expected: p.expectedIdentities.map(formatSpiffe),
      };
  }
}

const id = (sa: string): string => `spiffe://cluster.local/ns/default/sa/${sa}`;

t.test('routing table', async (t) => {
  const rows: [string, string, number, Record<string, unknown>][] = [
    // self-calls on loopback, any loopback form, are refused before anything else
    ['self-call :15001', '127.0.0.1', 15001, { kind: 'reject', code: 'ERR_SELF_CALL' }],
    ['self-call :15006', '127.0.0.1', 15006, { kind: 'reject', code: 'ERR_SELF_CALL' }],
    ['self-call :15008', '127.0.0.1', 15008, { kind: 'reject', code: 'ERR_SELF_CALL' }],
    ['self-call on another 127/8 address', '127.3.2.1', 15008, { kind: 'reject', code: 'ERR_SELF_CALL' }],
    ['self-call on ::1', '::1', 15006, { kind: 'reject', code: 'ERR_SELF_CALL' }],
    ['self-call as v4-mapped v6', '::ffff:127.0.0.1', 15001, { kind: 'reject', code: 'ERR_SELF_CALL' }],
    ['loopback, not a proxy port: passthrough', '127.0.0.1', 8080, { kind: 'passthrough', target: '127.0.0.1:8080' }],
    ['a proxy port off loopback is no self-call', '10.9.9.9', 15008, { kind: 'passthrough', target: '10.9.9.9:15008' }],
    // unknown destination: passed through unchanged
    ['unknown destination', '192.0.2.7', 443, { kind: 'passthrough', target: '192.0.2.7:443' }],
    // service errors
    ['service without the port', '10.96.0.1', 81, { kind: 'reject', code: 'ERR_NO_SERVICE_PORT' }],
    ['service with only unhealthy / IP-less endpoints', '10.96.0.2', 80, { kind: 'reject', code: 'ERR_NO_HEALTHY_UPSTREAM' }],
    // port mapping
    ['endpoint mapping wins over the service', '10.96.0.3', 80, hbone('mapped', '10.0.3.1', 9090, 'ports.svc')],
    ['service target port 0 = the service port', '10.96.0.3', 81, hbone('mapped', '10.0.3.1', 81, 'ports.svc')],
    ['endpoint target port 0 = the service port', '10.96.0.3', 82, hbone('mapped', '10.0.3.1', 82, 'ports.svc')],
    // address family follows the VIP the client dialled
    ['v4 VIP → the endpoint v4 address', '10.96.0.4', 80, hbone('dual', '10.0.4.1', 8080, 'dual.svc')],
    ['v6 VIP → the endpoint v6 address', 'fd00:96::4', 80, hbone('dual', 'fd00::4:1', 8080, 'dual.svc')],
    ['v6 VIP, v4-only endpoint → its first address', 'fd00:96::5', 80, hbone('v4only', '10.0.5.1', 8080, 'v4only.svc')],
    ['v6 VIP in another textual form', 'FD00:96:0:0:0:0:0:4', 80, hbone('dual', 'fd00::4:1', 8080, 'dual.svc')],
    // HBONE vs TCP endpoint
    ['TCP endpoint through its service: plain TCP to the target port', '10.96.0.6', 80, { kind: 'tcp', target: '10.0.6.1:8080', workload: 'legacy', service: 'legacy.svc' }],
    ['TCP workload by IP', '10.0.6.1', 7000, { kind: 'tcp', target: '10.0.6.1:7000', workload: 'legacy', service: null }],
    // a workload IP directly: that workload, the port as dialled, no service
    ['HBONE workload by IP', '10.0.3.1', 1234, hbone('mapped', '10.0.3.1', 1234, null)],
    ['v6 workload IP', 'fd00::4:1', 80, hbone('dual', 'fd00::4:1', 80, null)],
    // service SANs: the SPIFFE ones, then the workload identity; the non-SPIFFE SAN is ignored
    [
      'service SANs join the workload identity',
      '10.96.0.7',
      443,
      {
        ...hbone('sanned', '10.0.7.1', 8443, 'sans.svc'),
        expected: ['spiffe://other.domain/ns/shared/sa/frontend', id('canary'), id('sa-sanned')],
      },
    ],
    ['the same workload by IP: no service, so no service SANs', '10.0.7.1', 8443, hbone('sanned', '10.0.7.1', 8443, null)],
  ];
  for (const [name, ip, port, want] of rows) t.same(summary(plan(ip, port)), want, name);
});

function hbone(workload: string, ip: string, port: number, service: string | null): Record<string, unknown> {
  const authority = ip.includes(':') ? `[${ip}]:${port}` : `${ip}:${port}`;
  // summary() prints target and nextHop as ip:port without brackets
  return { kind: 'hbone', target: `${ip}:${port}`, nextHop: `${ip}:15008`, authority, workload, service, expected: [id(`sa-${workload}`)] };
}

/** mulberry32: a small seeded PRNG, so the split below is the same on every run. */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

function split(random: () => number, n: number): Record<string, number> {
  const counts: Record<string, number> = {};
  for (let i = 0; i < n; i++) {
    const p = plan('10.96.0.1', 80, random);
    const name = p.kind === 'hbone' ? p.workload.name : p.kind;
    counts[name] = (counts[name] ?? 0) + 1;
  }
  return counts;
}

t.test('capacity weighting: heavy (3) and light (1) split 3:1; the unhealthy endpoint never chosen', async (t) => {
  // evenly spaced draws over [0, 1): the split is exact
  let i = 0;
  const N = 4000;
  t.same(split(() => i++ / N, N), { heavy: 3000, light: 1000 }, 'evenly spaced draws: exactly 3:1');
  // a seeded PRNG: near 3:1 (a pick that ignored capacity would land near 1:1, one that kept the unhealthy near 100:4)
  const c = split(seeded(20261123), N);
  t.same(Object.keys(c).sort(), ['heavy', 'light'], 'only the healthy endpoints');
  const share = (c['heavy'] ?? 0) / N;
  t.ok(share > 0.72 && share < 0.78, `heavy share ${share} within 0.72..0.78 of the expected 0.75`);
});

t.test('the pick at the edges of [0, 1)', async (t) => {
  const at = (r: number): string => {
    const p = plan('10.96.0.1', 80, fixed(r));
    return p.kind === 'hbone' ? p.workload.name : p.kind;
  };
  t.equal(at(0), 'heavy', 'r = 0: the first endpoint');
  t.equal(at(0.7499), 'heavy', 'just below 3/4: still heavy');
  t.equal(at(0.75), 'light', 'at 3/4: light');
  t.equal(at(0.999999), 'light', 'just below 1: the last endpoint');
});

t.test('a service VIP is looked up in the source workload network', async (t) => {
  const netDoc = parseSnapshot(
    JSON.stringify({
      workloads: [
        { ...wl('remote-client', ['10.0.0.1']), network: 'net2' },
        { ...wl('remote-ep', ['10.0.9.1']), network: 'net2', services: { 'default/remote.svc': { 80: 8080 } } },
      ],
      services: [{ name: 'remote', namespace: 'default', hostname: 'remote.svc', vips: ['net2/10.96.9.1'], ports: { 80: 8080 } }],
      policies: [],
    }),
    { source: 'test', trustDomain: 'cluster.local' },
  );
  const netSnap = buildSnapshot(netDoc, { version: 1, nodeName: 'node-1' });
  const remoteClient = netSnap.workloadByIp('10.0.0.1', 'net2')!;
  const p = planOutbound({ source: remoteClient, dstIp: '10.96.9.1', dstPort: 80 }, netSnap, { random: fixed(0) });
  t.same(summary(p), hbone('remote-ep', '10.0.9.1', 8080, 'remote.svc'), 'net2 source reaches the net2 VIP');
  t.same(summary(plan('10.96.9.1', 80)), { kind: 'passthrough', target: '10.96.9.1:80' }, 'a default-network source does not see it');
});

t.test('service SANs are parsed once per snapshot and shared by every plan, which never shares its own list', async (t) => {
  const sans = snap.serviceByVip('10.96.0.7')!;
  const parsed = snap.serviceIdentities(sans);
  t.same(parsed.map(formatSpiffe), ['spiffe://other.domain/ns/shared/sa/frontend', id('canary')], 'the SPIFFE SANs, in order');
  t.equal(snap.serviceIdentities(sans), parsed, 'the same parsed list on every call: no parsing per connection');
  t.ok(Object.isFrozen(parsed) && parsed.every((i) => Object.isFrozen(i)), 'frozen: plans share it safely');
  t.same(snap.serviceIdentities(snap.serviceByVip('10.96.0.1')!), [], 'a service without SANs has none');
  // an equal Service object that is not this snapshot's own (e.g. from another snapshot) still works
  t.same(snap.serviceIdentities({ ...sans }).map(formatSpiffe), parsed.map(formatSpiffe));

  const [a, b] = [plan('10.96.0.7', 443), plan('10.96.0.7', 443)];
  if (a.kind !== 'hbone' || b.kind !== 'hbone') throw new Error('expected HBONE plans');
  t.equal(a.expectedIdentities[0], parsed[0], 'the plan reuses the parsed identity');
  t.not(a.expectedIdentities, b.expectedIdentities, 'each plan has its own list');
  t.equal(snap.serviceIdentities(sans).length, 2, 'building plans leaves the cached list as it was');
});
