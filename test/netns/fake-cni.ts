/**
 * A stand-in for istio-cni's node agent on the ZDS socket: it listens on a Unix SOCK_SEQPACKET
 * path, waits for ztunnel-ts's hello, and then registers pods the way the agent does — add (with
 * the pod's netns fd attached by SCM_RIGHTS), keep, del, snapshot-sent — each answered by an ack.
 * It uses the same addon functions as the proxy (src/native/seqpacket.ts) and our codec.
 */
import { once } from 'node:events';
import { closeSync, openSync } from 'node:fs';
import type { NativeApi } from '../../src/native/addon';
import { SeqpacketServer, type SeqpacketSocket } from '../../src/native/seqpacket';
import { decodeHello, decodeResponse, encodeRequest, type ZdsRequest } from '../../src/inpod/zds-codec';

export interface FakeCni {
  readonly path: string;
  /** Resolves with the proxy's connection once it said hello (version checked). */
  connected(): Promise<void>;
  /** Sends one request (with the netns at `netnsPath` attached for add) and resolves with the ack's error ('' = ok). */
  send(req: ZdsRequest, netnsPath?: string): Promise<string>;
  /** Drops the current connection (the agent restarting). */
  disconnect(): void;
  /** How many connections the proxy has made. */
  readonly connections: number;
  close(): void;
}

export function startFakeCni(native: NativeApi, path: string): FakeCni {
  const server = SeqpacketServer.listen(native, path);
  let current: SeqpacketSocket | null = null;
  let connections = 0;
  let hello: Promise<void> = new Promise(() => undefined);
  const waiters: Array<() => void> = [];
  server.on('connection', (sock) => {
    connections++;
    current?.close();
    current = sock;
    hello = once(sock, 'message').then(([data]) => {
      const h = decodeHello(data as Buffer);
      if (h.version !== 1) throw new Error(`hello with version ${h.version}`);
    });
    for (const w of waiters.splice(0)) w();
  });
  return {
    path,
    async connected(): Promise<void> {
      if (current === null) await new Promise<void>((r) => waiters.push(r));
      await hello;
    },
    async send(req, netnsPath): Promise<string> {
      await this.connected();
      const sock = current!;
      const fd = netnsPath === undefined ? null : openSync(netnsPath, 'r');
      try {
        const answer = once(sock, 'message');
        sock.send(encodeRequest(req), fd === null ? [] : [fd]);
        const [data] = (await answer) as [Buffer];
        return decodeResponse(data).error;
      } finally {
        // the proxy got its own copy through SCM_RIGHTS
        if (fd !== null) closeSync(fd);
      }
    },
    disconnect(): void {
      current?.close();
      current = null;
    },
    get connections(): number {
      return connections;
    },
    close(): void {
      current?.close();
      server.close();
    },
  };
}
