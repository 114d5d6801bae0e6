/**
 * Shared pieces of the HBONE integration tests: a CA and workload certificates (the real LocalCa),
 * a snapshot built by the real loader, the real authorize(), an HboneServer listening on the
 * destination workload's loopback IP, and small upstream apps on that same IP. Each test file
 * passes its own loopback block; nothing here binds an address on its own.
 */
import * as net from 'node:net';
import { createHash } from 'node:crypto';
import type * as http2 from 'node:http2';
import type { LoopbackBlock } from '../helpers/loopback';
import { LocalCa } from '../../src/identity/ca';
import type { Identity } from '../../src/identity/spiffe';
import type { WorkloadCert } from '../../src/identity/workload-cert';
import { parseSnapshot } from '../../src/state/parse';
import { buildSnapshot, type Snapshot } from '../../src/state/snapshot';
import { authorize } from '../../src/authz/authorize';
import { ConnectionManager } from '../../src/proxy/connection-manager';
import { startInbound, type HboneServer, type HboneServerOptions } from '../../src/proxy/hbone-server';
import { HboneClient, type HboneClientOptions, type HboneRequest, type HboneTunnel } from '../../src/proxy/hbone-client';
import type { ConnEvents, InboundConnRecord } from '../../src/proxy/inbound';
import type { ProxyLog } from '../../src/proxy/proxy-log';

export const HOUR = 3600_000;
export const SLEEP: Identity = { trustDomain: 'cluster.local', namespace: 'default', serviceAccount: 'sleep' };
export const ECHO: Identity = { trustDomain: 'cluster.local', namespace: 'default', serviceAccount: 'echo' };
export const FOREIGN: Identity = { trustDomain: 'other.example', namespace: 'default', serviceAccount: 'sleep' };

export interface LogLine {
  readonly level: 'debug' | 'info' | 'warn';
  readonly obj: Record<string, unknown>;
  readonly msg: string;
}

export function collectingLog(lines: LogLine[]): ProxyLog {
  return {
    debug: (obj, msg) => lines.push({ level: 'debug', obj: obj as Record<string, unknown>, msg }),
    info: (obj, msg) => lines.push({ level: 'info', obj: obj as Record<string, unknown>, msg }),
    warn: (obj, msg) => lines.push({ level: 'warn', obj: obj as Record<string, unknown>, msg }),
  };
}

/** A snapshot with the source workload `srcIp` (sleep) and the destination `dstIp` (echo), plus policies. */
export function snapshotDoc(srcIp: string, dstIp: string, policies: unknown[] = [], version = 1): Snapshot {
  const text = JSON.stringify({
    workloads: [
      { uid: 'c1//v1/Pod/default/sleep', name: 'sleep', namespace: 'default', serviceAccount: 'sleep', workloadIps: [srcIp], protocol: 'HBONE', node: 'n1' },
      {
        uid: 'c1//v1/Pod/default/echo',
        name: 'echo-7d9f',
        namespace: 'default',
        serviceAccount: 'echo',
        workloadIps: [dstIp],
        protocol: 'HBONE',
        node: 'n1',
        clusterId: 'Kubernetes',
        workloadName: 'echo',
        workloadType: 'deployment',
        canonicalName: 'echo',
        canonicalRevision: 'v1',
      },
    ],
    policies,
  });
  return buildSnapshot(parseSnapshot(text, { source: 'test', trustDomain: 'cluster.local' }), { version, nodeName: 'n1' });
}

export const DENY_SLEEP = {
  name: 'deny-sleep',
  namespace: 'default',
  scope: 'Namespace',
  action: 'Deny',
  rules: [[[{ principals: [{ Exact: 'cluster.local/ns/default/sa/sleep' }] }]]],
};

export interface Certs {
  readonly ca: LocalCa;
  readonly client: WorkloadCert;
  readonly server: WorkloadCert;
}

export async function makeCerts(): Promise<Certs> {
  const ca = await LocalCa.generate();
  return { ca, client: await ca.sign(SLEEP, HOUR), server: await ca.sign(ECHO, HOUR) };
}

export interface Harness {
  readonly certs: Certs;
  readonly srcIp: string;
  readonly dstIp: string;
  readonly hbonePort: number;
  readonly server: HboneServer<Snapshot>;
  readonly manager: ConnectionManager;
  readonly logs: LogLine[];
  readonly events: {
    opened: number;
    closed: { reason: string; received: number; sent: number }[];
    rejected: { status: number; reason: string }[];
    records: InboundConnRecord[];
  };
  snapshot: Snapshot;
  /** Resolves once `n` tunnels have been recorded closed by the server. */
  waitClosed(n: number): Promise<void>;
  client(opts?: HboneClientOptions): HboneClient;
  /** A request from sleep (srcIp) to dstIp:port, expecting echo's identity. */
  request(port: number, over?: Partial<HboneRequest>): HboneRequest;
  close(): Promise<void>;
}

