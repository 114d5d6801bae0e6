/**
 * In-pod mode end to end on a simulated cluster (test/netns/harness.ts): two nodes, each running
 * the real `ztunnel-ts proxy` (INPOD_ENABLED=true) inside its node namespace; pods registered over
 * ZDS by a stand-in for istio-cni (fake-cni.ts) that passes each pod's netns fd; istio-cni's
 * in-pod iptables rules in every mesh pod. Apps are unmodified: a plain connect() to a pod IP.
 *
 * Node 1 runs 2 workers with the native splice relay; node 2 one worker with the JS copy path
 * (ZTUNNEL_NATIVE_RELAY=false). Every socket-to-socket leg runs on both engines: :15001
 * passthrough from a node1 pod (splice) and from a node2 pod (JS), :15006 plaintext inbound
 * landing on node1 (splice) and on node2 (JS). (HBONE legs have an HTTP/2 stream on one side:
 * always the JS copy.)
 */
import t from 'tap';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { initCaDir } from '../../src/identity/ca-dir';
import { loadNative } from '../../src/native/addon';
import { eventually } from '../helpers/eventually';
import { parseProm } from '../helpers/prom-text';
import { startAgent, type NsAgent } from './agent-client';
import { startFakeCni, type FakeCni } from './fake-cni';
import { buildCluster, requireRoot, snapshotFor, type Cluster, type PodNs } from './harness';
import type { ConnectResult } from './ns-agent';

const MAIN = resolve(__dirname, '../../src/main.js');
const NS = 'shop';
const APP_PORT = 8080;

interface NodeProxy {
  readonly name: string;
  readonly cni: FakeCni;
  readonly proc: ChildProcess;
  /** Rejects when the proxy exits: raced against waits so a crash fails fast with its log. */
  readonly died: Promise<never>;
  log: string;
}

const isLanding = (r: unknown): r is ConnectResult => typeof r === 'object' && r !== null && 'landing' in r;

/** GET http://127.0.0.1:<port><path> from inside a node namespace (admin/stats/readiness live there). */
async function httpIn(cluster: Cluster, node: string, port: number, path: string): Promise<{ status: number; body: string }> {
  const script = `fetch('http://127.0.0.1:${port}${path}').then(async r => process.stdout.write(JSON.stringify({status: r.status, body: await r.text()})), e => { process.stdout.write(JSON.stringify({status: 0, body: String(e)})); })`;
  const r = await cluster.exec(cluster.nodeByName(node), [process.execPath, '-e', script]);
  return JSON.parse(r.stdout || '{"status":0,"body":""}') as { status: number; body: string };
}

