/**
 * The inbound HBONE request handler: one CONNECT stream, already inside an mTLS session whose
 * client identity was verified (hbone-server.ts). Phases, as ztunnel's inbound.rs:
 *   parse     :method must be CONNECT, :authority a strict IP:port          → 400
 *   identify  the authority IP must be this listener's workload IP         → 400
 *             the destination workload must be in the snapshot             → 503
 *   authorize the peer identity against the destination's policies        → 401
 *   connect   upstream ip:targetPort (injected factory, 10 s deadline)     → 503
 *   copy      200 + the destination's baggage, then relay both ways
 *   record    release from the ConnectionManager, events.onClose(bytes, reason)
 * The connection is registered with the ConnectionManager right after authorization, so a
 * policy change that lands while the upstream connect is in flight still applies to it.
 */
import * as net from 'node:net';
import * as http2 from 'node:http2';
import type { Duplex } from 'node:stream';
import { ProxyError } from '../errors';
import { formatSpiffe, type Identity } from '../identity/spiffe';
import { joinHostPort, loopbackSourceFor } from '../net/ip';
import { SELF_PORTS } from '../config/ports';
import type { ConnInfo, Decision } from '../authz/types';
import { logDryRun } from '../authz/dry-run-log';
import type { Workload } from '../state/model';
import { parseAuthority } from './authority';
import { formatBaggage, parseBaggage, workloadBaggage, type Baggage } from './baggage';
import { parseTraceparent } from './traceparent';
import { relay, type Relay } from './copy';
import type { AuthorizeFn, ByteCounts, ConnectionManager, WorkloadLookup } from './connection-manager';
import { NO_LOG, type ProxyLog } from './proxy-log';

/** Opens the upstream connection; rejects on failure. The native/transparent factory plugs in here. */
export type UpstreamConnect = (target: { readonly ip: string; readonly port: number }, conn: ConnInfo) => Promise<Duplex>;

/**
 * ConnInfo plus where the client's connection arrived (the TLS socket's local address, podIP:15008):
 * ztunnel logs that as dst.addr "for consistency with outbound logs" (its proxy/inbound.rs).
 * Absent for the plaintext inbound, whose connection goes to the target itself.
 */
export interface InboundInfo extends ConnInfo {
  readonly local?: { readonly ip: string; readonly port: number };
}

/** One accepted tunnel as the metrics/access-log hooks see it. */
export interface InboundConnRecord {
  readonly info: InboundInfo;
  readonly dst: Workload;
  /** The client's baggage (source workload labels when the source is not in our snapshot). */
  readonly baggage: Baggage;
  /** The client's traceparent when valid, for correlating logs; null otherwise. */
  readonly traceparent: string | null;
  readonly openedAt: number;
  /** The relay's running byte counts (cheap field reads): metrics read them while the tunnel is open. */
  bytes(): ByteCounts;
}

/** Metrics/access-log hooks; the observability work fills them in. All optional. */
export interface ConnEvents {
  /** A tunnel was accepted (200 sent) and relaying starts. */
  onOpen?(rec: InboundConnRecord): void;
  /** A tunnel that was open has ended. */
  onClose?(rec: InboundConnRecord, bytes: ByteCounts, reason: string): void;
  /**
   * A request or connection refused before any byte was relayed; `info` is as complete as it got.
   * `status` is the HTTP status sent, or 0 when none was (TLS refusal, tunnel abandoned in setup).
   */
  onReject?(info: Partial<InboundInfo>, status: number, reason: string): void;
}

export interface InboundDeps<S extends WorkloadLookup> {
  /** The snapshot in force (read once per request). */
  snapshot(): S;
  authorize: AuthorizeFn<S>;
  connections: ConnectionManager;
  /** Default: net.connect with TCP_NODELAY, half-open allowed, `connectTimeoutMs` deadline. */
  connect?: UpstreamConnect;
  connectTimeoutMs?: number;
  /** This node's network for workload lookups ("" = default). */
  network?: string;
  log?: ProxyLog;
  events?: ConnEvents;
}

/** The verified facts of the mTLS session a stream arrived on. */
export interface PeerContext {
  readonly identity: Identity;
  readonly srcIp: string;
  readonly srcPort: number;
  /** The listener's (destination workload's) IP, normal form. */
  readonly localIp: string;
  /** The listener's port (15008), for the access log's dst.addr. */
  readonly localPort: number;
}

export const DEFAULT_UPSTREAM_CONNECT_TIMEOUT_MS = 10_000;

