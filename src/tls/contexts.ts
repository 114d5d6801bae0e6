/**
 * TLS for HBONE (ztunnel's tls/workload.rs): TLS 1.3 only, AES-GCM suites, ALPN h2, no SNI, mutual
 * authentication with SPIFFE identities. One TlsContexts per thread caches, per certificate
 * serial, the SecureContext (clients) and the acceptor tls.Server (servers), because building a
 * context parses keys and certificates — too costly per connection.
 *
 * Why servers go through an acceptor tls.Server instead of `new tls.TLSSocket(raw, {isServer})`:
 * the client SNI is absent, so a server cannot pick its certificate per connection through
 * SNICallback; and a bare server-side TLSSocket never evaluates the client chain (`authorized` stays
 * false). A non-listening tls.Server per certificate, fed accepted sockets with
 * `emit('connection')`, gives per-connection certificate choice and Node's own chain verification.
 *
 * Invariants: the cache keeps at most the two newest certificates per identity (the current one
 * and the one it just replaced, still used by connections being set up); onSecureConnection is
 * only ever called for a client whose chain verified against our roots, whose identity is in the
 * server certificate's trust domain, and that negotiated h2.
 */
import * as tls from 'node:tls';
import type * as net from 'node:net';
import { ProxyError } from '../errors';
import { formatSpiffe, type Identity } from '../identity/spiffe';
import type { WorkloadCert } from '../identity/workload-cert';
import { checkClientIdentity, checkServerSan } from './peer';

export const HBONE_TLS_VERSION = 'TLSv1.3';
export const HBONE_CIPHERS = 'TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384';
export const HBONE_ALPN: readonly string[] = Object.freeze(['h2']);

export interface ServerHandlers {
  /** A client passed chain verification, the trust-domain check and ALPN h2. */
  onSecureConnection(socket: tls.TLSSocket, peer: Identity, local: WorkloadCert): void;
  /** The handshake failed or the client was refused; the socket is already destroyed. */
  onClientRejected?(err: ProxyError, socket: tls.TLSSocket, local: WorkloadCert): void;
}

export interface TlsContextsOptions {
  /** Server-side handlers; required only for accept(). */
  readonly server?: ServerHandlers;
  /** Server handshake deadline (Node's default is 120 s, far too generous for a proxy). Default 10 s. */
  readonly handshakeTimeoutMs?: number;
}

interface Cached {
  readonly serial: string;
  readonly context: tls.SecureContext;
  acceptor: tls.Server | null;
}

/** The PEM key/cert/ca triple for one workload certificate. */
function material(cert: WorkloadCert): { key: string; cert: string; ca: string[] } {
  return { key: cert.keyPem, cert: [cert.certPem, ...cert.chainPem].join(''), ca: [...cert.rootsPem] };
}

/**
 * Options for a tls.Server (or http2.createSecureServer) serving HBONE with `cert`: requests a
 * client certificate and rejects one that does not verify against the roots. The identity
 * (trust-domain) check still has to be made with checkClientIdentity; accept() does both.
 */
export function serverTlsOptions(cert: WorkloadCert): tls.TlsOptions {
  return {
    ...material(cert),
    minVersion: HBONE_TLS_VERSION,
    maxVersion: HBONE_TLS_VERSION,
    ciphers: HBONE_CIPHERS,
    ALPNProtocols: [...HBONE_ALPN],
    requestCert: true,
    rejectUnauthorized: true,
  };
}

export class TlsContexts {
  private readonly byIdentity = new Map<string, Cached[]>();

  constructor(private readonly opts: TlsContextsOptions = {}) {}

  /** The SecureContext for `cert`, built once per serial. */
  secureContext(cert: WorkloadCert): tls.SecureContext {
    return this.entry(cert).context;
  }

