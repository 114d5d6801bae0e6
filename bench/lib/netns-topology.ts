/**
 * `--netns` (root): the bench's data path on a simulated cluster of network namespaces
 * (test/netns/harness.ts) instead of the loopback, with ztunnel-ts in in-pod mode as istio-cni
 * runs it:
 *
 *   client pod ─veth─ node A ─veth─ bridge ─veth─ node B ─veth─ server pod
 *      │ iptables capture (istio-cni's in-pod rules)                 ▲
 *      └─► :15001 ztunnel-ts A ══HBONE══► :15008 ztunnel-ts B ───────┘ (listeners inside the pods)
 *
 * The load client runs inside the client pod and makes a plain connect() to the server pod's IP:
 * the capture replaces the loopback run's entry hop, so no variant has a hop. Each ztunnel-ts pair
 * (one per process-wide setting: worker count, relay engine — PAIR_OF in topology.ts) gets its own
 * two nodes and pod pair, so all pairs run side by side and variants still alternate inside every
 * workload (restarting proxies between samples would break that and re-pay certificate issuance).
 * Pods are registered by a stand-in for istio-cni on each node's ZDS socket (fake-cni.ts).
 *
 * Baselines: `direct` is an out-of-mesh client pod on node 1 → an out-of-mesh server pod on node 2
 * (the same veths and routing, no capture, no proxy); the plaintext variants are a mesh client pod
 * → that out-of-mesh server (proxy A connects to a `protocol: TCP` workload directly).
 * stunnel / HAProxy / the entry hop are not run here.
 *
 * Long-lived processes (proxies, origins, iperf3 servers) run under the bench's ProcSet via
 * `ip netns exec` (which execs in place, so the pid ProcSet measures is the proxy's own); load
 * clients run through cluster.spawnIn. close() — and the harness's own exit/signal hooks — delete
 * every namespace; ProcSet kills the processes.
 */
import { writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { initCaDir } from '../../src/identity/ca-dir';
import { loadNative } from '../../src/native/addon';
import { startFakeCni, type FakeCni } from '../../test/netns/fake-cni';
import { buildCluster, netnsUnavailable, snapshotFor, type Cluster, type PodNs, type PodSpec } from '../../test/netns/harness';
import { HTTP_PORT } from './origin';
import type { Managed, ProcSet } from './procs';
import { IPERF_PORT, PAIR_OF, VARIANT_LABELS, type Variant, type VariantKey } from './topology';
import type { PairSpec } from './ztunnel';

/** The variants --netns runs; the others (entry hop, stunnel, HAProxy) are loopback only. */
export const NETNS_VARIANTS: readonly VariantKey[] = ['direct', 'zt-plain-splice', 'zt-plain-js', 'zt-hbone-w1', 'zt-hbone-w2', 'zt-hbone-w0'];

const NS = 'bench';
const MAIN = resolve(__dirname, '../../src/main.js');
const ORIGIN = resolve(__dirname, 'origin.js');

export interface NetnsTopology {
  readonly variants: ReadonlyMap<VariantKey, Variant>;
  readonly cluster: Cluster;
  /** One line for the report: what ran where. */
  readonly describe: string;
  /** Closes the fake agents and deletes every namespace (processes are ProcSet's). Idempotent. */
  close(): Promise<void>;
}

interface NetnsPair {
  readonly spec: PairSpec;
  readonly client: PodNs;
  readonly server: PodNs;
  readonly a: Managed;
  readonly b: Managed;
}

/** Node names of pair number k (0-based): node<2k+1> holds the client side, node<2k+2> the server side. */
const nodesOf = (k: number): [string, string] => [`node${2 * k + 1}`, `node${2 * k + 2}`];

/** The cluster's pods: one mesh client/server per pair, one out-of-mesh client/server for the baselines. */
export function netnsPods(specs: readonly PairSpec[], legacy: { client: boolean; server: boolean }): PodSpec[] {
  const pods: PodSpec[] = specs.flatMap((s, k) => {
    const [a, b] = nodesOf(k);
    return [{ name: `client${s.id}`, namespace: NS, node: a }, { name: `server${s.id}`, namespace: NS, node: b }];
  });
  if (legacy.client) pods.push({ name: 'lclient', namespace: NS, node: 'node1', inMesh: false });
  if (legacy.server) pods.push({ name: 'lserver', namespace: NS, node: 'node2', inMesh: false });
  return pods;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Status of GET /healthz/ready on the proxy's readiness port, from inside its node namespace. */
async function readiness(cluster: Cluster, node: string): Promise<number> {
  const script = "fetch('http://127.0.0.1:15021/healthz/ready').then(r=>process.stdout.write(String(r.status)),()=>process.stdout.write('0'))";
  const r = await cluster.exec(cluster.nodeByName(node), [process.execPath, '-e', script], { timeoutMs: 10_000 });
  return Number(r.stdout) || 0;
}

/** Resolves with `p`, or rejects when the proxy exits first or `ms` passes: a dead proxy never hangs the run. */
function whileAlive<T>(m: Managed, p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    m.exited.then((code) => Promise.reject(new Error(`${m.name} exited (${code}) while ${what}: ${m.output().slice(-1500)}`))),
    new Promise<never>((_, rej) => (timer = setTimeout(() => rej(new Error(`${m.name}: ${what} took over ${ms} ms: ${m.output().slice(-1500)}`)), ms))),
  ]).finally(() => clearTimeout(timer));
}

