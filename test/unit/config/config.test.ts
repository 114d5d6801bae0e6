import t from 'tap';
import { type Config, ConfigError, parseConfig } from '../../../src/config/config';
import { ENV_VARS } from '../../../src/config/env-table';

type Env = Record<string, string>;
const FACTS = { logicalCpus: 2 };

function issuesOf(env: Env): ConfigError['issues'] {
  try {
    parseConfig(env, FACTS);
  } catch (err) {
    if (err instanceof ConfigError) return err.issues;
    throw err;
  }
  throw new Error(`no ConfigError for ${JSON.stringify(env)}`);
}

t.test('defaults are ztunnel defaults (and ours where ztunnel has none)', async (t) => {
  const want: Config = {
    proxyMode: 'node',
    numWorkerThreads: 2,
    nodeName: 'local',
    clusterId: 'Kubernetes',
    network: '',
    trustDomain: 'cluster.local',
    xds: { kind: 'embedded' },
    localCaDir: null,
    secretTtlMs: 24 * 3600 * 1000,
    adminAddr: { host: '127.0.0.1', port: 15000 },
    statsAddr: { host: '::', port: 15020 },
    readinessAddr: { host: '::', port: 15021 },
    outboundAddr: { host: '::', port: 15001 },
    // the embedded default is the demo: SOCKS5 is its way in (see the SOCKS5 table below)
    socks5Addr: { host: '127.0.0.1', port: 15080 },
    ipv6Enabled: true,
    inpodUds: '/var/run/ztunnel/ztunnel.sock',
    packetMark: 1337,
    nativeRelay: true,
    pool: { maxStreamsPerConnection: 100, unusedReleaseTimeoutMs: 300_000 },
    http2: { streamWindowSize: 4 * 1024 * 1024, connectionWindowSize: 16 * 1024 * 1024, frameSize: 1024 * 1024 },
    keepalive: { enabled: true, timeMs: 180_000, intervalMs: 180_000, retries: 9 },
    terminationDeadlineMs: 5_000,
    maxConnections: null,
    handshakeTimeoutMs: 10_000,
    log: { format: 'plain', level: 'info', targets: {} },
  };
  t.strictSame(parseConfig({}, FACTS), want);
});

