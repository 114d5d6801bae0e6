/**
 * HbonePool: pooled HTTP/2-over-mTLS connections for HBONE clients (ztunnel's proxy/pool.rs).
 *
 * One pool key = (source identity and its certificate serial, expected destination identities,
 * next-hop address, source IP): connections are only shared between requests that would have
 * produced the very same TLS session. The serial is part of the key so a rotated certificate is
 * used by new streams at once; connections of the old certificate get no new streams and are
 * released once unused, like any idle connection.
 *
 * Invariants:
 * - `usable` lists per key the connections that may take new streams (connecting or ready, no
 *   GOAWAY, not idle-released); `all` holds every connection not yet closed.
 * - conn.streams counts reserved slots (a request being set up or an open stream) and never
 *   exceeds conn.cap = min(maxStreamsPerConnection, the server's SETTINGS_MAX_CONCURRENT_STREAMS
 *   once known). A new connection is dialled only when every usable one of the key is full, so
 *   a burst of N requests opens ceil(N / cap) connections.
 * - One coarse interval timer per pool drives pings, connect deadlines and idle release.
 *
 * Why not http2-wrapper's Agent: it pools by origin and TLS options it compares by value, has no
 * notion of a per-request client identity or of a stream cap lower than the server's, and would
 * keep its own timers per session; the key and the cap are the whole point here, and what is left
 * (dial, wait for 'connect', count streams) is short.
 */
import * as http2 from 'node:http2';
import type * as net from 'node:net';
import * as tls from 'node:tls';
import { ProxyError } from '../errors';
import { joinHostPort } from '../net/ip';
import { H2Keepalive } from './h2-keepalive';
import { clientSessionOptions, raiseConnectionWindow, type H2Settings } from './h2-settings';

export interface PoolOptions {
  readonly h2: H2Settings;
  /** Streams per connection before another connection is opened (ztunnel: 100). */
  readonly maxStreamsPerConnection: number;
  /** A connection with no stream for this long is closed (ztunnel: 5 min). */
  readonly unusedReleaseMs: number;
  /** TCP + TLS + HTTP/2 setup deadline (ztunnel: 10 s). */
  readonly connectTimeoutMs: number;
  /** Period of the pool's one timer; 0 = no timer (tests call tick()). Default 1000. */
  readonly tickMs?: number;
  readonly now?: () => number;
  /** Called with the TCP socket under a new connection once it connected (keepalive options). */
  readonly onTcpConnect?: (tcp: net.Socket) => void;
}

/** Where and how to dial a new connection for a key. */
export interface DialSpec {
  readonly host: string;
  readonly port: number;
  readonly localAddress?: string;
  /** A connecting TCP socket to dial over instead of tls.connect's own (in-pod: made in the pod's netns). */
  readonly socket?: () => net.Socket;
  /** tls.connect options: the source certificate, expected SANs, ALPN h2, no SNI. */
  readonly tls: tls.ConnectionOptions;
}

export type ConnState = 'connecting' | 'ready' | 'draining' | 'closed';

export class PooledConnection {
  state: ConnState = 'connecting';
  streams = 0;
  peakStreams = 0;
  cap: number;
  idleSince: number;
  tcpConnected = false;
  /** The server's SETTINGS arrived: its HTTP/2 layer accepted us (and so our certificate). */
  gotSettings = false;
  /** The classified error that failed or ended the connection. */
  failure: ProxyError | null = null;
  readonly ready: Promise<void>;
  resolveReady!: () => void;
  rejectReady!: (err: ProxyError) => void;

  constructor(
    readonly id: number,
    readonly key: string,
    readonly hop: string,
    readonly socket: tls.TLSSocket,
    readonly session: http2.ClientHttp2Session,
    readonly startedAt: number,
    cap: number,
  ) {
    this.cap = cap;
    this.idleSince = startedAt;
    this.ready = new Promise<void>((resolve, reject) => {
      this.resolveReady = resolve;
      this.rejectReady = reject;
    });
    // a connection nobody waits on any more (all waiters gave up) must not raise unhandled rejections
    this.ready.catch(ignore);
  }

