/**
 * Authorization benchmark: compile time for a large policy set, and authorize() cost per
 * connection in the worst case (every policy evaluated, none matching) and in common small cases.
 *
 *   node dist/bench/authz.js [--policies 10000] [--rules 10] [--seconds 1]
 *
 * The worst case is 10,000 Global DENY policies of 10 rules each. Every rule is made to get deep:
 * its first clause HOLDS (the destination port matches) and its second clause fails on both of its
 * matches (a principal and a source CIDR), so each rule costs three match evaluations and no
 * policy short-circuits on its first field. Each measurement runs for --seconds (bounded).
 */
import { authorize } from '../src/authz/authorize';
import { compilePolicies, type CompiledPolicies } from '../src/authz/compile';
import type { Decision } from '../src/authz/types';
import type { Policy, Rule } from '../src/state/model';
import { conn, workload } from '../test/unit/authz/fixtures';

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(`--${name}`);
  const v = i < 0 ? NaN : Number(process.argv[i + 1]);
  return Number.isFinite(v) && v > 0 ? v : dflt;
}

const POLICIES = Math.floor(arg('policies', 10_000));
const RULES = Math.floor(arg('rules', 10));
const SECONDS = Math.min(arg('seconds', 1), 10);

function worstCasePolicies(n: number, rules: number): Policy[] {
  const out: Policy[] = [];
  for (let p = 0; p < n; p++) {
    const rs: Rule[] = [];
    for (let r = 0; r < rules; r++) {
      rs.push([
        [{ destinationPorts: [8080, 8443] }],
        [
          { principals: [{ Exact: `cluster.local/ns/ns-${p}/sa/sa-${r}` }] },
          { sourceIps: [{ address: `192.168.${r}.0`, prefixLen: 24 }], notDestinationPorts: [9999] },
        ],
      ]);
    }
    out.push({ name: `deny-${p}`, namespace: 'istio-system', scope: 'Global', action: 'Deny', rules: rs, dryRun: false });
  }
  return out;
}

// the unit tests' workload and connection (sleep → httpbin:8080), so bench and tests judge the same case
const DST = workload();
const CONN = conn();

interface Timing {
  readonly ops: number;
  /** Wall time per op. */
  readonly nsPerOp: number;
  /** CPU time (user + system) of this process per op: steadier on a shared machine. */
  readonly cpuNsPerOp: number;
}

/** Runs fn in growing batches until `seconds` have passed (and at least 3 calls). */
function measure(fn: () => unknown, seconds: number): Timing {
  const budget = BigInt(Math.round(seconds * 1e9));
  for (let i = 0; i < 3; i++) fn(); // warm up: let the JIT settle before timing
  let ops = 0;
  let batch = 1;
  const cpu0 = process.cpuUsage();
  const start = process.hrtime.bigint();
  let elapsed = 0n;
  while (elapsed < budget) {
    for (let i = 0; i < batch; i++) fn();
    ops += batch;
    elapsed = process.hrtime.bigint() - start;
    if (batch < 1 << 16) batch *= 2;
  }
  const cpu = process.cpuUsage(cpu0);
  return { ops, nsPerOp: Number(elapsed) / ops, cpuNsPerOp: ((cpu.user + cpu.system) * 1e3) / ops };
}

function per(ns: number): string {
  return ns >= 1e4 ? `${(ns / 1e3).toFixed(1)} µs/op` : `${ns.toFixed(0)} ns/op`;
}

function fmt(t: Timing): string {
  return (
    `${per(t.nsPerOp)}, ${Math.round(1e9 / t.nsPerOp).toLocaleString('en-US')} ops/s ` +
    `(CPU ${per(t.cpuNsPerOp)}; ${t.ops.toLocaleString('en-US')} ops)`
  );
}

function expect(d: Decision, allowed: boolean, reason: string, what: string): void {
  if (d.allowed !== allowed || d.reason !== reason) {
    throw new Error(`${what}: unexpected decision ${JSON.stringify(d)}`);
  }
}

function main(): void {
  const policies = worstCasePolicies(POLICIES, RULES);
  let compiled: CompiledPolicies | null = null;
  const compileRuns: number[] = [];
  const compileCpu: number[] = [];
  for (let i = 0; i < 5; i++) {
    const cpu0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    compiled = compilePolicies(policies);
    compileRuns.push(Number(process.hrtime.bigint() - t0) / 1e6);
    const cpu = process.cpuUsage(cpu0);
    compileCpu.push((cpu.user + cpu.system) / 1e3);
  }
  compileRuns.sort((a, b) => a - b);
  compileCpu.sort((a, b) => a - b);
  const snapshot = { policies: compiled! };
  expect(authorize(CONN, DST, snapshot), true, 'no allow policies', 'worst case');

  console.log(`authz bench (node ${process.version}, ${SECONDS}s per measurement)`);
  console.log(
    `compile ${POLICIES.toLocaleString('en-US')} policies × ${RULES} rules: median ${compileRuns[2]!.toFixed(1)} ms ` +
      `(min ${compileRuns[0]!.toFixed(1)}, max ${compileRuns[4]!.toFixed(1)}; CPU median ${compileCpu[2]!.toFixed(1)} ms; 5 runs)`,
  );
  console.log(
    `authorize, worst case (${POLICIES.toLocaleString('en-US')} Global DENY × ${RULES} rules, none matching): ` +
      fmt(measure(() => authorize(CONN, DST, snapshot), SECONDS)),
  );

  const none = { policies: compilePolicies([]) };
  expect(authorize(CONN, DST, none), true, 'no allow policies', 'no policies');
  console.log(`authorize, no policies: ${fmt(measure(() => authorize(CONN, DST, none), SECONDS))}`);

  // A typical namespace: one DENY that does not match, then an ALLOW on principal that does.
  const typical = {
    policies: compilePolicies([
      { name: 'deny-ext', namespace: 'default', scope: 'Namespace', action: 'Deny', dryRun: false,
        rules: [[[{ notSourceIps: [{ address: '10.0.0.0', prefixLen: 8 }] }]]] },
      { name: 'allow-sleep', namespace: 'default', scope: 'Namespace', action: 'Allow', dryRun: false,
        rules: [[[{ principals: [{ Exact: 'cluster.local/ns/default/sa/sleep' }] }], [{ destinationPorts: [8080] }]]] },
    ]),
  };
  expect(authorize(CONN, DST, typical), true, 'allowed by: default/allow-sleep', 'typical');
  console.log(`authorize, typical (1 DENY miss + 1 ALLOW hit): ${fmt(measure(() => authorize(CONN, DST, typical), SECONDS))}`);
}

main();
