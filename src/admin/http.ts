/**
 * The small HTTP servers of the node (admin :15000, stats :15020, readiness :15021), each bound
 * through the one listener helper (src/net/listener.ts) so drain and shutdown treat them like
 * every other port. A handler that throws answers 500 instead of leaving the request hanging.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { ListenAddr } from '../config/config';
import { Listener, type BoundAddress } from '../net/listener';

export type HttpHandler = (req: IncomingMessage, res: ServerResponse) => void | Promise<void>;

export interface HttpEndpoint {
  readonly name: string;
  readonly address: BoundAddress;
  readonly listener: Listener;
  /** Stops accepting and cuts open connections (shutdown). */
  close(): Promise<void>;
}

export function send(res: ServerResponse, status: number, body: string | Buffer, headers: Record<string, string> = {}): void {
  if (res.headersSent) {
    res.end();
    return;
  }
  const buf = typeof body === 'string' ? Buffer.from(body) : body;
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', ...headers, 'content-length': String(buf.length) });
  res.end(buf);
}

/** The request path without the query. */
export function pathOf(req: IncomingMessage): string {
  const url = req.url ?? '/';
  const q = url.indexOf('?');
  return q < 0 ? url : url.slice(0, q);
}

export function queryOf(req: IncomingMessage): URLSearchParams {
  const url = req.url ?? '/';
  const q = url.indexOf('?');
  return new URLSearchParams(q < 0 ? '' : url.slice(q + 1));
}

export async function startHttpEndpoint(
  name: string,
  addr: ListenAddr,
  handler: HttpHandler,
  onError: (err: unknown) => void = () => undefined,
): Promise<HttpEndpoint> {
  const server = createServer((req, res) => {
    // a request body is never needed: drain it so keep-alive connections stay usable
    req.resume();
    let done: void | Promise<void>;
    try {
      done = handler(req, res);
    } catch (err) {
      onError(err);
      send(res, 500, `internal error: ${(err as Error).message}\n`);
      return;
    }
    if (done instanceof Promise) {
      done.catch((err: unknown) => {
        onError(err);
        send(res, 500, `internal error: ${(err as Error).message}\n`);
      });
    }
  });
  // idle keep-alive connections must not hold a drain open for long
  server.keepAliveTimeout = 5_000;
  const listener = new Listener(name, server);
  const address = await listener.listen(addr.host, addr.port);
  return { name, address, listener, close: () => listener.close() };
}
