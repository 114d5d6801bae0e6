import t from 'tap';
import { CertManager, type CertManagerOptions } from '../../../src/identity/cert-manager';
import { LocalCa } from '../../../src/identity/ca';
import { isProxyError } from '../../../src/errors';
import { formatSpiffe, type Identity } from '../../../src/identity/spiffe';
import type { CertIssuer, WorkloadCert } from '../../../src/identity/workload-cert';

const MIN = 60_000;
const HOUR = 60 * MIN;
const T0 = Date.UTC(2030, 0, 1, 12, 0, 0);
const SLEEP: Identity = { trustDomain: 'cluster.local', namespace: 'default', serviceAccount: 'sleep' };
const API: Identity = { trustDomain: 'cluster.local', namespace: 'prod', serviceAccount: 'api' };

/** A real CA behind a switch: `fail` makes issuance reject; counts calls and the peak concurrency. */
class SwitchableIssuer implements CertIssuer {
  fail: string | null = null;
  calls = 0;
  active = 0;
  peak = 0;
  constructor(private readonly ca: LocalCa) {}
  async sign(id: Identity, ttlMs: number, now?: number): Promise<WorkloadCert> {
    this.calls++;
    this.active++;
    this.peak = Math.max(this.peak, this.active);
    try {
      if (this.fail) throw new Error(this.fail);
      return await this.ca.sign(id, ttlMs, now);
    } finally {
      this.active--;
    }
  }
}

async function setup(t: tap.Test, extra: Partial<CertManagerOptions> = {}) {
  const clock = { now: T0 };
  const ca = await LocalCa.generate({ now: T0 - HOUR });
  const issuer = new SwitchableIssuer(ca);
  const errors: [string, string, number][] = [];
  const mgr = new CertManager({
    issuer,
    ttlMs: HOUR,
    now: () => clock.now,
    tickMs: 0,
    onError: (id, err, retryAt) => errors.push([formatSpiffe(id), (err as Error).message, retryAt.getTime()]),
    ...extra,
  });
  t.teardown(() => mgr.close());
  return { clock, issuer, mgr, errors };
}

t.test('issues ahead of need, then serves the cert', async (t) => {
  const { mgr, issuer } = await setup(t);
  const seen: WorkloadCert[] = [];
  mgr.subscribe((c) => seen.push(c));
  t.equal(mgr.get(SLEEP), null, 'unknown identity: nothing');
  mgr.ensure([SLEEP, API, SLEEP]);
  t.same(mgr.states().map((s) => [s.id, s.state]), [
    [formatSpiffe(SLEEP), 'Initializing'],
    [formatSpiffe(API), 'Initializing'],
  ].sort());
  t.equal(mgr.get(SLEEP), null, 'not issued yet');
  await mgr.settled();
  t.equal(issuer.calls, 2, 'one issuance per identity (duplicates ignored)');
  const c = mgr.get(SLEEP)!;
  t.ok(c, 'available');
  t.same(c.identity, SLEEP);
  t.equal(c.notAfter.getTime(), Math.floor((T0 + HOUR) / 1000) * 1000, 'issued with the injected clock');
  t.same(mgr.states().map((s) => s.state), ['Available', 'Available']);
  t.equal(seen.length, 2, 'subscribers told of each issuance');
  mgr.ensure([SLEEP]);
  await mgr.settled();
  t.equal(issuer.calls, 2, 'ensure() of a known identity does not reissue');
});

t.test('rotates at half-life without disturbing users', async (t) => {
  const { mgr, issuer, clock } = await setup(t);
  const seen: string[] = [];
  const unsubscribe = mgr.subscribe((c) => seen.push(c.serial));
  mgr.ensure([SLEEP]);
  await mgr.settled();
  const first = mgr.get(SLEEP)!;
  const half = first.notBefore.getTime() + (first.notAfter.getTime() - first.notBefore.getTime()) / 2;
  t.equal(mgr.states()[0]!.refreshAt?.getTime(), half, 'refresh scheduled at half-life');

  clock.now = half - 1000;
  mgr.tick();
  await mgr.settled();
  t.equal(issuer.calls, 1, 'not before half-life');
  t.equal(mgr.get(SLEEP)?.serial, first.serial);

  clock.now = half;
  mgr.tick();
  t.equal(mgr.get(SLEEP)?.serial, first.serial, 'the old cert is served while the new one is issued');
  t.equal(mgr.states()[0]!.refreshAt, null, 'in flight');
  await mgr.settled();
  const second = mgr.get(SLEEP)!;
  t.equal(issuer.calls, 2);
  t.not(second.serial, first.serial, 'rotated');
  t.same(seen, [first.serial, second.serial]);
  unsubscribe();
  clock.now = second.notBefore.getTime() + (second.notAfter.getTime() - second.notBefore.getTime()) / 2;
  mgr.tick();
  await mgr.settled();
  t.equal(seen.length, 2, 'unsubscribed listener is not called');
  t.equal(issuer.calls, 3);
});

