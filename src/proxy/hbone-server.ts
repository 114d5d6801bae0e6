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
 * Invariants: `ctxBySession` maps every live server session to the verified peer facts of its TLS
 * connection; a session without an entry (which cannot happen through accept) gets its streams
 * refused. One coarse timer per server drives the PINGs of all sessions.
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

export class HboneServer<S extends WorkloadLookup> {
  readonly contexts: TlsContexts;
  private readonly h2: http2.Http2Server;
  private readonly handler: InboundHandler<S>;
  private readonly listeners = new Map<string, OpenListener>();
  private readonly ctxBySession = new WeakMap<http2.ServerHttp2Session, PeerContext>();
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
    this.handoff = { identity, srcIp, srcPort: socket.remotePort ?? 0, localIp };
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
    this.ctxBySession.set(session, ctx);
    this.sessions.add(session);
    session.once('close', () => this.sessions.delete(session));
    raiseConnectionWindow(session, this.settings);
    this.keepalive.track(session, this.now());
  }

  private onStream(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): void {
    const ctx = this.ctxBySession.get(stream.session as http2.ServerHttp2Session);
    if (!ctx) {
      stream.on('error', () => undefined);
      stream.close(http2.constants.NGHTTP2_REFUSED_STREAM);
      return;
    }
    this.handler.serve(stream, headers, ctx).catch((err: unknown) => {
      // serve() answers every failure itself; reaching here is a bug, not a reason to crash the node
      this.log.warn({ err: (err as Error)?.stack ?? String(err) }, 'HBONE stream handler failed');
      if (!stream.destroyed) stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
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
