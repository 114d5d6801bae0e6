/**
 * HTTP/2 settings for HBONE, both ends (ZTUNNEL-FACTS "HBONE"; /work/shared/PERF-NOTES.md).
 *
 * Why every value matters: Node advertises a 64 KiB stream window and never grows the connection
 * window past 64 KiB on its own, so a tunnel stalls once per window per round trip — measured at
 * half the loopback throughput. The stream window goes into SETTINGS; the connection window can
 * only be raised with a WINDOW_UPDATE, which is what session.setLocalWindowSize sends, and it has
 * to be done on BOTH the client and the server session (each side receives data).
 */
import type * as http2 from 'node:http2';
import { ProxyError } from '../errors';

export interface H2Settings {
  /** Per-stream receive window (SETTINGS_INITIAL_WINDOW_SIZE), bytes. */
  readonly streamWindow: number;
  /** Per-connection receive window, raised with WINDOW_UPDATE after the preface, bytes. */
  readonly connectionWindow: number;
  /** SETTINGS_MAX_FRAME_SIZE, bytes (16 KiB .. 16 MiB - 1). */
  readonly maxFrameSize: number;
  /** SETTINGS_MAX_CONCURRENT_STREAMS the server advertises. */
  readonly maxConcurrentStreams: number;
  /** A PING is sent this often on every session. */
  readonly pingIntervalMs: number;
  /** A session whose PING is unanswered this long is destroyed. */
  readonly pingTimeoutMs: number;
}

const MiB = 1024 * 1024;

export const DEFAULT_H2_SETTINGS: H2Settings = Object.freeze({
  streamWindow: 4 * MiB,
  connectionWindow: 16 * MiB,
  maxFrameSize: 1 * MiB,
  maxConcurrentStreams: 200,
  pingIntervalMs: 10_000,
  pingTimeoutMs: 20_000,
});

const MAX_WINDOW = 2 ** 31 - 1;

/** Checks the ranges RFC 9113 allows; throws ERR_H2_SETTINGS naming the bad field. */
export function checkH2Settings(s: H2Settings): H2Settings {
  const fail = (field: string, want: string, got: unknown): never => {
    throw new ProxyError('ERR_H2_SETTINGS', `HTTP/2 setting ${field} must be ${want}, got ${String(got)}`);
  };
  const int = (v: number): boolean => Number.isInteger(v);
  if (!int(s.streamWindow) || s.streamWindow < 1 || s.streamWindow > MAX_WINDOW) fail('streamWindow', `1..${MAX_WINDOW}`, s.streamWindow);
  if (!int(s.connectionWindow) || s.connectionWindow < 65535 || s.connectionWindow > MAX_WINDOW) fail('connectionWindow', `65535..${MAX_WINDOW}`, s.connectionWindow);
  if (!int(s.maxFrameSize) || s.maxFrameSize < 16384 || s.maxFrameSize > 16777215) fail('maxFrameSize', '16384..16777215', s.maxFrameSize);
  if (!int(s.maxConcurrentStreams) || s.maxConcurrentStreams < 1) fail('maxConcurrentStreams', 'a positive integer', s.maxConcurrentStreams);
  if (!(s.pingIntervalMs > 0)) fail('pingIntervalMs', 'positive', s.pingIntervalMs);
  if (!(s.pingTimeoutMs > 0)) fail('pingTimeoutMs', 'positive', s.pingTimeoutMs);
  return s;
}

/**
 * Node's per-session memory cap (default 10 MB) counts data queued in nghttp2; with a 16 MiB
 * connection window one busy session can legitimately hold more than that, and at the cap Node
 * refuses NEW streams with ENHANCE_YOUR_CALM. Allow two windows plus headroom (megabytes).
 */
function maxSessionMemory(s: H2Settings): number {
  return Math.ceil((2 * s.connectionWindow) / MiB) + 10;
}

/** Options for http2.createServer. */
export function serverSessionOptions(s: H2Settings): http2.ServerOptions {
  return {
    settings: {
      initialWindowSize: s.streamWindow,
      maxFrameSize: s.maxFrameSize,
      maxConcurrentStreams: s.maxConcurrentStreams,
      enablePush: false,
    },
    maxSessionMemory: maxSessionMemory(s),
  };
}

/** Options for http2.connect. `streamCap` is the most streams we will open on one session. */
export function clientSessionOptions(s: H2Settings, streamCap: number): http2.ClientSessionOptions {
  return {
    settings: {
      initialWindowSize: s.streamWindow,
      maxFrameSize: s.maxFrameSize,
      enablePush: false,
    },
    // Until the server's SETTINGS arrive Node assumes 100 concurrent streams; assume our own cap
    // instead so a burst on a fresh connection is not queued (the server allows 200).
    peerMaxConcurrentStreams: streamCap,
    maxSessionMemory: maxSessionMemory(s),
  };
}

/**
 * Raises the connection receive window. Call once the session's handle exists: on the server at
 * 'session', on the client at 'connect' (before that Node has no native session to update).
 */
export function raiseConnectionWindow(session: http2.Http2Session, s: H2Settings): void {
  if (session.destroyed) return;
  session.setLocalWindowSize(s.connectionWindow);
}
