// `npm run demo` is documented in the README: run it as a user would and check what it reports.
// The bundled example snapshot lives on 127.100.0.0/24 (and its VIP on 127.100.1.1), so this file
// owns that block; no other test may start the embedded default on node `local` (proxy-smoke runs
// it as another node, so none of those workloads is local and nothing binds there).
import t from 'tap';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { loopbackBlock } from '../helpers/loopback';

loopbackBlock(100, 0);

t.test('the demo shows tunnelled, plain, passthrough and refused connections with reasons', async (t) => {
  const out = await new Promise<string>((resolve, reject) =>
    execFile(process.execPath, [join(__dirname, '..', '..', 'src', 'demo.js')], { timeout: 60_000 }, (err, stdout, stderr) =>
      err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout),
    ),
  );
  // one block per case: a line indented by two spaces, then its more-indented detail lines
  const blocks = out.split(/\n(?=  \S)/);
  const block = (title: string): string => blocks.find((b) => b.trimStart().startsWith(title)) ?? `(no case "${title}" in:\n${out})`;
  t.match(block('sleep → echo service VIP'), /OK through an HBONE tunnel to 127\.100\.0\.3:15008 as spiffe:\/\/cluster\.local\/ns\/default\/sa\/echo\n\s+app replied: echo got "hi"/);
  t.match(block('sleep → echo by hostname'), /OK through an HBONE tunnel/);
  t.match(block('notsleep → echo service VIP'), /REFUSED \(SOCKS reply 2\)\n\s+why: denied by policy: explicitly denied by: default\/deny-notsleep/);
  t.match(block('sleep → legacy TCP workload'), /OK as plain TCP[\s\S]*legacy got "hi"/);
  t.match(block('sleep → outside the mesh'), /OK passed through[\s\S]*outside got "hi"/);
  t.match(block('unknown source → echo'), /REFUSED[\s\S]*not a known local workload/);
});
