/**
 * Snapshot load benchmark: how long a big cluster's snapshot takes to parse, validate and index,
 * and what it costs in memory once loaded.
 *
 *   node --expose-gc dist/bench/snapshot-load.js [--workloads 200000] [--services 14000] [--yaml]
 *
 * The generated cluster is shaped like a real one: every workload is an endpoint of one service
 * (~14 pods per service), 400 namespaces, 1,000 nodes, HBONE, a handful of policies. It is written
 * to a temp file as JSON (what a generator would emit); --yaml also times the YAML path on a 2.5%
 * sample: the yaml package parses ~1 MB/s, so a full-size YAML file would take minutes.
 */
import { randomUUID } from 'node:crypto';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import YAML from 'yaml';
import { decodeDoc, encodeDoc } from '../src/state/doc-bytes';
import { parseSnapshot } from '../src/state/parse';
import { buildSnapshot } from '../src/state/snapshot';

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(`--${name}`);
  const v = i < 0 ? NaN : Number(process.argv[i + 1]);
  return Number.isInteger(v) && v > 0 ? v : dflt;
}

const WORKLOADS = arg('workloads', 200_000);
const SERVICES = arg('services', 14_000);
const NAMESPACES = 400;
const NODES = 1_000;
const TRUST_DOMAIN = 'cluster.local';

function ip(base: number, n: number): string {
  const v = (base + n) >>> 0;
  return `${v >>> 24}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`;
}

function generate(workloads: number, services: number): object {
  const svc = [];
  for (let s = 0; s < services; s++) {
    const ns = `ns-${s % NAMESPACES}`;
    svc.push({
      name: `svc-${s}`,
      namespace: ns,
      hostname: `svc-${s}.${ns}.svc.cluster.local`,
      vips: [`/${ip(0x0a600000, s)}`], // 10.96.0.0/12
      ports: { 80: 8080, 443: 8443 },
      subjectAltNames: [],
    });
  }
  const wl = [];
  for (let w = 0; w < workloads; w++) {
    const s = w % services;
    const ns = `ns-${s % NAMESPACES}`;
    const app = `svc-${s}`;
    wl.push({
      uid: `Kubernetes//Pod/${ns}/${app}-${w.toString(36)}-x7k2p`,
      name: `${app}-${w.toString(36)}-x7k2p`,
      namespace: ns,
      serviceAccount: app,
      workloadIps: [ip(0x0a000000 + 1, w)], // 10.0.0.0/10
      protocol: 'HBONE',
      node: `node-${w % NODES}`,
      workloadName: app,
      workloadType: 'deployment',
      canonicalName: app,
      canonicalRevision: 'v1',
      clusterId: 'Kubernetes',
      services: { [`${ns}/svc-${s}.${ns}.svc.cluster.local`]: { 80: 8080 } },
    });
  }
  const policies = [];
  for (let p = 0; p < 10; p++) {
    policies.push({
      name: `allow-${p}`,
      namespace: `ns-${p}`,
      scope: 'Namespace',
      action: 'Allow',
      rules: [[[{ principals: [{ Prefix: `${TRUST_DOMAIN}/ns/ns-${p}/` }] }], [{ destinationPorts: [8080] }]]],
    });
  }
  policies.push({
    name: 'deny-external', namespace: 'istio-system', scope: 'Global', action: 'Deny',
    rules: [[[{ notSourceIps: ['10.0.0.0/8', 'fd00::/8'] }]]],
  });
  return { workloads: wl, services: svc, policies };
}

const gc = (globalThis as { gc?: () => void }).gc;
function collect(): void {
  if (gc !== undefined) { gc(); gc(); }
}
const mib = (n: number): string => `${(n / 1048576).toFixed(1)} MiB`;
const ms = (n: number): string => `${n.toFixed(0)} ms`;

function time<T>(fn: () => T): [T, number] {
  const t0 = performance.now();
  const v = fn();
  return [v, performance.now() - t0];
}

