/**
 * Composition root: builds the control plane and the data plane from one Config and hands live
 * objects down in deps bundles. No module-level state: everything hangs off the returned App.
 */
import type { Config } from './config/config';
import { startControlPlane, type ControlPlane } from './control-plane';
import { startDataPlane, type DataPlane } from './data-plane';
import type { Logging } from './logging/logger';

export interface App {
  readonly config: Config;
  readonly control: ControlPlane;
  readonly data: DataPlane;
  /**
   * Drain (ZTUNNEL-FACTS "Shutdown"): stop accepting and send GOAWAY, let live connections
   * finish until the termination deadline, then close the rest. Resolves when everything is closed.
   */
  shutdown(): Promise<void>;
}

/** How often drain looks whether the last connection has gone (one timer for the whole drain). */
const DRAIN_POLL_MS = 100;

export async function startApp(config: Config, logging: Logging): Promise<App> {
  const control = await startControlPlane(config, { state: logging.for('state'), identity: logging.for('identity') });
  let data: DataPlane;
  try {
    data = await startDataPlane({ config, store: control.store, certs: control.certs, log: logging.for('proxy') });
  } catch (err) {
    control.close();
    throw err;
  }
  const log = logging.for('ztunnel');
  log.info({ node: config.nodeName, mode: config.proxyMode, local: control.store.current.localWorkloads().length }, 'proxy running');
  return {
    config,
    control,
    data,
    async shutdown(): Promise<void> {
      await data.drain();
      const deadline = Date.now() + config.terminationDeadlineMs;
      while (data.liveConnections() > 0 && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, DRAIN_POLL_MS));
      }
      const left = data.liveConnections();
      if (left > 0) log.info({ connections: left }, 'drain deadline reached: closing remaining connections');
      await data.close();
      control.close();
    },
  };
}
