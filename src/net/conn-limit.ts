/**
 * ConnectionLimit: ZTUNNEL_MAX_CONNECTIONS, one budget of concurrent proxied connections for the
 * whole proxy process, shared by every worker thread.
 *
 * Why one shared counter and not max/N per worker: SO_REUSEPORT spreads connections by a hash of
 * the 4-tuple, so the workers' shares are never even; a per-worker split would refuse
 * connections while the process as a whole is still under its limit. The counter lives in a
 * SharedArrayBuffer (plain data, so it crosses into workers in the 'init' message) and is updated
 * with Atomics.
 *
 * Layout (Int32Array): [0] = connections held by the whole process, [1 + i] = connections held
 * by worker slot i. The per-slot counts exist for one reason: a worker that dies cannot release
 * what it held, so the supervisor gives its share back with reclaim(i) before replacing it.
 *
 * Invariants: cell 0 never exceeds `max` through tryAcquire (compare-and-swap, so concurrent
 * workers cannot overshoot); cell 0 equals the sum of the slot cells except for the instant
 * between the two updates of one acquire/release.
 */
export interface ConnectionLimitState {
  readonly max: number;
  readonly buffer: SharedArrayBuffer;
}

export class ConnectionLimit {
  private readonly cells: Int32Array;

  /** `slot`: this thread's worker slot (0 for the main thread when there are no workers). */
  constructor(
    readonly state: ConnectionLimitState,
    private readonly slot: number,
  ) {
    this.cells = new Int32Array(state.buffer);
    if (slot < 0 || 1 + slot >= this.cells.length) throw new RangeError(`connection limit slot ${slot} out of range`);
  }

  /** A shared budget of `max` connections for `slots` worker slots. */
  static create(max: number, slots: number): ConnectionLimitState {
    if (!Number.isInteger(max) || max < 1) throw new RangeError(`connection limit must be a positive integer, got ${max}`);
    return { max, buffer: new SharedArrayBuffer(4 * (1 + Math.max(1, slots))) };
  }

  /** Takes one connection from the budget; false when the process is at its limit. */
  tryAcquire(): boolean {
    for (;;) {
      const held = Atomics.load(this.cells, 0);
      if (held >= this.state.max) return false;
      if (Atomics.compareExchange(this.cells, 0, held, held + 1) === held) break;
    }
    Atomics.add(this.cells, 1 + this.slot, 1);
    return true;
  }

  /** Gives back one connection taken by tryAcquire on this thread. */
  release(): void {
    Atomics.sub(this.cells, 1 + this.slot, 1);
    Atomics.sub(this.cells, 0, 1);
  }

  /** Connections held by the whole process. */
  get inUse(): number {
    return Atomics.load(this.cells, 0);
  }

  /** Supervisor: worker `slot` died; what it held is free again. Call before its replacement starts. */
  static reclaim(state: ConnectionLimitState, slot: number): number {
    const cells = new Int32Array(state.buffer);
    const held = Atomics.exchange(cells, 1 + slot, 0);
    Atomics.sub(cells, 0, held);
    return held;
  }
}

/** How often a flood of refusals is logged: the first at once, then one summary line per period. */
const REFUSAL_LOG_PERIOD_MS = 10_000;

/**
 * A Listener onRefused hook that logs refusals without turning a connection flood into a log
 * flood: the first refusal of a period is logged at once, the others are counted and reported
 * with the next line.
 */
export function refusalLogger(
  log: { warn(obj: object, msg: string): void },
  limit: ConnectionLimit,
  now: () => number = Date.now,
): (socket: { localAddress?: string; localPort?: number; remoteAddress?: string }) => void {
  let lastAt = -Infinity;
  let unreported = 0;
  return (socket) => {
    unreported++;
    const t = now();
    if (t - lastAt < REFUSAL_LOG_PERIOD_MS) return;
    lastAt = t;
    log.warn(
      { limit: limit.state.max, refused: unreported, listener: `${socket.localAddress ?? '?'}:${socket.localPort ?? '?'}`, src: socket.remoteAddress },
      'connection refused: ZTUNNEL_MAX_CONNECTIONS reached',
    );
    unreported = 0;
  };
}
