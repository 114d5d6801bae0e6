/**
 * ZDS codec (istio-cni <-> ztunnel). Golden bytes are written by hand from the protobuf wire format
 * and the zds.proto field numbers, so a codec that agrees with itself but not with istio fails here.
 */
import assert from 'node:assert';
import t from 'tap';
import fc from 'fast-check';
import { useFuzzSeed } from '../helpers/fuzz-seed';
import { isProxyError } from '../../src/errors';
import {
  ZDS_VERSION_V1,
  decodeHello,
  decodeRequest,
  decodeResponse,
  encodeAck,
  encodeHello,
  encodeRequest,
  type ZdsRequest,
} from '../../src/inpod/zds-codec';

useFuzzSeed((m) => t.comment(m));

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const ascii = (s: string): number[] => [...Buffer.from(s, 'utf8')];
const bytes = (...parts: (number | number[])[]): Uint8Array => Uint8Array.from(parts.flat());

/** Runs fn, which must throw a ProxyError with `code`; returns its message. */
function errorOf(fn: () => unknown, code = 'ERR_ZDS_DECODE'): string {
  try {
    fn();
  } catch (err) {
    if (isProxyError(err, code)) return err.message;
    throw err;
  }
  throw new Error('expected an error, none thrown');
}

// Each golden: tag bytes are (field << 3 | wire type); 0x0a = field 1 LEN, 0x12 = field 2 LEN,
// 0x1a = field 3 LEN, 0x2a = field 5 LEN, 0x08 = field 1 varint.
const goldenRequests: [string, ZdsRequest, number[]][] = [
  [
    'add with workload_info',
    { kind: 'add', uid: 'u1', info: { name: 'n', namespace: 'ns', serviceAccount: 'sa' } },
    // WorkloadRequest.add(1) len 17 { uid(1) "u1", workload_info(2) len 11 { name(1) "n", namespace(2) "ns", service_account(3) "sa" } }
    [0x0a, 17, 0x0a, 2, ...ascii('u1'), 0x12, 11, 0x0a, 1, ...ascii('n'), 0x12, 2, ...ascii('ns'), 0x1a, 2, ...ascii('sa')],
  ],
  ['add without workload_info', { kind: 'add', uid: 'pod-uid', info: null }, [0x0a, 9, 0x0a, 7, ...ascii('pod-uid')]],
  [
    'add with an empty (but present) workload_info',
    { kind: 'add', uid: 'x', info: { name: '', namespace: '', serviceAccount: '' } },
    [0x0a, 5, 0x0a, 1, ...ascii('x'), 0x12, 0],
  ],
  // DelWorkload's uid is field 2: 0x12, inside WorkloadRequest.del which is also field 2
  ['del', { kind: 'del', uid: 'abc' }, [0x12, 5, 0x12, 3, ...ascii('abc')]],
  // KeepWorkload's uid is field 1, keep is oneof member 5
  ['keep', { kind: 'keep', uid: 'abc' }, [0x2a, 5, 0x0a, 3, ...ascii('abc')]],
  ['snapshot-sent', { kind: 'snapshot-sent' }, [0x1a, 0]],
  ['del with empty uid (proto3 leaves the default out)', { kind: 'del', uid: '' }, [0x12, 0]],
];

t.test('golden WorkloadRequest bytes: encode and decode', async (t) => {
  for (const [name, req, want] of goldenRequests) {
    t.equal(hex(encodeRequest(req)), hex(Uint8Array.from(want)), `encode ${name}`);
    t.same(decodeRequest(Uint8Array.from(want)), req, `decode ${name}`);
  }
});

