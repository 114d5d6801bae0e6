/**
 * The client-side entry hop (its own process, so its CPU and memory are measured apart from the
 * proxies). iperf3 and autocannon cannot speak SOCKS5, and SOCKS5 is how a client enters
 * ztunnel-ts without iptables capture, so every proxied path in the bench starts with this hop:
 *   - mode 'socks': accept, SOCKS5 CONNECT to proxy A from the client workload's IP (A identifies
 *     the client by that source address), then relay;
 *   - mode 'plain': accept, connect to a fixed target (stunnel's or HAProxy's front end), relay.
 * Both relay with the native splice relay (the cheapest copy available), so the hop adds the same
 * cost to every proxied variant; the 'hop only' variant (hop → origin) measures that cost alone.
 *   node dist/bench/lib/entry-hop.js '<json: {listenIp, routes: [{name, mode, target, socks?, bindIp?}]}>'
 * Prints one JSON line {"ports": {name: port}} once every listener is bound.
 */
import { connect, createServer, type Server, type Socket } from 'node:net';
import { loadNative, type NativeApi } from '../../src/native/addon';
import { startRelay } from '../../src/native/relay';
import { socksConnect } from '../../src/proxy/socks5-client';

export interface HopRoute {
  readonly name: string;
  readonly mode: 'socks' | 'plain';
  readonly target: { host: string; port: number };
  readonly socks?: { host: string; port: number };
  readonly bindIp?: string;
}

export interface HopConfig {
  readonly listenIp: string;
  readonly routes: readonly HopRoute[];
}

function upstream(r: HopRoute): Promise<Socket> {
  if (r.mode === 'socks') return socksConnect(r.socks!, r.bindIp!, r.target);
  return new Promise((res, rej) => {
    const b = connect({ ...r.target, allowHalfOpen: true });
    b.once('error', rej);
    b.once('connect', () => {
      b.off('error', rej);
      res(b);
    });
  });
}

function serve(ip: string, r: HopRoute, native: NativeApi | null): Promise<Server> {
  const srv = createServer({ pauseOnConnect: true, allowHalfOpen: true, noDelay: true }, (a: Socket) => {
    a.on('error', () => undefined);
    upstream(r).then(
      (b) => {
        b.on('error', () => undefined);
        b.setNoDelay(true);
        b.pause();
        startRelay(a, b, () => undefined, { native });
      },
      () => a.destroy(),
    );
  });
  srv.maxConnections = 100_000;
  return new Promise((res, rej) => {
    srv.once('error', rej);
    srv.listen({ host: ip, port: 0, backlog: 4096 }, () => res(srv));
  });
}

async function main(cfg: HopConfig): Promise<void> {
  const native = loadNative();
  const ports: Record<string, number> = {};
  for (const r of cfg.routes) ports[r.name] = ((await serve(cfg.listenIp, r, native)).address() as { port: number }).port;
  process.stdout.write(JSON.stringify({ ports }) + '\n');
}

if (require.main === module) {
  main(JSON.parse(process.argv[2] ?? '{}') as HopConfig).catch((err: unknown) => {
    process.stderr.write(`entry-hop: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  });
}