  /** The error to report for a failure seen on this connection (socket, session or a stream). */
  classify(err: unknown): ProxyError {
    if (this.failure) return this.failure;
    const e = err instanceof Error ? err : new Error(String(err));
    if (e instanceof ProxyError && (e.code === 'ERR_TIMEOUT' || e.code === 'ERR_CONNECT' || e.code === 'ERR_TLS')) return e;
    const why = describe(e);
    if (!this.tcpConnected) return new ProxyError('ERR_CONNECT', `cannot connect to ${this.hop}: ${why}`, { cause: e });
    if (this.state === 'connecting') return new ProxyError('ERR_TLS', `TLS handshake with ${this.hop} failed: ${why}`, { cause: e });
    if (!this.gotSettings) {
      return new ProxyError(
        'ERR_TLS',
        `${this.hop} closed the connection right after the TLS handshake, before HTTP/2 started (did it refuse our client certificate?): ${why}`,
        { cause: e },
      );
    }
    return new ProxyError('ERR_HBONE_STREAM', `HBONE connection to ${this.hop} failed: ${why}`, { cause: e });
  }
}

export interface PoolStats {
  readonly connections: number;
  readonly streams: number;
  readonly byConnection: readonly { readonly id: number; readonly key: string; readonly state: ConnState; readonly streams: number; readonly peakStreams: number }[];
}

function ignore(): void {}

function describe(e: Error): string {
  const code = (e as NodeJS.ErrnoException).code;
  return code && !e.message.includes(code) ? `${code}: ${e.message}` : e.message;
}

export class HbonePool {
  private readonly usable = new Map<string, PooledConnection[]>();
  private readonly all = new Set<PooledConnection>();
  private readonly keepalive: H2Keepalive;
  private readonly timer: NodeJS.Timeout | null;
  private readonly now: () => number;
  private nextId = 1;
  private closed = false;

  constructor(private readonly opts: PoolOptions) {
    if (!(opts.maxStreamsPerConnection >= 1)) {
      throw new ProxyError('ERR_POOL_OPTIONS', `maxStreamsPerConnection must be at least 1, got ${opts.maxStreamsPerConnection}`);
    }
    this.now = opts.now ?? Date.now;
    this.keepalive = new H2Keepalive({ intervalMs: opts.h2.pingIntervalMs, timeoutMs: opts.h2.pingTimeoutMs });
    const tickMs = opts.tickMs ?? 1000;
    this.timer = tickMs > 0 ? setInterval(() => this.tick(), tickMs) : null;
    this.timer?.unref();
  }

  /**
   * A connection for `key` with one stream slot reserved for the caller, who must call release()
   * exactly once when the stream is done (or was never opened). Dials with `spec` when every
   * connection of the key is full. Rejects with ERR_CONNECT, ERR_TLS or ERR_TIMEOUT.
   */
  async acquire(key: string, spec: () => DialSpec): Promise<PooledConnection> {
    if (this.closed) throw new ProxyError('ERR_POOL_CLOSED', 'the HBONE connection pool is closed (draining)');
    const list = this.usable.get(key);
    let conn: PooledConnection | undefined;
    if (list) {
      for (const c of list) {
        if (c.streams < c.cap) {
          conn = c;
          break;
        }
      }
    }
    conn ??= this.dial(key, spec());
    this.reserve(conn);
    if (conn.state === 'connecting') {
      try {
        await conn.ready;
      } catch (err) {
        this.release(conn);
        throw err;
      }
    }
    return conn;
  }

  /** Frees a slot reserved by acquire(). */
  release(conn: PooledConnection): void {
    if (conn.streams <= 0) return;
    conn.streams--;
    if (conn.streams === 0) conn.idleSince = this.now();
  }

  /** Takes a connection out of rotation (the caller found it unusable); its streams finish. */
  retire(conn: PooledConnection): void {
    this.unlist(conn);
    if (conn.state === 'ready' || conn.state === 'connecting') conn.state = 'draining';
    if (!conn.session.closed && !conn.session.destroyed) conn.session.close();
  }

  stats(): PoolStats {
    let streams = 0;
    const byConnection = [];
    for (const c of this.all) {
      streams += c.streams;
      byConnection.push({ id: c.id, key: c.key, state: c.state, streams: c.streams, peakStreams: c.peakStreams });
    }
    return { connections: this.all.size, streams, byConnection };
  }