// [env, what to look at, expected value]
type Good = [Env, (c: Config) => unknown, unknown];
const good: Good[] = [
  [{ LOCAL_XDS_PATH: '/etc/ztunnel/snapshot.yaml' }, (c) => c.xds, { kind: 'path', path: '/etc/ztunnel/snapshot.yaml' }],
  [{ LOCAL_XDS: 'workloads: []\n' }, (c) => c.xds, { kind: 'inline', text: 'workloads: []\n' }],
  [{ LOCAL_XDS: '', LOCAL_XDS_PATH: '/s.json' }, (c) => c.xds, { kind: 'path', path: '/s.json' }],
  [{ NODE_NAME: 'worker-1' }, (c) => c.nodeName, 'worker-1'],
  [{ NODE_NAME: '' }, (c) => c.nodeName, 'local'],
  [{ CLUSTER_ID: 'east' }, (c) => c.clusterId, 'east'],
  [{ NETWORK: 'net1' }, (c) => c.network, 'net1'],
  [{ NETWORK: '' }, (c) => c.network, ''],
  [{ ISTIO_META_CLUSTER_ID: 'meta' }, (c) => c.clusterId, 'meta'],
  [{ ISTIO_META_CLUSTER_ID: 'meta', CLUSTER_ID: 'east' }, (c) => c.clusterId, 'meta'],
  [{ TRUST_DOMAIN: 'example.org' }, (c) => c.trustDomain, 'example.org'],
  [{ LOCAL_CA_DIR: '/etc/cacerts' }, (c) => c.localCaDir, '/etc/cacerts'],
  [{ SECRET_TTL: '1h' }, (c) => c.secretTtlMs, 3_600_000],
  [{ SECRET_TTL: '90h' }, (c) => c.secretTtlMs, 324_000_000],
  // a bare number is seconds, as ztunnel's duration_str reads it
  [{ SECRET_TTL: '3600' }, (c) => c.secretTtlMs, 3_600_000],
  [{ ZTUNNEL_WORKER_THREADS: '3' }, (c) => c.numWorkerThreads, 3],
  [{ ZTUNNEL_WORKER_THREADS: '0' }, (c) => c.numWorkerThreads, 2],
  [{ ZTUNNEL_CPU_LIMIT: '32' }, (c) => c.numWorkerThreads, 8],
  [{ ZTUNNEL_RESOURCE_CPU_LIMIT: '2500m' }, (c) => c.numWorkerThreads, 3],
  [{ ZTUNNEL_RESOURCE_CPU_REQUEST: '3' }, (c) => c.numWorkerThreads, 3],
  [{ ZTUNNEL_ADMIN_ADDR: '127.0.0.9:0' }, (c) => c.adminAddr, { host: '127.0.0.9', port: 0 }],
  [{ ZTUNNEL_ADMIN_ADDR: '[::1]:15000' }, (c) => c.adminAddr, { host: '::1', port: 15000 }],
  [{ ZTUNNEL_STATS_ADDR: '0.0.0.0:9090' }, (c) => c.statsAddr, { host: '0.0.0.0', port: 9090 }],
  [{ ZTUNNEL_READINESS_ADDR: '10.1.2.3:15021' }, (c) => c.readinessAddr, { host: '10.1.2.3', port: 15021 }],
  [{ ZTUNNEL_OUTBOUND_ADDR: '[::]:0' }, (c) => c.outboundAddr, { host: '::', port: 0 }],
  [{ UNSTABLE_ENABLE_SOCKS5: 'true' }, (c) => c.socks5Addr, { host: '127.0.0.1', port: 15080 }],
  [{ UNSTABLE_ENABLE_SOCKS5: '1', ZTUNNEL_SOCKS5_ADDR: '127.0.0.2:0' }, (c) => c.socks5Addr, { host: '127.0.0.2', port: 0 }],
  [{ UNSTABLE_ENABLE_SOCKS5: 'false', ZTUNNEL_SOCKS5_ADDR: '127.0.0.2:0' }, (c) => c.socks5Addr, null],
  [{ IPV6_ENABLED: 'false' }, (c) => [c.ipv6Enabled, c.statsAddr.host, c.readinessAddr.host, c.outboundAddr.host], [false, '0.0.0.0', '0.0.0.0', '0.0.0.0']],
  [{ IPV6_ENABLED: 'false' }, (c) => c.adminAddr, { host: '127.0.0.1', port: 15000 }],
  [{ INPOD_ENABLED: 'true' }, (c) => c.proxyMode, 'inpod'],
  [{ INPOD_ENABLED: 'False' }, (c) => c.proxyMode, 'node'],
  [{ INPOD_UDS: '/run/z.sock' }, (c) => c.inpodUds, '/run/z.sock'],
  [{ PACKET_MARK: '0' }, (c) => c.packetMark, 0],
  [{ PACKET_MARK: '4294967295' }, (c) => c.packetMark, 4294967295],
  [{ ZTUNNEL_NATIVE_RELAY: 'false' }, (c) => c.nativeRelay, false],
  [{ ZTUNNEL_NATIVE_RELAY: '0' }, (c) => c.nativeRelay, false],
  [{ POOL_MAX_STREAMS_PER_CONNECTION: '1' }, (c) => c.pool.maxStreamsPerConnection, 1],
  [{ POOL_MAX_STREAMS_PER_CONNECTION: '65535' }, (c) => c.pool.maxStreamsPerConnection, 65535],
  [{ POOL_UNUSED_RELEASE_TIMEOUT: '30s' }, (c) => c.pool.unusedReleaseTimeoutMs, 30_000],
  [{ POOL_UNUSED_RELEASE_TIMEOUT: '0s' }, (c) => c.pool.unusedReleaseTimeoutMs, 0],
  [{ POOL_UNUSED_RELEASE_TIMEOUT: '1.5' }, (c) => c.pool.unusedReleaseTimeoutMs, 1_500],
  [{ HTTP2_STREAM_WINDOW_SIZE: '65535' }, (c) => c.http2.streamWindowSize, 65535],
  [{ HTTP2_STREAM_WINDOW_SIZE: '2147483647' }, (c) => c.http2.streamWindowSize, 2147483647],
  [{ HTTP2_CONNECTION_WINDOW_SIZE: '65535' }, (c) => c.http2.connectionWindowSize, 65535],
  [{ HTTP2_CONNECTION_WINDOW_SIZE: '2147483647' }, (c) => c.http2.connectionWindowSize, 2147483647],
  [{ HTTP2_FRAME_SIZE: '16384' }, (c) => c.http2.frameSize, 16384],
  [{ HTTP2_FRAME_SIZE: '16777215' }, (c) => c.http2.frameSize, 16777215],
  [{ KEEPALIVE_ENABLED: 'FALSE' }, (c) => c.keepalive.enabled, false],
  [{ KEEPALIVE_TIME: '10s' }, (c) => c.keepalive.timeMs, 10_000],
  [{ KEEPALIVE_INTERVAL: '1m' }, (c) => c.keepalive.intervalMs, 60_000],
  [{ KEEPALIVE_RETRIES: '127' }, (c) => c.keepalive.retries, 127],
  [{ CONNECTION_TERMINATION_DEADLINE: '30s' }, (c) => c.terminationDeadlineMs, 30_000],
  [{ CONNECTION_TERMINATION_DEADLINE: '0s' }, (c) => c.terminationDeadlineMs, 0],
  [{ CONNECTION_TERMINATION_DEADLINE: '30' }, (c) => c.terminationDeadlineMs, 30_000],
  [{ CONNECTION_TERMINATION_DEADLINE: '0' }, (c) => c.terminationDeadlineMs, 0],
  [{ ZTUNNEL_MAX_CONNECTIONS: '1' }, (c) => c.maxConnections, 1],
  [{ ZTUNNEL_MAX_CONNECTIONS: '100000' }, (c) => c.maxConnections, 100_000],
  [{ ZTUNNEL_HANDSHAKE_TIMEOUT: '250ms' }, (c) => c.handshakeTimeoutMs, 250],
  [{ ZTUNNEL_HANDSHAKE_TIMEOUT: '1m' }, (c) => c.handshakeTimeoutMs, 60_000],
  [{ ZTUNNEL_HANDSHAKE_TIMEOUT: '10' }, (c) => c.handshakeTimeoutMs, 10_000],
  [{ KEEPALIVE_TIME: '60' }, (c) => c.keepalive.timeMs, 60_000],
  [{ LOG_LEVEL: 'debug' }, (c) => c.log, { format: 'plain', level: 'debug', targets: {} }],
  [{ RUST_LOG: 'info,access=debug' }, (c) => c.log, { format: 'plain', level: 'info', targets: { access: 'debug' } }],
  [{ RUST_LOG: 'warn', LOG_LEVEL: 'trace' }, (c) => c.log.level, 'warn'],
  [{ LOG_FORMAT: 'json' }, (c) => c.log.format, 'json'],
  [{ LOG_FORMAT: 'JSON' }, (c) => c.log.format, 'json'],
];