t.test('golden ZdsHello and WorkloadResponse bytes', async (t) => {
  t.equal(ZDS_VERSION_V1, 1);
  t.equal(hex(encodeHello()), '0801', 'default is V1: version(1) varint 1');
  t.equal(hex(encodeHello(ZDS_VERSION_V1)), '0801');
  t.equal(hex(encodeHello(0)), '', 'NOT_USED is the default, so it is left out');
  t.equal(hex(encodeHello(300)), '08ac02', 'multi-byte varint');
  t.equal(hex(encodeHello(-1)), '08ffffffffffffffffff01', 'negative int32 enums are sign-extended to 10 bytes');
  t.same(decodeHello(bytes(0x08, 0x01)), { version: 1 });
  t.same(decodeHello(bytes()), { version: 0 }, 'absent version reads as NOT_USED');
  t.same(decodeHello(bytes(0x08, 0xac, 0x02)), { version: 300 });
  t.same(decodeHello(bytes(0x08, [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01])), { version: -1 });
  t.same(decodeHello(bytes(0x08, [0x81, 0x80, 0x80, 0x80, 0x10])), { version: 1 }, 'int32: only the low 32 bits of 2^32+1 count');
  t.same(decodeHello(bytes(0x08, 0x02, 0x08, 0x01)), { version: 1 }, 'last occurrence wins');

  t.equal(hex(encodeAck()), '0a00', 'success: ack(1) present and empty');
  t.equal(hex(encodeAck('')), '0a00');
  t.equal(hex(encodeAck('boom')), hex(bytes(0x0a, 6, 0x0a, 4, ascii('boom'))), 'ack { error(1) "boom" }');
  t.same(decodeResponse(bytes(0x0a, 0)), { kind: 'ack', error: '' });
  t.same(decodeResponse(bytes(0x0a, 6, 0x0a, 4, ascii('boom'))), { kind: 'ack', error: 'boom' });
});

t.test('round trips of every message kind', async (t) => {
  const reqs: ZdsRequest[] = [
    { kind: 'add', uid: '', info: null },
    { kind: 'add', uid: '', info: { name: 'a', namespace: '', serviceAccount: '' } },
    { kind: 'add', uid: 'ü-😀-\u0000', info: { name: 'ñ', namespace: 'ns'.repeat(200), serviceAccount: 'default' } },
    { kind: 'add', uid: '\ufeffbom-stays', info: { name: '\ufeff', namespace: 'x', serviceAccount: 'y' } },
    { kind: 'keep', uid: '' },
    { kind: 'keep', uid: 'k'.repeat(1000) },
    { kind: 'del', uid: 'd' },
    { kind: 'snapshot-sent' },
  ];
  for (const r of reqs) t.same(decodeRequest(encodeRequest(r)), r, JSON.stringify(r).slice(0, 80));
  for (const v of [0, 1, 2, 127, 128, 2 ** 31 - 1, -(2 ** 31), -5]) t.equal(decodeHello(encodeHello(v)).version, v, `hello ${v}`);
  for (const e of ['', 'x', 'failed to add workload: netns gone', '日本'.repeat(100)]) {
    t.same(decodeResponse(encodeAck(e)), { kind: 'ack', error: e }, `ack ${e.slice(0, 20)}`);
  }
});

