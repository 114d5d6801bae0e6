/**
 * kubeToSnapshot from a table of kubectl JSON documents, shaped as `kubectl get -o json` prints
 * them; every result must also pass the proxy's own snapshot parser.
 */
import t from 'tap';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import YAML from 'yaml';
import { runCli } from '../../../src/cli/run';
import { kubeToSnapshot, type KubeSnapshotOptions } from '../../../src/kube/kube-snapshot';
import { parseSnapshot } from '../../../src/state/parse';

const OPTS: KubeSnapshotOptions = { clusterId: 'Kubernetes', domain: 'cluster.local', network: '' };

type Obj = Record<string, unknown>;

function ns(name: string, labels: Record<string, string> = {}): Obj {
  return { apiVersion: 'v1', kind: 'Namespace', metadata: { name, labels: { 'kubernetes.io/metadata.name': name, ...labels } } };
}

interface PodOpts {
  labels?: Record<string, string>;
  ip?: string | null;
  ips?: string[];
  node?: string;
  sa?: string;
  ready?: boolean;
  phase?: string;
  hostNetwork?: boolean;
  owner?: { kind: string; name: string };
  ports?: { name?: string; containerPort: number; protocol?: string }[];
}

function pod(namespace: string, name: string, o: PodOpts = {}): Obj {
  const ip = o.ip === undefined ? '10.244.1.5' : o.ip;
  const status: Obj = {
    phase: o.phase ?? 'Running',
    conditions: [
      { type: 'Initialized', status: 'True' },
      { type: 'Ready', status: o.ready === false ? 'False' : 'True' },
    ],
    hostIP: '172.18.0.3',
  };
  if (ip !== null) {
    status['podIP'] = ip;
    status['podIPs'] = (o.ips ?? [ip]).map((x) => ({ ip: x }));
  }
  const md: Obj = { name, namespace, uid: '0f1e2d3c-0000-4000-8000-000000000000', labels: o.labels ?? {} };
  if (o.owner !== undefined) md['ownerReferences'] = [{ apiVersion: 'apps/v1', kind: o.owner.kind, name: o.owner.name, uid: 'x', controller: true, blockOwnerDeletion: true }];
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: md,
    spec: {
      nodeName: o.node ?? 'ztunnel-ts-worker',
      serviceAccountName: o.sa ?? 'default',
      hostNetwork: o.hostNetwork,
      containers: [{ name: 'app', image: 'example', ports: o.ports ?? [] }],
    },
    status,
  };
}

function svc(namespace: string, name: string, spec: Obj): Obj {
  return { apiVersion: 'v1', kind: 'Service', metadata: { name, namespace }, spec: { type: 'ClusterIP', ...spec } };
}

function list(...items: Obj[]): Obj {
  return { apiVersion: 'v1', kind: 'List', items, metadata: { resourceVersion: '' } };
}

function convert(input: unknown, opts: Partial<KubeSnapshotOptions> = {}): ReturnType<typeof kubeToSnapshot> {
  const out = kubeToSnapshot(input, { ...OPTS, ...opts });
  // every output must be something the proxy loads
  parseSnapshot(YAML.stringify(out.snapshot), { source: 'test', trustDomain: 'cluster.local' });
  parseSnapshot(JSON.stringify(out.snapshot), { source: 'test', trustDomain: 'cluster.local' });
  return out;
}

t.test('a deployment pod in an ambient namespace is an HBONE workload with istiod-style names', async (t) => {
  const { snapshot, skipped } = convert(
    list(
      ns('demo', { 'istio.io/dataplane-mode': 'ambient' }),
      pod('demo', 'sleep-7b9f8c-x2x4z', {
        labels: { app: 'sleep', version: 'v1', 'pod-template-hash': '7b9f8c' },
        owner: { kind: 'ReplicaSet', name: 'sleep-7b9f8c' },
        sa: 'sleep',
        node: 'ztunnel-ts-worker2',
      }),
    ),
  );
  t.same(skipped, []);
  t.same(snapshot.workloads, [
    {
      uid: 'Kubernetes//Pod/demo/sleep-7b9f8c-x2x4z',
      name: 'sleep-7b9f8c-x2x4z',
      namespace: 'demo',
      workloadIps: ['10.244.1.5'],
      protocol: 'HBONE',
      serviceAccount: 'sleep',
      node: 'ztunnel-ts-worker2',
      workloadName: 'sleep',
      workloadType: 'deployment',
      canonicalName: 'sleep',
      canonicalRevision: 'v1',
      clusterId: 'Kubernetes',
      status: 'Healthy',
    },
  ]);
  t.same(snapshot.services, []);
  t.same(snapshot.policies, []);
});

