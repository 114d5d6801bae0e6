/**
 * The node-mode data plane (ZTUNNEL-FACTS "Ports"; in-pod mode comes with its own issue):
 *  - one HBONE listener on <workload IP>:15008 per local HBONE workload, opened and closed as the
 *    snapshot changes, each serving with the certificate of the workload that has the IP NOW (a
 *    reused pod IP serves the new workload's identity without reopening the listener);
 *  - the SOCKS5 outbound entry on ZTUNNEL_SOCKS5_ADDR when enabled;
 *  - on every snapshot swap, live inbound connections are re-authorized and those now denied closed.
 *
 * Invariant: after reconcile(snap) settles, `hbone` has a listener for exactly the IPs of the
 * local HBONE workloads in `snap` (minus those whose bind failed, which are logged and retried on
 * the next swap).
 */
import type { Logger } from 'pino';
import { authorize } from './authz/authorize';
import type { Config } from './config/config';
import type { CertManager } from './identity/cert-manager';
import { formatSpiffe, type Identity } from './identity/spiffe';
import type { WorkloadCert } from './identity/workload-cert';
import type { BoundAddress } from './net/listener';
import { INBOUND_HBONE_PORT } from './config/ports';
import { ConnectionManager } from './proxy/connection-manager';
import { HboneClient } from './proxy/hbone-client';
import { HboneServer } from './proxy/hbone-server';
import { openLoopbackAware, tcpConnect, type ConnEvents } from './proxy/inbound';
import { InpodPlane } from './inpod/inpod-plane';
import { podInboundSocket } from './inpod/pod-sockets';
import type { InpodPod, PodState } from './inpod/pod';
import { ProxyError } from './errors';
import type { OutboundObserver } from './proxy/outbound';
import { identityOf } from './proxy/outbound-plan';
import { Socks5Server, type SocketRelay } from './proxy/socks5-server';
import type { H2Settings } from './proxy/h2-settings';
import { DEFAULT_H2_SETTINGS } from './proxy/h2-settings';
import type { Snapshot } from './state/snapshot';
import type { Workload } from './state/model';
import { loadNative, tryLoadNative, type NativeApi } from './native/addon';
import { applyKeepalive, keepaliveOptions, withKeepalive } from './net/keepalive';
import { startJsRelay, startRelay, type RelayHandle, type RelayResult } from './native/relay';
import type { Socket } from 'node:net';
import { ConnectionLimit, refusalLogger } from './net/conn-limit';
import type { SnapshotListener } from './state/store';

/** What the data plane reads snapshots from: the main thread's SnapshotStore or a worker's SnapshotMirror. */
export interface SnapshotSource {
  readonly current: Snapshot;
  subscribe(fn: SnapshotListener): () => void;
}

/** What the data plane takes certificates from: the main thread's CertManager or a worker's CertMirror. */
export type CertSource = Pick<CertManager, 'get' | 'fetch'>;

export interface DataPlaneDeps {
  readonly config: Config;
  readonly store: SnapshotSource;
  readonly certs: CertSource;
  readonly log: Logger;
  /**
   * Worker threads: returns an already-listening SO_REUSEPORT socket for host:port, adopted by
   * the listener, so that every worker listens on the same address. Absent: plain exclusive binds.
   */
  readonly listenFd?: (host: string, port: number) => number;
  /** Metrics/access-log hooks of the HBONE inbound side (reporter=destination). */
  readonly events?: ConnEvents;
  /** Metrics/access-log hooks of the outbound entry (reporter=source). */
  readonly outboundObserver?: OutboundObserver;
  /**
   * Worker threads: this worker's handle on the process-wide ZTUNNEL_MAX_CONNECTIONS budget the
   * supervisor shares. Absent: the data plane makes its own from config.maxConnections.
   */
  readonly connectionLimit?: ConnectionLimit | null;
}

