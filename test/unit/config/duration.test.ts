import t from 'tap';
import { formatDuration, parseDuration } from '../../../src/config/duration';
import { ValueError } from '../../../src/config/issues';

t.test('parseDuration accepts ztunnel-style durations', async (t) => {
  const cases: [string, number][] = [
    ['500ms', 500],
    ['5s', 5_000],
    ['5m', 300_000],
    ['24h', 86_400_000],
    ['1h30m', 5_400_000],
    ['1h 30m', 5_400_000],
    ['2d', 172_800_000],
    ['1w', 604_800_000],
    ['1.5s', 1_500],
    ['0.1s', 100],
    ['0s', 0],
    ['250us', 0.25],
    ['250µs', 0.25],
    ['1500ns', 0.0015],
    ['1m30s500ms', 90_500],
    ['10S', 10_000],
    ['3Min', 180_000],
    ['2 hours', 7_200_000],
    ['1sec', 1_000],
    [' 5s ', 5_000],
    ['1s1s', 2_000], // repeated units add up, as Go's time.ParseDuration does
    // a bare number is seconds: duration_str's default unit
    ['30', 30_000],
    ['1.5', 1_500],
    [' 10 ', 10_000],
    ['0', 0],
  ];
  for (const [input, ms] of cases) t.equal(parseDuration(input), ms, JSON.stringify(input));
});

t.test('parseDuration rejects junk with an error that says what was expected', async (t) => {
  const bad: [string, RegExp][] = [
    ['', /a duration like/],
    ['   ', /a duration like/],
    ['-10', /a duration like/],
    ['1.5.', /a duration like/],
    ['-5s', /a duration like/],
    ['5x', /unknown unit "x"/],
    ['5 mo', /unknown unit "mo"/],
    ['1y', /unknown unit "y"/],
    ['s', /a duration like/],
    ['1e3s', /unknown unit "e"/],
    ['1.s', /a duration like/],
    ['5s-', /a duration like/],
    ['99999999999999999999w', /too large/],
  ];
  for (const [input, want] of bad) {
    const err = t.throws(() => parseDuration(input), JSON.stringify(input)) as unknown;
    t.ok(err instanceof ValueError, `${JSON.stringify(input)} throws ValueError`);
    t.equal((err as ValueError).code, 'ERR_DURATION');
    t.match((err as ValueError).expected, want, JSON.stringify(input));
    t.match((err as ValueError).message, JSON.stringify(input));
  }
});

t.test('formatDuration gives the shortest ztunnel-style text', async (t) => {
  const cases: [number, string][] = [
    [0, '0s'],
    [500, '500ms'],
    [5_000, '5s'],
    [300_000, '5m'],
    [5_400_000, '1h30m'],
    [86_400_000, '24h'],
    [90_061_001, '25h1m1s1ms'],
    [0.25, '250us'],
    [0.0015, '1us500ns'],
    [2 ** 31 - 1, '596h31m23s647ms'],
  ];
  for (const [ms, text] of cases) t.equal(formatDuration(ms), text, String(ms));
  for (const bad of [-1, NaN, Infinity]) t.throws(() => formatDuration(bad), RangeError, String(bad));
});

t.test('formatDuration and parseDuration round-trip', async (t) => {
  const samples = [0, 1, 999, 1_000, 59_999, 60_000, 3_599_999, 3_600_000, 86_400_000, 123_456_789, 0.001, 12.345678];
  for (const ms of samples) t.equal(parseDuration(formatDuration(ms)), ms, String(ms));
});
