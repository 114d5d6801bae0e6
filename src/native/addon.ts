/**
 * Loads the native addon (native/, see native/README.md) and exposes it as a typed API whose calls
 * validate their arguments and throw Node-shaped errors ({code, errno, syscall}) instead of
 * returning -errno.
 *
 * Loading: call loadNative() once per thread at startup and pass the result down in the deps
 * bundle. The binary itself is loaded once per thread by Node's require cache (each worker_thread
 * has its own and gets its own addon instance: the addon is context-aware); nothing happens at
 * import time.
 */
import { isIP } from 'node:net';
import { constants } from 'node:os';
import { resolve } from 'node:path';
import { ProxyError } from '../errors';
import { checkNative, type NativeFailure } from './errno';

/** dist/src/native/addon.js -> native/build/Release (the compiled layout; tests run from dist too) */
export const DEFAULT_ADDON_PATH = resolve(__dirname, '../../../native/build/Release/ztunnel_native.node');

export interface SocketKernelOptions {
  /** IP_TRANSPARENT / IPV6_TRANSPARENT (CAP_NET_ADMIN) */
  transparent?: boolean;
  /** SO_MARK (CAP_NET_ADMIN) */
  mark?: number;
  /** IP_FREEBIND / IPV6_FREEBIND */
  freebind?: boolean;
  /**
   * In-pod mode: create the socket inside this network namespace (an fd of /proc/<pid>/ns/net or
   * /var/run/netns/<name>, e.g. received from istio-cni). A helper thread joins the namespace,
   * makes the socket and exits; the calling thread never changes namespace. The socket keeps that
   * namespace for life. A bad fd fails with syscall 'setns' (EBADF, or EINVAL for a non-netns fd).
   */
  netnsFd?: number;
}

export interface ListenOptions extends SocketKernelOptions {
  host: string;
  port: number;
  backlog: number;
  reusePort: boolean;
}

export interface KeepaliveOptions {
  idleSec: number;
  intervalSec: number;
  count: number;
}

export interface ConnectSocketOptions extends SocketKernelOptions {
  family: 4 | 6;
  /** source address to bind before connecting (e.g. the original client IP, with transparent) */
  bindAddress?: string;
  /** 0 or absent: any port, picked at connect() time */
  bindPort?: number;
  keepalive?: KeepaliveOptions;
}

export interface SocketAddress {
  address: string;
  port: number;
}

/** What the kernel reports for the options this addon sets (tests, diagnostics). */
export interface SocketInfo {
  family: number;
  type: number;
  reuseAddr: number;
  reusePort: number;
  transparent: number;
  freebind: number;
  mark: number;
  keepalive: number;
  keepIdle: number;
  keepIntvl: number;
  keepCnt: number;
  nonBlocking: number;
  cloexec: number;
}

export interface RelayCounters {
  /** bytes read from A and written to B */
  aToB: number;
  /** bytes read from B and written to A */
  bToA: number;
}

/** What the addon reports when a splice relay ends; errno is -errno (Node style) or 0. */
export interface NativeRelayResult extends RelayCounters {
  reason: 'eof' | 'reset' | 'error' | 'stopped';
  errno: number;
}

export interface RelayStartOptions {
  /** requested capacity of each direction's pipe; the kernel may grant less (default 1 MiB) */
  pipeSize?: number;
  /** bytes already read from A (resp. B) that must be delivered to B (resp. A) first */
  prefixAB?: Buffer | null;
  prefixBA?: Buffer | null;
}

export const DEFAULT_PIPE_SIZE = 1 << 20;

/** One SOCK_SEQPACKET message; `fds` arrived by SCM_RIGHTS, close-on-exec, owned by the receiver. */
export interface SeqpacketMessage {
  data: Buffer;
  fds: number[];
}

