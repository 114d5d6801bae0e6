/**
 * The ztunnel side of ZDS, istio-cni's workload protocol (in-pod mode, issue 6): connect to the
 * node agent's Unix SOCK_SEQPACKET socket (INPOD_UDS), say hello (version 1), then take requests
 * one at a time and answer each with an ack (empty error = done):
 *   add(uid, info) + the pod's netns fd (SCM_RIGHTS) → serve the pod (listeners in its netns);
 *   keep(uid)      → the pod stays as it is (sent instead of add when cni cannot reopen its netns);
 *   del(uid)       → stop serving it: listeners closed, connections cut, its fd closed;
 *   snapshot-sent  → every pod the agent knows has been sent on this connection: pods we still
 *                    hold that were not mentioned are gone; readiness waits for the first one.
 * The socket going away (agent restart) is retried with backoff; pods keep being served meanwhile
 * and the agent re-sends its snapshot on the next connection.
 *
 * Invariants: `pods` is the set every data plane was last asked to serve; a netns fd is closed
 * only after the data planes have let its pod go; requests are handled strictly in order.
 */
import { fstatSync } from 'node:fs';
import type { Logger } from 'pino';
import type { NativeApi } from '../native/addon';
import { SeqpacketSocket } from '../native/seqpacket';
import { podName, type InpodPod, type PodState } from './pod';
import { decodeRequest, encodeAck, encodeHello, type ZdsRequest } from './zds-codec';

export interface ZdsClientDeps {
  readonly native: NativeApi;
  /** INPOD_UDS */
  readonly path: string;
  readonly log: Logger;
  /** Serve exactly these pods (every data plane); resolves with each pod's state. */
  apply(pods: readonly InpodPod[]): Promise<Record<string, PodState>>;
  /** Each pod's current state across the data planes (config_dump); default: as of the last apply. */
  states?(): Record<string, PodState>;
  /** The first snapshot-sent arrived (readiness). */
  onSynced(): void;
  /** Reconnect backoff: first delay and cap (default 100 ms, 5 s), doubled per failed attempt. */
  readonly backoffMs?: { readonly initial: number; readonly max: number };
}

/** Whether two fds name the same network namespace (nsfs inode), so a re-add can be told from a new sandbox. */
function sameNetns(a: number, b: number): boolean {
  try {
    const x = fstatSync(a);
    const y = fstatSync(b);
    return x.dev === y.dev && x.ino === y.ino;
  } catch {
    return false;
  }
}

/** Requests queued without an ack before the agent is considered broken (istio-cni sends one at a time). */
const MAX_IN_FLIGHT = 32;
/** Pods one node proxy takes (Kubernetes' default is 110 per node; this only bounds a broken agent). */
const MAX_PODS = 4096;

export class ZdsClient {
  private readonly pods = new Map<string, InpodPod>();
  private sock: SeqpacketSocket | null = null;
  private queue: Promise<void> = Promise.resolve();
  private seen = new Set<string>();
  private attempts = 0;
  private timer: NodeJS.Timeout | null = null;
  private closed = false;
  private synced = false;
  private lastConnectError: string | null = null;
  private states: Record<string, PodState> = {};

  constructor(private readonly deps: ZdsClientDeps) {}

  start(): void {
    this.connect();
  }

  /** Whether the first snapshot-sent has arrived. */
  get isSynced(): boolean {
    return this.synced;
  }

  /** The registered pods and what the data planes made of them (config_dump). */
  workloadState(): Record<string, { readonly name: string; readonly namespace: string; readonly serviceAccount: string } & PodState> {
    const out: Record<string, { name: string; namespace: string; serviceAccount: string } & PodState> = {};
    const states = this.deps.states?.() ?? this.states;
    for (const [uid, p] of this.pods) {
      out[uid] = { name: p.name, namespace: p.namespace, serviceAccount: p.serviceAccount, ...(states[uid] ?? { state: 'pending', reason: 'starting' }) };
    }
    return out;
  }

