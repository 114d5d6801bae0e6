/**
 * Outbound routing as a pure function (ztunnel's outbound `build_request`): given who is calling
 * and the original destination, decide where the bytes go. No I/O, no clock; randomness injected.
 * The execute step (src/proxy/outbound.ts) carries the plan out.
 *
 * Order, as ztunnel: a self-call to the proxy's own ports is refused; a service VIP resolves to one
 * healthy endpoint chosen by capacity weight; a workload IP is used directly; anything else is not
 * in the mesh and is passed through to the original destination.
 */
import type { Identity } from '../identity/spiffe';
import type { PortMap, Service, Workload } from '../state/model';
import { resourceKey } from '../state/model';
import { INBOUND_HBONE_PORT, SELF_PORTS } from '../config/ports';
import { ipFamily, isLoopbackIp, joinHostPort, normalizeIp } from '../net/ip';

/** The lookups the plan needs from a snapshot (src/state/snapshot.ts satisfies it). */
export interface PlanSnapshot {
  workloadByIp(ip: string, network?: string): Workload | undefined;
  serviceByVip(ip: string, network?: string): Service | undefined;
  endpointsOf(service: Service): readonly { readonly workload: Workload; readonly ports: PortMap }[];
  /** The SPIFFE ids among the service's subjectAltNames, parsed once per snapshot, not per connection. */
  serviceIdentities(service: Service): readonly Identity[];
}

export interface OutboundRequest {
  readonly source: Workload;
  readonly dstIp: string;
  readonly dstPort: number;
}

export interface Target {
  readonly ip: string;
  readonly port: number;
}

export type OutboundPlan =
  | {
      readonly kind: 'hbone';
      /** The destination pod's HBONE listener (podIP:15008). */
      readonly nextHop: Target;
      /** CONNECT :authority — the final pod IP and target port. */
      readonly authority: string;
      readonly target: Target;
      readonly expectedIdentities: readonly Identity[];
      readonly workload: Workload;
      readonly service: Service | null;
    }
  | { readonly kind: 'tcp'; readonly target: Target; readonly workload: Workload; readonly service: Service | null }
  | { readonly kind: 'passthrough'; readonly target: Target }
  | { readonly kind: 'reject'; readonly code: 'ERR_SELF_CALL' | 'ERR_NO_HEALTHY_UPSTREAM' | 'ERR_NO_SERVICE_PORT'; readonly reason: string };

export interface PlanOptions {
  /** A number in [0, 1): the weighted endpoint pick. Math.random in production, fixed in tests. */
  readonly random: () => number;
}

export function identityOf(w: Workload): Identity {
  return { trustDomain: w.trustDomain, namespace: w.namespace, serviceAccount: w.serviceAccount };
}

/** The IP of `w` to dial: the same family as `preferred` when it has one, else its first. */
function addressOf(w: Workload, preferred: string): string {
  const fam = ipFamily(preferred);
  return w.workloadIps.find((ip) => ipFamily(ip) === fam) ?? w.workloadIps[0]!;
}

/**
 * Who may answer for `w`: the service's SANs that are SPIFFE ids, then the workload's own identity,
 * any one of them accepted (ztunnel's `workload_and_services_san`: the service SANs first, "OR"-ed
 * with the workload identity; a SAN that is not a SPIFFE id is ignored — ztunnel warns, a pure
 * plan cannot log). A workload reached directly by its IP has no service and so no service SANs.
 */
function expectedIdentitiesOf(w: Workload, sans: readonly Identity[]): Identity[] {
  const ids = sans.slice();
  ids.push(identityOf(w));
  return ids;
}

const NO_SANS: readonly Identity[] = Object.freeze([]);

function toWorkload(w: Workload, ip: string, port: number, service: Service | null, sans: readonly Identity[]): OutboundPlan {
  const target = { ip, port };
  if (w.protocol === 'HBONE') {
    return {
      kind: 'hbone',
      nextHop: { ip, port: INBOUND_HBONE_PORT },
      authority: joinHostPort(ip, port),
      target,
      expectedIdentities: expectedIdentitiesOf(w, sans),
      workload: w,
      service,
    };
  }
  return { kind: 'tcp', target, workload: w, service };
}

/** Weighted pick by capacity (ztunnel: endpoints weighted by workload capacity). */
function pickEndpoint<T extends { readonly workload: Workload }>(eps: readonly T[], random: () => number): T {
  let total = 0;
  for (const ep of eps) total += ep.workload.capacity;
  let r = random() * total;
  for (const ep of eps) {
    r -= ep.workload.capacity;
    if (r < 0) return ep;
  }
  return eps[eps.length - 1]!;
}

export function planOutbound(req: OutboundRequest, snap: PlanSnapshot, opts: PlanOptions): OutboundPlan {
  const dstIp = normalizeIp(req.dstIp) ?? req.dstIp;
  const { dstPort } = req;
  if (isLoopbackIp(dstIp) && SELF_PORTS.includes(dstPort)) {
    return { kind: 'reject', code: 'ERR_SELF_CALL', reason: `refusing a call to the proxy's own port ${joinHostPort(dstIp, dstPort)}` };
  }
  const network = req.source.network;

  const service = snap.serviceByVip(dstIp, network);
  if (service !== undefined) {
    const svcTarget = service.ports[dstPort];
    if (svcTarget === undefined) {
      return {
        kind: 'reject',
        code: 'ERR_NO_SERVICE_PORT',
        reason: `service ${service.hostname} has no port ${dstPort}`,
      };
    }
    const key = resourceKey(service.namespace, service.hostname);
    const healthy = snap.endpointsOf(service).filter((ep) => ep.workload.status === 'Healthy' && ep.workload.workloadIps.length > 0);
    if (healthy.length === 0) {
      return { kind: 'reject', code: 'ERR_NO_HEALTHY_UPSTREAM', reason: `no healthy endpoints for service ${key}` };
    }
    const ep = pickEndpoint(healthy, opts.random);
    // the endpoint's own mapping wins over the service's; 0 means "the service port itself"
    const mapped = ep.ports[dstPort] ?? svcTarget;
    const port = mapped === 0 ? dstPort : mapped;
    return toWorkload(ep.workload, addressOf(ep.workload, dstIp), port, service, snap.serviceIdentities(service));
  }

  const workload = snap.workloadByIp(dstIp, network);
  if (workload !== undefined) return toWorkload(workload, dstIp, dstPort, null, NO_SANS);

  return { kind: 'passthrough', target: { ip: dstIp, port: dstPort } };
}
