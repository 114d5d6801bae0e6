/**
 * Minimal protobuf wire-format reader/writer for the handful of tiny messages ztunnel speaks with
 * istio-cni (ZDS). A protobuf library would be a dependency and a code generator for ~10 fields;
 * the wire format itself is small and fully specified (protobuf.dev "Encoding"), so we read and
 * write it directly.
 *
 * The reader treats its input as hostile (it comes off a unix socket from another process): every
 * read is bounds-checked, varints are capped at 10 bytes / 64 bits, lengths must fit in what is left,
 * strings must be valid UTF-8, and every failure is a ProxyError carrying the caller's error code
 * and the name of the field being read. Skipping an unknown field never parses inside it (groups,
 * the only wire type whose skipping needs nesting, are rejected), so hostile nesting cannot recurse.
 */
import { ProxyError } from '../errors';

export const WIRE_VARINT = 0;
export const WIRE_FIXED64 = 1;
export const WIRE_LEN = 2;
export const WIRE_START_GROUP = 3;
export const WIRE_END_GROUP = 4;
export const WIRE_FIXED32 = 5;

const WIRE_NAMES = ['varint', 'fixed64', 'length-delimited', 'start-group', 'end-group', 'fixed32'];

function wireName(wt: number): string {
  return WIRE_NAMES[wt] ?? `invalid(${wt})`;
}

/** A varint split into 32-bit halves: JS numbers cannot hold 64 bits exactly and BigInt is overkill. */
export interface Varint64 {
  lo: number; // bits 0..31, unsigned
  hi: number; // bits 32..63, unsigned
}

export interface FieldKey {
  field: number;
  wireType: number;
}

// fatal: reject invalid UTF-8 as protobuf requires for `string`; ignoreBOM: a leading U+FEFF is
// part of the value, not a byte-order mark to strip. Stateless in one-shot mode, so sharing it is safe.
const UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

export class WireReader {
  private pos: number;

  /**
   * @param buf   the bytes of ONE message (a sub-message gets its own reader over its slice)
   * @param what  the message name used in error text, e.g. "WorkloadRequest.add(AddWorkload)"
   * @param code  the ProxyError code every decode failure carries
   */
  constructor(
    private readonly buf: Uint8Array,
    private readonly what: string,
    private readonly code: string,
  ) {
    this.pos = 0;
  }

  done(): boolean {
    return this.pos >= this.buf.length;
  }

  fail(detail: string): never {
    throw new ProxyError(this.code, `${this.what}: ${detail}`);
  }

  /** Reads a varint of at most 10 bytes whose value fits in 64 bits. */
  varint(label: string): Varint64 {
    let lo = 0;
    let hi = 0;
    for (let i = 0; ; i++) {
      if (this.pos >= this.buf.length) this.fail(`${label}: truncated varint`);
      const b = this.buf[this.pos++]!;
      const bits = b & 0x7f;
      if (i < 4) lo |= bits << (7 * i);
      else if (i === 4) {
        lo |= (bits & 0x0f) << 28;
        hi |= bits >>> 4;
      } else hi |= bits << (7 * i - 32);
      // the 10th byte carries only bit 63: anything more (or a continuation) overflows 64 bits
      if (i === 9 && b > 1) this.fail(`${label}: varint longer than 64 bits`);
      if ((b & 0x80) === 0) return { lo: lo >>> 0, hi: hi >>> 0 };
    }
  }

  /** Reads a field key; null at the end of the message. */
  key(): FieldKey | null {
    if (this.done()) return null;
    const v = this.varint('field key');
    if (v.hi !== 0) this.fail('field key does not fit in 32 bits');
    const field = v.lo >>> 3;
    const wireType = v.lo & 7;
    if (field === 0) this.fail('field number 0 is invalid');
    return { field, wireType };
  }

  /** Throws unless a known field arrived with the wire type its declaration implies. */
  expectWire(k: FieldKey, want: number, label: string): void {
    if (k.wireType !== want) {
      this.fail(`${label} (field ${k.field}) has wire type ${wireName(k.wireType)}, expected ${wireName(want)}`);
    }
  }

  /** The bytes of a length-delimited field (a view, not a copy). */
  bytes(label: string): Uint8Array {
    const n = this.varint(`${label} length`);
    const left = this.buf.length - this.pos;
    if (n.hi !== 0 || n.lo > left) {
      const len = n.hi !== 0 ? 'over 4 GiB' : String(n.lo);
      this.fail(`${label}: length ${len} runs past the end of the message (${left} bytes left)`);
    }
    const out = this.buf.subarray(this.pos, this.pos + n.lo);
    this.pos += n.lo;
    return out;
  }

  string(label: string): string {
    const b = this.bytes(label);
    try {
      return UTF8.decode(b);
    } catch {
      return this.fail(`${label} is not valid UTF-8`);
    }
  }

  /** Skips an unknown field by its wire type, as protobuf requires; groups are not supported. */
  skip(k: FieldKey): void {
    const label = `unknown field ${k.field}`;
    switch (k.wireType) {
      case WIRE_VARINT:
        this.varint(label);
        return;
      case WIRE_FIXED64:
        this.fixed(8, label);
        return;
      case WIRE_LEN:
        this.bytes(label);
        return;
      case WIRE_FIXED32:
        this.fixed(4, label);
        return;
      default:
        this.fail(`${label} has unsupported wire type ${wireName(k.wireType)}`);
    }
  }

  private fixed(n: number, label: string): void {
    const left = this.buf.length - this.pos;
    if (left < n) this.fail(`${label}: truncated fixed${n * 8} (${left} bytes left)`);
    this.pos += n;
  }
}

/** Appends protobuf fields to a growing list of chunks; finish() concatenates once. */
export class WireWriter {
  private readonly chunks: Uint8Array[] = [];

  private raw(b: Uint8Array): void {
    this.chunks.push(b);
  }

  /** A varint from 32-bit halves (lo, hi unsigned), 7 bits at a time, least significant first. */
  private varint64(lo: number, hi: number): void {
    const out: number[] = [];
    while (hi !== 0 || lo >= 0x80) {
      out.push((lo & 0x7f) | 0x80);
      lo = ((lo >>> 7) | (hi << 25)) >>> 0;
      hi >>>= 7;
    }
    out.push(lo);
    this.raw(Uint8Array.from(out));
  }

  /** Tags and lengths: always below 2^32 here. */
  private uvarint(v: number): void {
    this.varint64(v >>> 0, 0);
  }

  private tag(field: number, wireType: number): void {
    this.uvarint(field * 8 + wireType);
  }

  /** An int32/enum field: negative values are sign-extended to 64 bits (10 bytes), as protobuf does. */
  int32(field: number, v: number): void {
    this.tag(field, WIRE_VARINT);
    this.varint64(v >>> 0, v < 0 ? 0xffffffff : 0);
  }

  bytes(field: number, b: Uint8Array): void {
    this.tag(field, WIRE_LEN);
    this.uvarint(b.length);
    this.raw(b);
  }

  string(field: number, s: string): void {
    this.bytes(field, Buffer.from(s, 'utf8'));
  }

  finish(): Buffer {
    return Buffer.concat(this.chunks);
  }
}
