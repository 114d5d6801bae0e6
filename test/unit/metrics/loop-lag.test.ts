/**
 * ztunnel_worker_eventloop_lag_seconds (src/metrics/loop-lag.ts): one series per stat, labelled
 * with the worker's index, in seconds; a loop held busy shows up, stays visible however often it
 * is read, and leaves only when the timer has turned two windows; two workers' series stay apart
 * through the main thread's merge.
 */
import t from 'tap';
import { setTimeout as sleep } from 'node:timers/promises';
import { Registry } from 'prom-client';
import { LOOP_LAG_METRIC, registerLoopLag } from '../../../src/metrics/loop-lag';
import { ProxyMetrics, type MetricsJson } from '../../../src/metrics/registry';
import { parseProm, select } from '../../helpers/prom-text';
import { eventually } from '../../helpers/eventually';

/** The three stats of one read of `registry`, in seconds. */
async function lagOf(registry: Registry): Promise<Record<string, number>> {
  const json = (await registry.getMetricsAsJSON()) as MetricsJson;
  const lag = json.find((m) => m.name === LOOP_LAG_METRIC)!;
  return Object.fromEntries(lag.values.map((v) => [String(v.labels['stat']), v.value]));
}

/** Lets the monitor tick, holds the loop for `ms`, lets it tick again so it records the delay. */
async function stall(ms: number): Promise<void> {
  await sleep(50);
  const until = Date.now() + ms;
  while (Date.now() < until) {
    // busy on purpose
  }
  await sleep(50);
}

t.test('series per stat, labelled by worker; a busy loop is seen', async (t) => {
  const registry = new Registry();
  const stop = registerLoopLag(registry, 3);
  t.teardown(stop);
  // the monitor measures from its previous tick: let it tick first, then hold the loop for 200 ms,
  // then let it tick once more so it records the delay
  await sleep(50);
  const until = Date.now() + 200;
  while (Date.now() < until) {
    // busy on purpose
  }
  await sleep(50);
  const json = (await registry.getMetricsAsJSON()) as MetricsJson;
  const lag = json.find((m) => m.name === LOOP_LAG_METRIC)!;
  t.same(lag.values.map((v) => [v.labels['worker'], v.labels['stat']]).sort(), [['3', 'max'], ['3', 'mean'], ['3', 'p99']]);
  const max = lag.values.find((v) => v.labels['stat'] === 'max')!.value;
  // a lower bound only: the loop was blocked for 200 ms whatever the machine's load
  t.ok(max >= 0.15, `max ${max} s covers the 200 ms block`);
  t.ok(lag.values.every((v) => v.value >= 0), 'never negative');
});

t.test("two workers' series are not summed by the merge", async (t) => {
  const regs = [new Registry(), new Registry()];
  const stops = regs.map((r, i) => registerLoopLag(r, i));
  t.teardown(() => stops.forEach((s) => s()));
  await sleep(30);
  const answers = (await Promise.all(regs.map((r) => r.getMetricsAsJSON()))) as MetricsJson[];
  const text = await new ProxyMetrics({ version: '1.0.0', processMetrics: false }).render('prometheus', answers);
  const samples = select(parseProm(text), LOOP_LAG_METRIC);
  t.equal(samples.length, 6, 'three stats for each of two workers');
  t.same([...new Set(samples.map((s) => s.labels['worker']))].sort(), ['0', '1']);
});

t.test('a stall stays visible at later reads: reading does not start a new window', async (t) => {
  // the bug this guards: a worker stalled past the scrape deadline answered that scrape late (its
  // answer thrown away) and the read cleared the window, so the next scrape never showed the stall
  const registry = new Registry();
  const stop = registerLoopLag(registry, 0);
  t.teardown(stop);
  await stall(200);
  for (const read of [1, 2, 3]) {
    const lag = await lagOf(registry);
    t.ok(lag['max']! >= 0.15, `read ${read}: max ${lag['max']} s still covers the 200 ms block`);
    t.ok(lag['p99']! <= lag['max']! && lag['mean']! <= lag['max']!, `read ${read}: mean and p99 within max`);
  }
});

t.test('a stall leaves the gauge once the timer has turned two windows', async (t) => {
  const registry = new Registry();
  const stop = registerLoopLag(registry, 0, { windowMs: 100 });
  t.teardown(stop);
  await stall(200);
  // no upper bound on when: the turns are timer-driven and a loaded machine delays timers
  await eventually(async () => (await lagOf(registry))['max']! < 0.15, 'the stall to age out');
  t.pass('aged out by the window timer, not by a read');
  const help = ((await registry.getMetricsAsJSON()) as MetricsJson).find((m) => m.name === LOOP_LAG_METRIC)!.help;
  t.match(help, /window of 0\.1 s/, 'the help text says what the window is');
});
