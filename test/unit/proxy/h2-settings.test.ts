import t from 'tap';
import { EventEmitter } from 'node:events';
import type * as http2 from 'node:http2';
import { DEFAULT_H2_SETTINGS, checkH2Settings, clientSessionOptions, serverSessionOptions } from '../../../src/proxy/h2-settings';
import { H2Keepalive } from '../../../src/proxy/h2-keepalive';

const MiB = 1024 * 1024;

t.test('defaults are ztunnel\'s', async (t) => {
  t.same(DEFAULT_H2_SETTINGS, { streamWindow: 4 * MiB, connectionWindow: 16 * MiB, maxFrameSize: MiB, maxConcurrentStreams: 200, pingIntervalMs: 10_000, pingTimeoutMs: 20_000 });
  t.ok(Object.isFrozen(DEFAULT_H2_SETTINGS));
  t.equal(checkH2Settings(DEFAULT_H2_SETTINGS), DEFAULT_H2_SETTINGS);
});

t.test('checkH2Settings names the bad field', async (t) => {
  const bad: [Partial<typeof DEFAULT_H2_SETTINGS>, RegExp][] = [
    [{ streamWindow: 0 }, /streamWindow must be 1\.\.2147483647, got 0/],
    [{ streamWindow: 2 ** 31 }, /streamWindow/],
    [{ connectionWindow: 65534 }, /connectionWindow must be 65535/],
    [{ maxFrameSize: 16383 }, /maxFrameSize must be 16384\.\.16777215/],
    [{ maxFrameSize: 16777216 }, /maxFrameSize/],
    [{ maxConcurrentStreams: 0 }, /maxConcurrentStreams/],
    [{ maxConcurrentStreams: 1.5 }, /maxConcurrentStreams/],
    [{ pingIntervalMs: 0 }, /pingIntervalMs/],
    [{ pingTimeoutMs: -1 }, /pingTimeoutMs/],
  ];
  for (const [over, re] of bad) t.throws(() => checkH2Settings({ ...DEFAULT_H2_SETTINGS, ...over }), { code: 'ERR_H2_SETTINGS', message: re });
});

t.test('session options carry the windows, frame size and stream limits', async (t) => {
  const s = serverSessionOptions(DEFAULT_H2_SETTINGS);
  t.same(s.settings, { initialWindowSize: 4 * MiB, maxFrameSize: MiB, maxConcurrentStreams: 200, enablePush: false });
  t.ok(s.maxSessionMemory! * MiB >= 2 * 16 * MiB, 'session memory allows two connection windows');
  const c = clientSessionOptions(DEFAULT_H2_SETTINGS, 50);
  t.same(c.settings, { initialWindowSize: 4 * MiB, maxFrameSize: MiB, enablePush: false });
  t.equal(c.peerMaxConcurrentStreams, 50);
});

class FakeSession extends EventEmitter {
  destroyed = false;
  closed = false;
  pings: ((err: Error | null) => void)[] = [];
  destroyedWith: Error | null = null;
  accept = true;
  ping(cb: (err: Error | null) => void): boolean {
    if (!this.accept) return false;
    this.pings.push(cb);
    return true;
  }
  destroy(err?: Error): void {
    this.destroyed = true;
    this.destroyedWith = err ?? null;
    this.emit('close');
  }
}

t.test('H2Keepalive: ping every interval, destroy after the timeout', async (t) => {
  const k = new H2Keepalive({ intervalMs: 10_000, timeoutMs: 20_000 });
  const s = new FakeSession();
  const asSession = s as unknown as http2.Http2Session;
  k.track(asSession, 0);
  k.track(asSession, 0);
  t.equal(k.size, 1, 'tracked once');
  k.tick(9_999);
  t.equal(s.pings.length, 0, 'not before the interval');
  k.tick(10_000);
  t.equal(s.pings.length, 1, 'first ping');
  s.pings[0]!(null);
  k.tick(19_999);
  t.equal(s.pings.length, 1, 'answered: next one only after another interval');
  k.tick(20_000);
  t.equal(s.pings.length, 2);
  k.tick(39_999);
  t.notOk(s.destroyed, 'unanswered, within the timeout');
  k.tick(40_000);
  t.ok(s.destroyed, 'destroyed at the timeout');
  t.match(s.destroyedWith, { code: 'ERR_TIMEOUT', message: /PING not answered within 20000 ms/ });
  t.equal(k.size, 0, 'forgotten');
});

t.test('H2Keepalive: refused pings, errored pings, closed sessions', async (t) => {
  const k = new H2Keepalive({ intervalMs: 10, timeoutMs: 20 });
  const busy = new FakeSession();
  busy.accept = false;
  const gone = new FakeSession();
  k.track(busy as unknown as http2.Http2Session, 0);
  k.track(gone as unknown as http2.Http2Session, 0);
  k.tick(10);
  gone.pings[0]!(new Error('session closed'));
  gone.closed = true;
  k.tick(100);
  t.notOk(busy.destroyed, 'a ping Node would not send never counts as outstanding');
  k.tick(1000);
  t.notOk(gone.destroyed, 'a closing session is left to close');
  gone.emit('close');
  t.equal(k.size, 1);
  const dead = new FakeSession();
  dead.destroyed = true;
  k.track(dead as unknown as http2.Http2Session, 0);
  t.equal(k.size, 1, 'a destroyed session is not tracked');
});
