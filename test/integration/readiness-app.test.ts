/**
 * Readiness (:15021) of the whole app, not just the Readiness class: with the first certificate
 * of a local workload held back at the issuer, the probe answers 500 naming the real pending
 * task (`certificates`); once the certificate is issued it answers 200 `ready\n`.
 */
import t from 'tap';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig } from '../../src/config/config';
import { Logging } from '../../src/logging/logger';
import { startApp } from '../../src/app';
import type { CertIssuer } from '../../src/identity/workload-cert';
import { loopbackBlock } from '../helpers/loopback';
import { eventually } from '../helpers/eventually';

const net = loopbackBlock(16, 1);
const WORKLOAD = net.ip(11);
const dir = mkdtempSync(join(tmpdir(), 'ztunnel-readiness-'));
const snapshotPath = join(dir, 'snapshot.json');
writeFileSync(
  snapshotPath,
  JSON.stringify({
    workloads: [{ uid: 'c1//v1/Pod/default/server', name: 'server', namespace: 'default', serviceAccount: 'server', workloadIps: [WORKLOAD], protocol: 'HBONE', node: 'local' }],
  }),
);

async function probe(addr: { text: string }): Promise<{ status: number; body: string }> {
  const res = await fetch(`http://${addr.text}/healthz/ready`);
  return { status: res.status, body: await res.text() };
}

t.test('readiness waits for the first certificate of every local workload', async (t) => {
  const host = net.ip(240);
  const config = parseConfig(
    { LOCAL_XDS_PATH: snapshotPath, ZTUNNEL_ADMIN_ADDR: `${host}:0`, ZTUNNEL_STATS_ADDR: `${host}:0`, ZTUNNEL_READINESS_ADDR: `${host}:0`, LOG_LEVEL: 'off' },
    { logicalCpus: 2 },
  );
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  let asked = 0;
  const app = await startApp(config, new Logging(config.log), {
    // the CA, held back until the test lets it answer
    wrapIssuer: (ca): CertIssuer => ({
      async sign(identity, ttlMs, now) {
        asked++;
        await gate;
        return ca.sign(identity, ttlMs, now);
      },
    }),
  });
  t.teardown(() => app.close());
  const addr = app.servers.readiness;
  await eventually(() => asked > 0, 'the issuer was asked for the workload certificate');
  // the listeners come up without the certificate; the certificate task stays pending
  await eventually(async () => (await probe(addr)).body === 'not ready, pending: certificates\n', 'only certificates pending');
  t.same(await probe(addr), { status: 500, body: 'not ready, pending: certificates\n' }, 'not ready while the certificate is held back');
  t.equal(app.control.certs.states()[0]?.state, 'Initializing', 'the certificate is still being issued');

  release();
  await eventually(async () => (await probe(addr)).status === 200, 'ready once issued');
  t.same(await probe(addr), { status: 200, body: 'ready\n' });
  t.equal(app.control.certs.states()[0]?.state, 'Available');
});
