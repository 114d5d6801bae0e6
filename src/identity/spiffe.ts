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

export function formatSpiffe(id: Identity): string {
  return `${PREFIX}${id.trustDomain}/ns/${id.namespace}/sa/${id.serviceAccount}`;
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
  if (!TRUST_DOMAIN_RE.test(trustDomain)) fail(`bad trust domain ${JSON.stringify(trustDomain)}`);
  if (!SEGMENT_RE.test(namespace)) fail(`bad namespace ${JSON.stringify(namespace)}`);
  if (!SEGMENT_RE.test(serviceAccount)) fail(`bad service account ${JSON.stringify(serviceAccount)}`);
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
