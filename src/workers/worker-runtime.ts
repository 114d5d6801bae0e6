/**
 * One data-plane worker thread: builds its own live objects (Logging, metrics registry, snapshot
 * and certificate mirrors, access log, addon instance) from the plain data the supervisor sends,
 * and runs the same data plane as the main-thread mode, with every listener bound through
 * SO_REUSEPORT so the kernel spreads connections over the workers.
 *
 * Invariants: the mirrors exist from the moment 'init' arrives, so snapshot/cert messages that
 * follow it are applied even while the listeners are still binding; requests are answered only
 * once the data plane is up (they wait for it); a failed start is reported as a fatal 'error'
 * message and the thread exits, which the supervisor treats like any other death.
 */
import type { MessagePort } from 'node:worker_threads';
import { buildInfo } from '../cli/version';
import type { Config } from '../config/config';
import { startDataPlane, type DataPlane } from '../data-plane';
import { AccessLog } from '../logging/access-log';
import { Logging } from '../logging/logger';
import { ConnObserver } from '../metrics/conn-observer';
import { registerPoolMetrics } from '../metrics/control-plane';
import { registerLoopLag } from '../metrics/loop-lag';
import { ProxyMetrics } from '../metrics/registry';
import { loadNative } from '../native/addon';
import { ProxyError } from '../errors';
import { joinHostPort } from '../net/ip';
import { ConnectionLimit } from '../net/conn-limit';
import { CertMirror } from './cert-mirror';
import type { AddressList, MainToWorker, WorkerRequest, WorkerToMain } from './protocol';
import { SnapshotMirror } from './snapshot-mirror';

type MsgPods = Extract<MainToWorker, { type: 'pods' }>;

/** How long a connection waits for the first certificate of its workload to arrive from the main thread. */
const CERT_WAIT_MS = 10_000;

interface Running {
  readonly data: DataPlane;
  readonly metrics: ProxyMetrics;
  readonly observer: ConnObserver;
  readonly stopLoopLag: () => void;
}

