/** The logging the proxy data path needs; pino's Logger satisfies it (use the `proxy` target). */
export interface ProxyLog {
  debug(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

function nothing(): void {}

/** For callers (and tests) that do not log. */
export const NO_LOG: ProxyLog = Object.freeze({ debug: nothing, info: nothing, warn: nothing });
