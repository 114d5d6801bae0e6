/**
 * Processes the bench starts (proxies, baselines, iperf3 servers, the origin, the entry hop):
 * each runs under coreutils `timeout`, which makes itself a process-group leader and kills the
 * child when the bench's declared lifetime runs out — so even a bench killed with SIGKILL leaves
 * nothing behind for longer than that. The real child's pid (the one whose /proc/<pid>/stat we
 * read for CPU and memory) is found as the child of the `timeout` process.
 *
 * ProcSet owns every process it started and kills their groups on stop(), on process exit, and on
 * SIGINT/SIGTERM — the one place cleanup happens, whatever way the run ends.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { delimiter, join } from 'node:path';

/** Clock ticks per second for /proc/<pid>/stat (getconf CLK_TCK is 100 on Linux x86-64/arm64). */
const CLK_TCK = 100;

export function findBinary(...names: string[]): string | null {
  const dirs = [...(process.env['PATH'] ?? '').split(delimiter), '/usr/local/sbin', '/usr/sbin', '/sbin'];
  for (const name of names) {
    for (const dir of dirs) {
      if (!dir) continue;
      try {
        accessSync(join(dir, name), constants.X_OK);
        return join(dir, name);
      } catch {
        // not here
      }
    }
  }
  return null;
}

/** user+system CPU seconds of a process, all its threads included; null if it is gone. */
export function cpuSeconds(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // the command name (field 2) may contain spaces: fields after it start past the last ')'
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(rest[11]) + Number(rest[12])) / CLK_TCK; // utime, stime (fields 14, 15)
  } catch {
    return null;
  }
}

/** A field of /proc/<pid>/status in KiB (VmRSS, VmHWM), or null. */
export function statusKiB(pid: number, field: 'VmRSS' | 'VmHWM'): number | null {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

/** Resets VmHWM to the current RSS (Linux >= 4.0, own processes), so a step's peak is its own. */
export function resetPeakRss(pid: number): void {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
  } catch {
    // not permitted here: the peak then covers the process's whole life (said in the report)
  }
}

function childOf(ppid: number): number | null {
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      const ppidField = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1];
      if (Number(ppidField) === ppid) return Number(d);
    } catch {
      // raced with an exiting process
    }
  }
  return null;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Resolves once host:port accepts a TCP connection; rejects after `timeoutMs`. */
export async function waitPort(host: string, port: number, timeoutMs: number): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((res) => {
      const s = connect({ host, port });
      s.once('connect', () => {
        s.destroy();
        res(true);
      });
      s.once('error', () => res(false));
    });
    if (ok) return;
    if (Date.now() > until) throw new Error(`nothing listens on ${host}:${port} after ${timeoutMs} ms`);
    await sleep(100);
  }
}

export interface Managed {
  readonly name: string;
  /** The real process (the child of `timeout`): what CPU and memory figures are read from. */
  readonly pid: number;
  readonly child: ChildProcess;
  /** stdout + stderr so far (bounded), for failure messages. */
  output(): string;
  /** Resolves with the first stdout line matching `re`; rejects if the process exits first or after `ms`. */
  line(re: RegExp, ms: number): Promise<string>;
  readonly exited: Promise<number | null>;
}

export interface SpawnSpec {
  readonly name: string;
  readonly bin: string;
  readonly args: readonly string[];
  readonly env?: NodeJS.ProcessEnv;
  readonly cwd?: string;
}

export class ProcSet {
  private readonly procs: Managed[] = [];
  private readonly onExit = (): void => this.killAllNow();
  private readonly onSignal = (sig: NodeJS.Signals): void => {
    this.killAllNow();
    process.exit(sig === 'SIGINT' ? 130 : 143);
  };

  constructor(private readonly lifetimeS: number) {
    process.on('exit', this.onExit);
    process.on('SIGINT', this.onSignal);
    process.on('SIGTERM', this.onSignal);
  }

  async spawn(spec: SpawnSpec): Promise<Managed> {
    const child = spawn('timeout', ['-k', '5', String(this.lifetimeS), spec.bin, ...spec.args], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: spec.env ?? process.env,
      cwd: spec.cwd,
    });
    let out = '';
    const waiters: Array<() => void> = [];
    const onData = (d: Buffer): void => {
      out = (out + d.toString()).slice(-20_000);
      waiters.forEach((w) => w());
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => {
      waiters.forEach((w) => w());
      r(code);
    }));
    let pid: number | null = null;
    for (let i = 0; i < 50 && pid === null && child.exitCode === null; i++) {
      pid = childOf(child.pid!);
      if (pid === null) await sleep(20);
    }
    const m: Managed = {
      name: spec.name,
      pid: pid ?? child.pid!,
      child,
      output: () => out,
      exited,
      line: (re, ms) => new Promise((res, rej) => {
        const check = (): void => {
          const hit = out.split('\n').find((l) => re.test(l));
          if (hit !== undefined) return done(() => res(hit));
          if (child.exitCode !== null || child.signalCode !== null) done(() => rej(new Error(`${spec.name} exited (${child.exitCode ?? child.signalCode}) before printing ${re}: ${out.slice(-800)}`)));
        };
        const timer = setTimeout(() => done(() => rej(new Error(`${spec.name}: no line matching ${re} within ${ms} ms: ${out.slice(-800)}`))), ms);
        const done = (f: () => void): void => {
          clearTimeout(timer);
          const i = waiters.indexOf(check);
          if (i >= 0) waiters.splice(i, 1);
          f();
        };
        waiters.push(check);
        check();
      }),
    };
    this.procs.push(m);
    return m;
  }

  /** SIGTERM to the real process (lets node write --cpu-prof files), then waits up to `ms`. */
  async terminate(m: Managed, ms: number): Promise<void> {
    try {
      process.kill(m.pid, 'SIGTERM');
    } catch {
      return;
    }
    await Promise.race([m.exited, sleep(ms)]);
  }

  /** SIGKILL to every process group we started (timeout leads each group). */
  killAllNow(): void {
    for (const m of this.procs) {
      try {
        process.kill(-m.child.pid!, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }

  async stop(): Promise<void> {
    this.killAllNow();
    await Promise.race([Promise.all(this.procs.map((m) => m.exited)), sleep(5000)]);
    process.off('exit', this.onExit);
    process.off('SIGINT', this.onSignal);
    process.off('SIGTERM', this.onSignal);
  }
}
