/**
 * ConnObserver: turns the data path's connection hooks into Istio metrics and access logs, both
 * reporters — `destination` from the HBONE inbound handler's ConnEvents, `source` from the
 * outbound entry's OutboundObserver — and keeps the live connections for /config_dump.
 *
 * Per connection: labels and log fields are built once at open; bytes are read from the relay's
 * own counters (TrafficMetrics flushes them at scrape time and at close); nothing runs per chunk.
 *
 * Invariants: `live` holds exactly the connections opened and not yet closed; each is closed once
 * (metrics and one "connection complete" line). Inbound records are keyed by the handler's
 * InboundConnRecord, which is the same object in onOpen and onClose of one tunnel.
 */
import { formatSpiffe } from '../identity/spiffe';
import type { AccessFields, AccessLog } from '../logging/access-log';
import { joinHostPort } from '../net/ip';
import type { Baggage } from '../proxy/baggage';
import type { ByteCounts } from '../proxy/connection-manager';
import type { ConnEvents, InboundConnRecord, InboundInfo } from '../proxy/inbound';
import type { OutboundObserver, OutboundTrack, PlannedOutbound } from '../proxy/outbound';
import type { Service, Workload } from '../state/model';
import { identityOf } from '../proxy/outbound-plan';
import { trafficLabels, UNKNOWN, type TrafficLabels } from './labels';
import { responseFlagsFor, responseFlagsForStatus, type ResponseFlag } from './response-flags';
import type { TrafficConn, TrafficMetrics } from './traffic';

/** The lookups the observer needs from a snapshot (src/state/snapshot.ts satisfies it). */
export interface ObserverSnapshot {
  workloadByIp(ip: string, network?: string): Workload | undefined;
  serviceByHostname(namespace: string, hostname: string): Service | undefined;
}

export interface ConnObserverDeps {
  readonly traffic: TrafficMetrics;
  readonly access: AccessLog;
  snapshot(): ObserverSnapshot;
  /** This proxy's cluster (CLUSTER_ID), for workloads that do not name theirs. */
  readonly clusterId: string;
  readonly network?: string;
  readonly now?: () => number;
}

/** One live connection as /config_dump shows it (ztunnel's connection manager dump). */
export interface ConnectionDump {
  readonly src: string;
  readonly originalDst: string | null;
  readonly actualDst: string;
  readonly protocol: 'HBONE' | 'TCP';
}

interface LiveRecord {
  readonly dump: ConnectionDump;
  readonly direction: 'inbound' | 'outbound';
  readonly conn: TrafficConn;
  readonly fields: AccessFields;
  readonly startedAt: number;
}

const ZERO: ByteCounts = { received: 0, sent: 0 };

/**
 * Ends that are not failures, as ztunnel treats them: both sides finished, or a peer reset /
 * went away mid-stream (a TCP connection may end that way at any time).
 */
/** The close reason ConnectionManager.recheck gives a connection a new snapshot denies. */
function isPolicyCut(reason: string): boolean {
  return reason.includes('no longer allowed');
}

export function isCleanEnd(reason: string): boolean {
  return (
    reason === 'complete' ||
    reason === 'eof' ||
    reason === 'reset' ||
    reason.includes('closed before both directions finished') ||
    /\b(ECONNRESET|EPIPE|ERR_HTTP2_STREAM_CANCEL)\b/.test(reason)
  );
}

function known(v: string): string | undefined {
  return v === UNKNOWN ? undefined : v;
}

/** ztunnel's inbound service guess: a service the workload backs whose target port is `port`. */
export function guessService(dst: Workload, port: number, snap: ObserverSnapshot): Service | null {
  for (const [key, ports] of Object.entries(dst.services)) {
    for (const [svcPort, target] of Object.entries(ports)) {
      if ((target === 0 ? Number(svcPort) : target) !== port) continue;
      const slash = key.indexOf('/');
      const svc = snap.serviceByHostname(key.slice(0, slash), key.slice(slash + 1));
      if (svc) return svc;
    }
  }
  return null;
}

export class ConnObserver {
  /** Hooks for the HBONE inbound handler (reporter=destination). */
  readonly inbound: ConnEvents;
  /** Hooks for the outbound entry (reporter=source). */
  readonly outbound: OutboundObserver;
  private readonly live = new Set<LiveRecord>();
  private readonly inboundByRecord = new Map<InboundConnRecord, LiveRecord>();
  private readonly now: () => number;
  private readonly network: string;

