/**
 * deploy/manifests and deploy/kind/demo.yaml, validated offline (no cluster here): every document
 * parses and passes the Kubernetes schemas with unknown fields refused; the DaemonSet hands the
 * proxy an environment parseConfig accepts and that agrees with its own volumes, ports and probe.
 */
import t from 'tap';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import YAML from 'yaml';
import { DaemonSet } from 'kubernetes-models/apps/v1/DaemonSet';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { Namespace } from 'kubernetes-models/v1/Namespace';
import { Service } from 'kubernetes-models/v1/Service';
import { ServiceAccount } from 'kubernetes-models/v1/ServiceAccount';
import { deadlineFromGracePeriod, parseConfig } from '../../../src/config/config';
import { ENV_VARS } from '../../../src/config/env-table';
import { parseSnapshot } from '../../../src/state/parse';
import { strictValidate } from '../../helpers/kube-schema';

const ROOT = join(__dirname, '..', '..', '..', '..');
const MANIFESTS = join(ROOT, 'deploy', 'manifests');
const DEMO = join(ROOT, 'deploy', 'kind', 'demo.yaml');

// Set as Istio's chart sets them (the proxy's own pod facts) though ztunnel-ts does not read them
// yet; when it does they belong in ENV_VARS and this list can shrink.
const CHART_ONLY_ENV = new Set(['POD_NAME', 'POD_NAMESPACE', 'INSTANCE_IP']);

type Doc = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

function model(doc: Doc): { validate(): void } {
  const byKind: Record<string, new (d: Doc) => { validate(): void }> = { DaemonSet, Deployment, ConfigMap, Namespace, Service, ServiceAccount };
  const Ctor = byKind[doc['kind'] as string];
  if (Ctor === undefined) throw new Error(`no kubernetes-models class for ${String(doc['kind'])} in this test`);
  return new Ctor(doc);
}

function readDocs(file: string): Doc[] {
  const docs = YAML.parseAllDocuments(readFileSync(file, 'utf8'));
  for (const d of docs) if (d.errors.length > 0) throw new Error(`${file}: ${d.errors.map((e) => e.message).join('; ')}`);
  return docs.map((d) => d.toJS() as Doc).filter((d) => d !== null);
}

const manifestFiles = readdirSync(MANIFESTS).filter((f) => f.endsWith('.yaml'));
const resourceFiles = manifestFiles.filter((f) => f !== 'kustomization.yaml');
const all = resourceFiles.flatMap((f) => readDocs(join(MANIFESTS, f)).map((doc) => ({ file: f, doc })));
const find = (kind: string): Doc => {
  const hit = all.find((x) => x.doc['kind'] === kind);
  if (hit === undefined) throw new Error(`no ${kind} in deploy/manifests`);
  return hit.doc;
};
const ds = find('DaemonSet');
const pod = ds['spec']['template']['spec'];
const container = pod['containers'][0];
const env: Doc[] = container['env'];
const volumeOf = (mountPath: string): Doc => {
  const m = (container['volumeMounts'] as Doc[]).find((v) => mountPath === v['mountPath'] || mountPath.startsWith(`${v['mountPath']}/`));
  if (m === undefined) throw new Error(`nothing mounted at ${mountPath}`);
  return (pod['volumes'] as Doc[]).find((v) => v['name'] === m['name'])!;
};
const literal = (name: string): string | undefined => env.find((e) => e['name'] === name)?.['value'];

t.test('every manifest document parses, validates with kubernetes-models and has no field the schema lacks', async (t) => {
  const docs = [...all, ...readDocs(DEMO).map((doc) => ({ file: 'deploy/kind/demo.yaml', doc }))];
  t.ok(docs.length >= 3 + 6, 'the manifests and the demo apps');
  for (const { file, doc } of docs) {
    const what = `${file}: ${doc['kind']} ${doc['metadata']?.['name']}`;
    t.doesNotThrow(() => model(doc).validate(), `${what} (kubernetes-models)`);
    t.same(strictValidate(doc), [], `${what} (strict)`);
  }
  t.notOk(all.some((x) => x.doc['kind'] === 'Secret'), 'no Secret is committed: up.sh creates it from ca init');
});