t.test('good values of every variable', async (t) => {
  for (const [env, get, want] of good) t.strictSame(get(parseConfig(env, FACTS)), want, JSON.stringify(env));
});

t.test('termination deadline: ztunnel rules', async (t) => {
  // explicit deadline wins; else from grace seconds: secs-5 if > 10, else secs-1, at least 1 s
  const cases: [Env, number][] = [
    [{}, 5_000],
    [{ TERMINATION_GRACE_PERIOD_SECONDS: '30' }, 25_000],
    [{ TERMINATION_GRACE_PERIOD_SECONDS: '11' }, 6_000],
    [{ TERMINATION_GRACE_PERIOD_SECONDS: '10' }, 9_000],
    [{ TERMINATION_GRACE_PERIOD_SECONDS: '5' }, 4_000],
    [{ TERMINATION_GRACE_PERIOD_SECONDS: '2' }, 1_000],
    [{ TERMINATION_GRACE_PERIOD_SECONDS: '1' }, 1_000],
    [{ TERMINATION_GRACE_PERIOD_SECONDS: '0' }, 1_000],
    [{ CONNECTION_TERMINATION_DEADLINE: '2s', TERMINATION_GRACE_PERIOD_SECONDS: '30' }, 2_000],
    [{ CONNECTION_TERMINATION_DEADLINE: '1m30s' }, 90_000],
    [{ CONNECTION_TERMINATION_DEADLINE: '', TERMINATION_GRACE_PERIOD_SECONDS: '60' }, 55_000],
  ];
  for (const [env, ms] of cases) t.equal(parseConfig(env, FACTS).terminationDeadlineMs, ms, JSON.stringify(env));
});

