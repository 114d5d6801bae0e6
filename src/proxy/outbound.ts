/**
 * The outbound execute step: carries out an OutboundPlan for one client connection and returns
 * the upstream stream to relay with — an HBONE tunnel (CONNECT over pooled mTLS HTTP/2), a TCP
 * socket to a TCP-protocol workload, or a passthrough socket to a destination outside the mesh.
 * The entry (SOCKS5 now, :15001 capture in in-pod mode) answers its client and relays.
 */
import type { Duplex } from 'node:stream';
import type { ConnInfo } from '../authz/types';
import { ProxyError } from '../errors';
import type { CertManager } from '../identity/cert-manager';
import { formatSpiffe } from '../identity/spiffe';
import type { Workload } from '../state/model';
import { formatBaggage, workloadBaggage } from './baggage';
import { formatForwardedFor } from './forwarded';
import type { DialVia, HboneClient } from './hbone-client';
import type { UpstreamConnect } from './inbound';
import { loopbackSourceFor } from '../net/ip';
import { identityOf, planOutbound, type OutboundPlan, type PlanSnapshot } from './outbound-plan';
import { newTraceparent } from './traceparent';

export interface OutboundDeps {
  snapshot(): PlanSnapshot;
  readonly certs: Pick<CertManager, 'fetch'>;
  readonly hbone: Pick<HboneClient, 'connect'>;
  /** Plain TCP connect for TCP workloads and passthrough (native socket factory plugs in here). */
  readonly connect: UpstreamConnect;
  readonly clusterId: string;
  readonly random?: () => number;
  /** In-pod mode: HBONE connections are dialled from the source pod's network namespace. */
  readonly via?: DialVia;
}

export type ExecutablePlan = Exclude<OutboundPlan, { kind: 'reject' }>;

export interface OutboundConnection {
  readonly plan: ExecutablePlan;
  readonly upstream: Duplex;
}

export interface Endpoint {
  readonly ip: string;
  readonly port: number;
}

/** An outbound connection whose plan is made, about to be carried out. */
export interface PlannedOutbound {
  /** The client's address. */
  readonly src: Endpoint;
  /** What the client asked for (a VIP, a pod IP, an outside address). */
  readonly originalDst: Endpoint;
  readonly source: Workload;
  readonly plan: ExecutablePlan;
}

/** One outbound connection's remaining events, in order: established then closed, or failed. */
export interface OutboundTrack {
  /** The upstream is up; `bytes` reads the relay's running totals (received = client → server). */
  established(bytes: () => { readonly received: number; readonly sent: number }): void;
  /** Setting up the upstream failed (the error carries a code). */
  failed(err: unknown): void;
  /** The relay ended; `final` totals when known. */
  closed(final: { readonly received: number; readonly sent: number } | null, reason: string): void;
}

/** Metrics/access-log hooks of an outbound entry (SOCKS5 now, :15001 capture later). */
export interface OutboundObserver {
  /** Refused before a plan could be carried out: unknown source, unresolvable name, rejected plan. */
  refused(e: { readonly src: Endpoint; readonly dst: Endpoint | null; readonly source?: Workload; readonly error: unknown }): void;
  opened(e: PlannedOutbound): OutboundTrack;
}

const NO_TRACK: OutboundTrack = Object.freeze({ established() {}, failed() {}, closed() {} });
export const NO_OUTBOUND_OBSERVER: OutboundObserver = Object.freeze({ refused() {}, opened: () => NO_TRACK });

/** The plan step alone: where `source`'s connection to `dst` goes. Throws the plan's refusal. */
export function planFor(deps: OutboundDeps, source: Workload, dst: Endpoint): ExecutablePlan {
  const plan = planOutbound({ source, dstIp: dst.ip, dstPort: dst.port }, deps.snapshot(), { random: deps.random ?? Math.random });
  if (plan.kind === 'reject') throw new ProxyError(plan.code, plan.reason);
  return plan;
}

/** The execute step: resolves with the upstream stream once it is established. */
export async function executeOutbound(deps: OutboundDeps, plan: ExecutablePlan, source: Workload, src: Endpoint): Promise<OutboundConnection> {
  if (plan.kind === 'hbone') {
    const cert = await deps.certs.fetch(identityOf(source));
    const tunnel = await deps.hbone.connect({
      source: cert,
      sourceIp: deps.via ? undefined : loopbackSourceFor(src.ip, plan.nextHop.ip),
      via: deps.via,
      expected: plan.expectedIdentities,
      nextHop: plan.nextHop,
      authority: plan.authority,
      headers: {
        baggage: formatBaggage({ ...workloadBaggage(source), clusterId: source.clusterId || deps.clusterId }),
        forwarded: formatForwardedFor(src.ip, src.port),
        traceparent: newTraceparent(),
      },
    });
    return { plan, upstream: tunnel.stream };
  }
  const info: ConnInfo = {
    srcIp: src.ip,
    srcPort: src.port,
    identity: null,
    dstIp: plan.target.ip,
    dstPort: plan.target.port,
  };
  const upstream = await deps.connect(plan.target, info);
  return { plan, upstream };
}

/** For logs: where a plan sends the bytes. */
export function describePlan(plan: ExecutablePlan): Record<string, unknown> {
  const base = { kind: plan.kind, dst: `${plan.target.ip}:${plan.target.port}` };
  if (plan.kind === 'hbone') {
    return { ...base, hbone: `${plan.nextHop.ip}:${plan.nextHop.port}`, dstIdentity: plan.expectedIdentities.map(formatSpiffe).join(','), service: plan.service?.hostname };
  }
  if (plan.kind === 'tcp') return { ...base, service: plan.service?.hostname, workload: plan.workload.name };
  return base;
}