t.test('the strict check catches what validate() lets through', async (t) => {
  const misspelt = (mutate: (d: Doc) => void): Doc => {
    const d = structuredClone(ds);
    mutate(d);
    return d;
  };
  const cases: { name: string; doc: Doc; path: string }[] = [
    { name: 'container field', doc: misspelt((d) => (d['spec']['template']['spec']['containers'][0]['resoures'] = { limits: {} })), path: '/spec/template/spec/containers/0/resoures' },
    { name: 'metadata field', doc: misspelt((d) => (d['metadata']['lables'] = { a: 'b' })), path: '/metadata/lables' },
    { name: 'volume source field', doc: misspelt((d) => (d['spec']['template']['spec']['volumes'][2]['secret']['defualtMode'] = 256)), path: '/spec/template/spec/volumes/2/secret/defualtMode' },
    { name: 'env source field', doc: misspelt((d) => (d['spec']['template']['spec']['containers'][0]['env'][0]['valeu'] = 'x')), path: '/spec/template/spec/containers/0/env/0/valeu' },
    { name: 'top-level field', doc: misspelt((d) => (d['sepc'] = {})), path: '/sepc' },
  ];
  for (const c of cases) {
    t.doesNotThrow(() => new DaemonSet(c.doc).validate(), `${c.name}: kubernetes-models alone accepts it`);
    t.same(strictValidate(c.doc), [`${c.path}: unknown field`], `${c.name}: the strict check names it`);
  }
  // schema errors still come through, next to unknown fields
  const wrongType = misspelt((d) => (d['spec']['template']['spec']['terminationGracePeriodSeconds'] = 'thirty'));
  t.match(strictValidate(wrongType), [/^\/spec\/template\/spec\/terminationGracePeriodSeconds: type/]);
  // free-form maps (labels, ConfigMap data) are not unknown fields
  t.same(strictValidate({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'x', labels: { any: 'thing' } }, data: { 'any.key': 'v' } }), []);
  t.same(strictValidate({ kind: 'ConfigMap' }), ['/: not a Kubernetes object (apiVersion and kind are required)']);
});

t.test('the kustomization lists exactly the resource files, which exist', async (t) => {
  const [k] = readDocs(join(MANIFESTS, 'kustomization.yaml'));
  t.equal(k!['apiVersion'], 'kustomize.config.k8s.io/v1beta1');
  t.equal(k!['kind'], 'Kustomization');
  t.same(Object.keys(k!).sort(), ['apiVersion', 'images', 'kind', 'namespace', 'resources']);
  t.same([...(k!['resources'] as string[])].sort(), [...resourceFiles].sort());
  t.equal(k!['namespace'], 'istio-system');
  const images = k!['images'] as Doc[];
  t.same(images.map((i) => Object.keys(i).sort()), [['name', 'newName', 'newTag']]);
  t.equal(images[0]!['name'], container['image'], 'the image override applies to the DaemonSet container');
});

t.test('the DaemonSet refers to what the manifests define', async (t) => {
  t.equal(pod['serviceAccountName'], find('ServiceAccount')['metadata']['name']);
  t.same(ds['spec']['selector']['matchLabels'], { app: 'ztunnel' });
  for (const [k, v] of Object.entries(ds['spec']['selector']['matchLabels'] as Record<string, string>)) t.equal(ds['spec']['template']['metadata']['labels'][k], v);
  t.equal(ds['spec']['template']['metadata']['labels']['istio.io/dataplane-mode'], 'none', 'never captured itself');
  const mounted = new Set((container['volumeMounts'] as Doc[]).map((m) => m['name']));
  t.same([...mounted].sort(), (pod['volumes'] as Doc[]).map((v) => v['name']).sort(), 'every volume mounted, every mount a volume');
  t.same(container['args'], ['proxy', 'ztunnel'], "Istio's chart arguments");
});

