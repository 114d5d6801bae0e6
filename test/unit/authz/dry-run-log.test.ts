import t from 'tap';
import { authorize } from '../../../src/authz/authorize';
import { logDryRun } from '../../../src/authz/dry-run-log';
import { ConnectionManager } from '../../../src/proxy/connection-manager';
import { parseSnapshot } from '../../../src/state/parse';
import { buildSnapshot, type Snapshot } from '../../../src/state/snapshot';
import { conn, workload } from './fixtures';

function capture(): { lines: { obj: Record<string, unknown>; msg: string }[]; log: { debug(): void; info(o: object, m: string): void; warn(): void } } {
  const lines: { obj: Record<string, unknown>; msg: string }[] = [];
  return { lines, log: { debug() {}, info: (obj, msg) => void lines.push({ obj: obj as Record<string, unknown>, msg }), warn() {} } };
}

function snapshotOf(doc: unknown): Snapshot {
  return buildSnapshot(parseSnapshot(JSON.stringify(doc), { source: 'test', trustDomain: 'cluster.local' }), { version: 1, nodeName: 'node1' });
}

const HTTPBIN = { uid: 'u1', name: 'httpbin', namespace: 'default', serviceAccount: 'httpbin', workloadIps: ['10.0.2.7'], protocol: 'HBONE', node: 'node1' };
const denySleep = (name: string, dryRun: boolean): Record<string, unknown> => ({
  name,
  namespace: 'default',
  scope: 'Namespace',
  action: 'Deny',
  dryRun,
  rules: [[[{ principals: [{ Exact: 'cluster.local/ns/default/sa/sleep' }] }]]],
});

t.test('logDryRun: one line per dry-run entry, naming the policy and both outcomes; nothing without entries', async (t) => {
  const { lines, log } = capture();
  logDryRun(log, conn(), { allowed: true, reason: 'no allow policies', policy: null });
  logDryRun(log, conn(), { allowed: true, reason: 'no allow policies', policy: null, dryRun: [] });
  t.equal(lines.length, 0);
  logDryRun(log, conn(), {
    allowed: false,
    reason: 'allow policies exist, but none allowed',
    policy: null,
    dryRun: [{ policy: 'default/a', wouldAllow: true }, { policy: 'default/b', wouldAllow: true }],
  });
  t.equal(lines.length, 2);
  t.same(lines[0]?.obj, {
    src: '10.0.1.5:40000',
    dst: '10.0.2.7:8080',
    srcIdentity: 'spiffe://cluster.local/ns/default/sa/sleep',
    policy: 'default/a',
    dryRun: true,
    wouldAllow: true,
    allowed: false,
    reason: 'allow policies exist, but none allowed',
  });
  t.equal(lines[0]?.msg, 'dry-run policy default/a would have allowed this connection (enforced: denied)');
  t.equal(lines[1]?.obj['policy'], 'default/b');
  logDryRun(log, conn({ identity: null }), authorize(conn({ identity: null }), workload(), snapshotOf({ policies: [denySleep('x', true)] })));
  t.equal(lines.length, 2, 'a dry-run policy that would not change the outcome is not logged');
});

t.test("recheck looks the destination up in the node's network and logs dry-run policies", async (t) => {
  const { lines, log } = capture();
  const closes: string[] = [];
  const m = new ConnectionManager({ log, network: 'net1' });
  // opened against a destination with no policies
  m.register(conn(), workload({ network: 'net1' }), { close: (r) => void closes.push(r), bytes: () => ({ received: 0, sent: 0 }) });

  // a dry-run deny selected through the workload as the new snapshot has it in net1: logged, not enforced
  const dry = snapshotOf({ workloads: [{ ...HTTPBIN, network: 'net1', authorizationPolicies: ['other/try'] }], policies: [{ ...denySleep('try', true), namespace: 'other', scope: 'WorkloadSelector' }] });
  t.same(m.recheck(dry, authorize), []);
  t.same(closes, []);
  t.equal(lines.length, 1, 'one dry-run line');
  t.equal(lines[0]?.obj['policy'], 'other/try');
  t.equal(lines[0]?.obj['wouldAllow'], false);

  // the same policy enforced: found only through the net1 lookup, so the connection is closed
  const enforced = snapshotOf({ workloads: [{ ...HTTPBIN, network: 'net1', authorizationPolicies: ['other/try'] }], policies: [{ ...denySleep('try', false), namespace: 'other', scope: 'WorkloadSelector' }] });
  t.equal(m.recheck(enforced, authorize).length, 1);
  t.match(closes, [/explicitly denied by: other\/try/]);
});