  /** Stops talking to the agent. Pod fds are closed too: call after the data planes have closed. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.sock?.close();
    this.sock = null;
    await this.queue;
    for (const p of this.pods.values()) this.closeFd(p.netnsFd);
    this.pods.clear();
  }

  private connect(): void {
    this.timer = null;
    if (this.closed) return;
    let sock: SeqpacketSocket;
    try {
      sock = SeqpacketSocket.connect(this.deps.native, this.deps.path);
      sock.send(encodeHello());
    } catch (err) {
      const why = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
      // the agent is often not up yet when the proxy starts: say it once, then quietly retry
      if (why !== this.lastConnectError) this.deps.log.warn({ path: this.deps.path, err: why }, 'cannot reach the CNI node agent (ZDS); retrying');
      this.lastConnectError = why;
      return this.retry();
    }
    this.lastConnectError = null;
    this.sock = sock;
    this.seen = new Set();
    this.deps.log.info({ path: this.deps.path }, 'connected to the CNI node agent (ZDS), hello sent');
    let inFlight = 0;
    sock.on('message', (data: Buffer, fds: number[]) => {
      this.attempts = 0;
      // istio-cni waits for each ack; a peer that floods requests (each may carry an fd) is cut off
      if (++inFlight > MAX_IN_FLIGHT) {
        for (const fd of fds) this.closeFd(fd);
        if (inFlight === MAX_IN_FLIGHT + 1) {
          this.deps.log.error({ inFlight }, 'the CNI node agent sent requests without waiting for acks; dropping the ZDS connection');
          sock.close();
        }
        return;
      }
      this.queue = this.queue.then(() => this.handle(sock, data, fds)).finally(() => inFlight--);
    });
    sock.once('close', ({ reason }) => {
      if (this.sock === sock) this.sock = null;
      if (this.closed) return;
      this.deps.log.warn({ path: this.deps.path, reason }, 'ZDS connection to the CNI node agent lost; pods stay served, reconnecting');
      this.retry();
    });
  }

  private retry(): void {
    if (this.closed || this.timer) return;
    const { initial, max } = this.deps.backoffMs ?? { initial: 100, max: 5000 };
    const delay = Math.min(max, initial * 2 ** this.attempts);
    this.attempts++;
    this.timer = setTimeout(() => this.connect(), delay);
  }

  private async handle(sock: SeqpacketSocket, data: Buffer, fds: number[]): Promise<void> {
    if (sock !== this.sock) {
      // queued from a connection that is gone: its bookkeeping (seen pods) no longer applies
      for (const fd of fds) this.closeFd(fd);
      return;
    }
    let req: ZdsRequest;
    try {
      req = decodeRequest(data);
    } catch (err) {
      for (const fd of fds) this.closeFd(fd);
      this.deps.log.error({ err: (err as Error).message }, 'undecodable ZDS message');
      return this.ack(sock, `ztunnel-ts could not decode the request: ${(err as Error).message}`);
    }
    let error = '';
    try {
      error = await this.dispatch(req, fds);
    } catch (err) {
      error = (err as Error).message;
    }
    if (error !== '') this.deps.log.warn({ request: req.kind, uid: 'uid' in req ? req.uid : undefined, err: error }, 'ZDS request failed');
    this.ack(sock, error);
  }

  /** Carries out one request; returns the ack's error ('' = success). */
  private async dispatch(req: ZdsRequest, fds: number[]): Promise<string> {
    if (req.kind !== 'add') for (const fd of fds) this.closeFd(fd);
    switch (req.kind) {
      case 'add': {
        const refuse = (why: string): string => {
          for (const fd of fds) this.closeFd(fd);
          return `add ${req.uid}: ${why}`;
        };
        if (fds.length !== 1) return refuse(`expected exactly one network-namespace fd, got ${fds.length}`);
        // the pod is found in the snapshot by its namespace, name and service account
        if (req.info === null || req.info.name === '' || req.info.namespace === '') return refuse('workload_info with the pod name and namespace is required');
        if (!this.pods.has(req.uid) && this.pods.size >= MAX_PODS) return refuse(`this node already has ${MAX_PODS} pods registered`);
        const pod: InpodPod = { uid: req.uid, name: req.info.name, namespace: req.info.namespace, serviceAccount: req.info.serviceAccount, netnsFd: fds[0]! };
        const old = this.pods.get(pod.uid);
        if (old && sameNetns(old.netnsFd, pod.netnsFd)) {
          // the agent re-sends its pods after a reconnect: same namespace, keep serving untouched
          this.closeFd(pod.netnsFd);
          this.seen.add(pod.uid);
          return '';
        }
        this.pods.set(pod.uid, pod);
        this.seen.add(pod.uid);
        try {
          await this.push();
        } finally {
          if (old) this.closeFd(old.netnsFd);
        }
        const st = this.states[pod.uid];
        if (st?.state === 'failed') {
          this.pods.delete(pod.uid);
          try {
            await this.push();
          } finally {
            this.closeFd(pod.netnsFd);
          }
          return st.reason;
        }
        this.deps.log.info({ pod: podName(pod), uid: pod.uid, state: st?.state }, 'pod added over ZDS');
        return '';
      }
      case 'keep':
        if (!this.pods.has(req.uid)) return `keep ${req.uid}: no such workload here`;
        this.seen.add(req.uid);
        return '';
      case 'del': {
        const pod = this.pods.get(req.uid);
        if (!pod) return '';
        this.pods.delete(req.uid);
        try {
          await this.push();
        } finally {
          this.closeFd(pod.netnsFd);
        }
        this.deps.log.info({ pod: podName(pod), uid: pod.uid }, 'pod deleted over ZDS');
        return '';
      }
      case 'snapshot-sent': {
        const gone = [...this.pods.values()].filter((p) => !this.seen.has(p.uid));
        for (const p of gone) this.pods.delete(p.uid);
        try {
          if (gone.length > 0) await this.push();
        } finally {
          for (const p of gone) this.closeFd(p.netnsFd);
        }
        if (gone.length > 0) this.deps.log.info({ pods: gone.map(podName) }, 'pods not in the node agent snapshot removed');
        if (!this.synced) {
          this.synced = true;
          this.deps.onSynced();
        }
        return '';
      }
    }
  }

  private async push(): Promise<void> {
    this.states = await this.deps.apply([...this.pods.values()]);
  }

  private ack(sock: SeqpacketSocket, error: string): void {
    try {
      sock.send(encodeAck(error));
    } catch (err) {
      this.deps.log.warn({ err: (err as Error).message }, 'cannot send the ZDS ack');
    }
  }

  private closeFd(fd: number): void {
    try {
      this.deps.native.close(fd);
    } catch (err) {
      this.deps.log.warn({ fd, err: (err as Error).message }, 'closing a pod network-namespace fd failed');
    }
  }
}