/**
 * net.connect with TCP_NODELAY and allowHalfOpen (half-close must be propagated, not turned into a
 * full close). The deadline rides on socket.setTimeout, whose timers Node groups per duration,
 * so all pending connects share one underlying timer.
 *
 * Source address: when the client's IP and the target are both loopback addresses (node mode,
 * where every pod IP is a 127.x address on this host), the connection is bound to the client's
 * IP, so the app sees the real source pod IP — what in-pod ztunnel achieves with IP_TRANSPARENT.
 * Otherwise the OS picks.
 */
export function tcpConnect(timeoutMs = DEFAULT_UPSTREAM_CONNECT_TIMEOUT_MS, open: OpenSocket = openLoopbackAware): UpstreamConnect {
  return (target, conn) =>
    new Promise((resolve, reject) => {
      let socket: net.Socket;
      try {
        socket = open(target, conn);
      } catch (err) {
        const e = err as NodeJS.ErrnoException;
        reject(new ProxyError('ERR_CONNECT', `upstream ${joinHostPort(target.ip, target.port)}: ${e.code ?? e.message}`, { cause: err }));
        return;
      }
      const where = joinHostPort(target.ip, target.port);
      const onError = (err: NodeJS.ErrnoException): void => {
        socket.destroy();
        // our own deadline error says more than its code ("no answer within ..."); errno errors say it by code
        const why = err instanceof ProxyError ? err.message : (err.code ?? err.message);
        reject(new ProxyError('ERR_CONNECT', `upstream ${where}: ${why}`, { cause: err }));
      };
      socket.setTimeout(timeoutMs, () => onError(new ProxyError('ERR_TIMEOUT', `no answer within ${timeoutMs} ms`)));
      socket.once('error', onError);
      socket.once('connect', () => {
        socket.setTimeout(0);
        socket.off('error', onError);
        resolve(socket);
      });
    });
}

/** Makes the connecting socket for tcpConnect (in-pod mode: inside the pod's network namespace). */
export type OpenSocket = (target: { readonly ip: string; readonly port: number }, conn: ConnInfo) => net.Socket;

export function openLoopbackAware(target: { readonly ip: string; readonly port: number }, conn: ConnInfo): net.Socket {
  const localAddress = loopbackSourceFor(conn.srcIp, target.ip);
  return net.connect({ host: target.ip, port: target.port, localAddress, allowHalfOpen: true, noDelay: true });
}

function ignore(): void {}

/** Answers a refused request: status, then end; the client's body, if any, is discarded. */
function refuse(stream: http2.ServerHttp2Stream, status: number): void {
  if (stream.destroyed || stream.closed) return;
  if (!stream.headersSent) stream.respond({ ':status': status }, { endStream: true });
  stream.resume();
}

function record(headers: http2.IncomingHttpHeaders, info: InboundInfo, dst: Workload, bytes: () => ByteCounts): InboundConnRecord {
  const tp = headers['traceparent'];
  const traceparent = typeof tp === 'string' && parseTraceparent(tp) !== null ? tp : null;
  const bag = headers['baggage'];
  return { info, dst, baggage: parseBaggage(bag), traceparent, openedAt: Date.now(), bytes };
}

export class InboundHandler<S extends WorkloadLookup> {
  private readonly log: ProxyLog;
  private readonly connect: UpstreamConnect;
  private readonly network: string;

  constructor(private readonly deps: InboundDeps<S>) {
    this.log = deps.log ?? NO_LOG;
    this.connect = deps.connect ?? tcpConnect(deps.connectTimeoutMs);
    this.network = deps.network ?? '';
  }

  /** Serves one stream to its end; never throws (every failure is answered or logged). */
  async serve(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, peer: PeerContext): Promise<void> {
    // The relay attaches its own handlers; until then a client reset must not be an unhandled error.
    stream.on('error', ignore);
    const local = { ip: peer.localIp, port: peer.localPort };
    const early: Partial<InboundInfo> = { srcIp: peer.srcIp, srcPort: peer.srcPort, identity: peer.identity, local };
    // Let the rest of the read that carried these HEADERS be parsed first: a stream the client
    // reset in the same breath (rapid reset, CVE-2023-44487) is dropped here instead of costing
    // an authorization and a TCP connect to the app each.
    await new Promise<void>((resolve) => setImmediate(resolve));
    if (stream.destroyed || stream.closed) {
      this.deps.events?.onReject?.(early, 0, 'client reset the stream before it was served');
      return;
    }
    const method = headers[':method'];
    if (method !== 'CONNECT') return this.reject(stream, early, 400, `method ${String(method)} is not CONNECT`);
    const auth = parseAuthority(headers[':authority']);
    if (!auth.ok) return this.reject(stream, early, 400, auth.reason);
    const info: InboundInfo = { srcIp: peer.srcIp, srcPort: peer.srcPort, identity: peer.identity, dstIp: auth.ip, dstPort: auth.port, local };
    if (auth.ip !== peer.localIp) {
      return this.reject(stream, info, 400, `authority IP ${auth.ip} is not this listener's workload IP ${peer.localIp}`);
    }
    // ztunnel: Error::SelfCall comes from resolving the target (after the IP check), answered 503
    if (SELF_PORTS.includes(auth.port)) return this.reject(stream, info, 503, `target port ${auth.port} is one of the proxy's own ports`);

    const snap = this.deps.snapshot();
    const dst = snap.workloadByIp(auth.ip, this.network);
    if (!dst) return this.reject(stream, info, 503, `no workload with IP ${auth.ip} in the snapshot`);
    let decision: Decision;
    try {
      decision = this.deps.authorize(info, dst, snap);
    } catch (err) {
      decision = { allowed: false, reason: `authorization failed: ${(err as Error).message}`, policy: null };
    }
    logDryRun(this.log, info, decision);
    if (!decision.allowed) return this.reject(stream, info, 401, `denied by policy: ${decision.reason}`);

    await this.tunnel(stream, headers, info, dst, decision);
  }