t.test('mesh membership: namespace label, pod opt-in and opt-out, no label = TCP', async (t) => {
  const cases: { name: string; nsLabels: Record<string, string>; podLabels: Record<string, string>; want: 'TCP' | 'HBONE' }[] = [
    { name: 'ambient namespace', nsLabels: { 'istio.io/dataplane-mode': 'ambient' }, podLabels: {}, want: 'HBONE' },
    { name: 'pod opts out', nsLabels: { 'istio.io/dataplane-mode': 'ambient' }, podLabels: { 'istio.io/dataplane-mode': 'none' }, want: 'TCP' },
    { name: 'pod opts in', nsLabels: {}, podLabels: { 'istio.io/dataplane-mode': 'ambient' }, want: 'HBONE' },
    { name: 'nothing labelled', nsLabels: {}, podLabels: {}, want: 'TCP' },
    { name: 'other value on namespace', nsLabels: { 'istio.io/dataplane-mode': 'sidecar' }, podLabels: {}, want: 'TCP' },
  ];
  for (const c of cases) {
    const { snapshot } = convert(list(ns('n', c.nsLabels), pod('n', 'p', { labels: c.podLabels })));
    t.equal(snapshot.workloads[0]?.protocol, c.want, c.name);
  }
  // without the Namespace objects only pod labels count
  t.equal(convert(list(pod('n', 'p'))).snapshot.workloads[0]?.protocol, 'TCP');
});

t.test('pods left out, and why', async (t) => {
  const { snapshot, skipped } = convert(
    list(
      pod('kube-system', 'kube-proxy-abc', { hostNetwork: true, ip: '172.18.0.3' }),
      pod('kube-system', 'etcd-cp', { hostNetwork: true, ip: '172.18.0.3' }),
      pod('demo', 'job-done', { phase: 'Succeeded', ip: '10.244.1.9' }),
      pod('demo', 'crashed', { phase: 'Failed', ip: '10.244.1.9' }),
      pod('demo', 'pending', { phase: 'Pending', ip: null }),
      pod('demo', 'running', { ip: '10.244.1.9' }),
    ),
  );
  // two host-network pods share the node IP and a finished pod's IP is reused: keeping them would
  // make the parser refuse the document ("already used by")
  t.same(snapshot.workloads.map((w) => w.name), ['running']);
  t.same(skipped, [
    "pod kube-system/kube-proxy-abc: host network (it shares the node's IP)",
    "pod kube-system/etcd-cp: host network (it shares the node's IP)",
    'pod demo/job-done: Succeeded (its IP may belong to another pod now)',
    'pod demo/crashed: Failed (its IP may belong to another pod now)',
    'pod demo/pending: no IP yet',
  ]);
});

t.test('workload name, type, canonical labels, readiness, dual stack', async (t) => {
  const { snapshot } = convert(
    list(
      pod('d', 'web-0', { ip: '10.244.1.1', owner: { kind: 'StatefulSet', name: 'web' }, labels: { 'app.kubernetes.io/name': 'web', 'app.kubernetes.io/version': '2.1' } }),
      pod('d', 'migrate-abcde', { ip: '10.244.1.2', owner: { kind: 'Job', name: 'migrate' } }),
      pod('d', 'bare', { ip: '10.244.1.3', ready: false, labels: { 'service.istio.io/canonical-name': 'canon', 'service.istio.io/canonical-revision': 'r7', app: 'ignored' } }),
      pod('d', 'dual', { ip: '10.244.1.4', ips: ['10.244.1.4', 'fd00:10:244:1::4'] }),
      // a ReplicaSet not made by a Deployment (no matching pod-template-hash): the ReplicaSet is the workload
      pod('d', 'rs-only-x1', { ip: '10.244.1.5', owner: { kind: 'ReplicaSet', name: 'rs-only' } }),
    ),
  );
  const by = new Map(snapshot.workloads.map((w) => [w.name, w]));
  t.match(by.get('web-0'), { workloadName: 'web', workloadType: 'pod', canonicalName: 'web', canonicalRevision: '2.1', status: 'Healthy' });
  t.match(by.get('migrate-abcde'), { workloadName: 'migrate', workloadType: 'job', canonicalName: 'migrate', canonicalRevision: 'latest' });
  t.match(by.get('bare'), { workloadName: 'bare', workloadType: 'pod', canonicalName: 'canon', canonicalRevision: 'r7', status: 'Unhealthy' });
  t.same(by.get('dual')?.workloadIps, ['10.244.1.4', 'fd00:10:244:1::4']);
  t.match(by.get('rs-only-x1'), { workloadName: 'rs-only', workloadType: 'pod' });
  // sorted by uid, so an unchanged cluster regenerates an identical file
  t.same(snapshot.workloads.map((w) => w.uid), [...snapshot.workloads.map((w) => w.uid)].sort());
});