/** watchFd callback bits (libuv's UV_READABLE, UV_DISCONNECT); a negative value is -errno. */
export const WATCH_READABLE = 1;
export const WATCH_DISCONNECT = 4;
/** SCM_MAX_FD: the kernel's limit of fds in one message. */
export const MAX_PASSED_FDS = 253;
/** sizeof(sockaddr_un.sun_path) - 1: the longest Unix socket path (bytes). */
export const MAX_UNIX_PATH = 107;

export interface NativeApi {
  /** A listening, non-blocking, close-on-exec socket; hand `fd` to net.Server#listen({fd}). */
  listen(opts: ListenOptions): { fd: number; port: number };
  /** The pre-NAT destination of a redirected accepted socket (SO_ORIGINAL_DST). */
  originalDst(fd: number): SocketAddress;
  /** An unconnected TCP socket with the options set; connect it with connectSocket(). */
  socketForConnect(opts: ConnectSocketOptions): number;
  socketInfo(fd: number): SocketInfo;
  /**
   * SO_KEEPALIVE with TCP_KEEPIDLE / TCP_KEEPINTVL / TCP_KEEPCNT on an existing (e.g. connected)
   * socket, or SO_KEEPALIVE off for null. Node's setKeepAlive() sets only the idle time.
   */
  setKeepalive(fd: number, keepalive: KeepaliveOptions | null): void;
  /** A close-on-exec duplicate the caller owns. */
  dup(fd: number): number;
  close(fd: number): void;
  /**
   * Starts a splice relay between two connected sockets. On success the relay OWNS fdA and fdB
   * (it closes them when done); on a throw the caller still owns them. onDone runs once on this
   * thread, unless the thread's environment is being torn down (then fds are closed silently).
   */
  relayStart(fdA: number, fdB: number, onDone: (r: NativeRelayResult) => void, opts?: RelayStartOptions): number;
  /** Live (then final) counters; null once the completion was delivered or for unknown ids. */
  relayStats(id: number): RelayCounters | null;
  /** Asks the relay to stop; false when it had already finished (its onDone is on the way). */
  relayStop(id: number): boolean;
  /** Relays running in this thread's addon instance. */
  relayCount(): number;
  /** A connected, non-blocking, close-on-exec Unix SOCK_SEQPACKET socket (caller owns it). */
  seqpacketConnect(path: string): number;
  /** A listening SOCK_SEQPACKET socket bound to `path` (which must not exist yet). */
  seqpacketListen(path: string, backlog: number): number;
  /** An accepted connection (non-blocking, close-on-exec), or null when none is pending. */
  seqpacketAccept(fd: number): number | null;
  /**
   * Sends one message with `fds` attached by SCM_RIGHTS (the sender keeps its own copies).
   * Never blocks: a full peer queue throws EAGAIN (syscall 'sendmsg'). Returns the bytes sent.
   */
  seqpacketSend(fd: number, data: Buffer, fds?: number[]): number;
  /**
   * Receives one message: the message; `null` on an orderly peer close (EOF); `undefined` when
   * none is queued (EAGAIN). A message longer than maxLen (or with too many fds) throws EMSGSIZE
   * (syscall 'recvmsg') after its fds were closed; the message is gone.
   */
  seqpacketRecv(fd: number, maxLen: number): SeqpacketMessage | null | undefined;
  /**
   * Calls `cb` on this thread whenever `fd` is readable or its peer hung up (level-triggered:
   * again and again until drained). `cb` gets WATCH_* bits, or -errno when polling failed.
   * Returns a watch id for unwatchFd. The fd stays the caller's, except at environment teardown
   * (worker exit): then the addon closes every still-watched fd itself. One watch per fd, and
   * never an fd that a Node handle (net.Socket, ...) also polls.
   */
  watchFd(fd: number, cb: (events: number) => void): number;
  /** Stops a watch (call it before closing the fd); false for unknown ids. */
  unwatchFd(id: number): boolean;
  /** Live watches in this thread's addon instance. */
  watchCount(): number;
}

