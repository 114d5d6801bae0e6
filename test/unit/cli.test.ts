import t from 'tap';
import { mkdtempSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCli } from '../../src/cli/run';

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
