/**
 * `kubectl get namespaces,pods,services -A -o json` → ztunnel's local snapshot format: the part of
 * istiod's job a kind walkthrough needs (workloads with their service endpoints), done offline and
 * purely so it can be tested from a table of kubectl documents.
 *
 * Rules, following what istiod publishes to ztunnel for ambient pods:
 * - A pod is a workload when it has an IP and is neither finished (Succeeded/Failed) nor on the
 *   host network (a host-network pod has the node's IP, which many pods share).
 * - Its protocol is HBONE when it is in the mesh: the pod label `istio.io/dataplane-mode`, or else
 *   its namespace's label, is `ambient` (a pod label `none` opts a pod out); TCP otherwise.
 * - Status is Healthy when the pod's Ready condition is True.
 * - A Service with a selector makes every pod of its namespace whose labels include the selector
 *   an endpoint; named target ports are resolved against that pod's container ports (a pod without
 *   the name is not an endpoint for that port, as in Kubernetes' EndpointSlices). Only TCP ports
 *   are kept: the proxy is an L4 TCP proxy. ExternalName services have no VIP or endpoints and are
 *   left out; headless services keep their name and ports without a VIP.
 *
 * The result is plain data; the caller validates it with parseSnapshot before trusting it.
 */
import { ProxyError } from '../errors';

export interface KubeSnapshotOptions {
  /** CLUSTER_ID of the proxies: the first part of each workload uid and its clusterId. */
  readonly clusterId: string;
  /** Cluster DNS domain: service hostnames are `name.namespace.svc.<domain>`. */
  readonly domain: string;
  /** Network of every VIP and workload ("" = the default network). */
  readonly network: string;
  /** Authorization policies (ztunnel's local format) carried into the output unchanged. */
  readonly policies?: readonly unknown[];
}

export interface LocalWorkload {
  uid: string;
  name: string;
  namespace: string;
  workloadIps: string[];
  protocol: 'TCP' | 'HBONE';
  serviceAccount: string;
  node: string;
  network?: string;
  workloadName: string;
  workloadType: string;
  canonicalName: string;
  canonicalRevision: string;
  clusterId: string;
  status: 'Healthy' | 'Unhealthy';
  services?: Record<string, Record<string, number>>;
}

export interface LocalService {
  name: string;
  namespace: string;
  hostname: string;
  vips: string[];
  ports: Record<string, number>;
}

export interface KubeSnapshot {
  readonly snapshot: { workloads: LocalWorkload[]; services: LocalService[]; policies: unknown[] };
  /** One line per object left out and why, for the operator (stderr of the command). */
  readonly skipped: readonly string[];
}

type Obj = Record<string, unknown>;

const DATAPLANE_LABEL = 'istio.io/dataplane-mode';

function isObj(v: unknown): v is Obj {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function obj(v: unknown): Obj {
  return isObj(v) ? v : {};
}

function str(v: unknown): string {
  return typeof v === 'string' ? v : '';
}

function list(v: unknown): unknown[] {
  return Array.isArray(v) ? v : [];
}

function labelsOf(o: Obj): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(obj(obj(o['metadata'])['labels']))) if (typeof v === 'string') out[k] = v;
  return out;
}

function nameOf(o: Obj): { name: string; namespace: string } {
  const md = obj(o['metadata']);
  return { name: str(md['name']), namespace: str(md['namespace']) };
}

/** A kubectl List (what `-o json` prints for several objects), one object, or an array of either. */
function itemsOf(input: unknown): Obj[] {
  if (Array.isArray(input)) return input.flatMap(itemsOf);
  if (!isObj(input) || typeof input['kind'] !== 'string') {
    throw new ProxyError('ERR_KUBE_INPUT', 'expected the JSON of `kubectl get namespaces,pods,services -A -o json` (a List or a Kubernetes object)');
  }
  if (input['kind'] === 'List' || input['kind'].endsWith('List')) return list(input['items']).filter(isObj);
  return [input];
}

