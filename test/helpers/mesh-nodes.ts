/**
 * Pieces shared by the fault, soak and SOCKS5-hostile tests: a proxy node built by the real
 * composition (startApp / startNodeApp) from an env map, with SOCKS5 on, admin/stats/readiness on
 * free ports of the test file's loopback block and its JSON log kept in memory; snapshot writes
 * by rename (as ConfigMap updates do); patterned payloads and hashed round trips; a tiny GET.
 */
import { createHash } from 'node:crypto';
import { renameSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import type { Socket } from 'node:net';
import { parseConfig } from '../../src/config/config';
import { Logging } from '../../src/logging/logger';
import { startApp, startNodeApp, type App, type NodeApp } from '../../src/app';

export interface MeshNode<A extends App | NodeApp = App> {
  readonly app: A;
  readonly lines: string[];
  readonly socks: { host: string; port: number };
}

export interface NodeOptions {
  readonly name: string;
  /** Where SOCKS5, admin, stats and readiness listen (port 0 each). */
  readonly ip: string;
  readonly snapshotPath: string;
  readonly caDir: string;
  readonly nativeRelay: boolean;
  readonly env?: Record<string, string>;
}

/** The env of one test node on loopback: SOCKS5 on, every endpoint on `ip` port 0, JSON logs; `env` adds or overrides. */
export function nodeEnv(o: NodeOptions): Record<string, string> {
  return {
    ZTUNNEL_NATIVE_RELAY: String(o.nativeRelay),
    NODE_NAME: o.name,
    LOCAL_XDS_PATH: o.snapshotPath,
    LOCAL_CA_DIR: o.caDir,
    UNSTABLE_ENABLE_SOCKS5: 'true',
    ZTUNNEL_SOCKS5_ADDR: `${o.ip}:0`,
    ZTUNNEL_ADMIN_ADDR: `${o.ip}:0`,
    ZTUNNEL_STATS_ADDR: `${o.ip}:0`,
    ZTUNNEL_READINESS_ADDR: `${o.ip}:0`,
    LOG_FORMAT: 'json',
    ...o.env,
  };
}

/** A node whose data plane runs on this thread. */
export async function startNode(o: NodeOptions): Promise<MeshNode<App>> {
  const config = parseConfig(nodeEnv(o), { logicalCpus: 2 });
  const lines: string[] = [];
  const app = await startApp(config, new Logging({ ...config.log, destination: { write: (s: string) => void lines.push(s) } }));
  await app.data.settled();
  const a = app.addresses().get('socks5')!;
  return { app, lines, socks: { host: a.host, port: a.port } };
}

/** A node whose data plane runs in worker threads (ZTUNNEL_WORKER_THREADS in `o.env`). */
export async function startWorkerNode(o: NodeOptions): Promise<MeshNode<NodeApp>> {
  const config = parseConfig(nodeEnv(o), { logicalCpus: 2 });
  const lines: string[] = [];
  const app = await startNodeApp(config, new Logging({ ...config.log, destination: { write: (s: string) => void lines.push(s) } }));
  const a = app.addresses().get('socks5')!;
  return { app, lines, socks: { host: a.host, port: a.port } };
}

/** Rename-replace, so the watcher never reads a half-written file. */
export function writeSnapshot(path: string, text: string): void {
  writeFileSync(`${path}.tmp`, text);
  renameSync(`${path}.tmp`, path);
}

export function workloadDoc(name: string, ip: string, node: string, sa = name): Record<string, unknown> {
  return { uid: `c1//v1/Pod/default/${name}`, name, namespace: 'default', serviceAccount: sa, workloadIps: [ip], protocol: 'HBONE', node, canonicalName: name, workloadName: name };
}

export function denyPrincipal(name: string, sa: string): Record<string, unknown> {
  return { name, namespace: 'default', scope: 'Namespace', action: 'Deny', rules: [[[{ principals: [{ Exact: `cluster.local/ns/default/sa/${sa}` }] }]]] };
}

/** Deterministic bytes that differ per seed, so a misrouted chunk changes the hash. */
export function pattern(size: number, seed: number): Buffer {
  const b = Buffer.alloc(Math.ceil(size / 4) * 4);
  for (let i = 0; i < b.length; i += 4) b.writeUInt32LE((Math.imul(i, 2654435761) + seed) >>> 0, i);
  return b.subarray(0, size);
}

export const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/**
 * Sends `payload` (or only its prefix `sendNow`, the caller writing the rest) and resolves with
 * the sha256 of the same number of echoed bytes; rejects with the socket's error code (or
 * "closed"/"end") if the connection ends first.
 */
export function echoHash(s: Socket, payload: Buffer, sendNow: Buffer = payload): Promise<string> {
  return new Promise((resolve, reject) => {
    const h = createHash('sha256');
    let got = 0;
    let code = '';
    const onError = (e: NodeJS.ErrnoException): void => void (code = e.code ?? e.message);
    const onData = (d: Buffer): void => {
      h.update(d);
      got += d.length;
      if (got >= payload.length) {
        done();
        s.pause();
        resolve(h.digest('hex'));
      }
    };
    const onClose = (): void => {
      done();
      reject(Object.assign(new Error(`connection closed after ${got} of ${payload.length} bytes (${code || 'no error'})`), { code: code || 'closed' }));
    };
    // an EOF before every byte came back fails the transfer too (the peer may never close)
    const onEnd = (): void => void (code ||= 'end');
    const done = (): void => {
      s.off('data', onData);
      s.off('close', onClose);
      s.off('end', onClose);
      s.off('end', onEnd);
      s.off('error', onError);
    };
    s.on('data', onData);
    s.on('error', onError);
    s.once('end', onEnd);
    s.once('end', onClose);
    s.once('close', onClose);
    s.resume();
    if (!s.destroyed) s.write(sendNow);
  });
}

/**
 * How a socket ended: 'end' (clean FIN), or the error code it closed with. Resumes the socket
 * (what arrives meanwhile is dropped unless another listener takes it): a paused socket reads
 * nothing, so it would notice neither a FIN nor a reset.
 */
export function endingOf(s: Socket): Promise<string> {
  return new Promise((resolve) => {
    let how = '';
    s.resume();
    s.on('error', (e: NodeJS.ErrnoException) => void (how ||= e.code ?? e.message));
    s.once('end', () => void (how ||= 'end'));
    s.once('close', () => resolve(how || 'closed'));
  });
}

export function get(addr: { host: string; port: number }, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: addr.host, port: addr.port, path, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}
