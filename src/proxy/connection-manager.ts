/**
 * ConnectionManager: the live inbound connections of one thread, each with the facts it was
 * authorized on, so that a policy change can re-judge them (ZTUNNEL-FACTS: "When policies change,
 * every live inbound connection is re-checked and those now denied are closed"; ztunnel's
 * connection_manager.rs). The app calls recheck() on each snapshot swap whose policies changed.
 *
 * Invariants: `conns` holds exactly the connections registered and not yet released; an entry's
 * close() is called at most once by the manager (recheck or closeAll), and the owner releases it
 * when the connection actually ends.
 */
import { formatSpiffe } from '../identity/spiffe';
import { joinHostPort } from '../net/ip';
import type { ConnInfo, Decision } from '../authz/types';
import { logDryRun } from '../authz/dry-run-log';
import type { Workload } from '../state/model';
import { NO_LOG, type ProxyLog } from './proxy-log';

/** The key of a decision with no dry-run entry (the common case: no allocation). */
const NO_DRY_RUN = '';

/**
 * What a decision's dry-run log lines say, as a short string: each dry-run policy with what it
 * would have done, and the enforced outcome. Equal keys = identical lines.
 */
export function dryRunKey(decision: Decision): string {
  const entries = decision.dryRun;
  if (entries === undefined || entries.length === 0) return NO_DRY_RUN;
  let key = decision.allowed ? 'allowed' : 'denied';
  for (const e of entries) key += `|${e.policy}=${e.wouldAllow ? 'allow' : 'deny'}`;
  return key;
}

export interface ByteCounts {
  /** From the downstream peer (the HBONE client), forwarded upstream. */
  readonly received: number;
  /** From upstream, forwarded to the downstream peer. */
  readonly sent: number;
}

/** What the owner of a connection gives the manager. */
export interface ConnHandle {
  /** Ends the connection now (both sides), reporting `reason`. */
  close(reason: string): void;
  /** Live byte counters. */
  bytes(): ByteCounts;
}

export interface TrackedConn {
  readonly id: number;
  readonly info: ConnInfo;
  /** The destination workload it was authorized against. */
  readonly dst: Workload;
  readonly openedAt: Date;
  readonly handle: ConnHandle;
  /** Set once the manager closed it (recheck, closeAll). */
  closedReason: string | null;
  /**
   * The dry-run verdict last logged for it (dryRunKey): a re-check logs dry-run lines only when
   * it differs, so a snapshot swap does not repeat one identical line per live connection.
   */
  dryRunKey: string;
}

/** A row for config_dump / debugging: plain JSON. */
export interface ConnSummary {
  readonly id: number;
  readonly src: string;
  readonly dst: string;
  readonly srcIdentity: string | null;
  readonly dstWorkload: string;
  readonly openedAt: string;
  readonly bytesReceived: number;
  readonly bytesSent: number;
}

/** The lookup recheck needs from a snapshot (src/state/snapshot.ts satisfies it). */
export interface WorkloadLookup {
  workloadByIp(ip: string, network?: string): Workload | undefined;
}

export type AuthorizeFn<S> = (conn: ConnInfo, dst: Workload, snapshot: S) => Decision;

export interface ConnectionManagerOptions {
  readonly log?: ProxyLog;
  /** This node's network, for destination lookups ("" = default). */
  readonly network?: string;
  readonly now?: () => number;
}

export interface RecheckClosed {
  readonly conn: TrackedConn;
  readonly decision: Decision;
}

export class ConnectionManager {
  private readonly conns = new Map<number, TrackedConn>();
  private nextId = 1;
  private readonly log: ProxyLog;
  private readonly network: string;
  private readonly now: () => number;

  constructor(opts: ConnectionManagerOptions = {}) {
    this.log = opts.log ?? NO_LOG;
    this.network = opts.network ?? '';
    this.now = opts.now ?? Date.now;
  }

