/**
 * Durations as ztunnel's environment writes them (it parses with the duration_str crate):
 * a number and a unit, optionally repeated: `500ms`, `5s`, `5m`, `24h`, `1h30m`, `1.5s`, `2d`.
 * Units: ns, us/µs, ms, s, m, h, d, w (and their long names: sec, min, hour, day, ...), any case.
 *
 * A bare non-negative number is seconds (`30` = `30s`, `1.5` = `1.5s`): duration_str's default unit
 * is the second, so a ztunnel environment that sets CONNECTION_TERMINATION_DEADLINE=30 means 30 s
 * and must mean the same here.
 *
 * Months and years are not accepted: their length is ambiguous and no setting needs them.
 */
import { ValueError } from './issues';

export const DURATION_EXPECTED = 'a duration like 500ms, 5s, 5m, 24h or 1h30m (a bare number is seconds)';

const MS_PER: Readonly<Record<string, number>> = {
  ns: 1e-6, nsec: 1e-6, nanosecond: 1e-6, nanoseconds: 1e-6,
  us: 1e-3, 'µs': 1e-3, 'μs': 1e-3, usec: 1e-3, microsecond: 1e-3, microseconds: 1e-3,
  ms: 1, msec: 1, millisecond: 1, milliseconds: 1,
  s: 1000, sec: 1000, secs: 1000, second: 1000, seconds: 1000,
  m: 60_000, min: 60_000, mins: 60_000, minute: 60_000, minutes: 60_000,
  h: 3_600_000, hr: 3_600_000, hrs: 3_600_000, hour: 3_600_000, hours: 3_600_000,
  d: 86_400_000, day: 86_400_000, days: 86_400_000,
  w: 604_800_000, week: 604_800_000, weeks: 604_800_000,
};

// one "<number><unit>" part, spaces allowed around it ("1h 30m")
const PART = /\s*(\d+(?:\.\d+)?)\s*([a-zµμ]+)\s*/y;

/** Milliseconds (fractional for us/ns). Throws ValueError (code ERR_DURATION) naming the problem. */
export function parseDuration(s: string): number {
  if (typeof s !== 'string' || s.trim() === '') throw new ValueError('ERR_DURATION', String(s), DURATION_EXPECTED);
  // a bare number: seconds, as duration_str reads it
  const text = /^\s*\d+(\.\d+)?\s*$/.test(s) ? `${s.trim()}s` : s.toLowerCase();
  let total = 0;
  let pos = 0;
  PART.lastIndex = 0;
  while (pos < text.length) {
    PART.lastIndex = pos;
    const m = PART.exec(text);
    if (m === null) throw new ValueError('ERR_DURATION', s, DURATION_EXPECTED);
    const unit = MS_PER[m[2]!];
    if (unit === undefined) {
      throw new ValueError('ERR_DURATION', s, `${DURATION_EXPECTED} (unknown unit ${JSON.stringify(m[2])})`);
    }
    total += Number(m[1]) * unit;
    pos = PART.lastIndex;
  }
  if (!Number.isFinite(total) || total > Number.MAX_SAFE_INTEGER) {
    throw new ValueError('ERR_DURATION', s, `${DURATION_EXPECTED} (this one is too large)`);
  }
  // floating point: 0.1s must be 100 ms, not 100.00000000000001; keep nanosecond resolution
  return Math.round(total * 1e6) / 1e6;
}

const FORMAT_UNITS: readonly (readonly [string, number])[] = [
  ['h', 3_600_000_000_000],
  ['m', 60_000_000_000],
  ['s', 1_000_000_000],
  ['ms', 1_000_000],
  ['us', 1_000],
  ['ns', 1],
];

/**
 * The shortest ztunnel-style text for a duration: 300000 → "5m", 5400000 → "1h30m", 0 → "0s".
 * Hours are the largest unit (ztunnel writes a day as "24h"). parseDuration(formatDuration(x)) === x.
 */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) throw new RangeError(`formatDuration: ${ms} is not a non-negative duration`);
  let ns = BigInt(Math.round(ms * 1e6));
  if (ns === 0n) return '0s';
  let out = '';
  for (const [unit, size] of FORMAT_UNITS) {
    const n = ns / BigInt(size);
    if (n > 0n) {
      out += `${n}${unit}`;
      ns -= n * BigInt(size);
    }
  }
  return out;
}
