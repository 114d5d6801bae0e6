import t from 'tap';
import { parseConfig } from '../../../src/config/config';
import { toConfigDump } from '../../../src/config/dump';

const FACTS = { logicalCpus: 2 };

t.test('config dump of the defaults uses ztunnel names and shapes', async (t) => {
  const dump = toConfigDump(parseConfig({}, FACTS));
  t.strictSame(dump, {
    proxyMode: 'Shared',
    inpodEnabled: false,
    numWorkerThreads: 2,
    localNode: 'local',
    clusterId: 'Kubernetes',
    network: '',
    trustDomain: 'cluster.local',
    localXds: { kind: 'embedded' },
    localCaDir: null,
    secretTtl: { secs: 86400, nanos: 0 },
    adminAddr: '127.0.0.1:15000',
    statsAddr: '[::]:15020',
    readinessAddr: '[::]:15021',
    outboundAddr: '[::]:15001',
    socks5Addr: '127.0.0.1:15080', // on for the embedded default (config.test's SOCKS5 table)
    illegalPorts: [15001, 15006, 15008, 15080], // with SOCKS5 on, its port too
    ipv6Enabled: true,
    inpodUds: '/var/run/ztunnel/ztunnel.sock',
    packetMark: 1337,
    nativeRelay: true,
    poolMaxStreamsPerConn: 100,
    poolUnusedReleaseTimeout: { secs: 300, nanos: 0 },
    windowSize: 4194304,
    connectionWindowSize: 16777216,
    frameSize: 1048576,
    socketConfig: {
      keepaliveTime: { secs: 180, nanos: 0 },
      keepaliveInterval: { secs: 180, nanos: 0 },
      keepaliveRetries: 9,
      keepaliveEnabled: true,
    },
    selfTerminationDeadline: { secs: 5, nanos: 0 },
    maxConnections: null,
    handshakeTimeout: { secs: 10, nanos: 0 },
    logging: { format: 'plain', filter: 'info' },
  });
});

t.test('config dump reflects settings and leaves the inline snapshot out', async (t) => {
  const secret = 'workloads: [] # inline-snapshot-text';
  const c = parseConfig(
    {
      LOCAL_XDS: secret,
      INPOD_ENABLED: 'true',
      UNSTABLE_ENABLE_SOCKS5: 'true',
      CONNECTION_TERMINATION_DEADLINE: '1500ms',
      POOL_UNUSED_RELEASE_TIMEOUT: '250us',
      RUST_LOG: 'warn,proxy=debug,access=trace',
      LOG_FORMAT: 'json',
      IPV6_ENABLED: 'false',
      ZTUNNEL_MAX_CONNECTIONS: '5000',
      ZTUNNEL_HANDSHAKE_TIMEOUT: '2s',
    },
    FACTS,
  );
  const dump = toConfigDump(c);
  const text = JSON.stringify(dump);
  t.notMatch(text, /inline-snapshot-text/, 'snapshot text is not dumped');
  t.same(dump.localXds, { kind: 'inline', bytes: Buffer.byteLength(secret) });
  t.equal(dump.inpodEnabled, true);
  t.equal(dump.socks5Addr, '127.0.0.1:15080');
  t.same(dump.illegalPorts, [15001, 15006, 15008, 15080]);
  t.equal(dump.statsAddr, '0.0.0.0:15020');
  t.same(dump.selfTerminationDeadline, { secs: 1, nanos: 500_000_000 });
  t.same(dump.poolUnusedReleaseTimeout, { secs: 0, nanos: 250_000 });
  t.same(dump.logging, { format: 'json', filter: 'warn,access=trace,proxy=debug' });
  t.equal(dump.maxConnections, 5000);
  t.same(dump.handshakeTimeout, { secs: 2, nanos: 0 });
  t.same(JSON.parse(text), dump, 'JSON-serialisable as is');
  t.same(toConfigDump(parseConfig({ LOCAL_XDS_PATH: '/etc/z.yaml' }, FACTS)).localXds, { kind: 'path', path: '/etc/z.yaml' });
});
