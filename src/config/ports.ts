/**
 * The fixed ports of the proxy (ZTUNNEL-FACTS "Ports"). The per-pod ports are not configurable in
 * ztunnel: istio-cni's iptables rules in every pod redirect to exactly these numbers.
 */

/** Outbound capture: app traffic is redirected here; original destination from SO_ORIGINAL_DST. */
export const OUTBOUND_PORT = 15001;
/** Inbound plaintext capture (non-HBONE TCP to a pod). */
export const INBOUND_PLAINTEXT_PORT = 15006;
/** Inbound HBONE: mTLS + HTTP/2 CONNECT. */
export const INBOUND_HBONE_PORT = 15008;
/** SOCKS5 outbound, 127.0.0.1 only, opt-in (UNSTABLE_ENABLE_SOCKS5). */
export const SOCKS5_PORT = 15080;

/** Node-level defaults (each overridable by its ZTUNNEL_*_ADDR variable). */
export const ADMIN_PORT = 15000;
export const STATS_PORT = 15020;
export const READINESS_PORT = 15021;

/**
 * Ports a connection may not target on loopback: a connection to one of them would be the proxy
 * calling itself (ztunnel's "illegal ports"; SOCKS5's port joins them when SOCKS5 is enabled).
 */
export const SELF_PORTS: readonly number[] = Object.freeze([OUTBOUND_PORT, INBOUND_PLAINTEXT_PORT, INBOUND_HBONE_PORT]);
