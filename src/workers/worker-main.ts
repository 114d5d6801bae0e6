/**
 * The worker thread's entry file (the supervisor resolves it as WORKER_ENTRY). All logic lives in
 * worker-runtime.ts; this file only connects it to the thread's parent port.
 */
import { isMainThread, parentPort } from 'node:worker_threads';
import { runWorker } from './worker-runtime';

if (!isMainThread && parentPort !== null) runWorker(parentPort, (code) => process.exit(code));
