/**
 * HboneServer: the HBONE listeners (:15008) of this node's workloads — one listener per local
 * workload IP, each serving with THAT workload's certificate (node mode: the client sends no SNI,
 * so the certificate is chosen by the address the client dialled). Listeners are opened and
 * closed as workloads come and go (open()/close()).
 *
 * Layers per accepted socket: TCP (Listener, tracked for drain) → TLS via TlsContexts.accept
 * (chain verified, client identity in our trust domain, ALPN h2; refusals logged with their
 * reason) → one http2 server session → each CONNECT stream handled by InboundHandler.
 *
 * Invariants: `bySession` maps every live server session to the verified peer facts of its TLS
 * connection and its reset budget; a session without an entry (which cannot happen through
 * accept) gets its streams refused. One coarse timer per server drives the PINGs of all sessions.
 *
 * Rapid reset (CVE-2023-44487): nghttp2 rate-limits the peer's RST_STREAMs itself, but when it
 * trips it only queues GOAWAY(INTERNAL_ERROR) and stops wanting input, and Node then stops
 * reading the socket without telling JS: the session, its socket and its connection-limit slot
 * stay until the keepalive gives up on it (forever with keepalive off), and the peer's FIN is
 * never seen. So each session also has a reset budget of its own, smaller than nghttp2's, charged
 * synchronously as each reset is parsed ('aborted'); once spent, the session is destroyed with
 * GOAWAY(ENHANCE_YOUR_CALM), which ends its own tunnels and nothing else.
 */
import * as http2 from 'node:http2';
import * as net from 'node:net';
import type * as tls from 'node:tls';
import { ProxyError } from '../errors';
import { formatSpiffe, type Identity } from '../identity/spiffe';
import type { WorkloadCert } from '../identity/workload-cert';
import { normalizeIp, joinHostPort } from '../net/ip';
import type { ConnectionLimit } from '../net/conn-limit';
import { Listener, type BoundAddress } from '../net/listener';
import { TlsContexts } from '../tls/contexts';
import { INBOUND_HBONE_PORT } from '../config/ports';
import type { WorkloadLookup } from './connection-manager';
import { H2Keepalive } from './h2-keepalive';
import { DEFAULT_H2_SETTINGS, checkH2Settings, raiseConnectionWindow, serverSessionOptions, type H2Settings } from './h2-settings';
import { InboundHandler, type InboundDeps, type PeerContext } from './inbound';
import { NO_LOG, type ProxyLog } from './proxy-log';

export interface HboneServerOptions<S extends WorkloadLookup> extends InboundDeps<S> {
  readonly h2?: H2Settings;
  /** The per-session budget for streams reset by the peer; see ResetBudget. */
  readonly resetBudget?: ResetBudgetOptions;
  /** TLS handshake deadline (ZTUNNEL_HANDSHAKE_TIMEOUT, default 10 s). */
  readonly handshakeTimeoutMs?: number;
  /** The process-wide connection budget (ZTUNNEL_MAX_CONNECTIONS); null/absent = no limit. */
  readonly connectionLimit?: ConnectionLimit | null;
  /** Called for every TCP connection refused by the limit. */
  readonly onLimitRefused?: (socket: net.Socket) => void;
  /** Period of the keepalive timer; 0 disables it (tests). Default 1000. */
  readonly tickMs?: number;
  readonly now?: () => number;
}

/** One local workload's HBONE listener. */
export interface WorkloadListenerSpec {
  /** The workload's IP: the listener binds it and only accepts CONNECTs to it. */
  readonly ip: string;
  /** Default 15008; 0 picks a free port (tests). */
  readonly port?: number;
  /** An already-listening socket for ip:port to adopt (SO_REUSEPORT in worker threads). */
  readonly fd?: number;
  /** The workload's current certificate, asked for on every new connection (rotation). */
  readonly cert: () => WorkloadCert | Promise<WorkloadCert>;
}

interface OpenListener {
  readonly ip: string;
  readonly listener: Listener;
}

export interface ResetBudgetOptions {
  /** Tokens a session starts with (and can save up to). */
  readonly burst: number;
  /** Tokens regained per second. */
  readonly perSecond: number;
  /** Cost of a reset that arrives before our response (the rapid-reset signature); others cost 1. */
  readonly earlyCost: number;
}

/**
 * nghttp2's own limit is a bucket of 1000 resets regaining 33/s; ours must run out first (so the
 * session is closed by us, and closed for real) without bothering honest clients: a client whose
 * 200 pooled tunnels all reset at once spends 200 of 500, while resets before any answer (a
 * tunnel nobody waited for) cost 5, so a rapid-reset flood is cut after 100 streams.
 */
export const DEFAULT_RESET_BUDGET: ResetBudgetOptions = Object.freeze({ burst: 500, perSecond: 30, earlyCost: 5 });

/** Per session: who the peer is, and what is left of its reset budget. */
interface SessionState {
  readonly ctx: PeerContext;
  tokens: number;
  refilledAt: number;
  flooding: boolean;
}