// [env, the variable blamed, what the issue says is expected]
type Bad = [Env, string, RegExp];
const bad: Bad[] = [
  [{ LOCAL_XDS_PATH: '/a', LOCAL_XDS: 'workloads: []' }, 'LOCAL_XDS', /unset while LOCAL_XDS_PATH is set/],
  [{ LOCAL_XDS_PATH: 'a\u0000b' }, 'LOCAL_XDS_PATH', /path/],
  [{ NODE_NAME: 'node\n1' }, 'NODE_NAME', /control characters/],
  [{ CLUSTER_ID: 'a\tb' }, 'CLUSTER_ID', /control characters/],
  [{ NETWORK: 'net\n1' }, 'NETWORK', /control characters/],
  [{ ISTIO_META_CLUSTER_ID: '\u0007' }, 'ISTIO_META_CLUSTER_ID', /control characters/],
  [{ TRUST_DOMAIN: 'Cluster.Local' }, 'TRUST_DOMAIN', /trust domain/],
  [{ LOCAL_CA_DIR: '\u0000' }, 'LOCAL_CA_DIR', /path/],
  [{ SECRET_TTL: '-24' }, 'SECRET_TTL', /a duration like/],
  [{ SECRET_TTL: '0' }, 'SECRET_TTL', /at least 1ms/],
  [{ SECRET_TTL: '0s' }, 'SECRET_TTL', /at least 1ms/],
  [{ ZTUNNEL_WORKER_THREADS: 'abc' }, 'ZTUNNEL_WORKER_THREADS', /^a count, 0, or a percent like 25%$/],
  [{ ZTUNNEL_WORKER_THREADS: '150%' }, 'ZTUNNEL_WORKER_THREADS', /at most 100%/],
  [{ ZTUNNEL_CPU_LIMIT: 'four' }, 'ZTUNNEL_CPU_LIMIT', /whole number of CPUs/],
  [{ ZTUNNEL_RESOURCE_CPU_LIMIT: '0m' }, 'ZTUNNEL_RESOURCE_CPU_LIMIT', /CPU quantity/],
  [{ ZTUNNEL_RESOURCE_CPU_REQUEST: '1 core' }, 'ZTUNNEL_RESOURCE_CPU_REQUEST', /CPU quantity/],
  [{ ZTUNNEL_ADMIN_ADDR: '0.0.0.0:15000' }, 'ZTUNNEL_ADMIN_ADDR', /loopback/],
  [{ ZTUNNEL_ADMIN_ADDR: '15000' }, 'ZTUNNEL_ADMIN_ADDR', /loopback/],
  [{ ZTUNNEL_STATS_ADDR: 'localhost:15020' }, 'ZTUNNEL_STATS_ADDR', /IP address/],
  [{ ZTUNNEL_STATS_ADDR: '::15020' }, 'ZTUNNEL_STATS_ADDR', /IP address/],
  [{ ZTUNNEL_READINESS_ADDR: '0.0.0.0:70000' }, 'ZTUNNEL_READINESS_ADDR', /host:port/],
  [{ ZTUNNEL_OUTBOUND_ADDR: ':15001' }, 'ZTUNNEL_OUTBOUND_ADDR', /host:port/],
  [{ ZTUNNEL_SOCKS5_ADDR: '0.0.0.0:15080' }, 'ZTUNNEL_SOCKS5_ADDR', /loopback/],
  // a bad address is reported even while SOCKS5 is off: it would bite the day someone turns it on
  [{ UNSTABLE_ENABLE_SOCKS5: 'false', ZTUNNEL_SOCKS5_ADDR: 'nope' }, 'ZTUNNEL_SOCKS5_ADDR', /loopback/],
  [{ UNSTABLE_ENABLE_SOCKS5: 'yes' }, 'UNSTABLE_ENABLE_SOCKS5', /true or false/],
  [{ IPV6_ENABLED: 'no' }, 'IPV6_ENABLED', /true or false/],
  [{ INPOD_ENABLED: 'enabled' }, 'INPOD_ENABLED', /true or false/],
  [{ INPOD_UDS: '/x\u0000' }, 'INPOD_UDS', /path/],
  [{ PACKET_MARK: '0x539' }, 'PACKET_MARK', /from 0 to 4294967295/],
  [{ PACKET_MARK: '4294967296' }, 'PACKET_MARK', /from 0 to 4294967295/],
  [{ ZTUNNEL_NATIVE_RELAY: 'maybe' }, 'ZTUNNEL_NATIVE_RELAY', /true or false/],
  [{ POOL_MAX_STREAMS_PER_CONNECTION: '0' }, 'POOL_MAX_STREAMS_PER_CONNECTION', /from 1 to 65535/],
  [{ POOL_MAX_STREAMS_PER_CONNECTION: '65536' }, 'POOL_MAX_STREAMS_PER_CONNECTION', /from 1 to 65535/],
  [{ POOL_UNUSED_RELEASE_TIMEOUT: '5 parsecs' }, 'POOL_UNUSED_RELEASE_TIMEOUT', /unknown unit "parsecs"/],
  [{ POOL_UNUSED_RELEASE_TIMEOUT: '30d' }, 'POOL_UNUSED_RELEASE_TIMEOUT', /at most 596h31m23s647ms/],
  [{ HTTP2_STREAM_WINDOW_SIZE: '0' }, 'HTTP2_STREAM_WINDOW_SIZE', /size in bytes from 1 to 2147483647/],
  [{ HTTP2_STREAM_WINDOW_SIZE: '2147483648' }, 'HTTP2_STREAM_WINDOW_SIZE', /from 1 to 2147483647/],
  [{ HTTP2_STREAM_WINDOW_SIZE: '4MiB' }, 'HTTP2_STREAM_WINDOW_SIZE', /size in bytes/],
  [{ HTTP2_CONNECTION_WINDOW_SIZE: '65534' }, 'HTTP2_CONNECTION_WINDOW_SIZE', /from 65535 to 2147483647/],
  [{ HTTP2_CONNECTION_WINDOW_SIZE: '2147483648' }, 'HTTP2_CONNECTION_WINDOW_SIZE', /from 65535 to 2147483647/],
  [{ HTTP2_FRAME_SIZE: '16383' }, 'HTTP2_FRAME_SIZE', /from 16384 to 16777215/],
  [{ HTTP2_FRAME_SIZE: '16777216' }, 'HTTP2_FRAME_SIZE', /from 16384 to 16777215/],
  [{ KEEPALIVE_ENABLED: 'on' }, 'KEEPALIVE_ENABLED', /true or false/],
  [{ KEEPALIVE_TIME: '500ms' }, 'KEEPALIVE_TIME', /from 1s to 9h6m7s/],
  [{ KEEPALIVE_TIME: '10h' }, 'KEEPALIVE_TIME', /from 1s to 9h6m7s/],
  [{ KEEPALIVE_INTERVAL: 'soon' }, 'KEEPALIVE_INTERVAL', /a duration like/],
  [{ KEEPALIVE_RETRIES: '0' }, 'KEEPALIVE_RETRIES', /from 1 to 127/],
  [{ KEEPALIVE_RETRIES: '128' }, 'KEEPALIVE_RETRIES', /from 1 to 127/],
  [{ CONNECTION_TERMINATION_DEADLINE: '2592000' }, 'CONNECTION_TERMINATION_DEADLINE', /at most 596h31m23s647ms/],
  [{ CONNECTION_TERMINATION_DEADLINE: '-1s' }, 'CONNECTION_TERMINATION_DEADLINE', /a duration like/],
  [{ TERMINATION_GRACE_PERIOD_SECONDS: '30s' }, 'TERMINATION_GRACE_PERIOD_SECONDS', /whole number of seconds/],
  [{ TERMINATION_GRACE_PERIOD_SECONDS: '-1' }, 'TERMINATION_GRACE_PERIOD_SECONDS', /whole number of seconds/],
  // the grace period is validated even when an explicit deadline makes it unused
  [{ CONNECTION_TERMINATION_DEADLINE: '5s', TERMINATION_GRACE_PERIOD_SECONDS: 'x' }, 'TERMINATION_GRACE_PERIOD_SECONDS', /whole number/],
  [{ ZTUNNEL_MAX_CONNECTIONS: '0' }, 'ZTUNNEL_MAX_CONNECTIONS', /whole number of connections from 1 to 2147483647/],
  [{ ZTUNNEL_MAX_CONNECTIONS: '1k' }, 'ZTUNNEL_MAX_CONNECTIONS', /whole number of connections/],
  [{ ZTUNNEL_MAX_CONNECTIONS: '2147483648' }, 'ZTUNNEL_MAX_CONNECTIONS', /from 1 to 2147483647/],
  [{ ZTUNNEL_HANDSHAKE_TIMEOUT: '10.' }, 'ZTUNNEL_HANDSHAKE_TIMEOUT', /a duration like/],
  [{ ZTUNNEL_HANDSHAKE_TIMEOUT: '0s' }, 'ZTUNNEL_HANDSHAKE_TIMEOUT', /from 1ms to 596h31m23s647ms/],
  [{ ZTUNNEL_HANDSHAKE_TIMEOUT: '30d' }, 'ZTUNNEL_HANDSHAKE_TIMEOUT', /from 1ms to/],
  [{ LOG_LEVEL: 'verbose' }, 'LOG_LEVEL', /"verbose" is not a level/],
  // LOG_LEVEL is validated even when RUST_LOG wins
  [{ RUST_LOG: 'info', LOG_LEVEL: 'loud' }, 'LOG_LEVEL', /not a level/],
  [{ RUST_LOG: 'info,access=chatty' }, 'RUST_LOG', /"access=chatty" is not target=level/],
  [{ LOG_FORMAT: 'text' }, 'LOG_FORMAT', /one of plain, json/],
];

