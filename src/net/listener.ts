/**
 * One listener helper for every port (admin, stats, readiness, SOCKS5, HBONE inbound, capture):
 * bind, report the bound address, track accepted sockets, and take part in drain.
 *
 * Invariants: `sockets` holds exactly the accepted TCP sockets not yet closed; after
 * stopAccepting() no new socket is accepted (the server is closed) but tracked ones live on until
 * they finish or destroyAll() is called.
 */
import type { AddressInfo, Server, Socket } from 'node:net';
import { ProxyError } from '../errors';
import type { ConnectionLimit } from './conn-limit';
import { joinHostPort } from './ip';

export interface BoundAddress {
  readonly host: string;
  readonly port: number;
  /** "host:port", IPv6 bracketed */
  readonly text: string;
}

export interface ListenerOptions {
  /**
   * The process-wide connection budget (ZTUNNEL_MAX_CONNECTIONS). A connection over the limit is
   * destroyed before the server's own 'connection' handler sees it (that handler must return at
   * once for a destroyed socket); an admitted one gives its place back when it closes.
   */
  readonly limit?: ConnectionLimit | null;
  /** Called for each connection refused by `limit` (for a rate-limited log line). */
  readonly onRefused?: (socket: Socket) => void;
}

export class Listener {
  readonly name: string;
  readonly server: Server;
  private readonly sockets = new Set<Socket>();
  /** Admitted sockets whose place in the limit was handed to someone else (see handOver). */
  private readonly handedOver = new WeakSet<Socket>();
  private readonly limit: ConnectionLimit | null;
  private bound: BoundAddress | null = null;

  /** `server` may be any net.Server (http, http2, tls, plain): its raw 'connection' sockets are tracked. */
  constructor(name: string, server: Server, opts: ListenerOptions = {}) {
    this.name = name;
    this.server = server;
    const limit = (this.limit = opts.limit ?? null);
    // prepended: the limit must be checked before the handler given to createServer runs
    server.prependListener('connection', (socket: Socket) => {
      if (limit !== null) {
        if (!limit.tryAcquire()) {
          opts.onRefused?.(socket); // first: the addresses are gone once the socket is destroyed
          // RST rather than FIN: the client learns at once that nothing will be served
          socket.resetAndDestroy();
          return;
        }
        socket.once('close', () => {
          if (!this.handedOver.has(socket)) limit.release();
        });
      }
      this.sockets.add(socket);
      socket.once('close', () => this.sockets.delete(socket));
    });
  }

  /** Binds host:port (0 = pick one). Rejects with ERR_LISTEN naming the listener and the address. */
  listen(host: string, port: number, opts: { backlog?: number; fd?: number } = {}): Promise<BoundAddress> {
    return new Promise((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException): void => {
        reject(new ProxyError('ERR_LISTEN', `${this.name}: cannot listen on ${joinHostPort(host, port)}: ${err.code ?? err.message}`, { cause: err }));
      };
      this.server.once('error', onError);
      const done = (): void => {
        this.server.off('error', onError);
        const a = this.server.address() as AddressInfo;
        this.bound = { host: a.address, port: a.port, text: joinHostPort(a.address, a.port) };
        resolve(this.bound);
      };
      if (opts.fd !== undefined) this.server.listen({ fd: opts.fd }, done);
      else this.server.listen({ host, port, backlog: opts.backlog ?? 511, exclusive: true }, done);
    });
  }

  /**
   * The native splice relay destroys the Node socket of a connection it takes over while the
   * connection lives on in the relay: the caller takes the socket's place in the connection
   * limit and returns it with the function given back, once the relay is done. Call before the
   * socket can close. No-op function when there is no limit or the socket was not admitted here.
   */
  handOver(socket: Socket): () => void {
    const limit = this.limit;
    if (limit === null || !this.sockets.has(socket) || this.handedOver.has(socket)) return () => undefined;
    this.handedOver.add(socket);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      limit.release();
    };
  }

  get address(): BoundAddress | null {
    return this.bound;
  }

  get connectionCount(): number {
    return this.sockets.size;
  }

  /**
   * Drain step 1: stop accepting. The listening socket closes at once (server.close() drops its
   * handle synchronously); we do not wait for close()'s callback, which Node fires only once every
   * accepted connection has ended — that is drain step 2's business. Idempotent.
   */
  stopAccepting(): Promise<void> {
    if (this.server.listening) this.server.close();
    return new Promise((resolve) => setImmediate(resolve));
  }

  /** Drain step 2 (deadline passed) or shutdown: cut whatever is still open. */
  destroyAll(): void {
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
  }

  /** Stop accepting and destroy every tracked socket. */
  async close(): Promise<void> {
    const stopped = this.stopAccepting();
    this.destroyAll();
    await stopped;
  }
}
