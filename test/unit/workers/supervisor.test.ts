/**
 * WorkerPool against scripted fake workers (small CommonJS files that speak the protocol), so the
 * supervisor's own rules are checked without a data plane: what reaches the workers (init,
 * snapshot swaps, certificates, forgotten identities, log levels), a metrics request that misses
 * its deadline, and a crashed worker that is logged, replaced with backoff and reported to
 * readiness while its slot is empty.
 */
import t from 'tap';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Config } from '../../../src/config/config';
import type { CertStatus } from '../../../src/identity/cert-manager';
import type { WorkloadCert } from '../../../src/identity/workload-cert';
import { Logging } from '../../../src/logging/logger';
import type { NativeApi } from '../../../src/native/addon';
import { Readiness } from '../../../src/admin/readiness';
import { SnapshotStore } from '../../../src/state/store';
import { WorkerPool } from '../../../src/workers/supervisor';
import { ProxyMetrics } from '../../../src/metrics/registry';
import { parseProm, sumOf } from '../../helpers/prom-text';
import { eventually } from '../../helpers/eventually';

const dir = mkdtempSync(join(tmpdir(), 'ztunnel-supervisor-'));

/**
 * A fake worker: answers init with ready, acks snapshots, reports every message it saw in 'stats'.
 * Worker 1 can be scripted to never answer metrics, to stop answering after some scrapes, or to
 * answer from its `lateFrom`-th scrape on only after `lateMs` (then 'stats' counts those answers).
 */
function fakeWorker(name: string, opts: { silentMetrics?: boolean; silentAfter?: number; crashOn?: string; lateFrom?: number; lateMs?: number } = {}): string {
  const file = join(dir, `${name}.js`);
  writeFileSync(
    file,
    `const { parentPort } = require('node:worker_threads');
let id = -1;
let scrapes = 0;
let lateSent = 0;
let log = '';
const seen = [];
const reply = (requestId, value) => parentPort.postMessage({ type: 'reply', requestId, value, error: null });
parentPort.on('message', (m) => {
  seen.push(m.type === 'snapshot' ? 'snapshot ' + m.version : m.type === 'cert' ? 'cert ' + m.cert.serial
    : m.type === 'forget-cert' ? 'forget ' + m.identity.serviceAccount : m.type === 'request' ? m.what
    : m.type === 'init' ? 'init v' + m.snapshot.version + ' certs ' + m.certs.map((c) => c.serial).join(',') : m.type);
  if (m.type === ${JSON.stringify(opts.crashOn ?? '')}) throw new Error('scripted crash on ' + m.type);
  if (m.type === 'init') {
    id = m.workerId;
    log = m.config.log.level + JSON.stringify(m.config.log.targets || {});
    parentPort.postMessage({ type: 'ready', workerId: id, version: m.snapshot.version, addresses: [['socks5', { host: '127.0.0.1', port: 1, text: '127.0.0.1:1' }]] });
  } else if (m.type === 'snapshot') {
    parentPort.postMessage({ type: 'snapshot-applied', workerId: id, version: m.version, addresses: [] });
  } else if (m.type === 'request') {
    if (m.what === 'metrics' && ${opts.silentMetrics === true} && id === 1) return;
    if (m.what === 'metrics') scrapes++;
    if (m.what === 'metrics' && id === 1 && scrapes > ${opts.silentAfter ?? 'Infinity'}) return;
    // a counter that grows by 10 per scrape (plus the worker id), and a gauge of 1 per worker
    // (worker 1's gauge is the number of its scrape, to tell one answer from another)
    const answer = () => [
      { name: 'fake_total', help: 'h', type: 'counter', values: [{ value: 10 * scrapes + id, labels: {} }], aggregator: 'sum' },
      { name: 'fake_open', help: 'h', type: 'gauge', values: [{ value: id === 1 ? scrapes : 1, labels: {} }], aggregator: 'sum' },
    ];
    if (m.what === 'metrics' && id === 1 && scrapes >= ${opts.lateFrom ?? 'Infinity'}) {
      const value = answer();
      setTimeout(() => (reply(m.requestId, value), lateSent++), ${opts.lateMs ?? 0});
    } else if (m.what === 'metrics') reply(m.requestId, answer());
    else if (m.what === 'stats') reply(m.requestId, { workerId: id, live: id, relays: { splice: 0, js: 0 }, seen, log, lateSent });
    else reply(m.requestId, null);
  }
});
`,
  );
  return file;
}

