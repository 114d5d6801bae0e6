/**
 * startControlPlane's CA choice, as the operator sees it in the log: without LOCAL_CA_DIR an
 * ephemeral root is generated and a warning says that other nodes will not trust it; with one,
 * the plug-in CA is loaded and no such warning appears. The embedded default snapshot announces
 * itself too. The snapshot the proxy's start-up check built is adopted as it is (not parsed a
 * second time), and a snapshot file is still watched. No sockets: the control plane only reads
 * files and issues certificates.
 */
import t from 'tap';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig } from '../../src/config/config';
import { Logging } from '../../src/logging/logger';
import { startControlPlane, EMBEDDED_SNAPSHOT } from '../../src/control-plane';
import { initCaDir } from '../../src/identity/ca-dir';
import { checkStartupSnapshot } from '../../src/cli/snapshot-file';
import { digestOf, type PreparedSnapshot } from '../../src/state/store';
import { eventually } from '../helpers/eventually';

interface Line {
  level: number;
  msg: string;
  [k: string]: unknown;
}

async function start(env: Record<string, string>): Promise<{ lines: Line[]; close(): void; caSubject: string }> {
  const config = parseConfig({ LOG_FORMAT: 'json', ...env }, { logicalCpus: 2 });
  const lines: Line[] = [];
  const logging = new Logging({ ...config.log, destination: { write: (s: string) => void lines.push(JSON.parse(s) as Line) } });
  const cp = await startControlPlane(config, { state: logging.for('state'), identity: logging.for('identity') });
  return { lines, close: () => cp.close(), caSubject: cp.ca.subject };
}

const WARN = 40;
const EPHEMERAL = /no LOCAL_CA_DIR: generated an ephemeral root CA for this process only \(proxies on other nodes will not trust it; use `ztunnel-ts ca init DIR` for a shared one\)/;

t.test('no LOCAL_CA_DIR: an ephemeral root, and a warning saying so', async (t) => {
  const cp = await start({ LOCAL_XDS: '{"workloads":[],"services":[],"policies":[]}' });
  t.teardown(cp.close);
  const warned = cp.lines.filter((l) => EPHEMERAL.test(l.msg));
  t.equal(warned.length, 1, 'logged once');
  t.equal(warned[0]?.level, WARN, 'at warn level');
  t.equal(warned[0]?.['subject'], cp.caSubject, 'naming the generated root');
});

t.test('a plug-in CA directory: loaded, no ephemeral-root warning', async (t) => {
  const dir = join(mkdtempSync(join(tmpdir(), 'ztunnel-cp-')), 'ca');
  await initCaDir(dir);
  const cp = await start({ LOCAL_XDS: '{"workloads":[],"services":[],"policies":[]}', LOCAL_CA_DIR: dir });
  t.teardown(cp.close);
  t.notOk(cp.lines.some((l) => EPHEMERAL.test(l.msg)), 'no warning');
  t.ok(cp.lines.some((l) => l.msg === 'loaded plug-in CA' && l['dir'] === dir), 'the loaded CA is logged with its directory');
});

t.test('neither LOCAL_XDS_PATH nor LOCAL_XDS: the bundled example snapshot, announced', async (t) => {
  const cp = await start({});
  t.teardown(cp.close);
  t.ok(
    cp.lines.some((l) => /running the bundled example snapshot/.test(l.msg) && l['path'] === EMBEDDED_SNAPSHOT),
    'the embedded default is logged with its path',
  );
  t.ok(cp.lines.some((l) => EPHEMERAL.test(l.msg)), 'and, with no CA directory either, the ephemeral-root warning');
});

const ONE = { workloads: [{ uid: 'w1', name: 'w1', namespace: 'default', workloadIps: ['10.0.0.1'], node: 'local' }], services: [], policies: [] };
const TWO = { workloads: [...ONE.workloads, { uid: 'w2', name: 'w2', namespace: 'default', workloadIps: ['10.0.0.2'], node: 'local' }], services: [], policies: [] };

