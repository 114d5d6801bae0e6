/**
 * The drain's wait on a fake clock: the deadline counts from the start of the drain (the signal),
 * so time spent stopping the listeners or asking the workers for their counts is part of it.
 */
import t from 'tap';
import { drainWithinDeadline, type DrainClock, type Drainable } from '../../src/drain-deadline';

interface Fake {
  clock: DrainClock;
  runner: Drainable;
  log: { info(obj: object, msg: string): void };
  lines: Array<[string, object]>;
  state: { now: number; live: number; slept: number };
}

/** A runner whose drain() takes `drainMs` and each count round trip `countMs` of fake time. */
function fake(opts: { drainMs: number; countMs?: number; live: number; endsAt?: number }): Fake {
  const state = { now: 0, live: opts.live, slept: 0 };
  const lines: Array<[string, object]> = [];
  const clock: DrainClock = {
    now: () => state.now,
    sleep: async (ms) => {
      state.now += ms;
      state.slept += ms;
    },
  };
  const runner: Drainable = {
    drain: async () => void (state.now += opts.drainMs),
    liveConnections: async () => {
      state.now += opts.countMs ?? 0;
      if (opts.endsAt !== undefined && state.now >= opts.endsAt) state.live = 0;
      return state.live;
    },
  };
  return { clock, runner, lines, state, log: { info: (obj, msg) => void lines.push([msg, obj]) } };
}

t.test('a drain that takes longer than the deadline leaves no extra wait', async (t) => {
  const f = fake({ drainMs: 1000, live: 2 });
  const left = await drainWithinDeadline(f.runner, 500, { log: f.log, forced: () => false, clock: f.clock });
  t.equal(left, 2, 'the remaining connections are reported for closing');
  t.equal(f.state.slept, 0, 'no wait after drain(): the deadline had already passed');
  t.same(f.lines.map(([m]) => m), ['draining: stopped accepting, live connections may finish until the deadline', 'drain deadline reached: closing the remaining connections']);
  t.same(f.lines[1]![1], { connections: 2 });
});

t.test('time spent in drain() and in count round trips counts against the deadline', async (t) => {
  const f = fake({ drainMs: 300, countMs: 10, live: 1 });
  await drainWithinDeadline(f.runner, 1000, { log: f.log, forced: () => false, clock: f.clock });
  // the wait ends at the deadline measured from the start, give or take one count round trip
  t.ok(f.state.now >= 1000 && f.state.now <= 1000 + 2 * 10, `ended at ${f.state.now} ms of fake time`);
  t.ok(f.state.slept <= 1000 - 300, `slept ${f.state.slept} ms: not a full deadline after drain()`);
});

t.test('connections that finish in time end the wait early, without the deadline line', async (t) => {
  const f = fake({ drainMs: 5, live: 3, endsAt: 200 });
  const left = await drainWithinDeadline(f.runner, 5000, { log: f.log, forced: () => false, clock: f.clock });
  t.equal(left, 0);
  t.ok(f.state.now < 300, 'stopped polling soon after the last connection went');
  t.same(f.lines.map(([m]) => m), ['draining: stopped accepting, live connections may finish until the deadline']);
  t.same(f.lines[0]![1], { deadlineMs: 5000, connections: 3 });
});

t.test('a forced close (second signal) ends the wait at once and says nothing of a deadline', async (t) => {
  const f = fake({ drainMs: 5, live: 1 });
  let forced = false;
  f.clock.sleep = async (ms) => {
    f.state.now += ms;
    f.state.slept += ms;
    forced = true;
  };
  const left = await drainWithinDeadline(f.runner, 60_000, { log: f.log, forced: () => forced, clock: f.clock });
  t.equal(left, 1);
  t.ok(f.state.slept <= 50, 'one poll, then out');
  t.equal(f.lines.length, 1);
});
