/**
 * TCP keepalive on the sockets the proxy opens, from KEEPALIVE_ENABLED / _TIME / _INTERVAL /
 * _RETRIES (config.keepalive). ztunnel's socket factory applies them to every socket it connects
 * (to an app, to a peer's :15008, passthrough): SO_KEEPALIVE with TCP_KEEPIDLE = time,
 * TCP_KEEPINTVL = interval, TCP_KEEPCNT = retries (defaults 180 s / 180 s / 9); with
 * KEEPALIVE_ENABLED=false it leaves the socket alone (the kernel default: off).
 *
 * This is the one place that turns config.keepalive into socket options:
 *  - sockets the addon creates (in-pod) take `keepaliveOptions()` in socketForConnect;
 *  - in-pod :15001 and :15006 listeners get them with `keepaliveListener()`, as ztunnel sets them
 *    on the connections those two listeners accept (Linux copies them to every accepted socket);
 *  - sockets Node creates (node mode) get `applyKeepalive()` once connected: the addon's
 *    setKeepalive when it is loaded, else Node's setKeepAlive, which can only set the idle time
 *    (libuv leaves the interval and count at the kernel's defaults).
 */
import type { Socket } from 'node:net';
import type { KeepaliveSettings } from '../config/config';
import type { KeepaliveOptions, NativeApi } from '../native/addon';
import { fdOf } from '../native/relay';

/** The kernel takes whole seconds; config durations are at least 1 s (src/config/config.ts). */
function seconds(ms: number): number {
  return Math.max(1, Math.floor(ms / 1000));
}

/** Socket options for config.keepalive; null when keepalive is off (nothing is set). */
export function keepaliveOptions(k: KeepaliveSettings): KeepaliveOptions | null {
  if (!k.enabled) return null;
  return { idleSec: seconds(k.timeMs), intervalSec: seconds(k.intervalMs), count: k.retries };
}

/**
 * Applies `ka` to a connected socket (a TLS socket made by tls.connect too: its handle exposes
 * the TCP fd). null does nothing, as ztunnel with keepalive disabled. A socket already closed
 * is left alone; a failing setsockopt is not worth failing the connection for.
 */
export function applyKeepalive(sock: Socket, ka: KeepaliveOptions | null, native: NativeApi | null): void {
  if (ka === null || sock.destroyed) return;
  const fd = native === null ? undefined : fdOf(sock);
  if (native !== null && fd !== undefined) {
    try {
      native.setKeepalive(fd, ka);
      return;
    } catch {
      // e.g. the peer reset in between (EINVAL on some kernels): fall through to Node's call
    }
  }
  sock.setKeepAlive(true, ka.idleSec * 1000);
}

/**
 * Wraps a socket opener so that every socket it makes gets `ka` once connected. The 'connect'
 * listener is one function per opener (the socket arrives as `this`), not a closure per socket.
 */
export function withKeepalive<A extends unknown[]>(open: (...args: A) => Socket, ka: KeepaliveOptions | null, native: NativeApi | null): (...args: A) => Socket {
  if (ka === null) return open;
  function onConnect(this: Socket): void {
    // removed by hand rather than with once(), which wraps the listener anew for every socket
    this.removeListener('connect', onConnect);
    applyKeepalive(this, ka, native);
  }
  return (...args: A) => {
    const sock = open(...args);
    // registered before the caller's own 'connect' listener: applied before anyone uses the socket
    sock.on('connect', onConnect);
    return sock;
  };
}

/**
 * Sets `ka` on a listening fd, so every connection it accepts starts with it; returns the fd.
 * On a failure the fd is closed (the caller never saw it) and the error thrown.
 */
export function keepaliveListener(native: NativeApi, fd: number, ka: KeepaliveOptions | null): number {
  if (ka === null) return fd;
  try {
    native.setKeepalive(fd, ka);
  } catch (err) {
    native.close(fd);
    throw err;
  }
  return fd;
}
