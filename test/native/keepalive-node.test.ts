// KEEPALIVE_* end to end in node mode, on both relay engines: the real app (SOCKS5 entry) opens a
// plain TCP leg to a TCP workload, an HBONE connection to a peer's :15008 and the HBONE server's
// leg to the app; `ss -o` (the kernel's own view) must show a keepalive timer of at most
// KEEPALIVE_TIME on each of the proxy's outgoing sockets, and none with KEEPALIVE_ENABLED=false.
// The timer alone would also pass with Node's own setKeepAlive (idle time only), so each socket is
// also found by its inode among this process's fds (the app runs in-process) and read back with
// getsockopt (native.socketInfo): KEEPALIVE_INTERVAL and _RETRIES must be there too, which only
// the addon sets; a data plane that lost the addon on this path would fail here.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initCaDir } from '../../src/identity/ca-dir';
import { loadNative } from '../../src/native/addon';
import { socksConnect } from '../../src/proxy/socks5-client';
import { echoHash, pattern, sha, startNode, workloadDoc } from '../helpers/mesh-nodes';
import { loopbackBlock } from '../helpers/loopback';
import { closeServer } from '../helpers/native-fixtures';

const net = loopbackBlock(13, 2);
const PROXY = net.ip(1);
const CLIENT = net.ip(2); // HBONE workload: the SOCKS5 client
const SERVER = net.ip(3); // HBONE workload: its app on :8080, reached through :15008
const LEGACY = net.ip(4); // TCP workload: reached by a plain TCP leg
const APP_PORT = 8080;
const native = loadNative();

interface LegSocket {
  /** The keepalive timer in seconds, null when none runs. */
  readonly timer: number | null;
  /** The socket's inode (ss -e "ino:"). */
  readonly ino: string;
}

/** Established sockets from `src` to `dst` (host:port): keepalive timer and inode. */
function legSockets(src: string, dst: string): LegSocket[] {
  const out = execFileSync('ss', ['-tnoeH', 'state', 'established', 'src', src, 'dst', dst], { encoding: 'utf8' });
  return out.split('\n').filter((l) => l.trim() !== '').map((l) => {
    const ino = /\bino:(\d+)/.exec(l)?.[1] ?? '';
    // e.g. "timer:(keepalive,29sec,0)", "timer:(keepalive,1min29sec,0)", "timer:(keepalive,999ms,0)"
    const m = /timer:\(keepalive,([^,]+),/.exec(l);
    if (m === null) return { timer: null, ino };
    const part = (unit: string): number => Number(new RegExp(`(\\d+)${unit}`).exec(m[1]!)?.[1] ?? 0);
    return { timer: part('min') * 60 + part('sec') + part('ms') / 1000, ino };
  });
}

/** This process's fd for the socket with inode `ino` (undefined if none holds it). */
function fdOfInode(ino: string): number | undefined {
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      if (readlinkSync(`/proc/self/fd/${fd}`) === `socket:[${ino}]`) return Number(fd);
    } catch {
      // closed between readdir and readlink (e.g. the readdir's own fd)
    }
  }
  return undefined;
}

async function echoApp(t: tap.Test, host: string): Promise<void> {
  const srv: Server = createServer((s) => s.on('error', () => undefined).pipe(s));
  srv.listen(APP_PORT, host);
  await once(srv, 'listening');
  t.teardown(() => closeServer(srv));
}

const ssMissing = ((): string | false => {
  try {
    execFileSync('ss', ['-V'], { stdio: 'ignore' });
    return false;
  } catch {
    return 'ss (iproute2) is missing';
  }
})();

t.test('node mode: the proxy\'s outgoing sockets carry KEEPALIVE_*', { skip: ssMissing }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'zt-ka-node-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  await initCaDir(join(dir, 'ca'));
  const snapshotPath = join(dir, 'snapshot.json');
  writeFileSync(snapshotPath, JSON.stringify({
    workloads: [
      workloadDoc('client', CLIENT, 'node-a'),
      workloadDoc('server', SERVER, 'node-a'),
      { ...workloadDoc('legacy', LEGACY, 'node-a'), protocol: 'TCP' },
    ],
  }));
  await echoApp(t, SERVER);
  await echoApp(t, LEGACY);

  for (const nativeRelay of [true, false]) {
    for (const enabled of [true, false]) {
      const label = `${nativeRelay ? 'splice' : 'js'} relay, KEEPALIVE_ENABLED=${enabled}`;
      const node = await startNode({
        name: 'node-a',
        ip: PROXY,
        snapshotPath,
        caDir: join(dir, 'ca'),
        nativeRelay,
        env: { KEEPALIVE_TIME: '30s', KEEPALIVE_INTERVAL: '5s', KEEPALIVE_RETRIES: '4', KEEPALIVE_ENABLED: String(enabled) },
      });
      const held: Socket[] = [];
      try {
        for (const dst of [SERVER, LEGACY]) {
          const s = await socksConnect(node.socks, CLIENT, { host: dst, port: APP_PORT });
          s.on('error', () => undefined);
          held.push(s);
          const payload = pattern(10_000, 7);
          t.equal(await echoHash(s, payload), sha(payload), `${label}: echo through the proxy to ${dst}`);
        }
        const legs: [string, string, string][] = [
          ['plain TCP leg to the TCP workload', CLIENT, `${LEGACY}:${APP_PORT}`],
          ['HBONE client connection to :15008', CLIENT, `${SERVER}:15008`],
          ['HBONE server leg to the app', CLIENT, `${SERVER}:${APP_PORT}`],
        ];
        for (const [what, src, dst] of legs) {
          const socks = legSockets(src, dst);
          t.equal(socks.length, 1, `${label}: one ${what} (${src} -> ${dst})`);
          const timer = socks[0]?.timer;
          if (enabled) t.ok(timer !== null && timer !== undefined && timer <= 30 && timer > 0, `${label}: ${what} has a keepalive timer within 30 s (${timer})`);
          else t.equal(timer, null, `${label}: ${what} has no keepalive timer`);
          const fd = fdOfInode(socks[0]?.ino ?? '');
          t.ok(fd !== undefined, `${label}: ${what} is a socket of this process (the in-process app's)`);
          if (fd === undefined) continue;
          const { keepalive, keepIdle, keepIntvl, keepCnt } = native.socketInfo(fd);
          if (enabled) t.same({ keepalive, keepIdle, keepIntvl, keepCnt }, { keepalive: 1, keepIdle: 30, keepIntvl: 5, keepCnt: 4 }, `${label}: ${what} has KEEPALIVE_TIME, _INTERVAL and _RETRIES (set through the addon)`);
          else t.equal(keepalive, 0, `${label}: ${what} has SO_KEEPALIVE off`);
        }
      } finally {
        for (const s of held) s.destroy();
        await node.app.close();
      }
    }
  }
});