const yaml = (names: string[]): string =>
  JSON.stringify({ workloads: names.map((n, i) => ({ uid: `u/${n}`, name: n, namespace: 'ns', serviceAccount: n, workloadIps: [`10.0.0.${i + 1}`], node: 'me' })) });

function setup(entry: string, opts: { requestTimeoutMs?: number } = {}) {
  const lines: Record<string, unknown>[] = [];
  const logging = new Logging({ format: 'json', level: 'info', destination: { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) } });
  const store = new SnapshotStore({ nodeName: 'me', trustDomain: 'cluster.local', logger: logging.for('state') });
  store.loadText(yaml(['a', 'b']), 'test');
  const certListeners: Array<(c: WorkloadCert) => void> = [];
  const cert = (serial: string): WorkloadCert => ({
    identity: { trustDomain: 'cluster.local', namespace: 'ns', serviceAccount: 'a' },
    certPem: '', keyPem: '', chainPem: [], rootsPem: [], serial, notBefore: new Date(0), notAfter: new Date(8.64e15),
  });
  const certs = {
    subscribe: (fn: (c: WorkloadCert) => void) => (certListeners.push(fn), () => undefined),
    states: () => [{ cert: cert('01') } as unknown as CertStatus],
    issue: (serial: string) => certListeners.forEach((fn) => fn(cert(serial))),
  };
  const readiness = new Readiness();
  const native = { listen: () => t.fail('no port 0 to pick'), close: () => undefined } as unknown as NativeApi;
  const config = { numWorkerThreads: 2, socks5Addr: null, maxConnections: null, log: { format: 'json', level: 'info' } } as unknown as Config;
  const start = () =>
    WorkerPool.start({
      config, store, certs, log: logging.for('ztunnel'), readiness, native, entry,
      requestTimeoutMs: opts.requestTimeoutMs, restartBackoffMs: { initial: 20, max: 100 },
    });
  return { lines, store, certs, readiness, start };
}

const seenBy = async (pool: WorkerPool): Promise<string[][]> =>
  (await pool.stats()).sort((a, b) => a.workerId - b.workerId).map((s) => (s as unknown as { seen: string[] }).seen);

t.test('every worker gets init, each snapshot swap, each certificate and each forgotten identity', async (t) => {
  const { store, certs, start } = setup(fakeWorker('plain'));
  const pool = await start();
  t.teardown(() => pool.close());
  t.equal(pool.readyCount(), 2);
  t.same([...pool.addresses().keys()], ['socks5'], 'addresses come from the workers');
  const v1 = store.current.version;
  store.loadText(yaml(['a']), 'test'); // b left the node: its identity is forgotten
  certs.issue('02');
  pool.setLogLevels('debug', {});
  await pool.settled();
  const v2 = store.current.version;
  for (const seen of await seenBy(pool)) {
    t.same(seen, [`init v${v1} certs 01`, `snapshot ${v2}`, 'forget b', 'cert 02', 'log-levels', 'stats']);
  }
});

t.test('a worker that never answered in time is left out of the scrape, and logged', async (t) => {
  const { lines, start } = setup(fakeWorker('silent', { silentMetrics: true }), { requestTimeoutMs: 50 });
  const pool = await start();
  t.teardown(() => pool.close());
  const answers = await pool.metrics();
  t.same(answers.map((m) => m[0]?.values[0]?.value), [10], 'only worker 0 answered');
  t.ok(lines.some((l) => l['msg'] === 'worker metrics late: this scrape uses its previous answer' && l['worker'] === 1 && l['previous'] === false && /did not answer "metrics" within 50 ms/.test(String(l['err']))));
});

/** fake_total and fake_open of one merged scrape, as the stats endpoint would render it. */
async function scrape(pool: WorkerPool): Promise<{ total: number; open: number }> {
  const text = await new ProxyMetrics({ version: '1.0.0', processMetrics: false }).render('prometheus', await pool.metrics());
  const samples = parseProm(text);
  return { total: sumOf(samples, 'fake_total'), open: sumOf(samples, 'fake_open') };
}

t.test('a late worker counts with its previous answer: no dip in a counter for one scrape', async (t) => {
  const { lines, start } = setup(fakeWorker('late', { silentAfter: 1 }), { requestTimeoutMs: 50 });
  const pool = await start();
  t.teardown(() => pool.close());
  t.same(await scrape(pool), { total: 10 + 11, open: 2 }, 'first scrape: both answer');
  // worker 0 moved on to 20; worker 1 is silent from now on and stays at its 11
  t.same(await scrape(pool), { total: 20 + 11, open: 2 }, 'second scrape: worker 1 as last seen');
  t.ok(lines.some((l) => l['msg'] === 'worker metrics late: this scrape uses its previous answer' && l['worker'] === 1 && l['previous'] === true));
});