/** The raw binding: values, -errno, or [-errno, syscall]; see native/src/addon.cc. */
interface RawBinding {
  listen(o: ListenOptions): { fd: number; port: number } | NativeFailure;
  originalDst(fd: number): SocketAddress | NativeFailure;
  socketForConnect(o: ConnectSocketOptions): number | NativeFailure;
  socketInfo(fd: number): SocketInfo | NativeFailure;
  setKeepalive(fd: number, k: KeepaliveOptions | null): number;
  dup(fd: number): number;
  close(fd: number): number;
  relayStart(a: number, b: number, cb: (r: NativeRelayResult) => void, pipeSize: number, pAB: Buffer | null, pBA: Buffer | null): number | NativeFailure;
  relayStats(id: number): [number, number] | number;
  relayStop(id: number): number;
  relayCount(): number;
  seqpacketConnect(path: string): number | NativeFailure;
  seqpacketListen(path: string, backlog: number): number | NativeFailure;
  seqpacketAccept(fd: number): number;
  seqpacketSend(fd: number, data: Uint8Array, fds: number[]): number;
  seqpacketRecv(fd: number, maxLen: number): SeqpacketMessage | null | number;
  watchFd(fd: number, cb: (events: number) => void): number;
  unwatchFd(id: number): number;
  watchCount(): number;
}

const EAGAIN = -constants.errno.EAGAIN;

function invalid(fn: string, what: string, got: unknown): ProxyError {
  return new ProxyError('ERR_NATIVE_ARG', `native.${fn}: ${what}, got ${JSON.stringify(got) ?? String(got)}`);
}

function intIn(fn: string, name: string, v: unknown, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw invalid(fn, `${name} must be an integer in ${min}..${max}`, v);
  return v;
}

/** Any int32: -1 or a closed fd is the kernel's to reject (EBADF), like Node's own fd calls. */
function fdArg(fn: string, v: unknown, name = 'fd'): number {
  return intIn(fn, name, v, -(2 ** 31), 2 ** 31 - 1);
}

function optBool(fn: string, name: string, v: unknown): void {
  if (v !== undefined && typeof v !== 'boolean') throw invalid(fn, `${name} must be a boolean`, v);
}

function ipLiteral(fn: string, name: string, v: unknown): 4 | 6 {
  const fam = typeof v === 'string' && !v.includes('%') ? isIP(v) : 0;
  if (fam === 0) throw invalid(fn, `${name} must be an IPv4 or IPv6 literal without a zone`, v);
  return fam as 4 | 6;
}

function kernelOptions(fn: string, o: SocketKernelOptions): void {
  optBool(fn, 'transparent', o.transparent);
  optBool(fn, 'freebind', o.freebind);
  if (o.mark !== undefined) intIn(fn, 'mark', o.mark, 0, 0xffffffff);
  if (o.netnsFd !== undefined) fdArg(fn, o.netnsFd, 'netnsFd');
}

function unixPath(fn: string, v: unknown): string {
  if (typeof v !== 'string' || v.length === 0 || v.includes('\0') || Buffer.byteLength(v) > MAX_UNIX_PATH) {
    throw invalid(fn, `path must be a non-empty string of at most ${MAX_UNIX_PATH} bytes without NUL`, v);
  }
  return v;
}

function fdList(fn: string, v: unknown): number[] {
  if (!Array.isArray(v) || v.length > MAX_PASSED_FDS) throw invalid(fn, `fds must be an array of at most ${MAX_PASSED_FDS} fds`, v);
  for (const fd of v) intIn(fn, 'each of fds', fd, 0, 2 ** 31 - 1);
  return v as number[];
}

