/**
 * A validated SnapshotDoc as bytes, for handing a snapshot to worker threads: the main thread
 * parses and validates once, encodes, and posts the bytes (transfer the ArrayBuffer, or copy it
 * into a SharedArrayBuffer for many workers); each worker decodes and builds its own Snapshot
 * indexes. Cloning 200k frozen objects with structuredClone is slower than JSON text, and a flat
 * buffer can be transferred without a copy.
 *
 * Layout: 4 bytes magic "ZTSD", 1 byte format version, then the document as UTF-8 JSON. The model
 * is JSON-safe by design (plain strings, numbers, booleans, arrays, null; port maps' numeric keys
 * round-trip as the same property names).
 *
 * decodeDoc does NOT validate: only feed it bytes from encodeDoc of a parseSnapshot result.
 * It does re-freeze the tree, so consumers keep the "snapshot data is immutable" guarantee, and
 * re-shares repeated values so a worker's copy costs about what the main thread's does.
 */
import { ProxyError } from '../errors';
import { makeInterner } from './fields';
import type { SnapshotDoc, Workload } from './model';

const MAGIC = [0x5a, 0x54, 0x53, 0x44]; // "ZTSD"
export const DOC_BYTES_FORMAT = 1;
const HEADER = MAGIC.length + 1;

export function encodeDoc(doc: SnapshotDoc): Uint8Array {
  const json = JSON.stringify({ workloads: doc.workloads, services: doc.services, policies: doc.policies });
  const body = Buffer.from(json, 'utf8');
  const out = Buffer.allocUnsafe(HEADER + body.length);
  out.set(MAGIC, 0);
  out[MAGIC.length] = DOC_BYTES_FORMAT;
  body.copy(out, HEADER);
  return out;
}

function deepFreeze(v: unknown): void {
  if (v === null || typeof v !== 'object') return;
  Object.freeze(v);
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) deepFreeze(v[i]);
  } else {
    for (const k in v) deepFreeze((v as Record<string, unknown>)[k]);
  }
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

/**
 * Freezes along the known shape (a generic for-in walk over 200k workloads is the slow part) and
 * shares what repeats, as parseSnapshot does: JSON.parse gives every workload its own copy of its
 * namespace, node, ... and of its service port map, which would make each worker's copy of the
 * snapshot much bigger than the main thread's.
 */
function freezeDoc(doc: SnapshotDoc): void {
  const intern = makeInterner();
  const refs = new Map<string, Workload['services']>();
  for (const w of doc.workloads as Mutable<Workload>[]) {
    w.namespace = intern(w.namespace);
    w.trustDomain = intern(w.trustDomain);
    w.serviceAccount = intern(w.serviceAccount);
    w.node = intern(w.node);
    w.network = intern(w.network);
    w.workloadName = intern(w.workloadName);
    w.workloadType = intern(w.workloadType);
    w.canonicalName = intern(w.canonicalName);
    w.canonicalRevision = intern(w.canonicalRevision);
    w.clusterId = intern(w.clusterId);
    Object.freeze(w.workloadIps);
    Object.freeze(w.authorizationPolicies);
    if (w.locality !== null) Object.freeze(w.locality);
    let key = '';
    for (const svc in w.services) {
      key += `${svc}\0`;
      const ports = w.services[svc]!;
      for (const p in ports) key += `${p}:${ports[Number(p)]},`;
      key += '\0';
    }
    const shared = refs.get(key);
    if (shared !== undefined) w.services = shared;
    else {
      for (const svc in w.services) Object.freeze(w.services[svc]);
      refs.set(key, Object.freeze(w.services));
    }
    Object.freeze(w);
  }
  Object.freeze(doc.workloads);
  deepFreeze(doc.services);
  deepFreeze(doc.policies);
  Object.freeze(doc);
}

export function decodeDoc(bytes: Uint8Array): SnapshotDoc {
  const magicOk = bytes.length >= HEADER && MAGIC.every((b, i) => bytes[i] === b);
  if (!magicOk) throw new ProxyError('ERR_SNAPSHOT_BYTES', 'not an encoded snapshot (bad magic)');
  if (bytes[MAGIC.length] !== DOC_BYTES_FORMAT) {
    throw new ProxyError(
      'ERR_SNAPSHOT_BYTES',
      `encoded snapshot format ${bytes[MAGIC.length]} is not supported (expected ${DOC_BYTES_FORMAT}): main thread and worker run different builds`,
    );
  }
  const text = Buffer.from(bytes.buffer, bytes.byteOffset + HEADER, bytes.length - HEADER).toString('utf8');
  const doc = JSON.parse(text) as SnapshotDoc;
  freezeDoc(doc);
  return doc;
}
