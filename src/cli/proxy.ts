/**
 * `ztunnel-ts proxy`: parse the config (every bad variable reported, exit 1 before anything is
 * bound), check the snapshot (a bad or unreadable one: exit 1, nothing bound), start the app (data plane in worker threads), run until SIGTERM/SIGINT or POST
 * /quitquitquit, drain, exit 0. A signal during the drain cuts every connection at once and exits 1.
 */
import { availableParallelism } from 'node:os';
import { ConfigError } from '../config/issues';
import { parseConfig, type Config } from '../config/config';
import { isProxyError } from '../errors';
import { Logging } from '../logging/logger';
import { startNodeApp } from '../app';
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
  // the snapshot is checked before anything is bound, so a bad one is a clean start-up error
  const badSnapshot = await checkStartupSnapshot(config);
  if (badSnapshot !== null) {
    io.err(`ztunnel-ts: ${badSnapshot}\n`);
    return EXIT_INVALID;
  }
  const logging = new Logging(config.log);
  const log = logging.for('ztunnel');
  let app;
  try {
    app = await startNodeApp(config, logging);
  } catch (err) {
    if (isProxyError(err)) {
      log.error({ code: err.code }, err.message);
      return EXIT_INVALID;
    }
    throw err;
  }
  return new Promise<number>((resolve) => {
    let code = EXIT_OK;
    // however the shutdown began (signal or POST /quitquitquit), the command ends with it
    void app.closed.then(() => {
      log.info('shutdown complete');
      resolve(code);
    });
    hooks.onSignal((signal) => {
      if (app.stopping) {
        log.warn({ signal }, 'second signal: closing every connection and exiting now');
        code = EXIT_INVALID;
        void app.close();
        return;
      }
      log.info({ signal, deadlineMs: config.terminationDeadlineMs }, 'shutting down: draining connections');
      void app.shutdown();
    });
  });
}
