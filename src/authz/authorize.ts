/**
 * L4 authorization on the destination side (ZTUNNEL-FACTS "L4 authorization"; istio/ztunnel
 * DemandProxyState::assert_rbac). Pure and synchronous: the caller supplies the connection, the
 * destination workload and the installed snapshot's compiled policies.
 *
 * Selection for destination workload W, in this order:
 *   1. Namespace-scoped policies in W's namespace;
 *   2. every Global policy;
 *   3. the policies named in W.authorizationPolicies. As in ztunnel these are looked up by key
 *      whatever their scope (so a Namespace policy of another namespace named there applies); a
 *      name with no policy is skipped; a name already selected by 1 or 2 is not evaluated twice.
 * Decision (Istio's AuthorizationPolicy order):
 *   - an enforced DENY matches → denied, "explicitly denied by: ns/name";
 *   - no enforced ALLOW selected → allowed, "no allow policies";
 *   - an enforced ALLOW matches → allowed by it; otherwise denied,
 *     "allow policies exist, but none allowed" (policy null).
 * Dry-run policies never change the decision. Each one is judged as if it alone were enforced on
 * top of the enforced ones; those that would have flipped the outcome are listed in `dryRun`.
 */
import type { Workload } from '../state/model';
import type { CompiledPolicies, CompiledPolicy } from './compile';
import { connFacts, policyMatches, type ConnFacts } from './match';
import type { ConnInfo, Decision } from './types';

export const REASON_NO_ALLOW_POLICIES = 'no allow policies';
export const REASON_NONE_ALLOWED = 'allow policies exist, but none allowed';

const DEFAULT_ALLOW: Decision = Object.freeze({ allowed: true, reason: REASON_NO_ALLOW_POLICIES, policy: null });
const NONE_ALLOWED: Decision = Object.freeze({ allowed: false, reason: REASON_NONE_ALLOWED, policy: null });
const NO_POLICIES: readonly CompiledPolicy[] = Object.freeze([]);

type DryRunEntry = { readonly policy: string; readonly wouldAllow: boolean };

const PASS_DENY = 0;
const PASS_ALLOW = 1;
const PASS_DRY_RUN = 2;
type Pass = typeof PASS_DENY | typeof PASS_ALLOW | typeof PASS_DRY_RUN;

/** Per-call scratch: one object per connection, never per policy. */
interface Scan {
  readonly facts: ConnFacts;
  sawAllow: boolean;
  sawDryRun: boolean;
  /** The enforced decision, set before the dry-run pass. */
  actual: Decision;
  dryRun: DryRunEntry[] | null;
}

export function authorize(conn: ConnInfo, dst: Workload, snapshot: { readonly policies: CompiledPolicies }): Decision {
  const pols = snapshot.policies;
  const local = pols.byNamespace.get(dst.namespace) ?? NO_POLICIES;
  const named = dst.authorizationPolicies;
  if (local.length === 0 && pols.global.length === 0 && named.length === 0) return DEFAULT_ALLOW;

  const s: Scan = { facts: connFacts(conn), sawAllow: false, sawDryRun: false, actual: DEFAULT_ALLOW, dryRun: null };
  const deny = scanAll(PASS_DENY, pols, local, dst, s);
  // An enforced deny is final: no dry-run policy (deny or allow) could have changed it.
  if (deny !== null) return deny.decision;

  let decision = DEFAULT_ALLOW;
  if (s.sawAllow) {
    const allow = scanAll(PASS_ALLOW, pols, local, dst, s);
    decision = allow === null ? NONE_ALLOWED : allow.decision;
  }
  if (!s.sawDryRun) return decision;
  s.actual = decision;
  scanAll(PASS_DRY_RUN, pols, local, dst, s);
  return s.dryRun === null ? decision : Object.freeze({ ...decision, dryRun: Object.freeze(s.dryRun) });
}

/** Runs one pass over the selected policies; returns the first policy that decides, or null. */
function scanAll(
  pass: Pass,
  pols: CompiledPolicies,
  local: readonly CompiledPolicy[],
  dst: Workload,
  s: Scan,
): CompiledPolicy | null {
  for (let i = 0; i < local.length; i++) if (visit(pass, local[i]!, s)) return local[i]!;
  const global = pols.global;
  for (let i = 0; i < global.length; i++) if (visit(pass, global[i]!, s)) return global[i]!;
  const named = dst.authorizationPolicies;
  for (let i = 0; i < named.length; i++) {
    const p = pols.byKey.get(named[i]!);
    if (p === undefined) continue; // not (yet) in the snapshot: ztunnel skips unknown policies
    if (p.scope === 'Global' || (p.scope === 'Namespace' && p.namespace === dst.namespace)) continue;
    if (visit(pass, p, s)) return p;
  }
  return null;
}

/** True when `p` decides this pass. */
function visit(pass: Pass, p: CompiledPolicy, s: Scan): boolean {
  if (pass === PASS_DENY) {
    if (p.dryRun) {
      s.sawDryRun = true;
      return false;
    }
    if (p.action === 'Allow') {
      s.sawAllow = true;
      return false;
    }
    return policyMatches(p, s.facts);
  }
  if (pass === PASS_ALLOW) return !p.dryRun && p.action === 'Allow' && policyMatches(p, s.facts);
  if (p.dryRun) judgeDryRun(p, s);
  return false;
}

/** Records what dry-run policy `p` would have done, if enforcing it would flip `s.actual`. */
function judgeDryRun(p: CompiledPolicy, s: Scan): void {
  const actual = s.actual;
  let wouldAllow: boolean | null = null;
  if (p.action === 'Deny') {
    if (actual.allowed && policyMatches(p, s.facts)) wouldAllow = false;
  } else if (actual === DEFAULT_ALLOW) {
    // the first ALLOW policy turns "allow by default" into "allow only on a match"
    if (!policyMatches(p, s.facts)) wouldAllow = false;
  } else if (actual === NONE_ALLOWED) {
    if (policyMatches(p, s.facts)) wouldAllow = true;
  }
  if (wouldAllow === null) return;
  if (s.dryRun === null) s.dryRun = [];
  else if (s.dryRun.some((e) => e.policy === p.key)) return; // named twice in authorizationPolicies
  s.dryRun.push(Object.freeze({ policy: p.key, wouldAllow }));
}
