/**
 * Idle tunnels for the memory-per-tunnel step: connections opened through a path to the echo
 * origin, each proved open end to end by one echoed byte, then held without traffic.
 * In the bench process (loopback) or as a child inside a client pod (--netns), driven over
 * stdin/stdout:
 *   node dist/bench/lib/idle-holder.js '{"host":"10.x.y.z","port":9000}'
 *   → opens one tunnel, prints "warm"; on a stdin line "open <n>" opens n more and prints
 *     "open <n>" (or "error <message>"); closes everything and exits when stdin ends.
 * Bounded: 60 s to open a batch, and the child exits by itself after 10 minutes.
 */
import { connect, type Socket } from 'node:net';
import { createInterface } from 'node:readline';

export interface Target {
  readonly host: string;
  readonly port: number;
}

/** Opens one connection and proves it end to end with one echoed byte (10 s bound). */
export function openTunnel(t: Target, label: string): Promise<Socket> {
  return new Promise((res, rej) => {
    const s = connect(t);
    const timer = setTimeout(() => {
      s.destroy();
      rej(new Error(`idle tunnel through ${label}: no echo within 10 s`));
    }, 10_000);
    s.once('error', (err) => {
      clearTimeout(timer);
      rej(err);
    });
    s.once('connect', () => s.write('x'));
    s.once('data', () => {
      clearTimeout(timer);
      s.on('error', () => undefined);
      res(s);
    });
  });
}

export interface Holder {
  /** Opens `n` more tunnels (batches of 50), within 60 s. */
  open(n: number): Promise<void>;
  close(): void;
}

export async function holdTunnels(t: Target, label: string): Promise<Holder> {
  // the first tunnel warms pools and TLS sessions before any baseline reading
  const sockets: Socket[] = [await openTunnel(t, label)];
  return {
    async open(n: number): Promise<void> {
      const goal = sockets.length + n;
      const deadline = Date.now() + 60_000;
      while (sockets.length < goal) {
        if (Date.now() > deadline) throw new Error(`idle tunnels through ${label}: only ${sockets.length - 1} open after 60 s`);
        const batch = Math.min(50, goal - sockets.length);
        sockets.push(...(await Promise.all(Array.from({ length: batch }, () => openTunnel(t, label)))));
      }
    },
    close: () => sockets.splice(0).forEach((s) => s.destroy()),
  };
}

async function main(t: Target): Promise<void> {
  setTimeout(() => process.exit(2), 600_000).unref();
  const h = await holdTunnels(t, `${t.host}:${t.port}`);
  process.stdout.write('warm\n');
  const lines = createInterface({ input: process.stdin });
  lines.on('line', (l) => {
    const m = /^open (\d+)$/.exec(l.trim());
    if (!m) return;
    h.open(Number(m[1])).then(
      () => process.stdout.write(`open ${m[1]}\n`),
      (err: Error) => process.stdout.write(`error ${err.message}\n`),
    );
  });
  lines.once('close', () => {
    h.close();
    process.exit(0);
  });
}

if (require.main === module) {
  main(JSON.parse(process.argv[2] ?? '{}') as Target).catch((err: unknown) => {
    process.stdout.write(`error ${(err as Error).message}\n`);
    process.exit(1);
  });
}
