/**
 * The ztunnel local snapshot (examples/local-snapshot.yaml, parsed by src/state/parse.ts) that
 * describes a harness cluster: one workload per pod, HBONE for in-mesh pods (their traffic is
 * captured and tunnelled) and TCP for the others (reached directly, no capture).
 */
import { execFileSync } from 'node:child_process';
import type { PodNs } from './harness';

export interface SnapshotExtra {
  /** ztunnel service entries, passed through as given */
  services?: readonly object[];
  /** ztunnel authorization policies, passed through as given */
  policies?: readonly object[];
  /** pod name -> { "<namespace>/<hostname>": { servicePort: targetPort } }: the pod is an endpoint */
  endpoints?: Readonly<Record<string, Readonly<Record<string, Readonly<Record<number, number>>>>>>;
}

export interface SnapshotDocument {
  workloads: object[];
  services: object[];
  policies: object[];
}

export function snapshotFor(cluster: { readonly pods: readonly PodNs[] }, extra: SnapshotExtra = {}): SnapshotDocument {
  const known = new Set(cluster.pods.map((p) => p.name));
  for (const name of Object.keys(extra.endpoints ?? {})) {
    if (!known.has(name)) throw new Error(`snapshotFor: endpoints names unknown pod ${JSON.stringify(name)}`);
  }
  const workloads = cluster.pods.map((p) => {
    const services = extra.endpoints?.[p.name];
    return {
      uid: p.workloadUid,
      name: p.name,
      namespace: p.namespace,
      serviceAccount: p.serviceAccount,
      workloadIps: [p.ip],
      protocol: p.inMesh ? 'HBONE' : 'TCP',
      node: p.node,
      workloadName: p.name,
      workloadType: 'pod',
      canonicalName: p.name,
      ...(services ? { services } : {}),
    };
  });
  return { workloads, services: [...(extra.services ?? [])], policies: [...(extra.policies ?? [])] };
}

/** Why the netns tests cannot run here, or null when they can. */
export function netnsUnavailable(): string | null {
  if (process.platform !== 'linux') return `not Linux (${process.platform})`;
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return 'not running as root (network namespaces and iptables need CAP_NET_ADMIN / CAP_SYS_ADMIN)';
  for (const [cmd, args] of [['ip', ['netns', 'list']], ['iptables-restore', ['--version']]] as const) {
    try {
      execFileSync(cmd, args, { stdio: 'ignore', timeout: 10_000 });
    } catch (err) {
      return `\`${cmd} ${args.join(' ')}\` failed (${(err as Error).message.split('\n')[0]}); install iproute2 and iptables`;
    }
  }
  return null;
}

/** The part of tap's Test that requireRoot uses. */
export interface SkippableTest {
  skip(name: string, cb: () => void): unknown;
  comment(...msg: unknown[]): unknown;
}

/**
 * True when the netns tests can run. Otherwise skips with a message naming why, on stderr too,
 * so a run that silently lost its netns coverage cannot go unnoticed.
 */
export function requireRoot(t: SkippableTest): boolean {
  const why = netnsUnavailable();
  if (why === null) return true;
  const msg = `NETNS TESTS SKIPPED: ${why}`;
  process.stderr.write(`\n*** ${msg} ***\n\n`);
  t.comment(msg);
  t.skip(msg, () => undefined);
  return false;
}
