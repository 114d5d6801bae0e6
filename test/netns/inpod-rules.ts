/**
 * The capture rules istio-cni installs in an ambient (in-pod) pod's network namespace, written
 * from the facts of istio's cni/pkg/iptables (AppendInpodRules) and its documented iptables-save
 * output: ztunnel's own sockets carry SO_MARK 1337 (0x539) and are never captured; connections
 * ztunnel makes to the app get connmark 0x111 so the app's replies to the spoofed client address
 * are routed back to ztunnel by `fwmark 0x111 lookup 100` (table 100: everything is local).
 *
 * Two inbound flavours: 'tproxy' (istio's default: mangle PREROUTING TPROXY, the accepted socket's
 * local address IS the original destination) and 'redirect' (nat PREROUTING REDIRECT to 15006,
 * original destination from SO_ORIGINAL_DST), for kernels without TPROXY.
 */
export type InboundCapture = 'tproxy' | 'redirect';

/** ztunnel's in-pod ports and marks (istio: ZtunnelOutboundPort etc., InpodMark, InpodTProxyMark). */
export const INPOD = Object.freeze({
  outboundPort: 15001,
  inboundPlaintextPort: 15006,
  hbonePort: 15008,
  /** SO_MARK of every socket ztunnel opens for a pod */
  mark: 0x539,
  markMask: 0xfff,
  /** connmark / tproxy mark that steers replies back to ztunnel */
  tproxyMark: 0x111,
  routeTable: 100,
  rulePriority: 32764,
  /** kubelet's probes come from this link-local address (istio-cni SNATs them on the node) */
  probeSource: '169.254.7.127',
});

const hex = (n: number): string => `0x${n.toString(16)}`;

/** iptables-restore input for one pod. */
export function inpodIptables(capture: InboundCapture): string {
  const mark = `${hex(INPOD.mark)}/${hex(INPOD.markMask)}`;
  const tmark = `${hex(INPOD.tproxyMark)}/${hex(INPOD.markMask)}`;
  const tproxy = (port: number): string => `-j TPROXY --on-port ${port} --on-ip 0.0.0.0 --tproxy-mark ${tmark}`;
  const mangle = [
    '*mangle',
    ':ISTIO_OUTPUT - [0:0]',
    ':ISTIO_PRERT - [0:0]',
    '-A PREROUTING -j ISTIO_PRERT',
    '-A OUTPUT -j ISTIO_OUTPUT',
    // replies of a connection ztunnel opened to the app get the steering mark back
    `-A ISTIO_OUTPUT -m connmark --mark ${tmark} -j CONNMARK --restore-mark --nfmask 0xffffffff --ctmask 0xffffffff`,
    // ztunnel's own packets (looped back to the app) mark their connection
    `-A ISTIO_PRERT -m mark --mark ${mark} -j CONNMARK --set-xmark ${tmark}`,
  ];
  if (capture === 'tproxy') {
    mangle.push(
      `-A ISTIO_PRERT -s ${INPOD.probeSource}/32 -p tcp -m tcp -j ACCEPT`,
      // ztunnel -> app over lo (transparent source): deliver, never capture again
      '-A ISTIO_PRERT ! -d 127.0.0.1/32 -i lo -p tcp -j ACCEPT',
      `-A ISTIO_PRERT -p tcp -m tcp --dport ${INPOD.hbonePort} -m mark ! --mark ${mark} ${tproxy(INPOD.hbonePort)}`,
      '-A ISTIO_PRERT -p tcp -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
      `-A ISTIO_PRERT ! -d 127.0.0.1/32 -p tcp -m mark ! --mark ${mark} ${tproxy(INPOD.inboundPlaintextPort)}`,
    );
  }
  mangle.push('COMMIT');
  const nat = [
    '*nat',
    ':ISTIO_OUTPUT - [0:0]',
    '-A OUTPUT -j ISTIO_OUTPUT',
    `-A ISTIO_OUTPUT -d ${INPOD.probeSource}/32 -p tcp -m tcp -j ACCEPT`,
    `-A ISTIO_OUTPUT -p tcp -m mark --mark ${tmark} -j ACCEPT`,
    '-A ISTIO_OUTPUT ! -d 127.0.0.1/32 -o lo -j ACCEPT',
    `-A ISTIO_OUTPUT ! -d 127.0.0.1/32 -p tcp -m mark ! --mark ${mark} -j REDIRECT --to-ports ${INPOD.outboundPort}`,
  ];
  if (capture === 'redirect') {
    nat.splice(1, 0, ':ISTIO_PRERT - [0:0]');
    nat.push(
      '-A PREROUTING -j ISTIO_PRERT',
      `-A ISTIO_PRERT -s ${INPOD.probeSource}/32 -p tcp -m tcp -j ACCEPT`,
      '-A ISTIO_PRERT ! -d 127.0.0.1/32 -i lo -p tcp -j ACCEPT',
      // HBONE (15008) is reached directly: ztunnel listens on it in the pod
      `-A ISTIO_PRERT ! -d 127.0.0.1/32 -p tcp ! --dport ${INPOD.hbonePort} -m mark ! --mark ${mark} -j REDIRECT --to-ports ${INPOD.inboundPlaintextPort}`,
    );
  }
  nat.push('COMMIT');
  return [...mangle, ...nat, ''].join('\n');
}

/** `ip -batch` lines for the return-path routing (both flavours need it for the original source). */
export function inpodIpRules(): string[] {
  return [
    `rule add fwmark ${hex(INPOD.tproxyMark)}/${hex(INPOD.markMask)} pref ${INPOD.rulePriority} lookup ${INPOD.routeTable}`,
    `route add local 0.0.0.0/0 dev lo table ${INPOD.routeTable}`,
  ];
}
