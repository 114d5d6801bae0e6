/**
 * An HTTP load client as a child process, so the load can start inside a pod's network namespace
 * (`ip netns exec <pod> node dist/bench/lib/load-runner.js '<json>'`): the bench process itself
 * stays in the root namespace, where the pod IPs are not reachable. Prints one JSON line.
 *   {"tool":"node", host, port, seconds, concurrency, rate?, newConnEach?}  → LoadResult (http-client.ts)
 *   {"tool":"autocannon", host, port, seconds, connections}              → AutocannonSummary
 * Bounded like the in-process clients: http-client.ts ends at its own deadline + 10 s, autocannon
 * is given 30 s past its duration before this process exits with an error.
 */
import autocannon from 'autocannon';
import { load, type LoadOpts, type LoadResult } from './http-client';

export type RunnerSpec =
  | ({ readonly tool: 'node' } & LoadOpts)
  | { readonly tool: 'autocannon'; readonly host: string; readonly port: number; readonly seconds: number; readonly connections: number };

/** The part of autocannon's result the bench reports. */
export interface AutocannonSummary {
  readonly requests: number;
  readonly duration: number;
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  readonly errors: number;
  readonly non2xx: number;
}

export function runAutocannon(host: string, port: number, seconds: number, connections: number): Promise<AutocannonSummary> {
  return new Promise((res, rej) => {
    const kill = setTimeout(() => rej(new Error(`autocannon did not finish within ${seconds + 30} s`)), (seconds + 30) * 1000);
    autocannon({ url: `http://${host}:${port}/`, connections, duration: seconds, pipelining: 1, timeout: 5 }, (err, r) => {
      clearTimeout(kill);
      if (err) return rej(err);
      res({ requests: r.requests.total, duration: r.duration, p50: r.latency.p50, p90: r.latency.p90, p99: r.latency.p99, errors: r.errors, non2xx: r.non2xx });
    });
  });
}

async function main(spec: RunnerSpec): Promise<LoadResult | AutocannonSummary> {
  if (spec.tool === 'autocannon') return runAutocannon(spec.host, spec.port, spec.seconds, spec.connections);
  if (spec.tool === 'node') return load(spec);
  throw new Error(`load-runner: unknown tool ${JSON.stringify((spec as { tool: unknown }).tool)}`);
}

if (require.main === module) {
  main(JSON.parse(process.argv[2] ?? '{}') as RunnerSpec).then(
    (r) => {
      process.stdout.write(JSON.stringify(r) + '\n');
      process.exit(0);
    },
    (err: unknown) => {
      process.stderr.write(`load-runner: ${(err as Error).stack ?? String(err)}\n`);
      process.exit(1);
    },
  );
}