function validateListen(o: ListenOptions): void {
  if (o === null || typeof o !== 'object') throw invalid('listen', 'options must be an object', o);
  ipLiteral('listen', 'host', o.host);
  intIn('listen', 'port', o.port, 0, 65535);
  intIn('listen', 'backlog', o.backlog, 1, 65535);
  if (typeof o.reusePort !== 'boolean') throw invalid('listen', 'reusePort must be a boolean', o.reusePort);
  kernelOptions('listen', o);
}

function validateConnect(o: ConnectSocketOptions): void {
  if (o === null || typeof o !== 'object') throw invalid('socketForConnect', 'options must be an object', o);
  if (o.family !== 4 && o.family !== 6) throw invalid('socketForConnect', 'family must be 4 or 6', o.family);
  kernelOptions('socketForConnect', o);
  if (o.bindAddress !== undefined && ipLiteral('socketForConnect', 'bindAddress', o.bindAddress) !== o.family) {
    throw invalid('socketForConnect', `bindAddress must be an IPv${o.family} address (family ${o.family})`, o.bindAddress);
  }
  if (o.bindPort !== undefined) {
    if (o.bindAddress === undefined) throw invalid('socketForConnect', 'bindPort needs bindAddress', o.bindPort);
    intIn('socketForConnect', 'bindPort', o.bindPort, 0, 65535);
  }
  if (o.keepalive !== undefined) validateKeepalive('socketForConnect', o.keepalive);
}

function validateKeepalive(fn: string, k: KeepaliveOptions): void {
  if (k === null || typeof k !== 'object') throw invalid(fn, 'keepalive must be an object', k);
  // Linux limits: MAX_TCP_KEEPIDLE / MAX_TCP_KEEPINTVL 32767 s, MAX_TCP_KEEPCNT 127.
  intIn(fn, 'keepalive.idleSec', k.idleSec, 1, 32767);
  intIn(fn, 'keepalive.intervalSec', k.intervalSec, 1, 32767);
  intIn(fn, 'keepalive.count', k.count, 1, 127);
}