/** The Deployment behind a ReplicaSet pod, else the owner, else the pod (istiod's workload name). */
function workloadIdentity(pod: Obj, name: string, labels: Record<string, string>): { workloadName: string; workloadType: string } {
  const owner = list(obj(pod['metadata'])['ownerReferences']).map(obj).find((r) => r['controller'] === true) ?? null;
  if (owner === null) return { workloadName: name, workloadType: 'pod' };
  const ownerName = str(owner['name']);
  const hash = labels['pod-template-hash'];
  if (owner['kind'] === 'ReplicaSet' && hash !== undefined && ownerName.endsWith(`-${hash}`)) {
    return { workloadName: ownerName.slice(0, -hash.length - 1), workloadType: 'deployment' };
  }
  if (owner['kind'] === 'Job') return { workloadName: ownerName, workloadType: 'job' };
  return { workloadName: ownerName || name, workloadType: 'pod' };
}

function podIps(pod: Obj): string[] {
  const status = obj(pod['status']);
  const ips = list(status['podIPs']).map((p) => str(obj(p)['ip'])).filter((ip) => ip !== '');
  if (ips.length > 0) return ips;
  const one = str(status['podIP']);
  return one === '' ? [] : [one];
}

function isReady(pod: Obj): boolean {
  return list(obj(pod['status'])['conditions']).some((c) => obj(c)['type'] === 'Ready' && obj(c)['status'] === 'True');
}

/** Container port names → numbers (TCP only), for named service target ports. */
function namedPorts(pod: Obj): Map<string, number> {
  const out = new Map<string, number>();
  for (const c of list(obj(pod['spec'])['containers'])) {
    for (const p of list(obj(c)['ports']).map(obj)) {
      const proto = str(p['protocol']) || 'TCP';
      if (proto === 'TCP' && typeof p['name'] === 'string' && typeof p['containerPort'] === 'number') out.set(p['name'], p['containerPort']);
    }
  }
  return out;
}

interface SvcPort {
  readonly port: number;
  /** A number, or a container port name to resolve per pod. */
  readonly target: number | string;
}

interface SvcInfo {
  readonly key: string;
  readonly namespace: string;
  readonly selector: Record<string, string> | null;
  readonly ports: readonly SvcPort[];
}

function convertService(svc: Obj, opts: KubeSnapshotOptions, skipped: string[]): { out: LocalService; info: SvcInfo } | null {
  const { name, namespace } = nameOf(svc);
  const spec = obj(svc['spec']);
  const id = `service ${namespace}/${name}`;
  if (name === '' || namespace === '') {
    skipped.push(`${id}: no name or namespace`);
    return null;
  }
  if (spec['type'] === 'ExternalName') {
    skipped.push(`${id}: ExternalName services have no VIP or endpoints`);
    return null;
  }
  const ports: SvcPort[] = [];
  const portMap: Record<string, number> = {};
  for (const p of list(spec['ports']).map(obj)) {
    const port = p['port'];
    if (typeof port !== 'number') continue;
    if ((str(p['protocol']) || 'TCP') !== 'TCP') {
      skipped.push(`${id} port ${port}/${str(p['protocol'])}: only TCP ports are proxied`);
      continue;
    }
    const tp = p['targetPort'];
    const target = typeof tp === 'number' || (typeof tp === 'string' && tp !== '') ? tp : port;
    ports.push({ port, target: typeof target === 'string' && /^[0-9]+$/.test(target) ? Number(target) : target });
    // a named target differs per pod: the service says "0" and each endpoint carries its number
    portMap[String(port)] = typeof target === 'number' ? target : /^[0-9]+$/.test(target) ? Number(target) : 0;
  }
  const clusterIps = list(spec['clusterIPs']).map(str).filter((ip) => ip !== '' && ip !== 'None');
  const single = str(spec['clusterIP']);
  const vips = clusterIps.length > 0 ? clusterIps : single !== '' && single !== 'None' ? [single] : [];
  const hostname = `${name}.${namespace}.svc.${opts.domain}`;
  const sel = obj(spec['selector']);
  const selector = Object.keys(sel).length === 0 ? null : (Object.fromEntries(Object.entries(sel).map(([k, v]) => [k, str(v)])) as Record<string, string>);
  return {
    out: { name, namespace, hostname, vips: vips.map((ip) => `${opts.network}/${ip}`), ports: portMap },
    info: { key: `${namespace}/${hostname}`, namespace, selector, ports },
  };
}

function selects(selector: Record<string, string>, labels: Record<string, string>): boolean {
  return Object.entries(selector).every(([k, v]) => labels[k] === v);
}

