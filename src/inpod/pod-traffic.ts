/**
 * The two capture entries of a pod in in-pod mode, each a listener inside the pod's network
 * namespace that the pod's iptables rules feed (ZTUNNEL-FACTS "In-pod mode", "Ports"):
 *
 *  :15001 outbound — the app's own connect() was REDIRECTed here; the original destination comes
 *     from SO_ORIGINAL_DST. The source workload is the pod (not looked up by address). Then the
 *     usual plan → execute → relay (src/proxy/outbound.ts), dialling from the pod's namespace.
 *  :15006 plaintext inbound — TCP to the pod from outside the mesh (or from a non-HBONE client),
 *     TPROXYed here, so the accepted socket's local address IS the original destination (with a
 *     REDIRECT rule instead, the listener's own port shows and SO_ORIGINAL_DST is asked). It is
 *     authorized with no identity (ZTUNNEL-FACTS "L4 authorization": no principal ever matches),
 *     registered for re-checks on policy change, and relayed to the app from the client's address.
 *
 * Failures before relaying close the client with a TCP RST (resetAndDestroy), as ztunnel does:
 * the app sees "connection reset", never a clean empty reply that could pass for success.
 */
import type { Socket } from 'node:net';
import type { Decision } from '../authz/types';
import { authorize } from '../authz/authorize';
import { logDryRun } from '../authz/dry-run-log';
import { SELF_PORTS } from '../config/ports';
import { ProxyError } from '../errors';
import type { NativeApi } from '../native/addon';
import { fdOf } from '../native/relay';
import type { Listener } from '../net/listener';
import { joinHostPort, normalizeIp } from '../net/ip';
import { parseBaggage } from '../proxy/baggage';
import type { ByteCounts, ConnectionManager } from '../proxy/connection-manager';
import type { ConnEvents, InboundConnRecord, UpstreamConnect } from '../proxy/inbound';
import { executeOutbound, NO_OUTBOUND_OBSERVER, planFor, type Endpoint, type ExecutablePlan, type OutboundDeps, type OutboundObserver } from '../proxy/outbound';
import { relayClient } from '../proxy/client-relay';
import type { ProxyLog } from '../proxy/proxy-log';
import type { SocketRelay } from '../proxy/socks5-server';
import type { Snapshot } from '../state/snapshot';
import type { Workload } from '../state/model';
import type { Duplex } from 'node:stream';

export interface PodTrafficDeps {
  readonly native: NativeApi;
  snapshot(): Snapshot;
  readonly log: ProxyLog;
  readonly connections: ConnectionManager;
  readonly relaySockets: (a: Socket, b: Socket) => SocketRelay;
  readonly events?: ConnEvents;
  readonly observer?: OutboundObserver;
  readonly network?: string;
}

/** The pod a capture listener belongs to, as the handlers need it. */
export interface PodContext {
  readonly name: string;
  readonly ip: string;
  workload(): Workload;
  /** Outbound deps whose connects and HBONE dials start in the pod's namespace. */
  readonly outbound: OutboundDeps;
  /** Connects to the pod's app from the client's address (inside the pod's namespace). */
  readonly connectApp: UpstreamConnect;
  /** Live relays of this pod, so deleting the pod can cut them at once. */
  readonly live: Set<LiveRelay>;
}

export interface LiveRelay {
  stop(reason: string): void;
  /** Already counted by the data plane (spliced relays, :15006 connections in the ConnectionManager). */
  readonly countedElsewhere: boolean;
}

/** The accepted socket's fd, for SO_ORIGINAL_DST. */
function fdFor(sock: Socket): number {
  const fd = fdOf(sock);
  if (fd === undefined) throw new ProxyError('ERR_NO_FD', 'the accepted socket has no file descriptor');
  return fd;
}

function reset(sock: Socket): void {
  if (!sock.destroyed) sock.resetAndDestroy();
}

function ignore(): void {}

/** Relays client↔upstream in the pod's live set; `done` resolves with the final counts. */
function relayPod(
  deps: PodTrafficDeps,
  ctx: PodContext,
  client: Socket,
  listener: Listener,
  upstream: Duplex,
  onBytes: (bytes: () => ByteCounts) => void,
  registered: boolean,
): { live: LiveRelay; done: Promise<{ bytes: ByteCounts; reason: string }> } {
  const r = relayClient(client, upstream, listener, deps.relaySockets);
  const live: LiveRelay = { stop: r.stop, countedElsewhere: registered || r.spliced };
  onBytes(r.bytes);
  ctx.live.add(live);
  const done = r.done.then((res) => {
    ctx.live.delete(live);
    return res;
  });
  return { live, done };
}

