/**
 * The container image and the kind scripts, checked without Docker or a cluster: the Dockerfile's
 * stages, entrypoint and runtime layout against package.json and the paths the code resolves at
 * run time, the build context (.dockerignore), the scripts' syntax, the kind cluster shape.
 */
import t from 'tap';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, posix, relative } from 'node:path';
import { spawnSync } from 'node:child_process';
import YAML from 'yaml';
import { EMBEDDED_SNAPSHOT } from '../../../src/control-plane';
import { DEFAULT_ADDON_PATH } from '../../../src/native/addon';
import { WORKER_ENTRY } from '../../../src/workers/supervisor';
import { runCli } from '../../../src/cli/run';

const ROOT = join(__dirname, '..', '..', '..', '..');
const KIND = join(ROOT, 'deploy', 'kind');
const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { main: string; bin: Record<string, string>; engines: { node: string } };

interface Instr {
  readonly op: string;
  readonly args: string;
}
interface Stage {
  readonly from: string;
  readonly name: string | null;
  readonly instrs: Instr[];
}

/** Instructions by stage: comments dropped, `\` continuations joined, ARG defaults substituted into FROM. */
function parseDockerfile(text: string): { stages: Stage[]; args: Record<string, string> } {
  const lines: string[] = [];
  let cur = '';
  for (const raw of text.split('\n')) {
    if (/^\s*#/.test(raw)) continue;
    const cont = /\\\s*$/.test(raw);
    cur += (cur === '' ? '' : ' ') + raw.replace(/\\\s*$/, '').trim();
    if (!cont) {
      if (cur.trim() !== '') lines.push(cur.trim());
      cur = '';
    }
  }
  const args: Record<string, string> = {};
  const stages: Stage[] = [];
  for (const line of lines) {
    const m = /^(\S+)\s+([\s\S]*)$/.exec(line)!;
    const op = m[1]!.toUpperCase();
    const rest = m[2]!;
    if (op === 'ARG' && stages.length === 0) {
      const [k, v] = rest.split('=');
      args[k!] = v ?? '';
    } else if (op === 'FROM') {
      const f = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(rest)!;
      const from = f[1]!.replace(/\$\{(\w+)\}/g, (_, k: string) => args[k] ?? '');
      stages.push({ from, name: f[2] ?? null, instrs: [] });
    } else {
      stages[stages.length - 1]!.instrs.push({ op, args: rest });
    }
  }
  return { stages, args };
}

const dockerfile = parseDockerfile(readFileSync(join(ROOT, 'deploy', 'Dockerfile'), 'utf8'));
const [build, runtime] = dockerfile.stages;
const all = (s: Stage, op: string): string[] => s.instrs.filter((i) => i.op === op).map((i) => i.args);
const one = (s: Stage, op: string): string => {
  const found = all(s, op);
  if (found.length !== 1) throw new Error(`expected one ${op}, found ${found.length}`);
  return found[0]!;
};
const copies = (s: Stage): { from: string | null; srcs: string[]; dest: string }[] =>
  all(s, 'COPY').map((a) => {
    const words = a.split(/\s+/);
    const from = words[0]!.startsWith('--from=') ? words.shift()!.slice('--from='.length) : null;
    const dest = words.pop()!;
    return { from, srcs: words, dest };
  });

t.test('two stages on node 20 bookworm-slim: the build one compiles, the runtime one only copies', async (t) => {
  t.equal(dockerfile.stages.length, 2);
  t.equal(build!.name, 'build');
  t.equal(build!.from, 'node:20-bookworm-slim');
  t.equal(runtime!.from, 'node:20-bookworm-slim');
  t.ok(Number(/^>=(\d+)/.exec(pkg.engines.node)![1]) <= 20, 'the image Node satisfies package.json engines');
  const run = all(build!, 'RUN').join('\n');
  t.match(run, /apt-get install -y --no-install-recommends g\+\+ make python3/);
  t.match(run, /npm ci\b/);
  t.match(run, /npm run install\b/, 'the addon: the install script npm ci would run');
  t.match(run, /npm run build\b/);
  t.match(run, /npm prune --omit=dev/);
  t.match(all(build!, 'ENV').join('\n'), /npm_config_nodedir=\/usr\/local/, 'local headers, never downloaded');
  t.same(all(runtime!, 'RUN'), [], 'nothing is built or installed in the runtime stage');
});

t.test('the entrypoint is the package bin, and Istio chart arguments are the default command', async (t) => {
  const workdir = one(runtime!, 'WORKDIR');
  t.equal(workdir, '/app');
  const entry = JSON.parse(one(runtime!, 'ENTRYPOINT')) as string[];
  t.equal(entry[0], 'node');
  const script = relative(workdir, entry[1]!);
  t.equal(script, pkg.bin['ztunnel-ts']);
  t.equal(script, pkg.main);
  t.ok(existsSync(join(ROOT, script)), `${script} is what npm run build produces`);
  t.ok(existsSync(join(ROOT, 'src', 'main.ts')));
  t.same(JSON.parse(one(runtime!, 'CMD')), ['proxy', 'ztunnel']);
  t.match(readFileSync(join(ROOT, 'deploy', 'manifests', 'daemonset.yaml'), 'utf8'), /args: \["proxy", "ztunnel"\]/);
  let out = '';
  await runCli(['help'], { env: {}, out: (s) => void (out += s), err: () => undefined }, { onSignal: () => undefined });
  t.match(out, /proxy \[ztunnel\]/);
  t.match(out, /kube-snapshot FILE/, 'gen-snapshot.sh runs this command from the image');
});

t.test('the runtime stage holds every file the code resolves at run time', async (t) => {
  // relative destinations are relative to WORKDIR
  const workdir = one(runtime!, 'WORKDIR');
  const dests = copies(runtime!).map((c) => posix.resolve(workdir, c.dest));
  const inImage = (p: string): boolean => dests.some((d) => p === d || p.startsWith(`${d}/`));
  const needed = [
    ['entrypoint', join(ROOT, pkg.main)],
    ['worker entry', WORKER_ENTRY],
    ['native addon', DEFAULT_ADDON_PATH],
    ['embedded snapshot', EMBEDDED_SNAPSHOT],
    ['package.json (version)', join(ROOT, 'package.json')],
    ['production node_modules', join(ROOT, 'node_modules', 'pino', 'package.json')],
  ] as const;
  for (const [what, abs] of needed) {
    const rel = relative(ROOT, abs);
    t.notOk(rel.startsWith('..'), `${what} is inside the repository`);
    t.ok(inImage(`/app/${rel}`), `${what}: /app/${rel} is copied`);
  }
  const gyp = JSON.parse(readFileSync(join(ROOT, 'native', 'binding.gyp'), 'utf8')) as { targets: { target_name: string }[] };
  t.match(relative(ROOT, DEFAULT_ADDON_PATH), `native/build/Release/${gyp.targets[0]!.target_name}.node`);
  for (const c of copies(runtime!)) {
    if (c.from !== null) t.equal(c.from, 'build', `${c.dest} comes from the build stage`);
  }
  t.equal(one(runtime!, 'USER'), '0', 'root, as ztunnel runs (the DaemonSet drops all but three capabilities)');
  t.same(one(runtime!, 'EXPOSE').split(/\s+/), ['15001', '15006', '15008', '15020', '15021']);
});

/** .dockerignore as Docker applies it: the last matching pattern wins; a pattern matching a parent folder matches its files. */
function ignored(patterns: string[], path: string): boolean {
  const re = (p: string): RegExp => new RegExp(`^${p.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*').replace(/\?/g, '[^/]')}$`);
  const prefixes = path.split('/').map((_, i, parts) => parts.slice(0, i + 1).join('/'));
  let out = false;
  for (const raw of patterns) {
    const neg = raw.startsWith('!');
    const p = (neg ? raw.slice(1) : raw).replace(/\/$/, '');
    if (prefixes.some((pre) => re(p).test(pre))) out = !neg;
  }
  return out;
}

t.test('the build context has the sources and none of the host build output', async (t) => {
  const patterns = readFileSync(join(ROOT, '.dockerignore'), 'utf8')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
  for (const c of [...copies(build!), ...copies(runtime!)].filter((x) => x.from === null)) {
    for (const src of c.srcs) {
      const p = src.replace(/\/$/, '');
      t.ok(existsSync(join(ROOT, p)), `COPY ${src} exists`);
      t.notOk(ignored(patterns, p), `COPY ${src} is in the context`);
    }
  }
  for (const p of ['src/main.ts', 'native/binding.gyp', 'native/src/relay.cc', 'native/build.js', 'package-lock.json']) t.notOk(ignored(patterns, p), `${p} sent`);
  for (const p of ['node_modules/pino/package.json', 'dist/src/main.js', 'native/build/Release/ztunnel_native.node', '.git/HEAD', 'test/unit/cli.test.ts', 'deploy/Dockerfile'])
    t.ok(ignored(patterns, p), `${p} left out`);
});

t.test('scripts: bash syntax, strict mode, executable, paths that exist', async (t) => {
  const scripts = readdirSync(KIND).filter((f) => f.endsWith('.sh'));
  t.same(scripts.sort(), ['gen-snapshot.sh', 'up.sh']);
  const shellcheck = spawnSync('shellcheck', ['--version'], { encoding: 'utf8' }).status === 0;
  for (const f of scripts) {
    const file = join(KIND, f);
    const text = readFileSync(file, 'utf8');
    t.ok(text.startsWith('#!/usr/bin/env bash\n'), `${f}: bash shebang`);
    t.match(text, /\nset -euo pipefail\n/, `${f}: stops at the first failure`);
    t.ok((statSync(file).mode & 0o111) !== 0, `${f}: executable`);
    const syntax = spawnSync('bash', ['-n', file], { encoding: 'utf8' });
    t.equal(syntax.status, 0, `${f}: bash -n ${syntax.stderr}`);
    // shellcheck is optional here (CI installs only what the suite needs); when present it must be clean
    if (shellcheck) {
      const sc = spawnSync('shellcheck', [file], { encoding: 'utf8' });
      t.equal(sc.status, 0, `${f}: shellcheck ${sc.stdout}`);
    }
    for (const m of text.matchAll(/"\$ROOT\/([^"]+)"/g)) t.ok(existsSync(join(ROOT, m[1]!)), `${f}: ${m[1]} exists`);
  }
  // a deliberately broken script must fail the same check (the check is real)
  const broken = spawnSync('bash', ['-n', '-c', 'if true; then echo'], { encoding: 'utf8' });
  t.not(broken.status, 0);
});

t.test('kind cluster: one control plane, two workers, the name up.sh uses', async (t) => {
  const cluster = YAML.parse(readFileSync(join(KIND, 'cluster.yaml'), 'utf8')) as { kind: string; apiVersion: string; name: string; nodes: { role: string }[]; networking: { ipFamily: string } };
  t.equal(cluster.kind, 'Cluster');
  t.equal(cluster.apiVersion, 'kind.x-k8s.io/v1alpha4');
  t.same(cluster.nodes.map((n) => n.role), ['control-plane', 'worker', 'worker']);
  t.same(Object.keys(cluster).sort(), ['apiVersion', 'kind', 'name', 'networking', 'nodes']);
  t.match(readFileSync(join(KIND, 'up.sh'), 'utf8'), new RegExp(`CLUSTER="\\$\\{CLUSTER:-${cluster.name}\\}"`));
  t.equal(cluster.networking.ipFamily, 'ipv4');
  t.match(readFileSync(join(ROOT, 'deploy', 'manifests', 'daemonset.yaml'), 'utf8'), /name: IPV6_ENABLED\n\s+value: "false"/, 'IPv4-only cluster, IPv4 listeners');
});

t.test('walkthrough: deploy/README.md says what was and was not run here, and the README points at it', async (t) => {
  const walk = readFileSync(join(ROOT, 'deploy', 'README.md'), 'utf8');
  t.match(walk, /no Docker daemon and no Kubernetes cluster/i);
  for (const step of ['deploy/kind/up.sh', 'deploy/kind/gen-snapshot.sh', '/config_dump', 'helm install istio-cni', 'kubectl -n demo exec']) t.ok(walk.includes(step), `mentions ${step}`);
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  t.match(readme, /\n## Deploy on kind\n[\s\S]*deploy\/README\.md/);
});
