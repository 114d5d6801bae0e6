/**
 * startControlPlane's CA choice, as the operator sees it in the log: without LOCAL_CA_DIR an
 * ephemeral root is generated and a warning says that other nodes will not trust it; with one,
 * the plug-in CA is loaded and no such warning appears. The embedded default snapshot announces
 * itself too. No sockets: the control plane only reads files and issues certificates.
 */
import t from 'tap';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig } from '../../src/config/config';
import { Logging } from '../../src/logging/logger';
import { startControlPlane, EMBEDDED_SNAPSHOT } from '../../src/control-plane';
import { initCaDir } from '../../src/identity/ca-dir';

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
