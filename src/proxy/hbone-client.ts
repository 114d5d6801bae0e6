/**
 * HboneClient: opens HBONE tunnels — an HTTP/2 CONNECT stream over a pooled mTLS connection to
 * the destination's HBONE port (ZTUNNEL-FACTS "HBONE"). The client presents the SOURCE workload's
 * certificate and accepts only a server holding one of the expected identities.
 *
 * connect() resolves once the server answered 200; every other outcome rejects with a ProxyError:
 *   ERR_CONNECT      TCP to the next hop failed
 *   ERR_TLS          handshake failed, server identity not expected, or the server dropped us
 *                    right after the handshake (it refused our certificate)
 *   ERR_TIMEOUT      connection setup exceeded connectTimeoutMs (or a PING went unanswered)
 *   ERR_HBONE_STATUS the server answered non-200 (`status` on the error: 400, 401, 503, ...)
 *   ERR_HBONE_STREAM the stream or connection failed after the server accepted us
 *   ERR_POOL_CLOSED  the client is closed (draining)
 */
import * as http2 from 'node:http2';
import type * as net from 'node:net';
import { ProxyError } from '../errors';
import { formatSpiffe, type Identity } from '../identity/spiffe';
import type { WorkloadCert } from '../identity/workload-cert';
import { TlsContexts } from '../tls/contexts';
import { DEFAULT_H2_SETTINGS, checkH2Settings, type H2Settings } from './h2-settings';
import { HbonePool, type PoolStats, type PooledConnection } from './pool';

export interface HboneHeaders {
  /** The source workload's baggage (see baggage.ts). */
  readonly baggage?: string;
  /** `for="<original source ip:port>"` (see forwarded.ts). */
  readonly forwarded?: string;
  /** A fresh W3C traceparent (see traceparent.ts). */
  readonly traceparent?: string;
}

export interface HboneRequest {
  /** The SOURCE workload's certificate: presented as the client certificate. */
  readonly source: WorkloadCert;
  /** Local address to bind (the source pod IP in node mode); the OS picks when absent. */
  readonly sourceIp?: string;
  /** Identities the server may hold (its URI SAN must be one of them). */
  readonly expected: readonly Identity[];
  /** The destination's HBONE listener, podIP:15008. */
  readonly nextHop: { readonly ip: string; readonly port: number };
  /** CONNECT :authority, "podIP:targetPort". */
  readonly authority: string;
  readonly headers?: HboneHeaders;
  /**
   * In-pod mode: dial from the source pod's network namespace. `key` (the pod) is part of the
   * pool key, so connections of different pods are never shared; `socket` returns a connecting
   * TCP socket to host:port made inside that namespace.
   */
  readonly via?: DialVia;
}

export interface DialVia {
  readonly key: string;
  socket(host: string, port: number): net.Socket;
}

export interface HboneTunnel {
  /** The CONNECT stream: write to send, read to receive, end() to half-close. */
  readonly stream: http2.ClientHttp2Stream;
  readonly status: number;
  readonly responseHeaders: http2.IncomingHttpHeaders & http2.IncomingHttpStatusHeader;
}

export interface HboneClientOptions {
  readonly h2?: H2Settings;
  readonly maxStreamsPerConnection?: number;
  readonly unusedReleaseMs?: number;
  readonly connectTimeoutMs?: number;
  /** Shared per-thread TLS context cache; one is created when absent. */
  readonly contexts?: TlsContexts;
  /** Period of the pool's coarse timer; 0 disables it (tests drive tick()). Default 1000. */
  readonly tickMs?: number;
  readonly now?: () => number;
  /** Called with the TCP socket under each new HBONE connection once connected (keepalive). */
  readonly onTcpConnect?: (tcp: net.Socket) => void;
}

export class HboneStatusError extends ProxyError {
  constructor(readonly status: number, message: string) {
    super('ERR_HBONE_STATUS', message);
  }
}

const DEFAULT_MAX_STREAMS = 100;
const DEFAULT_UNUSED_RELEASE_MS = 5 * 60_000;
const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;

/**
 * Until the caller attaches its own, a tunnel's stream keeps this listener so an 'error' emitted
 * between resolution and the caller's relay setup cannot crash the process; the failure is still
 * visible to the caller through 'close' and rstCode.
 */
function swallow(): void {}

function sameOrder(ids: readonly Identity[]): string {
  return ids.map(formatSpiffe).sort().join(',');
}

export class HboneClient {
  readonly pool: HbonePool;
  private readonly contexts: TlsContexts;