export async function startHarness(
  lb: LoopbackBlock,
  hosts: { src: number; dst: number },
  certs: Certs,
  over: Partial<HboneServerOptions<Snapshot>> = {},
): Promise<Harness> {
  const srcIp = lb.ip(hosts.src);
  const dstIp = lb.ip(hosts.dst);
  const logs: LogLine[] = [];
  const log = collectingLog(logs);
  const manager = new ConnectionManager({ log });
  const events: Harness['events'] = { opened: 0, closed: [], rejected: [], records: [] };
  const closeWaiters: { n: number; resolve: () => void }[] = [];
  const sink: ConnEvents = {
    onOpen: (rec) => {
      events.opened++;
      events.records.push(rec);
    },
    onClose: (_rec, bytes, reason) => {
      events.closed.push({ reason, received: bytes.received, sent: bytes.sent });
      for (const w of closeWaiters.splice(0)) {
        if (events.closed.length >= w.n) w.resolve();
        else closeWaiters.push(w);
      }
    },
    onReject: (_i, status, reason) => events.rejected.push({ status, reason }),
  };
  const clients: HboneClient[] = [];
  const h: Harness = {
    certs,
    srcIp,
    dstIp,
    hbonePort: 0,
    server: undefined as unknown as HboneServer<Snapshot>,
    manager,
    logs,
    events,
    snapshot: snapshotDoc(srcIp, dstIp),
    waitClosed(n) {
      return new Promise((resolve) => {
        if (events.closed.length >= n) resolve();
        else closeWaiters.push({ n, resolve });
      });
    },
    client(opts = {}) {
      const c = new HboneClient(opts);
      clients.push(c);
      return c;
    },
    request(port, o = {}) {
      return {
        source: certs.client,
        sourceIp: srcIp,
        expected: [ECHO],
        nextHop: { ip: dstIp, port: h.hbonePort },
        authority: `${dstIp}:${port}`,
        headers: { baggage: 'k8s.namespace.name=default,k8s.deployment.name=sleep', forwarded: `for="${srcIp}:40000"`, traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00' },
        ...o,
      };
    },
    async close() {
      for (const c of clients) c.destroy();
      await h.server.shutdown();
    },
  };
  const server = await startInbound<Snapshot>(
    { snapshot: () => h.snapshot, authorize, connections: manager, log, events: sink, tickMs: 0, ...over },
    [{ ip: dstIp, port: 0, cert: () => certs.server }],
  );
  Object.assign(h, { server, hbonePort: server.addresses().get(dstIp)!.port });
  return h;
}

/** Upstream app: echoes, propagating half-close. */
export async function echoServer(host: string): Promise<{ port: number; close(): Promise<void>; sockets: Set<net.Socket> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => undefined);
    s.pipe(s);
  });
  await new Promise<void>((r) => server.listen(0, host, r));
  return {
    port: (server.address() as net.AddressInfo).port,
    sockets,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

/** Starts a TCP server for one-off behaviours; returns its port and a closer. */
export async function tcpServer(host: string, onConn: (s: net.Socket) => void): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => undefined);
    onConn(s);
  });
  await new Promise<void>((r) => server.listen(0, host, r));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

/** Reads a stream to its end (or close); resolves with everything received. */
export function readAll(s: NodeJS.ReadableStream & { on(ev: 'close', fn: () => void): unknown }): Promise<Buffer> {
  return new Promise((resolve) => {
    const parts: Buffer[] = [];
    let done = false;
    const finish = (): void => {
      if (done) return;
      done = true;
      resolve(Buffer.concat(parts));
    };
    s.on('data', (c: Buffer) => parts.push(c));
    s.on('end', finish);
    s.on('close', finish);
    s.on('error', () => undefined);
  });
}

/** Writes `data` in `chunk`-sized slices honouring backpressure, then ends. */
export async function writeAll(w: NodeJS.WritableStream & { writableNeedDrain?: boolean; destroyed?: boolean }, data: Buffer, chunk: number): Promise<void> {
  for (let off = 0; off < data.length; off += chunk) {
    if (w.destroyed) throw new Error('destination destroyed while writing');
    if (!w.write(data.subarray(off, off + chunk))) {
      await new Promise<void>((resolve, reject) => {
        const onDrain = (): void => {
          w.removeListener('close', onClose);
          resolve();
        };
        const onClose = (): void => {
          w.removeListener('drain', onDrain);
          reject(new Error('closed while waiting for drain'));
        };
        w.once('drain', onDrain);
        w.once('close', onClose);
      });
    }
  }
  w.end();
}

export function sha256(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

/** Resolves when `stream` emits 'close'. */
export function closed(stream: http2.ClientHttp2Stream | net.Socket): Promise<void> {
  return new Promise((r) => {
    if (stream.destroyed && (stream as { closed?: boolean }).closed) return r();
    stream.once('close', () => r());
  });
}

export type { HboneTunnel };