  private async tunnel(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, info: InboundInfo, dst: Workload, admitted: Decision): Promise<void> {
    let upstream: Duplex | null = null;
    let r: Relay | null = null;
    let closedBy: string | null = null;
    const tracked = this.deps.connections.register(info, dst, {
      close(reason: string): void {
        closedBy = reason;
        if (r) return r.close(reason);
        // still setting up: refuse the stream; the upstream, if it arrives, is dropped below
        if (!stream.destroyed) stream.close(http2.constants.NGHTTP2_REFUSED_STREAM);
      },
      bytes: (): ByteCounts => (r ? { received: r.aToB, sent: r.bToA } : { received: 0, sent: 0 }),
    }, admitted);
    try {
      upstream = await this.connect({ ip: info.dstIp, port: info.dstPort }, info);
    } catch (err) {
      this.deps.connections.release(tracked);
      const why = err instanceof Error ? err.message : String(err);
      return this.reject(stream, info, 503, `upstream connect to ${joinHostPort(info.dstIp, info.dstPort)} failed: ${why}`);
    }
    if (closedBy !== null || stream.destroyed || stream.closed) {
      upstream.destroy();
      this.deps.connections.release(tracked);
      const reason = closedBy ?? 'client went away during the upstream connect';
      this.deps.events?.onReject?.(info, 0, reason);
      this.log.debug(this.fields(info, 0, reason), 'inbound tunnel abandoned');
      return;
    }
    stream.respond({ ':status': 200, baggage: formatBaggage(workloadBaggage(dst)) });
    // A tunnel cut because the client's connection went away (its proxy died) ends with no 'error'
    // — Node even emits 'end' — so the relay would hand the app a clean EOF for a truncated
    // transfer. Make it an error, so the app is reset ('aborted' comes before those events).
    stream.once('aborted', () => {
      if (!stream.destroyed) stream.destroy(new ProxyError('ERR_HBONE_STREAM', 'the HBONE tunnel was cut before it finished (the client connection closed)'));
    });
    r = relay(stream, upstream, { aName: 'downstream', bName: 'upstream' });
    stream.off('error', ignore);
    const events = this.deps.events;
    const rec: InboundConnRecord | null = events ? record(headers, info, dst, tracked.handle.bytes) : null;
    if (rec) events?.onOpen?.(rec);
    const result = await r.done;
    this.deps.connections.release(tracked);
    const reason = closedBy ?? result.reason;
    const bytes = { received: result.aToB, sent: result.bToA };
    if (rec) events?.onClose?.(rec, bytes, reason);
    this.log.debug({ ...this.fields(info, 200, reason), bytesReceived: bytes.received, bytesSent: bytes.sent }, 'inbound tunnel closed');
  }

  private reject(stream: http2.ServerHttp2Stream, info: Partial<InboundInfo>, status: number, reason: string): void {
    refuse(stream, status);
    this.deps.events?.onReject?.(info, status, reason);
    this.log.info(this.fields(info, status, reason), 'inbound HBONE request refused');
  }

  private fields(info: Partial<ConnInfo>, status: number, reason: string): object {
    return {
      src: info.srcIp === undefined ? undefined : joinHostPort(info.srcIp, info.srcPort ?? 0),
      dst: info.dstIp === undefined ? undefined : joinHostPort(info.dstIp, info.dstPort ?? 0),
      srcIdentity: info.identity ? formatSpiffe(info.identity) : undefined,
      status,
      reason,
    };
  }
}