t.test('bad values of every variable: one issue naming the variable, value and expectation', async (t) => {
  for (const [env, variable, expected] of bad) {
    const issues = issuesOf(env);
    t.equal(issues.length, 1, `${JSON.stringify(env)}: exactly one issue`);
    t.equal(issues[0]?.variable, variable, JSON.stringify(env));
    t.equal(issues[0]?.value, env[variable]);
    t.match(issues[0]?.expected, expected, JSON.stringify(env));
  }
});

t.test('the tables cover every variable in ENV_VARS with a good and a bad form', async (t) => {
  const goodNames = new Set(good.flatMap(([env]) => Object.keys(env)));
  const badNames = new Set(bad.map(([, variable]) => variable));
  for (const { name } of ENV_VARS) {
    // TERMINATION_GRACE_PERIOD_SECONDS' good forms are in the termination-deadline table
    t.ok(goodNames.has(name) || name === 'TERMINATION_GRACE_PERIOD_SECONDS', `${name} has a good case`);
    t.ok(badNames.has(name), `${name} has a bad case`);
  }
});

// SOCKS5 on/off: [env, expected socks5Addr]. ztunnel's default is off; the embedded default (no
// LOCAL_XDS_PATH/LOCAL_XDS, node mode) is the demo and turns it on; an explicit value always wins.
const FILE = { LOCAL_XDS_PATH: '/s.yaml' };
const socks5Rows: [string, Env, { host: string; port: number } | null][] = [
  ['embedded default', {}, { host: '127.0.0.1', port: 15080 }],
  ['embedded default, explicit false wins', { UNSTABLE_ENABLE_SOCKS5: 'false' }, null],
  ['embedded default, explicit 0 wins', { UNSTABLE_ENABLE_SOCKS5: '0' }, null],
  ['embedded default, empty value = unset', { UNSTABLE_ENABLE_SOCKS5: '' }, { host: '127.0.0.1', port: 15080 }],
  ['embedded default, explicit true', { UNSTABLE_ENABLE_SOCKS5: 'true' }, { host: '127.0.0.1', port: 15080 }],
  ['embedded default, own address', { ZTUNNEL_SOCKS5_ADDR: '127.0.0.3:0' }, { host: '127.0.0.3', port: 0 }],
  ['embedded default, INPOD_ENABLED=false is node mode', { INPOD_ENABLED: 'false' }, { host: '127.0.0.1', port: 15080 }],
  ['embedded default in in-pod mode: off', { INPOD_ENABLED: 'true' }, null],
  ['in-pod mode, explicit true', { INPOD_ENABLED: 'true', UNSTABLE_ENABLE_SOCKS5: 'true' }, { host: '127.0.0.1', port: 15080 }],
  ['snapshot file: off', FILE, null],
  ['snapshot file, explicit true', { ...FILE, UNSTABLE_ENABLE_SOCKS5: 'true' }, { host: '127.0.0.1', port: 15080 }],
  ['inline snapshot: off', { LOCAL_XDS: 'workloads: []\n' }, null],
];

