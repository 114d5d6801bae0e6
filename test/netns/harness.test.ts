/**
 * The netns harness on its own, without the proxy: the plumbing in-pod ztunnel relies on —
 * routes between pods on one and on different nodes, istio-cni's capture rules (outbound to
 * 15001 with SO_ORIGINAL_DST, inbound TPROXY to 15006/15008 keeping the original destination as
 * the local address, SO_MARK 1337 exempt) and the return path that lets the app see the client's
 * real IP — plus cleanup. Needs root (CI runs as root); skipped loudly otherwise.
 */
import { spawn, spawnSync } from 'node:child_process';
import t, { type Test } from 'tap';
import { parseSnapshot } from '../../src/state/parse';
import { startAgent, type ConnectFailure } from './agent-client';
import { buildCluster, listNetns, requireRoot, snapshotFor, sweepStale, type Cluster, type PodNs } from './harness';
import type { ConnectResult } from './ns-agent';

const SIZE = 256 * 1024;

function landed(t: Test, r: ConnectResult | ConnectFailure, what: string): ConnectResult {
  if ('error' in r) {
    t.fail(`${what}: connect failed: ${r.code} ${r.error}`);
    throw new Error(r.error);
  }
  t.equal(r.landing.sha256, r.sentSha256, `${what}: all ${SIZE} bytes arrived intact (sha256)`);
  t.equal(r.landing.bytes, SIZE, `${what}: byte count`);
  return r;
}

const fakePod = (name: string, inMesh: boolean): PodNs => ({
  name, namespace: 'default', serviceAccount: `${name}-sa`, node: 'node1', netns: `x-${name}`, ip: inMesh ? '10.9.1.2' : '10.9.1.3',
  uid: '00000000-0000-4000-a000-000000000000', workloadUid: `cluster1//v1/Pod/default/${name}`, inMesh,
});

t.test('snapshotFor: one workload per pod that the real snapshot parser accepts', async (t) => {
  const pods = [fakePod('a', true), fakePod('b', false)];
  const doc = snapshotFor({ pods }, {
    services: [{ name: 'svc', namespace: 'default', hostname: 'svc.default.svc.cluster.local', vips: ['/10.96.0.10'], ports: { 80: 8080 } }],
    endpoints: { a: { 'default/svc.default.svc.cluster.local': { 80: 8080 } } },
  });
  const parsed = parseSnapshot(JSON.stringify(doc), { source: 'snapshotFor', trustDomain: 'cluster.local' });
  t.equal(parsed.workloads.length, 2);
  t.match(parsed.workloads[0], { uid: 'cluster1//v1/Pod/default/a', protocol: 'HBONE', node: 'node1', serviceAccount: 'a-sa', workloadIps: ['10.9.1.2'] });
  t.match(parsed.workloads[1], { protocol: 'TCP', workloadIps: ['10.9.1.3'] });
  t.throws(() => snapshotFor({ pods }, { endpoints: { nope: {} } }), /unknown pod "nope"/);
});

