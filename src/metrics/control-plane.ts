/**
 * Metrics read from live objects when scraped (collect hooks: no timers, no bookkeeping on the
 * paths that change them):
 *   ztunnel_snapshot_version                 version of the snapshot in force
 *   ztunnel_snapshot_reload_failures_total   bad snapshot files seen (the last good one stays)
 *   istio_cert_expiry_seconds{identity}      Unix time when each workload certificate expires
 *                                            (ztunnel's name and meaning)
 *   ztunnel_pool_connections / _streams      pooled HBONE HTTP/2 connections and open streams
 * The first three belong to the main thread (control plane); the pool ones to whichever thread
 * owns the pool, so that summing across workers gives the node's totals.
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import type { CertStatus } from '../identity/cert-manager';

export interface ControlPlaneSources {
  snapshotVersion(): number;
  reloadFailures(): number;
  certs(): readonly CertStatus[];
}

export function registerControlPlaneMetrics(registry: Registry, src: ControlPlaneSources): void {
  const registers = [registry];
  new Gauge({
    name: 'ztunnel_snapshot_version',
    help: 'Version of the workloads/services/policies snapshot in force (0 = none loaded yet)',
    registers,
    collect(): void {
      this.set(src.snapshotVersion());
    },
  });
  let reported = 0;
  new Counter({
    name: 'ztunnel_snapshot_reload_failures_total',
    help: 'Snapshot loads or reloads that failed validation or could not be read (the last good snapshot stays in force)',
    registers,
    collect(): void {
      const now = src.reloadFailures();
      if (now > reported) this.inc(now - reported);
      reported = Math.max(reported, now);
    },
  });
  new Gauge({
    name: 'istio_cert_expiry_seconds',
    help: 'Unix timestamp when the workload certificate expires',
    labelNames: ['identity'],
    registers,
    aggregator: 'max',
    collect(): void {
      // identities that left the node disappear from the output
      this.reset();
      for (const s of src.certs()) if (s.cert) this.set({ identity: s.id }, Math.floor(s.cert.notAfter.getTime() / 1000));
    },
  });
}

export interface PoolSource {
  stats(): { readonly connections: number; readonly streams: number };
}

export function registerPoolMetrics(registry: Registry, pool: PoolSource): void {
  const registers = [registry];
  new Gauge({
    name: 'ztunnel_pool_connections',
    help: 'Pooled HBONE HTTP/2 connections (outbound)',
    registers,
    collect(): void {
      this.set(pool.stats().connections);
    },
  });
  new Gauge({
    name: 'ztunnel_pool_streams',
    help: 'Open HBONE streams (tunnels) on pooled connections',
    registers,
    collect(): void {
      this.set(pool.stats().streams);
    },
  });
}