t.test('env names are ones the config parser reads, each once', async (t) => {
  const known = new Set(ENV_VARS.map((v) => v.name));
  const names = env.map((e) => e['name'] as string);
  t.same(names.filter((n) => !known.has(n) && !CHART_ONLY_ENV.has(n)), []);
  t.equal(new Set(names).size, names.length, 'no name twice');
  for (const n of ['NODE_NAME', 'POD_NAME', 'POD_NAMESPACE', 'INSTANCE_IP']) t.ok(env.find((e) => e['name'] === n)?.['valueFrom']?.['fieldRef'], `${n} from the downward API`);
  t.same(env.find((e) => e['name'] === 'NODE_NAME')?.['valueFrom']['fieldRef'], { fieldPath: 'spec.nodeName' });
  t.same(env.find((e) => e['name'] === 'INSTANCE_IP')?.['valueFrom']['fieldRef'], { fieldPath: 'status.podIP' });
});

/** The environment the kubelet would give the container on a node with `cpus` allocatable CPUs. */
function kubeletEnv(extra: Doc[] = [], cpus = 8): Record<string, string> {
  const out: Record<string, string> = {};
  for (const e of [...env, ...extra]) {
    if (typeof e['value'] === 'string') out[e['name']] = e['value'];
    else if (e['valueFrom']?.['fieldRef']) {
      const samples: Record<string, string> = { 'spec.nodeName': 'ztunnel-ts-worker', 'metadata.name': 'ztunnel-ts-abcde', 'metadata.namespace': 'istio-system', 'status.podIP': '10.244.1.2' };
      out[e['name']] = samples[e['valueFrom']['fieldRef']['fieldPath']]!;
    } else if (e['valueFrom']?.['resourceFieldRef']) {
      // divisor 1: the kubelet rounds up to whole CPUs; with no limit it reports the node's
      out[e['name']] = String(cpus);
    }
  }
  return out;
}

t.test('parseConfig accepts the environment and it agrees with the pod spec', async (t) => {
  const config = parseConfig(kubeletEnv(), { logicalCpus: 16 });
  t.equal(config.proxyMode, 'inpod');
  t.equal(config.nodeName, 'ztunnel-ts-worker');
  t.equal(config.numWorkerThreads, 2, 'max(25% of 8, 2): sized from ZTUNNEL_CPU_LIMIT, not the host');
  t.equal(config.packetMark, 1337);

  // the snapshot file is a key of the mounted ConfigMap, and it parses
  t.equal(config.xds.kind, 'path');
  const xdsPath = (config.xds as { path: string }).path;
  const cmName = volumeOf(xdsPath)['configMap']['name'];
  const cm = all.find((x) => x.doc['kind'] === 'ConfigMap' && x.doc['metadata']['name'] === cmName)?.doc;
  t.ok(cm, `ConfigMap ${cmName} is in the manifests`);
  const key = xdsPath.slice(xdsPath.lastIndexOf('/') + 1);
  t.type(cm!['data'][key], 'string');
  t.doesNotThrow(() => parseSnapshot(cm!['data'][key], { source: `${cmName}/${key}`, trustDomain: config.trustDomain }));

  // the CA folder is the Secret mount, readable by its owner only
  const ca = volumeOf(config.localCaDir!);
  t.equal(ca['secret']['defaultMode'], 0o400);
  t.equal(ca['secret']['secretName'], 'ztunnel-ts-cacerts');
  t.match(readFileSync(join(ROOT, 'deploy', 'kind', 'up.sh'), 'utf8'), /SECRET="ztunnel-ts-cacerts"/, 'up.sh creates that Secret');

  // the ZDS socket lives on the node's /var/run/ztunnel, where istio-cni looks
  t.same(volumeOf(config.inpodUds)['hostPath'], { path: '/var/run/ztunnel', type: 'DirectoryOrCreate' });

  // drain deadline from the pod's grace period
  t.equal(literal('TERMINATION_GRACE_PERIOD_SECONDS'), String(pod['terminationGracePeriodSeconds']));
  t.equal(config.terminationDeadlineMs, deadlineFromGracePeriod(pod['terminationGracePeriodSeconds']));
  t.ok(config.terminationDeadlineMs < pod['terminationGracePeriodSeconds'] * 1000, 'the drain ends before SIGKILL');

  // probe and ports where the proxy listens
  t.same(container['readinessProbe']['httpGet'], { path: '/healthz/ready', port: config.readinessAddr.port });
  t.equal(config.readinessAddr.port, 15021);
  const ports = (container['ports'] as Doc[]).map((p) => p['containerPort']).sort();
  t.same(ports, [15001, 15006, 15008, 15020, 15021]);
  t.ok((container['ports'] as Doc[]).some((p) => p['containerPort'] === config.statsAddr.port && p['name'] === 'ztunnel-stats'));
  t.equal(config.outboundAddr.port, 15001);
});

