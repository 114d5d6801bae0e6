/**
 * The origin of every path (its own process, so its CPU never counts against a proxy): Node's
 * http server answering every request with a 1 KiB body on :8080, and a TCP echo on :9000 (idle
 * tunnels are proved open by one echoed byte), on each IP given.
 *   node dist/bench/lib/origin.js 127.200.9.10,127.200.11.11,...
 * Prints "origin ready" once every listener is bound.
 */
import { createServer as httpServer } from 'node:http';
import { createServer as tcpServer, type Server } from 'node:net';

export const HTTP_PORT = 8080;
export const ECHO_PORT = 9000;
export const BODY_BYTES = 1024;

function listen(s: Server, ip: string, port: number): Promise<void> {
  return new Promise((res, rej) => {
    s.once('error', rej);
    s.listen({ host: ip, port, backlog: 4096 }, () => res());
  });
}

async function main(ips: string[]): Promise<void> {
  const body = Buffer.alloc(BODY_BYTES, 'x');
  for (const ip of ips) {
    const http = httpServer({ keepAliveTimeout: 60_000 }, (req, res) => {
      req.resume();
      req.once('end', () => {
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(body.length) });
        res.end(body);
      });
    });
    const echo = tcpServer({ allowHalfOpen: true }, (s) => {
      s.on('error', () => undefined);
      s.pipe(s);
    });
    await listen(http, ip, HTTP_PORT);
    await listen(echo, ip, ECHO_PORT);
  }
  process.stdout.write('origin ready\n');
}

if (require.main === module) {
  main((process.argv[2] ?? '').split(',').filter(Boolean)).catch((err: unknown) => {
    process.stderr.write(`origin: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  });
}
