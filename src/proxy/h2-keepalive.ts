/**
 * HTTP/2 keepalive: a PING on every session each `intervalMs`; a session whose PING stays
 * unanswered for `timeoutMs` is destroyed (ztunnel: every 10 s, 20 s timeout). It detects peers
 * that vanished without a FIN (node crash, network partition) so pooled sessions are not reused
 * and their streams fail instead of hanging.
 *
 * No timer of its own: the owner (pool or server) calls tick(now) from its one coarse interval,
 * so the cost is one timer per pool/server, not per session.
 *
 * Invariant: `sessions` holds exactly the tracked sessions not yet closed; each has at most one
 * PING of ours outstanding.
 */
import type * as http2 from 'node:http2';
import { ProxyError } from '../errors';

interface PingState {
  /** When the outstanding PING was sent; 0 = none outstanding. */
  sentAt: number;
  lastPingAt: number;
}

export interface KeepaliveOptions {
  readonly intervalMs: number;
  readonly timeoutMs: number;
}

export class H2Keepalive {
  private readonly sessions = new Map<http2.Http2Session, PingState>();

  constructor(private readonly opts: KeepaliveOptions) {}

  /** Starts pinging `session` (call once it is connected). Forgotten automatically on close. */
  track(session: http2.Http2Session, now: number): void {
    if (session.destroyed || this.sessions.has(session)) return;
    this.sessions.set(session, { sentAt: 0, lastPingAt: now });
    session.once('close', () => this.sessions.delete(session));
  }

  get size(): number {
    return this.sessions.size;
  }

  tick(now: number): void {
    for (const [session, st] of this.sessions) {
      if (session.destroyed || session.closed) continue;
      if (st.sentAt !== 0) {
        if (now - st.sentAt >= this.opts.timeoutMs) {
          this.sessions.delete(session);
          session.destroy(
            new ProxyError('ERR_TIMEOUT', `HTTP/2 PING not answered within ${this.opts.timeoutMs} ms: the peer is gone`),
          );
        }
        continue;
      }
      if (now - st.lastPingAt < this.opts.intervalMs) continue;
      st.lastPingAt = now;
      st.sentAt = now;
      let sent = false;
      try {
        sent = session.ping((err) => {
          // An error here means the session closed meanwhile; 'close' cleans up.
          if (!err) st.sentAt = 0;
        });
      } catch {
        sent = false;
      }
      if (!sent) st.sentAt = 0;
    }
  }
}
