/**
 * In-pod mode's half of a data plane (one per thread that carries traffic): turns the set of pods
 * registered over ZDS into listeners INSIDE each pod's network namespace — :15001 outbound
 * capture, :15006 plaintext inbound, :15008 HBONE (served by the shared HboneServer, keyed by the
 * pod IP), and :15080 SOCKS5 when enabled — all SO_REUSEPORT so every worker gets its own.
 *
 * A pod whose workload is not in the snapshot yet (looked up by uid, then namespace/name) is
 * `pending`: acknowledged, logged, and brought up by the first snapshot that has it.
 * Removing a pod closes its listeners and cuts its live connections at once.
 *
 * Invariants: `pods` holds exactly the pods of the last apply(); a pod in state `up` has every
 * listener of PodListeners open; changes run one at a time (apply and snapshot swaps queue).
 */
import { isIP, type Socket } from 'node:net';
import type { Logger } from 'pino';
import type { Config } from '../config/config';
import { INBOUND_HBONE_PORT, INBOUND_PLAINTEXT_PORT, OUTBOUND_PORT } from '../config/ports';
import type { CertSource } from '../data-plane';
import type { KeepaliveOptions, NativeApi } from '../native/addon';
import { Listener, type BoundAddress } from '../net/listener';
import type { ConnectionManager } from '../proxy/connection-manager';
import type { HboneClient } from '../proxy/hbone-client';
import type { HboneServer } from '../proxy/hbone-server';
import { tcpConnect, type ConnEvents } from '../proxy/inbound';
import type { OutboundDeps, OutboundObserver } from '../proxy/outbound';
import { identityOf } from '../proxy/outbound-plan';
import { Socks5Server, type SocketRelay } from '../proxy/socks5-server';
import type { Workload } from '../state/model';
import type { Snapshot } from '../state/snapshot';
import { podName, type InpodPod, type PodState } from './pod';
import { keepaliveListener, keepaliveOptions } from '../net/keepalive';
import { podInboundSocket, podOutboundSocket, podTunnelSocket, type PodNetns, type PodSocketOptions } from './pod-sockets';
import { serveInbound, serveOutbound, type LiveRelay, type PodContext, type PodTrafficDeps } from './pod-traffic';
import { createServer } from 'node:net';
import type { ConnectionLimit } from '../net/conn-limit';

export interface InpodPlaneDeps {
  readonly config: Config;
  readonly native: NativeApi;
  snapshot(): Snapshot;
  readonly certs: CertSource;
  readonly hbone: HboneServer<Snapshot>;
  readonly client: HboneClient;
  readonly connections: ConnectionManager;
  readonly relaySockets: (a: Socket, b: Socket) => SocketRelay;
  readonly log: Logger;
  readonly events?: ConnEvents;
  readonly observer?: OutboundObserver;
  /** ZTUNNEL_MAX_CONNECTIONS, shared with the other listeners; null = no limit. */
  readonly connectionLimit?: ConnectionLimit | null;
  readonly onLimitRefused?: (socket: Socket) => void;
}

interface RunningPod {
  readonly pod: InpodPod;
  /** This data plane's own dup of the pod's netns fd; closed when the pod is removed. */
  readonly netns: PodNetns;
  /** Options for every socket made inside the pod, built once at admission (reused per connection). */
  readonly sockets: PodSocketOptions;
  state: PodState;
  ctx: PodContext | null;
  readonly listeners: Listener[];
  socks5: Socks5Server | null;
  /** The IP whose HBONE listener this pod opened (null until it did). */
  hboneIp: string | null;
}

const ANY = { 4: '0.0.0.0', 6: '::' } as const;

/**
 * The workload a ZDS pod stands for, as ztunnel's find_by_info: a workload on THIS node with the
 * pod's uid, else one on this node with its namespace, name and (when ZDS sent one) service account.
 * Never a workload of another node or cluster that happens to share the name.
 */
export function workloadForPod(snap: Snapshot, pod: Pick<InpodPod, 'uid' | 'namespace' | 'name' | 'serviceAccount'>): Workload | undefined {
  const byUid = snap.workloadByUid(pod.uid);
  if (byUid !== undefined && byUid.node === snap.nodeName) return byUid;
  return snap
    .localWorkloads()
    .find((w) => w.namespace === pod.namespace && w.name === pod.name && (pod.serviceAccount === '' || w.serviceAccount === pod.serviceAccount));
}

