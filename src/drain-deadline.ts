/**
 * The drain's wait (ZTUNNEL-FACTS "Shutdown"): stop accepting, then let live connections finish
 * until the termination deadline. The deadline is measured from the moment the drain begins (the
 * signal or POST /quitquitquit; for a signal during start-up, the signal), before any round trip
 * to the worker threads: the time the listeners take to stop, or a stats round trip, or the rest
 * of start-up, must not extend the grace period Kubernetes allows
 * (TERMINATION_GRACE_PERIOD_SECONDS), or the SIGKILL would come first.
 */

/** The part of the data plane a drain drives. */
export interface Drainable {
  drain(): Promise<void>;
  liveConnections(): number | Promise<number>;
}

export interface DrainClock {
  now(): number;
  sleep(ms: number): Promise<void>;
}

export interface DrainLog {
  info(obj: object, msg: string): void;
}

/** How often the wait looks whether the last connection has gone (one timer at a time). */
export const DRAIN_POLL_MS = 50;

const REAL_CLOCK: DrainClock = {
  now: Date.now,
  sleep: (ms) => new Promise((r) => setTimeout(r, ms)),
};

/**
 * Stops accepting and waits until no connection is left, the deadline passes, or `forced()`
 * turns true (a second SIGINT: close now). Returns how many connections were left, which the caller closes.
 */
export async function drainWithinDeadline(
  runner: Drainable,
  deadlineMs: number,
  opts: {
    readonly log: DrainLog;
    forced(): boolean;
    readonly clock?: DrainClock;
    /** When the drain was asked for, on `clock` (a signal during start-up); default: now. */
    readonly startedAt?: number;
  },
): Promise<number> {
  const clock = opts.clock ?? REAL_CLOCK;
  // first, before any await: the clock starts at the signal
  const deadline = (opts.startedAt ?? clock.now()) + deadlineMs;
  // stop accepting before anything else: a count is a round trip to every worker (up to seconds),
  // and the listeners would keep taking connections meanwhile
  await runner.drain();
  opts.log.info({ deadlineMs, connections: await runner.liveConnections() }, 'draining: stopped accepting, live connections may finish until the deadline');
  while (!opts.forced() && (await runner.liveConnections()) > 0 && clock.now() < deadline) {
    await clock.sleep(Math.min(DRAIN_POLL_MS, Math.max(1, deadline - clock.now())));
  }
  const left = await runner.liveConnections();
  if (left > 0 && !opts.forced()) opts.log.info({ connections: left }, 'drain deadline reached: closing the remaining connections');
  return left;
}
