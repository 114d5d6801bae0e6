import t from 'tap';
import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { SnapshotDoc } from '../../../src/state/model';
import { parseSnapshot, SnapshotError } from '../../../src/state/parse';
import type { Snapshot } from '../../../src/state/snapshot';
import { SnapshotStore, type StoreLogger } from '../../../src/state/store';

interface LogRecord {
  level: 'info' | 'warn' | 'error';
  obj: Record<string, unknown>;
  msg: string;
}

function collectingLogger(): StoreLogger & { records: LogRecord[] } {
  const records: LogRecord[] = [];
  const at = (level: LogRecord['level']) => (obj: object, msg: string) => void records.push({ level, obj: obj as Record<string, unknown>, msg });
  return { records, info: at('info'), warn: at('warn'), error: at('error') };
}

function docText(uids: string[]): string {
  return JSON.stringify({
    workloads: uids.map((uid, i) => ({ uid, name: uid, namespace: 'ns', workloadIps: [`10.0.0.${i + 1}`], node: 'n1' })),
  });
}

function docOf(uids: string[]): SnapshotDoc {
  return parseSnapshot(docText(uids), { source: 'test', trustDomain: 'td' });
}

/** Polls until `cond` holds; fails after `ms` (a bound, not a timing assumption). */
async function waitFor(cond: () => boolean, what: string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

t.test('install swaps atomically, bumps the version and tells subscribers', async (t) => {
  const logger = collectingLogger();
  const store = new SnapshotStore({ nodeName: 'n1', trustDomain: 'td', logger });
  t.equal(store.current.version, 0, 'starts with the empty snapshot');
  t.equal(store.current.workloadByUid('a'), undefined);
  const seen: [number, number][] = [];
  const unsubscribe = store.subscribe((next, prev) => seen.push([next.version, prev.version]));
  const first = store.install(docOf(['a']));
  t.equal(first.version, 1);
  t.equal(store.current, first);
  t.equal(store.current.workloadByUid('a')?.node, 'n1');
  t.same(store.current.localWorkloads().map((w) => w.uid), ['a']);
  store.install(docOf(['b']));
  t.equal(store.current.version, 2);
  t.equal(store.current.workloadByUid('a'), undefined);
  t.equal(first.workloadByUid('a')?.uid, 'a', 'a captured snapshot is never changed');
  t.same(seen, [[1, 0], [2, 1]]);
  unsubscribe();
  store.install(docOf(['c']));
  t.same(seen, [[1, 0], [2, 1]], 'no calls after unsubscribe');
});

t.test('a throwing subscriber is logged and does not stop the others', async (t) => {
  const logger = collectingLogger();
  const store = new SnapshotStore({ nodeName: 'n1', trustDomain: 'td', logger });
  let told = 0;
  store.subscribe(() => {
    throw new Error('boom');
  });
  store.subscribe(() => void told++);
  store.install(docOf(['a']));
  t.equal(told, 1);
  t.equal(store.current.version, 1);
  t.ok(logger.records.some((r) => r.level === 'error' && r.msg === 'snapshot subscriber failed'));
});

t.test('loadText: a bad document changes nothing', async (t) => {
  const logger = collectingLogger();
  const store = new SnapshotStore({ nodeName: 'n1', trustDomain: 'td', logger });
  const good = store.loadText(docText(['a']), 'LOCAL_XDS');
  t.equal(good.version, 1);
  t.match(logger.records.at(-1), { level: 'info', msg: 'snapshot installed', obj: { source: 'LOCAL_XDS', version: 1, workloads: 1 } });
  let told = 0;
  store.subscribe(() => void told++);
  t.throws(() => store.loadText('workloads: [{uid: x}]', 'LOCAL_XDS'), { code: 'ERR_SNAPSHOT' });
  t.equal(store.current, good);
  t.equal(told, 0);
  t.ok(store.lastError instanceof SnapshotError);
  t.equal(store.reloadFailures, 0, 'a direct load is the caller\'s error, not a rejected reload');
  store.loadText(docText(['b']), 'LOCAL_XDS');
  t.equal(store.lastError, null, 'cleared by the next good load');
});

t.test('loadFile: missing file and trust domain default', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'ztunnel-ts-store-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const store = new SnapshotStore({ nodeName: 'n1', trustDomain: 'corp.example', logger: collectingLogger() });
  await t.rejects(store.loadFile(join(dir, 'missing.yaml')), { code: 'ENOENT' });
  t.equal(store.current.version, 0);
  t.equal((store.lastError as NodeJS.ErrnoException).code, 'ENOENT');
  const path = join(dir, 'snapshot.json');
  await writeFile(path, docText(['a']));
  const snap = await store.loadFile(path);
  t.equal(snap.workloadByUid('a')?.trustDomain, 'corp.example');
});

