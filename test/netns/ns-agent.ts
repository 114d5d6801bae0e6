/**
 * A tiny test process that runs INSIDE a pod or node netns (`ip netns exec <ns> node ns-agent.js`)
 * and does socket work there on request: one JSON command per stdin line, one JSON reply per
 * stdout line, matched by `id`. It stands in for apps and for the bits of ztunnel the plumbing
 * tests need, so the kernel side (capture rules, routes, marks) is proven without the proxy.
 *
 * Listener modes:
 *   inspect  — reads the whole request, then answers one JSON line saying what the kernel told
 *              it about the connection (local/remote address, SO_ORIGINAL_DST) and a sha256 of
 *              the bytes received. A client reading that line learns where it really landed.
 *   relay    — plays ztunnel's inbound: dials the original destination from the client's own
 *              address (IP_TRANSPARENT, SO_MARK 1337) and copies both ways, so the app behind
 *              it sees the real client IP only if the return-path routing works.
 * Agent-client.ts is the parent side.
 */
import { createHash } from 'node:crypto';
import * as net from 'node:net';
import { createInterface } from 'node:readline';
import { loadNative, type NativeApi, type SocketAddress } from '../../src/native/addon';
import { connectSocket } from '../../src/native/connect';

export interface ListenCommand {
  op: 'listen';
  id: number;
  name: string;
  host: string;
  port: number;
  transparent?: boolean;
  mode: 'inspect' | 'relay';
  /** relay: take the destination from SO_ORIGINAL_DST (nat REDIRECT) instead of the local address (TPROXY) */
  origFromNat?: boolean;
}

export interface ConnectCommand {
  op: 'connect';
  id: number;
  host: string;
  port: number;
  mark?: number;
  /** source address to bind (e.g. the kubelet probe address 169.254.7.127) */
  bindAddress?: string;
  bytes: number;
  /** give up after this long (default 10 s) */
  timeoutMs?: number;
}

export type AgentCommand = ListenCommand | ConnectCommand;

/** What an inspect listener reports about one connection. */
export interface Landing {
  listener: string;
  local: SocketAddress;
  remote: SocketAddress;
  /** SO_ORIGINAL_DST, null when conntrack has no NAT entry (not redirected) */
  originalDst: SocketAddress | null;
  sha256: string;
  bytes: number;
}

export interface ConnectResult {
  /** the client's own view */
  local: SocketAddress;
  sentSha256: string;
  landing: Landing;
}

const fdOf = (s: net.Socket): number => (s as unknown as { _handle: { fd: number } })._handle.fd;
const addr = (a: string | undefined, p: number | undefined): SocketAddress => ({ address: (a ?? '').replace(/^::ffff:/, ''), port: p ?? 0 });

function reply(id: number, body: object): void {
  process.stdout.write(JSON.stringify({ id, ...body }) + '\n');
}

function inspect(native: NativeApi, name: string, s: net.Socket): void {
  let originalDst: SocketAddress | null = null;
  try {
    originalDst = native.originalDst(fdOf(s));
  } catch {
    // not NATed: the normal case for a socket that was not redirected
  }
  const hash = createHash('sha256');
  let bytes = 0;
  s.on('data', (d: Buffer) => {
    hash.update(d);
    bytes += d.length;
  });
  s.on('end', () => {
    const landing: Landing = { listener: name, local: addr(s.localAddress, s.localPort), remote: addr(s.remoteAddress, s.remotePort), originalDst, sha256: hash.digest('hex'), bytes };
    s.end(JSON.stringify(landing) + '\n');
  });
  s.on('error', () => s.destroy());
}

function relay(native: NativeApi, cmd: ListenCommand, s: net.Socket): void {
  const dst = cmd.origFromNat ? native.originalDst(fdOf(s)) : addr(s.localAddress, s.localPort);
  const up = connectSocket(native, { host: dst.address, port: dst.port }, { family: 4, transparent: true, mark: 0x539, bindAddress: addr(s.remoteAddress, 0).address });
  s.pipe(up).pipe(s);
  const kill = (): void => {
    s.destroy();
    up.destroy();
  };
  s.on('error', kill);
  up.on('error', kill);
}

function listen(native: NativeApi, cmd: ListenCommand): void {
  const { fd, port } = native.listen({ host: cmd.host, port: cmd.port, backlog: 64, reusePort: false, transparent: cmd.transparent ?? false });
  // half-open: the client's FIN must travel through the relay before the answer comes back
  const srv = net.createServer({ allowHalfOpen: true }, (s) => (cmd.mode === 'relay' ? relay(native, cmd, s) : inspect(native, cmd.name, s)));
  srv.on('error', (err) => reply(cmd.id, { error: err.message }));
  srv.listen({ fd }, () => reply(cmd.id, { port }));
}

function connect(native: NativeApi, cmd: ConnectCommand): void {
  const payload = Buffer.alloc(cmd.bytes);
  for (let i = 0; i < payload.length; i++) payload[i] = (i * 31 + 7) & 0xff;
  const s =
    cmd.mark === undefined && cmd.bindAddress === undefined
      ? net.connect({ host: cmd.host, port: cmd.port })
      : connectSocket(native, { host: cmd.host, port: cmd.port }, { family: 4, ...(cmd.mark === undefined ? {} : { mark: cmd.mark }), ...(cmd.bindAddress === undefined ? {} : { bindAddress: cmd.bindAddress }) });
  const ms = cmd.timeoutMs ?? 10_000;
  const timer = setTimeout(() => s.destroy(new Error(`no answer within ${ms} ms`)), ms);
  let got = '';
  let local: SocketAddress = addr(undefined, undefined);
  s.on('connect', () => {
    local = addr(s.localAddress, s.localPort);
    s.end(payload);
  });
  s.setEncoding('utf8').on('data', (d: string) => (got += d));
  s.on('end', () => {
    clearTimeout(timer);
    try {
      const result: ConnectResult = { local, sentSha256: createHash('sha256').update(payload).digest('hex'), landing: JSON.parse(got) as Landing };
      reply(cmd.id, { result });
    } catch {
      reply(cmd.id, { error: `unparseable answer ${JSON.stringify(got.slice(0, 200))}` });
    }
  });
  s.on('error', (err: NodeJS.ErrnoException) => {
    clearTimeout(timer);
    reply(cmd.id, { error: err.message, code: err.code ?? 'ERR' });
  });
}

function main(): void {
  const native = loadNative();
  const rl = createInterface({ input: process.stdin });
  rl.on('line', (line) => {
    let cmd: AgentCommand;
    try {
      cmd = JSON.parse(line) as AgentCommand;
    } catch {
      return;
    }
    try {
      if (cmd.op === 'listen') listen(native, cmd);
      else connect(native, cmd);
    } catch (err) {
      reply(cmd.id, { error: (err as Error).message, code: (err as NodeJS.ErrnoException).code ?? 'ERR' });
    }
  });
  // the parent going away (stdin closed) ends the agent: nothing outlives the test
  rl.on('close', () => process.exit(0));
  reply(0, { ready: true, pid: process.pid });
}

if (require.main === module) main();