  constructor(private readonly deps: ConnObserverDeps) {
    this.now = deps.now ?? Date.now;
    this.network = deps.network ?? '';
    this.inbound = {
      onOpen: (rec) => this.inboundOpen(rec),
      onClose: (rec, bytes, reason) => this.inboundClose(rec, bytes, reason),
      onReject: (info, status, reason) => this.inboundReject(info, status, reason),
    };
    this.outbound = {
      refused: (e) => this.outboundRefused(e.src, e.dst, e.source, e.error),
      opened: (e) => this.outboundOpen(e),
    };
  }

  /** The live connections, as ztunnel's config_dump lists them. */
  connections(): { inbound: ConnectionDump[]; outbound: ConnectionDump[] } {
    const out = { inbound: [] as ConnectionDump[], outbound: [] as ConnectionDump[] };
    for (const r of this.live) out[r.direction].push(r.dump);
    return out;
  }

  get liveCount(): number {
    return this.live.size;
  }

  // ---- inbound (destination reporter) -------------------------------------------------------

  private inboundParties(info: Partial<InboundInfo>, dst: Workload | undefined, baggage?: Baggage): { labels: TrafficLabels; fields: AccessFields } {
    const snap = this.deps.snapshot();
    const source = info.srcIp !== undefined ? snap.workloadByIp(info.srcIp, this.network) : undefined;
    const service = dst && info.dstPort !== undefined ? guessService(dst, info.dstPort, snap) : null;
    const labels = trafficLabels({
      reporter: 'destination',
      source,
      derivedSource: baggage && {
        workloadName: baggage.workloadName,
        app: baggage.serviceName,
        revision: baggage.revision,
        namespace: baggage.namespace,
        clusterId: baggage.clusterId,
      },
      sourceIdentity: info.identity ?? null,
      destination: dst,
      service,
      // identity null = the plaintext inbound (:15006, in-pod mode); undefined = HBONE refused before the peer was known
      mtls: info.identity !== null,
      clusterId: this.deps.clusterId,
    });
    // identity null = plaintext (:15006): ztunnel logs neither identity without mTLS (its
    // proxy/metrics.rs filters both principals on connection_security_policy == mutual_tls)
    const mtls = info.identity !== null;
    const target = info.dstIp !== undefined ? joinHostPort(info.dstIp, info.dstPort ?? 0) : undefined;
    // HBONE: dst.addr is where the client connected (podIP:15008) and dst.hbone_addr the CONNECT
    // target, as ztunnel's proxy/inbound.rs logs them "for consistency with outbound logs";
    // plaintext: the connection went to the target itself, and there is no HBONE address
    const local = mtls && info.local ? joinHostPort(info.local.ip, info.local.port) : undefined;
    const fields: AccessFields = {
      direction: 'inbound',
      srcAddr: info.srcIp !== undefined ? joinHostPort(info.srcIp, info.srcPort ?? 0) : '',
      srcWorkload: source?.name ?? known(labels.source_canonical_service),
      srcNamespace: known(labels.source_workload_namespace),
      srcIdentity: info.identity ? formatSpiffe(info.identity) : undefined,
      dstAddr: local ?? target ?? '',
      dstHboneAddr: mtls ? target : undefined,
      dstService: known(labels.destination_service),
      dstWorkload: dst?.name,
      dstNamespace: dst?.namespace,
      dstIdentity: mtls ? known(labels.destination_principal) : undefined,
    };
    return { labels, fields };
  }

  private inboundOpen(r: InboundConnRecord): void {
    const rec = this.startInbound(r.info, r.dst, r.baggage);
    this.deps.traffic.attach(rec.conn, r.bytes);
    this.inboundByRecord.set(r, rec);
  }

  private inboundClose(r: InboundConnRecord, bytes: ByteCounts, reason: string): void {
    const rec = this.inboundByRecord.get(r);
    if (!rec) return;
    this.inboundByRecord.delete(r);
    // a live connection cut by a policy change ends with the authorization outcome, like a refusal
    this.finish(rec, isPolicyCut(reason) ? 'DENY' : '-', bytes, isCleanEnd(reason) ? null : reason);
  }

  private inboundReject(info: Partial<InboundInfo>, status: number, reason: string): void {
    const identified = info.srcIp !== undefined && info.dstIp !== undefined && info.dstPort !== undefined;
    if (!identified) {
      // refused before the request named its destination: the TLS handshake (status 0) or a
      // malformed CONNECT (400) — no full label set, so only the failure is counted
      const flags: ResponseFlag = status === 0 ? 'TLS_FAILURE' : responseFlagsForStatus(status);
      const { labels, fields } = this.inboundParties(info, undefined);
      this.deps.traffic.failedEarly({ ...labels, response_flags: flags });
      this.deps.access.failed(fields, reason);
      return;
    }
    const dst = this.deps.snapshot().workloadByIp(info.dstIp!, this.network);
    // status 0 after identification: the client left (or a policy change closed it) during the upstream connect
    const flags: ResponseFlag = status === 0 ? (isPolicyCut(reason) ? 'DENY' : '-') : responseFlagsForStatus(status);
    const full: InboundInfo = { srcIp: info.srcIp!, srcPort: info.srcPort, identity: info.identity ?? null, dstIp: info.dstIp!, dstPort: info.dstPort!, local: info.local };
    const rec = this.startInbound(full, dst);
    this.finish(rec, flags, ZERO, reason);
  }

