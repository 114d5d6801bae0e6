/**
 * Bidirectional byte relays between two connected TCP sockets, with one contract and two engines:
 *  - startSpliceRelay: the addon's splice(2) relay (native/README.md) runs off the JS thread; the
 *    Node sockets are dup()ed into it and destroyed, so no byte passes through JS.
 *  - startJsRelay: the same semantics with Node streams, by proxy/copy.ts's Relay
 *    (ZTUNNEL_NATIVE_RELAY=false, TLS sockets, or no addon).
 * Contract (both): bytes A->B and B->A until both directions saw EOF; EOF on one side is forwarded
 * as a half-close (FIN) to the other while the opposite direction keeps going; any error closes
 * both sockets (the JS engine resets the other one, as on the HBONE legs); stats() is live and
 * final after completion; stop() closes both; onDone runs exactly once, after both sockets are
 * closed, with reason 'eof' | 'reset' | 'error' | 'stopped'.
 * Counters count bytes handed to the destination socket.
 */
import type { Socket } from 'node:net';
import { getSystemErrorName } from 'node:util';
import { ProxyError } from '../errors';
import { COMPLETE, Relay, type RelayResult as CopyResult } from '../proxy/copy';
import type { NativeApi, NativeRelayResult, RelayCounters } from './addon';

export type RelayReason = 'eof' | 'reset' | 'error' | 'stopped';

export interface RelayResult extends RelayCounters {
  reason: RelayReason;
  /** Node-style negative errno of the error that ended the relay, else 0 */
  errno: number;
  /** e.g. 'ECONNRESET' when errno != 0 (or a Node stream error code on the JS path) */
  code?: string;
}

export type RelayDone = (result: RelayResult) => void;

export interface RelayHandle {
  readonly kind: 'splice' | 'js';
  stats(): RelayCounters;
  /** Idempotent. Unless the relay had already finished, onDone follows with reason 'stopped'. */
  stop(): void;
}

export interface SpliceRelayOptions {
  pipeSize?: number;
}

/** errno codes that mean the peer went away rather than something failing locally */
function isResetCode(code: string | undefined): boolean {
  return code === 'ECONNRESET' || code === 'EPIPE' || code === 'ENOTCONN' || code === 'ECONNABORTED';
}

/** The OS file descriptor behind a net.Socket, when it has one (Node keeps it on the private handle). */
export function fdOf(sock: Socket): number | undefined {
  const fd = (sock as unknown as { _handle?: { fd?: unknown } | null })._handle?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : undefined;
}

/** Why `sock` cannot be handed to the splice relay, or null when it can. */
export function spliceIneligibility(sock: Socket): string | null {
  if ((sock as { encrypted?: boolean }).encrypted === true) return 'it is a TLS socket (bytes must pass through TLS in JS)';
  if (sock.destroyed) return 'it is destroyed';
  if (sock.connecting) return 'it is still connecting';
  if (fdOf(sock) === undefined) return 'it has no file descriptor';
  if (sock.writableLength > 0) return 'it has writes not yet flushed to the kernel';
  if (sock.writableEnded) return 'its write side was already ended';
  if (sock.readableEncoding !== null) return 'its readable side has an encoding set';
  return null;
}

/** Bytes Node already read from the kernel but nobody consumed: they must go first. */
function takeBuffered(sock: Socket): Buffer | null {
  if (sock.readableLength === 0) return null;
  sock.pause(); // paused mode: read() returns data without emitting 'data' to other listeners
  const chunks: Buffer[] = [];
  for (let c = sock.read() as Buffer | null; c !== null; c = sock.read() as Buffer | null) chunks.push(c);
  return chunks.length === 0 ? null : Buffer.concat(chunks);
}

function fromNative(r: NativeRelayResult): RelayResult {
  const out: RelayResult = { aToB: r.aToB, bToA: r.bToA, reason: r.reason, errno: r.errno };
  if (r.errno < 0) out.code = getSystemErrorName(r.errno);
  return out;
}

class SpliceRelay implements RelayHandle {
  readonly kind = 'splice' as const;
  private readonly native: NativeApi;
  private readonly id: number;
  private result: RelayResult | null = null;
  private last: RelayCounters = { aToB: 0, bToA: 0 };

  constructor(native: NativeApi, fdA: number, fdB: number, onDone: RelayDone, opts: SpliceRelayOptions & { prefixAB: Buffer | null; prefixBA: Buffer | null }) {
    this.native = native;
    this.id = native.relayStart(fdA, fdB, (r) => {
      this.result = fromNative(r);
      onDone(this.result);
    }, opts);
  }

