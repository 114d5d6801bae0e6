/**
 * Readiness (:15021 `GET /healthz/ready`, ZTUNNEL-FACTS "Ports"): 200 `ready\n` once every
 * registered start-up task is done; otherwise 500 `not ready, pending: a, b\n`. As in ztunnel the
 * start-up tasks are one-shot (a task, once done, stays done); a drain makes the proxy not ready
 * again for good, so that nothing new is sent to a proxy on its way out.
 *
 * Invariant: ready() ⇔ no task pending and not draining.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { pathOf, send } from './http';

export const READINESS_PATH = '/healthz/ready';
const DRAINING = 'draining';

export class Readiness {
  private readonly pendingTasks = new Set<string>();
  private draining = false;

  /** Adds a start-up task; call the returned function when it is done (idempotent). */
  register(task: string): () => void {
    this.pendingTasks.add(task);
    return () => {
      this.pendingTasks.delete(task);
    };
  }

  /** The proxy is shutting down: not ready from now on. */
  markDraining(): void {
    this.draining = true;
  }

  pending(): string[] {
    const out = [...this.pendingTasks].sort();
    if (this.draining) out.push(DRAINING);
    return out;
  }

  ready(): boolean {
    return this.pending().length === 0;
  }
}

export function readinessHandler(readiness: Readiness): (req: IncomingMessage, res: ServerResponse) => void {
  return (req, res) => {
    if (pathOf(req) !== READINESS_PATH) return send(res, 404, 'not found\n');
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(res, 405, `method ${req.method ?? ''} not allowed: use GET ${READINESS_PATH}\n`, { allow: 'GET' });
    const pending = readiness.pending();
    if (pending.length === 0) return send(res, 200, 'ready\n');
    send(res, 500, `not ready, pending: ${pending.join(', ')}\n`);
  };
}
