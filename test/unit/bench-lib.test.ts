/**
 * The bench's own measuring pieces, where a bug would silently produce wrong figures: the load
 * client (request counts, one TCP connection per request, the fixed rate), medians, /proc readings
 * and the profile summary's load window. Real sockets against a real node:http server.
 */
import t from 'tap';
import { createServer } from 'node:http';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { load, percentileMs } from '../../bench/lib/http-client';
import { median } from '../../bench/lib/report';
import { cpuSeconds, statusKiB } from '../../bench/lib/procs';
import { summariseProfiles } from '../../bench/lib/profile';
import { loopbackBlock } from '../helpers/loopback';

const net = loopbackBlock(200, 60);
const HOST = net.ip(1);

t.test('load client against a real HTTP server', async (t) => {
  let conns = 0;
  let reqs = 0;
  const body = Buffer.alloc(1024, 'x');
  const srv = createServer((req, res) => {
    reqs++;
    req.resume();
    res.writeHead(200, { 'content-length': String(body.length) });
    res.end(body);
  });
  srv.on('connection', () => conns++);
  srv.listen(0, HOST);
  await once(srv, 'listening');
  t.teardown(() => void srv.close());
  const port = (srv.address() as { port: number }).port;

  const keep = await load({ host: HOST, port, seconds: 1, concurrency: 2 });
  t.equal(keep.errors, 0);
  t.ok(keep.requests > 10, `keep-alive requests counted (${keep.requests})`);
  t.equal(reqs, keep.requests, 'every counted request reached the server, and no more');
  t.equal(conns, 2, 'keep-alive: one connection per loop');

  conns = 0;
  reqs = 0;
  const fresh = await load({ host: HOST, port, seconds: 1, concurrency: 2, newConnEach: true });
  t.equal(fresh.errors, 0);
  t.ok(fresh.requests > 5, `new-connection requests counted (${fresh.requests})`);
  t.equal(conns, fresh.requests, 'one TCP connection per request');

  const fixed = await load({ host: HOST, port, seconds: 1, concurrency: 4, rate: 100 });
  t.equal(fixed.errors, 0);
  t.ok(fixed.requests >= 90 && fixed.requests <= 100, `fixed rate: about 100 requests in 1 s (${fixed.requests}), never more`);
  const sorted = [...fixed.latUs].sort((a, b) => a - b);
  t.ok(sorted[0]! > 0, 'latencies are positive');
  t.ok(percentileMs(sorted, 50) <= percentileMs(sorted, 99), 'p50 <= p99');
});

t.test('median', async (t) => {
  t.equal(median([3, 1, 2]), 2);
  t.equal(median([4, 1, 2, 3]), 2.5);
  t.ok(Number.isNaN(median([])));
  t.equal(median([NaN, 5]), 5, 'missing readings are ignored');
});

t.test('/proc readings of this process', async (t) => {
  const c0 = cpuSeconds(process.pid)!;
  const until = Date.now() + 300;
  let x = 0;
  while (Date.now() < until) x += Math.sqrt(x + 1);
  t.ok(x > 0);
  t.ok(cpuSeconds(process.pid)! - c0 >= 0.1, 'busy CPU shows up in utime+stime');
  t.ok(statusKiB(process.pid, 'VmRSS')! > 10_000, 'RSS in KiB');
  t.ok(statusKiB(process.pid, 'VmHWM')! >= statusKiB(process.pid, 'VmRSS')! - 1024, 'peak >= current (allowing a page race)');
  t.equal(cpuSeconds(2 ** 22 + 7), null, 'a missing process reads as null');
});

t.test('profile summary counts only samples inside the load window', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ztunnel-bench-prof-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const frame = (id: number, functionName: string, url: string) => ({ id, callFrame: { functionName, url, lineNumber: 0 } });
  writeFileSync(join(dir, 'a.cpuprofile'), JSON.stringify({
    startTime: 1_000_000,
    nodes: [frame(1, '(idle)', ''), frame(2, 'startup', 'node:internal/modules/cjs/loader'), frame(3, 'copy', '/x/dist/src/proxy/copy.js')],
    // t = 1.1 s: startup; 2.0 s, 2.5 s: copy; 2.6 s: idle; 9 s: startup again (after the window)
    samples: [2, 3, 3, 1, 2],
    timeDeltas: [100_000, 900_000, 500_000, 100_000, 6_400_000],
  }));
  const s = summariseProfiles(dir, { from: 1_500_000, to: 3_000_000 });
  t.equal(s.top.length, 1, 'start-up outside the window is left out');
  t.equal(s.top[0]!.fn, 'copy');
  t.equal(s.top[0]!.selfMs, 1400);
  t.equal(s.categories.find((c) => c.category === 'ztunnel-ts')!.ms, 1400);
  t.match(s.windowed, /^1 of 1/);
  const all = summariseProfiles(dir);
  t.equal(all.top.find((r) => r.fn === 'startup')!.selfMs, 6500, 'without a window every sample counts');
});