t.test('network-namespace plumbing', { timeout: 60_000 }, async (t) => {
  if (!requireRoot(t)) return;

  const cluster: Cluster = await buildCluster({
    nodes: 2,
    pods: [
      { name: 'a', namespace: 'default', node: 'node1' },
      { name: 'c', namespace: 'legacy', node: 'node1', inMesh: false },
      { name: 'b', namespace: 'default', node: 'node2' },
      { name: 'd', namespace: 'legacy', node: 'node2', inMesh: false },
      { name: 'e', namespace: 'legacy', node: 'node2', inMesh: false },
    ],
  });
  t.teardown(() => cluster.destroy());
  const [a, b, c, d, e] = ['a', 'b', 'c', 'd', 'e'].map((n) => cluster.podByName(n)) as [PodNs, PodNs, PodNs, PodNs, PodNs];
  const agent = Object.fromEntries(await Promise.all(cluster.pods.map(async (p) => [p.name, await startAgent(cluster, p)] as const)));
  // apps: an inspect listener on 9000 in every plain pod, on 8080 in in-mesh pod a
  await Promise.all([c, d, e].map((p) => agent[p.name]!.listen({ name: `app-${p.name}`, host: '0.0.0.0', port: 9000, mode: 'inspect' })));

  t.test('topology: names unique per run, addresses as documented', async (t) => {
    t.match(cluster.runId, new RegExp(`^ztnh-${process.pid}-[0-9a-f]{6}$`));
    const present = await listNetns();
    for (const ns of [cluster.fabricNetns, ...cluster.nodes.map((n) => n.netns), ...cluster.pods.map((p) => p.netns)]) t.ok(present.includes(ns), `${ns} exists`);
    t.equal(cluster.netnsPath(a), `/run/netns/${a.netns}`);
    t.equal(a.ip, `10.${cluster.octet}.1.2`);
    t.equal(d.ip, `10.${cluster.octet}.2.3`);
    t.equal(cluster.nodeByName('node2').ip, `10.${cluster.octet}.0.2`);
    const rules = await cluster.exec(a, ['iptables-save']);
    t.match(rules.stdout, /TPROXY --on-port 15006/, 'in-mesh pod has the capture rules');
    t.notMatch((await cluster.exec(c, ['iptables-save'])).stdout, /ISTIO/, 'a pod out of the mesh has none');
    t.match((await cluster.exec(a, ['ip', 'rule'])).stdout, /32764:\s+from all fwmark 0x111\/0xfff lookup 100/);
  });

  t.test('plain TCP between pods out of the mesh, across nodes and on one node', async (t) => {
    const across = landed(t, await agent['c']!.connect({ host: d.ip, port: 9000, bytes: SIZE }), 'c(node1) -> d(node2)');
    t.match(across.landing, { listener: 'app-d', local: { address: d.ip, port: 9000 }, remote: { address: c.ip }, originalDst: null });
    const same = landed(t, await agent['e']!.connect({ host: d.ip, port: 9000, bytes: SIZE }), 'e -> d (both node2)');
    t.match(same.landing, { listener: 'app-d', remote: { address: e.ip } });
  });

  t.test('outbound capture: connect() from an in-mesh pod lands on its own 15001, SO_ORIGINAL_DST names the target', async (t) => {
    await agent['a']!.listen({ name: 'outbound-a', host: '0.0.0.0', port: 15001, mode: 'inspect' });
    for (const [dst, port] of [[d, 9000], [b, 8080], [c, 9000]] as const) {
      const r = landed(t, await agent['a']!.connect({ host: dst.ip, port, bytes: SIZE }), `a -> ${dst.name}:${port}`);
      t.match(r.landing, { listener: 'outbound-a', local: { port: 15001 }, originalDst: { address: dst.ip, port } });
      t.equal(r.landing.remote.address, a.ip, 'the captured connection comes from the pod IP');
    }
  });

  t.test('SO_MARK 1337 (ztunnel own sockets) is not captured and reaches the destination directly', async (t) => {
    const r = landed(t, await agent['a']!.connect({ host: d.ip, port: 9000, mark: 1337, bytes: SIZE }), 'a(marked) -> d');
    t.match(r.landing, { listener: 'app-d', local: { address: d.ip, port: 9000 }, remote: { address: a.ip }, originalDst: null });
  });

  t.test('inbound capture: TPROXY to 15006 (plaintext) and 15008 (HBONE), original destination as the local address', async (t) => {
    await agent['b']!.listen({ name: 'inbound-b', host: '0.0.0.0', port: 15006, transparent: true, mode: 'inspect' });
    await agent['b']!.listen({ name: 'hbone-b', host: '0.0.0.0', port: 15008, transparent: true, mode: 'inspect' });
    for (const [src, port] of [[c, 8080], [d, 8080], [c, 3306]] as const) {
      const r = landed(t, await agent[src.name]!.connect({ host: b.ip, port, bytes: SIZE }), `${src.name} -> b:${port}`);
      t.match(r.landing, { listener: 'inbound-b', local: { address: b.ip, port }, remote: { address: src.ip, port: r.local.port } });
      // not NATed: conntrack (active in the pod because of the rules) reports the destination as is
      t.same(r.landing.originalDst, r.landing.local, 'SO_ORIGINAL_DST agrees with the local address');
    }
    const h = landed(t, await agent['c']!.connect({ host: b.ip, port: 15008, bytes: SIZE }), 'c -> b:15008');
    t.match(h.landing, { listener: 'hbone-b', local: { address: b.ip, port: 15008 }, remote: { address: c.ip } });
  });

  t.test('kubelet probes (source 169.254.7.127, SNATed on the node by istio-cni) reach the app uncaptured', async (t) => {
    // node2 stands in for the kubelet; pod b still has its capture listener on 15006 from above
    const node2 = cluster.nodeByName('node2');
    t.equal((await cluster.exec(node2, ['ip', 'addr', 'add', '169.254.7.127/32', 'dev', 'lo'])).code, 0);
    const kubelet = await startAgent(cluster, node2);
    t.teardown(() => kubelet.stop());
    await agent['b']!.listen({ name: 'app-b', host: '0.0.0.0', port: 8080, mode: 'inspect' });
    const probe = landed(t, await kubelet.connect({ host: b.ip, port: 8080, bindAddress: '169.254.7.127', bytes: SIZE }), 'probe -> b:8080');
    t.match(probe.landing, { listener: 'app-b', local: { address: b.ip, port: 8080 }, remote: { address: '169.254.7.127' } });
    const fromNode = landed(t, await kubelet.connect({ host: b.ip, port: 8080, bytes: SIZE }), 'node IP -> b:8080');
    t.match(fromNode.landing, { listener: 'inbound-b', remote: { address: node2.ip } }, 'any other source is captured, the app listening or not');
  });

  t.test('return path: an app behind a transparent relay on 15006 sees the client pod IP', async (t) => {
    // pod a plays ztunnel inbound (relay on 15006: dial the original destination from the client
    // address, IP_TRANSPARENT + SO_MARK 1337) in front of its app on 8080; the app's replies to
    // d's address only reach the relay through connmark 0x111 + `lookup 100`
    await agent['a']!.listen({ name: 'ztunnel-inbound-a', host: '0.0.0.0', port: 15006, transparent: true, mode: 'relay' });
    await agent['a']!.listen({ name: 'app-a', host: '0.0.0.0', port: 8080, mode: 'inspect' });
    const r = landed(t, await agent['d']!.connect({ host: a.ip, port: 8080, bytes: SIZE }), 'd -> (relay) -> app on a');
    t.match(r.landing, { listener: 'app-a', local: { address: a.ip, port: 8080 }, remote: { address: d.ip } });
    t.not(r.landing.remote.port, r.local.port, 'the relay dialled its own connection (new source port)');
    // control: without the fwmark rule the app's SYN-ACK leaves for d, which resets it
    const rule = ['ip', 'rule', 'del', 'fwmark', '0x111/0xfff', 'pref', '32764', 'lookup', '100'];
    t.equal((await cluster.exec(a, rule)).code, 0);
    // (the relay's dial never completes: a bound of 2 s ends the wait, success cannot come late)
    const broken = await agent['d']!.connect({ host: a.ip, port: 8080, bytes: SIZE, timeoutMs: 2000 });
    t.ok('error' in broken, `without "fwmark 0x111 lookup 100" the spoofed connection fails (${JSON.stringify(broken).slice(0, 80)})`);
    t.equal((await cluster.exec(a, ['ip', 'rule', 'add', ...rule.slice(3)])).code, 0);
    landed(t, await agent['d']!.connect({ host: a.ip, port: 8080, bytes: SIZE }), 'd -> app on a, rule restored');
  });

  t.test('destroy() deletes every namespace of the run; the sweeper removes only dead runs', async (t) => {
    const dead = spawnSync(process.execPath, ['-e', '0']).pid;
    const staleNs = `ztnh-${dead}-dead00-fab`;
    await cluster.exec(cluster.fabricNetns, ['true']);
    spawnSync('ip', ['netns', 'add', staleNs]);
    t.teardown(() => void spawnSync('ip', ['netns', 'del', staleNs]));
    const swept = await sweepStale();
    t.ok(swept.includes(staleNs), 'a namespace of a dead pid is swept');
    t.notOk(swept.some((n) => n.startsWith(cluster.runId)), 'our own live run is left alone');
    await cluster.destroy();
    const left = (await listNetns()).filter((n) => n.startsWith(`${cluster.runId}-`) || n === staleNs);
    t.same(left, [], 'nothing left behind');
    await cluster.destroy(); // idempotent
  });
});

