/**
 * Composition root: builds the control plane, the data plane and the node's observability
 * (readiness :15021, stats :15020, admin :15000) from one Config, and hands live objects down in
 * deps bundles. No module-level state: everything hangs off the returned App.
 *
 * Start order, as ztunnel: readiness first (so a probe sees "not ready" rather than nothing), then
 * the snapshot and certificates, the data plane, then stats and admin. Readiness tasks:
 * `snapshot` (loaded), `certificates` (every local workload's first certificate issued), `proxy`
 * (HBONE listeners match the snapshot); with the worker pool, `proxy worker <n>` while a dead
 * worker's replacement starts.
 *
 * Data plane: startApp runs it on the main thread (in-process tests, the demo); startNodeApp (the
 * `proxy` command) runs it in `config.numWorkerThreads` worker threads (src/workers/supervisor.ts)
 * and falls back to the main thread, with a warning, when the addon that gives the workers their
 * SO_REUSEPORT listeners cannot be loaded.
 *
 * Metrics: one ProxyMetrics (registry) for this thread, created here and passed down; with
 * workers, each scrape merges the workers' registries into it (src/metrics/registry.ts).
 */
import type { Config } from './config/config';
import type { PreparedSnapshot } from './state/store';
import { startControlPlane, localIdentities, type ControlPlane, type ControlPlaneSeams } from './control-plane';
import { startDataPlane, type DataPlane } from './data-plane';
import { drainWithinDeadline } from './drain-deadline';
import type { Logging } from './logging/logger';
import { AccessLog } from './logging/access-log';
import type { BoundAddress } from './net/listener';
import { adminHandler } from './admin/admin-server';
import { buildConfigDump } from './admin/config-dump';
import { startHttpEndpoint, type HttpEndpoint } from './admin/http';
import { Readiness, readinessHandler } from './admin/readiness';
import { ConnObserver } from './metrics/conn-observer';
import { registerControlPlaneMetrics, registerPoolMetrics } from './metrics/control-plane';
import { ProxyMetrics } from './metrics/registry';
import { metricsHandler } from './metrics/server';
import { buildInfo } from './cli/version';
import { loadNative } from './native/addon';
import { WorkerPool } from './workers/supervisor';
import type { LogLevels } from './admin/logging';
import type { InpodPod, PodState } from './inpod/pod';
import { ZdsClient } from './inpod/zds-client';

/** The part of the data plane the app drives, whichever thread runs it. */
interface DataRunner {
  addresses(): Map<string, BoundAddress>;
  applyPods(pods: readonly InpodPod[]): Promise<Record<string, PodState>>;
  /** In-pod mode: each pod's current state (a snapshot swap can bring pending pods up). */
  podStates(): Record<string, PodState>;
  settled(): Promise<void>;
  drain(): Promise<void>;
  liveConnections(): number | Promise<number>;
  close(): Promise<void>;
}

export interface AppBase {
  readonly config: Config;
  readonly control: ControlPlane;
  /** The data-plane listeners ("socks5", "hbone <ip>"), on whichever thread(s) they run. */
  addresses(): Map<string, BoundAddress>;
  readonly metrics: ProxyMetrics;
  readonly readiness: Readiness;
  readonly observer: ConnObserver;
  /** Where admin, stats and readiness listen (port 0 in the config = picked at bind). */
  readonly servers: { readonly admin: BoundAddress; readonly stats: BoundAddress; readonly readiness: BoundAddress };
  /**
   * Drain (ZTUNNEL-FACTS "Shutdown"): readiness goes to 500, listeners stop accepting, HBONE
   * connections get GOAWAY, live connections may finish until the termination deadline, then the
   * rest are closed. Idempotent: every call returns the same promise. `signalAt` (Date.now() ms):
   * when the signal came, if before this call (one during start-up), so the deadline counts from it.
   */
  shutdown(signalAt?: number): Promise<void>;
  /** Cut everything now (a second signal), also in the middle of a drain. */
  close(): Promise<void>;
  /** True once a drain or close has begun. */
  readonly stopping: boolean;
  /** Settles when the app has shut down, whichever way (signal, POST /quitquitquit, close). */
  readonly closed: Promise<void>;
}

