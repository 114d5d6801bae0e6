/**
 * IP addresses and CIDRs as plain data. Validation uses node:net's parser; the numeric forms are
 * what the authorization engine compares against on the hot path (no string work per connection).
 */
import { isIP } from 'node:net';
import { ProxyError } from '../errors';

export type IpFamily = 4 | 6;

/**
 * Canonical text of an address: IPv4 dotted quad, IPv6 compressed lower case, IPv4-mapped IPv6
 * (::ffff:a.b.c.d) folded to IPv4 — sockets report mapped forms on dual-stack listeners.
 * Returns null when `s` is not an IP address.
 */
export function normalizeIp(s: string): string | null {
  if (typeof s !== 'string') return null;
  const fam = isIP(s);
  if (fam === 4) return s.split('.').map((o) => String(Number(o))).join('.');
  if (fam !== 6) return null;
  const words = ipv6Words(s);
  if (words === null) return null;
  if (words.slice(0, 5).every((w) => w === 0) && words[5] === 0xffff) {
    return `${words[6]! >> 8}.${words[6]! & 255}.${words[7]! >> 8}.${words[7]! & 255}`;
  }
  return formatIpv6(words);
}

export function ipFamily(s: string): IpFamily | null {
  const f = isIP(s);
  return f === 4 || f === 6 ? f : null;
}

/** IPv4 → unsigned 32-bit number. Caller guarantees a valid dotted quad. */
export function ipv4ToInt(s: string): number {
  const p = s.split('.');
  return ((Number(p[0]) << 24) | (Number(p[1]) << 16) | (Number(p[2]) << 8) | Number(p[3])) >>> 0;
}

function intToIpv4(n: number): string {
  return `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

/** IPv6 → eight 16-bit words (handles "::", a zone suffix and an embedded IPv4 tail). */
export function ipv6Words(s: string): number[] | null {
  let text = s;
  const zone = text.indexOf('%');
  if (zone >= 0) text = text.slice(0, zone);
  const lastColon = text.lastIndexOf(':');
  if (text.includes('.', lastColon)) {
    // embedded IPv4 tail (::ffff:1.2.3.4, 64:ff9b::1.2.3.4): rewrite it as two hex words
    const v4 = text.slice(lastColon + 1);
    if (isIP(v4) !== 4) return null;
    const n = ipv4ToInt(v4);
    text = `${text.slice(0, lastColon + 1)}${(n >>> 16).toString(16)}:${(n & 0xffff).toString(16)}`;
  }
  const halves = text.split('::');
  if (halves.length > 2) return null;
  const parse = (h: string): number[] => (h === '' ? [] : h.split(':').map((w) => parseInt(w, 16)));
  const head = parse(halves[0]!);
  const rest = halves.length === 2 ? parse(halves[1]!) : [];
  const fill = 8 - head.length - rest.length;
  if (halves.length === 1 && fill !== 0) return null;
  if (fill < 0) return null;
  const words = [...head, ...new Array<number>(halves.length === 2 ? fill : 0).fill(0), ...rest];
  if (words.length !== 8 || words.some((w) => !Number.isInteger(w) || w < 0 || w > 0xffff)) return null;
  return words;
}

function formatIpv6(words: readonly number[]): string {
  // RFC 5952: compress the longest run (>= 2) of zero words, first one on ties.
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (words[i] !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) { bestStart = i; bestLen = j - i; }
    i = j;
  }
  const hex = words.map((w) => w.toString(16));
  if (bestStart < 0) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLen).join(':')}`;
}

export interface ParsedCidr {
  /** Network address with host bits masked. */
  readonly address: string;
  readonly prefixLen: number;
  readonly family: IpFamily;
}

/**
 * Parses "a.b.c.d/n", "x::y/n", or a bare address (a host route: /32 or /128).
 * Host bits are masked (ztunnel matches on the network, so 10.0.0.7/24 means 10.0.0.0/24).
 */
export function parseCidr(s: string): ParsedCidr {
  if (typeof s !== 'string') throw new ProxyError('ERR_CIDR', `${JSON.stringify(s)} is not a CIDR`);
  const slash = s.indexOf('/');
  const addrText = slash < 0 ? s : s.slice(0, slash);
  const addr = normalizeIp(addrText);
  const family = ipFamily(addrText);
  if (addr === null || family === null) {
    throw new ProxyError('ERR_CIDR', `${JSON.stringify(s)} is not a CIDR: ${JSON.stringify(addrText)} is not an IP address`);
  }
  // a mapped IPv6 address normalises to IPv4; treat the CIDR in the family it was written in
  const max = family === 4 ? 32 : 128;
  let prefixLen = max;
  if (slash >= 0) {
    const lenText = s.slice(slash + 1);
    if (!/^\d{1,3}$/.test(lenText) || Number(lenText) > max) {
      throw new ProxyError('ERR_CIDR', `${JSON.stringify(s)} is not a CIDR: prefix length must be 0..${max}`);
    }
    prefixLen = Number(lenText);
  }
  if (family === 4) {
    const mask = prefixLen === 0 ? 0 : (0xffffffff << (32 - prefixLen)) >>> 0;
    return { address: intToIpv4((ipv4ToInt(addr) & mask) >>> 0), prefixLen, family };
  }
  const words = ipv6Words(addrText)!;
  const masked = words.map((w, i) => {
    const bits = Math.max(0, Math.min(16, prefixLen - i * 16));
    return bits === 0 ? 0 : w & ((0xffff << (16 - bits)) & 0xffff);
  });
  return { address: formatIpv6(masked), prefixLen, family };
}

/** 127.0.0.0/8 or ::1, for an address already in normal form (normalizeIp). */
export function isLoopbackIp(ip: string): boolean {
  return ip === '::1' || ip.startsWith('127.');
}

/**
 * Node mode's source-address rule, for both the outbound HBONE leg and the inbound app leg: on
 * loopback every pod IP is a local address on this host, so binding the client pod's IP lets the
 * peer see the real source (what in-pod ztunnel achieves with IP_TRANSPARENT, and what sourceIps
 * policies match). A non-loopback target cannot be reached from a loopback source, so then the OS
 * picks (undefined).
 */
export function loopbackSourceFor(srcIp: string, targetIp: string): string | undefined {
  return isLoopbackIp(srcIp) && isLoopbackIp(targetIp) ? srcIp : undefined;
}

/** Splits "host:port" / "[v6]:port" into parts; null when malformed. Port range 0..65535. */
export function splitHostPort(s: string): { host: string; port: number } | null {
  if (typeof s !== 'string') return null;
  let host: string;
  let portText: string;
  if (s.startsWith('[')) {
    const end = s.indexOf(']');
    if (end < 0 || s[end + 1] !== ':') return null;
    host = s.slice(1, end);
    portText = s.slice(end + 2);
  } else {
    const colon = s.lastIndexOf(':');
    if (colon < 0) return null;
    host = s.slice(0, colon);
    portText = s.slice(colon + 1);
    if (host.includes(':')) return null; // bare IPv6 must be bracketed
  }
  if (!/^\d{1,5}$/.test(portText)) return null;
  const port = Number(portText);
  if (port > 65535 || host === '') return null;
  return { host, port };
}

/** "ip:port" or "[v6]:port". */
export function joinHostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}
