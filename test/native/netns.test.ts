// In-pod mode sockets: listen() and socketForConnect() with netnsFd create their sockets inside a
// real, throwaway network namespace (ip netns add), while the test's own thread stays where it
// was. Needs root (CAP_SYS_ADMIN for setns, CAP_NET_ADMIN for SO_MARK/IP_TRANSPARENT) and `ip`;
// CI runs as root. Without them every namespace case is skipped with a loud message. The
// originalDst case also needs iptables/ip6tables (nat table), which .ci/run installs.
import t from 'tap';
import { execFile, execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { closeSync, openSync, readlinkSync } from 'node:fs';
import { connect, createServer, type Socket } from 'node:net';
import { constants } from 'node:os';
import { isProxyError } from '../../src/errors';
import { loadNative } from '../../src/native/addon';
import { connectSocket } from '../../src/native/connect';
import { adoptListener, closeServer, thrown } from '../helpers/native-fixtures';
import { loopbackBlock } from '../helpers/loopback';

// Inside the namespace, 127.4.3.x is on that namespace's own lo; in the test's namespace the same
// addresses belong to this file's block, so nothing else listens there to confuse the checks.
const net = loopbackBlock(4, 3);
const native = loadNative();

function skipReason(): string | undefined {
  if (process.getuid?.() !== 0) return 'not root: setns/ip netns need CAP_SYS_ADMIN';
  try {
    execFileSync('ip', ['-V'], { stdio: 'ignore' });
  } catch {
    return 'the `ip` tool (iproute2) is missing';
  }
  return undefined;
}
const SKIP = skipReason();
if (SKIP !== undefined) {
  console.error(`\n*** netns.test: SKIPPING every network-namespace case: ${SKIP} ***\n`);
}

let seq = 0;
/** A fresh namespace with lo up, its fd (closed and namespace deleted in teardown). */
function makeNetns(t: tap.Test): { name: string; fd: number } {
  const name = `zt-nt-${process.pid}-${seq++}`;
  execFileSync('ip', ['netns', 'add', name]);
  let fd = -1;
  t.teardown(() => {
    if (fd >= 0) closeSync(fd);
    execFileSync('ip', ['netns', 'delete', name]);
  });
  execFileSync('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
  fd = openSync(`/var/run/netns/${name}`, 'r');
  return { name, fd };
}

const threadNs = (): string => readlinkSync('/proc/thread-self/ns/net');

/** Connects from this thread's namespace; resolves with what the server said or the error code. */
function talk(host: string, port: number, sock?: Socket): Promise<string> {
  return new Promise((resolve) => {
    const c = sock ?? connect(port, host);
    let got = '';
    c.setEncoding('utf8');
    c.on('data', (d: string) => (got += d));
    c.on('error', (e: NodeJS.ErrnoException) => resolve(`error:${e.code}`));
    c.on('end', () => {
      c.destroy();
      resolve(got);
    });
  });
}

t.test('listen with netnsFd: the listener lives in the namespace, with its options', { skip: SKIP }, async (t) => {
  const ns = makeNetns(t);
  const before = threadNs();
  const opts = { host: net.ip(1), port: 0, backlog: 16, reusePort: true, mark: 1337, transparent: true, freebind: true, netnsFd: ns.fd };
  const l = native.listen(opts);
  t.equal(threadNs(), before, 'the JS thread is still in its own namespace');
  t.match(native.socketInfo(l.fd), { family: 4, reusePort: 1, mark: 1337, transparent: 1, freebind: 1, nonBlocking: 1, cloexec: 1 });
  // SO_REUSEPORT: a second listener on the same address in the same namespace (another worker's).
  const l2 = native.listen({ ...opts, port: l.port });
  t.match(native.socketInfo(l2.fd), { reusePort: 1, mark: 1337 });
  t.equal(l2.port, l.port, 'both listeners share the port');
  native.close(l2.fd);
  // ... and not in a namespace where the address is free: the same port in ours is unused.
  const srv = await adoptListener(l.fd, (s) => s.end('from-pod'));
  t.teardown(() => closeServer(srv));
  t.equal(await talk(net.ip(1), l.port), 'error:ECONNREFUSED', 'not reachable from the test namespace');

  // Reachable from inside, by an independent client (node run under `ip netns exec`).
  const script = `const c=require('net').connect(${l.port},'${net.ip(1)}');let g='';c.on('data',d=>g+=d);c.on('end',()=>{process.stdout.write(g);c.destroy()});c.on('error',e=>{process.stdout.write('error:'+e.code)})`;
  const out = await new Promise<string>((resolve, reject) => {
    execFile('ip', ['netns', 'exec', ns.name, process.execPath, '-e', script], { timeout: 20000 }, (err, stdout) => (err ? reject(err) : resolve(stdout)));
  });
  t.equal(out, 'from-pod', 'a client inside the namespace reaches the listener');

  // socketForConnect with the same netnsFd: an outgoing socket created in the namespace.
  const c = connectSocket(native, { host: net.ip(1), port: l.port }, { family: 4, mark: 1337, netnsFd: ns.fd });
  t.equal(await talk(net.ip(1), l.port, c), 'from-pod', 'socketForConnect({netnsFd}) reaches the in-namespace listener');
  t.equal(threadNs(), before, 'still unchanged after socketForConnect');
});

t.test('socketForConnect with netnsFd routes inside the namespace, with its options', { skip: SKIP }, async (t) => {
  const ns = makeNetns(t);
  // A server only in the test's namespace: an outgoing socket made in the pod cannot see it.
  const host = createServer((s) => s.end('host'));
  host.listen(0, net.ip(2));
  await once(host, 'listening');
  t.teardown(() => closeServer(host));
  const port = (host.address() as { port: number }).port;
  t.equal(await talk(net.ip(2), port), 'host', 'reachable from here');
  const inPod = connectSocket(native, { host: net.ip(2), port }, { family: 4, netnsFd: ns.fd });
  t.equal(await talk(net.ip(2), port, inPod), 'error:ECONNREFUSED', 'not from a socket created in the namespace');

  // Options and a source bind apply in the namespace: 127.4.3.9 is on the pod's lo.
  const fd = native.socketForConnect({ family: 4, mark: 0x539, transparent: true, freebind: true, bindAddress: net.ip(9), netnsFd: ns.fd });
  t.match(native.socketInfo(fd), { family: 4, mark: 0x539, transparent: 1, freebind: 1, nonBlocking: 1, cloexec: 1 });
  native.close(fd);
  // IPv6 too (the namespace's lo has ::1 once up).
  const v6 = native.listen({ host: '::1', port: 0, backlog: 4, reusePort: true, netnsFd: ns.fd });
  t.match(native.socketInfo(v6.fd), { family: 6, reusePort: 1 });
  native.close(v6.fd);
});

t.test('a bad netnsFd is a coded setns error; nothing else changes', { skip: SKIP }, async (t) => {
  const before = threadNs();
  const base = { host: net.ip(3), port: 0, backlog: 4, reusePort: false };
  for (const [fd, code] of [[-1, 'EBADF'], [99999, 'EBADF']] as const) {
    const e = thrown(() => native.listen({ ...base, netnsFd: fd }));
    t.match(e, { code, syscall: 'setns', errno: -constants.errno[code] }, `listen netnsFd=${fd}`);
    t.match(thrown(() => native.socketForConnect({ family: 4, netnsFd: fd })), { code, syscall: 'setns' }, `socketForConnect netnsFd=${fd}`);
  }
  // An open fd that is not a network namespace (a mount namespace is not one either).
  for (const path of ['/dev/null', '/proc/self/ns/mnt']) {
    const fd = openSync(path, 'r');
    t.teardown(() => closeSync(fd));
    t.match(thrown(() => native.listen({ ...base, netnsFd: fd })), { code: 'EINVAL', syscall: 'setns' }, path);
  }
  t.ok(isProxyError(thrown(() => native.listen({ ...base, netnsFd: 1.5 })), 'ERR_NATIVE_ARG'), 'non-integer netnsFd rejected in JS');
  t.ok(isProxyError(thrown(() => native.socketForConnect({ family: 4, netnsFd: 'x' as unknown as number })), 'ERR_NATIVE_ARG'));
  t.equal(threadNs(), before, 'the JS thread never moved');
  // A failed setns left no socket behind in our namespace either: the address is still free here.
  const l = native.listen(base);
  native.close(l.fd);
});

t.test('the netns helper thread exits: no zt-netns thread survives the calls', { skip: SKIP }, async (t) => {
  const ns = makeNetns(t);
  for (let i = 0; i < 20; i++) native.close(native.socketForConnect({ family: 4, netnsFd: ns.fd }));
  const names = execFileSync('sh', ['-c', `cat /proc/${process.pid}/task/*/comm`]).toString().split('\n');
  t.notOk(names.includes('zt-netns'), 'helper threads were joined');
});

/** Runs iptables/ip6tables inside the namespace (the rules die with it). */
function nsRun(ns: string, ...cmd: string[]): void {
  execFileSync('ip', ['netns', 'exec', ns, ...cmd], { stdio: ['ignore', 'ignore', 'pipe'] });
}

t.test('originalDst: the pre-NAT destination after ip6tables / iptables REDIRECT to a [::] listener', { skip: SKIP }, async (t) => {
  const ns = makeNetns(t);
  // addresses no one listens on, local to the namespace so the connects stay on its lo
  const V6 = 'fd00:13::2';
  const V4 = '10.13.0.2';
  execFileSync('ip', ['-n', ns.name, 'addr', 'add', `${V6}/128`, 'dev', 'lo', 'nodad']);
  execFileSync('ip', ['-n', ns.name, 'addr', 'add', `${V4}/32`, 'dev', 'lo']);
  // one dual-stack listener, as the in-pod :15001 listens on [::] (IPv4 clients arrive mapped)
  const l = native.listen({ host: '::', port: 0, backlog: 16, reusePort: true, netnsFd: ns.fd });
  let onAccept!: (s: Socket) => void;
  const srv = await adoptListener(l.fd, (s) => onAccept(s));
  t.teardown(() => closeServer(srv));
  const accepted = (): Promise<Socket> => new Promise((r) => (onAccept = r));
  nsRun(ns.name, 'ip6tables', '-t', 'nat', '-A', 'OUTPUT', '-p', 'tcp', '-d', V6, '--dport', '8080', '-j', 'REDIRECT', '--to-ports', String(l.port));
  nsRun(ns.name, 'iptables', '-t', 'nat', '-A', 'OUTPUT', '-p', 'tcp', '-d', V4, '--dport', '9090', '-j', 'REDIRECT', '--to-ports', String(l.port));

  for (const [family, host, port] of [[6, V6, 8080], [4, V4, 9090]] as const) {
    const got = accepted();
    const c = connectSocket(native, { host, port }, { family, netnsFd: ns.fd });
    c.on('error', () => undefined);
    const s = await got;
    const fd = (s as unknown as { _handle: { fd: number } })._handle.fd;
    let dst: unknown;
    try {
      dst = native.originalDst(fd);
    } catch (err) {
      dst = (err as Error).message; // asserted below, after both sockets are closed
    }
    const local = { address: s.localAddress, port: s.localPort };
    c.destroy();
    s.destroy();
    // the accepted socket's own address is the REDIRECT target, not what the client dialled
    t.equal(local.port, l.port, `IPv${family}: redirected to the listener's port`);
    t.same(dst, { address: host, port }, `IPv${family}: originalDst is the pre-NAT ${family === 6 ? `[${host}]` : host}:${port}`);
    if (family === 4) t.match(local.address, /^::ffff:/, 'the IPv4 client arrived IPv4-mapped on the [::] listener');
  }
});
