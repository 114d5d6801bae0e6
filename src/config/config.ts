/**
 * Config: everything the proxy is told by its environment, as plain frozen data. It crosses into
 * worker threads with structuredClone, so it holds only strings, numbers, booleans, null and plain
 * objects — no Maps, classes, functions or live handles (those are built per thread from it).
 *
 * parseConfig reads only the injected `env` (main.ts passes process.env) and reads exactly the
 * variables of ENV_VARS; names and defaults follow ztunnel's src/config.rs. It reads every
 * variable even when another makes it irrelevant, so a typo is reported before it matters, and it
 * throws one ConfigError listing every bad variable.
 */
import { type Env, EnvReader } from './env-reader';
import { ConfigError, ValueError } from './issues';
import { DURATION_EXPECTED, formatDuration, parseDuration } from './duration';
import { type LogFilter, type LogLevel, parseLogFilter } from './log-filter';
import { resolveWorkerThreads } from './workers';
import { ADMIN_PORT, OUTBOUND_PORT, READINESS_PORT, SOCKS5_PORT, STATS_PORT } from './ports';
import {
  type ListenAddr,
  integerParser,
  oneOf,
  parseBool,
  parseListenAddr,
  parseName,
  parsePath,
  parseTrustDomain,
} from './values';

export type { ListenAddr } from './values';
export type { LogLevel } from './log-filter';
export { ConfigError, type ConfigIssue } from './issues';

/** Where the workloads/services/policies snapshot comes from. */
export type XdsSource =
  | { readonly kind: 'path'; readonly path: string }
  | { readonly kind: 'inline'; readonly text: string }
  /** Neither variable set: the bundled example snapshot (the "embedded default"). */
  | { readonly kind: 'embedded' };

export interface Http2Settings {
  readonly streamWindowSize: number;
  readonly connectionWindowSize: number;
  readonly frameSize: number;
}

export interface KeepaliveSettings {
  readonly enabled: boolean;
  readonly timeMs: number;
  readonly intervalMs: number;
  readonly retries: number;
}

export interface PoolSettings {
  readonly maxStreamsPerConnection: number;
  readonly unusedReleaseTimeoutMs: number;
}

export interface LogSettings {
  readonly format: 'plain' | 'json';
  /** Level for every logger without its own entry in `targets`. */
  readonly level: LogLevel;
  readonly targets: Readonly<Record<string, LogLevel>>;
}

export interface Config {
  /** 'inpod' when INPOD_ENABLED: listeners live in each pod's network namespace. */
  readonly proxyMode: 'node' | 'inpod';
  readonly numWorkerThreads: number;
  readonly nodeName: string;
  readonly clusterId: string;
  /** NETWORK: the network this node is on; workload and VIP lookups of the data path use it ("" = the default network). */
  readonly network: string;
  readonly trustDomain: string;
  readonly xds: XdsSource;
  /** Istio plug-in CA folder; null = generate an in-memory CA. */
  readonly localCaDir: string | null;
  readonly secretTtlMs: number;
  readonly adminAddr: ListenAddr;
  readonly statsAddr: ListenAddr;
  readonly readinessAddr: ListenAddr;
  readonly outboundAddr: ListenAddr;
  /** null unless UNSTABLE_ENABLE_SOCKS5 (which defaults to on for the embedded default, node mode). */
  readonly socks5Addr: ListenAddr | null;
  readonly ipv6Enabled: boolean;
  readonly inpodUds: string;
  readonly packetMark: number;
  readonly nativeRelay: boolean;
  readonly pool: PoolSettings;
  readonly http2: Http2Settings;
  readonly keepalive: KeepaliveSettings;
  /** How long a drain waits for live connections before closing them. */
  readonly terminationDeadlineMs: number;
  /** ZTUNNEL_MAX_CONNECTIONS: concurrent proxied connections of the whole process; null = no limit. */
  readonly maxConnections: number | null;
  /** ZTUNNEL_HANDSHAKE_TIMEOUT: deadline of the inbound HBONE TLS handshake. */
  readonly handshakeTimeoutMs: number;
  readonly log: LogSettings;
}

