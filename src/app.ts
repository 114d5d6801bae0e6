/**
 * Composition root: builds the control plane and the data plane from one Config and hands live
 * objects down in deps bundles. No module-level state: everything hangs off the returned App.
 */
import type { Config } from './config/config';
import { startControlPlane, type ControlPlane } from './control-plane';
import type { Logging } from './logging/logger';

export interface App {
  readonly config: Config;
  readonly control: ControlPlane;
  /** Stop accepting, let connections finish until the deadline, then close the rest. */
  shutdown(): Promise<void>;
}

export async function startApp(config: Config, logging: Logging): Promise<App> {
  const control = await startControlPlane(config, { state: logging.for('state'), identity: logging.for('identity') });
  return {
    config,
    control,
    async shutdown(): Promise<void> {
      control.close();
    },
  };
}
