import t from 'tap';
import { ConnectionManager, type ByteCounts } from '../../../src/proxy/connection-manager';
import type { ConnInfo, Decision } from '../../../src/authz/types';
import type { Workload } from '../../../src/state/model';

const W = (uid: string, policies: string[] = []): Workload => ({ uid, authorizationPolicies: policies }) as unknown as Workload;
const SLEEP = { trustDomain: 'cluster.local', namespace: 'default', serviceAccount: 'sleep' };

function conn(srcIp: string, dstPort: number): ConnInfo {
  return { srcIp, srcPort: 40000, identity: SLEEP, dstIp: '10.0.0.2', dstPort };
}

function handle(bytes: ByteCounts = { received: 0, sent: 0 }) {
  const closes: string[] = [];
  return { closes, h: { close: (r: string) => void closes.push(r), bytes: () => bytes } };
}

t.test('recheck closes only connections now denied, with the reason, once', async (t) => {
  const lines: { obj: object; msg: string }[] = [];
  const log = { debug() {}, info: (obj: object, msg: string) => void lines.push({ obj, msg }), warn() {} };
  const m = new ConnectionManager({ log, now: () => Date.UTC(2030, 0, 1) });
  const a = handle({ received: 10, sent: 20 });
  const b = handle();
  const ca = m.register(conn('10.0.0.1', 80), W('w1'), a.h);
  m.register(conn('10.0.0.3', 443), W('w1'), b.h);
  t.equal(m.size, 2);
  const seen: { dst: string; port: number }[] = [];
  const snapshot = { workloadByIp: (ip: string) => (ip === '10.0.0.2' ? W('w1-new', ['ns/p']) : undefined) };
  const deny443 = (c: ConnInfo, dst: Workload): Decision => {
    seen.push({ dst: dst.uid, port: c.dstPort });
    return c.dstPort === 443 ? { allowed: false, reason: 'explicitly denied by: ns/p', policy: 'ns/p' } : { allowed: true, reason: 'ok', policy: null };
  };
  const closed = m.recheck(snapshot, deny443);
  t.same(seen.map((s) => s.dst), ['w1-new', 'w1-new'], 'judged against the destination as it is in the new snapshot');
  t.equal(closed.length, 1);
  t.equal(closed[0]?.decision.policy, 'ns/p');
  t.same(a.closes, []);
  t.same(b.closes, ['connection closed because it is no longer allowed: explicitly denied by: ns/p']);
  t.match(lines[0], { obj: { src: '10.0.0.3:40000', dst: '10.0.0.2:443', srcIdentity: 'spiffe://cluster.local/ns/default/sa/sleep', policy: 'ns/p' } });
  t.same(m.recheck(snapshot, deny443), [], 'a connection being closed is not closed twice');
  t.same(b.closes.length, 1);
  t.same(m.list()[0], {
    id: ca.id,
    src: '10.0.0.1:40000',
    dst: '10.0.0.2:80',
    srcIdentity: 'spiffe://cluster.local/ns/default/sa/sleep',
    dstWorkload: 'w1',
    openedAt: '2030-01-01T00:00:00.000Z',
    bytesReceived: 10,
    bytesSent: 20,
  });
  m.release(ca);
  t.equal(m.size, 1);
});

t.test('recheck: a destination gone from the snapshot is judged as it was; a throwing authorize fails closed', async (t) => {
  const m = new ConnectionManager();
  const a = handle();
  m.register(conn('10.0.0.1', 80), W('old'), a.h);
  const seen: string[] = [];
  t.same(m.recheck({ workloadByIp: () => undefined }, (_c, dst) => (seen.push(dst.uid), { allowed: true, reason: '', policy: null })), []);
  t.same(seen, ['old']);
  const closed = m.recheck({ workloadByIp: () => undefined }, () => {
    throw new Error('boom');
  });
  t.equal(closed.length, 1);
  t.match(a.closes[0], /authorization failed: boom/);
});

t.test('closeAll closes every live connection once; a throwing close is logged, not fatal', async (t) => {
  const warns: string[] = [];
  const m = new ConnectionManager({ log: { debug() {}, info() {}, warn: (_o: object, msg: string) => void warns.push(msg) } });
  const a = handle();
  m.register(conn('10.0.0.1', 80), W('w'), a.h);
  m.register(conn('10.0.0.1', 81), W('w'), { close: () => { throw new Error('already gone'); }, bytes: () => ({ received: 0, sent: 0 }) });
  t.equal(m.closeAll('draining'), 2);
  t.same(a.closes, ['draining']);
  t.same(warns, ['closing a connection failed']);
  t.equal(m.closeAll('draining'), 0, 'already closing');
  t.equal(m.size, 2, 'still tracked until their owners release them');
});

t.test('recheck logs dry-run lines only when a connection\'s dry-run verdict changes, not on every swap', async (t) => {
  const lines: { obj: Record<string, unknown>; msg: string }[] = [];
  const log = { debug() {}, info: (obj: object, msg: string) => void lines.push({ obj: obj as Record<string, unknown>, msg }), warn() {} };
  const m = new ConnectionManager({ log });
  const snapshot = { workloadByIp: () => undefined };
  const verdict = (dryRun: { policy: string; wouldAllow: boolean }[]) => (): Decision => ({ allowed: true, reason: 'ok', policy: null, dryRun });
  const tryDeny = verdict([{ policy: 'ns/try', wouldAllow: false }]);

  const a = handle();
  const ta = m.register(conn('10.0.0.1', 80), W('w'), a.h);
  m.recheck(snapshot, tryDeny);
  m.recheck(snapshot, tryDeny);
  t.same(lines.map((l) => l.obj['policy']), ['ns/try'], 'two swaps with the same dry-run policy: one line');

  m.recheck(snapshot, verdict([{ policy: 'ns/try', wouldAllow: true }]));
  t.equal(lines.length, 2, 'the dry-run policy now would allow: a new line');
  t.match(lines[1], { obj: { policy: 'ns/try', wouldAllow: true } });
  m.recheck(snapshot, verdict([{ policy: 'ns/try', wouldAllow: true }, { policy: 'ns/other', wouldAllow: false }]));
  t.same(lines.slice(2).map((l) => l.obj['policy']), ['ns/try', 'ns/other'], 'another dry-run policy joins: the lines of the new verdict');
  m.recheck(snapshot, verdict([]));
  m.recheck(snapshot, tryDeny);
  t.equal(lines.length, 5, 'dry-run policy gone, then back: logged again when it comes back');

  // admitted with the decision whose lines the owner logged already: a swap with the same verdict adds none
  const b = handle();
  m.release(ta);
  m.register(conn('10.0.0.3', 80), W('w'), b.h, tryDeny());
  m.recheck(snapshot, tryDeny);
  t.equal(lines.length, 5, 'nothing new for a connection admitted on the same dry-run verdict');
  m.recheck(snapshot, verdict([]));
  t.equal(lines.length, 5, 'no dry-run policy any more: nothing to log');
  t.same(a.closes, []);
  t.same(b.closes, [], 'dry-run verdicts never close a connection');
});