  /**
   * Options for tls.connect (or http2.connect's createConnection) as the SOURCE workload `cert`,
   * accepting only a server holding one of `expected`. Add host/port or socket. Do not pass a
   * `session`: Node skips checkServerIdentity on resumed sessions.
   */
  clientTlsOptions(cert: WorkloadCert, expected: readonly Identity[]): tls.ConnectionOptions {
    if (expected.length === 0) {
      throw new ProxyError('ERR_TLS_NO_EXPECTED_SANS', 'an HBONE client needs at least one expected server identity');
    }
    const want = expected.slice();
    return {
      secureContext: this.secureContext(cert),
      // Repeated for readers; the SecureContext already enforces them.
      minVersion: HBONE_TLS_VERSION,
      maxVersion: HBONE_TLS_VERSION,
      ALPNProtocols: [...HBONE_ALPN],
      // node:tls only sends SNI when servername is truthy; '' also stops callers (http2.connect) from
      // defaulting it to the host. ztunnel sends none.
      servername: '',
      rejectUnauthorized: true,
      // Only called after the chain verified against our roots: then match the URI SAN.
      checkServerIdentity: (_host: string, peer: tls.PeerCertificate) => checkServerSan(peer.subjectaltname, want),
    };
  }

  /** Options for a tls.Server of this cert (see serverTlsOptions), plus the cached SecureContext. */
  serverTlsOptions(cert: WorkloadCert): tls.TlsOptions {
    return { ...serverTlsOptions(cert), secureContext: this.secureContext(cert) };
  }

  /**
   * Runs the server handshake on an accepted TCP socket with `cert` as the server certificate,
   * then reports through the ServerHandlers given to the constructor.
   */
  accept(raw: net.Socket, cert: WorkloadCert): void {
    const e = this.entry(cert);
    e.acceptor ??= this.makeAcceptor(cert);
    e.acceptor.emit('connection', raw);
  }

  /** Drops everything cached for an identity (its workload left). */
  forget(id: Identity): void {
    this.byIdentity.delete(formatSpiffe(id));
  }

  clear(): void {
    this.byIdentity.clear();
  }

  /** Number of cached certificates (tests, admin). */
  get size(): number {
    let n = 0;
    for (const list of this.byIdentity.values()) n += list.length;
    return n;
  }

  private entry(cert: WorkloadCert): Cached {
    const key = formatSpiffe(cert.identity);
    const list = this.byIdentity.get(key) ?? [];
    const hit = list.find((c) => c.serial === cert.serial);
    if (hit) return hit;
    const created: Cached = {
      serial: cert.serial,
      context: tls.createSecureContext({
        ...material(cert),
        minVersion: HBONE_TLS_VERSION,
        maxVersion: HBONE_TLS_VERSION,
        ciphers: HBONE_CIPHERS,
      }),
      acceptor: null,
    };
    // Newest first; keep the previous one for connections racing a rotation.
    this.byIdentity.set(key, [created, ...list].slice(0, 2));
    return created;
  }

  private makeAcceptor(cert: WorkloadCert): tls.Server {
    const handlers = this.opts.server;
    if (!handlers) throw new ProxyError('ERR_TLS_NO_HANDLERS', 'TlsContexts.accept() needs server handlers');
    const trustDomain = cert.identity.trustDomain;
    const server = tls.createServer({
      ...serverTlsOptions(cert),
      // Verification still happens (requestCert); we refuse below so every refusal is reported
      // with its reason instead of Node silently destroying the socket.
      rejectUnauthorized: false,
      handshakeTimeout: this.opts.handshakeTimeoutMs ?? 10_000,
    });
    const reject = (err: ProxyError, socket: tls.TLSSocket): void => {
      socket.destroy();
      handlers.onClientRejected?.(err, socket, cert);
    };
    server.on('secureConnection', (socket: tls.TLSSocket) => {
      const check = checkClientIdentity(socket, trustDomain);
      if (!check.ok) return reject(check.error, socket);
      if (socket.alpnProtocol !== 'h2') {
        return reject(new ProxyError('ERR_TLS_ALPN', `client did not negotiate ALPN h2 (got ${String(socket.alpnProtocol)})`), socket);
      }
      handlers.onSecureConnection(socket, check.identity, cert);
    });
    server.on('tlsClientError', (err: Error, socket: tls.TLSSocket) => {
      reject(new ProxyError('ERR_TLS_HANDSHAKE', `TLS handshake with client failed: ${err.message.trim()}`, { cause: err }), socket);
    });
    return server;
  }
}
