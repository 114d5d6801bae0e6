/**
 * Outbound TCP with kernel options Node cannot set itself (SO_MARK, IP_TRANSPARENT + a spoofed
 * source bind, IP_FREEBIND, keepalive tuning): the addon makes an unconnected socket with the
 * options applied, Node wraps the fd and connects it with its own machinery, so the caller gets
 * an ordinary net.Socket ('connect', 'error' with ECONNREFUSED etc., timeouts, TLS on top).
 *
 * Why wrap-then-connect in the same tick: a net.Socket built from an fd starts reading at once
 * and, on an unconnected socket, fails with "read ENOTCONN" as soon as the loop polls it.
 * `manualStart` suppresses the constructor's read and connect() sets `connecting` before any
 * listener can resume the stream, so reads wait for 'connect' as they do for net.connect().
 */
import { Socket, isIP } from 'node:net';
import { ProxyError } from '../errors';
import type { ConnectSocketOptions, NativeApi } from './addon';

export interface ConnectTarget {
  /** IP literal: the data plane connects to resolved workload/service addresses only */
  host: string;
  port: number;
}

export function connectSocket(native: NativeApi, target: ConnectTarget, opts: ConnectSocketOptions): Socket {
  const fam = isIP(target.host);
  if (fam === 0) throw new ProxyError('ERR_NATIVE_ARG', `connectSocket: host must be an IP literal, got ${JSON.stringify(target.host)}`);
  if (fam !== opts.family) {
    throw new ProxyError('ERR_NATIVE_ARG', `connectSocket: host ${target.host} is IPv${fam} but the socket family is ${opts.family}`);
  }
  if (!Number.isInteger(target.port) || target.port < 1 || target.port > 65535) {
    throw new ProxyError('ERR_NATIVE_ARG', `connectSocket: port must be an integer in 1..65535, got ${target.port}`);
  }
  const fd = native.socketForConnect(opts);
  let sock: Socket;
  try {
    // manualStart is honoured by net.Socket (Node uses it for child_process stdio) but missing
    // from @types/node's SocketConstructorOpts.
    sock = new Socket({ fd, manualStart: true } as ConstructorParameters<typeof Socket>[0]);
  } catch (err) {
    native.close(fd);
    throw err;
  }
  // From here Node owns the fd: destroy() closes it.
  sock.connect({ host: target.host, port: target.port });
  return sock;
}
