/**
 * ZdsClient against a real SOCK_SEQPACKET server (the addon's, as istio-cni would be) with real fd
 * passing. The data planes are replaced by a recording `apply`, so every protocol rule is checked
 * here in-process: hello, acks, fd ownership, keep/del/snapshot-sent, failures, reconnect.
 * (test/netns/inpod.test.ts runs the same client against real pod namespaces.)
 */
import t from 'tap';
import { once } from 'node:events';
import { closeSync, fstatSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import type { InpodPod, PodState } from '../../src/inpod/pod';
import { ZdsClient } from '../../src/inpod/zds-client';
import { decodeHello, decodeResponse, encodeRequest, type ZdsRequest } from '../../src/inpod/zds-codec';
import { loadNative } from '../../src/native/addon';
import { SeqpacketServer, type SeqpacketSocket } from '../../src/native/seqpacket';
import { eventually } from '../helpers/eventually';

const native = loadNative();
const dir = mkdtempSync(join(tmpdir(), 'zt-zds-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
// stand-ins for pod netns files: distinct inodes, so "same namespace" is decided by which file
const nsFile = (name: string): string => {
  const p = join(dir, name);
  writeFileSync(p, name);
  return p;
};

function isOpen(fd: number): boolean {
  try {
    fstatSync(fd);
    return true;
  } catch {
    return false;
  }
}

interface Harness {
  readonly client: ZdsClient;
  readonly hellos: number[];
  readonly applied: InpodPod[][];
  synced: number;
  fail: Map<string, string>;
  peer(): Promise<SeqpacketSocket>;
  send(req: ZdsRequest, files?: string[]): Promise<string>;
  raw(bytes: Buffer): Promise<string>;
  close(): Promise<void>;
}

async function harness(name: string, opts: { startServer?: boolean } = {}): Promise<Harness & { startServer(): void }> {
  const path = join(dir, `${name}.sock`);
  let server: SeqpacketServer | null = null;
  let current: SeqpacketSocket | null = null;
  const waiters: Array<(s: SeqpacketSocket) => void> = [];
  const startServer = (): void => {
    server = SeqpacketServer.listen(native, path);
    server.on('connection', (s) => {
      // the proxy speaks first: its hello is taken here, so peer() hands out a socket ready for requests
      void once(s, 'message').then(([data]) => {
        h.hellos.push(decodeHello(data as Buffer).version);
        current = s;
        for (const w of waiters.splice(0)) w(s);
      });
    });
  };
  if (opts.startServer !== false) startServer();
  const h = {
    hellos: [] as number[],
    applied: [] as InpodPod[][],
    synced: 0,
    fail: new Map<string, string>(),
  } as Harness & { startServer(): void };
  const client = new ZdsClient({
    native,
    path,
    log: pino({ level: 'silent' }),
    backoffMs: { initial: 10, max: 50 },
    apply: async (pods): Promise<Record<string, PodState>> => {
      h.applied.push([...pods]);
      const out: Record<string, PodState> = {};
      for (const p of pods) {
        const why = h.fail.get(p.uid);
        out[p.uid] = why ? { state: 'failed', reason: why } : { state: 'up', ip: '10.0.0.1', workload: p.uid };
      }
      return out;
    },
    onSynced: () => h.synced++,
  });
  const ask = async (bytes: Buffer, fds: number[]): Promise<string> => {
    const s = await h.peer();
    const answer = once(s, 'message');
    s.send(bytes, fds);
    const [data] = (await answer) as [Buffer];
    return decodeResponse(data).error;
  };
  Object.assign(h, {
    client,
    startServer,
    peer: (): Promise<SeqpacketSocket> => (current ? Promise.resolve(current) : new Promise<SeqpacketSocket>((r) => waiters.push(r))),
    async send(req: ZdsRequest, files: string[] = []): Promise<string> {
      const fds = files.map((f) => openSync(f, 'r'));
      try {
        return await ask(encodeRequest(req), fds);
      } finally {
        for (const fd of fds) closeSync(fd);
      }
    },
    raw: (bytes: Buffer): Promise<string> => ask(bytes, []),
    async close(): Promise<void> {
      await client.close();
      current?.close();
      (server as SeqpacketServer | null)?.close();
    },
    dropPeer(): void {
      current?.close();
      current = null;
    },
    forgetPeer(): void {
      current = null;
    },
  });
  client.start();
  return h;
}

const info = (name: string) => ({ name, namespace: 'ns', serviceAccount: 'sa' });

t.test('hello, add/keep/del/snapshot-sent, each acknowledged', async (t) => {
  const h = await harness('basic');
  t.teardown(() => h.close());
  await h.peer();
  t.same(h.hellos, [1], 'the proxy says hello, version 1');

  t.equal(await h.send({ kind: 'add', uid: 'u1', info: info('a') }, [nsFile('ns-a')]), '', 'add acknowledged');
  const pod = h.applied.at(-1)![0]!;
  t.match(pod, { uid: 'u1', name: 'a', namespace: 'ns', serviceAccount: 'sa' });
  t.ok(isOpen(pod.netnsFd), 'the proxy holds its own copy of the netns fd');
  t.equal(h.client.workloadState()['u1']!.state, 'up', 'config_dump state');

  t.equal(await h.send({ kind: 'keep', uid: 'u1' }), '', 'keep of a known pod');
  t.match(await h.send({ kind: 'keep', uid: 'nope' }), /no such workload/, 'keep of an unknown pod is an error');
  t.equal(await h.send({ kind: 'snapshot-sent' }), '');
  t.equal(h.synced, 1, 'readiness told once');
  t.equal(await h.send({ kind: 'snapshot-sent' }), '');
  t.equal(h.synced, 1, 'not twice');

  t.equal(await h.send({ kind: 'del', uid: 'u1' }), '', 'del acknowledged');
  t.same(h.applied.at(-1), [], 'the data planes were told to let it go');
  t.notOk(isOpen(pod.netnsFd), 'and its fd is closed after that');
  t.equal(await h.send({ kind: 'del', uid: 'u1' }), '', 'a second del is harmless');
});

t.test('bad requests are answered with an error ack and hold no fd', async (t) => {
  const h = await harness('bad');
  t.teardown(() => h.close());
  t.match(await h.send({ kind: 'add', uid: 'u2', info: info('b') }), /exactly one network-namespace fd, got 0/);
  t.match(await h.send({ kind: 'add', uid: 'u2', info: info('b') }, [nsFile('ns-b1'), nsFile('ns-b2')]), /got 2/);
  t.match(await h.raw(Buffer.from([0x0a, 0x05, 0x01])), /could not decode/, 'undecodable bytes');
  t.match(await h.send({ kind: 'add', uid: 'u9', info: null }, [nsFile('ns-noinfo')]), /workload_info .* is required/, 'an add without workload_info');
  t.equal(h.applied.length, 0, 'nothing reached the data planes');

  h.fail.set('u3', 'cannot open the listeners of pod ns/c: EADDRINUSE');
  t.match(await h.send({ kind: 'add', uid: 'u3', info: info('c') }, [nsFile('ns-c')]), /EADDRINUSE/, 'a pod that cannot start is refused with the reason');
  const tried = h.applied.at(-2)![0]!;
  t.same(h.applied.at(-1), [], 'and dropped again');
  t.notOk(isOpen(tried.netnsFd), 'its fd closed');
});

t.test('reconnect: the agent resends its pods; the same netns is kept, a missing pod is removed', async (t) => {
  const h = await harness('reconnect');
  t.teardown(() => h.close());
  const a = nsFile('ns-ra');
  t.equal(await h.send({ kind: 'add', uid: 'ra', info: info('ra') }, [a]), '');
  t.equal(await h.send({ kind: 'add', uid: 'rb', info: info('rb') }, [nsFile('ns-rb')]), '');
  t.equal(await h.send({ kind: 'snapshot-sent' }), '');
  const before = h.applied.at(-1)!.find((p) => p.uid === 'ra')!;
  const applies = h.applied.length;

  (h as unknown as { dropPeer(): void }).dropPeer();
  await h.peer();
  t.same(h.hellos, [1, 1], 'the proxy reconnected and said hello again');
  t.equal(await h.send({ kind: 'add', uid: 'ra', info: info('ra') }, [a]), '', 're-add of the same namespace');
  t.equal(h.applied.length, applies, 'no data-plane change for it');
  t.ok(isOpen(before.netnsFd), 'the original fd is still the one in use');
  t.equal(await h.send({ kind: 'snapshot-sent' }), '');
  t.same(h.applied.at(-1)!.map((p) => p.uid), ['ra'], 'rb was not resent: removed');

  t.equal(await h.send({ kind: 'add', uid: 'ra', info: info('ra') }, [nsFile('ns-ra2')]), '', 'a new sandbox for the same uid');
  const now = h.applied.at(-1)!.find((p) => p.uid === 'ra')!;
  t.not(now.netnsFd, before.netnsFd, 'replaces the namespace');
  t.notOk(isOpen(before.netnsFd), 'and the old fd is closed');
});

t.test('an agent that floods requests without waiting for acks is cut off, and the proxy reconnects', async (t) => {
  const h = await harness('flood');
  t.teardown(() => h.close());
  const peer = await h.peer();
  (h as unknown as { forgetPeer(): void }).forgetPeer(); // the next peer() waits for the reconnect
  for (let i = 0; i < 40; i++) peer.send(encodeRequest({ kind: 'keep', uid: `k${i}` }));
  await once(peer, 'close');
  t.pass('the proxy dropped the flooding connection');
  await h.peer();
  t.same(h.hellos, [1, 1], 'and connected again');
  t.equal(await h.send({ kind: 'snapshot-sent' }), '', 'the new connection works');
});

t.test('the agent is not there yet: the proxy retries until it is', async (t) => {
  const h = await harness('late', { startServer: false });
  t.teardown(() => h.close());
  await new Promise((r) => setTimeout(r, 60));
  h.startServer();
  await h.peer();
  t.equal(await h.send({ kind: 'snapshot-sent' }), '');
  await eventually(() => h.synced === 1, 'synced');
  t.pass('connected once the socket appeared');
});

t.test('close() closes the fds of the pods still registered', async (t) => {
  const h = await harness('close');
  t.equal(await h.send({ kind: 'add', uid: 'c1', info: info('c1') }, [nsFile('ns-c1')]), '');
  const fd = h.applied.at(-1)![0]!.netnsFd;
  await h.close();
  t.notOk(isOpen(fd));
});