t.test('UNSTABLE_ENABLE_SOCKS5: off by default, on for the embedded default unless set', async (t) => {
  for (const [name, env, want] of socks5Rows) t.same(parseConfig(env, FACTS).socks5Addr, want, name);
});

t.test('every bad variable is reported at once, one line each', async (t) => {
  const env = { ZTUNNEL_WORKER_THREADS: 'abc', SECRET_TTL: '10x', LOG_FORMAT: 'xml', NODE_NAME: 'fine', UNRELATED: '???' };
  const err = t.throws(() => parseConfig(env, FACTS)) as unknown;
  t.ok(err instanceof ConfigError);
  const e = err as ConfigError;
  t.equal(e.code, 'ERR_CONFIG');
  t.same(e.issues.map((i) => i.variable).sort(), ['LOG_FORMAT', 'SECRET_TTL', 'ZTUNNEL_WORKER_THREADS']);
  const lines = e.message.split('\n');
  t.equal(lines.length, 4, 'a header and three issue lines');
  t.match(lines[0], /3 problems/);
  t.ok(lines.includes('ZTUNNEL_WORKER_THREADS="abc": expected a count, 0, or a percent like 25%'), 'the worker-threads line');
  t.ok(lines.some((l) => l.startsWith('SECRET_TTL="10x": expected a duration like')), 'the TTL line');
  t.ok(lines.includes('LOG_FORMAT="xml": expected one of plain, json'), 'the format line');
});

