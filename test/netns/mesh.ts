/**
 * A mesh to try by hand (root): `npm run mesh:up` builds the netns cluster of the in-pod tests
 * (2 nodes × 2 pods, istio-cni's capture rules in every pod), runs one `ztunnel-ts proxy` with
 * INPOD_ENABLED=true per node inside its node namespace, plays istio-cni on each node's ZDS socket
 * (fake-cni.ts) to register the pods, and starts a tiny HTTP app on :8080 in every pod.
 * `npm run mesh:down` stops it all and deletes the namespaces.
 *
 *   node dist/test/netns/mesh.js up   [--name mesh] [--nodes 2] [--pods-per-node 2]
 *   node dist/test/netns/mesh.js down [--name mesh]
 *
 * `up` starts a detached `serve` process that owns everything (its pid and logs are in
 * /run/ztunnel-ts-mesh/<name>/), waits until every proxy is ready, and prints how to use it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { initCaDir } from '../../src/identity/ca-dir';
import { loadNative } from '../../src/native/addon';
import { demoPods } from './cluster-cli';
import { startFakeCni } from './fake-cni';
import { buildCluster, destroyNamedCluster, snapshotFor, type Cluster } from './harness';

const MAIN = resolve(__dirname, '../../src/main.js');
const APP = `require('http').createServer((q,s)=>s.end('hello from '+process.env.POD+' ('+q.socket.localAddress+'), you are '+q.socket.remoteAddress+'\\n')).listen(8080)`;

interface Args {
  cmd: string;
  name: string;
  nodes: number;
  podsPerNode: number;
}

function parse(argv: readonly string[]): Args {
  const a: Args = { cmd: argv[0] ?? '', name: 'mesh', nodes: 2, podsPerNode: 2 };
  for (let i = 1; i < argv.length; i += 2) {
    const [k, v] = [argv[i], argv[i + 1] ?? ''];
    if (k === '--name' && /^[a-z0-9]{1,12}$/.test(v)) a.name = v;
    else if (k === '--nodes' && /^[1-9]$/.test(v)) a.nodes = Number(v);
    else if (k === '--pods-per-node' && /^[1-9]$/.test(v)) a.podsPerNode = Number(v);
    else throw new Error(`bad option ${k} ${v} (--name [a-z0-9]{1,12}, --nodes 1-9, --pods-per-node 1-9)`);
  }
  return a;
}

const stateDir = (name: string): string => `/run/ztunnel-ts-mesh/${name}`;

/** The long-lived owner of the cluster, the proxies, the fake agents and the apps. */
async function serve(a: Args): Promise<void> {
  const dir = stateDir(a.name);
  const cluster: Cluster = await buildCluster({ nodes: a.nodes, pods: demoPods(a.nodes, a.podsPerNode, 0), tag: a.name, persistent: true });
  const native = loadNative();
  await initCaDir(join(dir, 'ca'));
  writeFileSync(join(dir, 'snapshot.json'), JSON.stringify(snapshotFor(cluster), null, 2));
  const children: ChildProcess[] = [];
  const stop = async (): Promise<void> => {
    for (const c of children) c.kill('SIGTERM');
    await cluster.destroy();
    await destroyNamedCluster(a.name);
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop());
  process.on('SIGINT', () => void stop());
  for (const node of cluster.nodes) {
    const cni = startFakeCni(native, join(dir, `${node.name}.sock`));
    const log = openSync(join(dir, `${node.name}.log`), 'a');
    children.push(
      cluster.spawnIn(node, [process.execPath, MAIN, 'proxy'], {
        stdio: ['ignore', log, log],
        env: { ...process.env, INPOD_ENABLED: 'true', INPOD_UDS: cni.path, NODE_NAME: node.name, LOCAL_XDS_PATH: join(dir, 'snapshot.json'), LOCAL_CA_DIR: join(dir, 'ca'), IPV6_ENABLED: 'false', ZTUNNEL_WORKER_THREADS: '1' },
      }),
    );
    for (const p of cluster.pods.filter((p) => p.node === node.name)) {
      const err = await cni.send({ kind: 'add', uid: p.uid, info: { name: p.name, namespace: p.namespace, serviceAccount: p.serviceAccount } }, cluster.netnsPath(p));
      if (err !== '') throw new Error(`add ${p.name}: ${err}`);
    }
    await cni.send({ kind: 'snapshot-sent' });
  }
  for (const p of cluster.pods) children.push(cluster.spawnIn(p, [process.execPath, '-e', APP], { stdio: 'ignore', env: { POD: p.name } }));
  const info = { nodes: cluster.nodes.map((n) => ({ name: n.name, netns: n.netns })), pods: cluster.pods.map((p) => ({ name: p.name, node: p.node, ip: p.ip, netns: p.netns })) };
  writeFileSync(join(dir, 'ready.json'), JSON.stringify(info, null, 2));
}