/** Main-thread data plane (startApp). */
export interface App extends AppBase {
  readonly data: DataPlane;
}

/** Worker-thread data plane (startNodeApp): `pool` is null when it fell back to the main thread. */
export interface NodeApp extends AppBase {
  readonly data: DataPlane | null;
  readonly pool: WorkerPool | null;
}

/**
 * Live stand-ins for tests, passed down to the part that uses them; production passes none. A
 * gated certificate issuer, for instance, holds the `certificates` readiness task open.
 */
export type AppSeams = ControlPlaneSeams;

/** Runs the data plane on this thread (in-process tests, the demo). */
export async function startApp(config: Config, logging: Logging, seams: AppSeams = {}): Promise<App> {
  const app = await buildApp(config, logging, false, seams);
  return app as App;
}

/**
 * Runs the data plane in worker threads (the `proxy` command); see the file comment for the
 * fallback. `snapshot`: the configured snapshot as the start-up check already built it, so it is
 * not parsed twice (src/cli/snapshot-file.ts).
 */
export function startNodeApp(config: Config, logging: Logging, opts: { readonly snapshot?: PreparedSnapshot | null } = {}): Promise<NodeApp> {
  return buildApp(config, logging, true, {}, opts.snapshot ?? null);
}

async function buildApp(config: Config, logging: Logging, workers: boolean, seams: AppSeams = {}, prepared: PreparedSnapshot | null = null): Promise<NodeApp> {
  const log = logging.for('ztunnel');
  const version = buildInfo();
  const readiness = new Readiness();
  const snapshotLoaded = readiness.register('snapshot');
  const certsIssued = readiness.register('certificates');
  const listenersUp = readiness.register('proxy');
  const endpoints: HttpEndpoint[] = [];
  const onHttpError = (err: unknown): void => log.error({ err: (err as Error)?.message ?? String(err) }, 'admin/stats/readiness request failed');
  const closeEndpoints = (): Promise<unknown> => Promise.all(endpoints.splice(0).map((e) => e.close()));

  endpoints.push(await startHttpEndpoint('readiness', config.readinessAddr, readinessHandler(readiness), onHttpError));
  let control: ControlPlane;
  try {
    control = await startControlPlane(config, { state: logging.for('state'), identity: logging.for('identity') }, seams, prepared);
  } catch (err) {
    await closeEndpoints();
    throw err;
  }
  snapshotLoaded();

  const metrics = new ProxyMetrics({ version: version.version });
  registerControlPlaneMetrics(metrics.registry, {
    snapshotVersion: () => control.store.current.version,
    reloadFailures: () => control.store.reloadFailures,
    certs: () => control.certs.states(),
  });
  const observer = new ConnObserver({
    traffic: metrics.traffic,
    access: new AccessLog(logging.for('access')),
    snapshot: () => control.store.current,
    clusterId: config.clusterId,
    network: config.network,
  });

  let data: DataPlane | null = null;
  let pool: WorkerPool | null = null;
  try {
    pool = workers ? await startPool(config, control, logging, readiness) : null;
    if (pool === null) {
      data = await startDataPlane({
        config,
        store: control.store,
        certs: control.certs,
        log: logging.for('proxy'),
        events: observer.inbound,
        outboundObserver: observer.outbound,
      });
      registerPoolMetrics(metrics.registry, data.client);
    }
  } catch (err) {
    control.close();
    await closeEndpoints();
    throw err;
  }
  const runner: DataRunner = pool ?? data!;

  // In-pod mode: pods come from istio-cni over ZDS; readiness waits for its first snapshot.
  let zds: ZdsClient | null = null;
  if (config.proxyMode === 'inpod') {
    const synced = readiness.register('zds snapshot');
    zds = new ZdsClient({ native: loadNative(), path: config.inpodUds, log: logging.for('inpod'), apply: (pods) => runner.applyPods(pods), states: () => runner.podStates(), onSynced: synced });
    zds.start();
  }

  let shutdownStarted: Promise<void> | null = null;
  let closing: Promise<void> | null = null;
  let forced = false;
  let markClosed!: () => void;
  const closed = new Promise<void>((resolve) => (markClosed = resolve));
  const stopWatchingCerts = watchLocalCerts(control, certsIssued);

  const closeAll = (): Promise<void> =>
    (closing ??= (async () => {
      readiness.markDraining();
      stopWatchingCerts();
      await runner.close();
      // after the data planes let the pods go: it closes their netns fds
      await zds?.close();
      control.close();
      await closeEndpoints();
      markClosed();
    })());

  const shutdown = (signalAt?: number): Promise<void> =>
    (shutdownStarted ??= (async () => {
      readiness.markDraining();
      await drainWithinDeadline(runner, config.terminationDeadlineMs, { log, forced: () => forced, startedAt: signalAt });
      await closeAll();
    })());

  try {
    endpoints.push(await startHttpEndpoint('stats', config.statsAddr, metricsHandler({ metrics, others: pool ? () => pool.metrics() : undefined }), onHttpError));
    endpoints.push(
      await startHttpEndpoint(
        'admin',
        config.adminAddr,
        adminHandler({
          configDump: () =>
            buildConfigDump({
              config,
              snapshot: () => control.store.current,
              certs: () => control.certs.states(),
              connections: pool ? () => pool.connections() : () => observer.connections(),
              workloadState: zds ? () => zds!.workloadState() : undefined,
              version: { version: version.version, name: version.name, nodeVersion: version.node },
            }),
          logging: pool ? forwardLevels(logging, pool) : logging,
          initialLog: { level: config.log.level, targets: config.log.targets },
          quit: () => {
            log.info('POST /quitquitquit: shutting down');
            void shutdown();
          },
        }),
        onHttpError,
      ),
    );
  } catch (err) {
    await closeAll();
    throw err;
  }
  const [readinessEp, statsEp, adminEp] = endpoints as [HttpEndpoint, HttpEndpoint, HttpEndpoint];
  void runner.settled().then(listenersUp);

  log.info(
    { node: config.nodeName, mode: config.proxyMode, workers: pool?.size ?? 0, local: control.store.current.localWorkloads().length, admin: adminEp.address.text, stats: statsEp.address.text, readiness: readinessEp.address.text },
    'proxy running',
  );
  return {
    config,
    control,
    data,
    pool,
    addresses: () => runner.addresses(),
    metrics,
    readiness,
    observer,
    servers: { admin: adminEp.address, stats: statsEp.address, readiness: readinessEp.address },
    shutdown,
    close(): Promise<void> {
      forced = true;
      return closeAll();
    },
    get stopping(): boolean {
      return shutdownStarted !== null || closing !== null;
    },
    closed,
  };
}