  stats(): RelayCounters {
    if (this.result) return { aToB: this.result.aToB, bToA: this.result.bToA };
    const s = this.native.relayStats(this.id);
    if (s) this.last = s;
    return { ...this.last };
  }

  stop(): void {
    if (!this.result) this.native.relayStop(this.id);
  }
}

/**
 * Moves both sockets into the native splice relay. Throws ERR_RELAY_INELIGIBLE (sockets untouched)
 * when a socket cannot be spliced, or the addon's error (sockets untouched, buffered bytes put
 * back) when the relay cannot start. On success both Node sockets are destroyed (their 'close'
 * fires, without error): the relay owns duplicates of their fds.
 */
export function startSpliceRelay(native: NativeApi, sockA: Socket, sockB: Socket, onDone: RelayDone, opts: SpliceRelayOptions = {}): RelayHandle {
  for (const [name, s] of [['A', sockA], ['B', sockB]] as const) {
    const why = spliceIneligibility(s);
    if (why !== null) throw new ProxyError('ERR_RELAY_INELIGIBLE', `splice relay: socket ${name} cannot be spliced: ${why}`);
  }
  const fdA = native.dup(fdOf(sockA) as number);
  let fdB: number;
  try {
    fdB = native.dup(fdOf(sockB) as number);
  } catch (err) {
    native.close(fdA);
    throw err;
  }
  const prefixAB = takeBuffered(sockA);
  const prefixBA = takeBuffered(sockB);
  let relay: SpliceRelay;
  try {
    relay = new SpliceRelay(native, fdA, fdB, onDone, { ...opts, prefixAB, prefixBA });
  } catch (err) {
    native.close(fdA);
    native.close(fdB);
    if (prefixAB) sockA.unshift(prefixAB);
    if (prefixBA) sockB.unshift(prefixBA);
    throw err;
  }
  sockA.destroy();
  sockB.destroy();
  return relay;
}

/** Relay's reason for a stop(); no reason Relay makes up itself is spelled like this. */
const STOPPED = 'stopped';

/** Maps copy.ts's result onto this contract: 'complete' is 'eof', the error decides reset/error. */
function fromCopy(r: CopyResult): RelayResult {
  if (r.reason === COMPLETE) return { aToB: r.aToB, bToA: r.bToA, reason: 'eof', errno: 0 };
  if (r.reason === STOPPED) return { aToB: r.aToB, bToA: r.bToA, reason: 'stopped', errno: 0 };
  // an early end without an error is a socket closed from outside (destroy(), a timeout)
  const err = r.error as NodeJS.ErrnoException | null;
  const out: RelayResult = { aToB: r.aToB, bToA: r.bToA, reason: isResetCode(err?.code) ? 'reset' : 'error', errno: 0 };
  if (typeof err?.errno === 'number') out.errno = err.errno;
  if (err?.code !== undefined) out.code = err.code;
  return out;
}

/**
 * Relays in JS with copy.ts's Relay (the same copy as the HBONE legs); takes over both sockets
 * (their data/end/error events, allowHalfOpen) until they close. stop() destroys both sockets
 * without a reset, as the splice relay closes its fds.
 */
export function startJsRelay(sockA: Socket, sockB: Socket, onDone: RelayDone): RelayHandle {
  const r = new Relay(sockA, sockB, { aName: 'A', bName: 'B' });
  void r.done.then((res) => onDone(fromCopy(res)));
  return {
    kind: 'js',
    stats: () => ({ aToB: r.aToB, bToA: r.bToA }),
    stop: () => r.close(STOPPED, { reset: false }),
  };
}

/**
 * The data plane's entry point: splice when an addon is given and both sockets qualify, JS
 * otherwise (pass native = null for ZTUNNEL_NATIVE_RELAY=false or when the addon is unavailable).
 * Errors starting an eligible splice relay are thrown, not hidden behind a fallback.
 */
export function startRelay(sockA: Socket, sockB: Socket, onDone: RelayDone, opts: SpliceRelayOptions & { native: NativeApi | null }): RelayHandle {
  if (opts.native !== null && spliceIneligibility(sockA) === null && spliceIneligibility(sockB) === null) {
    return startSpliceRelay(opts.native, sockA, sockB, onDone, opts.pipeSize === undefined ? {} : { pipeSize: opts.pipeSize });
  }
  return startJsRelay(sockA, sockB, onDone);
}