t.test('unknown fields of every wire type are skipped at every level', async (t) => {
  // field 9 as varint (0x48), fixed64 (0x49), LEN (0x4a), fixed32 (0x4d)
  const unknown = [0x48, 0x96, 0x01, 0x49, 1, 2, 3, 4, 5, 6, 7, 8, 0x4a, 2, 0xff, 0xfe, 0x4d, 1, 2, 3, 4];
  // WorkloadInfo: windows_namespace(5) { id(1) 7, guid(2) "g" } and the reserved 4 (old trust_domain)
  const info = [0x0a, 1, ...ascii('n'), 0x2a, 5, 0x08, 7, 0x12, 1, ...ascii('g'), 0x22, 2, ...ascii('td'), ...unknown];
  const add = [...unknown, 0x0a, 1, ...ascii('u'), 0x12, info.length, ...info, ...unknown];
  const req = bytes(unknown, 0x0a, add.length, add, 0x20, 0x01, unknown); // 0x20: field 4 varint (not a payload member)
  t.same(decodeRequest(req), { kind: 'add', uid: 'u', info: { name: 'n', namespace: '', serviceAccount: '' } });

  const del = [...unknown, 0x0a, 1, 0x41, 0x12, 1, ...ascii('d')]; // field 1 in DelWorkload is unknown
  t.same(decodeRequest(bytes(0x12, del.length, del)), { kind: 'del', uid: 'd' });
  const keep = [0x12, 1, 0x41, ...unknown, 0x0a, 1, ...ascii('k')]; // field 2 in KeepWorkload is unknown
  t.same(decodeRequest(bytes(0x2a, keep.length, keep)), { kind: 'keep', uid: 'k' });
  t.same(decodeRequest(bytes(0x1a, unknown.length, unknown)), { kind: 'snapshot-sent' });
  t.same(decodeHello(bytes(unknown, 0x08, 1, unknown)), { version: 1 });
  const ack = [...unknown, 0x0a, 1, ...ascii('e')];
  t.same(decodeResponse(bytes(unknown, 0x0a, ack.length, ack)), { kind: 'ack', error: 'e' });
  // a non-canonical (padded) varint key is still a valid key
  t.same(decodeRequest(bytes(0x9a, 0x80, 0x00, 0)), { kind: 'snapshot-sent' });
});

t.test('oneof: the last member wins; a repeated member and workload_info merge', async (t) => {
  const add = (uid: string): number[] => [0x0a, uid.length + 2, 0x0a, uid.length, ...ascii(uid)];
  t.same(decodeRequest(bytes(add('a'), 0x12, 3, 0x12, 1, ascii('d'))), { kind: 'del', uid: 'd' });
  t.same(decodeRequest(bytes(0x12, 3, 0x12, 1, ascii('d'), add('a'))), { kind: 'add', uid: 'a', info: null });
  t.same(decodeRequest(bytes(0x1a, 0, 0x2a, 0)), { kind: 'keep', uid: '' });
  // add{uid a, info{name n}} then add{info{namespace s}}: merged as protobuf does
  const first = [0x0a, 1, ...ascii('a'), 0x12, 3, 0x0a, 1, ...ascii('n')];
  const second = [0x12, 3, 0x12, 1, ...ascii('s')];
  t.same(decodeRequest(bytes(0x0a, first.length, first, 0x0a, second.length, second)), {
    kind: 'add',
    uid: 'a',
    info: { name: 'n', namespace: 's', serviceAccount: '' },
  });
  // add, del, add: the del resets, so the first add's info does not come back
  t.same(decodeRequest(bytes(0x0a, first.length, first, 0x12, 0, add('b'))), { kind: 'add', uid: 'b', info: null });
  // strings: last occurrence wins
  t.same(decodeRequest(bytes(0x2a, 6, 0x0a, 1, ascii('x'), 0x0a, 1, ascii('y'))), { kind: 'keep', uid: 'y' });
  // an empty second ack merges into the first rather than resetting it
  t.same(decodeResponse(bytes(0x0a, 3, 0x0a, 1, ascii('x'), 0x0a, 0)), { kind: 'ack', error: 'x' });
});

t.test('deeply nested unknown fields are skipped without recursing', async (t) => {
  // 50,000 levels of field-9 LEN wrappers (a recursive decoder would overflow the stack): built
  // inside out as prefixes, since wrapper i's length is everything already built
  const prefixes: Buffer[] = [];
  let len = 0;
  for (let i = 0; i < 50_000; i++) {
    const p = Buffer.from([0x4a, ...varint(len)]);
    prefixes.push(p);
    len += p.length;
  }
  const nested = Buffer.concat(prefixes.reverse());
  t.equal(nested.length, len);
  t.same(decodeRequest(Buffer.concat([nested, Buffer.from([0x1a, 0])])), { kind: 'snapshot-sent' });
});

function varint(n: number): number[] {
  const out: number[] = [];
  for (; n >= 0x80; n >>>= 7) out.push((n & 0x7f) | 0x80);
  out.push(n);
  return out;
}