t.test('a failure keeps the old cert, retries with backoff, and expiry makes it Unavailable', async (t) => {
  const { mgr, issuer, clock, errors } = await setup(t);
  mgr.ensure([SLEEP]);
  await mgr.settled();
  const first = mgr.get(SLEEP)!;
  issuer.fail = 'CA unreachable';
  const half = first.notBefore.getTime() + (first.notAfter.getTime() - first.notBefore.getTime()) / 2;
  clock.now = half;
  mgr.tick();
  await mgr.settled();
  t.equal(issuer.calls, 2, 'attempted');
  t.equal(mgr.get(SLEEP)?.serial, first.serial, 'old cert kept');
  t.equal(mgr.states()[0]!.state, 'Available', 'still Available while the old cert is valid');
  t.same(errors, [[formatSpiffe(SLEEP), 'CA unreachable', half + 1000]], 'reported with the retry time');

  // Backoff: 1 s, 2 s, 4 s ... ; nothing happens before each is due.
  let at = half;
  for (const delay of [1000, 2000, 4000, 8000]) {
    const calls = issuer.calls;
    clock.now = at + delay - 1;
    mgr.tick();
    await mgr.settled();
    t.equal(issuer.calls, calls, `no retry before ${delay} ms`);
    clock.now = at + delay;
    mgr.tick();
    await mgr.settled();
    t.equal(issuer.calls, calls + 1, `retry after ${delay} ms`);
    at += delay;
  }

  clock.now = first.notAfter.getTime() + 1;
  t.equal(mgr.get(SLEEP), null, 'an expired cert is never returned');
  const st = mgr.states()[0]!;
  t.equal(st.state, 'Unavailable');
  t.equal(st.reason, 'CA unreachable');
  t.equal(st.cert?.serial, first.serial, 'the last cert is still shown for diagnosis');
  await t.rejects(mgr.fetch(SLEEP), { code: 'ERR_CERT_UNAVAILABLE', message: /CA unreachable/ }, 'fetch reports the failure at once');

  issuer.fail = null;
  clock.now = errors[errors.length - 1]![2]; // the next scheduled retry
  mgr.tick();
  await mgr.settled();
  t.not(mgr.get(SLEEP)?.serial ?? first.serial, first.serial, 'recovers once the CA answers');
  t.equal(mgr.states()[0]!.state, 'Available');
});

t.test('fetch during backoff fails at once instead of hammering the CA', async (t) => {
  const { mgr, issuer, clock } = await setup(t);
  issuer.fail = 'CA down';
  mgr.ensure([SLEEP]);
  await t.rejects(mgr.fetch(SLEEP), { code: 'ERR_CERT_UNAVAILABLE', message: /failed: CA down/ }, 'the attempt it waited for failed');
  t.equal(issuer.calls, 1);
  clock.now += 500; // retry due at +1 s
  await t.rejects(mgr.fetch(SLEEP), { code: 'ERR_CERT_UNAVAILABLE', message: /no certificate for .*: CA down/ });
  await mgr.settled();
  t.equal(issuer.calls, 1, 'no extra attempt');
});

t.test('backoff is capped', async (t) => {
  const { mgr, issuer, clock, errors } = await setup(t, { retryInitialMs: 1000, retryMaxMs: 5000 });
  issuer.fail = 'down';
  mgr.ensure([SLEEP]);
  await mgr.settled();
  // Each round moves the clock to the scheduled retry; the bound keeps the loop finite.
  for (let i = 0; i < 6; i++) {
    clock.now = errors[errors.length - 1]![2];
    mgr.tick();
    await mgr.settled();
  }
  const delays = errors.slice(1).map((e, i) => e[2] - errors[i]![2]);
  t.same(delays, [2000, 4000, 5000, 5000, 5000, 5000]);
  t.equal(mgr.states()[0]!.state, 'Unavailable', 'no cert ever: Unavailable with the reason');
  t.equal(mgr.states()[0]!.reason, 'down');
});

t.test('a cert that is not valid yet is never returned', async (t) => {
  const { mgr, clock, issuer } = await setup(t);
  mgr.ensure([SLEEP]);
  await mgr.settled();
  const c = mgr.get(SLEEP)!;
  clock.now = c.notBefore.getTime() - 1; // the clock stepped back
  t.equal(mgr.get(SLEEP), null);
  const st = mgr.states()[0]!;
  t.equal(st.state, 'Unavailable');
  t.match(st.reason, /not valid before/);
  // fetch() asks for a cert valid now rather than waiting for the half-life.
  const fresh = await mgr.fetch(SLEEP);
  t.equal(issuer.calls, 2);
  t.ok(fresh.notBefore.getTime() <= clock.now && clock.now <= fresh.notAfter.getTime(), 'fetched cert is valid now');
});

