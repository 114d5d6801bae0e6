/**
 * `ztunnel-ts proxy`: parse the config (every bad variable reported, exit 1 before anything is
 * bound), check the snapshot (a bad or unreadable one: exit 1, nothing bound), start the app
 * (data plane in worker threads) with the snapshot the check built, run until SIGTERM/SIGINT or
 * POST /quitquitquit, drain, exit 0.
 *
 * Signals, as ztunnel's signal.rs: handlers are installed before start-up (before the snapshot
 * check), so a signal while the snapshot is checked ends the command (exit 0) before anything is
 * bound, and one while the app starts stops it cleanly once started (exit 0), with the drain
 * deadline counted from the signal; never the default action that kills the process. A second SIGINT after a first SIGINT (a double Ctrl+C) exits 0 at once, without waiting
 * for the drain or a graceful close; any other repeated signal is ignored (logged), as ztunnel
 * stops listening for signals once its shutdown has begun.
 */
import { availableParallelism } from 'node:os';
import { ConfigError } from '../config/issues';
import { parseConfig, type Config } from '../config/config';
import { isProxyError } from '../errors';
import { Logging } from '../logging/logger';
import { startNodeApp, type NodeApp } from '../app';
import { EXIT_INVALID, EXIT_OK, type CliIo } from './io';
import { checkStartupSnapshot } from './snapshot-file';

export interface ProcessHooks {
  /** Installs a handler for SIGTERM/SIGINT (main.ts owns the process object). */
  readonly onSignal: (handler: (signal: string) => void) => void;
}

export async function proxyCommand(io: CliIo, hooks: ProcessHooks): Promise<number> {
  let config: Config;
  try {
    config = parseConfig(io.env, { logicalCpus: availableParallelism() });
  } catch (err) {
    if (err instanceof ConfigError) {
      io.err(`ztunnel-ts: ${err.message}\n`);
      return EXIT_INVALID;
    }
    throw err;
  }
  const logging = new Logging(config.log);
  const log = logging.for('ztunnel');
  return new Promise<number>((resolve, reject) => {
    let app: NodeApp | null = null;
    let first: string | null = null;
    /** Date.now() of the first signal: the drain deadline counts from it, not from the end of start-up. */
    let signalAt = 0;
    let exited = false;
    const exit = (code: number): void => {
      exited = true;
      resolve(code);
    };
    const drain = (started: NodeApp, signal: string): void => {
      log.info({ signal, deadlineMs: config.terminationDeadlineMs }, 'shutting down: draining connections');
      void started.shutdown(signalAt);
    };
    // before the snapshot check: reading and indexing a large snapshot takes seconds, and a signal
    // then must not kill the process by the default action
    hooks.onSignal((signal) => {
      if (exited) return;
      if (first === null) {
        first = signal;
        signalAt = Date.now();
        if (app) drain(app, signal);
        else log.info({ signal }, 'signal during start-up: shutting down once started');
        return;
      }
      if (signal === 'SIGINT' && first === 'SIGINT') {
        // the operator insists: exit now; the caller exits the process, which ends every connection
        log.warn({ signal }, 'second SIGINT: exiting now');
        if (app) void app.close();
        exit(EXIT_OK);
        return;
      }
      log.info({ signal, first }, 'already shutting down: signal ignored');
    });
    const start = async (): Promise<void> => {
      // the snapshot is checked before anything is bound, so a bad one is a clean start-up error;
      // the snapshot it builds is the one the control plane starts with (not parsed twice)
      const checked = await checkStartupSnapshot(config);
      if (!checked.ok) {
        io.err(`ztunnel-ts: ${checked.message}\n`);
        if (!exited) exit(EXIT_INVALID);
        return;
      }
      // the parse is synchronous: a signal sent during it is handled only at the event loop's next
      // poll for I/O. The check may have resumed from a poll (the file read), so the first
      // setImmediate can run before any new poll; the second runs after one. Then a signal sent
      // during the check is seen here, before anything is bound, not once the app has started.
      await new Promise<void>((r) => setImmediate(r));
      await new Promise<void>((r) => setImmediate(r));
      if (exited) return; // a double Ctrl+C during the check
      if (first !== null) {
        // nothing is bound yet: nothing to drain
        log.info({ signal: first }, 'shutdown complete (signal during start-up, before anything was bound)');
        exit(EXIT_OK);
        return;
      }
      const started = await startNodeApp(config, logging, { snapshot: checked.prepared });
      app = started;
      // however the shutdown began (signal or POST /quitquitquit), the command ends with it
      void started.closed.then(() => {
        log.info('shutdown complete');
        if (!exited) exit(EXIT_OK);
      });
      if (exited) void started.close();
      else if (first !== null) drain(started, first);
    };
    start().catch((err: unknown) => {
      if (isProxyError(err)) {
        log.error({ code: err.code }, err.message);
        exit(EXIT_INVALID);
        return;
      }
      reject(err);
    });
  });
}
