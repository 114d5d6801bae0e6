/**
 * Two start-up-to-data-path behaviours of issue 2, on loopback 127.15.1.0/24, both relay engines,
 * through the real app (SOCKS5 → HBONE → inbound → app):
 *  - a dry-run DENY policy that matches changes nothing (the tunnel still gets its 200 and moves
 *    bytes) but the proxy logs one line naming the policy and what it would have done, and a
 *    snapshot swap that re-checks the live connection on the same verdict adds no second line;
 *  - NETWORK: with the node on network "net1" and its workloads in "net1", the SOCKS5 source, the
 *    outbound plan and the inbound destination are all found (looking them up in the default
 *    network "" would refuse the tunnel).
 */
import t, { type Test as Tap } from 'tap';
import { mkdtempSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initCaDir } from '../../src/identity/ca-dir';
import { socksConnect } from '../../src/proxy/socks5-client';
import { eventually } from '../helpers/eventually';
import { loopbackBlock } from '../helpers/loopback';
import { echoHash, pattern, sha, startNode, workloadDoc, writeSnapshot, type MeshNode } from '../helpers/mesh-nodes';

const lb = loopbackBlock(15, 1);
const CLIENT = lb.ip(1);
const SERVER = lb.ip(2);
const NODE = lb.ip(250);
const dir = mkdtempSync(join(tmpdir(), 'ztunnel-dry-run-'));

const DRY_DENY = {
  name: 'try-deny-client',
  namespace: 'default',
  scope: 'Namespace',
  action: 'Deny',
  dryRun: true,
  rules: [[[{ principals: [{ Exact: 'cluster.local/ns/default/sa/client' }] }]]],
};

t.before(() => initCaDir(join(dir, 'ca')));

async function echoApp(t: Tap): Promise<number> {
  const app = net.createServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => undefined);
    s.pipe(s);
  });
  await new Promise<void>((r) => app.listen(0, SERVER, r));
  t.teardown(() => void app.close());
  return (app.address() as net.AddressInfo).port;
}

interface Case {
  readonly name: string;
  readonly network: string;
  readonly policies: unknown[];
  /** Runs while the tunnel is still open (after its first round trip). */
  readonly whileOpen?: (node: MeshNode, snapshotPath: string, s: net.Socket) => Promise<void>;
}

async function tunnelCase(t: Tap, c: Case, nativeRelay: boolean): Promise<string[]> {
  const snapshotPath = join(dir, `snapshot-${c.name}-${nativeRelay}.json`);
  const inNet = (w: Record<string, unknown>): Record<string, unknown> => (c.network === '' ? w : { ...w, network: c.network });
  writeSnapshot(
    snapshotPath,
    JSON.stringify({ workloads: [inNet(workloadDoc('client', CLIENT, 'node-d')), inNet(workloadDoc('server', SERVER, 'node-d'))], policies: c.policies }),
  );
  const appPort = await echoApp(t);
  const env: Record<string, string> = { LOG_LEVEL: 'info' };
  if (c.network !== '') env['NETWORK'] = c.network;
  const node = await startNode({ name: 'node-d', ip: NODE, snapshotPath, caDir: join(dir, 'ca'), nativeRelay, env });
  t.teardown(() => node.app.close());
  // socksConnect resolves only once the SOCKS5 reply says the tunnel is up (the HBONE 200)
  const s = await socksConnect(node.socks, CLIENT, { host: SERVER, port: appPort });
  const data = pattern(256 << 10, 7);
  t.equal(await echoHash(s, data), sha(data), `${c.name}: bytes cross the tunnel intact`);
  await c.whileOpen?.(node, snapshotPath, s);
  s.destroy();
  return node.lines;
}

for (const nativeRelay of [true, false]) {
  const engine = nativeRelay ? 'splice' : 'JS';
  t.test(`a matching dry-run DENY is logged, not enforced (${engine} relay)`, async (t) => {
    // a swap (one more workload, same policy) re-checks the live connection on the same dry-run verdict
    const sameVerdictSwap = async (node: MeshNode, snapshotPath: string, s: net.Socket): Promise<void> => {
      const version = node.app.control.store.current.version;
      const workloads = [workloadDoc('client', CLIENT, 'node-d'), workloadDoc('server', SERVER, 'node-d'), workloadDoc('other', lb.ip(3), 'node-x')];
      writeSnapshot(snapshotPath, JSON.stringify({ workloads, policies: [DRY_DENY] }));
      await eventually(() => node.app.control.store.current.version > version, 'the swapped snapshot is installed');
      const data = pattern(16 << 10, 9);
      t.equal(await echoHash(s, data), sha(data), 'the tunnel lives on after the re-check');
    };
    const lines = await tunnelCase(t, { name: 'dry-run', network: '', policies: [DRY_DENY], whileOpen: sameVerdictSwap }, nativeRelay);
    const logged = lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l['dryRun'] === true);
    t.equal(logged.length, 1, 'one dry-run line for the one connection, at admission, none again at the swap');
    const line = logged[0] ?? {};
    t.equal(line['policy'], 'default/try-deny-client', 'it names the policy');
    t.equal(line['wouldAllow'], false, 'it says the policy would have denied');
    t.equal(line['allowed'], true, 'and that the connection was allowed');
    t.equal(line['srcIdentity'], 'spiffe://cluster.local/ns/default/sa/client');
    t.match(String(line['dst']), `${SERVER}:`);
    t.match(String(line['msg']), /dry-run policy default\/try-deny-client would have denied this connection/);
  });

  t.test(`NETWORK: workloads in the node's network are found (${engine} relay)`, async (t) => {
    const lines = await tunnelCase(t, { name: 'network', network: 'net1', policies: [] }, nativeRelay);
    t.notOk(lines.some((l) => l.includes('refused')), 'nothing was refused');
  });
}
