import t from 'tap';
import { MessageChannel } from 'node:worker_threads';
import { once } from 'node:events';
import { encodeDoc } from '../../../src/state/doc-bytes';
import { parseSnapshot } from '../../../src/state/parse';
import { snapshotMessage, type SnapshotMessage } from '../../../src/workers/protocol';
import { SnapshotMirror } from '../../../src/workers/snapshot-mirror';
import { CertMirror } from '../../../src/workers/cert-mirror';
import type { WorkloadCert } from '../../../src/identity/workload-cert';
import type { Identity } from '../../../src/identity/spiffe';

function doc(ips: string[]) {
  return parseSnapshot(
    JSON.stringify({ workloads: ips.map((ip, i) => ({ uid: `u${i}`, name: `w${i}`, namespace: 'ns', workloadIps: [ip], node: i === 0 ? 'me' : 'other' })) }),
    { source: 'test', trustDomain: 'cluster.local' },
  );
}

t.test('snapshot messages share one buffer across threads and install in version order', async (t) => {
  const msg = snapshotMessage(3, encodeDoc(doc(['10.0.0.1', '10.0.0.2'])));
  t.ok(msg.bytes.buffer instanceof SharedArrayBuffer, 'bytes live in a SharedArrayBuffer');
  const { port1, port2 } = new MessageChannel();
  port1.postMessage(msg);
  const [received] = (await once(port2, 'message')) as [SnapshotMessage];
  port1.close();
  // same memory: a write through the receiver's view is visible in the sender's
  const probe = received.bytes[received.bytes.length - 1]!;
  received.bytes[received.bytes.length - 1] = probe ^ 0xff;
  t.equal(msg.bytes[msg.bytes.length - 1], probe ^ 0xff, 'the receiver sees the sender\'s memory, not a copy');
  received.bytes[received.bytes.length - 1] = probe;

  const mirror = new SnapshotMirror('me');
  const seen: number[] = [];
  mirror.subscribe((next, prev) => seen.push(prev.version, next.version));
  t.equal(mirror.current.version, 0);
  t.equal(mirror.apply(received), true);
  t.equal(mirror.current.version, 3);
  t.equal(mirror.current.workloadByIp('10.0.0.2')?.name, 'w1');
  t.same(mirror.current.localWorkloads().map((w) => w.name), ['w0'], 'local workloads follow the worker\'s node name');
  t.equal(mirror.apply(snapshotMessage(3, encodeDoc(doc(['10.0.0.9'])))), false, 'same version ignored');
  t.equal(mirror.apply(snapshotMessage(2, encodeDoc(doc(['10.0.0.9'])))), false, 'older version ignored');
  t.equal(mirror.current.workloadByIp('10.0.0.9'), undefined);
  t.throws(() => mirror.apply({ type: 'snapshot', version: 4, bytes: new Uint8Array([1, 2, 3]) }), { code: 'ERR_SNAPSHOT_BYTES' });
  t.equal(mirror.current.version, 3, 'bad bytes leave the last good snapshot');
  t.same(seen, [0, 3], 'subscribers told once, with prev and next');
});

const ID: Identity = { trustDomain: 'cluster.local', namespace: 'ns', serviceAccount: 'sa' };
function cert(notBefore: number, notAfter: number, serial: string): WorkloadCert {
  return { identity: ID, certPem: 'c', keyPem: 'k', chainPem: [], rootsPem: [], serial, notBefore: new Date(notBefore), notAfter: new Date(notAfter) };
}

t.test('cert mirror serves only valid certs, the newest by sequence wins, waiters are released', async (t) => {
  let now = 1_000_000;
  const m = new CertMirror({ waitMs: 60_000, now: () => now });
  t.equal(m.get(ID), null);
  const waiting = m.fetch(ID);
  t.equal(m.put(cert(now - 10, now + 1000, 'a'), 1), true);
  t.equal((await waiting).serial, 'a', 'a fetch waiting for the first cert gets it');
  m.put(cert(now - 10, now + 5000, 'b'), 2);
  t.equal(m.get(ID)?.serial, 'b', 'rotation: the next cert replaces the old one');
  t.equal(m.put(cert(now - 10, now + 9000, 'stale'), 1), false, 'an older sequence is ignored');
  t.equal(m.get(ID)?.serial, 'b', 'a resent older cert does not roll back, even expiring later');
  t.equal(m.put(cert(now - 10, now + 5000, 'dup'), 2), false, 'the same sequence again is ignored');
  t.equal(m.get(ID)?.serial, 'b');
  m.put(cert(now - 10, now + 5000, 're-issued'), 3);
  t.equal(m.get(ID)?.serial, 're-issued', 'a re-issue with the same notAfter wins by sequence, not by arrival');
  m.put(cert(now - 10, now + 3000, 'shorter'), 5);
  t.equal(m.get(ID)?.serial, 'shorter', 'a newer cert that expires sooner (new CA, shorter TTL) still wins');
  const other = { ...ID, serviceAccount: 'x' };
  t.equal(m.put({ ...cert(now - 10, now + 5000, 'x1'), identity: other }, 4), true, 'sequences are compared per identity');
  now += 6000;
  t.equal(m.get(ID), null, 'an expired cert is never served');
  m.put(cert(now + 500, now + 9000, 'future'), 6);
  t.equal(m.get(ID), null, 'a not-yet-valid cert is never served');
  const gone = m.fetch({ ...ID, serviceAccount: 'other' });
  m.forget({ ...ID, serviceAccount: 'other' });
  await t.rejects(gone, { code: 'ERR_CERT_UNAVAILABLE' }, 'forget releases waiters with an error');
  m.forget(other);
  t.equal(m.get(other), null, 'a forgotten identity has no certificate');
  // forget drops the identity's sequence too (the map would otherwise keep every identity that
  // ever left the node): the next certificate is taken even under a number not above the old one
  t.equal(m.put({ ...cert(now - 10, now + 5000, 'back'), identity: other }, 1), true, 'after forget, the identity starts afresh');
  t.equal(m.get(other)?.serial, 'back');
  t.equal(m.put({ ...cert(now - 10, now + 5000, 'stale'), identity: other }, 1), false, 'and orders by sequence again from there');
});

t.test('cert mirror fetch gives up after waitMs', async (t) => {
  const m = new CertMirror({ waitMs: 20 });
  // the mirror's wait timer is unref'd (a pending fetch must not keep a worker alive), so this
  // test holds the event loop open itself until the rejection arrives
  const hold = setInterval(() => undefined, 1000);
  await t.rejects(m.fetch(ID), { code: 'ERR_CERT_UNAVAILABLE', message: /within 20 ms/ });
  clearInterval(hold);
});
