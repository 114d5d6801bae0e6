/**
 * Property-based tests (fast-check) for the parsers that read bytes an attacker controls: the
 * snapshot parser, the HBONE :authority, and the baggage / forwarded headers. Properties: they
 * never throw anything but their documented error, never hang, and round-trip what their
 * formatters write.
 *
 * CI runs a bounded number of cases per property (a few seconds in all). For a longer hunt set
 * FUZZ_RUNS and a random seed, e.g. `FUZZ_SEED=random FUZZ_RUNS=200000 npx tap dist/test/unit/fuzz/parsers.property.test.js`; a
 * failure prints the seed and the shrunk counterexample to replay.
 */
import t from 'tap';
import fc from 'fast-check';
import { useFuzzSeed } from '../../helpers/fuzz-seed';
import { formatAuthority, parseAuthority } from '../../../src/proxy/authority';
import { formatBaggage, parseBaggage } from '../../../src/proxy/baggage';
import { formatForwardedFor, forwardedFor, parseForwarded } from '../../../src/proxy/forwarded';
import { parseSnapshot } from '../../../src/state/parse';
import { isProxyError } from '../../../src/errors';

useFuzzSeed((m) => t.comment(m));

const RUNS = Number(process.env['FUZZ_RUNS'] ?? '') || 300;
const opts = { numRuns: RUNS };

const ipv4 = fc.ipV4();
const ipv6 = fc.ipV6();
const port = fc.integer({ min: 1, max: 65535 });
const junk = fc.oneof(fc.string(), fc.string({ unit: 'binary' }), fc.string({ unit: 'grapheme-ascii' }));

t.test('authority: any text is accepted or refused with a reason, never a throw', async (t) => {
  fc.assert(
    fc.property(fc.oneof(junk, fc.constantFrom(undefined, null, 42, ['a'])), (s) => {
      const r = parseAuthority(s);
      if (r.ok) return Number.isInteger(r.port) && r.port >= 1 && r.port <= 65535 && r.ip.length > 0;
      return typeof r.reason === 'string' && r.reason.length > 0;
    }),
    opts,
  );
  t.pass(`${RUNS} cases`);
});

t.test('authority: formatAuthority output parses back to the same ip and port', async (t) => {
  fc.assert(
    fc.property(fc.oneof(ipv4, ipv6), port, (ip, p) => {
      const r = parseAuthority(formatAuthority(ip, p));
      return r.ok && r.port === p && parseAuthority(formatAuthority(r.ip, r.port)).ok;
    }),
    opts,
  );
  t.pass(`${RUNS} cases`);
});

t.test('baggage: any header values parse without throwing; formatted baggage round-trips', async (t) => {
  fc.assert(fc.property(fc.oneof(junk, fc.array(junk, { maxLength: 4 })), (v) => typeof parseBaggage(v) === 'object'), opts);
  const value = fc.stringMatching(/^[A-Za-z0-9._-]{1,20}$/);
  fc.assert(
    fc.property(fc.record({ clusterId: value, namespace: value, serviceName: value, revision: value, region: value, zone: value }, { requiredKeys: [] }), (b) => {
      const back = parseBaggage(formatBaggage(b));
      return Object.entries(b).every(([k, v]) => (back as Record<string, unknown>)[k] === v);
    }),
    opts,
  );
  t.pass(`${RUNS} cases each`);
});

t.test('forwarded: any value parses without throwing; for= of formatForwardedFor round-trips', async (t) => {
  fc.assert(
    fc.property(fc.oneof(junk, fc.constant(undefined)), (v) => {
      const els = parseForwarded(v);
      forwardedFor(v);
      return Array.isArray(els);
    }),
    opts,
  );
  fc.assert(
    fc.property(fc.oneof(ipv4, ipv6), port, (ip, p) => {
      const got = forwardedFor(formatForwardedFor(ip, p));
      return got !== null && got.port === p && parseAuthority(formatAuthority(got.ip, p)).ok;
    }),
    opts,
  );
  t.pass(`${RUNS} cases each`);
});

t.test('snapshot: arbitrary text and arbitrary JSON are a document or a SnapshotError, nothing else', async (t) => {
  const parse = (text: string): boolean => {
    try {
      parseSnapshot(text, { source: 'fuzz', trustDomain: 'cluster.local' });
      return true;
    } catch (err) {
      return isProxyError(err) && (err as Error).name === 'SnapshotError';
    }
  };
  fc.assert(fc.property(junk, parse), { numRuns: Math.ceil(RUNS / 3) });
  fc.assert(fc.property(fc.json({ maxDepth: 4 }), parse), { numRuns: Math.ceil(RUNS / 3) });
  // structured near-misses: the right sections with values of arbitrary types
  const workload = fc.record(
    { uid: fc.anything(), name: fc.oneof(fc.string(), fc.anything()), namespace: fc.string(), workloadIps: fc.oneof(fc.array(fc.oneof(ipv4, fc.string())), fc.anything()), protocol: fc.constantFrom('HBONE', 'TCP', 'x', 3) },
    { requiredKeys: [] },
  );
  const doc = fc.record({ workloads: fc.array(workload, { maxLength: 4 }), services: fc.anything(), policies: fc.anything() }, { requiredKeys: [] });
  fc.assert(fc.property(doc, (d) => parse(JSON.stringify(d) ?? 'null')), { numRuns: Math.ceil(RUNS / 3) });
  t.pass('snapshot parser properties');
});