type Decoder = (b: Uint8Array) => unknown;
const ff9 = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
const malformed: [string, Decoder, number[], string][] = [
  ['empty request', decodeRequest, [], 'WorkloadRequest: no payload set'],
  ['unknown payload field only', decodeRequest, [0x20, 0x01, 0x32, 0], 'WorkloadRequest: no payload set'],
  ['truncated key', decodeRequest, [0x80], 'WorkloadRequest: field key: truncated varint'],
  ['key over 32 bits', decodeRequest, [0x80, 0x80, 0x80, 0x80, 0x10], 'field key does not fit in 32 bits'],
  ['field number 0', decodeRequest, [0x02, 0x00], 'field number 0 is invalid'],
  ['truncated length', decodeRequest, [0x0a], 'WorkloadRequest: add length: truncated varint'],
  ['length past the end', decodeRequest, [0x0a, 5, 0x0a], 'WorkloadRequest: add: length 5 runs past the end of the message (1 bytes left)'],
  ['length over 4 GiB', decodeRequest, [0x0a, 0x80, 0x80, 0x80, 0x80, 0x10], 'add: length over 4 GiB runs past'],
  ['add as varint', decodeRequest, [0x08, 1], 'add (field 1) has wire type varint, expected length-delimited'],
  ['del as fixed32', decodeRequest, [0x15, 1, 2, 3, 4], 'del (field 2) has wire type fixed32, expected length-delimited'],
  ['snapshot_sent as fixed64', decodeRequest, [0x19, 1, 2, 3, 4, 5, 6, 7, 8], 'snapshot_sent (field 3) has wire type fixed64'],
  ['keep as start-group', decodeRequest, [0x2b], 'keep (field 5) has wire type start-group'],
  ['varint of 11 bytes', decodeRequest, [0x20, ...ff9, 0x81, 0x01], 'unknown field 4: varint longer than 64 bits'],
  ['10th varint byte over bit 63', decodeRequest, [0x20, ...ff9, 0x02], 'unknown field 4: varint longer than 64 bits'],
  ['truncated long varint', decodeRequest, [0x20, ...ff9], 'unknown field 4: truncated varint'],
  ['unknown start-group', decodeRequest, [0x23, 0x24], 'unknown field 4 has unsupported wire type start-group'],
  ['unknown end-group', decodeRequest, [0x24], 'unknown field 4 has unsupported wire type end-group'],
  ['wire type 6', decodeRequest, [0x26], 'unknown field 4 has unsupported wire type invalid(6)'],
  ['wire type 7', decodeRequest, [0x27], 'unsupported wire type invalid(7)'],
  ['truncated fixed64', decodeRequest, [0x21, 1, 2, 3], 'unknown field 4: truncated fixed64 (3 bytes left)'],
  ['truncated fixed32', decodeRequest, [0x25, 1], 'unknown field 4: truncated fixed32 (1 bytes left)'],
  ['unknown LEN past the end', decodeRequest, [0x22, 2, 0], 'unknown field 4: length 2 runs past'],
  ['add.uid invalid UTF-8', decodeRequest, [0x0a, 3, 0x0a, 1, 0xff], 'WorkloadRequest.add (AddWorkload): uid is not valid UTF-8'],
  ['add.uid overlong UTF-8', decodeRequest, [0x0a, 4, 0x0a, 2, 0xc0, 0x80], 'uid is not valid UTF-8'],
  ['add.uid UTF-8 surrogate', decodeRequest, [0x0a, 5, 0x0a, 3, 0xed, 0xa0, 0x80], 'uid is not valid UTF-8'],
  ['add.uid truncated UTF-8 sequence', decodeRequest, [0x0a, 4, 0x0a, 2, 0xe2, 0x82], 'uid is not valid UTF-8'],
  ['add.uid as varint', decodeRequest, [0x0a, 2, 0x08, 1], 'AddWorkload): uid (field 1) has wire type varint'],
  ['add.uid past the end', decodeRequest, [0x0a, 2, 0x0a, 9], 'AddWorkload): uid: length 9 runs past'],
  ['add.workload_info as varint', decodeRequest, [0x0a, 2, 0x10, 1], 'workload_info (field 2) has wire type varint'],
  ['add.workload_info truncated', decodeRequest, [0x0a, 1, 0x12], 'AddWorkload): workload_info length: truncated varint'],
  ['workload_info.name invalid UTF-8', decodeRequest, [0x0a, 5, 0x12, 3, 0x0a, 1, 0x80], 'workload_info (WorkloadInfo): name is not valid UTF-8'],
  ['workload_info.namespace as varint', decodeRequest, [0x0a, 4, 0x12, 2, 0x10, 1], 'WorkloadInfo): namespace (field 2) has wire type varint'],
  ['workload_info.service_account bad', decodeRequest, [0x0a, 5, 0x12, 3, 0x1a, 1, 0xfe], 'WorkloadInfo): service_account is not valid UTF-8'],
  ['workload_info unknown group', decodeRequest, [0x0a, 3, 0x12, 1, 0x23], 'WorkloadInfo): unknown field 4 has unsupported wire type start-group'],
  ['del.uid as varint', decodeRequest, [0x12, 2, 0x10, 1], 'del (DelWorkload): uid (field 2) has wire type varint'],
  ['del.uid invalid UTF-8', decodeRequest, [0x12, 3, 0x12, 1, 0xc3], 'del (DelWorkload): uid is not valid UTF-8'],
  ['keep.uid past the end', decodeRequest, [0x2a, 2, 0x0a, 5], 'keep (KeepWorkload): uid: length 5 runs past'],
  ['snapshot_sent with garbage', decodeRequest, [0x1a, 1, 0x80], 'snapshot_sent (SnapshotSent): field key: truncated varint'],
  ['bad bytes in a member later replaced', decodeRequest, [0x0a, 3, 0x0a, 1, 0xff, 0x1a, 0], 'uid is not valid UTF-8'],
  ['trailing truncated field after payload', decodeRequest, [0x1a, 0, 0x12], 'WorkloadRequest: del length: truncated varint'],
  ['hello truncated version', decodeHello, [0x08], 'ZdsHello: version: truncated varint'],
  ['hello version as LEN', decodeHello, [0x0a, 0], 'ZdsHello: version (field 1) has wire type length-delimited, expected varint'],
  ['hello version over 64 bits', decodeHello, [0x08, ...ff9, 0x7f], 'version: varint longer than 64 bits'],
  ['hello unknown group', decodeHello, [0x13], 'ZdsHello: unknown field 2 has unsupported wire type start-group'],
  ['empty response', decodeResponse, [], 'WorkloadResponse: no payload set (expected ack=1)'],
  ['response unknown field only', decodeResponse, [0x12, 0], 'WorkloadResponse: no payload set'],
  ['ack as varint', decodeResponse, [0x08, 0], 'WorkloadResponse: ack (field 1) has wire type varint'],
  ['ack past the end', decodeResponse, [0x0a, 4, 0x0a], 'WorkloadResponse: ack: length 4 runs past'],
  ['ack.error past the end', decodeResponse, [0x0a, 2, 0x0a, 1], 'ack (Ack): error: length 1 runs past'],
  ['ack.error invalid UTF-8', decodeResponse, [0x0a, 3, 0x0a, 1, 0xff], 'ack (Ack): error is not valid UTF-8'],
  ['ack.error as fixed32', decodeResponse, [0x0a, 5, 0x0d, 0, 0, 0, 0], 'ack (Ack): error (field 1) has wire type fixed32'],
];

