/**
 * The SOCKS5 outbound entry (:15080, node mode): the source workload is the local workload
 * (node = NODE_NAME) that owns the client's source IP — any other client is refused; the destination is what the client asked for. A domain name is
 * resolved against the snapshot's service hostnames first (name.namespace.svc.<domain>), then DNS.
 * Replies follow RFC 1928: success only once the upstream (tunnel or socket) is established, so
 * a denied or failed connection is reported to the client with a reply code, not a silent close.
 */
import { lookup as dnsLookup } from 'node:dns/promises';
import { createServer, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { isProxyError, ProxyError } from '../errors';
import { isLoopbackIp, normalizeIp } from '../net/ip';
import type { ConnectionLimit } from '../net/conn-limit';
import { Listener, type BoundAddress } from '../net/listener';
import type { Service, Workload } from '../state/model';
import { relayClient } from './client-relay';
import { describePlan, executeOutbound, NO_OUTBOUND_OBSERVER, planFor, type ExecutablePlan, type OutboundDeps, type OutboundObserver } from './outbound';
import type { ProxyLog } from './proxy-log';
import { encodeReply, negotiate, SocksReply, type SocksDestination } from './socks5';

export interface Socks5Snapshot {
  /** NODE_NAME: only workloads with this `node` may be a SOCKS5 source. */
  readonly nodeName: string;
  workloadByIp(ip: string, network?: string): Workload | undefined;
  serviceByHostname(namespace: string, hostname: string): Service | undefined;
}

export interface Socks5Deps {
  readonly outbound: OutboundDeps;
  snapshot(): Socks5Snapshot;
  readonly log: ProxyLog;
  readonly network?: string;
  /** DNS for names that are not mesh services. */
  readonly lookup?: (host: string) => Promise<string>;
  /** Splice/JS relay choice for socket↔socket legs (default: the JS relay). */
  readonly relaySockets?: (client: Socket, upstream: Socket) => SocketRelay;
  /** Metrics and access-log hooks (reporter=source). */
  readonly observer?: OutboundObserver;
  /**
   * In-pod mode: the listener lives in one pod's namespace, so every client is that pod (its
   * source address is the pod's loopback, which names no workload).
   */
  readonly source?: () => Workload | undefined;
  /** The process-wide connection budget (ZTUNNEL_MAX_CONNECTIONS); null/absent = no limit. */
  readonly connectionLimit?: ConnectionLimit | null;
  /** Called for every client connection refused by the limit. */
  readonly onLimitRefused?: (socket: Socket) => void;
}

/** A running socket↔socket relay: live counters (a = client) and its end. */
export interface SocketRelay {
  stats(): { readonly aToB: number; readonly bToA: number };
  /** Cut it now (pod deleted, shutdown); `done` still settles. */
  stop(): void;
  /** Which engine relays it. */
  readonly kind: 'splice' | 'js';
  readonly done: Promise<{ readonly aToB: number; readonly bToA: number; readonly reason: string }>;
}

async function systemLookup(host: string): Promise<string> {
  return (await dnsLookup(host, { verbatim: true })).address;
}

/** SOCKS reply code for an outbound failure (RFC 1928 §6). */
export function socksReplyFor(err: unknown): number {
  if (!isProxyError(err)) return SocksReply.GENERAL_FAILURE;
  switch (err.code) {
    case 'ERR_SELF_CALL':
    case 'ERR_CERT_NOT_LOCAL':
      return SocksReply.NOT_ALLOWED;
    case 'ERR_NO_HEALTHY_UPSTREAM':
    case 'ERR_NO_SERVICE_PORT':
      return SocksReply.HOST_UNREACHABLE;
    case 'ERR_HBONE_STATUS': {
      const status = (err as unknown as { status: number }).status;
      return status === 401 ? SocksReply.NOT_ALLOWED : status === 503 ? SocksReply.CONNECTION_REFUSED : SocksReply.GENERAL_FAILURE;
    }
    case 'ERR_CONNECT':
      return SocksReply.CONNECTION_REFUSED;
    case 'ERR_TIMEOUT':
      return SocksReply.HOST_UNREACHABLE;
    default:
      return SocksReply.GENERAL_FAILURE;
  }
}

export class Socks5Server {
  readonly listener: Listener;
  private readonly lookup: (host: string) => Promise<string>;

  constructor(private readonly deps: Socks5Deps) {
    this.lookup = deps.lookup ?? systemLookup;
    const server = createServer({ pauseOnConnect: true, allowHalfOpen: true, noDelay: true }, (s) => void this.handle(s));
    this.listener = new Listener('socks5', server, { limit: deps.connectionLimit, onRefused: deps.onLimitRefused });
  }

  /** `fd`: an already-listening socket to adopt (SO_REUSEPORT in worker threads). */
  listen(host: string, port: number, opts: { fd?: number } = {}): Promise<BoundAddress> {
    return this.listener.listen(host, port, opts);
  }

  private async resolve(dest: SocksDestination): Promise<string> {
    if (dest.kind === 'ip') return normalizeIp(dest.ip) ?? dest.ip;
    const labels = dest.host.toLowerCase().replace(/\.$/, '').split('.');
    if (labels.length >= 3 && labels[2] === 'svc') {
      const svc = this.deps.snapshot().serviceByHostname(labels[1]!, labels.join('.'));
      const vip = svc?.vips.find((v) => v.network === (this.deps.network ?? '')) ?? svc?.vips[0];
      if (vip !== undefined) return vip.address;
    }
    return normalizeIp(await this.lookup(dest.host)) ?? dest.host;
  }

  private async handle(client: Socket): Promise<void> {
    if (client.destroyed) return; // refused by the connection limit (Listener)
    const log = this.deps.log;
    const observer = this.deps.observer ?? NO_OUTBOUND_OBSERVER;
    client.on('error', () => undefined); // errors surface through negotiate/relay; never crash
    const srcIp = normalizeIp(client.remoteAddress ?? '') ?? '';
    const src = { ip: srcIp, port: client.remotePort ?? 0 };
    let dest: SocksDestination;
    try {
      dest = await negotiate(client);
    } catch (err) {
      log.info({ src: `${src.ip}:${src.port}`, err: (err as Error).message }, 'SOCKS5 request refused');
      client.destroy();
      return;
    }
    const snap = this.deps.snapshot();
    const found = this.deps.source ? this.deps.source() : snap.workloadByIp(srcIp, this.deps.network);
    // Only a workload of THIS node may be a source, the same rule as the listener set
    // (Snapshot.localWorkloads): the connection is made with the source's certificate, and a
    // node must never speak for another node's workload.
    const source = found?.node === snap.nodeName ? found : undefined;
    if (source === undefined) {
      const dst = dest.kind === 'ip' ? { ip: dest.ip, port: dest.port } : null;
      if (found === undefined) {
        log.warn({ src: `${src.ip}:${src.port}` }, `SOCKS5 client ${src.ip} is not a known local workload: refused (the source IP must belong to a workload on this node)`);
        observer.refused({ src, dst, error: new ProxyError('ERR_UNKNOWN_SOURCE', `source ${src.ip} is not a workload on this node`) });
      } else {
        const name = `${found.namespace}/${found.name}`;
        log.warn(
          { src: `${src.ip}:${src.port}`, srcWorkload: name, srcNode: found.node, node: snap.nodeName },
          `SOCKS5 client ${src.ip} is workload ${name} of node "${found.node}", not a local workload of this node "${snap.nodeName}": refused`,
        );
        observer.refused({ src, dst, error: new ProxyError('ERR_UNKNOWN_SOURCE', `source ${src.ip} is workload ${name} of node "${found.node}", not of this node`) });
      }
      client.end(encodeReply(SocksReply.NOT_ALLOWED));
      return;
    }
    let dstIp: string;
    try {
      dstIp = await this.resolve(dest);
    } catch (err) {
      log.info({ src: `${src.ip}:${src.port}`, host: dest.kind === 'domain' ? dest.host : dest.ip, err: (err as Error).message }, 'SOCKS5 destination not resolved');
      observer.refused({ src, dst: null, source, error: err });
      client.end(encodeReply(SocksReply.HOST_UNREACHABLE));
      return;
    }
    const dst = { ip: dstIp, port: dest.port };
    let plan: ExecutablePlan;
    try {
      if (this.isSelf(dst)) throw new ProxyError('ERR_SELF_CALL', `refusing a call to the proxy's own SOCKS5 listener ${dst.ip}:${dst.port}`);
      plan = planFor(this.deps.outbound, source, dst);
    } catch (err) {
      this.failed(client, src, source.name, dst, err);
      observer.refused({ src, dst, source, error: err });
      return;
    }
    const track = observer.opened({ src, originalDst: dst, source, plan });
    let upstream: Duplex;
    try {
      upstream = (await executeOutbound(this.deps.outbound, plan, source, src)).upstream;
      log.debug({ src: `${src.ip}:${src.port}`, srcWorkload: source.name, ...describePlan(plan) }, 'outbound connection opened');
    } catch (err) {
      this.failed(client, src, source.name, dst, err);
      track.failed(err);
      return;
    }
    if (client.destroyed) {
      upstream.destroy();
      track.failed(new ProxyError('ERR_CONN_CLOSED', 'the client went away while the upstream was being set up'));
      return;
    }
    client.write(encodeReply(SocksReply.SUCCEEDED));
    const r = relayClient(client, upstream, this.listener, this.deps.relaySockets);
    track.established(r.bytes);
    const res = await r.done;
    track.closed(res.bytes, res.reason);
  }

  /**
   * The plan refuses the fixed proxy ports on loopback (SELF_PORTS); this listener's port is
   * configurable (ZTUNNEL_SOCKS5_ADDR, port 0 in tests), so it is checked against the bound
   * address: dialling it would make the proxy a client of itself.
   */
  private isSelf(dst: { ip: string; port: number }): boolean {
    const own = this.listener.address;
    if (own === null || own.port !== dst.port) return false;
    const host = normalizeIp(own.host) ?? own.host;
    return host === dst.ip || ((host === '0.0.0.0' || host === '::') && isLoopbackIp(dst.ip));
  }

  private failed(client: Socket, src: { ip: string; port: number }, srcWorkload: string, dst: { ip: string; port: number }, err: unknown): void {
    this.deps.log.info(
      { src: `${src.ip}:${src.port}`, srcWorkload, dst: `${dst.ip}:${dst.port}`, code: (err as { code?: string }).code, err: (err as Error).message },
      'outbound connection failed',
    );
    client.end(encodeReply(socksReplyFor(err)));
  }
}