/** The port is `parentPort` in a real worker; tests may pass one end of a MessageChannel. */
export function runWorker(port: MessagePort, exit: (code: number) => void): void {
  const post = (msg: WorkerToMain): void => port.postMessage(msg);
  let workerId = -1;
  let logging: Logging | null = null;
  let mirror: SnapshotMirror | null = null;
  let certs: CertMirror | null = null;
  let started: Promise<Running> | null = null;

  const addressesOf = (data: DataPlane): AddressList => [...data.addresses()];

  const init = (msg: Extract<MainToWorker, { type: 'init' }>): void => {
    workerId = msg.workerId;
    const config: Config = msg.config;
    logging = new Logging(config.log);
    mirror = new SnapshotMirror(config.nodeName);
    certs = new CertMirror({ waitMs: CERT_WAIT_MS });
    mirror.apply(msg.snapshot);
    for (const c of msg.certs) certs.put(c, msg.certSeq);
    const limit = msg.limit === null ? null : new ConnectionLimit(msg.limit, msg.workerId);
    started = start(msg.workerId, config, logging, mirror, certs, limit);
    // queued before any later 'pods' message can be: the newest set always wins
    if (msg.podSeq > 0) applyPods(msg.podSeq, msg.pods);
    started.then(
      ({ data }) => {
        void data.settled().then(() => post({ type: 'ready', workerId, version: mirror!.current.version, addresses: addressesOf(data) }));
        mirror!.subscribe((next) => {
          void data.settled().then(() => {
            post({ type: 'snapshot-applied', workerId, version: next.version, addresses: addressesOf(data) });
            // in-pod: a swap can bring pending pods up; the main thread's view of them follows
            if (data.inpod) post({ type: 'pods-applied', workerId, seq: podSeq, states: data.inpod.states(), addresses: addressesOf(data) });
          });
        });
      },
      (err: unknown) => {
        const e = err as { code?: string; message?: string };
        post({ type: 'error', workerId, code: e.code ?? 'ERR_WORKER_START', message: e.message ?? String(err), fatal: true });
        exit(1);
      },
    );
  };

  // In-pod mode: pod sets are applied strictly in the order they arrive, and one older than a set
  // already queued is dropped (a replacement worker's init can trail the supervisor's next set).
  // Each answer carries its seq.
  let podSeq = 0;
  let newestSeq = 0;
  let podChain: Promise<void> = Promise.resolve();
  const applyPods = (seq: number, pods: MsgPods['pods']): void => {
    if (started === null || seq <= newestSeq) return;
    newestSeq = seq;
    const running = started;
    podChain = podChain.then(async () => {
      try {
        const { data } = await running;
        const states = await data.applyPods(pods);
        podSeq = Math.max(podSeq, seq);
        post({ type: 'pods-applied', workerId, seq, states, addresses: addressesOf(data) });
      } catch (err) {
        const e = err as { code?: string; message?: string };
        post({ type: 'error', workerId, code: e.code ?? 'ERR_INPOD', message: e.message ?? String(err), fatal: false });
        post({ type: 'pods-applied', workerId, seq, states: Object.fromEntries(pods.map((p) => [p.uid, { state: 'failed', reason: e.message ?? String(err) }])), addresses: [] });
      }
    });
  };

  const answer = async (requestId: number, what: WorkerRequest): Promise<void> => {
    try {
      if (started === null) throw new Error('worker not initialised');
      const { data, metrics, observer, stopLoopLag } = await started;
      let value: unknown = null;
      if (what === 'metrics') value = await metrics.json();
      else if (what === 'connections') value = observer.connections();
      else if (what === 'stats') value = { workerId, live: data.liveConnections(), relays: data.relayCounts() };
      else if (what === 'drain') await data.drain();
      else if (what === 'close') {
        await data.close();
        stopLoopLag();
      }
      post({ type: 'reply', requestId, value, error: null });
      if (what === 'close') port.close();
    } catch (err) {
      post({ type: 'reply', requestId, value: null, error: (err as Error)?.message ?? String(err) });
    }
  };

  port.on('message', (msg: MainToWorker) => {
    switch (msg.type) {
      case 'init':
        return init(msg);
      case 'snapshot':
        try {
          mirror?.apply(msg);
        } catch (err) {
          // the last good snapshot stays in force (SnapshotMirror's invariant)
          const e = err as { code?: string; message?: string };
          post({ type: 'error', workerId, code: e.code ?? 'ERR_SNAPSHOT_BYTES', message: e.message ?? String(err), fatal: false });
        }
        return;
      case 'pods':
        return applyPods(msg.seq, msg.pods);
      case 'cert':
        return void certs?.put(msg.cert, msg.seq);
      case 'forget-cert':
        return certs?.forget(msg.identity);
      case 'log-levels':
        return logging?.setLevels(msg.level, msg.targets);
      case 'request':
        return void answer(msg.requestId, msg.what);
    }
  });
}

async function start(workerId: number, config: Config, logging: Logging, mirror: SnapshotMirror, certs: CertMirror, limit: ConnectionLimit | null): Promise<Running> {
  // process-wide collectors belong to the main thread's registry only
  const metrics = new ProxyMetrics({ version: buildInfo().version, processMetrics: false });
  // the data plane's own event-loop lag (the process collectors above are the main thread's);
  // stopped at 'close' so that nothing of ours keeps the thread's loop alive
  const stopLoopLag = registerLoopLag(metrics.registry, workerId);
  const observer = new ConnObserver({
    traffic: metrics.traffic,
    access: new AccessLog(logging.for('access')),
    snapshot: () => mirror.current,
    clusterId: config.clusterId,
    network: config.network,
  });
  // the supervisor only starts workers when the addon loaded on the main thread
  const native = loadNative();
  const data = await startDataPlane({
    config,
    store: mirror,
    certs,
    log: logging.for('proxy'),
    events: observer.inbound,
    outboundObserver: observer.outbound,
    connectionLimit: limit,
    listenFd: (host, port) => {
      try {
        return native.listen({ host, port, backlog: 511, reusePort: true }).fd;
      } catch (err) {
        // the same error as a main-thread bind (src/net/listener.ts), so operators see one message
        throw new ProxyError('ERR_LISTEN', `cannot listen on ${joinHostPort(host, port)} (SO_REUSEPORT): ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err });
      }
    },
  });
  registerPoolMetrics(metrics.registry, data.client);
  return { data, metrics, observer, stopLoopLag };
}
