/**
 * ProxyError: every error we raise carries a stable `code` (like undici's UND_ERR_*), so callers,
 * tests and the metrics/HBONE status mapping switch on codes, never on messages.
 * Messages are written for operators: they name the thing that is wrong and what was expected.
 */
export class ProxyError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ProxyError';
    this.code = code;
  }
}

export function isProxyError(err: unknown, code?: string): err is ProxyError {
  return err instanceof ProxyError && (code === undefined || err.code === code);
}