t.test('hot reload: good → bad (last good stays) → good again', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'ztunnel-ts-store-'));
  const logger = collectingLogger();
  const store = new SnapshotStore({ nodeName: 'n1', trustDomain: 'td', logger, debounceMs: 20 });
  t.teardown(async () => {
    store.close();
    await rm(dir, { recursive: true, force: true });
  });
  const path = join(dir, 'snapshot.yaml');
  await writeFile(path, docText(['a']));
  await store.loadFile(path);
  const told: [Snapshot, Snapshot][] = [];
  store.subscribe((next, prev) => told.push([next, prev]));
  store.watch(path);

  // replace files atomically where the test counts failures: a reader racing a plain write could
  // see a half-written (empty) file, which is a legitimate rejection but would skew the count
  const replace = async (text: string): Promise<void> => {
    const tmp = join(dir, '.snapshot.yaml.swp');
    await writeFile(tmp, text);
    await rename(tmp, path);
  };
  await replace('workloads:\n  - {uid: b, name: b, namespace: ns, workloadIps: [10.0.0.300]}\n');
  await waitFor(() => store.reloadFailures === 1, 'the bad file to be rejected');
  t.equal(store.current.version, 1, 'the last good snapshot stays');
  t.ok(store.current.workloadByUid('a'));
  t.equal(told.length, 0, 'subscribers are not told about a rejected file');
  t.ok(store.lastError instanceof SnapshotError);
  const rejected = logger.records.find((r) => r.level === 'error');
  t.match(rejected, {
    msg: 'snapshot reload rejected; the last good snapshot stays in force',
    obj: { path, errors: 1, version: 1, reloadFailures: 1, err: /workloads\[0\]\.workloadIps\[0\]: "10\.0\.0\.300" is not an IP address/ },
  });

  // editors save by writing a temp file and renaming it over the original
  await replace(docText(['a', 'c']));
  await waitFor(() => store.current.version === 2, 'the fixed file to be installed');
  t.ok(store.current.workloadByUid('c'));
  t.equal(store.reloadFailures, 1);
  t.equal(store.lastError, null);
  t.equal(told.length, 1);
  t.equal(told[0]![0].version, 2);
  t.equal(told[0]![1].version, 1);

  // a vanished file counts as a failed reload too; its return is picked up
  await rm(path);
  await waitFor(() => store.reloadFailures === 2, 'the missing file to be reported');
  t.equal(store.current.version, 2);
  t.equal((store.lastError as NodeJS.ErrnoException).code, 'ENOENT');
  await writeFile(path, docText(['d'])); // a plain write this time
  await waitFor(() => store.current.version === 3, 'the restored file to be installed');
  t.ok(store.current.workloadByUid('d'));
});

t.test('watch can be re-pointed and close is idempotent', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'ztunnel-ts-store-'));
  const store = new SnapshotStore({ nodeName: 'n1', trustDomain: 'td', logger: collectingLogger(), debounceMs: 10 });
  t.teardown(async () => {
    store.close();
    await rm(dir, { recursive: true, force: true });
  });
  const one = join(dir, 'one.json');
  const two = join(dir, 'two.json');
  await writeFile(one, docText(['a']));
  await writeFile(two, docText(['b']));
  store.watch(one);
  store.watch(two);
  await writeFile(two, docText(['b', 'c']));
  await waitFor(() => store.current.workloadByUid('c') !== undefined, 'the second file to be loaded');
  t.equal(store.current.workloadByUid('a'), undefined, 'the first file is no longer watched');
  store.close();
  store.close();
  t.pass('closed twice');
});
