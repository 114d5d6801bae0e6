/**
 * The admin endpoint (:15000, loopback only — parseConfig refuses anything else), ztunnel's paths:
 *   GET  /              the list of endpoints
 *   GET  /config_dump   workloads, services, policies, certificates, config, version, connections
 *   POST /logging       show or change log levels at run time
 *   POST /quitquitquit  start a drain (the process exits once it is done)
 * A wrong method is answered 405 with what the path accepts; an unknown path 404 with the list.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { LogFilter } from '../config/log-filter';
import { pathOf, queryOf, send, type HttpHandler } from './http';
import { changeLogLevel, LOGGING_HELP, type LogLevels } from './logging';

export interface AdminDeps {
  configDump(): Record<string, unknown> | Promise<Record<string, unknown>>;
  readonly logging: LogLevels;
  /** The filter the process started with (for `POST /logging?reset`). */
  readonly initialLog: LogFilter;
  /** Told about every level change (the worker pool will forward it to every thread). */
  onLogLevels?(filter: LogFilter): void;
  /** Starts the drain; returns at once. */
  quit(): void;
}

interface Route {
  readonly method: 'GET' | 'POST';
  readonly help: string;
  handle(req: IncomingMessage, res: ServerResponse): void | Promise<void>;
}

export function adminHandler(deps: AdminDeps): HttpHandler {
  const routes: Record<string, Route> = {
    '/': { method: 'GET', help: 'this list', handle: (_q, res) => send(res, 200, listing()) },
    '/config_dump': {
      method: 'GET',
      help: 'dump the current ztunnel configuration (workloads, services, policies, certificates, config, connections)',
      handle: async (_q, res) => send(res, 200, `${JSON.stringify(await deps.configDump(), null, 2)}\n`, { 'content-type': 'application/json' }),
    },
    '/logging': {
      method: 'POST',
      help: 'query/change logging levels',
      handle: (req, res) => {
        const answer = changeLogLevel(deps.logging, queryOf(req), deps.initialLog);
        if (answer.changed !== null) deps.onLogLevels?.(answer.changed);
        send(res, answer.status, answer.body);
      },
    },
    '/quitquitquit': {
      method: 'POST',
      help: 'shut down the server (drain live connections, then exit)',
      handle: (_q, res) => {
        deps.quit();
        send(res, 200, 'shutdown now\n');
      },
    },
  };
  const listing = (): string =>
    `ztunnel-ts admin\n\n${Object.entries(routes)
      .map(([path, r]) => `  ${r.method.padEnd(5)}${path.padEnd(15)}${r.help}`)
      .join('\n')}\n`;

  return (req, res) => {
    const path = pathOf(req);
    const route = Object.prototype.hasOwnProperty.call(routes, path) ? routes[path] : undefined;
    if (route === undefined) return send(res, 404, `no such endpoint: ${path}\n\n${listing()}`);
    const method = req.method === 'HEAD' ? 'GET' : req.method;
    if (method !== route.method) {
      const extra = path === '/logging' ? LOGGING_HELP : '';
      return send(res, 405, `Invalid HTTP method ${req.method ?? ''} for ${path}: use ${route.method}\n${extra}\n${listing()}`, { allow: route.method });
    }
    return route.handle(req, res);
  };
}