/** :15001 — one redirected outbound connection of the pod. Never throws. */
export async function serveOutbound(deps: PodTrafficDeps, ctx: PodContext, client: Socket, listener: Listener): Promise<void> {
  if (client.destroyed) return; // refused by the connection limit (Listener)
  const observer = deps.observer ?? NO_OUTBOUND_OBSERVER;
  client.on('error', ignore);
  const src: Endpoint = { ip: normalizeIp(client.remoteAddress ?? '') ?? '', port: client.remotePort ?? 0 };
  let dst: Endpoint;
  try {
    const o = deps.native.originalDst(fdFor(client));
    dst = { ip: normalizeIp(o.address) ?? o.address, port: o.port };
  } catch (err) {
    deps.log.warn({ pod: ctx.name, src: joinHostPort(src.ip, src.port), err: (err as Error).message }, 'outbound capture: no original destination (is the REDIRECT rule in place?)');
    observer.refused({ src, dst: null, error: err });
    return reset(client);
  }
  const source = ctx.workload();
  let plan: ExecutablePlan;
  try {
    plan = planFor(ctx.outbound, source, dst);
  } catch (err) {
    deps.log.info({ pod: ctx.name, src: joinHostPort(src.ip, src.port), dst: joinHostPort(dst.ip, dst.port), err: (err as Error).message }, 'outbound connection refused');
    observer.refused({ src, dst, source, error: err });
    return reset(client);
  }
  const track = observer.opened({ src, originalDst: dst, source, plan });
  let upstream: Duplex;
  try {
    upstream = (await executeOutbound(ctx.outbound, plan, source, src)).upstream;
  } catch (err) {
    deps.log.info({ pod: ctx.name, src: joinHostPort(src.ip, src.port), dst: joinHostPort(dst.ip, dst.port), code: (err as { code?: string }).code, err: (err as Error).message }, 'outbound connection failed');
    track.failed(err);
    return reset(client);
  }
  if (client.destroyed) {
    upstream.destroy();
    track.failed(new ProxyError('ERR_CONN_CLOSED', 'the client went away while the upstream was being set up'));
    return;
  }
  const res = await relayPod(deps, ctx, client, listener, upstream, (bytes) => track.established(bytes), false).done;
  track.closed(res.bytes, res.reason);
}

/** :15006 — one plaintext inbound connection to the pod. Never throws. */
export async function serveInbound(deps: PodTrafficDeps, ctx: PodContext, client: Socket, listenPort: number, listener: Listener): Promise<void> {
  if (client.destroyed) return; // refused by the connection limit (Listener)
  client.on('error', ignore);
  const srcIp = normalizeIp(client.remoteAddress ?? '') ?? '';
  const srcPort = client.remotePort ?? 0;
  let dstIp = normalizeIp(client.localAddress ?? '') ?? '';
  let dstPort = client.localPort ?? 0;
  const early = { srcIp, srcPort, identity: null };
  if (dstPort === listenPort) {
    // a REDIRECT rule (not TPROXY) brought it: the kernel keeps the destination for us
    try {
      const o = deps.native.originalDst(fdFor(client));
      dstIp = normalizeIp(o.address) ?? o.address;
      dstPort = o.port;
    } catch (err) {
      return refuse(deps, client, early, 0, `no original destination: ${(err as Error).message}`);
    }
  }
  const info = { srcIp, srcPort, identity: null, dstIp, dstPort };
  if (dstIp !== ctx.ip) return refuse(deps, client, info, 400, `destination ${dstIp} is not this pod's IP ${ctx.ip}`);
  if (SELF_PORTS.includes(dstPort)) return refuse(deps, client, info, 503, `target port ${dstPort} is one of the proxy's own ports`);
  const snap = deps.snapshot();
  // the destination checked above is this pod's own address: its workload is the pod's
  const dst = ctx.workload();
  let decision: Decision;
  try {
    decision = authorize(info, dst, snap);
  } catch (err) {
    decision = { allowed: false, reason: `authorization failed: ${(err as Error).message}`, policy: null };
  }
  logDryRun(deps.log, info, decision);
  if (!decision.allowed) return refuse(deps, client, info, 401, `denied by policy: ${decision.reason}`);

  let stop: ((reason: string) => void) | null = null;
  let closedBy: string | null = null;
  let bytes: () => ByteCounts = () => ({ received: 0, sent: 0 });
  const tracked = deps.connections.register(info, dst, {
    close(reason: string): void {
      closedBy = reason;
      if (stop) stop(reason);
      else reset(client);
    },
    bytes: () => bytes(),
  }, decision);
  let upstream: Duplex;
  try {
    upstream = await ctx.connectApp({ ip: dstIp, port: dstPort }, info);
  } catch (err) {
    deps.connections.release(tracked);
    return refuse(deps, client, info, 503, `upstream connect to ${joinHostPort(dstIp, dstPort)} failed: ${(err as Error).message}`);
  }
  if (closedBy !== null || client.destroyed) {
    upstream.destroy();
    deps.connections.release(tracked);
    deps.events?.onReject?.(info, 0, closedBy ?? 'client went away during the upstream connect');
    return;
  }
  const rec: InboundConnRecord = { info, dst, baggage: parseBaggage(undefined), traceparent: null, openedAt: Date.now(), bytes: () => bytes() };
  const { live, done } = relayPod(deps, ctx, client, listener, upstream, (b) => (bytes = b), true);
  stop = (reason) => live.stop(reason);
  deps.events?.onOpen?.(rec);
  const res = await done;
  deps.connections.release(tracked);
  deps.events?.onClose?.(rec, res.bytes, closedBy ?? res.reason);
}

function refuse(deps: PodTrafficDeps, client: Socket, info: { srcIp: string; srcPort: number; identity: null; dstIp?: string; dstPort?: number }, status: number, reason: string): void {
  deps.events?.onReject?.(info, status, reason);
  deps.log.info({ src: joinHostPort(info.srcIp, info.srcPort), dst: info.dstIp === undefined ? undefined : joinHostPort(info.dstIp, info.dstPort ?? 0), reason }, 'plaintext inbound connection refused');
  reset(client);
}
