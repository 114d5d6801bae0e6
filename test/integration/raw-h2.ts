/**
 * A tiny raw HTTP/2 client for hostile-input tests: it writes whatever frames it is told to over
 * a TLS socket, including the ones Node's own http2 client refuses to send (no :authority,
 * non-CONNECT tunnels, floods of streams, RSTs, SETTINGS and PINGs), and records what the server
 * answers. Header blocks use HPACK "literal without indexing, new name" with no Huffman coding
 * (RFC 7541 §6.2.2), which every decoder must accept.
 */
import * as tls from 'node:tls';

export const FRAME = { DATA: 0, HEADERS: 1, RST_STREAM: 3, SETTINGS: 4, PING: 6, GOAWAY: 7, WINDOW_UPDATE: 8, CONTINUATION: 9 } as const;
export const FLAG = { END_STREAM: 0x1, ACK: 0x1, END_HEADERS: 0x4 } as const;
const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');

export function frame(type: number, flags: number, streamId: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const h = Buffer.alloc(9);
  h.writeUIntBE(payload.length, 0, 3);
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(streamId & 0x7fffffff, 5);
  return Buffer.concat([h, payload]);
}

/** HPACK integer with an N-bit prefix (RFC 7541 §5.1). */
function hpackInt(value: number, prefixBits: number, firstByte: number): Buffer {
  const max = (1 << prefixBits) - 1;
  if (value < max) return Buffer.from([firstByte | value]);
  const out = [firstByte | max];
  let v = value - max;
  while (v >= 128) {
    out.push((v % 128) + 128);
    v = Math.floor(v / 128);
  }
  out.push(v);
  return Buffer.from(out);
}

function hpackString(s: string): Buffer {
  const b = Buffer.from(s, 'latin1');
  return Buffer.concat([hpackInt(b.length, 7, 0), b]);
}

export function headerBlock(headers: ReadonlyArray<readonly [string, string]>): Buffer {
  return Buffer.concat(headers.flatMap(([n, v]) => [Buffer.from([0x00]), hpackString(n), hpackString(v)]));
}

export interface Received {
  type: number;
  flags: number;
  streamId: number;
  payload: Buffer;
}

export class RawH2 {
  readonly frames: Received[] = [];
  closed = false;
  private buf: Buffer = Buffer.alloc(0);
  private readonly waiters: Array<() => void> = [];

  private constructor(readonly socket: tls.TLSSocket) {
    socket.on('data', (d: Buffer) => this.onData(d));
    socket.on('error', () => undefined);
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
  }

  /** TLS with `opts` (the client certificate etc.), preface and an empty SETTINGS frame. */
  static connect(opts: tls.ConnectionOptions): Promise<RawH2> {
    return new Promise((resolve, reject) => {
      const s = tls.connect({ ALPNProtocols: ['h2'], servername: '', ...opts });
      s.once('error', reject);
      s.once('secureConnect', () => {
        s.off('error', reject);
        const c = new RawH2(s);
        s.write(Buffer.concat([PREFACE, frame(FRAME.SETTINGS, 0, 0)]));
        resolve(c);
      });
    });
  }

  send(...frames: Buffer[]): boolean {
    if (this.closed || this.socket.destroyed) return false;
    return this.socket.write(Buffer.concat(frames));
  }

  /** HEADERS (+ CONTINUATIONs when the block exceeds 16 KiB, the default max frame size). */
  headers(streamId: number, headers: ReadonlyArray<readonly [string, string]>, endStream = false): Buffer {
    const block = headerBlock(headers);
    const max = 16_384;
    const parts: Buffer[] = [];
    for (let off = 0; off < block.length || off === 0; off += max) {
      const chunk = block.subarray(off, off + max);
      const last = off + max >= block.length;
      const first = off === 0;
      const flags = (last ? FLAG.END_HEADERS : 0) | (first && endStream ? FLAG.END_STREAM : 0);
      parts.push(frame(first ? FRAME.HEADERS : FRAME.CONTINUATION, flags, streamId, chunk));
      if (block.length === 0) break;
    }
    return Buffer.concat(parts);
  }

  /**
   * Resolves once `pred` holds over the frames received, or the connection closed, or (when
   * given) `limitMs` passed: a server that neither answers nor closes must fail the test's
   * assertions, not hang it. Resolves with whether `pred` held.
   */
  until(pred: (frames: Received[]) => boolean, limitMs?: number): Promise<boolean> {
    return new Promise((resolve) => {
      let timer: NodeJS.Timeout | null = null;
      let settled = false;
      const finish = (v: boolean): void => {
        if (settled) return;
        settled = true;
        if (timer) clearTimeout(timer);
        resolve(v);
      };
      const check = (): void => {
        if (settled) return;
        if (pred(this.frames)) finish(true);
        else if (this.closed) finish(false);
        else this.waiters.push(check);
      };
      if (limitMs !== undefined) timer = setTimeout(() => finish(pred(this.frames)), limitMs);
      check();
    });
  }

  /** The :status of a HEADERS frame from the server on `streamId` (static-table index or literal), or null. */
  status(streamId: number): number | null {
    const f = this.frames.find((x) => x.type === FRAME.HEADERS && x.streamId === streamId);
    if (!f) return null;
    const b = f.payload;
    // nghttp2 encodes :status with the static table: 0x88 = 200, 0x8d = 400 ...; or literal name index 8
    const indexed: Record<number, number> = { 0x88: 200, 0x89: 204, 0x8a: 206, 0x8b: 304, 0x8c: 400, 0x8d: 404, 0x8e: 500 };
    if (indexed[b[0]!] !== undefined) return indexed[b[0]!]!;
    const m = /\d{3}/.exec(b.subarray(0, 8).toString('latin1'));
    return m ? Number(m[0]) : null;
  }

  rst(streamId: number): number | null {
    const f = this.frames.find((x) => x.type === FRAME.RST_STREAM && x.streamId === streamId);
    return f ? f.payload.readUInt32BE(0) : null;
  }

  goaway(): { lastStreamId: number; code: number } | null {
    const f = this.frames.find((x) => x.type === FRAME.GOAWAY);
    return f ? { lastStreamId: f.payload.readUInt32BE(0) & 0x7fffffff, code: f.payload.readUInt32BE(4) } : null;
  }

  destroy(): void {
    this.socket.destroy();
  }

  private onData(d: Buffer): void {
    this.buf = this.buf.length === 0 ? d : Buffer.concat([this.buf, d]);
    while (this.buf.length >= 9) {
      const len = this.buf.readUIntBE(0, 3);
      if (this.buf.length < 9 + len) break;
      const f: Received = { type: this.buf[3]!, flags: this.buf[4]!, streamId: this.buf.readUInt32BE(5) & 0x7fffffff, payload: Buffer.from(this.buf.subarray(9, 9 + len)) };
      this.buf = Buffer.from(this.buf.subarray(9 + len));
      // answer SETTINGS and PINGs like a well-behaved peer, so the server judges us by the test's frames only
      if (f.type === FRAME.SETTINGS && (f.flags & FLAG.ACK) === 0) this.send(frame(FRAME.SETTINGS, FLAG.ACK, 0));
      if (f.type === FRAME.PING && (f.flags & FLAG.ACK) === 0) this.send(frame(FRAME.PING, FLAG.ACK, 0, f.payload));
      // keep DATA payloads out of memory: the tests only count them
      this.frames.push(f.type === FRAME.DATA ? { ...f, payload: Buffer.alloc(0) } : f);
    }
    this.wake();
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }
}
