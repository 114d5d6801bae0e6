/**
 * Inbound access-log addresses and identities, as ztunnel writes them (proxy/inbound.rs and
 * proxy/metrics.rs): over HBONE dst.addr is where the client connected (podIP:15008) and
 * dst.hbone_addr the CONNECT target; plaintext (:15006) logs the target as dst.addr, no
 * dst.hbone_addr, and neither identity (both are only logged with mutual TLS).
 */
import t from 'tap';
import { AccessLog } from '../../src/logging/access-log';
import { Logging } from '../../src/logging/logger';
import { ConnObserver } from '../../src/metrics/conn-observer';
import { ProxyMetrics } from '../../src/metrics/registry';
import { parseSnapshot } from '../../src/state/parse';
import { buildSnapshot } from '../../src/state/snapshot';
import type { InboundConnRecord, InboundInfo } from '../../src/proxy/inbound';

const snap = buildSnapshot(
  parseSnapshot(
    JSON.stringify({
      workloads: [
        { uid: 'a', name: 'sleep-1', namespace: 'default', serviceAccount: 'sleep', workloadIps: ['10.0.0.1'], protocol: 'HBONE', workloadName: 'sleep', node: 'n' },
        { uid: 'b', name: 'echo-1', namespace: 'default', serviceAccount: 'echo', workloadIps: ['10.0.0.2'], protocol: 'HBONE', workloadName: 'echo', node: 'n' },
      ],
    }),
    { source: 'test', trustDomain: 'cluster.local' },
  ),
  { version: 1, nodeName: 'n' },
);
const echo = snap.workloadByIp('10.0.0.2')!;
const sleepId = { trustDomain: 'cluster.local', namespace: 'default', serviceAccount: 'sleep' };
const SLEEP = 'spiffe://cluster.local/ns/default/sa/sleep';
const ECHO = 'spiffe://cluster.local/ns/default/sa/echo';
const local = { ip: '10.0.0.2', port: 15008 };

function setup(): { observer: ConnObserver; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const logging = new Logging({ format: 'json', level: 'debug', destination: { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) } });
  const metrics = new ProxyMetrics({ version: '1', processMetrics: false });
  const observer = new ConnObserver({ traffic: metrics.traffic, access: new AccessLog(logging.for('access')), snapshot: () => snap, clusterId: 'K' });
  return { observer, lines };
}

const ADDR_KEYS = ['dst.addr', 'dst.hbone_addr', 'src.identity', 'dst.identity'] as const;
function addrFields(l: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(ADDR_KEYS.map((k) => [k, l[k]]));
}

const opened: Array<{ name: string; info: InboundInfo; want: Record<string, unknown> }> = [
  {
    name: 'HBONE: dst.addr is the HBONE listener, dst.hbone_addr the target, both identities',
    info: { srcIp: '10.0.0.1', srcPort: 4000, identity: sleepId, dstIp: '10.0.0.2', dstPort: 8080, local },
    want: { 'dst.addr': '10.0.0.2:15008', 'dst.hbone_addr': '10.0.0.2:8080', 'src.identity': SLEEP, 'dst.identity': ECHO },
  },
  {
    name: 'plaintext (:15006): the target is dst.addr; no HBONE address, no identities',
    info: { srcIp: '10.0.0.1', srcPort: 4001, identity: null, dstIp: '10.0.0.2', dstPort: 8080 },
    want: { 'dst.addr': '10.0.0.2:8080', 'dst.hbone_addr': undefined, 'src.identity': undefined, 'dst.identity': undefined },
  },
];

for (const c of opened) {
  t.test(c.name, async (t) => {
    const { observer, lines } = setup();
    const rec: InboundConnRecord = { info: c.info, dst: echo, baggage: {}, traceparent: null, openedAt: 0, bytes: () => ({ received: 0, sent: 0 }) };
    observer.inbound.onOpen!(rec);
    observer.inbound.onClose!(rec, { received: 1, sent: 2 }, 'complete');
    t.same(lines.map((l) => l['msg']), ['connection opened', 'connection complete']);
    for (const l of lines) t.same(addrFields(l), c.want, String(l['msg']));
  });
}

t.test('HBONE refusals log the HBONE listener as dst.addr too', async (t) => {
  const { observer, lines } = setup();
  // refused before the CONNECT named a target (ztunnel's log_early_deny: src.addr, dst.addr = conn.dst)
  observer.inbound.onReject!({ srcIp: '10.0.0.1', srcPort: 1, identity: sleepId, local }, 400, 'method GET is not CONNECT');
  // refused by policy once the target is known
  observer.inbound.onReject!({ srcIp: '10.0.0.1', srcPort: 2, identity: sleepId, dstIp: '10.0.0.2', dstPort: 8080, local }, 401, 'denied by policy: x');
  t.same(lines.map((l) => l['msg']), ['connection failed', 'connection opened', 'connection complete']);
  t.equal(lines[0]!['dst.addr'], '10.0.0.2:15008');
  t.same(addrFields(lines[2]!), { 'dst.addr': '10.0.0.2:15008', 'dst.hbone_addr': '10.0.0.2:8080', 'src.identity': SLEEP, 'dst.identity': ECHO });
});
