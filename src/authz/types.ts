import type { Identity } from '../identity/spiffe';

/** What the destination node knows about one inbound connection. */
export interface ConnInfo {
  /** The connection's peer address (for HBONE: the source pod IP from the tunnel's TCP peer). */
  readonly srcIp: string;
  readonly srcPort?: number;
  /** The peer's verified identity; null for plaintext (no identity). */
  readonly identity: Identity | null;
  /** The final target pod IP and target port (not 15008). */
  readonly dstIp: string;
  readonly dstPort: number;
}

export interface Decision {
  readonly allowed: boolean;
  /** Operator-facing reason, e.g. "explicitly denied by: ns/name", "allow policies exist, but none allowed". */
  readonly reason: string;
  /** The deciding policy "ns/name", or null when no single policy decided. */
  readonly policy: string | null;
  /** Dry-run policies that would have changed the outcome (logged, never enforced). */
  readonly dryRun?: readonly { readonly policy: string; readonly wouldAllow: boolean }[];
}
