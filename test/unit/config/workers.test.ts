import t from 'tap';
import { resolveWorkerThreads } from '../../../src/config/workers';

type Env = Record<string, string>;

t.test('worker threads follow the ZTUNNEL-FACTS rules', async (t) => {
  // [description, env, logical cores, threads]
  const cases: [string, Env, number, number][] = [
    // the examples in ZTUNNEL-FACTS "Worker threads"
    ['facts: CPU_LIMIT=16 and 30% → 5', { ZTUNNEL_CPU_LIMIT: '16', ZTUNNEL_WORKER_THREADS: '30%' }, 2, 5],
    ['facts: CPU_LIMIT=4 and 10% → 1', { ZTUNNEL_CPU_LIMIT: '4', ZTUNNEL_WORKER_THREADS: '10%' }, 64, 1],
    ['facts: RESOURCE_CPU_LIMIT=2500m → default 3', { ZTUNNEL_RESOURCE_CPU_LIMIT: '2500m' }, 64, 3],
    // fixed counts
    ['N', { ZTUNNEL_WORKER_THREADS: '4' }, 2, 4],
    ['N above the core count is honoured', { ZTUNNEL_WORKER_THREADS: '12' }, 2, 12],
    ['0 = all logical cores', { ZTUNNEL_WORKER_THREADS: '0' }, 6, 6],
    ['0 = ZTUNNEL_CPU_LIMIT', { ZTUNNEL_WORKER_THREADS: '0', ZTUNNEL_CPU_LIMIT: '3' }, 64, 3],
    ['0 = ceil(resource limit)', { ZTUNNEL_WORKER_THREADS: '0', ZTUNNEL_RESOURCE_CPU_LIMIT: '1.5' }, 64, 2],
    // percentages
    ['50% of 8 (ztunnel test)', { ZTUNNEL_CPU_LIMIT: '8', ZTUNNEL_WORKER_THREADS: '50%' }, 2, 4],
    ['100% of logical', { ZTUNNEL_WORKER_THREADS: '100%' }, 7, 7],
    ['tiny percent rounds up to 1', { ZTUNNEL_WORKER_THREADS: '0.5%' }, 4, 1],
    ['fractional percent', { ZTUNNEL_WORKER_THREADS: '12.5%' }, 16, 2],
    ['percent of resource limit wins over CPU_LIMIT', { ZTUNNEL_RESOURCE_CPU_LIMIT: '8', ZTUNNEL_CPU_LIMIT: '100', ZTUNNEL_WORKER_THREADS: '50%' }, 2, 4],
    ['percent of ceil(resource limit)', { ZTUNNEL_RESOURCE_CPU_LIMIT: '500m', ZTUNNEL_WORKER_THREADS: '100%' }, 64, 1],
    ['exact multiple does not round up', { ZTUNNEL_RESOURCE_CPU_LIMIT: '3000m', ZTUNNEL_WORKER_THREADS: '100%' }, 64, 3],
    // defaults without a resource limit: max(ceil(25% of cpus), ceil(request), 2)
    ['default on 2 cores is 2', {}, 2, 2],
    ['default on 1 core is still 2', {}, 1, 2],
    ['default on 16 cores is 4', {}, 16, 4],
    ['default on 10 cores is ceil(2.5) = 3', {}, 10, 3],
    ['default uses CPU_LIMIT', { ZTUNNEL_CPU_LIMIT: '32' }, 2, 8],
    ['default raised by the request', { ZTUNNEL_RESOURCE_CPU_REQUEST: '5' }, 8, 5],
    ['default request in millicores', { ZTUNNEL_RESOURCE_CPU_REQUEST: '2100m' }, 8, 3],
    ['small request does not lower the floor', { ZTUNNEL_RESOURCE_CPU_REQUEST: '200m' }, 4, 2],
    // defaults with a resource limit: max(ceil(limit), ceil(request))
    ['resource limit 1 → 1 (no floor of 2)', { ZTUNNEL_RESOURCE_CPU_LIMIT: '1' }, 64, 1],
    ['resource limit 500m → 1', { ZTUNNEL_RESOURCE_CPU_LIMIT: '500m' }, 64, 1],
    ['resource limit and larger request', { ZTUNNEL_RESOURCE_CPU_LIMIT: '2', ZTUNNEL_RESOURCE_CPU_REQUEST: '3.2' }, 64, 4],
    ['resource limit ignores CPU_LIMIT', { ZTUNNEL_RESOURCE_CPU_LIMIT: '2', ZTUNNEL_CPU_LIMIT: '16' }, 64, 2],
    ['explicit N ignores the resources', { ZTUNNEL_RESOURCE_CPU_LIMIT: '2', ZTUNNEL_WORKER_THREADS: '6' }, 64, 6],
    ['empty value counts as unset', { ZTUNNEL_WORKER_THREADS: '', ZTUNNEL_RESOURCE_CPU_LIMIT: '' }, 16, 4],
  ];
  for (const [name, env, cpus, want] of cases) {
    const got = resolveWorkerThreads(env, cpus);
    t.same(got.issues, [], `${name}: no issues`);
    t.equal(got.threads, want, name);
  }
});

