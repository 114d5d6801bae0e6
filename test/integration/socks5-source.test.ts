/**
 * Who a node may speak for, on loopback 127.11.1.0/24, both relay engines, real apps built from
 * an env map (mesh-nodes' startNode):
 *  - SOCKS5 source: a client whose IP belongs to ANOTHER node's workload is refused by node A with
 *    SOCKS reply 2 ("not allowed") and a log line naming the IP, and A never starts managing that
 *    workload's identity (its certs.states() never lists it) — A cannot tunnel as B's workload;
 *    the same client through its own node B works, so the refusal is about the node, not the IP;
 *  - pod IP reuse: when a new workload with another service account takes a local HBONE
 *    workload's IP, the :15008 listener (still open) serves the NEW identity's certificate, so a
 *    tunnel expecting the new identity succeeds and the leaf presented carries the new SAN; the
 *    data plane switches identity in the same swap notification in which the control plane
 *    forgets the old one, so no handshake in between asks for a forgotten certificate.
 */
import t, { type Test as Tap } from 'tap';
import { mkdtempSync } from 'node:fs';
import * as net from 'node:net';
import * as tls from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initCaDir } from '../../src/identity/ca-dir';
import { formatSpiffe, type Identity } from '../../src/identity/spiffe';
import { socksConnect, SocksError } from '../../src/proxy/socks5-client';
import { sanUris } from '../../src/tls/peer';
import { eventually } from '../helpers/eventually';
import { loopbackBlock } from '../helpers/loopback';
import { echoHash, pattern, sha, startNode, workloadDoc, writeSnapshot } from '../helpers/mesh-nodes';

const lb = loopbackBlock(11, 1);
const CLIENT_A = lb.ip(1); // workload on node-a
const CLIENT_B = lb.ip(2); // workload on node-b
const SERVER = lb.ip(3); // HBONE workload on node-b, with an echo app
const REUSED = lb.ip(10); // HBONE workload on node-a whose IP changes hands
const NODE_A = lb.ip(250);
const NODE_B = lb.ip(251);
const HOUR = 3600_000;

const dir = mkdtempSync(join(tmpdir(), 'ztunnel-socks-source-'));
const caDir = join(dir, 'ca');

t.before(() => initCaDir(caDir));

async function echoApp(t: Tap, ip: string): Promise<number> {
  const app = net.createServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => undefined);
    s.pipe(s);
  });
  await new Promise<void>((r) => app.listen(0, ip, r));
  t.teardown(() => new Promise<void>((r) => app.close(() => r())));
  return (app.address() as net.AddressInfo).port;
}

/** The SOCKS reply code of a refused connect (0 if it was accepted). */
async function replyOf(p: Promise<net.Socket>): Promise<number> {
  try {
    (await p).destroy();
    return 0;
  } catch (err) {
    if (err instanceof SocksError) return err.reply;
    throw err;
  }
}

const idOf = (sa: string): Identity => ({ trustDomain: 'cluster.local', namespace: 'default', serviceAccount: sa });

for (const nativeRelay of [true, false]) {
  const engine = nativeRelay ? 'splice' : 'JS';
  t.test(`a SOCKS5 client that is another node's workload is refused (${engine} relay)`, (t) => nonLocalSource(t, nativeRelay));
  t.test(`a reused pod IP serves the new workload's identity (${engine} relay)`, (t) => reusedIp(t, nativeRelay));
}

async function nonLocalSource(t: Tap, nativeRelay: boolean): Promise<void> {
  const snapshotPath = join(dir, `source-${nativeRelay}.json`);
  writeSnapshot(
    snapshotPath,
    JSON.stringify({
      workloads: [workloadDoc('client-a', CLIENT_A, 'node-a'), workloadDoc('client-b', CLIENT_B, 'node-b'), workloadDoc('server', SERVER, 'node-b')],
    }),
  );
  const appPort = await echoApp(t, SERVER);
  const a = await startNode({ name: 'node-a', ip: NODE_A, snapshotPath, caDir, nativeRelay });
  t.teardown(() => a.app.close());
  const b = await startNode({ name: 'node-b', ip: NODE_B, snapshotPath, caDir, nativeRelay });
  t.teardown(() => b.app.close());
  const dst = { host: SERVER, port: appPort };
  const payload = pattern(32 << 10, 7);

  // controls: A's own workload through A, and B's workload through its own node B, both work
  const own = await socksConnect(a.socks, CLIENT_A, dst);
  t.equal(await echoHash(own, payload), sha(payload), "A's own workload tunnels through A");
  own.destroy();
  const home = await socksConnect(b.socks, CLIENT_B, dst);
  t.equal(await echoHash(home, payload), sha(payload), "B's workload tunnels through its own node B");
  home.destroy();

  const mark = a.lines.length;
  t.equal(await replyOf(socksConnect(a.socks, CLIENT_B, dst)), 2, "B's workload through node A: SOCKS reply 2 (not allowed)");
  const logged = a.lines.slice(mark).map((l) => JSON.parse(l) as Record<string, unknown>);
  const line = logged.find((l) => typeof l['msg'] === 'string' && (l['msg'] as string).startsWith(`SOCKS5 client ${CLIENT_B} `));
  t.match(line, {
    level: 40,
    msg: `SOCKS5 client ${CLIENT_B} is workload default/client-b of node "node-b", not a local workload of this node "node-a": refused`,
    srcWorkload: 'default/client-b',
    srcNode: 'node-b',
  }, 'a warning names the IP, the workload and both nodes');
  t.notOk(logged.some((l) => l['msg'] === 'outbound connection opened'), 'no outbound connection was made for it');

  await a.app.control.certs.settled();
  const managed = a.app.control.certs.states().map((s) => s.id);
  t.notOk(managed.includes(formatSpiffe(idOf('client-b'))), "A never manages B's workload identity");
  t.same(managed, [formatSpiffe(idOf('client-a'))], "A manages exactly its own workload's identity");
  // and asked directly, A's certificate manager refuses to issue it
  await t.rejects(a.app.control.certs.fetch(idOf('client-b')), { code: 'ERR_CERT_NOT_LOCAL' });
  t.same(a.app.control.certs.states().map((s) => s.id), managed, 'still only its own');
}

