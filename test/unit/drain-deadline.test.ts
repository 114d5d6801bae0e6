/**
 * The drain's wait on a fake clock: the deadline counts from the start of the drain (the signal),
 * so time spent stopping the listeners or asking the workers for their counts is part of it, and
 * so is the rest of start-up after a signal that came during it. The listeners stop before the
 * first count (a round trip to every worker) is asked for.
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

t.test('listeners stop first: drain() is called before any count round trip, synchronously', async (t) => {
  const calls: string[] = [];
  let drained = false;
  let release!: () => void;
  const runner: Drainable = {
    drain: () => {
      calls.push('drain');
      // held open: a count asked for before drain() has finished would show up in `calls`
      return new Promise<void>((r) => (release = () => ((drained = true), r())));
    },
    liveConnections: async () => {
      calls.push(drained ? 'count after drain' : 'count before drain finished');
      return 0;
    },
  };
  const lines: string[] = [];
  const done = drainWithinDeadline(runner, 1000, { log: { info: (_o, m) => void lines.push(m) }, forced: () => false, clock: fake({ drainMs: 0, live: 0 }).clock });
  t.same(calls, ['drain'], 'drain() was called at once, before the first await');
  await new Promise((r) => setImmediate(r));
  t.same(calls, ['drain'], 'no count (a worker round trip) while the listeners are still stopping');
  t.same(lines, [], 'the "stopped accepting" line waits for the listeners to stop');
  release();
  t.equal(await done, 0);
  t.ok(calls.length > 1 && calls.slice(1).every((c) => c === 'count after drain'), `every count came after drain(): ${calls.join(', ')}`);
  t.same(lines, ['draining: stopped accepting, live connections may finish until the deadline']);
});

t.test('a signal during start-up: the deadline counts from the signal, not from the start of the drain', async (t) => {
  const f = fake({ drainMs: 0, live: 1 });
  const signalAt = f.state.now; // 0: the signal
  f.state.now = 700; // start-up took 700 ms after it
  const left = await drainWithinDeadline(f.runner, 1000, { log: f.log, forced: () => false, clock: f.clock, startedAt: signalAt });
  t.equal(left, 1, 'the connection outlived the deadline');
  t.equal(f.state.now, 1000, 'the wait ended 1000 ms after the signal');
  t.equal(f.state.slept, 300, 'only the 300 ms left of the deadline were waited');
  t.same(f.lines[0]![1], { deadlineMs: 1000, connections: 1 });
});

t.test('a signal long before the end of start-up: no wait at all', async (t) => {
  const f = fake({ drainMs: 0, live: 2 });
  f.state.now = 5000;
  const left = await drainWithinDeadline(f.runner, 1000, { log: f.log, forced: () => false, clock: f.clock, startedAt: 0 });
  t.equal(left, 2);
  t.equal(f.state.slept, 0, 'the deadline had passed during start-up');
  t.equal(f.lines.at(-1)![0], 'drain deadline reached: closing the remaining connections');
});
