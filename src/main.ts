#!/usr/bin/env node
/**
 * The only place that reads process.env/argv, installs signal handlers and sets the exit code.
 * Everything below takes these as injected values.
 */
import { runCli } from './cli/run';

void runCli(process.argv.slice(2), {
  env: process.env,
  out: (text) => void process.stdout.write(text),
  err: (text) => void process.stderr.write(text),
}, {
  onSignal: (handler) => {
    process.on('SIGTERM', () => handler('SIGTERM'));
    process.on('SIGINT', () => handler('SIGINT'));
  },
}).then(
  (code) => {
    process.exitCode = code;
    // Exit explicitly once stdout/stderr are flushed instead of letting the process end on its own:
    // after HTTP/2 streams were reset by peers, Node 20's exit cleanup (Environment::CleanupHandles)
    // can spin at 100% CPU forever (nodejs/node#47748), so a drained proxy would never exit
    // before the SIGKILL. Found by test/integration/overload.test.ts's harness.
    process.stdout.write('', () => process.stderr.write('', () => process.exit(code)));
  },
  (err: unknown) => {
    process.stderr.write(`ztunnel-ts: ${(err as Error)?.stack ?? String(err)}\n`);
    process.exitCode = 1;
  },
);