function main(): void {
  const rows: [string, string][] = [];
  const file = join(tmpdir(), `ztunnel-ts-bench-${randomUUID()}.json`);
  try {
    let text = JSON.stringify(generate(WORKLOADS, SERVICES));
    writeFileSync(file, text);
    rows.push(['snapshot file (JSON)', mib(Buffer.byteLength(text))]);
    text = '';
    collect();
    const base = process.memoryUsage();

    let read = '';
    let tRead: number;
    [read, tRead] = time(() => readFileSync(file, 'utf8'));
    const [, tJson] = time(() => JSON.parse(read) as unknown);
    collect();
    const [doc, tParse] = time(() => parseSnapshot(read, { source: file, trustDomain: TRUST_DOMAIN }));
    read = ''; // the text is garbage once parsed; keep it out of the memory figures
    const [snap, tIndex] = time(() => buildSnapshot(doc, { version: 1, nodeName: 'node-0' }));
    rows.push(['read file', ms(tRead)]);
    rows.push(['  JSON.parse alone (part of the next row)', ms(tJson)]);
    rows.push(['parse + validate + normalise + freeze', ms(tParse)]);
    rows.push(['index + compile policies', ms(tIndex)]);
    rows.push(['total load (read + parse + index)', ms(tRead + tParse + tIndex)]);

    // lookups actually resolve (guards against measuring an empty index)
    const probe = snap.workloadByIp(ip(0x0a000000 + 1, WORKLOADS - 1));
    const svc = snap.serviceByVip(ip(0x0a600000, 0));
    if (probe === undefined || svc === undefined || snap.endpointsOf(svc).length === 0) throw new Error('index lookups failed');
    rows.push(['local workloads on node-0', String(snap.localWorkloads().length)]);

    collect();
    const loaded = process.memoryUsage();
    const note = gc === undefined ? ' (no --expose-gc: not collected)' : '';
    rows.push([`heapUsed after load${note}`, `${mib(loaded.heapUsed)} (+${mib(loaded.heapUsed - base.heapUsed)})`]);
    rows.push(['rss after load', `${mib(loaded.rss)} (+${mib(loaded.rss - base.rss)})`]);

    let bytes: Uint8Array | null;
    let tEnc: number;
    [bytes, tEnc] = time(() => encodeDoc(doc));
    const size = bytes.length;
    const [decoded, tDec] = time(() => decodeDoc(bytes!));
    bytes = null;
    const [copy, tIndex2] = time(() => buildSnapshot(decoded, { version: 1, nodeName: 'node-0' }));
    collect();
    const withCopy = process.memoryUsage();
    if (copy.workloadByUid(probe.uid) === undefined) throw new Error('decoded snapshot lookups failed');
    rows.push(['encodeDoc (for workers)', `${ms(tEnc)}, ${mib(size)}`]);
    rows.push(['decodeDoc + index (per worker)', `${ms(tDec)} + ${ms(tIndex2)}`]);
    rows.push(['heap of one decoded copy + index', `+${mib(withCopy.heapUsed - loaded.heapUsed)}`]);

    if (process.argv.includes('--yaml')) {
      const sample = generate(Math.ceil(WORKLOADS / 40), Math.ceil(SERVICES / 40));
      const yamlText = YAML.stringify(sample);
      const [, tYaml] = time(() => parseSnapshot(yamlText, { source: 'sample.yaml', trustDomain: TRUST_DOMAIN }));
      rows.push([`YAML 2.5% sample (${mib(Buffer.byteLength(yamlText))}): parse + validate`, `${ms(tYaml)} (x40 ≈ ${ms(tYaml * 40)})`]);
    }
  } finally {
    rmSync(file, { force: true });
  }
  const w = Math.max(...rows.map((r) => r[0].length));
  console.log(`snapshot-load: ${WORKLOADS} workloads, ${SERVICES} services, node ${process.version}`);
  for (const [k, v] of rows) console.log(`  ${k.padEnd(w)}  ${v}`);
}

main();
