/**
 * Relays an accepted client socket to its upstream, for every entry that ends in a socket↔socket
 * or socket↔stream leg (SOCKS5, in-pod :15001 and :15006): the splice engine when the upstream is
 * a plain socket and one is given, else the JS copy path (an HBONE stream, or the switch forcing
 * JS). A spliced client is handed over by its listener (the addon destroys Node's handle while
 * the connection lives on), and gets its place in the connection limit back when the relay ends.
 */
import { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Listener } from '../net/listener';
import type { ByteCounts } from './connection-manager';
import { relay } from './copy';
import type { SocketRelay } from './socks5-server';

export interface ClientRelay {
  /** True when the splice engine carries it (the connection then lives outside Node's handles). */
  readonly spliced: boolean;
  /** Live counters: received = client → upstream, sent = upstream → client. */
  bytes(): ByteCounts;
  /** Cut it now (pod deleted, shutdown); `done` still settles. */
  stop(reason: string): void;
  readonly done: Promise<{ readonly bytes: ByteCounts; readonly reason: string }>;
}

export function relayClient(
  client: Socket,
  upstream: Duplex,
  listener: Listener,
  relaySockets: ((a: Socket, b: Socket) => SocketRelay) | undefined,
): ClientRelay {
  if (relaySockets !== undefined && upstream instanceof Socket) {
    const handBack = listener.handOver(client);
    const r = relaySockets(client, upstream);
    void r.done.finally(handBack);
    const bytes = (): ByteCounts => {
      const s = r.stats();
      return { received: s.aToB, sent: s.bToA };
    };
    return { spliced: r.kind === 'splice', bytes, stop: () => r.stop(), done: r.done.then(ended) };
  }
  const r = relay(client, upstream, { aName: 'downstream', bName: 'upstream' });
  return { spliced: false, bytes: () => ({ received: r.aToB, sent: r.bToA }), stop: (reason) => r.close(reason), done: r.done.then(ended) };
}

function ended(res: { readonly aToB: number; readonly bToA: number; readonly reason: string }): { bytes: ByteCounts; reason: string } {
  return { bytes: { received: res.aToB, sent: res.bToA }, reason: res.reason };
}