  /** Pings, connect deadlines, idle release. The pool's timer calls it; tests call it with a clock. */
  tick(now = this.now()): void {
    this.keepalive.tick(now);
    for (const c of this.all) {
      if (c.state === 'connecting' && now - c.startedAt >= this.opts.connectTimeoutMs) {
        c.failure = new ProxyError('ERR_TIMEOUT', `connecting to ${c.hop} took longer than ${this.opts.connectTimeoutMs} ms`);
        c.session.destroy(c.failure);
      } else if (c.state === 'ready' && c.streams === 0 && now - c.idleSince >= this.opts.unusedReleaseMs) {
        this.retire(c);
      }
    }
  }

  /** Drain: GOAWAY on every connection; open streams finish. Resolves when all are closed. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    const waits: Promise<void>[] = [];
    for (const c of this.all) {
      if (c.state === 'closed') continue;
      waits.push(new Promise((resolve) => c.session.once('close', () => resolve())));
      this.retire(c);
    }
    await Promise.all(waits);
  }

  /** Shutdown: destroys every connection and its streams at once. */
  /** Cuts the connections whose key matches (in-pod: those dialled from a deleted pod). Returns how many. */
  destroyWhere(match: (key: string) => boolean): number {
    let n = 0;
    for (const c of [...this.all]) {
      if (!match(c.key)) continue;
      this.unlist(c);
      c.session.destroy();
      n++;
    }
    return n;
  }

  destroy(): void {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    for (const c of this.all) c.session.destroy();
  }

  private reserve(conn: PooledConnection): void {
    conn.streams++;
    if (conn.streams > conn.peakStreams) conn.peakStreams = conn.streams;
  }

  private unlist(conn: PooledConnection): void {
    const list = this.usable.get(conn.key);
    if (!list) return;
    const i = list.indexOf(conn);
    if (i >= 0) list.splice(i, 1);
    if (list.length === 0) this.usable.delete(conn.key);
  }

  private dial(key: string, spec: DialSpec): PooledConnection {
    const hop = joinHostPort(spec.host, spec.port);
    // tls.connect hands localAddress to the TCP connect; @types/node just does not list it.
    const connectOpts: tls.ConnectionOptions & { localAddress?: string } = { ...spec.tls, host: spec.host, port: spec.port };
    if (spec.localAddress) connectOpts.localAddress = spec.localAddress;
    let tcp: net.Socket | null = null;
    if (spec.socket) connectOpts.socket = tcp = spec.socket();
    const socket = tls.connect(connectOpts);
    const session = http2.connect(`https://${hop}`, {
      ...clientSessionOptions(this.opts.h2, this.opts.maxStreamsPerConnection),
      createConnection: () => socket,
    });
    const conn = new PooledConnection(this.nextId++, key, hop, socket, session, this.now(), this.opts.maxStreamsPerConnection);
    this.all.add(conn);
    let list = this.usable.get(key);
    if (!list) this.usable.set(key, (list = []));
    list.push(conn);

    // a TLS socket wrapped around a given TCP socket does not emit 'connect' itself
    (tcp ?? socket).once('connect', () => {
      conn.tcpConnected = true;
      // on the connected TCP handle: tls.connect has no noDelay option
      (tcp ?? socket).setNoDelay(true);
      this.opts.onTcpConnect?.(tcp ?? socket);
    });
    tcp?.on('error', (err) => (conn.failure ??= conn.classify(err)));
    // Classify socket errors here, where we still know the phase; the session sees them too.
    socket.on('error', (err) => (conn.failure ??= conn.classify(err)));
    session.on('error', (err) => (conn.failure ??= conn.classify(err)));
    session.once('connect', () => {
      if (conn.state !== 'connecting') return;
      conn.state = 'ready';
      conn.idleSince = this.now();
      raiseConnectionWindow(session, this.opts.h2);
      this.keepalive.track(session, this.now());
      conn.resolveReady();
    });
    session.on('remoteSettings', (settings: http2.Settings) => {
      conn.gotSettings = true;
      const max = settings.maxConcurrentStreams;
      if (max !== undefined && max >= 1) conn.cap = Math.min(this.opts.maxStreamsPerConnection, max);
    });
    session.once('goaway', () => {
      this.unlist(conn);
      if (conn.state === 'ready') conn.state = 'draining';
    });
    session.once('close', () => {
      const wasConnecting = conn.state === 'connecting';
      conn.state = 'closed';
      this.unlist(conn);
      this.all.delete(conn);
      if (wasConnecting) {
        conn.failure ??= conn.classify(new Error('connection closed during setup'));
        conn.rejectReady(conn.failure);
      }
    });
    return conn;
  }
}
