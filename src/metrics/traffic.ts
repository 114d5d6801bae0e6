/**
 * Istio's TCP traffic metrics for one thread (ZTUNNEL-FACTS "Metrics"; ztunnel's proxy/metrics.rs):
 *   istio_tcp_connections_opened_total   at open (response_flags always `-`)
 *   istio_tcp_connections_closed_total   at close, with the response_flags of the outcome
 *   istio_tcp_connections_failed_total   at close when the outcome was a failure (and for early
 *                                        failures that never had a full label set)
 *   istio_tcp_received_bytes_total       client → server bytes (the request direction)
 *   istio_tcp_sent_bytes_total           server → client bytes (the response direction)
 *   istio_tcp_sockets_open               live connections, by reporter
 * Both reporters count the same directions: "received" is what the client sent, as in ztunnel.
 *
 * Byte counters move while a long connection is still open without any per-chunk work: each live
 * connection hands over a reader of its relay's own counters, and the deltas since the last look
 * are added when the registry is scraped (the counters' collect hook) and once more at close.
 *
 * Invariants: `live` holds exactly the connections opened and not yet closed; for each, `flushed`
 * never exceeds what its reader reports, so every byte is added to the counters exactly once.
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import { TRAFFIC_LABEL_NAMES, withFlags, type Reporter, type TrafficLabels } from './labels';
import type { ResponseFlag } from './response-flags';

export interface ByteCounts {
  /** Client → server. */
  readonly received: number;
  /** Server → client. */
  readonly sent: number;
}

type Inc = { inc(value?: number): void };

/** One connection as the metrics see it. Created by TrafficMetrics.open(). */
export class TrafficConn {
  readonly labels: TrafficLabels;
  /** @internal */ reader: (() => ByteCounts) | null = null;
  /** @internal */ flushedReceived = 0;
  /** @internal */ flushedSent = 0;
  /** @internal */ closed = false;

  constructor(
    labels: TrafficLabels,
    /** @internal */ readonly receivedSeries: Inc,
    /** @internal */ readonly sentSeries: Inc,
  ) {
    this.labels = labels;
  }

  /** Adds what the counters moved since the last flush. */
  flushTo(total: ByteCounts): void {
    const r = total.received - this.flushedReceived;
    const s = total.sent - this.flushedSent;
    if (r > 0) {
      this.receivedSeries.inc(r);
      this.flushedReceived = total.received;
    }
    if (s > 0) {
      this.sentSeries.inc(s);
      this.flushedSent = total.sent;
    }
  }
}

export class TrafficMetrics {
  readonly opened: Counter<string>;
  readonly closed: Counter<string>;
  readonly failed: Counter<string>;
  readonly received: Counter<string>;
  readonly sent: Counter<string>;
  readonly socketsOpen: Gauge<string>;
  private readonly live = new Set<TrafficConn>();

  constructor(registry: Registry) {
    const labelNames = TRAFFIC_LABEL_NAMES as unknown as string[];
    const registers = [registry];
    // Scrape-time flush of the live relays' byte counters; both byte counters call it and the
    // second call finds nothing left to add.
    const flush = (): void => this.flush();
    this.opened = new Counter({ name: 'istio_tcp_connections_opened_total', help: 'The total number of TCP connections opened', labelNames, registers });
    this.closed = new Counter({ name: 'istio_tcp_connections_closed_total', help: 'The total number of TCP connections closed', labelNames, registers });
    this.failed = new Counter({ name: 'istio_tcp_connections_failed_total', help: 'The total number of TCP connections that failed (see response_flags)', labelNames, registers });
    this.received = new Counter({
      name: 'istio_tcp_received_bytes_total',
      help: 'The size of total bytes received during request in case of a TCP connection',
      labelNames,
      registers,
      collect: flush,
    });
    this.sent = new Counter({
      name: 'istio_tcp_sent_bytes_total',
      help: 'The size of total bytes sent during response in case of a TCP connection',
      labelNames,
      registers,
      collect: flush,
    });
    const live = this.live;
    this.socketsOpen = new Gauge({
      name: 'istio_tcp_sockets_open',
      help: 'The number of TCP connections currently open',
      labelNames: ['reporter'],
      registers,
      collect(): void {
        const n = { source: 0, destination: 0 };
        for (const c of live) n[c.labels.reporter as Reporter]++;
        this.set({ reporter: 'source' }, n.source);
        this.set({ reporter: 'destination' }, n.destination);
      },
    });
  }

  /** A connection with its full label set begins (ztunnel: ConnectionResult::new). */
  open(labels: TrafficLabels): TrafficConn {
    this.opened.inc(labels);
    // the byte series exist from the open on (at 0), as ztunnel creates them then
    const conn = new TrafficConn(labels, this.received.labels(labels), this.sent.labels(labels));
    conn.receivedSeries.inc(0);
    conn.sentSeries.inc(0);
    this.live.add(conn);
    return conn;
  }

  /** Bytes start flowing: `reader` returns the relay's running totals (cheap field reads). */
  attach(conn: TrafficConn, reader: () => ByteCounts): void {
    if (!conn.closed) conn.reader = reader;
  }

  /** The connection ended: last bytes, closed (and failed unless flags is `-`). Idempotent. */
  close(conn: TrafficConn, flags: ResponseFlag, final: ByteCounts | null): void {
    if (conn.closed) return;
    conn.closed = true;
    this.live.delete(conn);
    const total = final ?? conn.reader?.() ?? null;
    if (total !== null) conn.flushTo(total);
    conn.reader = null;
    const labels = withFlags(conn.labels, flags);
    this.closed.inc(labels);
    if (flags !== '-') this.failed.inc(labels);
  }

  /** A failure before a connection had its label set (TLS refused, bad request, no source). */
  failedEarly(labels: TrafficLabels): void {
    this.failed.inc(labels);
  }

  /** Adds every live connection's bytes since the last flush (scrape time). */
  flush(): void {
    for (const c of this.live) {
      if (c.reader !== null) c.flushTo(c.reader());
    }
  }

  get liveCount(): number {
    return this.live.size;
  }
}
