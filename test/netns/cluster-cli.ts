/**
 * Builds or removes a long-lived harness cluster by hand (root):
 *
 *   node dist/test/netns/cluster-cli.js up   [--name demo] [--nodes 2] [--pods-per-node 2] [--capture tproxy|redirect]
 *   node dist/test/netns/cluster-cli.js down [--name demo]
 *
 * `up` prints the cluster (nodes, pods, addresses, netns names) and the matching ztunnel snapshot
 * as JSON on stdout; run things in a pod with `ip netns exec <pod netns> ...`. Pods are
 * pod<node>-<k> in namespace default; --plain N puts the first N pods of the last node out of the
 * mesh (namespace legacy, no capture rules). `down` deletes every namespace of the named cluster.
 */
import { buildCluster, destroyNamedCluster, snapshotFor, type InboundCapture, type PodSpec } from './harness';

interface CliArgs {
  cmd: string;
  name: string;
  nodes: number;
  podsPerNode: number;
  capture: InboundCapture;
  plain: number;
}

function parseArgs(argv: readonly string[]): CliArgs {
  const out: CliArgs = { cmd: argv[0] ?? '', name: 'demo', nodes: 2, podsPerNode: 2, capture: 'tproxy', plain: 0 };
  for (let i = 1; i < argv.length; i += 2) {
    const [k, v] = [argv[i], argv[i + 1]];
    if (v === undefined) throw new Error(`missing value after ${k}`);
    if (k === '--name') out.name = v;
    else if (k === '--nodes') out.nodes = Number(v);
    else if (k === '--pods-per-node') out.podsPerNode = Number(v);
    else if (k === '--plain') out.plain = Number(v);
    else if (k === '--capture' && (v === 'tproxy' || v === 'redirect')) out.capture = v;
    else throw new Error(`unknown option ${k} ${v}`);
  }
  for (const [k, v, max] of [['--nodes', out.nodes, 50], ['--pods-per-node', out.podsPerNode, 50], ['--plain', out.plain, 50]] as const) {
    if (!Number.isInteger(v) || v < (k === '--plain' ? 0 : 1) || v > max) throw new Error(`${k} must be an integer up to ${max}, got ${v}`);
  }
  return out;
}

/** podsPerNode pods on each node; the first `plain` pods of the last node are out of the mesh. */
export function demoPods(nodes: number, podsPerNode: number, plain: number): PodSpec[] {
  const pods: PodSpec[] = [];
  for (let n = 1; n <= nodes; n++) {
    for (let k = 1; k <= podsPerNode; k++) {
      const inMesh = !(n === nodes && k <= plain);
      pods.push({ name: `pod${n}-${k}`, namespace: inMesh ? 'default' : 'legacy', node: `node${n}`, inMesh });
    }
  }
  return pods;
}

async function main(argv: readonly string[]): Promise<number> {
  let args: CliArgs;
  try {
    args = parseArgs(argv);
  } catch (err) {
    process.stderr.write(`cluster-cli: ${(err as Error).message}\nusage: cluster-cli up|down [--name demo] [--nodes 2] [--pods-per-node 2] [--plain 0] [--capture tproxy|redirect]\n`);
    return 2;
  }
  if (args.cmd === 'down') {
    const gone = await destroyNamedCluster(args.name);
    process.stdout.write(JSON.stringify({ deleted: gone }, null, 2) + '\n');
    return 0;
  }
  if (args.cmd !== 'up') {
    process.stderr.write(`cluster-cli: unknown command ${JSON.stringify(args.cmd)} (up or down)\n`);
    return 2;
  }
  await destroyNamedCluster(args.name); // `up` twice replaces the cluster instead of failing half-way
  const cluster = await buildCluster({
    nodes: args.nodes,
    pods: demoPods(args.nodes, args.podsPerNode, args.plain),
    tag: args.name,
    capture: args.capture,
    persistent: true,
  });
  const { runId, octet, capture, fabricNetns, nodes, pods } = cluster;
  process.stdout.write(JSON.stringify({ runId, octet, capture, fabricNetns, nodes, pods, snapshot: snapshotFor(cluster) }, null, 2) + '\n');
  return 0;
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => (process.exitCode = code),
    (err: Error) => {
      process.stderr.write(`cluster-cli: ${err.message}\n`);
      process.exitCode = 1;
    },
  );
}
