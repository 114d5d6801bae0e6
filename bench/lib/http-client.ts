/**
 * A small HTTP/1.1 load client for the two workloads autocannon cannot measure well here:
 *  - a fixed request rate with sub-millisecond latency: autocannon records whole milliseconds,
 *    and the added latency of a proxy on loopback is a fraction of one. Latency is measured from
 *    each request's SCHEDULED send time (so a stalled path cannot hide its queueing: no
 *    coordinated omission), with process.hrtime, in microseconds;
 *  - one request per new TCP connection (new connections per second): autocannon's reconnectRate
 *    drops the response that triggers the reconnect from its counts.
 * Raw sockets and a fixed request: the origin always answers with a Content-Length body.
 */
import { connect, type Socket } from 'node:net';

export interface LoadOpts {
  readonly host: string;
  readonly port: number;
  readonly seconds: number;
  /** Connections in flight (keep-alive) or concurrent connect loops (newConnEach). */
  readonly concurrency: number;
  /** Overall requests per second; absent = as fast as the connections go. */
  readonly rate?: number;
  readonly newConnEach?: boolean;
}

export interface LoadResult {
  readonly requests: number;
  readonly errors: number;
  readonly seconds: number;
  /** Latencies in microseconds, unsorted. */
  readonly latUs: number[];
}

const nowUs = (): number => Number(process.hrtime.bigint() / 1000n);
const HDR_END = Buffer.from('\r\n\r\n');

/** Sends one request on `s` and resolves when its full response has arrived. */
function exchange(s: Socket, req: Buffer): Promise<void> {
  return new Promise((res, rej) => {
    let buf: Buffer = Buffer.alloc(0);
    const onData = (d: Buffer): void => {
      buf = buf.length ? Buffer.concat([buf, d]) : d;
      const end = buf.indexOf(HDR_END);
      if (end < 0) return;
      const m = /content-length:\s*(\d+)/i.exec(buf.subarray(0, end).toString('latin1'));
      if (!m) return done(new Error('response without content-length'));
      if (buf.length >= end + 4 + Number(m[1])) done();
    };
    const onErr = (err: Error): void => done(err);
    const onClose = (): void => done(new Error('connection closed mid-response'));
    const done = (err?: Error): void => {
      s.off('data', onData);
      s.off('error', onErr);
      s.off('close', onClose);
      if (err) rej(err);
      else res();
    };
    s.on('data', onData);
    s.on('error', onErr);
    s.on('close', onClose);
    s.write(req);
  });
}

function open(host: string, port: number): Promise<Socket> {
  return new Promise((res, rej) => {
    const s = connect({ host, port, noDelay: true });
    s.once('connect', () => {
      s.off('error', rej);
      res(s);
    });
    s.once('error', rej);
  });
}

export async function load(o: LoadOpts): Promise<LoadResult> {
  const req = Buffer.from(`GET / HTTP/1.1\r\nHost: bench\r\n${o.newConnEach ? 'Connection: close\r\n' : ''}\r\n`);
  const latUs: number[] = [];
  let errors = 0;
  const t0 = nowUs();
  const end = t0 + o.seconds * 1e6;
  const interval = o.rate ? 1e6 / o.rate : 0;
  let next = 0; // index of the next scheduled request (rate mode)

  /**
   * Waits for the next request's turn and returns the time its latency is measured from, or null
   * when the run is over. A request whose scheduled time has already passed (every connection was
   * busy: the path is queueing) is measured from its schedule; one that waits for its time is
   * measured from when the timer actually let it go (timer slack is the client's, not the path's).
   */
  const slot = async (): Promise<number | null> => {
    if (!interval) return nowUs() < end ? nowUs() : null;
    const at = t0 + next++ * interval;
    if (at >= end) return null;
    if (at <= nowUs()) return at;
    await new Promise((r) => setTimeout(r, Math.max(0, Math.round((at - nowUs()) / 1000))));
    return nowUs();
  };

  const loop = async (): Promise<void> => {
    let s: Socket | null = null;
    for (;;) {
      const at = await slot(); // the time this request's latency counts from
      if (at === null) break;
      try {
        if (o.newConnEach || s === null) s = await open(o.host, o.port);
        await exchange(s, req);
        latUs.push(nowUs() - at);
      } catch {
        errors++;
        s?.destroy();
        s = null;
        await new Promise((r) => setTimeout(r, 10));
      }
      if (o.newConnEach) {
        s?.destroy();
        s = null;
      }
    }
    s?.destroy();
  };
  // a hard bound whatever happens to a connection: the run ends at `end` + 10 s
  const bound = new Promise<void>((r) => setTimeout(r, o.seconds * 1000 + 10_000).unref());
  await Promise.race([Promise.all(Array.from({ length: o.concurrency }, loop)), bound]);
  return { requests: latUs.length, errors, seconds: (nowUs() - t0) / 1e6, latUs };
}

export function percentileMs(sortedUs: readonly number[], p: number): number {
  if (sortedUs.length === 0) return NaN;
  return sortedUs[Math.min(sortedUs.length - 1, Math.floor((p / 100) * sortedUs.length))]! / 1000;
}
