/**
 * relay(): the JS byte copy between two Duplex streams, both ways — here an HTTP/2 CONNECT stream
 * and a TCP socket, but nothing below depends on either (the native relay's JS fallback can reuse
 * it for socket↔socket).
 *
 * Behaviour (ZTUNNEL-FACTS "Relay"):
 * - backpressure both ways: when the writer's buffer is full, the reader is paused until 'drain'
 *   (so an HTTP/2 stream stops granting window and the TCP peer's window closes);
 * - half-close both ways: EOF from one side is end() on the other, and the other direction keeps
 *   flowing until it reaches its own EOF (the sockets must be allowHalfOpen);
 * - an error or an abrupt close on one side destroys the other with an error, so the peer sees a
 *   reset (RST_STREAM / TCP RST) rather than a clean EOF that would pass for a complete transfer;
 * - byte counters are plain fields, readable at any time while the relay lives.
 *
 * Hot path: one 'data' listener per side bound once per relay; no closure, promise or timer per
 * chunk; chunks are forwarded as received (no copy).
 *
 * Invariant: `done` settles exactly once, after both streams have emitted 'close'.
 */
import type { Duplex } from 'node:stream';
import { ProxyError } from '../errors';

export interface RelayResult {
  /** Bytes read from a and written to b. */
  readonly aToB: number;
  readonly bToA: number;
  /** "complete" when both directions reached EOF, else why the relay ended early. */
  readonly reason: string;
  /** The error that ended the relay early, if any. */
  readonly error: Error | null;
}

export interface RelayOptions {
  /** Names used in reasons and errors ("downstream", "upstream"). */
  readonly aName?: string;
  readonly bName?: string;
}

const COMPLETE = 'complete';

class Side {
  ended = false; // read EOF seen
  finished = false; // our end() on it flushed
  closed = false;
  constructor(readonly stream: Duplex, readonly name: string) {}
  get done(): boolean {
    return this.ended && this.finished;
  }
}

export class Relay {
  aToB = 0;
  bToA = 0;
  readonly done: Promise<RelayResult>;
  private settle!: (r: RelayResult) => void;
  private readonly a: Side;
  private readonly b: Side;
  private reason: string | null = null;
  private error: Error | null = null;

  constructor(a: Duplex, b: Duplex, opts: RelayOptions = {}) {
    this.a = new Side(a, opts.aName ?? 'a');
    this.b = new Side(b, opts.bName ?? 'b');
    this.done = new Promise((resolve) => (this.settle = resolve));
    this.wire(this.a, this.b, true);
    this.wire(this.b, this.a, false);
  }

  /** Ends the relay now: both streams are destroyed and `reason` is reported (e.g. a policy change). */
  close(reason: string): void {
    if (this.a.closed && this.b.closed) return;
    this.fail(reason, new ProxyError('ERR_CONN_CLOSED', reason));
  }

  get closed(): boolean {
    return this.a.closed && this.b.closed;
  }

  private wire(src: Side, dst: Side, forward: boolean): void {
    const s = src.stream;
    const d = dst.stream;
    s.on('data', (chunk: Buffer) => {
      if (forward) this.aToB += chunk.length;
      else this.bToA += chunk.length;
      if (!d.write(chunk)) s.pause();
    });
    d.on('drain', () => s.resume());
    s.on('end', () => {
      src.ended = true;
      if (!d.writableEnded && !d.destroyed) d.end();
      this.maybeFinish();
    });
    s.on('finish', () => {
      src.finished = true;
      this.maybeFinish();
    });
    s.on('error', (err: Error) => this.fail(`${src.name} error: ${describe(err)}`, err));
    s.on('close', () => {
      src.closed = true;
      if (!src.done) this.fail(`${src.name} closed before both directions finished`, null);
      this.maybeSettle();
    });
    // a 'data' listener does not restart a stream that was paused explicitly (e.g. a socket
    // accepted with pauseOnConnect, or paused after a SOCKS5 handshake): start the flow here
    s.resume();
  }

  /** Both directions complete: release both streams (sockets with allowHalfOpen may wait otherwise). */
  private maybeFinish(): void {
    if (!this.a.done || !this.b.done) return;
    this.reason ??= COMPLETE;
    if (!this.a.stream.destroyed) this.a.stream.destroy();
    if (!this.b.stream.destroyed) this.b.stream.destroy();
  }

  private fail(reason: string, err: Error | null): void {
    if (this.reason === null) {
      this.reason = reason;
      this.error = err;
    }
    const abort = err ?? new ProxyError('ERR_CONN_CLOSED', reason);
    abortStream(this.a.stream, abort);
    abortStream(this.b.stream, abort);
  }

  private maybeSettle(): void {
    if (!this.a.closed || !this.b.closed) return;
    this.settle({ aToB: this.aToB, bToA: this.bToA, reason: this.reason ?? COMPLETE, error: this.error });
  }
}

/**
 * Ends a stream so that its peer sees a failure, not a clean EOF: a TCP socket is reset (RST), an
 * HTTP/2 stream destroyed with an error sends RST_STREAM(INTERNAL_ERROR).
 */
function abortStream(s: Duplex, err: Error): void {
  if (s.destroyed) return;
  const reset = (s as Duplex & { resetAndDestroy?: () => unknown }).resetAndDestroy;
  if (typeof reset === 'function') {
    try {
      reset.call(s);
      return;
    } catch {
      // not connected yet: fall through to destroy
    }
  }
  s.destroy(err);
}

function describe(err: Error): string {
  const code = (err as NodeJS.ErrnoException).code;
  return code && !err.message.includes(code) ? `${code}: ${err.message}` : err.message;
}

/** Starts relaying between a and b; see Relay. Both streams must allow half-open. */
export function relay(a: Duplex, b: Duplex, opts?: RelayOptions): Relay {
  return new Relay(a, b, opts);
}
