import t from 'tap';
import { mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer, type AddressInfo } from 'node:net';
import { runCli } from '../../src/cli/run';
import { loopbackBlock } from '../helpers/loopback';

const EXAMPLE = join(__dirname, '..', '..', '..', 'examples', 'local-snapshot.yaml');
const noHooks = { onSignal: () => undefined };

async function run(argv: string[], env: Record<string, string> = {}): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await runCli(argv, { env, out: (s) => void (out += s), err: (s) => void (err += s) }, noHooks);
  return { code, out, err };
}

const dir = mkdtempSync(join(tmpdir(), 'ztunnel-cli-'));
const BAD = join(dir, 'bad.yaml');
writeFileSync(
  BAD,
  `workloads:
  - uid: a
    name: a
    namespace: default
    workloadIps: [10.0.0.300]
  - uid: a
    name: b
    namespace: default
    workloadIps: [10.0.0.1]
    colour: blue
`,
);

// the proxy start-up cases hold a port here that the proxy must never try to bind
const lb = loopbackBlock(15, 2);

const NETS = join(dir, 'networks.yaml');
writeFileSync(
  NETS,
  `workloads:
  - { uid: a, name: a, namespace: default, workloadIps: [10.1.0.1], network: net1 }
  - { uid: b, name: b, namespace: default, workloadIps: [10.1.0.2], network: net1 }
  - { uid: c, name: c, namespace: locked, workloadIps: [10.1.0.2], network: net2 }
policies:
  - name: deny-all
    namespace: locked
    scope: Namespace
    action: Deny
    rules: [[[{ destinationPorts: [80] }]]]
  - name: try-deny
    namespace: default
    scope: Namespace
    action: Deny
    dryRun: true
    rules: [[[{ principals: [{ Exact: cluster.local/ns/default/sa/sleep }] }]]]
`,
);

