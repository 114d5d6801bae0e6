/**
 * ZDS ("ztunnel discovery service") message codec: the protocol istio-cni uses to hand pods'
 * network namespaces to ztunnel over a unix SEQPACKET socket (one message per packet, the netns fd
 * alongside an AddWorkload in SCM_RIGHTS ancillary data).
 *
 * Schema (proto3, package istio.workload.zds), restated from istio/istio pkg/zdsapi/zds.proto and
 * istio/ztunnel proto/zds.proto. Field numbers are the contract; note DelWorkload's uid is field 2
 * while KeepWorkload's is field 1, and keep is oneof member 5 (4 is unused in current versions).
 *
 *   enum Version        NOT_USED = 0, V1 = 1
 *   ZdsHello            1: version (Version, varint)             ztunnel -> cni, first message
 *   WorkloadInfo        1: name, 2: namespace, 3: service_account (strings); 4 reserved
 *                       (was trust_domain); 5: windows_namespace (Windows only; skipped here)
 *   AddWorkload         1: uid (string), 2: workload_info (WorkloadInfo)
 *   KeepWorkload        1: uid (string)
 *   DelWorkload         2: uid (string)
 *   SnapshotSent        (no fields)
 *   Ack                 1: error (string; empty = success)
 *   WorkloadRequest     oneof payload { 1: add, 2: del, 3: snapshot_sent, 5: keep }   cni -> ztunnel
 *   WorkloadResponse    oneof payload { 1: ack }                                      ztunnel -> cni
 *
 * Decoding follows protobuf rules: unknown fields are skipped, absent strings read as '', a message
 * field seen twice is merged, and of a oneof the last member seen wins (a repeat of the same member
 * merges into it). Anything malformed throws ProxyError('ERR_ZDS_DECODE') naming the field; the
 * bytes come from another process and must never crash or confuse the proxy.
 */
import { ProxyError } from '../errors';
import { WIRE_LEN, WIRE_VARINT, WireReader, WireWriter } from './protobuf';

export const ZDS_VERSION_V1 = 1;

const DECODE = 'ERR_ZDS_DECODE';
const ENCODE = 'ERR_ZDS_ENCODE';

export interface ZdsWorkloadInfo {
  name: string;
  namespace: string;
  serviceAccount: string;
}

export type ZdsRequest =
  | { kind: 'add'; uid: string; info: ZdsWorkloadInfo | null } // the netns fd arrives via SCM_RIGHTS alongside
  | { kind: 'keep'; uid: string }
  | { kind: 'del'; uid: string }
  | { kind: 'snapshot-sent' };

// WorkloadRequest.payload member numbers
const REQ_ADD = 1;
const REQ_DEL = 2;
const REQ_SNAPSHOT_SENT = 3;
const REQ_KEEP = 5;
// WorkloadResponse.payload member number
const RESP_ACK = 1;

// ---------------------------------------------------------------------------------------------
// decoding

/** ZdsHello. An unknown version number is returned as is: whether to accept it is the caller's call. */
export function decodeHello(buf: Uint8Array): { version: number } {
  const r = new WireReader(buf, 'ZDS ZdsHello', DECODE);
  let version = 0;
  for (let k = r.key(); k; k = r.key()) {
    if (k.field === 1) {
      r.expectWire(k, WIRE_VARINT, 'version');
      version = r.varint('version').lo | 0; // enums are int32: protobuf keeps the low 32 bits
    } else r.skip(k);
  }
  return { version };
}

export function decodeRequest(buf: Uint8Array): ZdsRequest {
  const r = new WireReader(buf, 'ZDS WorkloadRequest', DECODE);
  let current: ZdsRequest | null = null;
  let currentField = 0;
  for (let k = r.key(); k; k = r.key()) {
    let fresh: () => ZdsRequest;
    let merge: (b: Uint8Array, into: ZdsRequest) => void;
    let label: string;
    switch (k.field) {
      case REQ_ADD:
        label = 'add';
        fresh = () => ({ kind: 'add', uid: '', info: null });
        merge = (b, into) => mergeAdd(b, into as Extract<ZdsRequest, { kind: 'add' }>);
        break;
      case REQ_DEL:
        label = 'del';
        fresh = () => ({ kind: 'del', uid: '' });
        merge = (b, into) => mergeUid(b, 'ZDS WorkloadRequest.del (DelWorkload)', 2, into as { uid: string });
        break;
      case REQ_SNAPSHOT_SENT:
        label = 'snapshot_sent';
        fresh = () => ({ kind: 'snapshot-sent' });
        merge = (b) => skipAll(b, 'ZDS WorkloadRequest.snapshot_sent (SnapshotSent)');
        break;
      case REQ_KEEP:
        label = 'keep';
        fresh = () => ({ kind: 'keep', uid: '' });
        merge = (b, into) => mergeUid(b, 'ZDS WorkloadRequest.keep (KeepWorkload)', 1, into as { uid: string });
        break;
      default:
        r.skip(k);
        continue;
    }
    r.expectWire(k, WIRE_LEN, label);
    const bytes = r.bytes(label);
    // a different oneof member replaces the current one; the same member merges into it
    if (current === null || currentField !== k.field) {
      current = fresh();
      currentField = k.field;
    }
    merge(bytes, current);
  }
  if (current === null) return r.fail('no payload set (expected add=1, del=2, snapshot_sent=3 or keep=5)');
  return current;
}

