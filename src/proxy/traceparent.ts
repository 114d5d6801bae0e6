/**
 * W3C Trace Context `traceparent` for HBONE requests: ztunnel starts a fresh trace per connection
 * (random trace and span ids, version 00) and the server reuses the client's for its log span.
 */
import { randomBytes } from 'node:crypto';

export interface TraceParent {
  readonly traceId: string;
  readonly spanId: string;
  readonly flags: number;
}

const RE = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;
const ZERO_TRACE = '0'.repeat(32);
const ZERO_SPAN = '0'.repeat(16);

/** A new traceparent value, "00-<32 hex>-<16 hex>-00". `random` is injectable for tests. */
export function newTraceparent(random: (n: number) => Buffer = randomBytes): string {
  const b = random(24);
  let trace = b.subarray(0, 16).toString('hex');
  let span = b.subarray(16, 24).toString('hex');
  // all-zero ids are invalid (W3C §3.2.2.3, §3.2.2.4): vanishingly rare, but keep the value valid
  if (trace === ZERO_TRACE) trace = '0'.repeat(31) + '1';
  if (span === ZERO_SPAN) span = '0'.repeat(15) + '1';
  return formatTraceparent({ traceId: trace, spanId: span, flags: 0 });
}

export function formatTraceparent(t: TraceParent): string {
  return `00-${t.traceId}-${t.spanId}-${(t.flags & 0xff).toString(16).padStart(2, '0')}`;
}

/** Parses a version-00 traceparent; null when malformed or with an all-zero id. */
export function parseTraceparent(value: string | undefined): TraceParent | null {
  if (typeof value !== 'string') return null;
  const m = RE.exec(value.trim());
  if (!m || m[1] === ZERO_TRACE || m[2] === ZERO_SPAN) return null;
  return { traceId: m[1]!, spanId: m[2]!, flags: parseInt(m[3]!, 16) };
}
