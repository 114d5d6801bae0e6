/**
 * A simulated cluster made of network namespaces, for the in-pod tests (issue 6) and bench/:
 *
 *   fabric netns: bridge br0 ── veth n<i> ⇄ eth0 ── node<i> netns (10.<t>.0.<i>/24, ip_forward)
 *   node<i> netns: veth p<j> ⇄ eth0 ── pod netns (10.<t>.<i>.<j+2>/32, default via the node's IP)
 *
 * Each node routes its own pods over their veths (/32 host routes) and the other nodes' pod ranges
 * (10.<t>.<k>.0/24) via those nodes' IPs. In-mesh pods get istio-cni's in-pod capture rules
 * (inpod-rules.ts). ztunnel-ts itself runs in a node netns and opens its listeners inside the pods.
 *
 * Invariants: nothing is created in, or changed in, the root namespace — veths are created from
 * inside a node/fabric netns with their peer placed straight into the target netns, so their
 * names only need to be unique per namespace; every netns name starts with the run's prefix
 * (`ztnh-<pid>-<tag>-` for test runs, `ztnm-<name>-` for the long-lived CLI cluster), so destroy()
 * and the stale-run sweeper delete exactly what this harness made. Because every cluster has its
 * own fabric, two clusters never share a link, and the per-run octet <t> only keeps logs apart.
 */
import { spawn, execFileSync, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { randomBytes, createHash } from 'node:crypto';
import { inpodIpRules, inpodIptables, type InboundCapture } from './inpod-rules';

export type { InboundCapture } from './inpod-rules';

export interface PodSpec {
  name: string;
  namespace: string;
  /** default: the pod name */
  serviceAccount?: string;
  /** a node name: node1 .. node<N> */
  node: string;
  /** default true: istio-cni's redirect rules are applied and the snapshot has it as HBONE */
  inMesh?: boolean;
}

export interface NodeNs {
  name: string;
  netns: string;
  ip: string;
}

export interface PodNs {
  name: string;
  namespace: string;
  serviceAccount: string;
  node: string;
  netns: string;
  ip: string;
  /** the Kubernetes pod UID (UUID form), what istio-cni sends over ZDS */
  uid: string;
  /** the workload uid in the snapshot, ztunnel's `<cluster>//v1/Pod/<namespace>/<name>` */
  workloadUid: string;
  inMesh: boolean;
}

export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface ExecOptions {
  /** written to the command's stdin */
  input?: string;
  /** kill after this long (default 20 s) */
  timeoutMs?: number;
}

/** A namespace name, or anything that has one (a node or a pod). */
export type NsRef = string | { netns: string };

export interface Cluster {
  readonly runId: string;
  /** the second octet of every address: 10.<octet>.x.y */
  readonly octet: number;
  readonly capture: InboundCapture;
  readonly fabricNetns: string;
  readonly nodes: readonly NodeNs[];
  readonly pods: readonly PodNs[];
  /** Runs argv inside the namespace; never throws for a non-zero exit. */
  exec(ns: NsRef, argv: readonly string[], opts?: ExecOptions): Promise<ExecResult>;
  /** Starts argv inside the namespace; destroy() kills it if it is still running. */
  spawnIn(ns: NsRef, argv: readonly string[], opts?: SpawnOptions): ChildProcess;
  podByName(name: string): PodNs;
  nodeByName(name: string): NodeNs;
  /** /run/netns/<name>: open it and setns() to enter the namespace (what istio-cni hands ztunnel) */
  netnsPath(ns: NsRef): string;
  /** Kills spawned processes and deletes every namespace of this run. Idempotent. */
  destroy(): Promise<void>;
}

export interface BuildOptions {
  nodes: number;
  pods: PodSpec[];
  /** names this run in namespace names ([a-z0-9]{1,12}; default random) */
  tag?: string;
  /** 10.<octet>.x.y (1..254; default derived from the pid and tag) */
  octet?: number;
  /** inbound capture flavour (default 'tproxy', what istio-cni installs) */
  capture?: InboundCapture;
  /**
   * A cluster that outlives this process (cluster-cli.ts): prefix `ztnm-<tag>-`, never swept,
   * no exit hooks. Remove it with destroyNamedCluster(tag).
   */
  persistent?: boolean;
}

export const RUN_PREFIX = 'ztnh-';
export const PERSISTENT_PREFIX = 'ztnm-';
const SNAPSHOT_CLUSTER = 'cluster1';

const nsName = (ns: NsRef): string => (typeof ns === 'string' ? ns : ns.netns);

/** Runs a command and collects its output; rejects only when it cannot be started or times out. */
export function run(cmd: string, argv: readonly string[], opts: ExecOptions = {}): Promise<ExecResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, argv, { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${cmd} ${argv.join(' ')}: timed out after ${opts.timeoutMs ?? 20_000} ms`));
    }, opts.timeoutMs ?? 20_000);
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code: code ?? (signal ? 128 : 1), stdout, stderr });
    });
    child.stdin.on('error', () => undefined); // a command that exits without reading its input
    child.stdin.end(opts.input ?? '');
  });
}

async function must(cmd: string, argv: readonly string[], opts: ExecOptions = {}): Promise<string> {
  const r = await run(cmd, argv, opts);
  if (r.code !== 0) {
    const input = opts.input ? `\n--- input ---\n${opts.input}` : '';
    throw new Error(`netns harness: \`${cmd} ${argv.join(' ')}\` exited ${r.code}: ${r.stderr.trim() || r.stdout.trim()}${input}`);
  }
  return r.stdout;
}