t.test('bad worker-thread variables are issues naming the variable', async (t) => {
  const cases: [Env, string, RegExp][] = [
    [{ ZTUNNEL_WORKER_THREADS: 'abc' }, 'ZTUNNEL_WORKER_THREADS', /^a count, 0, or a percent like 25%$/],
    [{ ZTUNNEL_WORKER_THREADS: '-1' }, 'ZTUNNEL_WORKER_THREADS', /a count/],
    [{ ZTUNNEL_WORKER_THREADS: '1.5' }, 'ZTUNNEL_WORKER_THREADS', /a count/],
    [{ ZTUNNEL_WORKER_THREADS: '0%' }, 'ZTUNNEL_WORKER_THREADS', /more than 0% and at most 100%/],
    [{ ZTUNNEL_WORKER_THREADS: '101%' }, 'ZTUNNEL_WORKER_THREADS', /at most 100%/],
    [{ ZTUNNEL_WORKER_THREADS: '%' }, 'ZTUNNEL_WORKER_THREADS', /a count/],
    [{ ZTUNNEL_WORKER_THREADS: '25 %' }, 'ZTUNNEL_WORKER_THREADS', /a count/],
    [{ ZTUNNEL_WORKER_THREADS: '99999999999999999999' }, 'ZTUNNEL_WORKER_THREADS', /a count/],
    [{ ZTUNNEL_CPU_LIMIT: '0' }, 'ZTUNNEL_CPU_LIMIT', /whole number of CPUs from 1/],
    [{ ZTUNNEL_CPU_LIMIT: '1.5' }, 'ZTUNNEL_CPU_LIMIT', /whole number of CPUs/],
    [{ ZTUNNEL_CPU_LIMIT: '500m' }, 'ZTUNNEL_CPU_LIMIT', /whole number of CPUs/],
    [{ ZTUNNEL_RESOURCE_CPU_LIMIT: '0' }, 'ZTUNNEL_RESOURCE_CPU_LIMIT', /CPU quantity.*more than 0/],
    [{ ZTUNNEL_RESOURCE_CPU_LIMIT: '2 cores' }, 'ZTUNNEL_RESOURCE_CPU_LIMIT', /CPU quantity like 2, 1.5 or 500m/],
    [{ ZTUNNEL_RESOURCE_CPU_LIMIT: '1Gi' }, 'ZTUNNEL_RESOURCE_CPU_LIMIT', /CPU quantity/],
    [{ ZTUNNEL_RESOURCE_CPU_REQUEST: 'lots' }, 'ZTUNNEL_RESOURCE_CPU_REQUEST', /CPU quantity/],
    [{ ZTUNNEL_RESOURCE_CPU_REQUEST: '-1' }, 'ZTUNNEL_RESOURCE_CPU_REQUEST', /CPU quantity/],
  ];
  for (const [env, variable, expected] of cases) {
    const got = resolveWorkerThreads(env, 4);
    t.equal(got.issues.length, 1, `${JSON.stringify(env)}: one issue`);
    t.equal(got.issues[0]?.variable, variable);
    t.equal(got.issues[0]?.value, env[variable]);
    t.match(got.issues[0]?.expected, expected, JSON.stringify(env));
    t.ok(Number.isInteger(got.threads) && got.threads >= 1, 'still a usable thread count');
  }
});

t.test('a request of 0 is allowed; every bad variable is reported together', async (t) => {
  t.same(resolveWorkerThreads({ ZTUNNEL_RESOURCE_CPU_REQUEST: '0' }, 4), { threads: 2, issues: [] });
  const got = resolveWorkerThreads(
    { ZTUNNEL_WORKER_THREADS: 'x', ZTUNNEL_CPU_LIMIT: 'y', ZTUNNEL_RESOURCE_CPU_LIMIT: 'z', ZTUNNEL_RESOURCE_CPU_REQUEST: 'w' },
    4,
  );
  t.same(got.issues.map((i) => i.variable).sort(), [
    'ZTUNNEL_CPU_LIMIT',
    'ZTUNNEL_RESOURCE_CPU_LIMIT',
    'ZTUNNEL_RESOURCE_CPU_REQUEST',
    'ZTUNNEL_WORKER_THREADS',
  ]);
});

t.test('logicalCpus must be a positive integer', async (t) => {
  for (const bad of [0, -1, 1.5, NaN]) t.throws(() => resolveWorkerThreads({}, bad), RangeError, String(bad));
});