/** The URI SANs of the leaf the HBONE listener at ip:15008 presents (client cert from the shared CA). */
async function servedSans(ip: string, client: { certPem: string; keyPem: string; rootsPem: readonly string[] }): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({
      host: ip,
      port: 15008,
      cert: client.certPem,
      key: client.keyPem,
      ca: [...client.rootsPem],
      ALPNProtocols: ['h2'],
      minVersion: 'TLSv1.3',
      // the SAN is what is checked here; the CA check is the handshake's
      checkServerIdentity: () => undefined,
    });
    s.once('secureConnect', () => {
      const sans = sanUris(s.getPeerCertificate().subjectaltname);
      s.destroy();
      resolve(sans);
    });
    s.once('error', reject);
  });
}

async function reusedIp(t: Tap, nativeRelay: boolean): Promise<void> {
  const snapshotPath = join(dir, `reuse-${nativeRelay}.json`);
  const before = { workloads: [workloadDoc('client-a', CLIENT_A, 'node-a'), workloadDoc('server-old', REUSED, 'node-a', 'old-sa')] };
  writeSnapshot(snapshotPath, JSON.stringify(before));
  const appPort = await echoApp(t, REUSED);
  const a = await startNode({ name: 'node-a', ip: NODE_A, snapshotPath, caDir, nativeRelay });
  t.teardown(() => a.app.close());
  const dst = { host: REUSED, port: appPort };
  const payload = pattern(32 << 10, 11);
  const probeCert = await a.app.control.ca.sign(idOf('client-a'), HOUR);

  const first = await socksConnect(a.socks, CLIENT_A, dst);
  t.equal(await echoHash(first, payload), sha(payload), 'tunnel to the first workload at the IP');
  first.destroy();
  t.same(await servedSans(REUSED, probeCert), [formatSpiffe(idOf('old-sa'))], 'the listener serves the first identity');
  const listenerBefore = a.app.data.addresses().get(`hbone ${REUSED}`);
  t.ok(listenerBefore, 'HBONE listener open on the IP');

  // Subscribed after the data plane (the store tells subscribers in order): what the listener
  // serves as seen right when the control plane has already forgotten the old identity, before
  // any queued listener work ran. It must already be the new identity, else a handshake in that
  // window asks for a certificate no longer kept (ERR_CERT_NOT_LOCAL).
  const atSwap: (string | undefined)[] = [];
  const unsubscribe = a.app.control.store.subscribe(() => {
    const id = a.app.data.servedIdentity(REUSED);
    atSwap.push(id && formatSpiffe(id));
  });
  t.teardown(unsubscribe);

  // the pod is replaced: a new workload (new uid, another service account) gets the same IP
  const version = a.app.control.store.current.version;
  writeSnapshot(snapshotPath, JSON.stringify({ workloads: [workloadDoc('client-a', CLIENT_A, 'node-a'), workloadDoc('server-new', REUSED, 'node-a', 'new-sa')] }));
  await eventually(() => a.app.control.store.current.version > version, 'the new snapshot is installed');
  t.same(atSwap, [formatSpiffe(idOf('new-sa'))], 'the new identity is served from the swap notification on, not after queued listener work');
  await a.app.data.settled();
  t.same(a.app.data.addresses().get(`hbone ${REUSED}`), listenerBefore, 'the listener itself stayed open');
  t.ok(
    a.lines.some((l) => l.includes('HBONE listener now serves another identity') && l.includes(formatSpiffe(idOf('new-sa')))),
    'the identity change at the IP is logged',
  );

  t.same(await servedSans(REUSED, probeCert), [formatSpiffe(idOf('new-sa'))], 'the listener now serves the new identity');
  const second = await socksConnect(a.socks, CLIENT_A, dst);
  t.equal(await echoHash(second, payload), sha(payload), 'a tunnel expecting the new identity succeeds');
  second.destroy();
  await a.app.control.certs.settled();
  t.same(
    a.app.control.certs.states().map((s) => s.id),
    [formatSpiffe(idOf('client-a')), formatSpiffe(idOf('new-sa'))].sort(),
    'the old identity is forgotten, the new one managed',
  );
}