t.test('malformed input: ERR_ZDS_DECODE naming the field', async (t) => {
  for (const [name, decode, input, want] of malformed) {
    const msg = errorOf(() => decode(Uint8Array.from(input)));
    t.ok(msg.includes(want), `${name}: ${JSON.stringify(msg)} should include ${JSON.stringify(want)}`);
  }
});

t.test('encode refuses what it cannot represent faithfully', async (t) => {
  const enc = 'ERR_ZDS_ENCODE';
  t.match(errorOf(() => encodeRequest({ kind: 'del', uid: 'a\ud800' }), enc), /del\.uid contains a lone UTF-16 surrogate/);
  t.match(errorOf(() => encodeRequest({ kind: 'keep', uid: '\udc00' }), enc), /keep\.uid/);
  t.match(
    errorOf(() => encodeRequest({ kind: 'add', uid: 'u', info: { name: 'n', namespace: 'x', serviceAccount: '\ud83d' } }), enc),
    /workload_info\.service_account contains a lone/,
  );
  t.match(errorOf(() => encodeAck('\ud800'), enc), /ack\.error/);
  t.match(errorOf(() => encodeRequest({ kind: 'add', uid: 42 as unknown as string, info: null }), enc), /add\.uid must be a string, got number/);
  t.match(errorOf(() => encodeRequest({ kind: 'bogus' } as unknown as ZdsRequest), enc), /unknown kind "bogus"/);
  for (const v of [1.5, 2 ** 31, -(2 ** 31) - 1, NaN]) t.match(errorOf(() => encodeHello(v), enc), /32-bit integer/, `hello ${v}`);
});