export async function startNetnsTopology(procs: ProcSet, dir: string, needed: ReadonlySet<VariantKey>, log: (s: string) => void): Promise<NetnsTopology> {
  const why = netnsUnavailable();
  if (why !== null) throw new Error(`--netns needs root with iproute2 and iptables: ${why}`);
  const other = [...needed].filter((k) => !NETNS_VARIANTS.includes(k));
  if (other.length > 0) throw new Error(`--netns cannot run variant(s) ${other.join(', ')} (netns runs ${NETNS_VARIANTS.join(', ')})`);
  const specs = [...new Map([...needed].flatMap((k) => (PAIR_OF[k] ? [[PAIR_OF[k]!.id, PAIR_OF[k]!] as const] : []))).values()].sort((x, y) => x.id - y.id);
  const legacy = { client: needed.has('direct'), server: needed.has('direct') || needed.has('zt-plain-splice') || needed.has('zt-plain-js') };
  log(`netns: building a cluster of ${Math.max(2, 2 * specs.length)} nodes`);
  const cluster = await buildCluster({ nodes: Math.max(2, 2 * specs.length), pods: netnsPods(specs, legacy), tag: 'bench' });
  const cnis: FakeCni[] = [];
  const close = async (): Promise<void> => {
    for (const c of cnis.splice(0)) c.close();
    await cluster.destroy();
  };
  try {
    const pod = (n: string): PodNs => cluster.podByName(n);
    const snapshotPath = join(dir, 'snapshot.json');
    writeFileSync(snapshotPath, JSON.stringify(snapshotFor(cluster)));
    const caDir = join(dir, 'ca');
    await initCaDir(caDir);
    const inNs = (ns: { netns: string }, name: string, argv: readonly string[], env?: NodeJS.ProcessEnv): Promise<Managed> =>
      procs.spawn({ name, bin: 'ip', args: ['netns', 'exec', ns.netns, ...argv], env });

    const servers = cluster.pods.filter((p) => p.name.startsWith('server') || p.name === 'lserver');
    log(`netns: origin + iperf3 server in ${servers.length} server pod(s)`);
    for (const p of servers) {
      const o = await inNs(p, `origin in ${p.name}`, [process.execPath, ORIGIN, p.ip]);
      await o.line(/origin ready/, 15_000);
      const s = await inNs(p, `iperf3 -s in ${p.name}`, ['iperf3', '-s', '--forceflush', '-B', p.ip, '-p', String(IPERF_PORT)]);
      await s.line(/Server listening/, 10_000);
    }

    const native = loadNative();
    const startProxy = async (node: string, spec: PairSpec): Promise<Managed> => {
      const cni = startFakeCni(native, join(dir, `${node}.sock`));
      cnis.push(cni);
      const m = await inNs(cluster.nodeByName(node), `ztunnel-ts ${node}`, [process.execPath, MAIN, 'proxy'], {
        PATH: process.env['PATH'],
        INPOD_ENABLED: 'true',
        INPOD_UDS: cni.path,
        NODE_NAME: node,
        LOCAL_XDS_PATH: snapshotPath,
        LOCAL_CA_DIR: caDir,
        IPV6_ENABLED: 'false',
        ZTUNNEL_WORKER_THREADS: String(spec.workers),
        ZTUNNEL_NATIVE_RELAY: String(spec.nativeRelay),
        CONNECTION_TERMINATION_DEADLINE: '2s',
        // errors still reach the bench's failure messages; access logs (info) would cost CPU
        LOG_LEVEL: 'warn',
      });
      // what istio-cni does on start: every mesh pod of the node (with its netns fd), then snapshot-sent
      await whileAlive(m, cni.connected(), 30_000, 'connecting to the ZDS socket');
      for (const p of cluster.pods.filter((x) => x.node === node && x.inMesh)) {
        const err = await whileAlive(m, cni.send({ kind: 'add', uid: p.uid, info: { name: p.name, namespace: p.namespace, serviceAccount: p.serviceAccount } }, cluster.netnsPath(p)), 15_000, `adding pod ${p.name}`);
        if (err !== '') throw new Error(`${m.name}: ZDS add ${p.name} refused: ${err}`);
      }
      await whileAlive(m, cni.send({ kind: 'snapshot-sent' }), 15_000, 'acknowledging snapshot-sent');
      return m;
    };
    const pairs: NetnsPair[] = [];
    for (const [k, spec] of specs.entries()) {
      const [na, nb] = nodesOf(k);
      log(`netns: ztunnel-ts pair ${spec.id} in-pod on ${na} → ${nb} (workers=${spec.workers}, native relay ${spec.nativeRelay})`);
      const [a, b] = [await startProxy(na, spec), await startProxy(nb, spec)];
      for (const [m, node] of [[a, na], [b, nb]] as const) {
        await whileAlive(m, (async () => {
          while ((await readiness(cluster, node)) !== 200) await sleep(300);
        })(), 30_000, 'becoming ready');
      }
      pairs.push({ spec, client: pod(`client${spec.id}`), server: pod(`server${spec.id}`), a, b });
    }

    const clientIn = (p: PodNs) => (argv: readonly string[]) => cluster.spawnIn(p, argv, { stdio: ['pipe', 'pipe', 'pipe'] });
    const variants = new Map<VariantKey, Variant>();
    for (const key of needed) {
      const label = VARIANT_LABELS[key];
      if (key === 'direct') {
        const server = pod('lserver');
        variants.set(key, { key, label, target: (port) => ({ host: server.ip, port }), proxies: [], hop: null, runClient: clientIn(pod('lclient')) });
        continue;
      }
      const p = pairs.find((x) => x.spec.id === PAIR_OF[key]!.id)!;
      const plain = key.startsWith('zt-plain');
      const server = plain ? pod('lserver') : p.server;
      // the plaintext path never reaches node B: only A's cost is the variant's
      const proxies = plain ? [{ role: 'A', m: p.a }] : [{ role: 'A', m: p.a }, { role: 'B', m: p.b }];
      variants.set(key, { key, label, target: (port) => ({ host: server.ip, port }), proxies, hop: null, runClient: clientIn(p.client) });
    }
    // one request through every path before any figure: a broken path fails here, with its name
    for (const v of variants.values()) {
      const t = v.target(HTTP_PORT);
      const r = await cluster.exec(pod(v.key === 'direct' ? 'lclient' : `client${PAIR_OF[v.key]!.id}`), [process.execPath, '-e', `fetch('http://${t.host}:${t.port}/').then(r=>r.arrayBuffer().then(b=>process.stdout.write(r.status+' '+b.byteLength)),e=>process.stdout.write(String(e.cause??e)))`], { timeoutMs: 15_000 });
      if (r.stdout !== '200 1024') throw new Error(`netns: ${v.label}: GET http://${t.host}:${t.port}/ from the client pod failed: ${r.stdout}${r.stderr}`);
    }
    const describe = `network namespaces (${cluster.nodes.length} nodes, ${cluster.pods.length} pods, ${cluster.capture} capture), in-pod ztunnel-ts, no entry hop; stunnel, HAProxy and the hop-only path are not run in netns`;
    return { variants, cluster, describe, close };
  } catch (err) {
    await close().catch(() => undefined);
    throw err;
  }
}