t.test('version and help', async (t) => {
  const v = await run(['version']);
  t.equal(v.code, 0);
  t.match(v.out, /^ztunnel-ts \d+\.\d+\.\d+ \(node v\d+/);
  const h = await run(['help']);
  t.equal(h.code, 0);
  t.match(h.out, /check-config FILE/);
  const u = await run(['frobnicate']);
  t.equal(u.code, 2);
  t.match(u.err, /unknown command "frobnicate"/);
  const p = await run(['proxy', 'sidecar']);
  t.equal(p.code, 2, 'proxy accepts only "ztunnel" as its argument');
});

t.test('check-config', async (t) => {
  const ok = await run(['check-config', EXAMPLE]);
  t.equal(ok.code, 0);
  t.match(ok.out, /ok: 4 workloads \(4 on node "local"\), 1 service, 1 policy/);

  const bad = await run(['check-config', BAD]);
  t.equal(bad.code, 1, 'invalid snapshot → 1');
  t.match(bad.err, /workloads\[0\]\.workloadIps\[0\]: "10\.0\.0\.300" is not an IP address/);
  t.match(bad.err, /workloads\[1\]/, 'every error is listed, not just the first');
  t.match(bad.err, /colour/);

  const missing = await run(['check-config', join(dir, 'nope.yaml')]);
  t.equal(missing.code, 2, 'unreadable file → 2');
  t.match(missing.err, /cannot read .*nope\.yaml: ENOENT/);

  t.equal((await run(['check-config'])).code, 2, 'usage error → 2');
  t.equal((await run(['check-config', EXAMPLE], { NODE_NAME: 'elsewhere' })).out.includes('(0 on node "elsewhere")'), true);
});

t.test('authz simulator', async (t) => {
  const cases: [string, string[], number, unknown][] = [
    ['denied principal', ['--src', '127.100.0.2:5555', '--identity', 'spiffe://cluster.local/ns/default/sa/notsleep', '--dst', '127.100.0.3:8080'], 1,
      { allowed: false, reason: 'explicitly denied by: default/deny-notsleep', policy: 'default/deny-notsleep' }],
    ['allowed principal', ['--src', '127.100.0.1:5555', '--identity', 'spiffe://cluster.local/ns/default/sa/sleep', '--dst', '127.100.0.3:8080'], 0,
      { allowed: true, reason: 'no allow policies', policy: null }],
    ['plaintext (no identity) is not the denied principal', ['--src', '127.100.0.2:5555', '--dst', '127.100.0.3:8080'], 0,
      { allowed: true, reason: 'no allow policies', policy: null }],
  ];
  for (const [name, args, code, json] of cases) {
    const r = await run(['authz', '--config', EXAMPLE, ...args]);
    t.equal(r.code, code, `${name}: exit code`);
    t.same(JSON.parse(r.out), json, name);
  }
  const bad: [string, string[], RegExp][] = [
    ['no config', ['--src', '1.2.3.4:5', '--dst', '127.100.0.3:8080'], /--config is required/],
    ['bad src', ['--config', EXAMPLE, '--src', '1.2.3.4', '--dst', '127.100.0.3:8080'], /--src "1\.2\.3\.4": expected IP:PORT/],
    ['bad identity', ['--config', EXAMPLE, '--src', '1.2.3.4:5', '--identity', 'bob', '--dst', '127.100.0.3:8080'], /--identity: invalid SPIFFE id/],
    ['unknown dst', ['--config', EXAMPLE, '--src', '1.2.3.4:5', '--dst', '10.9.9.9:80'], /no workload has this IP/],
    ['VIP dst', ['--config', EXAMPLE, '--src', '1.2.3.4:5', '--dst', '127.100.1.1:80'], /VIP of service echo\.default\.svc\.cluster\.local/],
    ['unknown flag', ['--config', EXAMPLE, '--bogus'], /Unknown option '--bogus'/],
    ['bad snapshot', ['--config', BAD, '--src', '1.2.3.4:5', '--dst', '10.0.0.1:80'], /is not an IP address/],
  ];
  for (const [name, args, re] of bad) {
    const r = await run(['authz', ...args]);
    t.equal(r.code, 2, `${name}: exit 2`);
    t.match(r.err, re, name);
    t.equal(r.out, '', `${name}: nothing on stdout`);
  }
});

t.test('ca init writes a 0600 CA folder and refuses to overwrite it', async (t) => {
  const caDir = join(dir, 'ca');
  const r = await run(['ca', 'init', caDir]);
  t.equal(r.code, 0, r.err);
  for (const f of ['ca-cert.pem', 'ca-key.pem', 'root-cert.pem', 'cert-chain.pem']) {
    t.equal(statSync(join(caDir, f)).mode & 0o777, 0o600, `${f} is 0600`);
  }
  const again = await run(['ca', 'init', caDir]);
  t.equal(again.code, 1);
  t.match(again.err, /refusing to overwrite/);
  t.equal((await run(['ca'])).code, 2);
});

t.test('proxy: a configuration error exits 1 before anything runs, listing every bad variable', async (t) => {
  const r = await run(['proxy'], { ZTUNNEL_WORKER_THREADS: 'abc', LOG_FORMAT: 'xml', LOCAL_XDS: 'x', LOCAL_XDS_PATH: '/x' });
  t.equal(r.code, 1);
  t.match(r.err, /ZTUNNEL_WORKER_THREADS="abc"/);
  t.match(r.err, /LOG_FORMAT="xml"/);
  t.match(r.err, /LOCAL_XDS/);
});

for (const argv of [[], ['proxy'], ['proxy', 'ztunnel']]) {
  t.test(`${JSON.stringify(['ztunnel-ts', ...argv])}: runs the proxy command (a configuration error exits 1)`, async (t) => {
    const r = await run(argv, { ZTUNNEL_WORKER_THREADS: 'abc', LOG_FORMAT: 'xml' });
    t.equal(r.code, 1);
    t.match(r.err, /ZTUNNEL_WORKER_THREADS="abc"/);
    t.match(r.err, /LOG_FORMAT="xml"/);
  });
}

t.test('proxy: a bad or unreadable snapshot exits 1 with a clean message before anything is bound', async (t) => {
  // readiness (the first listener the app binds) points at a port held here: had the proxy got as
  // far as binding, it would fail with EADDRINUSE instead of the snapshot message
  const held = createServer();
  await new Promise<void>((r) => held.listen(0, lb.ip(1), r));
  t.teardown(() => void held.close());
  const busy = `${lb.ip(1)}:${(held.address() as AddressInfo).port}`;
  const base = { ZTUNNEL_READINESS_ADDR: busy, ZTUNNEL_ADMIN_ADDR: `${lb.ip(1)}:0`, ZTUNNEL_STATS_ADDR: `${lb.ip(1)}:0`, LOG_LEVEL: 'off' };
  const cases: [string, Record<string, string>, RegExp][] = [
    ['bad inline LOCAL_XDS', { LOCAL_XDS: 'workloads: [{ uid: a, name: a, namespace: default, workloadIps: [nope] }]' }, /LOCAL_XDS: workloads\[0\]\.workloadIps\[0\]: "nope" is not an IP address/],
    ['missing LOCAL_XDS_PATH', { LOCAL_XDS_PATH: '/nonexistent' }, /^ztunnel-ts: LOCAL_XDS_PATH: cannot read \/nonexistent: ENOENT\n$/],
    ['invalid LOCAL_XDS_PATH file', { LOCAL_XDS_PATH: BAD }, /LOCAL_XDS_PATH: .*bad\.yaml: invalid snapshot \(3 errors\)/],
  ];
  for (const [name, env, re] of cases) {
    const r = await run(['proxy'], { ...base, ...env });
    t.equal(r.code, 1, `${name}: exit 1`);
    t.match(r.err, re, name);
    t.notMatch(r.err, /\n\s+at /, `${name}: no stack trace`);
    t.notMatch(r.err, /EADDRINUSE/, `${name}: nothing was bound`);
  }
});

t.test('proxy: a signal while the snapshot is checked ends the command with 0 before anything is bound', async (t) => {
  // as above, readiness points at a held port: binding anything would fail with EADDRINUSE
  const held = createServer();
  await new Promise<void>((r) => held.listen(0, lb.ip(2), r));
  t.teardown(() => void held.close());
  const busy = `${lb.ip(2)}:${(held.address() as AddressInfo).port}`;
  const base = { ZTUNNEL_READINESS_ADDR: busy, ZTUNNEL_ADMIN_ADDR: `${lb.ip(2)}:0`, ZTUNNEL_STATS_ADDR: `${lb.ip(2)}:0`, LOG_LEVEL: 'off' };
  const env = { ...base, LOCAL_XDS_PATH: EXAMPLE };
  let err = '';
  // the handler must be installed before the check (a big snapshot takes seconds): the signal
  // comes as it is installed, before the file is even read
  const code = await runCli(['proxy'], { env, out: () => undefined, err: (s) => void (err += s) }, { onSignal: (h) => h('SIGTERM') });
  t.equal(code, 0, 'a clean stop');
  t.equal(err, '', 'no error (no EADDRINUSE: nothing was bound)');

  // a real signal, sent while the (inline, synchronous) check runs: its handler can only run at
  // the event loop's next poll, which must come before anything is bound
  const relay = (h: (signal: string) => void) => () => h('SIGTERM');
  let handler: (() => void) | null = null;
  t.teardown(() => void (handler && process.off('SIGUSR2', handler)));
  const pending = await runCli(['proxy'], { env: { ...base, LOCAL_XDS: readFileSync(EXAMPLE, 'utf8') }, out: () => undefined, err: (s) => void (err += s) }, {
    onSignal: (h) => {
      process.on('SIGUSR2', (handler = relay(h)));
      process.kill(process.pid, 'SIGUSR2');
    },
  });
  t.equal(pending, 0, 'a signal pending during the check: a clean stop before binding');
  t.equal(err, '', 'no EADDRINUSE');

  // a bad snapshot is still reported (exit 1) when a signal came during the check
  const bad = await runCli(['proxy'], { env: { ...env, LOCAL_XDS_PATH: BAD }, out: () => undefined, err: (s) => void (err += s) }, { onSignal: (h) => h('SIGTERM') });
  t.equal(bad, 1);
  t.match(err, /LOCAL_XDS_PATH: .*bad\.yaml: invalid snapshot/);
});

t.test('check-config lists every error, even past 100', async (t) => {
  const many = join(dir, 'many.yaml');
  const rows = Array.from({ length: 150 }, (_, i) => `  - { uid: w${i}, name: w${i}, namespace: default, workloadIps: [bad-${i}] }`);
  writeFileSync(many, `workloads:\n${rows.join('\n')}\n`);
  const r = await run(['check-config', many]);
  t.equal(r.code, 1);
  t.match(r.err, /invalid snapshot \(150 errors\)/);
  t.equal(r.err.split('\n').filter((l) => / is not an IP address/.test(l)).length, 150, 'all 150 listed');
  t.match(r.err, /workloads\[149\]/);
  t.notMatch(r.err, /and \d+ more/);
});

t.test('authz: the destination network, and dry-run policies in the output', async (t) => {
  const sleep = ['--src', '10.9.0.1:5555', '--identity', 'spiffe://cluster.local/ns/default/sa/sleep'];
  const cases: [string, string[], number, unknown][] = [
    ['the only workload with the IP, in net1', ['--dst', '10.1.0.1:80'], 0,
      { allowed: true, reason: 'no allow policies', policy: null, dryRun: [{ policy: 'default/try-deny', wouldAllow: false }] }],
    ['--network net1', ['--dst', '10.1.0.1:80', '--network', 'net1'], 0,
      { allowed: true, reason: 'no allow policies', policy: null, dryRun: [{ policy: 'default/try-deny', wouldAllow: false }] }],
    ['--network net2 picks the workload there', ['--dst', '10.1.0.2:80', '--network', 'net2'], 1,
      { allowed: false, reason: 'explicitly denied by: locked/deny-all', policy: 'locked/deny-all' }],
  ];
  for (const [name, args, code, json] of cases) {
    const r = await run(['authz', '--config', NETS, ...sleep, ...args]);
    t.equal(r.code, code, `${name}: exit code`);
    t.same(JSON.parse(r.out), json, name);
  }
  const plain = await run(['authz', '--config', NETS, '--src', '10.9.0.1:5555', '--dst', '10.1.0.1:80']);
  t.same(JSON.parse(plain.out), { allowed: true, reason: 'no allow policies', policy: null }, 'no dryRun key when no dry-run policy would change the outcome');
  const bad: [string, string[], RegExp][] = [
    ['ambiguous', ['--dst', '10.1.0.2:80'], /--dst 10\.1\.0\.2: workloads in several networks have this IP \("net1", "net2"\): give --network/],
    ['not in the default network', ['--dst', '10.1.0.1:80', '--network', ''], /--dst 10\.1\.0\.1: no workload has this IP in network ""/],
  ];
  for (const [name, args, re] of bad) {
    const r = await run(['authz', '--config', NETS, ...sleep, ...args]);
    t.equal(r.code, 2, `${name}: exit 2`);
    t.match(r.err, re, name);
    t.equal(r.out, '', `${name}: nothing on stdout`);
  }
});
