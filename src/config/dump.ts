/**
 * The `config` section of admin's /config_dump. Field names and value shapes follow what ztunnel
 * serialises there (camelCase, durations as {secs, nanos}, proxyMode "Shared" — every node proxy
 * is ztunnel's shared mode, in-pod or not), plus our own settings under their own names.
 *
 * Nothing secret goes in: no key material exists in Config, and the inline snapshot (LOCAL_XDS)
 * is shown by size only — ztunnel leaves its local XDS config out of the dump too.
 */
import type { Config, ListenAddr } from './config';
import { formatLogFilter } from './log-filter';
import { SELF_PORTS } from './ports';
import { formatListenAddr } from './values';

export interface DumpDuration {
  readonly secs: number;
  readonly nanos: number;
}

function duration(ms: number): DumpDuration {
  const totalNanos = Math.round(ms * 1e6);
  const secs = Math.floor(totalNanos / 1e9);
  return { secs, nanos: totalNanos - secs * 1e9 };
}

function addr(a: ListenAddr | null): string | null {
  return a === null ? null : formatListenAddr(a);
}

/** A fresh JSON-ready object; safe to serialise or extend. */
export function toConfigDump(config: Config): Record<string, unknown> {
  const xds =
    config.xds.kind === 'path'
      ? { kind: 'path', path: config.xds.path }
      : config.xds.kind === 'inline'
        ? { kind: 'inline', bytes: Buffer.byteLength(config.xds.text) }
        : { kind: 'embedded' };
  const illegalPorts = config.socks5Addr === null ? [...SELF_PORTS] : [...SELF_PORTS, config.socks5Addr.port];
  return {
    proxyMode: 'Shared',
    inpodEnabled: config.proxyMode === 'inpod',
    numWorkerThreads: config.numWorkerThreads,
    localNode: config.nodeName,
    clusterId: config.clusterId,
    network: config.network,
    trustDomain: config.trustDomain,
    localXds: xds,
    localCaDir: config.localCaDir,
    secretTtl: duration(config.secretTtlMs),
    adminAddr: addr(config.adminAddr),
    statsAddr: addr(config.statsAddr),
    readinessAddr: addr(config.readinessAddr),
    outboundAddr: addr(config.outboundAddr),
    socks5Addr: addr(config.socks5Addr),
    illegalPorts: illegalPorts.sort((a, b) => a - b),
    ipv6Enabled: config.ipv6Enabled,
    inpodUds: config.inpodUds,
    packetMark: config.packetMark,
    nativeRelay: config.nativeRelay,
    poolMaxStreamsPerConn: config.pool.maxStreamsPerConnection,
    poolUnusedReleaseTimeout: duration(config.pool.unusedReleaseTimeoutMs),
    windowSize: config.http2.streamWindowSize,
    connectionWindowSize: config.http2.connectionWindowSize,
    frameSize: config.http2.frameSize,
    socketConfig: {
      keepaliveTime: duration(config.keepalive.timeMs),
      keepaliveInterval: duration(config.keepalive.intervalMs),
      keepaliveRetries: config.keepalive.retries,
      keepaliveEnabled: config.keepalive.enabled,
    },
    selfTerminationDeadline: duration(config.terminationDeadlineMs),
    maxConnections: config.maxConnections,
    handshakeTimeout: duration(config.handshakeTimeoutMs),
    logging: { format: config.log.format, filter: formatLogFilter(config.log) },
  };
}
