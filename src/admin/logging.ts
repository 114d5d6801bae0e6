/**
 * POST /logging (ztunnel's admin, after Envoy's): with no parameter it reports the current filter;
 * `level=debug` sets the default level (and clears per-target levels, as a new default does at
 * start-up), `level=info,access=debug` sets both, `level=access=debug` only that target;
 * `reset` goes back to the filter the process started with. Answers `current log level is <filter>`.
 * A bad level is a 400 that names it, with the usage text.
 */
import { formatLogFilter, parseLogFilter, type LogFilter, type LogLevel } from '../config/log-filter';

export const LOGGING_HELP = `
usage: POST /logging                                  (to list the current level)
usage: POST /logging?level=<level>                    (to change the default level)
usage: POST /logging?level=<target>=<level>,...        (to change some targets' levels)
usage: POST /logging?level=<level>,<target>=<level>    (both)
usage: POST /logging?reset                            (back to the start-up levels)

hint: level:  error|warn|info|debug|trace|off
hint: target: access, proxy, state, identity, ztunnel
`;

/** What the endpoint drives: src/logging/logger.ts Logging (and, with workers, their copies). */
export interface LogLevels {
  setLevels(level: LogLevel | null, targets?: Readonly<Record<string, LogLevel>>): void;
  levels(): LogFilter;
}

export interface LoggingAnswer {
  readonly status: number;
  readonly body: string;
  /** The filter now in force when it changed (to pass on to other threads). */
  readonly changed: LogFilter | null;
}

/** The filter in force, targets sorted (deterministic answers and dumps). */
function inForce(logging: LogLevels): LogFilter {
  const { level, targets } = logging.levels();
  return { level, targets: Object.fromEntries(Object.entries(targets).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) };
}

function current(logging: LogLevels): string {
  return `current log level is ${formatLogFilter(inForce(logging))}\n`;
}

export function changeLogLevel(logging: LogLevels, params: URLSearchParams, initial: LogFilter): LoggingAnswer {
  const level = params.get('level');
  if (params.has('reset')) {
    logging.setLevels(initial.level, initial.targets);
    if (level === null || level === '') return { status: 200, body: current(logging), changed: inForce(logging) };
  }
  if (level === null || level === '') return { status: 200, body: current(logging), changed: null };
  let filter: LogFilter;
  try {
    filter = parseLogFilter(level);
  } catch {
    return { status: 400, body: `Invalid level provided: ${level}\n${LOGGING_HELP}`, changed: null };
  }
  // a bare level among the items replaces the default; target items alone leave it as it is
  const hasBareLevel = level.split(',').some((item) => item.trim() !== '' && !item.includes('='));
  logging.setLevels(hasBareLevel ? filter.level : null, filter.targets);
  return { status: 200, body: current(logging), changed: inForce(logging) };
}
