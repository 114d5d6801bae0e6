/**
 * How many proxy worker threads to run (ZTUNNEL-FACTS "Worker threads", ztunnel 1.31 rules):
 *
 *   cpus = ceil(ZTUNNEL_RESOURCE_CPU_LIMIT) if set, else ZTUNNEL_CPU_LIMIT if set, else logical cores
 *   ZTUNNEL_WORKER_THREADS = N   → N threads, with 0 meaning all cpus
 *   ZTUNNEL_WORKER_THREADS = N%  → max(1, ceil(cpus × N / 100)), 0 < N ≤ 100
 *   unset, with a resource limit → max(ceil(limit), ceil(request))
 *   unset, otherwise             → max(ceil(25% of cpus), ceil(request), 2)
 *
 * The resource variables are what the Istio chart fills from the pod's resources.limits.cpu /
 * resources.requests.cpu, so a ztunnel limited to 2.5 cores runs 3 threads instead of one per
 * host core (which would only add CFS throttling).
 */
import { EnvReader, type Env } from './env-reader';
import { type ConfigIssue, ValueError } from './issues';
import { integerParser, parseCpuQuantity } from './values';

export const WORKER_THREADS_EXPECTED = 'a count, 0, or a percent like 25%';

export interface WorkerThreads {
  /** Resolved thread count (the default when the variable is bad, so other checks still run). */
  readonly threads: number;
  readonly issues: readonly ConfigIssue[];
}

type ThreadsSetting = { kind: 'count'; n: number } | { kind: 'percent'; p: number };

function parseThreadsSetting(s: string): ThreadsSetting {
  if (/^\d+$/.test(s)) {
    const n = Number(s);
    if (!Number.isSafeInteger(n)) throw new ValueError('ERR_CONFIG_VALUE', s, WORKER_THREADS_EXPECTED);
    return { kind: 'count', n };
  }
  const m = /^(\d+(?:\.\d+)?)%$/.exec(s);
  if (m === null) throw new ValueError('ERR_CONFIG_VALUE', s, WORKER_THREADS_EXPECTED);
  const p = Number(m[1]);
  if (!(p > 0 && p <= 100)) {
    throw new ValueError('ERR_CONFIG_VALUE', s, `${WORKER_THREADS_EXPECTED} (a percent must be more than 0% and at most 100%)`);
  }
  return { kind: 'percent', p };
}

/** Reads the four worker-thread variables from `env`; `logicalCpus` is the machine's core count. */
export function resolveWorkerThreads(env: Env, logicalCpus: number): WorkerThreads {
  if (!Number.isSafeInteger(logicalCpus) || logicalCpus < 1) {
    throw new RangeError(`resolveWorkerThreads: logicalCpus must be a positive integer, got ${logicalCpus}`);
  }
  const r = new EnvReader(env);
  // every variable is read (and so validated) whether or not the rules end up needing it
  const setting = r.optional('ZTUNNEL_WORKER_THREADS', parseThreadsSetting);
  const cpuLimit = r.optional('ZTUNNEL_CPU_LIMIT', integerParser(1, 1_000_000, 'a whole number of CPUs'));
  const resourceLimit = r.optional('ZTUNNEL_RESOURCE_CPU_LIMIT', (s) => parseCpuQuantity(s, false));
  const resourceRequest = r.optional('ZTUNNEL_RESOURCE_CPU_REQUEST', (s) => parseCpuQuantity(s, true));

  const cpus = resourceLimit !== undefined ? Math.ceil(resourceLimit) : cpuLimit ?? logicalCpus;
  const request = Math.ceil(resourceRequest ?? 0);
  const byDefault =
    resourceLimit !== undefined
      ? Math.max(Math.ceil(resourceLimit), request)
      : Math.max(Math.ceil((cpus * 25) / 100), request, 2);

  let threads = byDefault;
  if (setting?.kind === 'count') threads = setting.n === 0 ? cpus : setting.n;
  // multiply before dividing: 16 × 30 / 100 is exactly 4.8, so ceil gives 5 without float drift
  if (setting?.kind === 'percent') threads = Math.max(1, Math.ceil((cpus * setting.p) / 100));
  return { threads, issues: r.issues };
}