function endpointPorts(svc: SvcInfo, named: Map<string, number>): Record<string, number> | null {
  const out: Record<string, number> = {};
  let any = false;
  for (const p of svc.ports) {
    const target = typeof p.target === 'number' ? p.target : named.get(p.target);
    if (target === undefined) continue;
    out[String(p.port)] = target;
    any = true;
  }
  return any ? out : null;
}

function convertPod(
  pod: Obj,
  ambientNamespaces: ReadonlySet<string>,
  services: readonly SvcInfo[],
  opts: KubeSnapshotOptions,
  skipped: string[],
): LocalWorkload | null {
  const { name, namespace } = nameOf(pod);
  const id = `pod ${namespace}/${name}`;
  const spec = obj(pod['spec']);
  const phase = str(obj(pod['status'])['phase']);
  const ips = podIps(pod);
  const why =
    name === '' || namespace === '' ? 'no name or namespace'
    : spec['hostNetwork'] === true ? "host network (it shares the node's IP)"
    : phase === 'Succeeded' || phase === 'Failed' ? `${phase} (its IP may belong to another pod now)`
    : ips.length === 0 ? 'no IP yet'
    : null;
  if (why !== null) {
    skipped.push(`${id}: ${why}`);
    return null;
  }

  const labels = labelsOf(pod);
  const mode = labels[DATAPLANE_LABEL];
  const inMesh = mode !== undefined ? mode === 'ambient' : ambientNamespaces.has(namespace);
  const { workloadName, workloadType } = workloadIdentity(pod, name, labels);
  const w: LocalWorkload = {
    uid: `${opts.clusterId}//Pod/${namespace}/${name}`,
    name,
    namespace,
    workloadIps: ips,
    protocol: inMesh ? 'HBONE' : 'TCP',
    serviceAccount: str(spec['serviceAccountName']) || 'default',
    node: str(spec['nodeName']),
    workloadName,
    workloadType,
    canonicalName: labels['service.istio.io/canonical-name'] ?? labels['app.kubernetes.io/name'] ?? labels['app'] ?? workloadName,
    canonicalRevision: labels['service.istio.io/canonical-revision'] ?? labels['app.kubernetes.io/version'] ?? labels['version'] ?? 'latest',
    clusterId: opts.clusterId,
    status: isReady(pod) ? 'Healthy' : 'Unhealthy',
  };
  if (opts.network !== '') w.network = opts.network;
  const named = namedPorts(pod);
  const refs: Record<string, Record<string, number>> = {};
  for (const svc of services) {
    if (svc.namespace !== namespace || svc.selector === null || !selects(svc.selector, labels)) continue;
    const ports = endpointPorts(svc, named);
    if (ports !== null) refs[svc.key] = ports;
  }
  if (Object.keys(refs).length > 0) w.services = refs;
  return w;
}

/** Converts kubectl's JSON (already parsed) into a local snapshot; throws ERR_KUBE_INPUT when it is not kubectl output. */
export function kubeToSnapshot(input: unknown, opts: KubeSnapshotOptions): KubeSnapshot {
  const items = itemsOf(input);
  const skipped: string[] = [];
  const ambient = new Set<string>();
  const pods: Obj[] = [];
  const services: LocalService[] = [];
  const infos: SvcInfo[] = [];
  for (const item of items) {
    switch (item['kind']) {
      case 'Namespace':
        if (labelsOf(item)[DATAPLANE_LABEL] === 'ambient') ambient.add(nameOf(item).name);
        break;
      case 'Pod':
        pods.push(item);
        break;
      case 'Service': {
        const s = convertService(item, opts, skipped);
        if (s !== null) {
          services.push(s.out);
          infos.push(s.info);
        }
        break;
      }
      default:
        skipped.push(`${str(item['kind'])} ${nameOf(item).namespace}/${nameOf(item).name}: not a Namespace, Pod or Service`);
    }
  }
  const workloads: LocalWorkload[] = [];
  for (const pod of pods) {
    const w = convertPod(pod, ambient, infos, opts, skipped);
    if (w !== null) workloads.push(w);
  }
  // stable order, so regenerating an unchanged cluster gives an identical file (and no reload)
  workloads.sort((a, b) => (a.uid < b.uid ? -1 : a.uid > b.uid ? 1 : 0));
  services.sort((a, b) => (a.hostname < b.hostname ? -1 : a.hostname > b.hostname ? 1 : 0));
  return { snapshot: { workloads, services, policies: [...(opts.policies ?? [])] }, skipped };
}