  private startInbound(info: InboundInfo, dst: Workload | undefined, baggage?: Baggage): LiveRecord {
    const parties = this.inboundParties(info, dst, baggage);
    return this.start('inbound', parties, {
      src: parties.fields.srcAddr,
      // ztunnel shows the destination service here when it knows one
      originalDst: parties.fields.dstService ?? null,
      actualDst: joinHostPort(info.dstIp, info.dstPort),
      protocol: info.identity === null ? 'TCP' : 'HBONE',
    });
  }

  // ---- outbound (source reporter) -----------------------------------------------------------

  private outboundRefused(src: { ip: string; port: number }, dst: { ip: string; port: number } | null, source: Workload | undefined, error: unknown): void {
    const labels = trafficLabels({ reporter: 'source', source, mtls: false, clusterId: this.deps.clusterId }, responseFlagsFor(error));
    this.deps.traffic.failedEarly(labels);
    this.deps.access.failed(
      {
        direction: 'outbound',
        srcAddr: joinHostPort(src.ip, src.port),
        srcWorkload: source?.name,
        srcNamespace: source?.namespace,
        dstAddr: dst ? joinHostPort(dst.ip, dst.port) : undefined,
      },
      error instanceof Error ? error.message : String(error),
    );
  }

  private outboundOpen(e: PlannedOutbound): OutboundTrack {
    const { plan, source } = e;
    const hbone = plan.kind === 'hbone';
    const workload = plan.kind === 'passthrough' ? undefined : plan.workload;
    const service = plan.kind === 'passthrough' ? null : plan.service;
    const labels = trafficLabels({
      reporter: 'source',
      source,
      sourceIdentity: hbone ? identityOf(source) : null,
      destination: workload,
      service,
      mtls: hbone,
      clusterId: this.deps.clusterId,
    });
    const target = joinHostPort(plan.target.ip, plan.target.port);
    const fields: AccessFields = {
      direction: 'outbound',
      srcAddr: joinHostPort(e.src.ip, e.src.port),
      srcWorkload: source.name,
      srcNamespace: source.namespace,
      srcIdentity: hbone ? labels.source_principal : undefined,
      dstAddr: hbone ? joinHostPort(plan.nextHop.ip, plan.nextHop.port) : target,
      dstHboneAddr: hbone ? plan.authority : undefined,
      dstService: service?.hostname,
      dstWorkload: workload?.name,
      dstNamespace: workload?.namespace,
      dstIdentity: hbone ? known(labels.destination_principal) : undefined,
    };
    const rec = this.start('outbound', { labels, fields }, {
      src: fields.srcAddr,
      originalDst: joinHostPort(e.originalDst.ip, e.originalDst.port),
      actualDst: target,
      protocol: hbone ? 'HBONE' : 'TCP',
    });
    let reader: (() => ByteCounts) | null = null;
    return {
      established: (bytes) => {
        reader = bytes;
        this.deps.traffic.attach(rec.conn, bytes);
      },
      failed: (err) => this.finish(rec, responseFlagsFor(err), ZERO, err instanceof Error ? err.message : String(err)),
      closed: (final, reason) => this.finish(rec, '-', final ?? reader?.() ?? ZERO, isCleanEnd(reason) ? null : reason),
    };
  }

  // ---- shared ---------------------------------------------------------------------------------

  private start(direction: 'inbound' | 'outbound', p: { labels: TrafficLabels; fields: AccessFields }, dump: ConnectionDump): LiveRecord {
    const rec: LiveRecord = { dump, direction, conn: this.deps.traffic.open(p.labels), fields: p.fields, startedAt: this.now() };
    this.live.add(rec);
    this.deps.access.opened(p.fields);
    return rec;
  }

  private finish(rec: LiveRecord, flags: ResponseFlag, bytes: ByteCounts, error: string | null): void {
    if (!this.live.delete(rec)) return;
    this.deps.traffic.close(rec.conn, flags, bytes);
    this.deps.access.complete(rec.fields, bytes, this.now() - rec.startedAt, error);
  }
}