export class HboneServer<S extends WorkloadLookup> {
  readonly contexts: TlsContexts;
  private readonly h2: http2.Http2Server;
  private readonly handler: InboundHandler<S>;
  private readonly listeners = new Map<string, OpenListener>();
  private readonly bySession = new WeakMap<http2.ServerHttp2Session, SessionState>();
  private readonly resetBudget: ResetBudgetOptions;
  private readonly sessions = new Set<http2.ServerHttp2Session>();
  private readonly keepalive: H2Keepalive;
  private readonly timer: NodeJS.Timeout | null;
  private readonly now: () => number;
  private readonly log: ProxyLog;
  private readonly settings: H2Settings;
  /** Set only while a verified TLS socket is being handed to the http2 server (see attach). */
  private handoff: PeerContext | null = null;

  constructor(private readonly opts: HboneServerOptions<S>) {
    this.settings = checkH2Settings(opts.h2 ?? DEFAULT_H2_SETTINGS);
    this.log = opts.log ?? NO_LOG;
    this.now = opts.now ?? Date.now;
    this.resetBudget = opts.resetBudget ?? DEFAULT_RESET_BUDGET;
    this.handler = new InboundHandler(opts);
    this.keepalive = new H2Keepalive({ intervalMs: this.settings.pingIntervalMs, timeoutMs: this.settings.pingTimeoutMs });
    this.contexts = new TlsContexts({
      handshakeTimeoutMs: opts.handshakeTimeoutMs,
      server: {
        onSecureConnection: (socket, peer) => this.attach(socket, peer),
        onClientRejected: (err, socket, local) => this.rejected(err, socket, local),
      },
    });
    this.h2 = http2.createServer(serverSessionOptions(this.settings));
    this.h2.on('session', (session: http2.ServerHttp2Session) => this.onSession(session));
    this.h2.on('stream', (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => this.onStream(stream, headers));
    this.h2.on('sessionError', (err: Error) => this.log.debug({ err: err.message }, 'HBONE session error'));
    const tickMs = opts.tickMs ?? 1000;
    this.timer = tickMs > 0 ? setInterval(() => this.keepalive.tick(this.now()), tickMs) : null;
    this.timer?.unref();
  }

  /** Opens the HBONE listener of one workload. Rejects with ERR_LISTEN (address in use, ...). */
  async open(spec: WorkloadListenerSpec): Promise<BoundAddress> {
    const ip = normalizeIp(spec.ip);
    if (ip === null) throw new ProxyError('ERR_LISTEN', `HBONE listener: ${JSON.stringify(spec.ip)} is not an IP address`);
    if (this.listeners.has(ip)) throw new ProxyError('ERR_LISTENER_EXISTS', `an HBONE listener for ${ip} is already open`);
    const server = net.createServer({ allowHalfOpen: false }, (raw) => this.accept(raw, spec));
    const listener = new Listener(`hbone ${ip}`, server, { limit: this.opts.connectionLimit, onRefused: this.opts.onLimitRefused });
    const entry: OpenListener = { ip, listener };
    this.listeners.set(ip, entry);
    try {
      return await listener.listen(ip, spec.port ?? INBOUND_HBONE_PORT, { fd: spec.fd });
    } catch (err) {
      this.listeners.delete(ip);
      throw err;
    }
  }

  /** The workload left: stop accepting on its IP and cut its connections. */
  async close(ip: string): Promise<void> {
    const key = normalizeIp(ip) ?? ip;
    const entry = this.listeners.get(key);
    if (!entry) return;
    this.listeners.delete(key);
    await entry.listener.close();
  }

  /** The open listeners: workload IP → bound address. */
  addresses(): Map<string, BoundAddress> {
    const out = new Map<string, BoundAddress>();
    for (const [ip, e] of this.listeners) if (e.listener.address) out.set(ip, e.listener.address);
    return out;
  }

  get sessionCount(): number {
    return this.sessions.size;
  }

  /**
   * Drain: stop accepting everywhere and send GOAWAY on every session so clients open new
   * tunnels elsewhere; open tunnels continue (the app closes the rest at its deadline with
   * ConnectionManager.closeAll and then shutdown()).
   */
  async drain(): Promise<void> {
    const stops = [...this.listeners.values()].map((e) => e.listener.stopAccepting());
    for (const s of this.sessions) if (!s.closed && !s.destroyed) s.close();
    await Promise.all(stops);
  }

  /** Closes every listener and connection now. */
  async shutdown(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    const all = [...this.listeners.values()];
    this.listeners.clear();
    for (const s of this.sessions) s.destroy();
    await Promise.all(all.map((e) => e.listener.close()));
    this.contexts.clear();
  }

  private accept(raw: net.Socket, spec: WorkloadListenerSpec): void {
    if (raw.destroyed) return; // refused by the connection limit (Listener)
    raw.setNoDelay(true);
    let cert: WorkloadCert | Promise<WorkloadCert>;
    try {
      cert = spec.cert();
    } catch (err) {
      return this.noCert(raw, spec, err);
    }
    if (!(cert instanceof Promise)) return this.contexts.accept(raw, cert);
    cert.then(
      (c) => (raw.destroyed ? undefined : this.contexts.accept(raw, c)),
      (err: unknown) => this.noCert(raw, spec, err),
    );
  }

  private noCert(raw: net.Socket, spec: WorkloadListenerSpec, err: unknown): void {
    raw.destroy();
    this.log.warn({ listener: spec.ip, err: (err as Error)?.message ?? String(err) }, 'HBONE connection dropped: no certificate for the workload');
  }

  /**
   * Hands a verified TLS socket to the http2 server. Node emits 'session' synchronously inside
   * emit('connection'), so `handoff` carries the peer facts to onSession without a lookup keyed
   * by socket (session.socket is a proxy object, not the socket itself).
   */
  private attach(socket: tls.TLSSocket, identity: Identity): void {
    const srcIp = normalizeIp(socket.remoteAddress ?? '');
    const localIp = normalizeIp(socket.localAddress ?? '');
    if (srcIp === null || localIp === null) {
      socket.destroy();
      return;
    }
    this.handoff = { identity, srcIp, srcPort: socket.remotePort ?? 0, localIp, localPort: socket.localPort ?? 0 };
    try {
      this.h2.emit('connection', socket);
    } finally {
      this.handoff = null;
    }
  }

  private onSession(session: http2.ServerHttp2Session): void {
    const ctx = this.handoff;
    if (ctx === null) {
      session.destroy();
      return;
    }
    this.bySession.set(session, { ctx, tokens: this.resetBudget.burst, refilledAt: this.now(), flooding: false });
    this.sessions.add(session);
    session.once('close', () => this.sessions.delete(session));
    raiseConnectionWindow(session, this.settings);
    this.keepalive.track(session, this.now());
  }

  private onStream(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): void {
    const session = stream.session as http2.ServerHttp2Session | undefined;
    const st = session ? this.bySession.get(session) : undefined;
    if (!session || !st) {
      stream.on('error', () => undefined);
      stream.close(http2.constants.NGHTTP2_REFUSED_STREAM);
      return;
    }
    // 'aborted' is emitted while nghttp2 parses the peer's RST_STREAM, before the rest of the
    // same read: the budget is charged in step with nghttp2's own count. Our own destroy()
    // (relay aborts, policy closes, session teardown) emits it too, but on a stream already
    // marked destroyed: those are not the peer's doing and are not charged.
    stream.once('aborted', () => {
      if (!stream.destroyed) this.chargeReset(session, st, !stream.headersSent);
    });
    this.handler.serve(stream, headers, st.ctx).catch((err: unknown) => {
      // serve() answers every failure itself; reaching here is a bug, not a reason to crash the node
      this.log.warn({ err: (err as Error)?.stack ?? String(err) }, 'HBONE stream handler failed');
      if (!stream.destroyed) stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
    });
  }

  /** Charges one peer reset to its session; a session over budget is ended (see the header). */
  private chargeReset(session: http2.ServerHttp2Session, st: SessionState, early: boolean): void {
    if (st.flooding) return;
    const b = this.resetBudget;
    const now = this.now();
    st.tokens = Math.min(b.burst, st.tokens + ((now - st.refilledAt) / 1000) * b.perSecond);
    st.refilledAt = now;
    st.tokens -= early ? b.earlyCost : 1;
    if (st.tokens >= 0) return;
    st.flooding = true;
    this.log.warn({ src: joinHostPort(st.ctx.srcIp, st.ctx.srcPort), srcIdentity: formatSpiffe(st.ctx.identity) }, 'HBONE session closed: too many streams reset by the peer (rapid reset)');
    // Not from inside nghttp2's callback: once the current read is parsed. The GOAWAY is queued
    // first (a no-op if nghttp2 already sent its own); destroy() then closes the socket whatever
    // nghttp2's state, which resets this session's streams (so its tunnels) and only those.
    process.nextTick(() => {
      if (session.destroyed) return;
      const calm = http2.constants.NGHTTP2_ENHANCE_YOUR_CALM;
      try {
        session.goaway(calm);
      } catch {
        // already closing: destroy() below still ends it
      }
      session.destroy(new ProxyError('ERR_H2_RESET_FLOOD', 'too many streams reset by the peer'), calm);
    });
  }

  private rejected(err: ProxyError, socket: tls.TLSSocket, local: WorkloadCert): void {
    const src = socket.remoteAddress ? joinHostPort(normalizeIp(socket.remoteAddress) ?? socket.remoteAddress, socket.remotePort ?? 0) : undefined;
    this.opts.events?.onReject?.({ srcIp: socket.remoteAddress ? normalizeIp(socket.remoteAddress) ?? undefined : undefined }, 0, err.message);
    this.log.warn({ src, local: formatSpiffe(local.identity), code: err.code, reason: err.message }, 'HBONE TLS connection refused');
  }
}

/** Builds an HboneServer and opens a listener for each spec. */
export async function startInbound<S extends WorkloadLookup>(
  opts: HboneServerOptions<S>,
  specs: readonly WorkloadListenerSpec[] = [],
): Promise<HboneServer<S>> {
  const server = new HboneServer(opts);
  try {
    for (const spec of specs) await server.open(spec);
  } catch (err) {
    await server.shutdown();
    throw err;
  }
  return server;
}