export class InpodPlane {
  private readonly pods = new Map<string, RunningPod>();
  private readonly byIp = new Map<string, RunningPod>();
  private running: Promise<unknown> = Promise.resolve();
  private readonly traffic: PodTrafficDeps;
  private accepting = true;
  /** KEEPALIVE_* as socket options: config is frozen, so computed once, not per connection. */
  private readonly keepalive: KeepaliveOptions | null;

  constructor(private readonly deps: InpodPlaneDeps) {
    this.keepalive = keepaliveOptions(deps.config.keepalive);
    this.traffic = {
      native: deps.native,
      snapshot: deps.snapshot,
      log: deps.log,
      connections: deps.connections,
      relaySockets: deps.relaySockets,
      events: deps.events,
      observer: deps.observer,
    };
  }

  /** Makes the running pods exactly `pods`; resolves with each pod's state once done. */
  apply(pods: readonly InpodPod[]): Promise<Record<string, PodState>> {
    const next = this.running.then(async () => {
      const want = new Map(pods.map((p) => [p.uid, p]));
      for (const [uid, rp] of this.pods) {
        const p = want.get(uid);
        // same uid with another netns fd = the pod was re-added (sandbox restarted): start over
        if (p === undefined || p.netnsFd !== rp.pod.netnsFd) await this.remove(rp, p === undefined ? 'pod removed' : 'pod re-added');
      }
      for (const p of pods) if (!this.pods.has(p.uid)) this.admit(p);
      await this.bringUp();
      return this.states();
    });
    this.running = next.catch(() => undefined);
    return next;
  }

  /** A snapshot swap: pending pods whose workload appeared come up; a pod whose IP changed restarts. */
  onSnapshot(): Promise<void> {
    const next = this.running.then(() => this.bringUp());
    this.running = next.catch(() => undefined);
    return next;
  }

  settled(): Promise<void> {
    return this.running.then(() => undefined);
  }

  states(): Record<string, PodState> {
    const out: Record<string, PodState> = {};
    for (const [uid, rp] of this.pods) out[uid] = rp.state;
    return out;
  }

  /** "inpod <ns/name> <port>" → bound address, for diagnostics and tests. */
  addresses(): Map<string, BoundAddress> {
    const out = new Map<string, BoundAddress>();
    for (const rp of this.pods.values()) {
      for (const l of rp.listeners) if (l.address) out.set(`inpod ${podName(rp.pod)} ${l.address.port}`, l.address);
      if (rp.socks5?.listener.address) out.set(`inpod ${podName(rp.pod)} socks5`, rp.socks5.listener.address);
    }
    return out;
  }

  /**
   * Pod connections no other counter of the data plane sees: JS-relayed outbound ones (spliced
   * relays are in the data plane's splice count, :15006 ones in the ConnectionManager).
   */
  liveConnections(): number {
    let n = 0;
    for (const rp of this.pods.values()) for (const l of rp.ctx?.live ?? []) if (!l.countedElsewhere) n++;
    return n;
  }

  /** The pod socket options for connecting to a pod's app from inside it (HBONE inbound leg). */
  socketOptionsFor(ip: string): PodSocketOptions | null {
    const rp = this.byIp.get(ip);
    return rp && rp.state.state === 'up' ? rp.sockets : null;
  }

  async drain(): Promise<void> {
    this.accepting = false;
    await Promise.all([...this.pods.values()].flatMap((rp) => [...rp.listeners.map((l) => l.stopAccepting()), rp.socks5?.listener.stopAccepting()]));
  }

  async close(): Promise<void> {
    this.accepting = false;
    await this.running;
    await Promise.all([...this.pods.values()].map((rp) => this.remove(rp, 'proxy shutting down')));
  }

  private admit(p: InpodPod): void {
    let fd = -1;
    let state: PodState = { state: 'pending', reason: 'starting' };
    try {
      fd = this.deps.native.dup(p.netnsFd);
    } catch (err) {
      state = { state: 'failed', reason: `cannot take the pod's network namespace (fd ${p.netnsFd}): ${(err as Error).message}` };
    }
    const netns: PodNetns = { fd, closed: fd < 0 };
    const sockets: PodSocketOptions = { native: this.deps.native, netns, mark: this.deps.config.packetMark, keepalive: this.keepalive };
    this.pods.set(p.uid, { pod: p, netns, sockets, state, ctx: null, listeners: [], socks5: null, hboneIp: null });
  }