t.test('services: VIPs, numbered and named target ports, selectors, UDP, headless, ExternalName', async (t) => {
  const { snapshot, skipped } = convert(
    list(
      svc('demo', 'echo', {
        clusterIP: '10.96.10.20',
        clusterIPs: ['10.96.10.20'],
        selector: { app: 'echo' },
        ports: [
          { name: 'http', port: 80, protocol: 'TCP', targetPort: 'http-alt' },
          { name: 'grpc', port: 9090, protocol: 'TCP', targetPort: 9091 },
          { name: 'plain', port: 7000, protocol: 'TCP' },
          { name: 'dns', port: 53, protocol: 'UDP', targetPort: 53 },
        ],
      }),
      svc('demo', 'db', { clusterIP: 'None', clusterIPs: ['None'], selector: { app: 'db' }, ports: [{ port: 5432, protocol: 'TCP', targetPort: 5432 }] }),
      svc('demo', 'ext', { type: 'ExternalName', externalName: 'example.com' }),
      svc('demo', 'manual', { clusterIP: '10.96.10.21', ports: [{ port: 443, protocol: 'TCP', targetPort: '8443' }] }),
      pod('demo', 'echo-1', { ip: '10.244.1.10', labels: { app: 'echo', extra: 'x' }, ports: [{ name: 'http-alt', containerPort: 8080 }] }),
      // no container port named http-alt: not an endpoint for port 80, still one for the numbered ports
      pod('demo', 'echo-2', { ip: '10.244.2.10', labels: { app: 'echo' } }),
      pod('demo', 'db-0', { ip: '10.244.2.11', labels: { app: 'db' } }),
      pod('other', 'echo-elsewhere', { ip: '10.244.2.12', labels: { app: 'echo' } }),
    ),
  );
  t.same(snapshot.services, [
    { name: 'db', namespace: 'demo', hostname: 'db.demo.svc.cluster.local', vips: [], ports: { '5432': 5432 } },
    { name: 'echo', namespace: 'demo', hostname: 'echo.demo.svc.cluster.local', vips: ['/10.96.10.20'], ports: { '80': 0, '9090': 9091, '7000': 7000 } },
    { name: 'manual', namespace: 'demo', hostname: 'manual.demo.svc.cluster.local', vips: ['/10.96.10.21'], ports: { '443': 8443 } },
  ]);
  const by = new Map(snapshot.workloads.map((w) => [w.name, w]));
  t.same(by.get('echo-1')?.services, { 'demo/echo.demo.svc.cluster.local': { '80': 8080, '9090': 9091, '7000': 7000 } });
  t.same(by.get('echo-2')?.services, { 'demo/echo.demo.svc.cluster.local': { '9090': 9091, '7000': 7000 } });
  t.same(by.get('db-0')?.services, { 'demo/db.demo.svc.cluster.local': { '5432': 5432 } });
  t.equal(by.get('echo-elsewhere')?.services, undefined, 'selectors only match pods of the service namespace');
  t.same(skipped, ['service demo/echo port 53/UDP: only TCP ports are proxied', 'service demo/ext: ExternalName services have no VIP or endpoints']);
});