async function prepare(env: Record<string, string>): Promise<PreparedSnapshot> {
  const checked = await checkStartupSnapshot(parseConfig(env, { logicalCpus: 2 }));
  if (!checked.ok || checked.prepared === null) throw new Error(`the check did not build a snapshot: ${JSON.stringify(checked)}`);
  return checked.prepared;
}

t.test('LOCAL_XDS: the snapshot the start-up check built is adopted as version 1, not parsed again', async (t) => {
  const prepared = await prepare({ LOCAL_XDS: JSON.stringify(ONE) });
  t.equal(prepared.snapshot.version, 1);
  t.equal(prepared.digest, null, 'inline text has no file to watch');
  // the configured text no longer parses: had the control plane parsed it again, start would throw
  const config = parseConfig({ LOG_FORMAT: 'json', LOCAL_XDS: '{"workloads": "not a list"}' }, { logicalCpus: 2 });
  const lines: Line[] = [];
  const logging = new Logging({ ...config.log, destination: { write: (s: string) => void lines.push(JSON.parse(s) as Line) } });
  const cp = await startControlPlane(config, { state: logging.for('state'), identity: logging.for('identity') }, {}, prepared);
  t.teardown(() => cp.close());
  t.equal(cp.store.current, prepared.snapshot, 'the very object the check built: no second parse or index');
  t.equal(cp.store.current.version, 1);
  t.same(cp.store.current.localWorkloads().map((w) => w.uid), ['w1']);
  const installed = lines.find((l) => l.msg === 'snapshot installed');
  t.match(installed, { source: 'LOCAL_XDS', version: 1, workloads: 1, services: 0, policies: 0 }, 'logged as an install');
});

t.test('LOCAL_XDS_PATH: the prepared snapshot is adopted and the file is still watched', async (t) => {
  const path = join(mkdtempSync(join(tmpdir(), 'ztunnel-cp-')), 'snapshot.json');
  writeFileSync(path, JSON.stringify(ONE));
  const prepared = await prepare({ LOCAL_XDS_PATH: path });
  t.equal(prepared.digest, digestOf(readFileSync(path)), 'the digest of the bytes read: the watch skips them while unchanged');
  // changed after the check read it and before the watch began: the watch must still see it
  writeFileSync(path, JSON.stringify(TWO));
  const config = parseConfig({ LOG_LEVEL: 'off', LOCAL_XDS_PATH: path }, { logicalCpus: 2 });
  const logging = new Logging(config.log);
  const cp = await startControlPlane(config, { state: logging.for('state'), identity: logging.for('identity') }, {}, prepared);
  t.teardown(() => cp.close());
  t.equal(cp.store.current, prepared.snapshot, 'starts with the prepared snapshot itself');
  await eventually(() => cp.store.current.version === 2, 'the change made before the watch began to be loaded');
  t.same(cp.store.current.localWorkloads().map((w) => w.uid), ['w1', 'w2']);
  t.equal(cp.store.reloadFailures, 0);
  writeFileSync(path, JSON.stringify(ONE));
  await eventually(() => cp.store.current.version === 3, 'a later edit to be loaded: the watch works as without a prepared snapshot');
  t.same(cp.store.current.localWorkloads().map((w) => w.uid), ['w1']);
});

t.test('a prepared snapshot from another source than the configured one is refused', async (t) => {
  const prepared = await prepare({ LOCAL_XDS: JSON.stringify(ONE) });
  const config = parseConfig({ LOG_LEVEL: 'off' }, { logicalCpus: 2 });
  const logging = new Logging(config.log);
  await t.rejects(
    startControlPlane(config, { state: logging.for('state'), identity: logging.for('identity') }, {}, prepared),
    /prepared snapshot from LOCAL_XDS does not match the configured bundled example/,
  );
});