  private async bringUp(): Promise<void> {
    if (!this.accepting) return;
    const snap = this.deps.snapshot();
    for (const rp of this.pods.values()) {
      if (rp.state.state === 'failed') continue;
      const w = workloadForPod(snap, rp.pod);
      if (rp.state.state === 'up') {
        // keep serving a pod whose workload left the snapshot; restart one whose address moved
        if (w === undefined || w.workloadIps[0] === rp.state.ip) continue;
        await this.stop(rp, `pod ${podName(rp.pod)} moved from ${rp.state.ip} to ${w.workloadIps[0] ?? 'no IP'}`);
      }
      if (w === undefined) {
        if (rp.state.state !== 'pending' || rp.state.reason === 'starting') {
          this.deps.log.warn({ pod: podName(rp.pod), uid: rp.pod.uid }, 'pod registered over ZDS has no workload on this node in the snapshot yet: it will be served once one appears');
        }
        rp.state = { state: 'pending', reason: `no workload for ${podName(rp.pod)} (uid ${rp.pod.uid}) on this node in the snapshot` };
        continue;
      }
      await this.start(rp, w);
    }
  }

  private async start(rp: RunningPod, w: Workload): Promise<void> {
    const ip = w.workloadIps[0];
    const name = podName(rp.pod);
    if (ip === undefined) {
      rp.state = { state: 'pending', reason: `workload ${w.uid} has no IP yet` };
      return;
    }
    const holder = this.byIp.get(ip);
    if (holder !== undefined && holder !== rp) {
      rp.state = { state: 'pending', reason: `IP ${ip} is still served for pod ${podName(holder.pod)}` };
      return;
    }
    const family = isIP(ip) === 6 ? 6 : 4;
    const sockets = rp.sockets;
    const { config, native } = this.deps;
    const listenFd = (port: number, transparent: boolean, host: string = ANY[family]): number =>
      native.listen({ host, port, backlog: 511, reusePort: true, mark: config.packetMark, transparent, freebind: transparent, netnsFd: rp.netns.fd }).fd;
    // a listening fd whose adoption fails is closed here, never left accepting with no one serving it
    const adopt = async <T>(fd: number, use: (fd: number) => Promise<T>): Promise<T> => {
      try {
        return await use(fd);
      } catch (err) {
        native.close(fd);
        throw err;
      }
    };
    const live = new Set<LiveRelay>();
    let current = w;
    const outbound: OutboundDeps = {
      snapshot: this.deps.snapshot,
      certs: this.deps.certs,
      hbone: this.deps.client,
      connect: tcpConnect(undefined, (t) => podOutboundSocket(sockets, t.ip, t.port)),
      clusterId: config.clusterId,
      via: { key: `pod ${rp.pod.uid}`, socket: (host, port) => podTunnelSocket(sockets, host, port) },
    };
    const ctx: PodContext = {
      name,
      ip,
      workload: () => (current = workloadForPod(this.deps.snapshot(), rp.pod) ?? current),
      outbound,
      connectApp: tcpConnect(undefined, (t, c) => podInboundSocket(sockets, t.ip, t.port, c.srcIp)),
      live,
    };
    try {
      const limits = { limit: this.deps.connectionLimit, onRefused: this.deps.onLimitRefused };
      const out: Listener = new Listener(`inpod outbound ${name}`, createServer({ pauseOnConnect: true, allowHalfOpen: true, noDelay: true }, (s) => void serveOutbound(this.traffic, ctx, s, out)), limits);
      rp.listeners.push(out);
      await adopt(keepaliveListener(native, listenFd(OUTBOUND_PORT, false), sockets.keepalive ?? null), (fd) => out.listen(ANY[family], OUTBOUND_PORT, { fd }));
      const inb: Listener = new Listener(`inpod inbound ${name}`, createServer({ pauseOnConnect: true, allowHalfOpen: true, noDelay: true }, (s) => void serveInbound(this.traffic, ctx, s, INBOUND_PLAINTEXT_PORT, inb)), limits);
      rp.listeners.push(inb);
      await adopt(keepaliveListener(native, listenFd(INBOUND_PLAINTEXT_PORT, true), sockets.keepalive ?? null), (fd) => inb.listen(ANY[family], INBOUND_PLAINTEXT_PORT, { fd }));
      const id = identityOf(w);
      await adopt(listenFd(INBOUND_HBONE_PORT, true), (fd) => this.deps.hbone.open({ ip, port: INBOUND_HBONE_PORT, fd, cert: () => this.deps.certs.get(id) ?? this.deps.certs.fetch(id) }));
      rp.hboneIp = ip;
      this.byIp.set(ip, rp);
      if (config.socks5Addr !== null) {
        rp.socks5 = new Socks5Server({
          outbound,
          snapshot: this.deps.snapshot,
          log: this.deps.log,
          relaySockets: (a, b) => trackRelay(live, this.deps.relaySockets(a, b)),
          observer: this.deps.observer,
          source: () => ctx.workload(),
          network: config.network,
          connectionLimit: this.deps.connectionLimit,
          onLimitRefused: this.deps.onLimitRefused,
        });
        const port = config.socks5Addr.port;
        const socks5 = rp.socks5;
        await adopt(listenFd(port, false, '127.0.0.1'), (fd) => socks5.listen('127.0.0.1', port, { fd }));
      }
    } catch (err) {
      const reason = `cannot open the listeners of pod ${name} in its network namespace: ${(err as Error).message}`;
      this.deps.log.error({ pod: name, uid: rp.pod.uid, err: (err as Error).message }, 'cannot start pod');
      await this.stopListeners(rp);
      rp.state = { state: 'failed', reason };
      return;
    }
    rp.ctx = ctx;
    rp.state = { state: 'up', ip, workload: w.uid };
    this.deps.log.info({ pod: name, uid: rp.pod.uid, ip }, 'pod listeners ready in its network namespace (15001, 15006, 15008)');
  }

