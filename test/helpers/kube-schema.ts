/**
 * Offline validation of Kubernetes manifests against the OpenAPI schemas compiled into
 * kubernetes-models 4.x (node_modules/kubernetes-models/_schemas), with one addition: unknown
 * fields are errors.
 *
 * The shipped validators are ajv output that checks every property the schema knows and ignores
 * the rest, so `resoures:` instead of `resources:` passes (and kubectl would drop it silently).
 * The strict check runs the same validator on a Proxy of the document and records every property
 * the validator reads: a validator reads each property its schema declares (`data.x === undefined`
 * tests included) and walks every key of a free-form map (labels, ConfigMap data), so a key of the
 * document that it never read is one the schema does not have. This follows the schemas exactly,
 * with no hand-written list of fields to drift from them.
 */
import { join } from 'node:path';

interface AjvError {
  readonly instancePath: string;
  readonly message?: string;
  readonly keyword: string;
  readonly params: Record<string, unknown>;
}
type ValidateFn = ((data: unknown) => boolean) & { errors?: AjvError[] | null };

const SCHEMA_DIR = join(require.resolve('kubernetes-models/package.json'), '..', '_schemas');

/** apps/v1 DaemonSet → IoK8sApiAppsV1DaemonSet; v1 ConfigMap → IoK8sApiCoreV1ConfigMap. */
export function schemaName(apiVersion: string, kind: string): string {
  const slash = apiVersion.indexOf('/');
  const group = slash < 0 ? 'core' : apiVersion.slice(0, slash).split('.')[0]!;
  const version = slash < 0 ? apiVersion : apiVersion.slice(slash + 1);
  const cap = (s: string): string => s.charAt(0).toUpperCase() + s.slice(1);
  return `IoK8sApi${cap(group)}${cap(version)}${kind}`;
}

function loadValidator(apiVersion: string, kind: string): ValidateFn {
  const name = schemaName(apiVersion, kind);
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return (require(join(SCHEMA_DIR, `${name}.js`)) as { validate: ValidateFn }).validate;
  } catch (err) {
    throw new Error(`no schema ${name} for ${apiVersion} ${kind} in kubernetes-models: ${(err as Error).message}`);
  }
}

function childPath(path: string, key: string): string {
  return `${path}/${key.replace(/~/g, '~0').replace(/\//g, '~1')}`;
}

/** Runs `validate` on a recording Proxy of `doc`; returns the JSON pointers of keys it never read. */
function unreadKeys(validate: ValidateFn, doc: unknown): { ok: boolean; unread: string[] } {
  const records = new Map<object, { path: string; read: Set<string>; proxy: object }>();
  const wrap = (value: unknown, path: string): unknown => {
    if (value === null || typeof value !== 'object') return value;
    let rec = records.get(value);
    if (rec === undefined) {
      const read = new Set<string>();
      const proxy = new Proxy(value, {
        get(target, key, receiver) {
          const v: unknown = Reflect.get(target, key, receiver);
          if (typeof key !== 'string') return v;
          read.add(key);
          return Object.prototype.hasOwnProperty.call(target, key) ? wrap(v, childPath(path, key)) : v;
        },
        has(target, key) {
          if (typeof key === 'string') read.add(key);
          return Reflect.has(target, key);
        },
      });
      rec = { path, read, proxy };
      records.set(value, rec);
    }
    return rec.proxy;
  };
  const ok = validate(wrap(doc, ''));
  const unread: string[] = [];
  for (const [target, rec] of records) {
    if (Array.isArray(target)) continue;
    for (const key of Object.keys(target)) if (!rec.read.has(key)) unread.push(childPath(rec.path, key));
  }
  return { ok, unread };
}

/**
 * Every problem with one manifest document, as "path: message" lines (empty = valid): schema
 * errors as kubernetes-models reports them, plus every field the schema does not define.
 */
export function strictValidate(doc: unknown): string[] {
  const d = doc as { apiVersion?: unknown; kind?: unknown } | null;
  if (d === null || typeof d !== 'object' || typeof d.apiVersion !== 'string' || typeof d.kind !== 'string') {
    return ['/: not a Kubernetes object (apiVersion and kind are required)'];
  }
  const validate = loadValidator(d.apiVersion, d.kind);
  const { ok, unread } = unreadKeys(validate, doc);
  const out: string[] = [];
  if (!ok) {
    for (const e of validate.errors ?? []) out.push(`${e.instancePath || '/'}: ${e.keyword} ${JSON.stringify(e.params)}`);
  }
  for (const p of unread) out.push(`${p}: unknown field`);
  return out;
}