/** WorkloadResponse; only the ack member exists. */
export function decodeResponse(buf: Uint8Array): { kind: 'ack'; error: string } {
  const r = new WireReader(buf, 'ZDS WorkloadResponse', DECODE);
  let ack: { kind: 'ack'; error: string } | null = null;
  for (let k = r.key(); k; k = r.key()) {
    if (k.field !== RESP_ACK) {
      r.skip(k);
      continue;
    }
    r.expectWire(k, WIRE_LEN, 'ack');
    const bytes = r.bytes('ack');
    ack ??= { kind: 'ack', error: '' };
    const a = new WireReader(bytes, 'ZDS WorkloadResponse.ack (Ack)', DECODE);
    for (let k2 = a.key(); k2; k2 = a.key()) {
      if (k2.field === 1) {
        a.expectWire(k2, WIRE_LEN, 'error');
        ack.error = a.string('error');
      } else a.skip(k2);
    }
  }
  if (ack === null) return r.fail('no payload set (expected ack=1)');
  return ack;
}

function mergeAdd(buf: Uint8Array, into: Extract<ZdsRequest, { kind: 'add' }>): void {
  const r = new WireReader(buf, 'ZDS WorkloadRequest.add (AddWorkload)', DECODE);
  for (let k = r.key(); k; k = r.key()) {
    if (k.field === 1) {
      r.expectWire(k, WIRE_LEN, 'uid');
      into.uid = r.string('uid');
    } else if (k.field === 2) {
      r.expectWire(k, WIRE_LEN, 'workload_info');
      const bytes = r.bytes('workload_info');
      // a present-but-empty workload_info is still present: proto3 message fields have presence
      into.info ??= { name: '', namespace: '', serviceAccount: '' };
      mergeInfo(bytes, into.info);
    } else r.skip(k);
  }
}

function mergeInfo(buf: Uint8Array, into: ZdsWorkloadInfo): void {
  const r = new WireReader(buf, 'ZDS WorkloadRequest.add.workload_info (WorkloadInfo)', DECODE);
  for (let k = r.key(); k; k = r.key()) {
    switch (k.field) {
      case 1:
        r.expectWire(k, WIRE_LEN, 'name');
        into.name = r.string('name');
        break;
      case 2:
        r.expectWire(k, WIRE_LEN, 'namespace');
        into.namespace = r.string('namespace');
        break;
      case 3:
        r.expectWire(k, WIRE_LEN, 'service_account');
        into.serviceAccount = r.string('service_account');
        break;
      default:
        r.skip(k); // includes 5 (windows_namespace) and the reserved 4
    }
  }
}

function mergeUid(buf: Uint8Array, what: string, uidField: number, into: { uid: string }): void {
  const r = new WireReader(buf, what, DECODE);
  for (let k = r.key(); k; k = r.key()) {
    if (k.field === uidField) {
      r.expectWire(k, WIRE_LEN, 'uid');
      into.uid = r.string('uid');
    } else r.skip(k);
  }
}

/** A message with no known fields still has to be well-formed. */
function skipAll(buf: Uint8Array, what: string): void {
  const r = new WireReader(buf, what, DECODE);
  for (let k = r.key(); k; k = r.key()) r.skip(k);
}

// ---------------------------------------------------------------------------------------------
// encoding (proto3: fields holding their default value are left out)

export function encodeHello(version: number = ZDS_VERSION_V1): Buffer {
  if (!Number.isInteger(version) || version < -(2 ** 31) || version >= 2 ** 31) {
    throw new ProxyError(ENCODE, `ZDS ZdsHello: version must be a 32-bit integer, got ${version}`);
  }
  const w = new WireWriter();
  if (version !== 0) w.int32(1, version);
  return w.finish();
}

export function encodeRequest(req: ZdsRequest): Buffer {
  const w = new WireWriter();
  switch (req.kind) {
    case 'add': {
      const add = new WireWriter();
      putString(add, 1, req.uid, 'WorkloadRequest.add.uid');
      if (req.info !== null) {
        const info = new WireWriter();
        putString(info, 1, req.info.name, 'WorkloadRequest.add.workload_info.name');
        putString(info, 2, req.info.namespace, 'WorkloadRequest.add.workload_info.namespace');
        putString(info, 3, req.info.serviceAccount, 'WorkloadRequest.add.workload_info.service_account');
        add.bytes(2, info.finish());
      }
      w.bytes(REQ_ADD, add.finish());
      break;
    }
    case 'del': {
      const del = new WireWriter();
      putString(del, 2, req.uid, 'WorkloadRequest.del.uid');
      w.bytes(REQ_DEL, del.finish());
      break;
    }
    case 'keep': {
      const keep = new WireWriter();
      putString(keep, 1, req.uid, 'WorkloadRequest.keep.uid');
      w.bytes(REQ_KEEP, keep.finish());
      break;
    }
    case 'snapshot-sent':
      w.bytes(REQ_SNAPSHOT_SENT, new Uint8Array(0));
      break;
    default:
      throw new ProxyError(ENCODE, `ZDS WorkloadRequest: unknown kind ${JSON.stringify((req as { kind: unknown }).kind)}`);
  }
  return w.finish();
}

/** WorkloadResponse{ack{error}}; '' (the default) means success. */
export function encodeAck(error = ''): Buffer {
  const ack = new WireWriter();
  putString(ack, 1, error, 'WorkloadResponse.ack.error');
  const w = new WireWriter();
  w.bytes(RESP_ACK, ack.finish());
  return w.finish();
}

// A lone UTF-16 surrogate has no UTF-8 form: Buffer.from would silently turn it into U+FFFD and
// the peer would see a different uid than we meant, so refuse instead.
const LONE_SURROGATE = /\p{Cs}/u;

function putString(w: WireWriter, field: number, s: string, label: string): void {
  if (typeof s !== 'string') throw new ProxyError(ENCODE, `ZDS ${label} must be a string, got ${typeof s}`);
  if (LONE_SURROGATE.test(s)) throw new ProxyError(ENCODE, `ZDS ${label} contains a lone UTF-16 surrogate`);
  if (s !== '') w.string(field, s);
}