t.test('resources follow the advice: small requests, no limits, CPU count from the downward API', async (t) => {
  t.same(Object.keys(container['resources']), ['requests'], 'no limits by default');
  t.same(container['resources']['requests'], { cpu: '200m', memory: '256Mi' });
  const cpu = env.find((e) => e['name'] === 'ZTUNNEL_CPU_LIMIT');
  t.same(cpu?.['valueFrom']['resourceFieldRef'], { containerName: container['name'], resource: 'limits.cpu', divisor: '1' });
  t.notOk(env.some((e) => /^ZTUNNEL_RESOURCE_CPU_/.test(e['name'])), 'the resource quantities are only set by the operator');

  // the commented block operators uncomment must be valid env entries the parser accepts
  const text = readFileSync(join(MANIFESTS, 'daemonset.yaml'), 'utf8');
  const block = /# operator-cpu:start\n([\s\S]*?)\n\s*# operator-cpu:end/.exec(text);
  t.ok(block, 'the operator CPU block is there');
  // "            # - name: X" → "- name: X"; "            #   value: ..." → "  value: ..."
  const uncommented = block![1]!.split('\n').map((l) => l.replace(/^\s*# ?/, '')).join('\n');
  const extra = YAML.parse(uncommented) as Doc[];
  t.same(extra.map((e) => e['name']).sort(), ['ZTUNNEL_RESOURCE_CPU_LIMIT', 'ZTUNNEL_RESOURCE_CPU_REQUEST']);
  const uncommentedDs = structuredClone(ds);
  uncommentedDs['spec']['template']['spec']['containers'][0]['env'].push(...extra);
  t.same(strictValidate(uncommentedDs), [], 'valid env entries once uncommented');
  const withLimit = parseConfig(kubeletEnv(extra, 2), { logicalCpus: 16 });
  t.equal(withLimit.numWorkerThreads, 2, 'a limit of 2 CPUs: 2 worker threads');
  // what the downward API would give in place of a literal "2500m" with divisor 1
  t.equal(parseConfig({ ...kubeletEnv(), ZTUNNEL_RESOURCE_CPU_LIMIT: '2500m' }, { logicalCpus: 16 }).numWorkerThreads, 3);
});

t.test('security context as Istio runs ztunnel', async (t) => {
  const sc = container['securityContext'];
  t.same(sc['capabilities'], { drop: ['ALL'], add: ['NET_ADMIN', 'SYS_ADMIN', 'NET_RAW'] });
  t.equal(sc['privileged'], false);
  t.equal(sc['readOnlyRootFilesystem'], true);
  t.equal(sc['runAsUser'], 0);
  t.ok((container['volumeMounts'] as Doc[]).some((m) => m['mountPath'] === '/tmp'), 'a writable /tmp beside the read-only root');
  t.equal(pod['automountServiceAccountToken'], false, 'no API token: the proxy never calls the API');
});