export interface DataPlane {
  readonly hbone: HboneServer<Snapshot>;
  readonly client: HboneClient;
  readonly connections: ConnectionManager;
  readonly socks5: Socks5Server | null;
  /** In-pod mode's per-pod listeners (INPOD_ENABLED); null in node mode. */
  readonly inpod: InpodPlane | null;
  /** In-pod mode: serve exactly these pods (from ZDS); resolves with each pod's state. */
  applyPods(pods: readonly InpodPod[]): Promise<Record<string, PodState>>;
  podStates(): Record<string, PodState>;
  /** Bound addresses: "socks5", "hbone <ip>", "inpod <ns/name> <port>". */
  addresses(): Map<string, BoundAddress>;
  /** Resolves once the listeners match the current snapshot (tests, readiness). */
  settled(): Promise<void>;
  /** Stop accepting and GOAWAY; live connections continue. */
  drain(): Promise<void>;
  /** The splice addon when ZTUNNEL_NATIVE_RELAY is on and it loaded; null = JS copy path. */
  readonly native: NativeApi | null;
  /** Node mode: the identity the HBONE listener on `ip` serves from now on; undefined if none. */
  servedIdentity(ip: string): Identity | undefined;
  /** Socket↔socket relays started so far, by engine (the splice path falls back to JS per connection when a socket does not qualify). */
  relayCounts(): { splice: number; js: number };
  /** Number of live connections (inbound tunnels + SOCKS5 clients). */
  liveConnections(): number;
  /** Cut everything now. */
  close(): Promise<void>;
}

export function h2SettingsFrom(config: Config): H2Settings {
  return {
    ...DEFAULT_H2_SETTINGS,
    streamWindow: config.http2.streamWindowSize,
    connectionWindow: config.http2.connectionWindowSize,
    maxFrameSize: config.http2.frameSize,
  };
}