  constructor(opts: HboneClientOptions = {}) {
    const h2 = checkH2Settings(opts.h2 ?? DEFAULT_H2_SETTINGS);
    this.contexts = opts.contexts ?? new TlsContexts();
    this.pool = new HbonePool({
      h2,
      maxStreamsPerConnection: opts.maxStreamsPerConnection ?? DEFAULT_MAX_STREAMS,
      unusedReleaseMs: opts.unusedReleaseMs ?? DEFAULT_UNUSED_RELEASE_MS,
      connectTimeoutMs: opts.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
      tickMs: opts.tickMs,
      now: opts.now,
      onTcpConnect: opts.onTcpConnect,
    });
  }

  async connect(req: HboneRequest): Promise<HboneTunnel> {
    if (req.expected.length === 0) {
      throw new ProxyError('ERR_TLS_NO_EXPECTED_SANS', `HBONE to ${req.authority}: no expected server identity`);
    }
    const key = [
      formatSpiffe(req.source.identity),
      req.source.serial,
      sameOrder(req.expected),
      `${req.nextHop.ip}:${req.nextHop.port}`,
      req.sourceIp ?? '',
      req.via?.key ?? '',
    ].join('|');
    const via = req.via;
    const spec = () => ({
      host: req.nextHop.ip,
      port: req.nextHop.port,
      localAddress: req.sourceIp,
      socket: via ? () => via.socket(req.nextHop.ip, req.nextHop.port) : undefined,
      tls: this.contexts.clientTlsOptions(req.source, req.expected),
    });
    const headers: http2.OutgoingHttpHeaders = { ':method': 'CONNECT', ':authority': req.authority };
    const h = req.headers;
    if (h?.baggage) headers['baggage'] = h.baggage;
    if (h?.forwarded) headers['forwarded'] = h.forwarded;
    if (h?.traceparent) headers['traceparent'] = h.traceparent;

    // A connection can receive GOAWAY between being picked and the request going out: then it is
    // retired and the request tried once more on another.
    for (let attempt = 0; ; attempt++) {
      const conn = await this.pool.acquire(key, spec);
      let stream: http2.ClientHttp2Stream;
      try {
        stream = conn.session.request(headers, { endStream: false });
      } catch (err) {
        this.pool.release(conn);
        this.pool.retire(conn);
        if (attempt === 0) continue;
        throw conn.classify(err);
      }
      stream.on('error', swallow);
      stream.once('close', () => this.pool.release(conn));
      return awaitResponse(stream, conn, req.authority);
    }
  }

  stats(): PoolStats {
    return this.pool.stats();
  }

  /** Drain: GOAWAY on every pooled connection, open tunnels finish; new connect() calls fail. */
  close(): Promise<void> {
    return this.pool.close();
  }

  /** Shutdown: cuts every connection now. */
  destroy(): void {
    this.pool.destroy();
  }
}

function awaitResponse(stream: http2.ClientHttp2Stream, conn: PooledConnection, authority: string): Promise<HboneTunnel> {
  return new Promise((resolve, reject) => {
    const cleanup = (): void => {
      stream.off('response', onResponse);
      stream.off('error', onError);
      stream.off('close', onClose);
    };
    const onResponse = (headers: http2.IncomingHttpHeaders & http2.IncomingHttpStatusHeader): void => {
      cleanup();
      const status = Number(headers[':status']);
      if (status === 200) {
        stream.once('aborted', () => cancelAsError(stream, conn));
        return resolve({ stream, status, responseHeaders: headers });
      }
      // Reject once the stream is gone, so that a refused connect() holds no pool slot any more.
      const err = new HboneStatusError(status, `HBONE CONNECT ${authority} via ${conn.hop} was answered ${status}`);
      stream.once('close', () => reject(err));
      stream.close(http2.constants.NGHTTP2_NO_ERROR);
    };
    const onError = (err: Error): void => {
      cleanup();
      reject(conn.classify(err));
    };
    const onClose = (): void => {
      cleanup();
      reject(conn.classify(new Error(`stream closed before a response (RST_STREAM code ${stream.rstCode ?? 'none'})`)));
    };
    stream.once('response', onResponse);
    stream.once('error', onError);
    stream.once('close', onClose);
  });
}

/**
 * A tunnel cut because its connection went away (the peer proxy died, the session was destroyed)
 * or reset by the peer with CANCEL closes with no 'error' — Node even emits 'end' and 'finish' —
 * so a relay would pass it on as a clean EOF. Make it an error, so the client is reset as ztunnel
 * does. 'aborted' comes before those events; a stream we destroyed ourselves is already destroyed.
 */
function cancelAsError(stream: http2.ClientHttp2Stream, conn: PooledConnection): void {
  if (stream.destroyed || stream.rstCode !== http2.constants.NGHTTP2_CANCEL) return;
  stream.destroy(new ProxyError('ERR_HBONE_STREAM', `HBONE tunnel via ${conn.hop} was cancelled before it finished (its connection closed)`));
}