t.test('in-pod mode on a two-node netns cluster', async (t) => {
  if (!requireRoot(t)) return;
  const native = loadNative();
  const dir = mkdtempSync(join(tmpdir(), 'zt-inpod-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  await initCaDir(join(dir, 'ca'));

  const cluster = await buildCluster({
    nodes: 2,
    pods: [
      { name: 'client', namespace: NS, node: 'node1' },
      { name: 'blocked', namespace: NS, node: 'node1' },
      { name: 'local', namespace: NS, node: 'node1' },
      { name: 'server', namespace: NS, node: 'node2' },
      { name: 'legacy', namespace: NS, node: 'node2', inMesh: false },
      { name: 'late', namespace: NS, node: 'node2' },
    ],
  });
  t.teardown(() => cluster.destroy());
  const pod = (n: string): PodNs => cluster.podByName(n);
  const doc = snapshotFor(cluster, {
    policies: [
      {
        name: 'deny-blocked',
        namespace: NS,
        scope: 'Namespace',
        action: 'Deny',
        rules: [[[{ principals: [{ Exact: `cluster.local/ns/${NS}/sa/blocked` }] }]]],
      },
    ],
  });
  const snapshotPath = join(dir, 'snapshot.json');
  // `late` is registered over ZDS before the snapshot knows it
  const isLate = (w: object): boolean => (w as { name: string }).name === 'late';
  writeFileSync(snapshotPath, JSON.stringify({ ...doc, workloads: doc.workloads.filter((w) => !isLate(w)) }));

  const proxies: NodeProxy[] = [];
  const startProxy = (node: string, env: Record<string, string>): NodeProxy => {
    const cni = startFakeCni(native, join(dir, `${node}.sock`));
    const proc = cluster.spawnIn(cluster.nodeByName(node), [process.execPath, MAIN, 'proxy'], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: {
        PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
        INPOD_ENABLED: 'true',
        INPOD_UDS: cni.path,
        NODE_NAME: node,
        LOCAL_XDS_PATH: snapshotPath,
        LOCAL_CA_DIR: join(dir, 'ca'),
        IPV6_ENABLED: 'false',
        LOG_FORMAT: 'json',
        ...env,
      },
    });
    let fail!: (e: Error) => void;
    const died = new Promise<never>((_, reject) => (fail = reject));
    died.catch(() => undefined);
    const p: NodeProxy = { name: node, cni, proc, died, log: '' };
    proc.once('exit', (code) => fail(new Error(`${node} proxy exited with ${code}: ${p.log.slice(-3000)}`)));
    proc.stdout!.setEncoding('utf8').on('data', (d: string) => (p.log += d));
    proc.stderr!.setEncoding('utf8').on('data', (d: string) => (p.log += d));
    proxies.push(p);
    return p;
  };
  t.teardown(async () => {
    for (const p of proxies) {
      p.proc.kill('SIGKILL');
      p.cni.close();
    }
  });
  const n1 = startProxy('node1', { ZTUNNEL_WORKER_THREADS: '2', UNSTABLE_ENABLE_SOCKS5: 'true', KEEPALIVE_TIME: '30s' });
  const n2 = startProxy('node2', { ZTUNNEL_WORKER_THREADS: '1', ZTUNNEL_NATIVE_RELAY: 'false' });
  t.teardown(() => {
    if (t.passing()) return;
    for (const p of proxies) t.comment(`--- ${p.name} log ---\n${p.log.slice(-4000)}`);
  });

  // not ready before istio-cni has sent its snapshot
  await Promise.race([n1.cni.connected(), n1.died]);
  await Promise.race([n2.cni.connected(), n2.died]);
  await eventually(async () => (await httpIn(cluster, 'node1', 15021, '/healthz/ready')).status === 500, 'node1 readiness answering');
  const pending = await httpIn(cluster, 'node1', 15021, '/healthz/ready');
  t.match(pending.body, /zds snapshot/, 'readiness waits for the ZDS snapshot');

  for (const p of cluster.pods.filter((p) => p.inMesh)) {
    const cni = p.node === 'node1' ? n1.cni : n2.cni;
    const err = await cni.send({ kind: 'add', uid: p.uid, info: { name: p.name, namespace: p.namespace, serviceAccount: p.serviceAccount } }, cluster.netnsPath(p));
    t.equal(err, '', `add ${p.name} acknowledged`);
  }
  t.equal(await n1.cni.send({ kind: 'snapshot-sent' }), '', 'snapshot-sent acknowledged');
  t.equal(await n2.cni.send({ kind: 'snapshot-sent' }), '');
  for (const node of ['node1', 'node2']) {
    await eventually(async () => (await httpIn(cluster, node, 15021, '/healthz/ready')).status === 200, `${node} ready`);
  }
  t.pass('both proxies ready after the ZDS snapshot');

  const agents = new Map<string, NsAgent>();
  for (const p of cluster.pods) agents.set(p.name, await startAgent(cluster, p));
  const agent = (n: string): NsAgent => agents.get(n)!;
  for (const n of ['server', 'local', 'legacy', 'late']) await agent(n).listen({ name: n, host: '0.0.0.0', port: APP_PORT, mode: 'inspect' });

  await t.test('cross-node: an unmodified client reaches a pod on the other node through HBONE', async (t) => {
    const r = await agent('client').connect({ host: pod('server').ip, port: APP_PORT, bytes: 2_000_000 });
    if (!isLanding(r)) return t.fail(`connect failed: ${JSON.stringify(r)}`);
    t.equal(r.landing.sha256, r.sentSha256, 'sha256 of 2 MB matches on the server');
    t.equal(r.landing.listener, 'server');
    t.equal(r.landing.remote.address, pod('client').ip, 'the server sees the client pod IP');
    t.equal(r.landing.local.address, pod('server').ip);
  });

  await t.test('SOCKS5 inside the pod (:15080) tunnels as the pod', async (t) => {
    const client = resolve(__dirname, '../../src/proxy/socks5-client.js');
    const script = `require(${JSON.stringify(client)}).socksConnect({host:'127.0.0.1',port:15080},'127.0.0.1',{host:'${pod('server').ip}',port:${APP_PORT}}).then(s=>{let b='';s.on('data',d=>b+=d);s.on('end',()=>process.stdout.write(b));s.resume();s.end('via-socks')},e=>process.stdout.write(JSON.stringify({error:String(e)})))`;
    const r = await cluster.exec(pod('client'), [process.execPath, '-e', script]);
    const landing = JSON.parse(r.stdout || '{}') as { listener?: string; remote?: { address: string }; bytes?: number };
    t.equal(landing.listener, 'server', `reached the server: ${r.stdout}${r.stderr}`);
    t.equal(landing.remote?.address, pod('client').ip, 'as the client pod');
    t.equal(landing.bytes, 'via-socks'.length);
  });

  await t.test('same node: client → local pod', async (t) => {
    const r = await agent('client').connect({ host: pod('local').ip, port: APP_PORT, bytes: 300_000 });
    if (!isLanding(r)) return t.fail(`connect failed: ${JSON.stringify(r)}`);
    t.equal(r.landing.sha256, r.sentSha256);
    t.equal(r.landing.remote.address, pod('client').ip, 'the local server sees the client pod IP');
  });

  await t.test('a non-mesh destination is passed through', async (t) => {
    const r = await agent('client').connect({ host: pod('legacy').ip, port: APP_PORT, bytes: 100_000 });
    if (!isLanding(r)) return t.fail(`connect failed: ${JSON.stringify(r)}`);
    t.equal(r.landing.sha256, r.sentSha256);
    t.equal(r.landing.remote.address, pod('client').ip);
  });

  await t.test('plaintext inbound (:15006): a non-mesh client reaches a mesh pod with its own IP', async (t) => {
    const r = await agent('legacy').connect({ host: pod('server').ip, port: APP_PORT, bytes: 100_000 });
    if (!isLanding(r)) return t.fail(`connect failed: ${JSON.stringify(r)}`);
    t.equal(r.landing.sha256, r.sentSha256);
    t.equal(r.landing.remote.address, pod('legacy').ip, 'the server sees the legacy pod IP');
  });

  await t.test('plaintext inbound (:15006) on the splice node: a non-mesh client reaches a node1 pod', async (t) => {
    const r = await agent('legacy').connect({ host: pod('local').ip, port: APP_PORT, bytes: 300_000 });
    if (!isLanding(r)) return t.fail(`connect failed: ${JSON.stringify(r)}`);
    t.equal(r.landing.sha256, r.sentSha256);
    t.equal(r.landing.listener, 'local');
    t.equal(r.landing.remote.address, pod('legacy').ip, 'the local pod sees the legacy pod IP');
  });

  await t.test('passthrough (:15001) on the JS node: a node2 pod reaches a non-mesh pod', async (t) => {
    const r = await agent('server').connect({ host: pod('legacy').ip, port: APP_PORT, bytes: 300_000 });
    if (!isLanding(r)) return t.fail(`connect failed: ${JSON.stringify(r)}`);
    t.equal(r.landing.sha256, r.sentSha256);
    t.equal(r.landing.listener, 'legacy');
    t.equal(r.landing.remote.address, pod('server').ip, 'legacy sees the server pod IP');
  });

  await t.test('the engines were the configured ones: no splice fell back to JS on node1', async (t) => {
    t.notMatch(n1.log, /splice relay failed to start/, 'node1 started every eligible relay on splice');
    t.match(n2.log, /ZTUNNEL_NATIVE_RELAY=false/, 'node2 relays in JS');
  });

  await t.test('KEEPALIVE_TIME=30s (node1) on the in-pod sockets: accepted on :15001 and :15006, and the pod\'s own outgoing ones', async (t) => {
    // connections that stay open: the inspect app answers only after the client's EOF
    const hold = (from: string, to: string): Promise<() => void> => {
      const p = cluster.spawnIn(pod(from), [process.execPath, '-e', `const s=require('net').connect(${APP_PORT},'${to}');s.on('connect',()=>{s.write('x');console.log('open')});s.on('error',e=>console.log('error '+e.code));`]);
      let out = '';
      p.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
      return eventually(() => out.includes('open'), `${from} -> ${to} open`).then(() => () => p.kill('SIGKILL'));
    };
    const stops = [await hold('client', pod('local').ip), await hold('legacy', pod('local').ip)];
    t.teardown(() => stops.forEach((s) => s()));
    // only node1's proxy's sockets (-p: the owning process), not the apps' own
    const timers = async (p: string, filter: string[]): Promise<string[]> =>
      (await cluster.exec(pod(p), ['ss', '-tnopH', 'state', 'established', ...filter])).stdout.split('\n').filter((l) => l.includes(`pid=${n1.proc.pid},`));
    const within30 = (line: string): boolean => {
      const m = /timer:\(keepalive,(?:(\d+)sec|(\d+)ms)/.exec(line);
      return m !== null && (m[1] === undefined || Number(m[1]) <= 30);
    };
    for (const [where, what, filter] of [
      ['client', ':15001 accepted the redirected app connection', ['sport', '=', ':15001']],
      ['client', 'the HBONE tunnel socket made in the pod', ['dport', '=', ':15008']],
      // TPROXY: the accepted socket keeps the original destination (the app's port) as its address
      ['local', ':15006 accepted the plaintext client', ['sport', '=', `:${APP_PORT}`]],
      ['local', 'the leg to the app (from the client\'s address)', ['dport', '=', `:${APP_PORT}`]],
    ] as const) {
      const lines = await timers(where, [...filter]);
      t.ok(lines.length > 0, `${where}: ${what}: found`);
      t.ok(lines.every(within30), `${where}: ${what}: keepalive timer within 30 s: ${lines.join(' | ')}`);
    }
  });

  await t.test('a pod registered before its workload is in the snapshot is served once it appears', async (t) => {
    type Dump = { workloadState: Record<string, { name: string; state: string }> };
    const stateOf = async (): Promise<string | undefined> =>
      Object.values((JSON.parse((await httpIn(cluster, 'node2', 15000, '/config_dump')).body) as Dump).workloadState).find((w) => w.name === 'late')?.state;
    t.equal(await stateOf(), 'pending', 'acked and pending');
    writeFileSync(`${snapshotPath}.tmp`, JSON.stringify(doc));
    renameSync(`${snapshotPath}.tmp`, snapshotPath);
    await eventually(async () => (await stateOf()) === 'up', 'late comes up with the new snapshot');
    const r = await agent('client').connect({ host: pod('late').ip, port: APP_PORT, bytes: 50_000 });
    if (!isLanding(r)) return t.fail(`connect failed: ${JSON.stringify(r)}`);
    t.equal(r.landing.sha256, r.sentSha256, 'traffic reaches it');
    t.equal(r.landing.remote.address, pod('client').ip);
  });

  await t.test('policy denial is seen by an unmodified client and counted at the destination', async (t) => {
    const r = await agent('blocked').connect({ host: pod('server').ip, port: APP_PORT, bytes: 10_000 });
    t.notOk(isLanding(r), `the blocked client never reached the app: ${JSON.stringify(r).slice(0, 200)}`);
    await eventually(async () => {
      const m = parseProm((await httpIn(cluster, 'node2', 15020, '/metrics')).body);
      return m.some((s) => s.name === 'istio_tcp_connections_failed_total' && s.labels.reporter === 'destination' && s.labels.response_flags === 'DENY' && s.value >= 1);
    }, 'a DENY counted by node2');
    t.pass('DENY counted with reporter=destination');
  });

  await t.test('metrics and config_dump reflect the pods', async (t) => {
    const m = parseProm((await httpIn(cluster, 'node2', 15020, '/metrics')).body);
    const opened = m.filter((s) => s.name === 'istio_tcp_connections_opened_total' && s.labels.reporter === 'destination' && s.labels.destination_workload === 'server');
    t.ok(opened.some((s) => s.labels.connection_security_policy === 'mutual_tls' && s.value >= 1), 'HBONE inbound counted as mutual_tls');
    t.ok(opened.some((s) => s.labels.connection_security_policy === 'unknown' && s.value >= 1), 'plaintext inbound counted as unknown security');
    const dump = JSON.parse((await httpIn(cluster, 'node1', 15000, '/config_dump')).body) as { workloadState: Record<string, { state: string; name: string }>; config: { inpodEnabled: boolean } };
    t.equal(dump.config.inpodEnabled, true);
    const states = Object.fromEntries(Object.values(dump.workloadState).map((w) => [w.name, w.state]));
    t.same(states, { client: 'up', blocked: 'up', local: 'up' }, 'node1 serves its three mesh pods');
  });

  await t.test('a pod deleted over ZDS loses its connections and listeners', async (t) => {
    // a connection that stays open: the inspect app answers only after the client's EOF
    const holder = cluster.spawnIn(pod('client'), [
      process.execPath,
      '-e',
      `const s=require('net').connect(${APP_PORT},'${pod('server').ip}');s.on('connect',()=>{s.write('x');console.log('open')});s.on('error',e=>console.log('error '+e.code));s.on('close',()=>{console.log('closed');process.exit(0)});`,
    ]);
    let out = '';
    holder.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
    await eventually(() => out.includes('open'), 'the long connection is open');
    const listening = async (): Promise<string> => (await cluster.exec(pod('server'), ['ss', '-ltnH'])).stdout;
    t.match(await listening(), /:15008\b/, 'the server pod has its HBONE listener');
    t.equal(await n2.cni.send({ kind: 'del', uid: pod('server').uid }), '', 'del acknowledged');
    await eventually(() => out.includes('closed'), 'the long connection was cut');
    const after = await listening();
    t.notMatch(after, /:1500[168]\b/, 'no proxy listener left in the server pod');
    const r = await agent('client').connect({ host: pod('server').ip, port: APP_PORT, bytes: 1000 });
    t.notOk(isLanding(r), 'new connections to the deleted pod no longer reach it');
  });

  await t.test('the proxy reconnects to a restarted node agent and keeps serving', async (t) => {
    const before = n1.cni.connections;
    n1.cni.disconnect();
    await eventually(() => n1.cni.connections > before, 'node1 reconnected to ZDS');
    await n1.cni.connected();
    for (const p of cluster.pods.filter((p) => p.node === 'node1' && p.inMesh && p.name !== 'blocked')) {
      t.equal(await n1.cni.send({ kind: 'add', uid: p.uid, info: { name: p.name, namespace: p.namespace, serviceAccount: p.serviceAccount } }, cluster.netnsPath(p)), '');
    }
    t.equal(await n1.cni.send({ kind: 'snapshot-sent' }), '', 'a second snapshot is acknowledged');
    const dump = JSON.parse((await httpIn(cluster, 'node1', 15000, '/config_dump')).body) as { workloadState: Record<string, { name: string }> };
    t.same(Object.values(dump.workloadState).map((w) => w.name).sort(), ['client', 'local'], 'the pod missing from the new snapshot was removed');
    const r = await agent('client').connect({ host: pod('local').ip, port: APP_PORT, bytes: 50_000 });
    t.ok(isLanding(r) && r.landing.sha256 === r.sentSha256, 'traffic still flows after the reconnect');
  });

  for (const a of agents.values()) await a.stop();
});