/** Names of all network namespaces (`ip netns list` prints "name (id: N)"). */
export async function listNetns(): Promise<string[]> {
  const out = await must('ip', ['netns', 'list']);
  return out.split('\n').map((l) => l.trim().split(/\s+/)[0] ?? '').filter((n) => n !== '');
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Deletes namespaces left by earlier test runs that died without cleaning up: only names with the
 * run prefix whose owner pid is no longer alive (a live pid — ours, or a parallel tap file's — is
 * left alone). Returns the names it deleted.
 */
export async function sweepStale(): Promise<string[]> {
  const stale = (await listNetns()).filter((n) => {
    const m = /^ztnh-(\d+)-/.exec(n);
    return m !== null && Number(m[1]) !== process.pid && !pidAlive(Number(m[1]));
  });
  if (stale.length > 0) await run('ip', ['-force', '-batch', '-'], { input: stale.map((n) => `netns del ${n}\n`).join('') });
  return stale;
}

/** Deletes the namespaces of a persistent (CLI) cluster; returns their names. */
export async function destroyNamedCluster(tag: string): Promise<string[]> {
  const prefix = `${PERSISTENT_PREFIX}${checkTag(tag)}-`;
  const mine = (await listNetns()).filter((n) => n.startsWith(prefix));
  if (mine.length > 0) await must('ip', ['-force', '-batch', '-'], { input: mine.map((n) => `netns del ${n}\n`).join('') });
  return mine;
}

function checkTag(tag: string): string {
  if (!/^[a-z0-9]{1,12}$/.test(tag)) throw new Error(`netns harness: tag must match [a-z0-9]{1,12}, got ${JSON.stringify(tag)}`);
  return tag;
}

/** A stable UUID-shaped pod UID (what the API server would have assigned). */
function podUid(runId: string, namespace: string, name: string): string {
  const h = createHash('sha256').update(`${runId}/${namespace}/${name}`).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-a${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

interface Plan {
  runId: string;
  octet: number;
  fabric: string;
  nodes: NodeNs[];
  pods: PodNs[];
  /** pod name -> its veth index on its node */
  slot: Map<string, number>;
}

function plan(opts: BuildOptions): Plan {
  if (!Number.isInteger(opts.nodes) || opts.nodes < 1 || opts.nodes > 200) throw new Error(`netns harness: nodes must be 1..200, got ${opts.nodes}`);
  const tag = opts.tag === undefined ? randomBytes(3).toString('hex') : checkTag(opts.tag);
  const runId = opts.persistent ? `${PERSISTENT_PREFIX}${tag}` : `${RUN_PREFIX}${process.pid}-${tag}`;
  const octet = opts.octet ?? 20 + (createHash('sha256').update(runId).digest()[0]! % 200);
  if (!Number.isInteger(octet) || octet < 1 || octet > 254) throw new Error(`netns harness: octet must be 1..254, got ${octet}`);
  const nodes: NodeNs[] = [];
  for (let i = 1; i <= opts.nodes; i++) nodes.push({ name: `node${i}`, netns: `${runId}-n${i}`, ip: `10.${octet}.0.${i}` });
  const perNode = new Map<string, number>();
  const slot = new Map<string, number>();
  const pods: PodNs[] = [];
  const seen = new Set<string>();
  for (const spec of opts.pods) {
    const nodeIdx = nodes.findIndex((n) => n.name === spec.node);
    if (nodeIdx < 0) throw new Error(`netns harness: pod ${spec.name} is on unknown node ${JSON.stringify(spec.node)} (have ${nodes.map((n) => n.name).join(', ')})`);
    if (seen.has(spec.name)) throw new Error(`netns harness: duplicate pod name ${spec.name} (pod names are unique per cluster)`);
    seen.add(spec.name);
    const j = perNode.get(spec.node) ?? 0;
    if (j > 250) throw new Error(`netns harness: too many pods on ${spec.node}`);
    perNode.set(spec.node, j + 1);
    slot.set(spec.name, j);
    pods.push({
      name: spec.name,
      namespace: spec.namespace,
      serviceAccount: spec.serviceAccount ?? spec.name,
      node: spec.node,
      netns: `${runId}-p${pods.length}`,
      ip: `10.${octet}.${nodeIdx + 1}.${j + 2}`,
      uid: podUid(runId, spec.namespace, spec.name),
      workloadUid: `${SNAPSHOT_CLUSTER}//v1/Pod/${spec.namespace}/${spec.name}`,
      inMesh: spec.inMesh ?? true,
    });
  }
  return { runId, octet, fabric: `${runId}-fab`, nodes, pods, slot };
}

const SYSCTL_ROUTER = ['net.ipv4.ip_forward=1', 'net.ipv4.conf.all.rp_filter=0', 'net.ipv4.conf.default.rp_filter=0'];
// a pod with capture rules receives packets whose source is not on its link (ztunnel's spoofed
// client address looped over lo): strict reverse-path filtering would drop them
const SYSCTL_POD = ['net.ipv4.conf.all.rp_filter=0', 'net.ipv4.conf.default.rp_filter=0', 'net.ipv4.conf.lo.rp_filter=0', 'net.ipv4.conf.eth0.rp_filter=0'];

async function configure(p: Plan, capture: InboundCapture): Promise<void> {
  const ipIn = (ns: string, lines: string[]): Promise<string> => must('ip', ['-n', ns, '-batch', '-'], { input: lines.join('\n') + '\n' });
  // written through /proc/sys with sh (procps' sysctl is not on every minimal image); /proc/sys/net
  // shows the namespace of the writing process
  const sysctl = (ns: string, kv: string[]): Promise<string> => {
    const script = kv.map((x) => {
      const [k, v] = x.split('=') as [string, string];
      return `echo ${v} > /proc/sys/${k.replaceAll('.', '/')}`;
    });
    return must('ip', ['netns', 'exec', ns, 'sh', '-ec', script.join('\n')]);
  };

  await ipIn(p.fabric, [
    'link set lo up',
    'link add br0 type bridge',
    'link set br0 up',
    ...p.nodes.flatMap((n, i) => [`link add n${i + 1} type veth peer name eth0 netns ${n.netns}`, `link set n${i + 1} master br0`, `link set n${i + 1} up`]),
  ]);
  await Promise.all(
    p.nodes.map(async (n, i) => {
      const mine = p.pods.filter((pod) => pod.node === n.name);
      await sysctl(n.netns, SYSCTL_ROUTER);
      await ipIn(n.netns, [
        'link set lo up',
        `addr add ${n.ip}/24 dev eth0`,
        'link set eth0 up',
        ...mine.flatMap((pod) => {
          const v = `p${p.slot.get(pod.name)}`;
          return [`link add ${v} type veth peer name eth0 netns ${pod.netns}`, `link set ${v} up`, `route add ${pod.ip}/32 dev ${v} scope link src ${n.ip}`];
        }),
        ...p.nodes.flatMap((o, k) => (k === i ? [] : [`route add 10.${p.octet}.${k + 1}.0/24 via ${o.ip} dev eth0`])),
      ]);
    }),
  );
  await Promise.all(
    p.pods.map(async (pod) => {
      const node = p.nodes.find((n) => n.name === pod.node)!;
      await sysctl(pod.netns, SYSCTL_POD);
      await ipIn(pod.netns, [
        'link set lo up',
        `addr add ${pod.ip}/32 dev eth0`,
        'link set eth0 up',
        `route add ${node.ip}/32 dev eth0 scope link`,
        `route add default via ${node.ip} dev eth0 src ${pod.ip}`,
        ...(pod.inMesh ? inpodIpRules() : []),
      ]);
      if (pod.inMesh) await must('ip', ['netns', 'exec', pod.netns, 'iptables-restore', '-w', '5'], { input: inpodIptables(capture) });
    }),
  );
}

/**
 * Builds the cluster. On any failure everything already created is deleted before the error is
 * thrown. Sweeps namespaces of dead earlier runs first.
 */
export async function buildCluster(opts: BuildOptions): Promise<Cluster> {
  const p = plan(opts);
  const capture = opts.capture ?? 'tproxy';
  if (!opts.persistent) await sweepStale();
  const allNs = [...p.pods.map((x) => x.netns), ...p.nodes.map((x) => x.netns), p.fabric];
  const children = new Set<ChildProcess>();
  let destroyed = false;

  const delBatch = allNs.map((n) => `netns del ${n}\n`).join('');
  const destroySync = (): void => {
    if (destroyed) return;
    destroyed = true;
    for (const c of children) c.kill('SIGKILL');
    try {
      execFileSync('ip', ['-force', '-batch', '-'], { input: delBatch, stdio: ['pipe', 'ignore', 'ignore'], timeout: 10_000 });
    } catch {
      // best effort on the way out; the next run's sweeper removes what is left
    }
  };
  const onSignal = (sig: NodeJS.Signals): void => {
    destroySync();
    unhook();
    process.kill(process.pid, sig); // the default action, now that our handler is gone
  };
  const unhook = (): void => {
    process.off('exit', destroySync);
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  };
  if (!opts.persistent) {
    process.on('exit', destroySync);
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
  }

  const destroy = async (): Promise<void> => {
    if (destroyed) return;
    destroyed = true;
    unhook();
    await Promise.all(
      [...children].map(
        (c) =>
          new Promise<void>((resolve) => {
            if (c.exitCode !== null || c.signalCode !== null) return resolve();
            const bound = setTimeout(resolve, 3000);
            c.once('exit', () => {
              clearTimeout(bound);
              resolve();
            });
            c.kill('SIGKILL');
          }),
      ),
    );
    await run('ip', ['-force', '-batch', '-'], { input: delBatch });
    const left = (await listNetns()).filter((n) => allNs.includes(n));
    if (left.length > 0) throw new Error(`netns harness: namespaces still present after destroy: ${left.join(', ')}`);
  };

  try {
    await must('ip', ['-batch', '-'], { input: allNs.map((n) => `netns add ${n}\n`).join('') });
    await configure(p, capture);
  } catch (err) {
    await destroy().catch(() => undefined);
    throw err;
  }

  const podByName = (name: string): PodNs => {
    const pod = p.pods.find((x) => x.name === name);
    if (!pod) throw new Error(`netns harness: no pod named ${name}`);
    return pod;
  };
  const nodeByName = (name: string): NodeNs => {
    const node = p.nodes.find((x) => x.name === name);
    if (!node) throw new Error(`netns harness: no node named ${name}`);
    return node;
  };
  return Object.freeze({
    runId: p.runId,
    octet: p.octet,
    capture,
    fabricNetns: p.fabric,
    nodes: Object.freeze(p.nodes.map((n) => Object.freeze(n))),
    pods: Object.freeze(p.pods.map((x) => Object.freeze(x))),
    exec: (ns: NsRef, argv: readonly string[], eo?: ExecOptions) => run('ip', ['netns', 'exec', nsName(ns), ...argv], eo),
    spawnIn(ns: NsRef, argv: readonly string[], so: SpawnOptions = {}): ChildProcess {
      if (destroyed) throw new Error('netns harness: cluster already destroyed');
      // `ip netns exec` execs argv in place, so the child's pid is the command's own pid
      const c = spawn('ip', ['netns', 'exec', nsName(ns), ...argv], so);
      children.add(c);
      c.once('exit', () => children.delete(c));
      return c;
    },
    podByName,
    nodeByName,
    netnsPath: (ns: NsRef) => `/run/netns/${nsName(ns)}`,
    destroy,
  });
}

export { snapshotFor, requireRoot, netnsUnavailable, type SnapshotExtra, type SnapshotDocument } from './snapshot-for';
