/**
 * The one table of environment variables ztunnel-ts reads. parseConfig reads exactly these names
 * (a test records its reads to hold both sides to it) and the README renders these rows.
 *
 * `default` is either the literal value used when the variable is unset or empty (setting it to
 * that text changes nothing; a test checks this), or, in parentheses, a description of what
 * happens when it is unset.
 */
export interface EnvVar {
  readonly name: string;
  readonly default: string;
  readonly meaning: string;
}

const rows: EnvVar[] = [
  // snapshot and identity of this node
  { name: 'LOCAL_XDS_PATH', default: '(unset)', meaning: 'Workloads/services/policies snapshot file (YAML or JSON). Not with LOCAL_XDS.' },
  { name: 'LOCAL_XDS', default: '(unset)', meaning: 'The snapshot inline, as YAML or JSON text. Not with LOCAL_XDS_PATH. With neither, the bundled example snapshot runs.' },
  { name: 'NODE_NAME', default: 'local', meaning: 'Name of this node; the proxy serves the snapshot workloads whose `node` is this name (the bundled example uses `local`).' },
  { name: 'NETWORK', default: '(unset: the default network)', meaning: "The network this node is on (ztunnel's NETWORK): the proxy looks up the workloads it serves, and the sources and destinations of its connections, by IP in this network." },
  { name: 'CLUSTER_ID', default: 'Kubernetes', meaning: 'Cluster name, reported in metrics and baggage.' },
  { name: 'ISTIO_META_CLUSTER_ID', default: '(unset)', meaning: 'Overrides CLUSTER_ID when set (as in ztunnel).' },
  { name: 'TRUST_DOMAIN', default: 'cluster.local', meaning: 'SPIFFE trust domain of workload identities; peers from other trust domains are refused.' },
  { name: 'LOCAL_CA_DIR', default: '(unset: in-memory CA)', meaning: 'Folder with Istio plug-in CA files (ca-cert.pem, ca-key.pem, root-cert.pem, cert-chain.pem) that signs workload certificates.' },
  { name: 'SECRET_TTL', default: '24h', meaning: 'Lifetime of issued workload certificates; they are renewed at half-life.' },
  // threads
  { name: 'ZTUNNEL_WORKER_THREADS', default: '(computed)', meaning: 'Proxy worker threads: N, 0 = all CPUs, or N% of CPUs (0 < N <= 100). Unset: max(limit, request) with ZTUNNEL_RESOURCE_CPU_LIMIT, else max(25% of CPUs, request, 2).' },
  { name: 'ZTUNNEL_CPU_LIMIT', default: '(unset: logical cores)', meaning: 'CPU count (a whole number) that ZTUNNEL_WORKER_THREADS percentages and the default are based on.' },
  { name: 'ZTUNNEL_RESOURCE_CPU_LIMIT', default: '(unset)', meaning: 'The pod CPU limit as a Kubernetes quantity (2, 1.5, 500m); its ceiling is the CPU count and it sets the default thread count. Wins over ZTUNNEL_CPU_LIMIT.' },
  { name: 'ZTUNNEL_RESOURCE_CPU_REQUEST', default: '(unset)', meaning: 'The pod CPU request as a Kubernetes quantity; the default thread count is at least its ceiling.' },
  // listeners
  { name: 'ZTUNNEL_ADMIN_ADDR', default: '127.0.0.1:15000', meaning: 'Admin listener (/config_dump, /logging, /quitquitquit); must be a loopback address.' },
  { name: 'ZTUNNEL_STATS_ADDR', default: '[::]:15020', meaning: 'Prometheus /metrics listener (0.0.0.0:15020 when IPV6_ENABLED=false). Port 0 picks a free port.' },
  { name: 'ZTUNNEL_READINESS_ADDR', default: '[::]:15021', meaning: 'Readiness /healthz/ready listener (0.0.0.0:15021 when IPV6_ENABLED=false).' },
  { name: 'ZTUNNEL_OUTBOUND_ADDR', default: '[::]:15001', meaning: 'Accepted and validated for compatibility, but not used yet: node mode has no capture listener (SOCKS5 is its outbound entry), and in-pod listeners always use 15001/15006/15008 inside each pod.' },
  { name: 'ZTUNNEL_SOCKS5_ADDR', default: '127.0.0.1:15080', meaning: 'SOCKS5 listener when UNSTABLE_ENABLE_SOCKS5 is on; must be a loopback address (no authentication).' },
  { name: 'UNSTABLE_ENABLE_SOCKS5', default: '(false; true on the embedded default)', meaning: 'Run the SOCKS5 outbound listener. Without LOCAL_XDS_PATH or LOCAL_XDS (the bundled example snapshot, node mode) it defaults to true; an explicit false still turns it off.' },
  { name: 'IPV6_ENABLED', default: 'true', meaning: 'Bind the default wildcard listeners on [::] (dual stack); false binds 0.0.0.0, for hosts without IPv6.' },
  // in-pod mode
  { name: 'INPOD_ENABLED', default: 'false', meaning: 'In-pod mode: receive pod network namespaces from istio-cni and listen inside each pod.' },
  { name: 'INPOD_UDS', default: '/var/run/ztunnel/ztunnel.sock', meaning: 'Unix socket istio-cni connects to in in-pod mode.' },
  { name: 'PACKET_MARK', default: '1337', meaning: 'SO_MARK set on sockets the proxy opens, so pod redirect rules skip its own traffic.' },
  // data path
  { name: 'ZTUNNEL_NATIVE_RELAY', default: 'true', meaning: 'Relay bytes with the native splice addon when it is available; false forces the JavaScript copy.' },
  { name: 'POOL_MAX_STREAMS_PER_CONNECTION', default: '100', meaning: 'HBONE streams per pooled HTTP/2 connection before another connection is opened (1..65535).' },
  { name: 'POOL_UNUSED_RELEASE_TIMEOUT', default: '5m', meaning: 'Close a pooled HBONE connection after it has been unused this long.' },
  { name: 'HTTP2_STREAM_WINDOW_SIZE', default: '4194304', meaning: 'HTTP/2 per-stream flow-control window in bytes (1..2147483647).' },
  { name: 'HTTP2_CONNECTION_WINDOW_SIZE', default: '16777216', meaning: 'HTTP/2 per-connection flow-control window in bytes (65535..2147483647).' },
  { name: 'HTTP2_FRAME_SIZE', default: '1048576', meaning: 'HTTP/2 maximum frame size in bytes (16384..16777215).' },
  { name: 'KEEPALIVE_ENABLED', default: 'true', meaning: 'TCP keepalive on proxied connections.' },
  { name: 'KEEPALIVE_TIME', default: '180s', meaning: 'Idle time before the first keepalive probe (1s..32767s).' },
  { name: 'KEEPALIVE_INTERVAL', default: '180s', meaning: 'Time between keepalive probes (1s..32767s).' },
  { name: 'KEEPALIVE_RETRIES', default: '9', meaning: 'Unanswered probes before the connection is dropped (1..127).' },
  { name: 'ZTUNNEL_MAX_CONNECTIONS', default: '(unset: no limit)', meaning: 'Concurrent proxied connections (accepted on HBONE :15008 and SOCKS5) of the whole process, shared by all worker threads; a connection over the limit is reset at once and a warning logged. An HBONE connection counts once, whatever its streams.' },
  { name: 'ZTUNNEL_HANDSHAKE_TIMEOUT', default: '10s', meaning: 'Deadline of the mTLS handshake of an inbound HBONE connection (:15008); a client that has not finished it by then is disconnected.' },
  // shutdown
  { name: 'CONNECTION_TERMINATION_DEADLINE', default: '5s', meaning: 'How long a drain lets live connections finish before closing them. Wins over TERMINATION_GRACE_PERIOD_SECONDS.' },
  { name: 'TERMINATION_GRACE_PERIOD_SECONDS', default: '(unset)', meaning: "The pod's terminationGracePeriodSeconds; when set (and no explicit deadline) the deadline is secs-5 if secs > 10, else secs-1, at least 1s." },
  // logging
  { name: 'LOG_LEVEL', default: 'info', meaning: 'Log filter: a level (trace, debug, info, warn, error, off) or a list like info,access=debug.' },
  { name: 'RUST_LOG', default: '(unset)', meaning: "ztunnel's log filter variable, same syntax; wins over LOG_LEVEL when set." },
  { name: 'LOG_FORMAT', default: 'plain', meaning: 'plain (human-readable) or json.' },
];

export const ENV_VARS: readonly EnvVar[] = Object.freeze(rows.map((r) => Object.freeze(r)));