const str = fc.string({ unit: 'binary', maxLength: 40 });
// fc.record builds null-prototype objects; spread them into plain ones so deepStrictEqual compares values
const plain = <T extends object>(o: T): T => ({ ...o });
const requestArb: fc.Arbitrary<ZdsRequest> = fc.oneof(
  fc
    .record({
      kind: fc.constant('add' as const),
      uid: str,
      info: fc.option(fc.record({ name: str, namespace: str, serviceAccount: str }).map(plain), { nil: null }),
    })
    .map(plain),
  fc.record({ kind: fc.constant('keep' as const), uid: str }).map(plain),
  fc.record({ kind: fc.constant('del' as const), uid: str }).map(plain),
  fc.constant({ kind: 'snapshot-sent' as const }),
);

t.test('property: decodeRequest(encodeRequest(x)) equals x', async (t) => {
  fc.assert(
    fc.property(requestArb, (req) => {
      assert.deepStrictEqual(decodeRequest(encodeRequest(req)), req);
    }),
    { numRuns: 500 },
  );
  fc.assert(
    fc.property(fc.string({ unit: 'binary', maxLength: 60 }), (e) => decodeResponse(encodeAck(e)).error === e),
    { numRuns: 200 },
  );
  t.pass('500 requests and 200 acks round-tripped');
});

t.test('property: arbitrary bytes decode or throw ERR_ZDS_DECODE, nothing else', async (t) => {
  const onlyDecodeErrors = (decode: Decoder) => (b: Uint8Array) => {
    try {
      decode(b);
    } catch (err) {
      if (!isProxyError(err, 'ERR_ZDS_DECODE')) throw err;
    }
  };
  // raw noise, and mutations of valid messages (which get much further into the nested decoders)
  const valid = requestArb.map((r) => encodeRequest(r));
  const mutated = fc
    .tuple(valid, fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 4 }), fc.nat())
    .map(([buf, edits, cut]) => {
      const b = Uint8Array.from(buf);
      for (const [i, v] of edits) if (b.length > 0) b[i % b.length] = v;
      return cut % 3 === 0 ? b.subarray(0, cut % (b.length + 1)) : b;
    });
  const input = fc.oneof(fc.uint8Array({ maxLength: 64 }), mutated);
  fc.assert(fc.property(input, onlyDecodeErrors(decodeRequest)), { numRuns: 500 });
  fc.assert(fc.property(fc.uint8Array({ maxLength: 32 }), onlyDecodeErrors(decodeHello)), { numRuns: 300 });
  fc.assert(fc.property(fc.uint8Array({ maxLength: 32 }), onlyDecodeErrors(decodeResponse)), { numRuns: 300 });
  t.pass('no other error escaped');
});
