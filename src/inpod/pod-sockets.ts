/**
 * Sockets a pod's traffic leaves by, made inside the pod's network namespace by the addon (a
 * helper thread does setns + socket + options; the JS thread never changes namespace), every one
 * with the proxy's packet mark (PACKET_MARK, 1337 = 0x539) so the pod's redirect rules let them
 * through instead of capturing them again.
 *
 *  - outbound (HBONE to the destination's :15008, passthrough, TCP workloads): from the pod's own
 *    address, as if the app had connected;
 *  - inbound to the app (:15008 and :15006 legs): bound to the ORIGINAL client's address with
 *    IP_TRANSPARENT + IP_FREEBIND, so the app sees the real peer (ZTUNNEL-FACTS "In-pod mode";
 *    the app's replies return to the proxy through the pod's connmark 0x111 / table 100 rules).
 */
import { isIP, type Socket } from 'node:net';
import { ProxyError } from '../errors';
import type { KeepaliveOptions, NativeApi } from '../native/addon';
import { connectSocket } from '../native/connect';

/**
 * A data plane's own handle on a pod's network namespace (a dup of the main thread's fd, so the
 * main thread closing its copy can never leave a number that now names another pod). `closed`
 * is set when the pod is removed: a connection still being set up then fails instead of dialling
 * from whatever the fd number has become.
 */
export interface PodNetns {
  readonly fd: number;
  closed: boolean;
}

export interface PodSocketOptions {
  readonly native: NativeApi;
  readonly netns: PodNetns;
  readonly mark: number;
  /** TCP keepalive for every socket (src/net/keepalive.ts: keepaliveOptions(config.keepalive)); null = leave it off */
  readonly keepalive?: KeepaliveOptions | null;
}

function open(o: PodSocketOptions, host: string, port: number, bind: string | undefined, halfOpen = true): Socket {
  if (o.netns.closed) throw new ProxyError('ERR_POD_GONE', 'the pod was removed: no more connections from its network namespace');
  const family = isIP(host) === 6 ? 6 : 4;
  const spoof = bind !== undefined && isIP(bind) === family;
  const sock = connectSocket(o.native, { host, port }, {
    family,
    mark: o.mark,
    netnsFd: o.netns.fd,
    ...(o.keepalive ? { keepalive: o.keepalive } : {}),
    ...(spoof ? { bindAddress: bind, transparent: true, freebind: true } : {}),
  });
  // relayed legs, as net.connect({allowHalfOpen: true}): a half-close is forwarded, not turned into a close
  sock.allowHalfOpen = halfOpen;
  sock.once('connect', () => sock.setNoDelay(true));
  return sock;
}

/** A connecting socket from the pod itself (its own address). */
export function podOutboundSocket(o: PodSocketOptions, host: string, port: number): Socket {
  return open(o, host, port, undefined);
}

/** The TCP under an HBONE (TLS) connection from the pod: a peer's FIN ends it, as tls.connect's own would. */
export function podTunnelSocket(o: PodSocketOptions, host: string, port: number): Socket {
  return open(o, host, port, undefined, false);
}

/** A connecting socket to the pod's app that carries the original client's address. */
export function podInboundSocket(o: PodSocketOptions, host: string, port: number, clientIp: string): Socket {
  return open(o, host, port, clientIp);
}