t.test('an answer after the deadline is kept: the next scrape uses it if the worker is late again', async (t) => {
  // worker 1 answers its second and later scrapes 1 s after a 50 ms deadline, as a worker
  // blocked past the deadline does when it wakes: what it says then (e.g. the stall it just saw
  // in its event-loop lag) must reach a scrape, not be thrown away
  const { start } = setup(fakeWorker('late-answer', { lateFrom: 2, lateMs: 1000 }), { requestTimeoutMs: 50 });
  const pool = await start();
  t.teardown(() => pool.close());
  t.same(await scrape(pool), { total: 10 + 11, open: 1 + 1 }, 'first scrape: both answer in time');
  t.same(await scrape(pool), { total: 20 + 11, open: 1 + 1 }, 'second scrape: worker 1 late, its first answer stands in');
  const lateSent = async (): Promise<number> => ((await pool.stats()).find((s) => s.workerId === 1) as unknown as { lateSent: number }).lateSent;
  // a reply and then the stats reply come over the same port in order: once stats counts the late
  // answer, the pool has handled it
  await eventually(async () => (await lateSent()) >= 1, 'worker 1 to send its late answer');
  t.same(await scrape(pool), { total: 30 + 21, open: 1 + 2 }, 'third scrape: worker 1 late again, its late second answer stands in');
  await eventually(async () => (await lateSent()) >= 2, 'worker 1 to send its second late answer');
  t.same(await scrape(pool), { total: 40 + 31, open: 1 + 3 }, 'and so on: never an answer older than the newest one received');
});

t.test("a dead worker's counters are retained in every later scrape; its gauges are not", async (t) => {
  const { start } = setup(fakeWorker('dies'), { requestTimeoutMs: 2000 });
  const pool = await start();
  t.teardown(() => pool.close());
  const before = await scrape(pool);
  t.same(before, { total: 10 + 11, open: 2 });
  await pool.terminateWorker(1);
  const gap = await scrape(pool);
  t.same(gap, { total: 20 + 11, open: 1 }, 'while the slot is empty: worker 1 as last seen, no gauge of it');
  const until = Date.now() + 30_000;
  while (pool.readyCount() < 2 && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
  t.equal(pool.readyCount(), 2, 'replaced');
  t.same(await scrape(pool), { total: 30 + 11 + 11, open: 2 }, 'the replacement starts from 0 and adds to the retained 11');
  await pool.terminateWorker(1);
  t.same(await scrape(pool), { total: 40 + 11 + 11, open: 1 }, 'a second death adds to the baseline');
});

t.test('a crashed worker is logged with its error, replaced, and readiness reports the gap', async (t) => {
  const { lines, readiness, start } = setup(fakeWorker('crash', { crashOn: 'log-levels' }));
  const pool = await start();
  t.teardown(() => pool.close());
  const tasks: string[] = [];
  const register = readiness.register.bind(readiness);
  readiness.register = (task: string) => (tasks.push(task), register(task));
  pool.setLogLevels('warn', { access: 'debug' });
  pool.setLogLevels(null, { proxy: 'trace' });
  pool.setLogLevels('debug', { access: 'trace' }); // both workers crash on it; a new level resets targets
  // the replacements come up after 20 ms of backoff plus a thread start, which under a loaded
  // CI machine can take seconds: wait for the condition, bounded only as a safety net (30 s)
  const until = Date.now() + 30_000;
  while (!(tasks.length === 2 && pool.readyCount() === 2 && readiness.ready()) && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
  t.same(tasks.sort(), ['proxy worker 0', 'proxy worker 1'], 'one readiness task per empty slot');
  t.equal(pool.readyCount(), 2, 'both slots have a new worker');
  t.ok(readiness.ready(), 'the gap tasks are done once the replacements listen');
  const deaths = lines.filter((l) => l['msg'] === 'proxy worker died; replacing it');
  t.equal(deaths.length, 2);
  t.match(deaths[0], { err: /scripted crash on log-levels/, restartInMs: 20 });
  t.same((await seenBy(pool)).map((s) => s[0]), ['init v1 certs 01', 'init v1 certs 01'], 'the replacements start from the current snapshot');
  const logs = (await pool.stats()).map((s) => (s as unknown as { log: string }).log);
  t.same(logs, ['debug{"access":"trace"}', 'debug{"access":"trace"}'], 'and at the log levels set at run time, not the start-up ones');
});
