/**
 * SPIFFE identities as Istio uses them: spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>.
 */
import { ProxyError } from '../errors';

export interface Identity {
  readonly trustDomain: string;
  readonly namespace: string;
  readonly serviceAccount: string;
}

const PREFIX = 'spiffe://';
// RFC 1123-ish labels for namespace/SA; trust domains are DNS-like (SPIFFE spec: lower-case letters,
// digits, '.', '-', '_').
const TRUST_DOMAIN_RE = /^[a-z0-9._-]+$/;
const SEGMENT_RE = /^[A-Za-z0-9._-]+$/;

/** Why `v` cannot be a SPIFFE trust domain, or null if it can (SPIFFE-ID spec §2.1). */
export function trustDomainProblem(v: string): string | null {
  if (v === '') return 'must not be empty';
  return TRUST_DOMAIN_RE.test(v) ? null : "may only hold lower-case letters, digits, '.', '-' and '_'";
}

/**
 * Why `v` cannot be one path segment of an Istio SPIFFE id (the namespace or the service
 * account), or null if it can: non-empty, no '/', only letters, digits, '.', '-' and '_'
 * (SPIFFE-ID spec §2.2). Anything else would make a URI SAN no peer parses back.
 */
export function segmentProblem(v: string): string | null {
  if (v === '') return 'must not be empty';
  return SEGMENT_RE.test(v) ? null : "may only hold letters, digits, '.', '-' and '_'";
}

/** The SPIFFE URI of `id`; throws ProxyError ERR_SPIFFE_ID if a part cannot appear in one. */
export function formatSpiffe(id: Identity): string {
  // three regex tests and no allocation on the common (valid) path: this runs per connection
  if (TRUST_DOMAIN_RE.test(id.trustDomain) && SEGMENT_RE.test(id.namespace) && SEGMENT_RE.test(id.serviceAccount)) {
    return `${PREFIX}${id.trustDomain}/ns/${id.namespace}/sa/${id.serviceAccount}`;
  }
  throw new ProxyError('ERR_SPIFFE_ID', `cannot form a SPIFFE id: ${identityProblem(id) ?? 'invalid identity'}`);
}

/** What is wrong with `id` as a SPIFFE identity (naming the part and its value), or null. */
export function identityProblem(id: Identity): string | null {
  const parts: [string, string, (v: string) => string | null][] = [
    ['trust domain', id.trustDomain, trustDomainProblem],
    ['namespace', id.namespace, segmentProblem],
    ['service account', id.serviceAccount, segmentProblem],
  ];
  for (const [name, value, check] of parts) {
    const why = check(value);
    if (why !== null) return `${name} ${JSON.stringify(value)}: ${why}`;
  }
  return null;
}

/** The identity without "spiffe://", as authorization principals are written. */
export function principalOf(id: Identity): string {
  return `${id.trustDomain}/ns/${id.namespace}/sa/${id.serviceAccount}`;
}

/** Parses a SPIFFE URI; throws ProxyError ERR_SPIFFE_ID naming what is wrong. */
export function parseSpiffe(uri: string): Identity {
  const fail = (why: string): never => {
    throw new ProxyError('ERR_SPIFFE_ID', `invalid SPIFFE id ${JSON.stringify(uri)}: ${why}`);
  };
  if (typeof uri !== 'string' || !uri.startsWith(PREFIX)) fail(`must start with ${PREFIX}`);
  const parts = uri.slice(PREFIX.length).split('/');
  if (parts.length !== 5 || parts[1] !== 'ns' || parts[3] !== 'sa') {
    fail('expected spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>');
  }
  const [trustDomain, , namespace, , serviceAccount] = parts as [string, string, string, string, string];
  if (trustDomainProblem(trustDomain) !== null) fail(`bad trust domain ${JSON.stringify(trustDomain)}`);
  if (segmentProblem(namespace) !== null) fail(`bad namespace ${JSON.stringify(namespace)}`);
  if (segmentProblem(serviceAccount) !== null) fail(`bad service account ${JSON.stringify(serviceAccount)}`);
  return { trustDomain, namespace, serviceAccount };
}

/** Like parseSpiffe but returns null instead of throwing (for untrusted peer certificates). */
export function tryParseSpiffe(uri: string): Identity | null {
  try {
    return parseSpiffe(uri);
  } catch {
    return null;
  }
}
