/**
 * Log filters in the form ztunnel reads from RUST_LOG (tracing's EnvFilter directives), limited to
 * what a node proxy needs: comma-separated `level` and `target=level` items, e.g. `info`,
 * `debug`, `info,access=debug`. A later bare level overrides an earlier one; a target named twice
 * keeps its last level. Levels: trace debug info warn error off, any case.
 *
 * EnvFilter would read a lone unknown word (`debgu`) as a target enabled at trace; we reject it,
 * because in an environment variable it is nearly always a misspelt level.
 * A filter with only target items keeps the default level `info` for everything else.
 */
import { ValueError } from './issues';

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'off'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface LogFilter {
  readonly level: LogLevel;
  /** Per-target levels, keys sorted (deterministic config dumps). */
  readonly targets: Readonly<Record<string, LogLevel>>;
}

export const LOG_FILTER_EXPECTED = 'a log level (trace, debug, info, warn, error, off) or a list like info,access=debug';

// targets are logger names: module paths (proxy::inbound), dotted or dashed words
const TARGET_RE = /^[A-Za-z0-9_][A-Za-z0-9_.:-]*$/;

function level(word: string): LogLevel | undefined {
  const w = word.toLowerCase();
  return LOG_LEVELS.find((l) => l === w);
}

export function parseLogFilter(s: string, defaultLevel: LogLevel = 'info'): LogFilter {
  let base = defaultLevel;
  const targets = new Map<string, LogLevel>();
  let items = 0;
  for (const rawItem of s.split(',')) {
    const item = rawItem.trim();
    if (item === '') continue; // "info," is accepted by EnvFilter too
    items++;
    const eq = item.indexOf('=');
    if (eq < 0) {
      const l = level(item);
      if (l === undefined) throw new ValueError('ERR_LOG_FILTER', s, `${LOG_FILTER_EXPECTED} (${JSON.stringify(item)} is not a level)`);
      base = l;
      continue;
    }
    const target = item.slice(0, eq).trim();
    const l = level(item.slice(eq + 1).trim());
    if (!TARGET_RE.test(target) || l === undefined) {
      throw new ValueError('ERR_LOG_FILTER', s, `${LOG_FILTER_EXPECTED} (${JSON.stringify(item)} is not target=level)`);
    }
    targets.set(target, l);
  }
  if (items === 0) throw new ValueError('ERR_LOG_FILTER', s, LOG_FILTER_EXPECTED);
  const sorted = [...targets.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return { level: base, targets: Object.fromEntries(sorted) };
}

/** The filter back as text, `info,access=debug` (what /logging reports). */
export function formatLogFilter(f: LogFilter): string {
  return [f.level, ...Object.entries(f.targets).map(([t, l]) => `${t}=${l}`)].join(',');
}