function wrap(raw: RawBinding): NativeApi {
  return Object.freeze({
    listen(opts: ListenOptions) {
      validateListen(opts);
      return checkNative(raw.listen(opts), 'listen', { address: opts.host, port: opts.port });
    },
    originalDst(fd: number) {
      return checkNative(raw.originalDst(fdArg('originalDst', fd)), 'getsockopt');
    },
    socketForConnect(opts: ConnectSocketOptions) {
      validateConnect(opts);
      const detail = opts.bindAddress === undefined ? undefined : { address: opts.bindAddress, port: opts.bindPort ?? 0 };
      return checkNative<number>(raw.socketForConnect(opts), 'socket', detail);
    },
    socketInfo(fd: number) {
      return checkNative(raw.socketInfo(fdArg('socketInfo', fd)), 'getsockopt');
    },
    setKeepalive(fd: number, keepalive: KeepaliveOptions | null) {
      fdArg('setKeepalive', fd);
      if (keepalive !== null) validateKeepalive('setKeepalive', keepalive);
      checkNative<number>(raw.setKeepalive(fd, keepalive), 'setsockopt');
    },
    dup(fd: number) {
      return checkNative<number>(raw.dup(fdArg('dup', fd)), 'fcntl');
    },
    close(fd: number) {
      checkNative<number>(raw.close(fdArg('close', fd)), 'close');
    },
    relayStart(fdA: number, fdB: number, onDone: (r: NativeRelayResult) => void, opts: RelayStartOptions = {}) {
      fdArg('relayStart', fdA, 'fdA');
      fdArg('relayStart', fdB, 'fdB');
      if (fdA === fdB) throw invalid('relayStart', 'fdA and fdB must differ', fdB);
      if (typeof onDone !== 'function') throw invalid('relayStart', 'onDone must be a function', typeof onDone);
      const pipeSize = intIn('relayStart', 'pipeSize', opts.pipeSize ?? DEFAULT_PIPE_SIZE, 4096, 1 << 30);
      for (const [name, b] of [['prefixAB', opts.prefixAB], ['prefixBA', opts.prefixBA]] as const) {
        if (b !== undefined && b !== null && !Buffer.isBuffer(b)) throw invalid('relayStart', `${name} must be a Buffer`, typeof b);
      }
      // a failure names the step of the start that failed (fcntl, pipe2, epoll_ctl, ...)
      return checkNative<number>(raw.relayStart(fdA, fdB, onDone, pipeSize, opts.prefixAB ?? null, opts.prefixBA ?? null), 'relayStart');
    },
    relayStats(id: number) {
      const r = raw.relayStats(intIn('relayStats', 'id', id, 1, 2 ** 32 - 1));
      return typeof r === 'number' ? null : { aToB: r[0], bToA: r[1] };
    },
    relayStop(id: number) {
      return raw.relayStop(intIn('relayStop', 'id', id, 1, 2 ** 32 - 1)) === 0;
    },
    relayCount() {
      return raw.relayCount();
    },
    seqpacketConnect(path: string) {
      return checkNative<number>(raw.seqpacketConnect(unixPath('seqpacketConnect', path)), 'connect', { address: path });
    },
    seqpacketListen(path: string, backlog: number) {
      unixPath('seqpacketListen', path);
      intIn('seqpacketListen', 'backlog', backlog, 1, 65535);
      return checkNative<number>(raw.seqpacketListen(path, backlog), 'listen', { address: path });
    },
    seqpacketAccept(fd: number) {
      const r = raw.seqpacketAccept(fdArg('seqpacketAccept', fd));
      return r === EAGAIN ? null : checkNative<number>(r, 'accept');
    },
    seqpacketSend(fd: number, data: Buffer, fds: number[] = []) {
      fdArg('seqpacketSend', fd);
      if (!(data instanceof Uint8Array)) throw invalid('seqpacketSend', 'data must be a Buffer', typeof data);
      return checkNative<number>(raw.seqpacketSend(fd, data, fdList('seqpacketSend', fds)), 'sendmsg');
    },
    seqpacketRecv(fd: number, maxLen: number) {
      fdArg('seqpacketRecv', fd);
      intIn('seqpacketRecv', 'maxLen', maxLen, 1, 64 << 20);
      const r = raw.seqpacketRecv(fd, maxLen);
      if (r === EAGAIN) return undefined;
      return checkNative<SeqpacketMessage | null>(r, 'recvmsg');
    },
    watchFd(fd: number, cb: (events: number) => void) {
      fdArg('watchFd', fd);
      if (typeof cb !== 'function') throw invalid('watchFd', 'cb must be a function', typeof cb);
      return checkNative<number>(raw.watchFd(fd, cb), 'uv_poll_start');
    },
    unwatchFd(id: number) {
      return raw.unwatchFd(intIn('unwatchFd', 'id', id, 1, 2 ** 32 - 1)) === 0;
    },
    watchCount() {
      return raw.watchCount();
    },
  });
}

/** The addon, or null when it cannot be loaded (for optional uses such as keepalive tuning). */
export function tryLoadNative(addonPath: string = DEFAULT_ADDON_PATH): NativeApi | null {
  try {
    return loadNative(addonPath);
  } catch {
    return null;
  }
}

/**
 * Loads the addon for this thread. Throws ERR_NATIVE_UNAVAILABLE (with the load error as cause)
 * when the binary is missing or unloadable, so the caller can choose the JS paths instead.
 */
export function loadNative(addonPath: string = DEFAULT_ADDON_PATH): NativeApi {
  let raw: RawBinding;
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    raw = require(addonPath) as RawBinding;
  } catch (err) {
    throw new ProxyError(
      'ERR_NATIVE_UNAVAILABLE',
      `native addon not loadable from ${addonPath} (build it with "npm ci" or "node native/build.js"): ${(err as Error).message}`,
      { cause: err },
    );
  }
  return wrap(raw);
}