t.test('a long inline value is shortened in the message but kept whole in the issue', async (t) => {
  const text = `workloads:\n${'  - name: w\n'.repeat(100)}`;
  const err = t.throws(() => parseConfig({ LOCAL_XDS: text, LOCAL_XDS_PATH: '/x' }, FACTS)) as ConfigError;
  t.equal(err.issues[0]?.value, text);
  t.ok(err.message.length < 400, 'message stays short');
  t.match(err.message, /LOCAL_XDS="workloads:\\n.*\.\.\."/);
});

t.test('the returned Config is deeply frozen and survives structuredClone', async (t) => {
  const env = {
    LOCAL_XDS: 'services: []',
    RUST_LOG: 'debug,access=trace,proxy=warn',
    UNSTABLE_ENABLE_SOCKS5: 'true',
    LOCAL_CA_DIR: '/ca',
  };
  const c = parseConfig(env, FACTS);
  const seen: string[] = [];
  const walk = (v: unknown, path: string): void => {
    if (v === null || typeof v !== 'object') return;
    t.ok(Object.isFrozen(v), `${path} is frozen`);
    seen.push(path);
    for (const [k, child] of Object.entries(v)) walk(child, `${path}.${k}`);
  };
  walk(c, 'config');
  t.ok(seen.includes('config.log.targets') && seen.includes('config.socks5Addr') && seen.includes('config.xds'), 'nested objects visited');
  t.throws(() => {
    (c.pool as { maxStreamsPerConnection: number }).maxStreamsPerConnection = 1;
  }, TypeError);
  const clone = structuredClone(c);
  t.strictSame(clone, c);
  t.equal(JSON.stringify(clone), JSON.stringify(c), 'same keys in the same order');
  t.not(clone, c);
});

