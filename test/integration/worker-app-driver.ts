/**
 * A child process for workers.test.ts: runs the real startNodeApp with worker threads and its log
 * on stdout, exactly as `proxy` does. Worker threads write their log lines straight to fd 1 (no
 * hop through the main thread), so a test can only read them from another process's stdout.
 *
 * Protocol: argv[2] is the env map for parseConfig. Stdout carries the app's JSON log lines and
 * the driver's own lines, marked `driver`. Stdin takes one JSON command per line:
 *   {"cmd":"stats"}             → {"driver":"stats","relays":[per slot]}
 *   {"cmd":"kill","worker":n}   → terminates worker n; {"driver":"replaced"} once every slot is ready
 * Closing stdin closes the app and ends the process.
 */
import { writeSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { parseConfig } from '../../src/config/config';
import { Logging } from '../../src/logging/logger';
import { startNodeApp } from '../../src/app';

// one write() per line: shorter than PIPE_BUF, so never interleaved with a worker's line
const say = (o: object): void => void writeSync(1, `${JSON.stringify({ driver: true, ...o })}\n`);

async function main(): Promise<void> {
  const env = JSON.parse(process.argv[2] ?? '{}') as Record<string, string>;
  const config = parseConfig(env, { logicalCpus: 2 });
  const app = await startNodeApp(config, new Logging(config.log));
  const pool = app.pool;
  if (pool === null) throw new Error('no worker pool (the addon did not load)');
  await pool.settled();
  say({ event: 'ready', socks: app.addresses().get('socks5'), admin: app.servers.admin, stats: app.servers.stats });
  const rl = createInterface({ input: process.stdin });
  for await (const line of rl) {
    const cmd = JSON.parse(line) as { cmd: string; worker?: number };
    if (cmd.cmd === 'stats') {
      const relays = new Array<number>(pool.size).fill(0);
      for (const s of await pool.stats()) relays[s.workerId] = s.relays.splice + s.relays.js;
      say({ event: 'stats', relays });
    } else if (cmd.cmd === 'kill') {
      await pool.terminateWorker(cmd.worker ?? 0);
      // terminate() settles after the pool's exit handler ran (it listens first), so the slot is
      // empty now and settled() waits for the replacement to listen
      await pool.settled();
      if (pool.readyCount() < pool.size) throw new Error('settled() before the replacement was ready');
      say({ event: 'replaced' });
    }
  }
  await app.close();
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    say({ event: 'failed', err: (err as Error)?.stack ?? String(err) });
    process.exit(1);
  },
);