t.test('fallback capture: nat REDIRECT to 15006 with SO_ORIGINAL_DST (kernels without TPROXY)', { timeout: 60_000 }, async (t) => {
  if (!requireRoot(t)) return;
  const cluster = await buildCluster({
    nodes: 1,
    capture: 'redirect',
    pods: [
      { name: 'x', namespace: 'default', node: 'node1' },
      { name: 'y', namespace: 'legacy', node: 'node1', inMesh: false },
      { name: 'z', namespace: 'default', node: 'node1' },
    ],
  });
  t.teardown(() => cluster.destroy());
  const [x, y] = [cluster.podByName('x'), cluster.podByName('y')];
  const ax = await startAgent(cluster, x);
  const ay = await startAgent(cluster, y);
  t.notMatch((await cluster.exec(x, ['iptables-save'])).stdout, /TPROXY/, 'no TPROXY rule in this flavour');

  await ax.listen({ name: 'inbound-x', host: '0.0.0.0', port: 15006, mode: 'inspect' });
  const r = landed(t, await ay.connect({ host: x.ip, port: 8080, bytes: SIZE }), 'y -> x:8080');
  t.match(r.landing, { listener: 'inbound-x', local: { port: 15006 }, originalDst: { address: x.ip, port: 8080 }, remote: { address: y.ip } });

  await ay.listen({ name: 'app-y', host: '0.0.0.0', port: 9000, mode: 'inspect' });
  await ax.listen({ name: 'outbound-x', host: '0.0.0.0', port: 15001, mode: 'inspect' });
  const o = landed(t, await ax.connect({ host: y.ip, port: 9000, bytes: SIZE }), 'x -> y (captured)');
  t.match(o.landing, { listener: 'outbound-x', originalDst: { address: y.ip, port: 9000 } });

  // the return path with a relay that takes the destination from SO_ORIGINAL_DST
  const z = cluster.podByName('z');
  const az = await startAgent(cluster, z);
  await az.listen({ name: 'ztunnel-inbound-z', host: '0.0.0.0', port: 15006, transparent: true, mode: 'relay', origFromNat: true });
  await az.listen({ name: 'app-z', host: '0.0.0.0', port: 8080, mode: 'inspect' });
  const rz = landed(t, await ay.connect({ host: z.ip, port: 8080, bytes: SIZE }), 'y -> (relay) -> app on z');
  t.match(rz.landing, { listener: 'app-z', local: { address: z.ip, port: 8080 }, remote: { address: y.ip } });
  await Promise.all([ax.stop(), ay.stop(), az.stop()]);
  await cluster.destroy();
  t.same((await listNetns()).filter((n) => n.startsWith(`${cluster.runId}-`)), []);
});

