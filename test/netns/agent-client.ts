/**
 * Parent side of ns-agent.ts: starts an agent inside a namespace of a harness cluster and sends it
 * commands. The cluster owns the process (destroy() kills it); stop() ends it earlier.
 */
import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { Cluster, NsRef } from './harness';
import type { ConnectCommand, ConnectResult, ListenCommand } from './ns-agent';

export interface ConnectFailure {
  error: string;
  code: string;
}

export interface NsAgent {
  readonly pid: number;
  listen(cmd: Omit<ListenCommand, 'op' | 'id'>): Promise<number>;
  /** The landing report, or the client-side error (ECONNREFUSED ...) as a value. */
  connect(cmd: Omit<ConnectCommand, 'op' | 'id'>): Promise<ConnectResult | ConnectFailure>;
  stop(): Promise<void>;
}

interface Reply {
  id: number;
  error?: string;
  code?: string;
  port?: number;
  result?: ConnectResult;
  pid?: number;
}

const AGENT = join(__dirname, 'ns-agent.js');

export async function startAgent(cluster: Cluster, ns: NsRef): Promise<NsAgent> {
  const child: ChildProcess = cluster.spawnIn(ns, [process.execPath, AGENT], { stdio: ['pipe', 'pipe', 'pipe'] });
  const waiting = new Map<number, (r: Reply) => void>();
  let stderr = '';
  let nextId = 1;
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  createInterface({ input: child.stdout! }).on('line', (line) => {
    const r = JSON.parse(line) as Reply;
    const w = waiting.get(r.id);
    waiting.delete(r.id);
    w?.(r);
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  void exited.then(() => {
    for (const w of waiting.values()) w({ id: -1, error: `agent exited: ${stderr.trim()}`, code: 'EAGENT' });
    waiting.clear();
  });
  const send = (body: object): Promise<Reply> =>
    new Promise((resolve) => {
      const id = nextId++;
      waiting.set(id, resolve);
      child.stdin!.write(JSON.stringify({ ...body, id }) + '\n');
    });
  const ready = await new Promise<Reply>((resolve) => waiting.set(0, resolve));
  if (ready.error) throw new Error(`ns-agent in ${typeof ns === 'string' ? ns : ns.netns} did not start: ${ready.error}`);
  return {
    pid: ready.pid ?? -1,
    async listen(cmd) {
      const r = await send({ op: 'listen', ...cmd });
      if (r.error !== undefined || r.port === undefined) throw new Error(`ns-agent listen ${cmd.host}:${cmd.port}: ${r.error}`);
      return r.port;
    },
    async connect(cmd) {
      const r = await send({ op: 'connect', ...cmd });
      return r.result ?? { error: r.error ?? 'no result', code: r.code ?? 'ERR' };
    },
    async stop() {
      child.stdin!.end();
      const bound = setTimeout(() => child.kill('SIGKILL'), 3000);
      await exited;
      clearTimeout(bound);
    },
  };
}
