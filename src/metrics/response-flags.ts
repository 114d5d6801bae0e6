/**
 * The one table from a failure to its `response_flags` label value (ZTUNNEL-FACTS "Metrics").
 * ztunnel's values: `-` (no failure), `DENY` (authorization policy), `CONNECT` (no upstream
 * connection could be made). Ours add `TLS_FAILURE` (the mTLS handshake or the peer identity was
 * refused) and `BAD_REQUEST` (a malformed HBONE request: wrong method, bad or foreign authority).
 */
import { isProxyError } from '../errors';

export type ResponseFlag = '-' | 'DENY' | 'CONNECT' | 'TLS_FAILURE' | 'BAD_REQUEST';

/** By ProxyError code (outbound execute step, SOCKS5 entry). */
const BY_CODE: Readonly<Record<string, ResponseFlag>> = {
  ERR_CONNECT: 'CONNECT',
  ERR_TIMEOUT: 'CONNECT',
  ERR_HBONE_STREAM: 'CONNECT',
  ERR_POOL_CLOSED: 'CONNECT',
  ERR_NO_HEALTHY_UPSTREAM: 'CONNECT',
  ERR_NO_SERVICE_PORT: 'CONNECT',
  ERR_CERT_UNAVAILABLE: 'TLS_FAILURE',
  ERR_SELF_CALL: 'DENY',
  // a source that is no workload of this node may not borrow another node's identity
  ERR_CERT_NOT_LOCAL: 'DENY',
};

/** By the HTTP status of an HBONE CONNECT answer (inbound refusals, and what the source was told). */
export function responseFlagsForStatus(status: number): ResponseFlag {
  if (status === 401 || status === 403) return 'DENY';
  if (status === 400) return 'BAD_REQUEST';
  if (status >= 500) return 'CONNECT';
  return '-';
}

export function responseFlagsFor(err: unknown): ResponseFlag {
  if (!isProxyError(err)) return '-';
  if (err.code === 'ERR_HBONE_STATUS') {
    const status = (err as unknown as { status?: unknown }).status;
    return typeof status === 'number' ? responseFlagsForStatus(status) : 'CONNECT';
  }
  if (err.code.startsWith('ERR_TLS')) return 'TLS_FAILURE';
  return BY_CODE[err.code] ?? '-';
}
