/**
 * Access logs with ztunnel's target (`access`), messages and field names (its proxy/metrics.rs):
 *   debug "connection opened"    at open
 *   info  "connection complete"  at close (error level, with `error`, when it failed)
 *   warn  "connection failed"    a refusal before the connection had its full facts
 * Fields: src.addr src.workload src.namespace src.identity dst.addr dst.hbone_addr dst.service
 * dst.workload dst.namespace dst.identity direction bytes_sent bytes_recv duration error. Unknown
 * values are left out. Plain or JSON layout is the Logging's business (LOG_FORMAT).
 *
 * Addresses as ztunnel: outbound over HBONE, dst.addr is the next hop (podIP:15008) and
 * dst.hbone_addr the CONNECT target; inbound over HBONE the same two (where the client connected,
 * and the target); plaintext legs log the target as dst.addr only. Identities only with mTLS.
 *
 * Bytes are from this proxy's point of view of the direction, as ztunnel logs them: outbound
 * `bytes_sent` is what the client sent on; inbound `bytes_sent` is what went back to the client.
 */
import type { Logger } from 'pino';

export type Direction = 'inbound' | 'outbound';

/** The facts of one connection, as logged. */
export interface AccessFields {
  readonly direction: Direction;
  readonly srcAddr: string;
  readonly srcWorkload?: string;
  readonly srcNamespace?: string;
  readonly srcIdentity?: string;
  readonly dstAddr: string;
  readonly dstHboneAddr?: string;
  readonly dstService?: string;
  readonly dstWorkload?: string;
  readonly dstNamespace?: string;
  readonly dstIdentity?: string;
}

export interface AccessBytes {
  /** Client → server. */
  readonly received: number;
  /** Server → client. */
  readonly sent: number;
}

function record(f: AccessFields): Record<string, string | number | undefined> {
  return {
    'src.addr': f.srcAddr,
    'src.workload': f.srcWorkload,
    'src.namespace': f.srcNamespace,
    'src.identity': f.srcIdentity,
    'dst.addr': f.dstAddr,
    'dst.hbone_addr': f.dstHboneAddr,
    'dst.service': f.dstService,
    'dst.workload': f.dstWorkload,
    'dst.namespace': f.dstNamespace,
    'dst.identity': f.dstIdentity,
    direction: f.direction,
  };
}

export class AccessLog {
  constructor(private readonly log: Logger) {}

  /** Whether "connection opened" lines are on (callers skip building fields otherwise). */
  get debugEnabled(): boolean {
    return this.log.isLevelEnabled('debug');
  }

  opened(f: AccessFields): void {
    if (this.debugEnabled) this.log.debug(record(f), 'connection opened');
  }

  complete(f: AccessFields, bytes: AccessBytes, durationMs: number, error: string | null): void {
    const outbound = f.direction === 'outbound';
    const rec = {
      ...record(f),
      bytes_sent: outbound ? bytes.received : bytes.sent,
      bytes_recv: outbound ? bytes.sent : bytes.received,
      duration: `${Math.max(0, Math.round(durationMs))}ms`,
    };
    if (error === null) this.log.info(rec, 'connection complete');
    else this.log.error({ ...rec, error }, 'connection complete');
  }

  failed(f: Pick<AccessFields, 'direction' | 'srcAddr'> & Partial<AccessFields>, error: string): void {
    this.log.warn({ ...record({ dstAddr: '', ...f }), 'dst.addr': f.dstAddr, error }, 'connection failed');
  }
}
