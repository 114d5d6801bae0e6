/**
 * The Prometheus endpoint (:15020, ZTUNNEL-FACTS "Metrics"): `GET /metrics` and
 * `GET /stats/prometheus` (the path Istio's scrape annotations use). OpenMetrics text when the
 * client's Accept names `application/openmetrics-text` (as ztunnel decides), Prometheus text 0.0.4
 * otherwise; gzip when Accept-Encoding allows it (ztunnel's compression layer).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { gzipSync } from 'node:zlib';
import { pathOf, send } from '../admin/http';
import { CONTENT_TYPES, negotiateFormat, type MetricsJson, type ProxyMetrics } from './registry';

export const METRICS_PATHS: readonly string[] = ['/metrics', '/stats/prometheus'];

export interface MetricsEndpointDeps {
  readonly metrics: ProxyMetrics;
  /** Other threads' registries (the worker pool, later); none today. */
  readonly others?: () => Promise<readonly MetricsJson[]>;
}

/** True when Accept-Encoding allows gzip (a q=0 entry forbids it). */
export function acceptsGzip(header: string | undefined): boolean {
  if (!header) return false;
  for (const entry of header.split(',')) {
    const [coding, ...params] = entry.split(';').map((p) => p.trim().toLowerCase());
    if (coding !== 'gzip' && coding !== '*') continue;
    const q = params.find((p) => p.startsWith('q='));
    return q === undefined || Number(q.slice(2)) > 0;
  }
  return false;
}

export function metricsHandler(deps: MetricsEndpointDeps): (req: IncomingMessage, res: ServerResponse) => Promise<void> {
  return async (req, res) => {
    if (!METRICS_PATHS.includes(pathOf(req))) return send(res, 404, 'not found: metrics are at /metrics and /stats/prometheus\n');
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(res, 405, `method ${req.method ?? ''} not allowed: use GET\n`, { allow: 'GET' });
    const format = negotiateFormat(req.headers.accept);
    const others = deps.others ? await deps.others() : [];
    const text = await deps.metrics.render(format, others);
    const headers: Record<string, string> = { 'content-type': CONTENT_TYPES[format], vary: 'Accept, Accept-Encoding' };
    if (acceptsGzip(req.headers['accept-encoding'])) {
      headers['content-encoding'] = 'gzip';
      return send(res, 200, gzipSync(text), headers);
    }
    send(res, 200, text, headers);
  };
}