async function up(a: Args): Promise<number> {
  const dir = stateDir(a.name);
  if (existsSync(join(dir, 'pid'))) await down(a);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const out = openSync(join(dir, 'serve.log'), 'a');
  const child = spawn(process.execPath, [__filename, 'serve', '--name', a.name, '--nodes', String(a.nodes), '--pods-per-node', String(a.podsPerNode)], { detached: true, stdio: ['ignore', out, out] });
  writeFileSync(join(dir, 'pid'), String(child.pid));
  child.unref();
  const deadline = Date.now() + 60_000;
  while (!existsSync(join(dir, 'ready.json'))) {
    if (Date.now() > deadline || child.exitCode !== null) {
      process.stderr.write(`mesh: not up after 60 s; see ${dir}/serve.log\n${readFileSync(join(dir, 'serve.log'), 'utf8').slice(-2000)}\n`);
      return 1;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  const info = JSON.parse(readFileSync(join(dir, 'ready.json'), 'utf8')) as { nodes: { name: string; netns: string }[]; pods: { name: string; ip: string; netns: string }[] };
  const [p1, p2] = [info.pods[0]!, info.pods.at(-1)!];
  process.stdout.write(
    [
      `mesh "${a.name}" is up: ${info.nodes.length} nodes, ${info.pods.length} pods, an HTTP app on :8080 in every pod.`,
      ...info.pods.map((p) => `  ${p.name.padEnd(10)} ${p.ip.padEnd(12)} ip netns exec ${p.netns} ...`),
      '',
      `try:   ip netns exec ${p1.netns} curl -s http://${p2.ip}:8080/`,
      `stats: ip netns exec ${info.nodes[0]!.netns} curl -s localhost:15020/metrics | grep istio_tcp_connections_opened_total`,
      `dump:  ip netns exec ${info.nodes[0]!.netns} curl -s localhost:15000/config_dump`,
      `logs:  ${dir}/node*.log        stop: npm run mesh:down`,
      '',
    ].join('\n'),
  );
  return 0;
}

async function down(a: Args): Promise<number> {
  const dir = stateDir(a.name);
  const pidFile = join(dir, 'pid');
  if (existsSync(pidFile)) {
    const pid = Number(readFileSync(pidFile, 'utf8'));
    try {
      process.kill(pid, 'SIGTERM');
      for (let i = 0; i < 50; i++) {
        process.kill(pid, 0);
        await new Promise((r) => setTimeout(r, 100));
      }
    } catch {
      // gone
    }
  }
  const gone = await destroyNamedCluster(a.name);
  rmSync(dir, { recursive: true, force: true });
  process.stdout.write(`mesh "${a.name}" down (${gone.length} namespaces deleted)\n`);
  return 0;
}

if (require.main === module) {
  (async () => {
    const a = parse(process.argv.slice(2));
    if (a.cmd === 'serve') return serve(a).then(() => 0);
    if (a.cmd === 'up') return up(a);
    if (a.cmd === 'down') return down(a);
    throw new Error('usage: mesh.js up|down [--name mesh] [--nodes 2] [--pods-per-node 2]');
  })().then(
    (code) => {
      if (code !== 0) process.exitCode = code;
    },
    (err: Error) => {
      process.stderr.write(`mesh: ${err.message}\n`);
      process.exitCode = 1;
    },
  );
}
