/**
 * The HBONE CONNECT `:authority`: `podIP:targetPort` (ZTUNNEL-FACTS "HBONE"). Parsing is strict
 * because the inbound side dials what it names: an IP literal (IPv6 in brackets, no zone), a
 * decimal port 1..65535 without sign or leading zeros. Service hostnames, which ztunnel accepts
 * from waypoints, are not supported here and are refused with a reason the 400 log line can show.
 */
import { isIP } from 'node:net';
import { joinHostPort, normalizeIp } from '../net/ip';

export type AuthorityParse =
  | { readonly ok: true; readonly ip: string; readonly port: number }
  | { readonly ok: false; readonly reason: string };

const PORT_RE = /^[1-9][0-9]{0,4}$/;

function bad(text: unknown, why: string): AuthorityParse {
  return { ok: false, reason: `bad :authority ${JSON.stringify(text)}: ${why}` };
}

/** Parses "a.b.c.d:port" or "[v6]:port"; the IP comes back in normal form (normalizeIp). */
export function parseAuthority(text: unknown): AuthorityParse {
  if (typeof text !== 'string' || text === '') return bad(text, 'missing');
  let host: string;
  let portText: string;
  if (text.startsWith('[')) {
    const end = text.indexOf(']');
    if (end < 0) return bad(text, 'unclosed "["');
    if (text[end + 1] !== ':') return bad(text, 'expected ":<port>" after "]"');
    host = text.slice(1, end);
    portText = text.slice(end + 2);
    if (isIP(host) !== 6 || host.includes('%')) return bad(text, 'bracketed host is not an IPv6 address');
  } else {
    const colon = text.lastIndexOf(':');
    if (colon < 0) return bad(text, 'expected <ip>:<port>');
    host = text.slice(0, colon);
    portText = text.slice(colon + 1);
    if (host.includes(':')) return bad(text, 'an IPv6 address must be in brackets');
    if (isIP(host) !== 4) return bad(text, 'host is not an IP address (hostnames are not supported)');
  }
  if (!PORT_RE.test(portText) || Number(portText) > 65535) return bad(text, 'port must be a number 1..65535');
  return { ok: true, ip: normalizeIp(host)!, port: Number(portText) };
}

/** The authority for a target: "ip:port", IPv6 bracketed. */
export function formatAuthority(ip: string, port: number): string {
  return joinHostPort(ip, port);
}
