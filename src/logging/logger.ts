/**
 * Per-thread logging on pino. Each thread (main and every worker) builds its own Logging from the
 * config; nothing is global. Log lines carry a `target` (ztunnel's tracing target: `access`,
 * `proxy`, `state`, ...) so per-target levels (RUST_LOG=info,access=debug) and runtime changes
 * (POST /logging) apply to one area at a time.
 *
 * Formats, as ztunnel: `plain` (default) prints `<time>\t<level>\t<target>\t<message>\tk=v ...`
 * with string values quoted as ztunnel's tracing output does;
 * `json` prints pino's JSON lines for machines.
 */
import pino, { type DestinationStream, type Level, type Logger } from 'pino';

export type LogLevelName = 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'off';

export interface LoggingOptions {
  readonly format: 'plain' | 'json';
  readonly level: LogLevelName;
  /** target → level overrides. */
  readonly targets?: Readonly<Record<string, LogLevelName>>;
  /** Where lines go; stdout by default. Tests pass a collecting stream. */
  readonly destination?: DestinationStream;
}

const PINO_LEVEL: Record<LogLevelName, Level | 'silent'> = {
  trace: 'trace', debug: 'debug', info: 'info', warn: 'warn', error: 'error', off: 'silent',
};
const LEVEL_LABEL: Record<number, string> = { 10: 'trace', 20: 'debug', 30: 'info', 40: 'warn', 50: 'error', 60: 'error' };

/**
 * Fields ztunnel records with `%` (Display), which its plain format prints bare: socket addresses
 * (`src.addr`, `dst.addr`, `dst.hbone_addr`, `address`). Every other string is recorded as a str
 * and printed with Debug, i.e. always quoted (its telemetry.rs: record_str → `{name}={value:?}`).
 */
const DISPLAY_FIELD = /(^|[._])(addr|address)$/;

/** One field value as ztunnel's plain format prints it: strings quoted, numbers/bools/addresses bare. */
function plainValue(key: string, v: unknown): string {
  if (typeof v === 'string') return DISPLAY_FIELD.test(key) ? v : JSON.stringify(v);
  return JSON.stringify(v) ?? String(v);
}

/** Renders one pino JSON record in ztunnel's plain layout (see plainValue for quoting). */
export function formatPlain(record: Record<string, unknown>): string {
  const { time, level, target, msg, pid: _pid, hostname: _host, ...fields } = record;
  const parts = [
    new Date(typeof time === 'number' ? time : Date.now()).toISOString(),
    LEVEL_LABEL[level as number] ?? String(level),
    typeof target === 'string' ? target : 'ztunnel',
    typeof msg === 'string' ? msg : '',
  ];
  const kv: string[] = [];
  for (const [k, v] of Object.entries(fields)) {
    if (v === undefined) continue;
    kv.push(`${k}=${plainValue(k, v)}`);
  }
  if (kv.length > 0) parts.push(kv.join(' '));
  return parts.join('\t') + '\n';
}

function plainDestination(out: DestinationStream): DestinationStream {
  return {
    write(line: string): void {
      let rec: Record<string, unknown>;
      try {
        rec = JSON.parse(line) as Record<string, unknown>;
      } catch {
        out.write(line);
        return;
      }
      out.write(formatPlain(rec));
    },
  };
}

export class Logging {
  readonly root: Logger;
  private readonly children = new Map<string, Logger>();
  private targetLevels: Map<string, LogLevelName>;
  private defaultLevel: LogLevelName;

  constructor(opts: LoggingOptions) {
    const out = opts.destination ?? pino.destination({ dest: 1, sync: true });
    this.defaultLevel = opts.level;
    this.targetLevels = new Map(Object.entries(opts.targets ?? {}));
    this.root = pino(
      { level: 'trace', base: undefined, timestamp: pino.stdTimeFunctions.epochTime },
      opts.format === 'json' ? out : plainDestination(out),
    );
    this.root.level = PINO_LEVEL[opts.level];
  }

  /** The logger for one target; created once and reused, so call this at construction, not per connection. */
  for(target: string): Logger {
    let child = this.children.get(target);
    if (child === undefined) {
      child = this.root.child({ target });
      child.level = PINO_LEVEL[this.targetLevels.get(target) ?? this.defaultLevel];
      this.children.set(target, child);
    }
    return child;
  }

  /** Runtime change (POST /logging): a default level and/or per-target levels. */
  setLevels(level: LogLevelName | null, targets: Readonly<Record<string, LogLevelName>> = {}): void {
    if (level !== null) {
      this.defaultLevel = level;
      this.root.level = PINO_LEVEL[level];
      // a new default resets per-target overrides, as `RUST_LOG`-style reconfiguration does in ztunnel
      this.targetLevels = new Map();
    }
    for (const [t, l] of Object.entries(targets)) this.targetLevels.set(t, l);
    for (const [t, child] of this.children) {
      child.level = PINO_LEVEL[this.targetLevels.get(t) ?? this.defaultLevel];
    }
  }

  levels(): { level: LogLevelName; targets: Record<string, LogLevelName> } {
    return { level: this.defaultLevel, targets: Object.fromEntries(this.targetLevels) };
  }
}
