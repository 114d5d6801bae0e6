// ZTUNNEL_MAX_CONNECTIONS' counter: one budget for every thread, exact under concurrent use, and
// the share of a dead worker given back by the supervisor.
import t from 'tap';
import { Worker } from 'node:worker_threads';
import { ConnectionLimit, refusalLogger } from '../../src/net/conn-limit';

t.test('acquire up to the limit, refuse beyond, release frees a place', async (t) => {
  const limit = new ConnectionLimit(ConnectionLimit.create(3, 1), 0);
  t.same([limit.tryAcquire(), limit.tryAcquire(), limit.tryAcquire(), limit.tryAcquire()], [true, true, true, false]);
  t.equal(limit.inUse, 3);
  limit.release();
  t.equal(limit.inUse, 2);
  t.ok(limit.tryAcquire());
  t.notOk(limit.tryAcquire());
});

t.test('slots share one budget, and reclaim gives back exactly a dead slot\'s places', async (t) => {
  const state = ConnectionLimit.create(4, 2);
  const a = new ConnectionLimit(state, 0);
  const b = new ConnectionLimit(state, 1);
  t.ok(a.tryAcquire());
  t.ok(a.tryAcquire());
  t.ok(b.tryAcquire());
  t.ok(b.tryAcquire());
  t.notOk(a.tryAcquire(), 'the process is full whichever slot asks');
  t.equal(ConnectionLimit.reclaim(state, 0), 2);
  t.equal(b.inUse, 2);
  t.ok(b.tryAcquire());
  t.ok(b.tryAcquire());
  t.notOk(b.tryAcquire());
});

t.test('bad limits and slots are programming errors', async (t) => {
  t.throws(() => ConnectionLimit.create(0, 1), RangeError);
  t.throws(() => ConnectionLimit.create(1.5, 1), RangeError);
  t.throws(() => new ConnectionLimit(ConnectionLimit.create(1, 2), 2), RangeError);
});

t.test('threads racing for the last places never overshoot the limit', async (t) => {
  const max = 1000;
  const state = ConnectionLimit.create(max, 4);
  // each thread grabs as many places as it can, as fast as it can, through the real class
  const code = `
    const { workerData, parentPort } = require('node:worker_threads');
    const { ConnectionLimit } = require(workerData.mod);
    const l = new ConnectionLimit(workerData.state, workerData.slot);
    let n = 0;
    while (l.tryAcquire()) n++;
    parentPort.postMessage(n);
  `;
  const mod = require.resolve('../../src/net/conn-limit');
  const counts = await Promise.all(
    [0, 1, 2, 3].map(
      (slot) =>
        new Promise<number>((resolve, reject) => {
          const w = new Worker(code, { eval: true, workerData: { mod, state, slot } });
          w.once('message', resolve);
          w.once('error', reject);
        }),
    ),
  );
  t.equal(counts.reduce((a, b) => a + b, 0), max, `places taken by 4 threads: ${counts.join('+')}`);
  t.equal(new ConnectionLimit(state, 0).inUse, max);
});

t.test('refusals are logged once per period with the count of those not yet reported', async (t) => {
  const lines: Record<string, unknown>[] = [];
  let now = 1_000_000;
  const limit = new ConnectionLimit(ConnectionLimit.create(1, 1), 0);
  const onRefused = refusalLogger({ warn: (obj) => lines.push(obj as Record<string, unknown>) }, limit, () => now);
  const sock = { localAddress: '10.0.0.1', localPort: 15008, remoteAddress: '10.0.0.2' };
  onRefused(sock);
  for (let i = 0; i < 50; i++) onRefused(sock);
  t.equal(lines.length, 1, 'a flood is one line per period');
  t.match(lines[0], { limit: 1, refused: 1, listener: '10.0.0.1:15008', src: '10.0.0.2' });
  now += 10_000;
  onRefused(sock);
  t.equal(lines.length, 2);
  t.match(lines[1], { refused: 51 });
});
