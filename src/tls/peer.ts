/**
 * Peer identity from a TLS connection, and the two identity checks of HBONE:
 * - the server (15008) admits a client whose verified certificate carries a SPIFFE id of its own
 *   trust domain (ztunnel's TrustDomainVerifier);
 * - the client admits a server whose certificate carries one of the expected identities
 *   (ztunnel's IdentityVerifier). Certificates have only a URI SAN, so hostname checks do not apply.
 * Like ztunnel, every URI SAN that parses as a SPIFFE id counts as an identity of the peer, others
 * are ignored, and the peer's identity is the first of them.
 */
import type * as tls from 'node:tls';
import { ProxyError } from '../errors';
import { formatSpiffe, tryParseSpiffe, type Identity } from '../identity/spiffe';

/**
 * The URI entries of Node's `subjectaltname` string ("URI:spiffe://a/ns/b/sa/c, DNS:x").
 * Node JSON-quotes a value that contains a separator or quote (`URI:"a, b"`), so entries are read
 * with a small scanner rather than split on ", ".
 */
export function sanUris(subjectAltName: string | undefined | null): string[] {
  const out: string[] = [];
  if (!subjectAltName) return out;
  const s = subjectAltName;
  let i = 0;
  // Each pass consumes at least one character, so the loop ends within s.length passes.
  while (i < s.length) {
    const colon = s.indexOf(':', i);
    if (colon < 0) break;
    const type = s.slice(i, colon);
    let value: string;
    let next: number;
    if (s[colon + 1] === '"') {
      let j = colon + 2;
      while (j < s.length && s[j] !== '"') j += s[j] === '\\' ? 2 : 1;
      try {
        value = JSON.parse(s.slice(colon + 1, j + 1)) as string;
      } catch {
        value = ''; // malformed quoting: not an identity
      }
      next = s.indexOf(', ', j + 1);
    } else {
      next = s.indexOf(', ', colon + 1);
      value = s.slice(colon + 1, next < 0 ? s.length : next);
    }
    if (type === 'URI' && value) out.push(value);
    if (next < 0) break;
    i = next + 2;
  }
  return out;
}

/** Every SPIFFE identity among the URI SANs, in certificate order. */
export function sanIdentities(subjectAltName: string | undefined | null): Identity[] {
  const ids: Identity[] = [];
  for (const uri of sanUris(subjectAltName)) {
    const id = tryParseSpiffe(uri);
    if (id) ids.push(id);
  }
  return ids;
}

function sameIdentity(a: Identity, b: Identity): boolean {
  return a.trustDomain === b.trustDomain && a.namespace === b.namespace && a.serviceAccount === b.serviceAccount;
}

/** The peer's SPIFFE identity (first URI SAN that parses), or null without certificate/identity. */
export function peerIdentity(socket: tls.TLSSocket): Identity | null {
  const cert = socket.getPeerCertificate();
  return sanIdentities(cert?.subjectaltname)[0] ?? null;
}

export type PeerCheck =
  | { readonly ok: true; readonly identity: Identity }
  | { readonly ok: false; readonly error: ProxyError };

/**
 * Server side, pure: `subjectAltName` null means the client sent no certificate.
 * Codes: ERR_TLS_NO_PEER_CERT, ERR_TLS_PEER_NO_SPIFFE, ERR_TLS_TRUST_DOMAIN.
 */
export function checkClientSan(subjectAltName: string | null | undefined, trustDomain: string): PeerCheck {
  if (subjectAltName === null) {
    return { ok: false, error: new ProxyError('ERR_TLS_NO_PEER_CERT', 'client presented no certificate') };
  }
  const ids = sanIdentities(subjectAltName);
  if (ids.length === 0) {
    return {
      ok: false,
      error: new ProxyError(
        'ERR_TLS_PEER_NO_SPIFFE',
        `client certificate has no valid SPIFFE id in its SANs (${subjectAltName || 'no SAN'})`,
      ),
    };
  }
  const match = ids.find((id) => id.trustDomain === trustDomain);
  if (!match) {
    return {
      ok: false,
      error: new ProxyError(
        'ERR_TLS_TRUST_DOMAIN',
        `client identity ${ids.map(formatSpiffe).join(', ')} is not in trust domain ${trustDomain}`,
      ),
    };
  }
  return { ok: true, identity: match };
}

/**
 * Server side, on an established TLS socket: the chain must have verified against our roots
 * (`authorized`, set by a tls.Server) and the identity must be in `trustDomain`. A socket that was
 * not produced by a tls.Server is never `authorized`, so this fails closed.
 * Codes: those of checkClientSan, plus ERR_TLS_PEER_UNVERIFIED (with Node's reason, e.g. CERT_HAS_EXPIRED).
 */
export function checkClientIdentity(socket: tls.TLSSocket, trustDomain: string): PeerCheck {
  const x = socket.getPeerX509Certificate();
  if (!x) return checkClientSan(null, trustDomain);
  if (socket.authorized !== true) {
    const why = socket.authorizationError ? String(socket.authorizationError) : 'not verified';
    return {
      ok: false,
      error: new ProxyError('ERR_TLS_PEER_UNVERIFIED', `client certificate rejected: ${why}`),
    };
  }
  return checkClientSan(x.subjectAltName ?? '', trustDomain);
}

/**
 * Client side, pure: the server must hold one of the expected identities. Returns undefined when it
 * does, else an ERR_TLS_SAN_MISMATCH error; this is the shape node:tls wants from checkServerIdentity.
 */
export function checkServerSan(subjectAltName: string | undefined, expected: readonly Identity[]): ProxyError | undefined {
  const ids = sanIdentities(subjectAltName);
  if (ids.some((id) => expected.some((e) => sameIdentity(id, e)))) return undefined;
  const got = ids.length > 0 ? ids.map(formatSpiffe).join(', ') : `no SPIFFE id (${subjectAltName || 'no SAN'})`;
  return new ProxyError(
    'ERR_TLS_SAN_MISMATCH',
    `server identity ${got} is not one of the expected ${expected.map(formatSpiffe).join(', ')}`,
  );
}
