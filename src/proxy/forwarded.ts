/**
 * The `forwarded` header of an HBONE CONNECT (RFC 7239): the client sends `for="<ip>:<port>"` of
 * the original source. The value is always quoted because it contains ':'; an IPv6 address is
 * bracketed inside the quotes (RFC 7239 §6).
 */
import { joinHostPort } from '../net/ip';

export function formatForwardedFor(ip: string, port: number): string {
  return `for="${joinHostPort(ip, port)}"`;
}

export type ForwardedElement = Readonly<Record<string, string>>;

/**
 * Parses a Forwarded value into its elements (comma-separated), each a map of lower-cased
 * parameter names to unquoted values. Malformed pairs are skipped rather than failing the request:
 * the header is informational (ztunnel reads `host=` from it for metrics only).
 */
export function parseForwarded(value: string | undefined): ForwardedElement[] {
  const out: ForwardedElement[] = [];
  if (typeof value !== 'string') return out;
  let cur: Record<string, string> = {};
  let i = 0;
  const n = value.length;
  // Each pass consumes at least one character, so the loop ends within n passes.
  while (i < n) {
    const ch = value[i]!;
    if (ch === ',' || ch === ';' || ch === ' ' || ch === '\t') {
      if (ch === ',' && Object.keys(cur).length > 0) {
        out.push(cur);
        cur = {};
      }
      i++;
      continue;
    }
    const eq = value.indexOf('=', i);
    if (eq < 0) break;
    const name = value.slice(i, eq).trim().toLowerCase();
    let j = eq + 1;
    let val: string;
    if (value[j] === '"') {
      let buf = '';
      j++;
      while (j < n && value[j] !== '"') {
        if (value[j] === '\\' && j + 1 < n) j++;
        buf += value[j];
        j++;
      }
      val = buf;
      j++; // closing quote
    } else {
      const end = value.slice(j).search(/[;,]/);
      val = (end < 0 ? value.slice(j) : value.slice(j, j + end)).trim();
      j = end < 0 ? n : j + end;
    }
    if (/^[a-z0-9!#$%&'*+.^_`|~-]+$/.test(name)) cur[name] = val;
    i = Math.max(j, i + 1);
  }
  if (Object.keys(cur).length > 0) out.push(cur);
  return out;
}

/** The `for` of the first element as {ip, port}, or null when absent or not an "ip:port". */
export function forwardedFor(value: string | undefined): { ip: string; port: number | null } | null {
  const f = parseForwarded(value)[0]?.['for'];
  if (f === undefined) return null;
  const v6 = /^\[([^\]]+)\](?::(\d{1,5}))?$/.exec(f);
  if (v6) return { ip: v6[1]!, port: v6[2] === undefined ? null : Number(v6[2]) };
  const v4 = /^([^:]+)(?::(\d{1,5}))?$/.exec(f);
  return v4 ? { ip: v4[1]!, port: v4[2] === undefined ? null : Number(v4[2]) } : null;
}