// ztunnel's defaults (src/config.rs)
const DEFAULT_NODE_NAME = 'local'; // ours: the node of the bundled example snapshot
const DEFAULT_CLUSTER_ID = 'Kubernetes';
const DEFAULT_TRUST_DOMAIN = 'cluster.local';
const DEFAULT_SECRET_TTL_MS = 24 * 3_600_000;
const DEFAULT_POOL_MAX_STREAMS = 100;
const DEFAULT_POOL_UNUSED_RELEASE_MS = 5 * 60_000;
const DEFAULT_TERMINATION_DEADLINE_MS = 5_000;
const DEFAULT_INPOD_UDS = '/var/run/ztunnel/ztunnel.sock';
const DEFAULT_PACKET_MARK = 1337;
const DEFAULT_KEEPALIVE_MS = 180_000;
const DEFAULT_KEEPALIVE_RETRIES = 9;
// ours (ztunnel has no such variables): Node's tls default of 120 s lets a peer that never finishes
// its handshake hold a connection far too long
const DEFAULT_HANDSHAKE_TIMEOUT_MS = 10_000;
const MiB = 1024 * 1024;

// Node's timers overflow past 2^31-1 ms (~24.8 days) and then fire after 1 ms: a deadline or
// idle timeout beyond that would silently become "immediately", so it is refused here.
const MAX_TIMER_MS = 2 ** 31 - 1;
// HTTP/2 (RFC 9113 §6.5.2, §6.9.1): windows at most 2^31-1; the connection window starts at
// 65535 and can only grow; frames between 2^14 and 2^24-1 bytes.
const MAX_WINDOW = 2 ** 31 - 1;
// Linux caps TCP_KEEPIDLE/TCP_KEEPINTVL at 32767 s and TCP_KEEPCNT at 127: refuse at startup
// what setsockopt would refuse on every connection.
const MAX_KEEPALIVE_MS = 32_767_000;

function durationParser(minMs: number, maxMs: number): (s: string) => number {
  return (s) => {
    const ms = parseDuration(s);
    if (ms < minMs || ms > maxMs) {
      const range =
        maxMs === Infinity ? `at least ${formatDuration(minMs)}`
        : minMs === 0 ? `at most ${formatDuration(maxMs)}`
        : `from ${formatDuration(minMs)} to ${formatDuration(maxMs)}`;
      throw new ValueError('ERR_DURATION', s, `${DURATION_EXPECTED}, ${range}`);
    }
    return ms;
  };
}

/** ztunnel's rule: keep a few seconds of the grace period to close what is left before SIGKILL. */
export function deadlineFromGracePeriod(secs: number): number {
  return Math.max(secs > 10 ? secs - 5 : secs - 1, 1) * 1000;
}

function anyAddr(ipv6: boolean, port: number): ListenAddr {
  return { host: ipv6 ? '::' : '0.0.0.0', port };
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}