  /** Closes the pod's listeners (only the HBONE one it opened itself). */
  private async stopListeners(rp: RunningPod): Promise<void> {
    const ls = rp.listeners.splice(0);
    await Promise.all(ls.map((l) => l.close()));
    if (rp.hboneIp !== null) {
      await this.deps.hbone.close(rp.hboneIp);
      this.byIp.delete(rp.hboneIp);
      rp.hboneIp = null;
    }
    await rp.socks5?.listener.close();
    rp.socks5 = null;
  }

  /** Stops serving the pod (listeners closed, connections cut) but keeps it registered. */
  private async stop(rp: RunningPod, reason: string): Promise<void> {
    const ip = rp.hboneIp;
    for (const l of [...(rp.ctx?.live ?? [])]) l.stop(reason);
    rp.ctx = null;
    // HBONE tunnels into the pod: reset their streams so the clients' proxies see the cut at once
    if (ip !== null) this.deps.connections.closeWhere((c) => c.info.dstIp === ip, reason);
    await this.stopListeners(rp);
    // pooled HBONE connections dialled from the pod's namespace go too
    this.deps.client.pool.destroyWhere((key) => key.endsWith(`|pod ${rp.pod.uid}`));
    rp.state = { state: 'pending', reason };
  }

  private async remove(rp: RunningPod, reason: string): Promise<void> {
    this.pods.delete(rp.pod.uid);
    const wasUp = rp.state.state === 'up';
    await this.stop(rp, reason);
    // connections still being set up see the flag and fail instead of dialling from a reused fd
    rp.netns.closed = true;
    if (rp.netns.fd >= 0) this.deps.native.close(rp.netns.fd);
    if (wasUp) this.deps.log.info({ pod: podName(rp.pod), uid: rp.pod.uid, reason }, 'pod listeners closed and its connections cut');
  }
}

/** Keeps a pod's SOCKS5 relay in its live set, so removing the pod cuts it (also when spliced). */
function trackRelay(live: Set<LiveRelay>, r: SocketRelay): SocketRelay {
  const entry: LiveRelay = { stop: () => r.stop(), countedElsewhere: r.kind === 'splice' };
  live.add(entry);
  void r.done.then(() => live.delete(entry));
  return r;
}
