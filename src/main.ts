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
  },
  (err: unknown) => {
    process.stderr.write(`ztunnel-ts: ${(err as Error)?.stack ?? String(err)}\n`);
    process.exitCode = 1;
  },
);