export function parseConfig(env: Env, facts: { logicalCpus: number }): Config {
  const r = new EnvReader(env);
  const workers = resolveWorkerThreads(env, facts.logicalCpus);

  const xdsPath = r.optional('LOCAL_XDS_PATH', parsePath);
  const xdsInline = r.raw('LOCAL_XDS');
  if (xdsPath !== undefined && xdsInline !== undefined) {
    r.issue('LOCAL_XDS', xdsInline, 'to be unset while LOCAL_XDS_PATH is set (give the snapshot as a file or inline, not both)');
  }
  const xds: XdsSource =
    xdsPath !== undefined ? { kind: 'path', path: xdsPath } : xdsInline !== undefined ? { kind: 'inline', text: xdsInline } : { kind: 'embedded' };

  const clusterId = r.read('CLUSTER_ID', parseName, DEFAULT_CLUSTER_ID);
  const metaClusterId = r.optional('ISTIO_META_CLUSTER_ID', parseName);

  const ipv6Enabled = r.read('IPV6_ENABLED', parseBool, true);
  // SOCKS5 is off by default, as in ztunnel; the embedded default (npm start with no snapshot
  // given) is the demo, whose only way in is SOCKS5, so it is on there unless the variable says
  // otherwise (an explicit false wins). In-pod mode gets no such default: its pods have :15001.
  const inpodEnabled = r.read('INPOD_ENABLED', parseBool, false);
  const socks5Enabled = r.read('UNSTABLE_ENABLE_SOCKS5', parseBool, xds.kind === 'embedded' && !inpodEnabled);
  const socks5Addr = r.read('ZTUNNEL_SOCKS5_ADDR', (s) => parseListenAddr(s, true), { host: '127.0.0.1', port: SOCKS5_PORT });

  const graceSecs = r.optional('TERMINATION_GRACE_PERIOD_SECONDS', integerParser(0, Math.floor(MAX_TIMER_MS / 1000), 'a whole number of seconds'));
  const explicitDeadline = r.optional('CONNECTION_TERMINATION_DEADLINE', durationParser(0, MAX_TIMER_MS));
  const terminationDeadlineMs =
    explicitDeadline ?? (graceSecs !== undefined ? deadlineFromGracePeriod(graceSecs) : DEFAULT_TERMINATION_DEADLINE_MS);

  // RUST_LOG is what ztunnel's chart sets; both are validated, RUST_LOG wins when present
  const logLevel = r.read<LogFilter>('LOG_LEVEL', parseLogFilter, { level: 'info', targets: {} });
  const rustLog = r.optional('RUST_LOG', parseLogFilter);
  const filter = rustLog ?? logLevel;

  const config: Config = {
    proxyMode: inpodEnabled ? 'inpod' : 'node',
    numWorkerThreads: workers.threads,
    nodeName: r.read('NODE_NAME', parseName, DEFAULT_NODE_NAME),
    clusterId: metaClusterId ?? clusterId,
    network: r.read('NETWORK', parseName, ''),
    trustDomain: r.read('TRUST_DOMAIN', parseTrustDomain, DEFAULT_TRUST_DOMAIN),
    xds,
    localCaDir: r.read<string | null>('LOCAL_CA_DIR', parsePath, null),
    secretTtlMs: r.read('SECRET_TTL', durationParser(1, Infinity), DEFAULT_SECRET_TTL_MS),
    adminAddr: r.read('ZTUNNEL_ADMIN_ADDR', (s) => parseListenAddr(s, true), { host: '127.0.0.1', port: ADMIN_PORT }),
    statsAddr: r.read('ZTUNNEL_STATS_ADDR', (s) => parseListenAddr(s), anyAddr(ipv6Enabled, STATS_PORT)),
    readinessAddr: r.read('ZTUNNEL_READINESS_ADDR', (s) => parseListenAddr(s), anyAddr(ipv6Enabled, READINESS_PORT)),
    outboundAddr: r.read('ZTUNNEL_OUTBOUND_ADDR', (s) => parseListenAddr(s), anyAddr(ipv6Enabled, OUTBOUND_PORT)),
    socks5Addr: socks5Enabled ? socks5Addr : null,
    ipv6Enabled,
    inpodUds: r.read('INPOD_UDS', parsePath, DEFAULT_INPOD_UDS),
    packetMark: r.read('PACKET_MARK', integerParser(0, 2 ** 32 - 1), DEFAULT_PACKET_MARK),
    nativeRelay: r.read('ZTUNNEL_NATIVE_RELAY', parseBool, true),
    pool: {
      maxStreamsPerConnection: r.read('POOL_MAX_STREAMS_PER_CONNECTION', integerParser(1, 65535), DEFAULT_POOL_MAX_STREAMS),
      unusedReleaseTimeoutMs: r.read('POOL_UNUSED_RELEASE_TIMEOUT', durationParser(0, MAX_TIMER_MS), DEFAULT_POOL_UNUSED_RELEASE_MS),
    },
    http2: {
      streamWindowSize: r.read('HTTP2_STREAM_WINDOW_SIZE', integerParser(1, MAX_WINDOW, 'a size in bytes'), 4 * MiB),
      connectionWindowSize: r.read('HTTP2_CONNECTION_WINDOW_SIZE', integerParser(65535, MAX_WINDOW, 'a size in bytes'), 16 * MiB),
      frameSize: r.read('HTTP2_FRAME_SIZE', integerParser(16384, 16777215, 'a size in bytes'), 1 * MiB),
    },
    keepalive: {
      enabled: r.read('KEEPALIVE_ENABLED', parseBool, true),
      timeMs: r.read('KEEPALIVE_TIME', durationParser(1000, MAX_KEEPALIVE_MS), DEFAULT_KEEPALIVE_MS),
      intervalMs: r.read('KEEPALIVE_INTERVAL', durationParser(1000, MAX_KEEPALIVE_MS), DEFAULT_KEEPALIVE_MS),
      retries: r.read('KEEPALIVE_RETRIES', integerParser(1, 127), DEFAULT_KEEPALIVE_RETRIES),
    },
    terminationDeadlineMs,
    // the counter is an Int32 shared by every worker (src/net/conn-limit.ts)
    maxConnections: r.read<number | null>('ZTUNNEL_MAX_CONNECTIONS', integerParser(1, 2 ** 31 - 1, 'a whole number of connections'), null),
    handshakeTimeoutMs: r.read('ZTUNNEL_HANDSHAKE_TIMEOUT', durationParser(1, MAX_TIMER_MS), DEFAULT_HANDSHAKE_TIMEOUT_MS),
    log: {
      format: r.read('LOG_FORMAT', oneOf(['plain', 'json'] as const), 'plain'),
      level: filter.level,
      targets: { ...filter.targets },
    },
  };

  const issues = [...workers.issues, ...r.issues];
  if (issues.length > 0) throw new ConfigError(issues);
  return deepFreeze(config);
}
