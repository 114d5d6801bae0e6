/**
 * relay(): the JS byte copy between two Duplex streams, both ways: an HTTP/2 CONNECT stream and a
 * TCP socket (HBONE legs), or two sockets (src/native/relay.ts's JS engine, the splice relay's
 * fallback). Nothing below depends on either kind.
 *
 * Behaviour (ZTUNNEL-FACTS "Relay"):
 * - backpressure both ways: when the writer's buffer is full, the reader is paused until 'drain'
 *   (so an HTTP/2 stream stops granting window and the TCP peer's window closes);
 * - half-close both ways: EOF from one side is end() on the other, and the other direction keeps
 *   flowing until it reaches its own EOF (the relay sets allowHalfOpen on both streams: a socket
 *   accepted by a default net.Server would otherwise answer its peer's FIN by ending its own side);
 * - an error or an abrupt close on one side destroys the other with an error, so the peer sees a
 *   reset (RST_STREAM / TCP RST) rather than a clean EOF that would pass for a complete transfer;
 *   a TCP peer that resets after its own FIN shows up on the next write to it or when our EOF is
 *   forwarded to it (see endSide), not while the other side stays idle: Node stopped reading it
 *   (the splice relay, polling the fd, sees it at once);
 * - streams handed over already ended, finished, destroyed or closed are taken as they are (their
 *   past events will not come again), so `done` still settles;
 * - close(reason) ends the relay from outside; the first reason wins, so the errors that our own
 *   destroy() causes never replace it;
 * - byte counters are plain fields, readable at any time while the relay lives.
 *
 * Hot path: one 'data' listener per side bound once per relay; no closure, promise or timer per
 * chunk; chunks are forwarded as received (no copy).
 *
 * Invariant: `done` settles exactly once, after both streams have emitted 'close'.
 */
import { Socket } from 'node:net';
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

export interface RelayCloseOptions {
  /**
   * true (default): peers see a failure (TCP RST / RST_STREAM), e.g. a policy change cutting a
   * connection. false: the streams are just destroyed, so a TCP peer sees the connection closed
   * like the splice relay's stop() closes its fds.
   */
  readonly reset?: boolean;
}

export interface RelayOptions {
  /** Names used in reasons and errors ("downstream", "upstream"). */
  readonly aName?: string;
  readonly bName?: string;
}

/** RelayResult.reason when both directions reached EOF. */
export const COMPLETE = 'complete';

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
    this.adopt(this.a, this.b);
    this.adopt(this.b, this.a);
    for (const side of [this.a, this.b]) {
      // its 'error' event, if any, is gone too: `errored` still holds it (e.g. an ECONNRESET)
      if (side.closed && !side.done) this.fail(`${side.name} was closed before the relay started`, side.stream.errored);
    }
    this.maybeFinish();
    this.maybeSettle();
  }

  /**
   * Ends the relay now: both streams are destroyed and `reason` is reported (e.g. a policy change),
   * unless the relay already ended for another reason (that one stays). See RelayCloseOptions.
   */
  close(reason: string, opts: RelayCloseOptions = {}): void {
    if (this.a.closed && this.b.closed) return;
    this.fail(reason, new ProxyError('ERR_CONN_CLOSED', reason), opts.reset ?? true);
  }

  get closed(): boolean {
    return this.a.closed && this.b.closed;
  }

  private wire(src: Side, dst: Side, forward: boolean): void {
    const s = src.stream;
    const d = dst.stream;
    s.allowHalfOpen = true;
    s.on('data', (chunk: Buffer) => {
      if (forward) this.aToB += chunk.length;
      else this.bToA += chunk.length;
      if (!d.write(chunk)) s.pause();
    });
    d.on('drain', () => s.resume());
    s.on('end', () => {
      src.ended = true;
      endSide(dst);
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

  /** What already happened to src before the relay got it: those events are not coming again. */
  private adopt(src: Side, dst: Side): void {
    const s = src.stream;
    if (s.readableEnded) {
      src.ended = true;
      endSide(dst);
    }
    if (s.writableFinished) src.finished = true;
    if (s.closed) src.closed = true;
  }

  /** Both directions complete: release both streams (sockets with allowHalfOpen may wait otherwise). */
  private maybeFinish(): void {
    if (!this.a.done || !this.b.done) return;
    this.reason ??= COMPLETE;
    if (!this.a.stream.destroyed) this.a.stream.destroy();
    if (!this.b.stream.destroyed) this.b.stream.destroy();
  }

  private fail(reason: string, err: Error | null, reset = true): void {
    if (this.reason === null) {
      this.reason = reason;
      this.error = err;
    }
    if (!reset) {
      // no error: nothing is emitted that could compete with `reason`
      this.a.stream.destroy();
      this.b.stream.destroy();
      return;
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

const EMPTY = Buffer.alloc(0);

/**
 * Forwards an EOF: end() on the side's stream. A TCP socket whose peer already half-closed is
 * probed with a zero-length write first: Node stopped reading it at that EOF, and its end() takes
 * the ENOTCONN of shutdown() on a socket the peer has since reset for success, so a reset after
 * the peer's FIN would pass for a clean close. The write(2) of nothing reports it (EPIPE) as an
 * 'error' instead.
 */
function endSide(side: Side): void {
  const d = side.stream;
  if (d.writableEnded || d.destroyed) return;
  if (side.ended && d instanceof Socket) d.write(EMPTY);
  d.end();
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

/** Starts relaying between a and b; see Relay (it makes both streams allow half-open). */
export function relay(a: Duplex, b: Duplex, opts?: RelayOptions): Relay {
  return new Relay(a, b, opts);
}