t.test('fetch waits for the first issuance', async (t) => {
  const { mgr } = await setup(t);
  mgr.ensure([API]);
  const p = mgr.fetch(API);
  t.equal(mgr.states()[0]!.state, 'Initializing');
  const c = await p;
  t.same(c.identity, API);
  t.equal(mgr.get(API)?.serial, c.serial);
  t.equal(await mgr.fetch(API), c, 'ready: same object');
});

t.test('forget drops the identity and discards an issuance in flight', async (t) => {
  const { mgr } = await setup(t);
  const seen: WorkloadCert[] = [];
  mgr.subscribe((c) => seen.push(c));
  mgr.ensure([SLEEP]);
  const p = mgr.fetch(SLEEP);
  mgr.forget(SLEEP);
  await t.rejects(p, { code: 'ERR_CERT_UNAVAILABLE', message: /no longer managed/ });
  await mgr.settled();
  t.same(mgr.states(), []);
  t.equal(mgr.get(SLEEP), null);
  t.equal(seen.length, 0, 'the late result was dropped');
  mgr.forget(SLEEP); // unknown: no-op
});

t.test('fetch of an identity no local workload has is refused and issues nothing', async (t) => {
  const { mgr, issuer } = await setup(t);
  const seen: WorkloadCert[] = [];
  mgr.subscribe((c) => seen.push(c));
  mgr.ensure([SLEEP]); // the control plane's local identities
  await mgr.settled();
  t.equal(issuer.calls, 1);
  // e.g. another node's workload, asked for by a connection
  await t.rejects(mgr.fetch(API), { code: 'ERR_CERT_NOT_LOCAL', message: `no workload of this node has the identity ${formatSpiffe(API)}: refusing to issue a certificate for it` });
  await mgr.settled();
  t.equal(issuer.calls, 1, 'nothing was issued for it');
  t.same(mgr.states().map((s) => s.id), [formatSpiffe(SLEEP)], 'and it is not managed (no rotation, nothing to forget)');
  t.equal(seen.length, 1, 'no certificate announced for it');
  t.equal(mgr.get(API), null);
  // once forgotten (its workload left this node), the local one is refused the same way
  mgr.forget(SLEEP);
  await t.rejects(mgr.fetch(SLEEP), { code: 'ERR_CERT_NOT_LOCAL' });
  // an identity that cannot be a SPIFFE id is refused with that reason, not thrown
  await t.rejects(mgr.fetch({ ...SLEEP, serviceAccount: 'a/b' }), { code: 'ERR_SPIFFE_ID' });
  t.equal(issuer.calls, 1);
});

t.test('concurrency limit', async (t) => {
  const { mgr, issuer } = await setup(t, { concurrency: 2 });
  const ids = ['a', 'b', 'c', 'd', 'e'].map((sa) => ({ trustDomain: 'cluster.local', namespace: 'ns', serviceAccount: sa }));
  mgr.ensure(ids);
  await mgr.settled();
  t.equal(issuer.calls, 5);
  t.equal(issuer.peak, 2, 'never more than 2 in flight');
  t.same(mgr.states().map((s) => s.state), Array(5).fill('Available'));
});

t.test('a throwing subscriber does not break issuance', async (t) => {
  const { mgr, errors } = await setup(t);
  mgr.subscribe(() => {
    throw new Error('listener bug');
  });
  mgr.ensure([SLEEP]);
  await mgr.settled();
  t.ok(mgr.get(SLEEP));
  t.equal(errors[0]?.[1], 'listener bug', 'reported through onError');
});

t.test('close and bad options', async (t) => {
  const { mgr } = await setup(t);
  mgr.ensure([SLEEP]);
  const p = mgr.fetch(SLEEP);
  mgr.close();
  await t.rejects(p, { code: 'ERR_CERT_UNAVAILABLE' });
  await t.rejects(mgr.fetch(SLEEP), { code: 'ERR_CERT_UNAVAILABLE', message: /closed/ });
  mgr.ensure([SLEEP]);
  t.same(mgr.states(), [], 'closed: ensure is ignored');
  mgr.close();
  const ca = await LocalCa.generate();
  const err = t.throws(() => new CertManager({ issuer: ca, ttlMs: 0 }));
  t.ok(isProxyError(err, 'ERR_CERT_TTL'));
  // The shared timer is unref'd and cleared by close(): constructing with a timer must not keep the process alive.
  const timed = new CertManager({ issuer: ca, ttlMs: HOUR, tickMs: 50 });
  timed.close();
});