/**
 * Calls `done` once every local workload identity of the current snapshot has a usable
 * certificate; checked at start, on every issuance and on every snapshot swap (no timer).
 * Returns the function that stops watching.
 */
function watchLocalCerts(control: ControlPlane, done: () => void): () => void {
  let finished = false;
  const check = (): void => {
    if (finished) return;
    const want = localIdentities(control.store.current);
    for (const id of want.values()) if (control.certs.get(id) === null) return;
    finished = true;
    stop();
    done();
  };
  const offCerts = control.certs.subscribe(check);
  const offStore = control.store.subscribe(check);
  const stop = (): void => {
    offCerts();
    offStore();
  };
  check();
  return stop;
}

/** The worker pool, or null (logged) when the addon that gives workers SO_REUSEPORT listeners is missing. */
async function startPool(config: Config, control: ControlPlane, logging: Logging, readiness: Readiness): Promise<WorkerPool | null> {
  const log = logging.for('ztunnel');
  let native;
  try {
    native = loadNative();
  } catch (err) {
    log.warn({ err: (err as Error).message }, 'native addon unavailable: no SO_REUSEPORT listeners for worker threads, running the data plane on the main thread');
    return null;
  }
  const pool = await WorkerPool.start({ config, store: control.store, certs: control.certs, log, readiness, native });
  log.info({ workers: pool.size }, 'data plane running in worker threads');
  return pool;
}

/** POST /logging changes this thread's levels and every worker's. */
function forwardLevels(logging: Logging, pool: WorkerPool): LogLevels {
  return {
    setLevels(level, targets = {}) {
      logging.setLevels(level, targets);
      pool.setLogLevels(level, targets);
    },
    levels: () => logging.levels(),
  };
}
