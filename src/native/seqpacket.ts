/**
 * Unix SOCK_SEQPACKET sockets with SCM_RIGHTS fd passing, as EventEmitters (Node's `net` has
 * neither). This is the transport of ZDS (istio-cni -> ztunnel: one protobuf per message, a pod's
 * netns fd attached to "add workload"). Readiness comes from the addon's watchFd (a uv_poll_t on
 * this thread's loop), so nothing blocks and everything runs on the owning thread.
 *
 * Ownership: a SeqpacketSocket/Server owns its fd and closes it in close() or on EOF/error. Fds
 * received with a 'message' belong to the listener (close them, or hand them on); when nobody
 * listens for 'message' they are closed here so they cannot leak.
 */
import { EventEmitter } from 'node:events';
import { unlinkSync } from 'node:fs';
import { errnoError } from './errno';
import type { NativeApi } from './addon';

export interface SeqpacketOptions {
  /** longest accepted message; a longer one closes the socket with EMSGSIZE (default 64 KiB) */
  maxMessage?: number;
}

export const DEFAULT_MAX_MESSAGE = 64 * 1024;

/** Why a socket closed: 'eof' (peer closed), 'error' (with the error), 'local' (close()). */
export interface SeqpacketCloseInfo {
  reason: 'eof' | 'error' | 'local';
  error?: NodeJS.ErrnoException;
}

export interface SeqpacketSocketEvents {
  message: [data: Buffer, fds: number[]];
  close: [info: SeqpacketCloseInfo];
}

export class SeqpacketSocket extends EventEmitter<SeqpacketSocketEvents> {
  #fd: number;
  #watch = 0;
  readonly #native: NativeApi;
  readonly #maxMessage: number;

  /** Connects to a listening SOCK_SEQPACKET socket; throws coded errors (ENOENT, ECONNREFUSED...). */
  static connect(native: NativeApi, path: string, opts: SeqpacketOptions = {}): SeqpacketSocket {
    return new SeqpacketSocket(native, native.seqpacketConnect(path), opts);
  }

  /** Takes ownership of an already connected SOCK_SEQPACKET fd (e.g. from seqpacketAccept). */
  static fromFd(native: NativeApi, fd: number, opts: SeqpacketOptions = {}): SeqpacketSocket {
    return new SeqpacketSocket(native, fd, opts);
  }

  private constructor(native: NativeApi, fd: number, opts: SeqpacketOptions) {
    super();
    this.#native = native;
    this.#fd = fd;
    this.#maxMessage = opts.maxMessage ?? DEFAULT_MAX_MESSAGE;
    try {
      this.#watch = native.watchFd(fd, (events) => this.#onEvents(events));
    } catch (err) {
      native.close(fd);
      throw err;
    }
  }

  /** The socket's fd, -1 once closed. */
  get fd(): number {
    return this.#fd;
  }

  get closed(): boolean {
    return this.#fd < 0;
  }

  /**
   * Sends one message (fds attached by SCM_RIGHTS; this side keeps its copies). Throws coded
   * errors: EAGAIN when the peer's queue is full, EPIPE when the peer is gone, ERR_SEQPACKET_CLOSED.
   */
  send(data: Buffer, fds: number[] = []): void {
    if (this.#fd < 0) throw Object.assign(new Error('seqpacket socket is closed'), { code: 'ERR_SEQPACKET_CLOSED' });
    this.#native.seqpacketSend(this.#fd, data, fds);
  }

  /** Closes the fd; 'close' ({reason: 'local'}) follows on the next tick. Idempotent. */
  close(): void {
    if (this.#teardown()) process.nextTick(() => this.emit('close', { reason: 'local' }));
  }

  /** Stops watching and closes the fd; false when that already happened. */
  #teardown(): boolean {
    if (this.#fd < 0) return false;
    this.#native.unwatchFd(this.#watch);
    this.#native.close(this.#fd);
    this.#fd = -1;
    return true;
  }

  #end(info: SeqpacketCloseInfo): void {
    if (this.#teardown()) this.emit('close', info);
  }

  #onEvents(events: number): void {
    this.#drain();
    // libuv reports EPOLLERR as EBADF and stops the watch; the drain above has normally surfaced
    // the socket's real error (e.g. ECONNRESET: the peer closed with messages unread).
    if (events < 0) this.#end({ reason: 'error', error: errnoError(events, 'poll') });
  }

  /** Delivers every queued message (a disconnect may still have some ahead of it). */
  #drain(): void {
    // a listener may close the socket in between
    while (this.#fd >= 0) {
      let msg;
      try {
        msg = this.#native.seqpacketRecv(this.#fd, this.#maxMessage);
      } catch (err) {
        this.#end({ reason: 'error', error: err as NodeJS.ErrnoException });
        return;
      }
      if (msg === undefined) return;
      if (msg === null) {
        this.#end({ reason: 'eof' });
        return;
      }
      if (this.listenerCount('message') === 0) {
        for (const fd of msg.fds) this.#native.close(fd);
        continue;
      }
      this.emit('message', msg.data, msg.fds);
    }
  }
}

export interface SeqpacketServerEvents {
  connection: [socket: SeqpacketSocket];
  error: [err: NodeJS.ErrnoException];
}

/** The listening side (istio-cni's role; ztunnel-ts uses it in tests and harnesses). */
export class SeqpacketServer extends EventEmitter<SeqpacketServerEvents> {
  #fd: number;
  #watch = 0;
  readonly #native: NativeApi;
  readonly #opts: SeqpacketOptions;
  readonly path: string;

  /** Binds `path` (which must not exist) and listens; throws coded errors (EADDRINUSE, ...). */
  static listen(native: NativeApi, path: string, opts: SeqpacketOptions & { backlog?: number } = {}): SeqpacketServer {
    return new SeqpacketServer(native, path, opts);
  }

  private constructor(native: NativeApi, path: string, opts: SeqpacketOptions & { backlog?: number }) {
    super();
    this.#native = native;
    this.#opts = { maxMessage: opts.maxMessage };
    this.path = path;
    this.#fd = native.seqpacketListen(path, opts.backlog ?? 16);
    try {
      this.#watch = native.watchFd(this.#fd, (events) => this.#onEvents(events));
    } catch (err) {
      native.close(this.#fd);
      unlinkQuiet(path);
      throw err;
    }
  }

  get closed(): boolean {
    return this.#fd < 0;
  }

  /** Stops accepting, closes the fd and removes the socket file. Accepted sockets live on. */
  close(): void {
    if (this.#fd < 0) return;
    this.#native.unwatchFd(this.#watch);
    this.#native.close(this.#fd);
    this.#fd = -1;
    unlinkQuiet(this.path);
  }

  #onEvents(events: number): void {
    if (events < 0) {
      this.emit('error', errnoError(events, 'poll'));
      return;
    }
    while (this.#fd >= 0) {
      let fd: number | null;
      try {
        fd = this.#native.seqpacketAccept(this.#fd);
      } catch (err) {
        // e.g. EMFILE: report it like net.Server does; the watch retries on the next event.
        this.emit('error', err as NodeJS.ErrnoException);
        return;
      }
      if (fd === null) return;
      const sock = SeqpacketSocket.fromFd(this.#native, fd, this.#opts);
      if (this.listenerCount('connection') === 0) sock.close();
      else this.emit('connection', sock);
    }
  }
}

function unlinkQuiet(path: string): void {
  try {
    unlinkSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}