t.test('a process killed by SIGINT/SIGTERM, or exiting without destroy(), still removes its namespaces', { timeout: 60_000 }, async (t) => {
  if (!requireRoot(t)) return;
  const harness = require.resolve('./harness');
  for (const how of ['SIGINT', 'SIGTERM', 'exit'] as const) {
    const script = `require(${JSON.stringify(harness)}).buildCluster({ nodes: 1, pods: [{ name: 'p', namespace: 'n', node: 'node1' }] })
      .then((c) => { console.log(JSON.stringify({ runId: c.runId, built: require('fs').existsSync(c.netnsPath(c.pods[0])) }));
        ${how === 'exit' ? 'process.exit(0);' : 'setInterval(() => {}, 1000);'} });`;
    const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    const exited = new Promise<NodeJS.Signals | number | null>((resolve) => child.once('exit', (code, sig) => resolve(sig ?? code)));
    const { runId, built } = await new Promise<{ runId: string; built: boolean }>((resolve, reject) => {
      child.stdout.setEncoding('utf8').once('data', (d: string) => resolve(JSON.parse(d) as { runId: string; built: boolean }));
      void exited.then((code) => reject(new Error(`child exited ${code} before building`)));
    });
    t.ok(built, `${how}: cluster built by the child`);
    if (how !== 'exit') child.kill(how);
    t.equal(await exited, how === 'exit' ? 0 : how, `${how}: the child ends as it would have without the harness`);
    t.same((await listNetns()).filter((n) => n.startsWith(`${runId}-`)), [], `${how}: no namespace left`);
  }
});
