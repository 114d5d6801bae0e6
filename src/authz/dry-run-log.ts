/**
 * Logging of dry-run policies (ZTUNNEL-FACTS: "Dry-run policies are only logged"). authorize()
 * stays pure and only lists, in decision.dryRun, the dry-run policies that would have changed the
 * outcome; every place that enforces a decision calls logDryRun — HBONE inbound and plaintext
 * inbound at admission, and the re-check on a snapshot swap only when a connection's dry-run verdict
 * changed (src/proxy/connection-manager.ts), so that an operator trying a policy in dry-run mode
 * sees which connections it would have allowed or denied, without any connection being affected
 * and without a line per live connection on every swap.
 */
import { formatSpiffe } from '../identity/spiffe';
import { joinHostPort } from '../net/ip';
import type { ConnInfo, Decision } from './types';

/** The one logging method this needs (pino's Logger and ProxyLog satisfy it). */
export interface DryRunLog {
  info(obj: object, msg: string): void;
}

/** One info line per dry-run entry of `decision`; nothing (and no allocation) when there is none. */
export function logDryRun(log: DryRunLog, conn: ConnInfo, decision: Decision): void {
  const entries = decision.dryRun;
  if (entries === undefined || entries.length === 0) return;
  const src = joinHostPort(conn.srcIp, conn.srcPort ?? 0);
  const dst = joinHostPort(conn.dstIp, conn.dstPort);
  const srcIdentity = conn.identity ? formatSpiffe(conn.identity) : null;
  const enforced = decision.allowed ? 'allowed' : 'denied';
  for (const e of entries) {
    const would = e.wouldAllow ? 'allowed' : 'denied';
    log.info(
      { src, dst, srcIdentity, policy: e.policy, dryRun: true, wouldAllow: e.wouldAllow, allowed: decision.allowed, reason: decision.reason },
      `dry-run policy ${e.policy} would have ${would} this connection (enforced: ${enforced})`,
    );
  }
}
