/**
 * The HBONE `baggage` header (W3C Baggage, OpenTelemetry resource keys), as ztunnel writes and
 * reads it: the client sends the source workload's, the server answers 200 with the destination's,
 * and the receiving side uses them for metrics labels of a peer it cannot look up.
 *
 * Keys, in ztunnel's order: k8s.cluster.name, k8s.namespace.name, k8s.<workloadType>.name,
 * service.name (canonical name), service.version (canonical revision), cloud.region,
 * cloud.availability_zone. Empty values are left out: ztunnel's reader treats "k=" as absent.
 */
import type { Workload } from '../state/model';

export interface Baggage {
  readonly clusterId?: string;
  readonly namespace?: string;
  /** Written under k8s.<workloadType>.name. */
  readonly workloadName?: string;
  readonly workloadType?: string;
  readonly serviceName?: string;
  readonly revision?: string;
  readonly region?: string;
  readonly zone?: string;
}

// The workload kinds ztunnel recognises when reading k8s.<type>.name.
const WORKLOAD_TYPES: ReadonlySet<string> = new Set(['deployment', 'cronjob', 'pod', 'job']);
const DEFAULT_TYPE = 'deployment';

/** Baggage values cannot carry ',', ';' or '=' unescaped; names from Kubernetes never do, so anything else is dropped. */
function clean(v: string | undefined): string | undefined {
  return v && !/[,;=\s"\\]/.test(v) ? v : undefined;
}

export function formatBaggage(b: Baggage): string {
  const type = clean(b.workloadType) ?? DEFAULT_TYPE;
  const parts: string[] = [];
  const add = (k: string, v: string | undefined): void => {
    const c = clean(v);
    if (c !== undefined) parts.push(`${k}=${c}`);
  };
  add('k8s.cluster.name', b.clusterId);
  add('k8s.namespace.name', b.namespace);
  add(`k8s.${type}.name`, b.workloadName);
  add('service.name', b.serviceName);
  add('service.version', b.revision);
  add('cloud.region', b.region);
  add('cloud.availability_zone', b.zone);
  return parts.join(',');
}

/**
 * Reads one or several baggage header values. Unknown keys, properties after ';' and members
 * without '=' are ignored; an empty value counts as absent; a later member wins.
 */
export function parseBaggage(values: string | readonly string[] | undefined): Baggage {
  const out: { -readonly [K in keyof Baggage]: Baggage[K] } = {};
  if (values === undefined) return out;
  for (const value of typeof values === 'string' ? [values] : values) {
    for (const member of value.split(',')) {
      const semi = member.indexOf(';');
      const kv = semi < 0 ? member : member.slice(0, semi);
      const eq = kv.indexOf('=');
      if (eq < 0) continue;
      const key = kv.slice(0, eq).trim();
      const raw = kv.slice(eq + 1).trim();
      const val = raw === '' ? undefined : raw;
      switch (key) {
        case 'k8s.cluster.name': out.clusterId = val; break;
        case 'k8s.namespace.name': out.namespace = val; break;
        case 'service.name': out.serviceName = val; break;
        case 'service.version': out.revision = val; break;
        case 'cloud.region': out.region = val; break;
        case 'cloud.availability_zone': out.zone = val; break;
        default: {
          const m = /^k8s\.([a-z]+)\.name$/.exec(key);
          if (m && WORKLOAD_TYPES.has(m[1]!)) {
            out.workloadName = val;
            out.workloadType = val === undefined ? undefined : m[1]!;
          }
        }
      }
    }
  }
  for (const k of Object.keys(out) as (keyof Baggage)[]) if (out[k] === undefined) delete out[k];
  return out;
}

/** A workload's baggage, as ztunnel derives it (canonical name/revision as service name/version). */
export function workloadBaggage(w: Workload): Baggage {
  return {
    clusterId: w.clusterId,
    namespace: w.namespace,
    workloadName: w.workloadName,
    workloadType: w.workloadType || DEFAULT_TYPE,
    serviceName: w.canonicalName,
    revision: w.canonicalRevision,
    region: w.locality?.region,
    zone: w.locality?.zone,
  };
}
