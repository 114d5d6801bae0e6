/**
 * Certificate issuance (src/identity): how long the local CA takes to issue one workload leaf
 * (ECDSA P-256 key generation + X.509 build + signature), sequentially and with 8 in flight, and
 * how long building a TLS context from a leaf takes (done once per identity, per worker).
 *
 *   node dist/bench/cert-issuance.js [--seconds 2]
 *
 * Each measurement runs for --seconds (bounded to 10).
 */
import { createSecureContext } from 'node:tls';
import { LocalCa } from '../src/identity/ca';
import type { Identity } from '../src/identity/spiffe';

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(`--${name}`);
  const v = i < 0 ? NaN : Number(process.argv[i + 1]);
  return Number.isFinite(v) && v > 0 ? v : dflt;
}

const SECONDS = Math.min(arg('seconds', 2), 10);
const DAY = 24 * 3600 * 1000;

const id = (n: number): Identity => ({ trustDomain: 'cluster.local', namespace: `ns-${n % 400}`, serviceAccount: `sa-${n}` });

async function measure(concurrency: number, ca: LocalCa): Promise<{ perSec: number; meanMs: number; n: number }> {
  let n = 0;
  const until = Date.now() + SECONDS * 1000;
  const t0 = process.hrtime.bigint();
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (Date.now() < until) await ca.sign(id(n++), DAY);
  }));
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  return { perSec: n / secs, meanMs: (secs * 1000 * concurrency) / n, n };
}

async function main(): Promise<void> {
  const ca = await LocalCa.generate();
  await ca.sign(id(0), DAY); // warm the JIT and WebCrypto
  const seq = await measure(1, ca);
  const par = await measure(8, ca);
  const leaf = await ca.sign(id(1), DAY);
  let ctxN = 0;
  const until = Date.now() + SECONDS * 1000;
  const t0 = process.hrtime.bigint();
  while (Date.now() < until) {
    createSecureContext({ cert: leaf.certPem + leaf.chainPem.join(''), key: leaf.keyPem, ca: leaf.rootsPem.join('') });
    ctxN++;
  }
  const ctxSecs = Number(process.hrtime.bigint() - t0) / 1e9;
  console.log(`cert-issuance bench (node ${process.version}, ${SECONDS}s per measurement)`);
  console.log(`issue 1 leaf, sequential: ${seq.meanMs.toFixed(2)} ms each, ${seq.perSec.toFixed(0)}/s (n=${seq.n})`);
  console.log(`issue leaves, 8 in flight: ${par.perSec.toFixed(0)}/s (n=${par.n})`);
  console.log(`TLS context from a leaf: ${((ctxSecs * 1000) / ctxN).toFixed(3)} ms each (n=${ctxN})`);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