  /**
   * `admitted` is the decision the connection was let in on, whose dry-run lines the owner
   * already logged (logDryRun); without it the first re-check logs them.
   */
  register(info: ConnInfo, dst: Workload, handle: ConnHandle, admitted?: Decision): TrackedConn {
    const dryRun = admitted === undefined ? NO_DRY_RUN : dryRunKey(admitted);
    const conn: TrackedConn = { id: this.nextId++, info, dst, openedAt: new Date(this.now()), handle, closedReason: null, dryRunKey: dryRun };
    this.conns.set(conn.id, conn);
    return conn;
  }

  /** The connection ended (for whatever reason): stop tracking it. */
  release(conn: TrackedConn): void {
    this.conns.delete(conn.id);
  }

  get size(): number {
    return this.conns.size;
  }

  /**
   * Re-authorizes every live connection against `snapshot` and closes those now denied. The
   * destination is looked up again (its selected policies may have changed); a workload that is
   * no longer in the snapshot is judged as it was when the connection was opened.
   */
  recheck<S extends WorkloadLookup>(snapshot: S, authorize: AuthorizeFn<S>): RecheckClosed[] {
    const closed: RecheckClosed[] = [];
    for (const conn of [...this.conns.values()]) {
      if (conn.closedReason !== null) continue;
      const dst = snapshot.workloadByIp(conn.info.dstIp, this.network) ?? conn.dst;
      let decision: Decision;
      try {
        decision = authorize(conn.info, dst, snapshot);
      } catch (err) {
        // fail closed: a connection we can no longer judge is not kept open
        decision = { allowed: false, reason: `authorization failed: ${(err as Error).message}`, policy: null };
      }
      // dry-run lines at admission and then only when the verdict changes: every swap re-checks
      // every connection, and 10k live ones would repeat 10k identical lines per swap otherwise
      const key = dryRunKey(decision);
      if (key !== conn.dryRunKey) {
        conn.dryRunKey = key;
        logDryRun(this.log, conn.info, decision);
      }
      if (decision.allowed) continue;
      const reason = `connection closed because it is no longer allowed: ${decision.reason}`;
      this.log.info(
        { src: joinHostPort(conn.info.srcIp, conn.info.srcPort ?? 0), dst: joinHostPort(conn.info.dstIp, conn.info.dstPort), srcIdentity: conn.info.identity ? formatSpiffe(conn.info.identity) : null, policy: decision.policy },
        reason,
      );
      this.closeOne(conn, reason);
      closed.push({ conn, decision });
    }
    return closed;
  }

  /** Closes the live connections `match` picks (in-pod: those to a deleted pod); returns how many. */
  closeWhere(match: (conn: TrackedConn) => boolean, reason: string): number {
    let n = 0;
    for (const conn of [...this.conns.values()]) {
      if (conn.closedReason !== null || !match(conn)) continue;
      this.closeOne(conn, reason);
      n++;
    }
    return n;
  }

  /** Drain/shutdown: closes every live connection with `reason`; returns how many. */
  closeAll(reason: string): number {
    let n = 0;
    for (const conn of [...this.conns.values()]) {
      if (conn.closedReason !== null) continue;
      this.closeOne(conn, reason);
      n++;
    }
    return n;
  }

  list(): ConnSummary[] {
    const out: ConnSummary[] = [];
    for (const c of this.conns.values()) {
      const b = c.handle.bytes();
      out.push({
        id: c.id,
        src: joinHostPort(c.info.srcIp, c.info.srcPort ?? 0),
        dst: joinHostPort(c.info.dstIp, c.info.dstPort),
        srcIdentity: c.info.identity ? formatSpiffe(c.info.identity) : null,
        dstWorkload: c.dst.uid,
        openedAt: c.openedAt.toISOString(),
        bytesReceived: b.received,
        bytesSent: b.sent,
      });
    }
    return out;
  }

  private closeOne(conn: TrackedConn, reason: string): void {
    conn.closedReason = reason;
    try {
      conn.handle.close(reason);
    } catch (err) {
      this.log.warn({ id: conn.id, err: (err as Error).message }, 'closing a connection failed');
    }
  }
}
