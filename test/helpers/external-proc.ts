/**
 * Third-party daemons (nghttpx, tinyproxy) driven by interop tests: found on PATH (plus the sbin
 * directories, where Debian puts nghttpx), started under coreutils `timeout` so that even a test
 * process killed mid-run cannot leave them behind, ready once a line of their own log says so,
 * and stopped by the id of the process group the test created. Secrets go to a private temp dir.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';

/** Absolute path of an executable named `name`, or null when it is not installed. */
export function findBinary(name: string): string | null {
  const dirs = [...(process.env['PATH'] ?? '').split(delimiter), '/usr/local/sbin', '/usr/sbin', '/sbin'];
  for (const dir of dirs) {
    if (!dir) continue;
    const p = join(dir, name);
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      // not here
    }
  }
  return null;
}

/** A free TCP port on `host` (the OS picks it; the caller owns `host`, so nobody races for it). */
export function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, host, () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

/** A 0700 temp dir; write() creates 0600 files in it; remove() deletes it all. */
export interface SecretDir {
  readonly path: string;
  write(name: string, content: string): string;
  remove(): void;
}

export function secretDir(prefix: string): SecretDir {
  const path = mkdtempSync(join(tmpdir(), prefix));
  return {
    path,
    write(name, content) {
      const file = join(path, name);
      writeFileSync(file, content, { mode: 0o600 });
      return file;
    },
    remove: () => rmSync(path, { recursive: true, force: true }),
  };
}

export interface Daemon {
  /** Everything it wrote to stdout and stderr so far (for failure messages). */
  output(): string;
  /** SIGTERM, then SIGKILL to its whole process group if it is still there after `graceMs`. */
  stop(graceMs?: number): Promise<void>;
}

export interface DaemonSpec {
  readonly bin: string;
  readonly args: readonly string[];
  /** A line of its output that says it is serving. */
  readonly ready: RegExp;
  /** Hard upper bound on its life, whatever happens to the test (seconds). */
  readonly lifetimeS: number;
  /** How long to wait for `ready` (ms). */
  readonly readyTimeoutMs: number;
}

/**
 * Starts `spec.bin` under `timeout`, which makes itself a process-group leader, forwards our
 * SIGTERM to the daemon and kills it at `lifetimeS` on its own. Resolves once `ready` is seen;
 * rejects (after stopping it) on early exit or when `readyTimeoutMs` passes, with its output.
 */
export async function startDaemon(spec: DaemonSpec): Promise<Daemon> {
  const child: ChildProcess = spawn('timeout', ['-k', '2', String(spec.lifetimeS), spec.bin, ...spec.args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let exited = child.exitCode !== null;
  const exit = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  void exit.then(() => (exited = true));
  const stop = async (graceMs = 2000): Promise<void> => {
    if (exited || child.pid === undefined) return;
    child.kill('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), graceMs)));
    const tooLate = await Promise.race([exit.then(() => false), late]);
    clearTimeout(timer);
    // The group id is timeout's pid: the group holds only the daemon and its workers.
    if (tooLate) {
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        // already gone
      }
      await exit;
    }
  };
  const ready = new Promise<void>((resolve, reject) => {
    const onData = (b: Buffer): void => {
      out += b.toString();
      if (spec.ready.test(out)) resolve();
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.once('error', (err) => reject(new Error(`${spec.bin} did not start: ${err.message}`)));
    void exit.then(() => reject(new Error(`${spec.bin} exited (code ${String(child.exitCode)}) before it was ready:\n${out}`)));
    setTimeout(() => reject(new Error(`${spec.bin} not ready within ${spec.readyTimeoutMs} ms:\n${out}`)), spec.readyTimeoutMs).unref();
  });
  try {
    await ready;
  } catch (err) {
    await stop();
    throw err;
  }
  return { output: () => out, stop };
}