export async function startDataPlane(deps: DataPlaneDeps): Promise<DataPlane> {
  const { config, store, certs, log } = deps;
  const h2 = h2SettingsFrom(config);
  const connections = new ConnectionManager({ log, network: config.network });
  const native = loadRelayEngine(config, log);
  // TCP keepalive (KEEPALIVE_*) on the sockets node mode connects; tuned through the addon even
  // when the JS relay is forced, since Node's own setKeepAlive sets only the idle time
  const keepalive = keepaliveOptions(config.keepalive);
  const sockNative = native ?? tryLoadNative();
  const openNodeSocket = withKeepalive(openLoopbackAware, keepalive, sockNative);
  // In-pod mode: the leg to a local pod's app starts inside that pod's namespace, from the client's address.
  let inpod: InpodPlane | null = null;
  const connect = tcpConnect(undefined, (t, c) => {
    if (inpod === null) return openNodeSocket(t, c);
    const pod = inpod.socketOptionsFor(t.ip);
    // never from the node's own namespace: a pod being removed or not up has no app to reach
    if (pod === null) throw new ProxyError('ERR_POD_NOT_SERVED', `no pod on this node is being served with IP ${t.ip}`);
    return podInboundSocket(pod, t.ip, t.port, c.srcIp);
  });
  const limit =
    deps.connectionLimit !== undefined ? deps.connectionLimit
    : config.maxConnections !== null ? new ConnectionLimit(ConnectionLimit.create(config.maxConnections, 1), 0)
    : null;
  // one logger for both listener kinds, so a flood on either is summarised in one place
  const onLimitRefused = limit !== null ? refusalLogger(log, limit) : undefined;
  const hbone = new HboneServer<Snapshot>({
    snapshot: () => store.current,
    network: config.network,
    authorize,
    connections,
    connect,
    log,
    h2,
    events: deps.events,
    handshakeTimeoutMs: config.handshakeTimeoutMs,
    connectionLimit: limit,
    onLimitRefused,
  });
  const client = new HboneClient({
    h2,
    maxStreamsPerConnection: config.pool.maxStreamsPerConnection,
    unusedReleaseMs: config.pool.unusedReleaseTimeoutMs,
    // in-pod tunnels come from podTunnelSocket with keepalive set already; setting it again is harmless
    onTcpConnect: (tcp) => applyKeepalive(tcp, keepalive, sockNative),
  });

  const counts = { splice: 0, js: 0 };
  // live relays, so close() can stop them (a spliced connection's sockets belong to the addon, no
  // listener tracks them any more) and liveConnections() can count the spliced ones
  const relays = new Map<RelayHandle, Promise<RelayResult>>();
  let liveSplices = 0;
  const relaySockets = (a: Socket, b: Socket): SocketRelay => {
    let resolve!: (r: RelayResult) => void;
    const done = new Promise<RelayResult>((r) => (resolve = r));
    let handle: RelayHandle;
    try {
      handle = startRelay(a, b, resolve, { native });
    } catch (err) {
      // an eligible splice relay that failed to start (e.g. EMFILE for its pipes): the sockets are
      // intact, so this connection still gets the JS copy path
      log.warn({ err: (err as Error).message }, 'splice relay failed to start; relaying this connection in JS');
      handle = startJsRelay(a, b, resolve);
    }
    counts[handle.kind]++;
    const spliced = handle.kind === 'splice';
    if (spliced) liveSplices++;
    relays.set(handle, done);
    void done.then(() => {
      relays.delete(handle);
      if (spliced) liveSplices--;
    });
    return { stats: () => handle.stats(), stop: () => handle.stop(), kind: handle.kind, done };
  };

  if (config.proxyMode === 'inpod') {
    let addon: NativeApi;
    try {
      addon = native ?? loadNative();
    } catch (err) {
      throw new ProxyError('ERR_INPOD_NATIVE', `INPOD_ENABLED=true needs the native addon (listeners inside pod network namespaces): ${(err as Error).message}`, { cause: err });
    }
    inpod = new InpodPlane({ config, native: addon, snapshot: () => store.current, certs, hbone, client, connections, relaySockets, log, events: deps.events, observer: deps.outboundObserver, connectionLimit: limit, onLimitRefused });
  }

  let socks5: Socks5Server | null = null;
  // in-pod mode opens SOCKS5 inside each pod instead (InpodPlane)
  if (config.socks5Addr !== null && inpod === null) {
    socks5 = new Socks5Server({
      outbound: { snapshot: () => store.current, certs, hbone: client, connect, clusterId: config.clusterId },
      snapshot: () => store.current,
      network: config.network,
      log,
      relaySockets,
      observer: deps.outboundObserver,
      connectionLimit: limit,
      onLimitRefused,
    });
    const { host, port } = config.socks5Addr;
    const bound = await socks5.listen(host, port, { fd: deps.listenFd?.(host, port) });
    log.info({ address: bound.text }, 'SOCKS5 outbound listener ready');
  }

  // Listener reconciliation runs one at a time; a swap during a run schedules one more run.
  let running: Promise<void> = Promise.resolve();
  // The identity each listener serves, by IP. A listener's certificate getter reads it per
  // connection instead of capturing the identity it was opened with: a pod IP can be reused by a
  // new workload (another service account) while the listener stays open, and the new identity
  // must be served from the next connection on. It is replaced synchronously in the snapshot
  // subscriber, not in the queued listener work: the control plane's subscriber forgets the old
  // identity's certificate at once, so a lookup of the old one while an earlier reconcile is still
  // opening or closing listeners would fail the handshake (ERR_CERT_NOT_LOCAL, or a wait in a worker).
  let identityAt = new Map<string, Identity>();
  const certAt = (ip: string) => (): WorkloadCert | Promise<WorkloadCert> => {
    const id = identityAt.get(ip);
    if (id === undefined) return Promise.reject(new ProxyError('ERR_CERT_UNAVAILABLE', `no local HBONE workload has IP ${ip} any more`));
    return certs.get(id) ?? certs.fetch(id);
  };
  /** Pure bookkeeping, no I/O: the identities to serve from now on, with a log line per reused IP. */
  const serveIdentities = (want: Map<string, Workload>): void => {
    const previous = identityAt;
    identityAt = new Map([...want].map(([ip, w]) => [ip, identityOf(w)]));
    for (const [ip, id] of identityAt) {
      const was = previous.get(ip);
      if (was !== undefined && !sameIdentity(was, id) && hbone.addresses().has(ip)) {
        log.info({ ip, workload: `${want.get(ip)!.namespace}/${want.get(ip)!.name}`, identity: formatSpiffe(id) }, 'HBONE listener now serves another identity: the IP was reused by a new workload');
      }
    }
  };
  const reconcile = (snap: Snapshot): Promise<void> => {
    const want = hboneWorkloads(snap);
    serveIdentities(want);
    running = running.then(async () => {
      const open = hbone.addresses();
      for (const ip of open.keys()) {
        if (!want.has(ip)) {
          await hbone.close(ip);
          log.info({ ip }, 'HBONE listener closed: workload left this node');
        }
      }
      for (const [ip, w] of want) {
        if (open.has(ip)) continue;
        try {
          const fd = deps.listenFd?.(ip, INBOUND_HBONE_PORT);
          const bound = await hbone.open({ ip, fd, cert: certAt(ip) });
          log.info({ address: bound.text, workload: `${w.namespace}/${w.name}` }, 'HBONE inbound listener ready');
        } catch (err) {
          log.error({ ip, workload: `${w.namespace}/${w.name}`, err: (err as Error).message }, 'cannot open HBONE listener');
        }
      }
    });
    return running;
  };
  // node mode: HBONE listeners on the local workloads' IPs in our own namespace
  if (inpod === null) await reconcile(store.current);
  const unsubscribe = store.subscribe((next) => {
    if (inpod === null) void reconcile(next);
    else void inpod.onSnapshot();
    connections.recheck(next, authorize);
  });

  return {
    hbone,
    client,
    connections,
    socks5,
    inpod,
    applyPods: (pods) => (inpod ? inpod.apply(pods) : Promise.reject(new ProxyError('ERR_NOT_INPOD', 'pods can only be applied in in-pod mode (INPOD_ENABLED=true)'))),
    podStates: () => inpod?.states() ?? {},
    addresses(): Map<string, BoundAddress> {
      const out = new Map<string, BoundAddress>();
      if (socks5?.listener.address) out.set('socks5', socks5.listener.address);
      for (const [ip, a] of hbone.addresses()) out.set(`hbone ${ip}`, a);
      if (inpod) for (const [k, a] of inpod.addresses()) out.set(k, a);
      return out;
    },
    settled: () => (inpod ? Promise.all([running, inpod.settled()]).then(() => undefined) : running),
    native,
    servedIdentity: (ip) => identityAt.get(ip),
    relayCounts: () => ({ ...counts }),
    async drain(): Promise<void> {
      unsubscribe();
      // GOAWAY on every pooled connection now; client.close() settles only once their streams have
      // ended, which is what the drain waits for (up to its deadline), so it is not awaited here
      void client.close();
      await Promise.all([hbone.drain(), socks5?.listener.stopAccepting(), inpod?.drain()]);
    },
    // in-pod: only the pod connections no other count includes (see InpodPlane.liveConnections)
    liveConnections: () => connections.size + (socks5?.listener.connectionCount ?? 0) + liveSplices + (inpod?.liveConnections() ?? 0),
    async close(): Promise<void> {
      unsubscribe();
      connections.closeAll('proxy shutting down');
      client.destroy();
      const stopped = [...relays].map(([h, done]) => (h.stop(), done));
      await Promise.all([hbone.shutdown(), socks5?.listener.close(), inpod?.close(), ...stopped]);
    },
  };
}

/** The local HBONE workloads of `snap` by IP: the node-mode :15008 listeners it calls for. */
function hboneWorkloads(snap: Snapshot): Map<string, Workload> {
  const want = new Map<string, Workload>();
  for (const w of snap.localWorkloads()) {
    if (w.protocol !== 'HBONE') continue;
    for (const ip of w.workloadIps) want.set(ip, w);
  }
  return want;
}

function sameIdentity(a: Identity, b: Identity): boolean {
  return a.trustDomain === b.trustDomain && a.namespace === b.namespace && a.serviceAccount === b.serviceAccount;
}

/** ZTUNNEL_NATIVE_RELAY=false forces the JS copy path; a missing addon falls back to it, loudly. */
function loadRelayEngine(config: Config, log: Logger): NativeApi | null {
  if (!config.nativeRelay) {
    log.info('ZTUNNEL_NATIVE_RELAY=false: plaintext legs are relayed by the JS copy path');
    return null;
  }
  try {
    return loadNative();
  } catch (err) {
    log.warn({ err: (err as Error).message }, 'native splice relay unavailable: plaintext legs use the JS copy path');
    return null;
  }
}
