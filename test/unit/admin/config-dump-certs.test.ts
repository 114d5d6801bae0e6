/**
 * config_dump `certificates`, one row per certificate state, as ztunnel dumps them: `state` is
 * "Initializing", "Available" or "Unavailable: <reason>", and only an Available row carries
 * `certChain`/`rootCerts` — the others have empty lists, even when an expired certificate is kept.
 */
import t from 'tap';
import { dumpCert, dumpCerts } from '../../../src/admin/config-dump';
import { LocalCa } from '../../../src/identity/ca';
import type { CertStatus } from '../../../src/identity/cert-manager';
import { formatSpiffe, type Identity } from '../../../src/identity/spiffe';

const HOUR = 3600_000;
const id = (sa: string): Identity => ({ trustDomain: 'cluster.local', namespace: 'default', serviceAccount: sa });

t.test('each certificate state, sorted by identity', async (t) => {
  const ca = await LocalCa.generate();
  const cert = await ca.sign(id('a-available'), HOUR);
  const expired = await ca.sign(id('c-expired'), HOUR);
  const row = (sa: string, state: CertStatus['state'], reason: string | null, c: CertStatus['cert']): CertStatus => ({
    identity: id(sa), id: formatSpiffe(id(sa)), state, reason, cert: c, refreshAt: null,
  });
  const rows: Array<{ status: CertStatus; want: { state: string; chain: number; roots: number } }> = [
    { status: row('d-init', 'Initializing', null, null), want: { state: 'Initializing', chain: 0, roots: 0 } },
    { status: row('c-expired', 'Unavailable', 'certificate expired at 2020-01-01T00:00:00.000Z', expired), want: { state: 'Unavailable: certificate expired at 2020-01-01T00:00:00.000Z', chain: 0, roots: 0 } },
    { status: row('b-failing', 'Unavailable', 'CA refused: quota', null), want: { state: 'Unavailable: CA refused: quota', chain: 0, roots: 0 } },
    { status: row('a-available', 'Available', null, cert), want: { state: 'Available', chain: 1 + cert.chainPem.length, roots: cert.rootsPem.length } },
  ];
  const dump = dumpCerts(rows.map((r) => r.status));
  t.same(dump.map((d) => d.identity), ['a-available', 'b-failing', 'c-expired', 'd-init'].map((sa) => formatSpiffe(id(sa))), 'sorted by identity');
  for (const { status, want } of rows) {
    const d = dump.find((x) => x.identity === status.id)!;
    t.same({ state: d.state, chain: d.certChain.length, roots: d.rootCerts.length }, want, status.id);
  }
  const available = dump[0]!;
  t.same(available.certChain[0], dumpCert(cert.certPem), 'the leaf first');
  t.ok(available.rootCerts.length >= 1, 'the CA root is listed');
  t.equal(Buffer.from(available.certChain[0]!.pem, 'base64').toString(), cert.certPem, 'pem is the base64 of the PEM');
  t.equal(available.certChain[0]!.serialNumber, BigInt(`0x${cert.serial}`).toString(10), 'serial in decimal');
});

t.test('an Unavailable state without a reason still says why it is unknown', async (t) => {
  const [d] = dumpCerts([{ identity: id('x'), id: formatSpiffe(id('x')), state: 'Unavailable', reason: null, cert: null, refreshAt: null }]);
  t.same(d, { identity: formatSpiffe(id('x')), state: 'Unavailable: unknown', certChain: [], rootCerts: [] });
});
