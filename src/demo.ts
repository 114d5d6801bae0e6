/**
 * `npm run demo`: runs the proxy in-process on the bundled example snapshot (SOCKS5 on), starts
 * the apps the example's workloads stand for, sends one connection per case through the proxy
 * and prints what happened: through an HBONE tunnel, plain TCP, passed through, or refused and why.
 * Everything is on 127.100.x (loopback), so no root is needed.
 */
import { createServer, type Server, type Socket } from 'node:net';
import { availableParallelism } from 'node:os';
import { startApp } from './app';
import { parseConfig } from './config/config';
import { Logging } from './logging/logger';
import { socksConnect, SocksError } from './proxy/socks5-client';

const ECHO = '127.100.0.3';
const PLAIN = '127.100.0.4';
const OUTSIDE = '127.100.9.9';

function app(name: string, host: string, port: number): Promise<Server> {
  const server = createServer((s: Socket) => {
    s.once('data', (d: Buffer) => s.end(`${name} got ${JSON.stringify(d.toString())} from ${s.remoteAddress}`));
    s.on('error', () => undefined);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve(server));
  });
}

interface Case {
  readonly title: string;
  readonly from: string;
  readonly to: { host: string; port: number };
}

const CASES: readonly Case[] = [
  { title: 'sleep → echo service VIP', from: '127.100.0.1', to: { host: '127.100.1.1', port: 80 } },
  { title: 'sleep → echo by hostname', from: '127.100.0.1', to: { host: 'echo.default.svc.cluster.local', port: 80 } },
  { title: 'notsleep → echo service VIP', from: '127.100.0.2', to: { host: '127.100.1.1', port: 80 } },
  { title: 'sleep → legacy TCP workload', from: '127.100.0.1', to: { host: PLAIN, port: 9090 } },
  { title: 'sleep → outside the mesh', from: '127.100.0.1', to: { host: OUTSIDE, port: 7070 } },
  { title: 'unknown source → echo', from: '127.0.0.1', to: { host: '127.100.1.1', port: 80 } },
];

async function main(): Promise<number> {
  const lines: Record<string, unknown>[] = [];
  // every node-level listener on a free port, so the demo never collides with a running proxy
  const config = parseConfig(
    {
      UNSTABLE_ENABLE_SOCKS5: 'true',
      ZTUNNEL_SOCKS5_ADDR: '127.0.0.1:0',
      ZTUNNEL_ADMIN_ADDR: '127.0.0.1:0',
      ZTUNNEL_STATS_ADDR: '127.0.0.1:0',
      ZTUNNEL_READINESS_ADDR: '127.0.0.1:0',
      LOG_FORMAT: 'json',
      LOG_LEVEL: 'debug',
    },
    { logicalCpus: availableParallelism() },
  );
  const logging = new Logging({ ...config.log, destination: { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) } });
  const servers = await Promise.all([app('echo', ECHO, 8080), app('legacy', PLAIN, 9090), app('outside', OUTSIDE, 7070)]);
  const proxy = await startApp(config, logging);
  await proxy.data.settled();
  const socks = proxy.data.addresses().get('socks5')!;
  process.stdout.write(`ztunnel-ts demo: proxy on the bundled example snapshot, SOCKS5 at ${socks.text}\n\n`);
  for (const c of CASES) {
    const mark = lines.length;
    let outcome: string;
    try {
      const s = await socksConnect({ host: socks.host, port: socks.port }, c.from, c.to);
      s.resume();
      s.end('hi');
      const reply = await new Promise<string>((resolve, reject) => {
        let text = '';
        s.on('data', (d: Buffer) => (text += d.toString()));
        s.once('end', () => resolve(text));
        s.once('error', reject);
      });
      const opened = lines.slice(mark).find((l) => l['msg'] === 'outbound connection opened');
      const how = opened?.['kind'] === 'hbone' ? `through an HBONE tunnel to ${String(opened['hbone'])} as ${String(opened['dstIdentity'])}` : opened?.['kind'] === 'tcp' ? 'as plain TCP (the workload does not speak HBONE)' : 'passed through (not a mesh destination)';
      outcome = `OK ${how}\n      app replied: ${reply}`;
    } catch (err) {
      await new Promise((r) => setTimeout(r, 20)); // let the refusal's log line land
      const why = lines.slice(mark).find((l) => typeof l['reason'] === 'string' || l['level'] === 40);
      const detail = why ? String(why['reason'] ?? why['msg']) : (err as Error).message;
      outcome = `REFUSED (${err instanceof SocksError ? `SOCKS reply ${err.reply}` : (err as Error).message})\n      why: ${detail}`;
    }
    process.stdout.write(`  ${c.title.padEnd(30)} from ${c.from.padEnd(12)} to ${c.to.host}:${c.to.port}\n    ${outcome}\n`);
  }
  await proxy.shutdown();
  for (const s of servers) s.close();
  return 0;
}

main().then(
  (code) => (process.exitCode = code),
  (err: unknown) => {
    process.stderr.write(`demo failed: ${(err as Error).stack ?? String(err)}\n`);
    // servers started before the failure would keep the process alive: this is an entry script, exit
    process.exit(1);
  },
);
