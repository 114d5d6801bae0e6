/**
 * Parsers for single environment values. Each returns the value or throws ValueError whose
 * `expected` finishes the operator-facing sentence "VAR="x": expected ...".
 */
import { isLoopbackIp, joinHostPort, normalizeIp, splitHostPort } from '../net/ip';
import { trustDomainProblem } from '../identity/spiffe';
import { ValueError } from './issues';

/** true/false/1/0 in any case; anything else (yes, on, enabled ...) is an error, not a guess. */
export function parseBool(s: string): boolean {
  const v = s.toLowerCase();
  if (v === 'true' || v === '1') return true;
  if (v === 'false' || v === '0') return false;
  throw new ValueError('ERR_CONFIG_VALUE', s, 'true or false (or 1 / 0)');
}

/** A decimal integer in [min, max]; no signs, no exponents, no hex. */
export function parseInteger(s: string, min: number, max: number, what = 'an integer'): number {
  const expected = `${what} from ${min} to ${max}`;
  if (!/^\d+$/.test(s)) throw new ValueError('ERR_CONFIG_VALUE', s, expected);
  const n = Number(s);
  if (!Number.isSafeInteger(n) || n < min || n > max) throw new ValueError('ERR_CONFIG_VALUE', s, expected);
  return n;
}

export function integerParser(min: number, max: number, what?: string): (s: string) => number {
  return (s) => parseInteger(s, min, max, what);
}

/**
 * A Kubernetes CPU quantity as the downward API or a chart renders it: cores (`2`, `1.5`, `0.5`)
 * or millicores (`500m`, `2500m`). Returns cores. Zero is allowed only when `allowZero`
 * (a request of 0 means "no request"; a limit of 0 means nothing).
 */
export function parseCpuQuantity(s: string, allowZero: boolean): number {
  const m = /^(\d+(?:\.\d+)?|\.\d+)(m?)$/.exec(s);
  const expected = `a CPU quantity like 2, 1.5 or 500m${allowZero ? '' : ' (more than 0)'}`;
  if (m === null) throw new ValueError('ERR_CONFIG_VALUE', s, expected);
  // millicores divide an integer by 1000, so 3000m is exactly 3 and ceil() does not round it up
  const cores = m[2] === 'm' ? Number(m[1]) / 1000 : Number(m[1]);
  if (!Number.isFinite(cores) || (!allowZero && cores <= 0)) throw new ValueError('ERR_CONFIG_VALUE', s, expected);
  return cores;
}

/** A listen address; `host` is an IP literal (IPv6 without brackets), port 0 = "pick a free port". */
export interface ListenAddr {
  readonly host: string;
  readonly port: number;
}

export function formatListenAddr(a: ListenAddr): string {
  return joinHostPort(a.host, a.port);
}

export function isLoopbackHost(host: string): boolean {
  const n = normalizeIp(host);
  return n !== null && isLoopbackIp(n);
}

/**
 * `host:port` or `[v6]:port` with an IP host (no names: binding must not depend on DNS).
 * With `loopbackOnly`, the host must be 127.0.0.0/8 or ::1 — for admin (which can stop the proxy
 * and change log levels) and SOCKS5 (no authentication), both localhost-only in ztunnel.
 */
export function parseListenAddr(s: string, loopbackOnly = false): ListenAddr {
  const expected = loopbackOnly
    ? 'a loopback host:port like 127.0.0.1:15000 or [::1]:15000 (this listener must stay on localhost)'
    : 'host:port with an IP address, like 0.0.0.0:15020 or [::]:15020 (port 0 picks a free port)';
  const hp = splitHostPort(s);
  if (hp === null) throw new ValueError('ERR_CONFIG_VALUE', s, expected);
  const zone = hp.host.indexOf('%');
  const ip = normalizeIp(hp.host);
  if (ip === null) throw new ValueError('ERR_CONFIG_VALUE', s, expected);
  if (loopbackOnly && !isLoopbackHost(hp.host)) throw new ValueError('ERR_CONFIG_VALUE', s, expected);
  // keep a zone id (fe80::1%eth0): normalizeIp drops it, but binding a link-local address needs it
  return { host: zone >= 0 ? hp.host : ip, port: hp.port };
}

/** An SPIFFE trust domain (lower-case letters, digits, '.', '-', '_'), checked by the SPIFFE parser. */
export function parseTrustDomain(s: string): string {
  if (trustDomainProblem(s) !== null) {
    throw new ValueError('ERR_CONFIG_VALUE', s, "a trust domain of lower-case letters, digits, '.', '-' and '_', like cluster.local");
  }
  return s;
}

/** Plain text that must not contain control characters (a name that ends up in logs and labels). */
export function parseName(s: string): string {
  if (/[\u0000-\u001f\u007f]/.test(s)) throw new ValueError('ERR_CONFIG_VALUE', s, 'a name without control characters');
  return s;
}

export function parsePath(s: string): string {
  if (s.includes('\u0000')) throw new ValueError('ERR_CONFIG_VALUE', s, 'a file system path');
  return s;
}

export function oneOf<T extends string>(choices: readonly T[]): (s: string) => T {
  return (s) => {
    const v = s.toLowerCase();
    const hit = choices.find((c) => c === v);
    if (hit === undefined) throw new ValueError('ERR_CONFIG_VALUE', s, `one of ${choices.join(', ')}`);
    return hit;
  };
}