t.test('parseConfig reads exactly the variables in ENV_VARS, and only from the env it is given', async (t) => {
  const read = new Set<string>();
  const env = new Proxy({} as Env, {
    get(target, key) {
      if (typeof key === 'string') read.add(key);
      return Reflect.get(target, key);
    },
  });
  parseConfig(env, FACTS);
  t.same([...read].sort(), ENV_VARS.map((v) => v.name).sort());

  const saved = process.env.ZTUNNEL_WORKER_THREADS;
  process.env.ZTUNNEL_WORKER_THREADS = 'not-a-number';
  try {
    t.equal(parseConfig({}, FACTS).numWorkerThreads, 2, 'process.env is not consulted');
  } finally {
    if (saved === undefined) delete process.env.ZTUNNEL_WORKER_THREADS;
    else process.env.ZTUNNEL_WORKER_THREADS = saved;
  }
});

t.test('unknown variables are ignored', async (t) => {
  const env = { PATH: '/usr/bin', HOME: '/root', ZTUNNEL_UNKNOWN: 'x', KUBERNETES_SERVICE_HOST: '10.0.0.1', LOG_LEVELS: 'nonsense' };
  t.strictSame(parseConfig(env, FACTS), parseConfig({}, FACTS));
});

t.test('setting every variable to its documented literal default changes nothing', async (t) => {
  const literal = ENV_VARS.filter((v) => !v.default.startsWith('('));
  t.ok(literal.length > 20, 'most variables have a literal default');
  const env = Object.fromEntries(literal.map((v) => [v.name, v.default]));
  t.strictSame(parseConfig(env, FACTS), parseConfig({}, FACTS));
  for (const v of literal) t.strictSame(parseConfig({ [v.name]: v.default }, FACTS), parseConfig({}, FACTS), v.name);
});

t.test('a bad facts value is a programming error, not a config issue', async (t) => {
  t.throws(() => parseConfig({}, { logicalCpus: 0 }), RangeError);
});