t.test('options: cluster id, domain, network, policies carried through', async (t) => {
  const policy = { name: 'deny-all', namespace: 'demo', scope: 'Namespace', action: 'Deny', rules: [[[{ namespaces: [{ Exact: 'x' }] }]]] };
  const { snapshot } = convert(
    list(svc('demo', 'echo', { clusterIP: '10.96.0.50', selector: { app: 'echo' }, ports: [{ port: 80, targetPort: 8080 }] }), pod('demo', 'e', { labels: { app: 'echo' } })),
    { clusterId: 'kind-a', domain: 'example.internal', network: 'net1', policies: [policy] },
  );
  t.match(snapshot.workloads[0], { uid: 'kind-a//Pod/demo/e', clusterId: 'kind-a', network: 'net1', services: { 'demo/echo.demo.svc.example.internal': { '80': 8080 } } });
  t.same(snapshot.services[0]?.vips, ['net1/10.96.0.50']);
  t.same(snapshot.policies, [policy]);
});

t.test('input shapes: a single object, an array of lists, other kinds noted, not kubectl output refused', async (t) => {
  t.equal(convert(pod('a', 'b')).snapshot.workloads.length, 1);
  t.equal(convert([list(pod('a', 'b', { ip: '10.244.0.1' })), list(pod('a', 'c', { ip: '10.244.0.2' }))]).snapshot.workloads.length, 2);
  const { skipped } = convert(list({ kind: 'ConfigMap', metadata: { name: 'x', namespace: 'y' } }));
  t.same(skipped, ['ConfigMap y/x: not a Namespace, Pod or Service']);
  for (const bad of [null, 42, 'text', { items: [] }]) {
    t.throws(() => kubeToSnapshot(bad, OPTS), { code: 'ERR_KUBE_INPUT' });
  }
});

t.test('the kube-snapshot command: file in, validated YAML out, errors with exit codes', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ztunnel-kube-'));
  const input = join(dir, 'kubectl.json');
  writeFileSync(
    input,
    JSON.stringify(
      list(ns('demo', { 'istio.io/dataplane-mode': 'ambient' }), svc('demo', 'echo', { clusterIP: '10.96.0.9', selector: { app: 'echo' }, ports: [{ port: 80, targetPort: 8080 }] }), pod('demo', 'echo-1', { labels: { app: 'echo' } }), pod('kube-system', 'kp', { hostNetwork: true })),
    ),
  );
  const policies = join(dir, 'policies.yaml');
  writeFileSync(policies, 'policies:\n  - name: p\n    namespace: demo\n    scope: Namespace\n    action: Allow\n    rules: []\n');
  const run = async (argv: string[], env: Record<string, string> = {}): Promise<{ code: number; out: string; err: string }> => {
    let out = '';
    let err = '';
    const code = await runCli(argv, { env, out: (s) => void (out += s), err: (s) => void (err += s) }, { onSignal: () => undefined });
    return { code, out, err };
  };
  const ok = await run(['kube-snapshot', '--policies', policies, input], { CLUSTER_ID: 'kind' });
  t.equal(ok.code, 0, ok.err);
  t.match(ok.out, /^# ztunnel-ts local snapshot generated by/);
  t.match(ok.out, /# 1 workloads, 1 services, 1 policies/);
  t.equal(ok.err, "skipped pod kube-system/kp: host network (it shares the node's IP)\n");
  const doc = parseSnapshot(ok.out, { source: 'out', trustDomain: 'cluster.local' });
  t.equal(doc.workloads[0]?.uid, 'kind//Pod/demo/echo-1');
  t.equal(doc.workloads[0]?.protocol, 'HBONE');
  t.equal(doc.policies[0]?.name, 'p');

  const notJson = join(dir, 'x.txt');
  writeFileSync(notJson, 'NAME READY\n');
  t.match(await run(['kube-snapshot', notJson]), { code: 1, err: /is not JSON/ });
  t.match(await run(['kube-snapshot', join(dir, 'missing.json')]), { code: 2, err: /cannot read kubectl output .*ENOENT/ });
  t.match(await run(['kube-snapshot']), { code: 2, err: /usage: ztunnel-ts kube-snapshot/ });
  t.match(await run(['kube-snapshot', '--bogus', input]), { code: 2, err: /usage/ });
  writeFileSync(notJson, '{"kind": 3}');
  t.match(await run(['kube-snapshot', notJson]), { code: 1, err: /expected the JSON of `kubectl get/ });
  // a policy the parser refuses: nothing is printed, exit 1
  writeFileSync(policies, 'policies:\n  - name: p\n    namespace: demo\n    scope: Sometimes\n');
  const bad = await run(['kube-snapshot', '--policies', policies, input]);
  t.equal(bad.code, 1);
  t.equal(bad.out, '');
  t.match(bad.err, /scope/);
});
