/**
 * The addon's error convention, turned into Node's: native calls return a value, or `-errno`
 * (single system call, the caller names it), or `[-errno, 'syscall']` (several system calls, the
 * addon names the one that failed). errnoError builds the same shape Node's own socket errors
 * have ({code: 'EBADF', errno: -9, syscall: 'setsockopt'}, message "setsockopt EBADF"), so callers
 * handle native and libuv failures alike.
 */
import { getSystemErrorName } from 'node:util';

export interface ErrnoDetail {
  /** address/port the call was about, as Node adds to bind/connect errors */
  address?: string;
  port?: number;
}

export function errnoError(errno: number, syscall: string, detail: ErrnoDetail = {}): NodeJS.ErrnoException {
  const code = getSystemErrorName(errno);
  let where = '';
  if (detail.address !== undefined) where = detail.port !== undefined ? ` ${detail.address}:${detail.port}` : ` ${detail.address}`;
  const err: NodeJS.ErrnoException & ErrnoDetail = new Error(`${syscall} ${code}${where}`);
  err.errno = errno;
  err.code = code;
  err.syscall = syscall;
  if (detail.address !== undefined) err.address = detail.address;
  if (detail.port !== undefined) err.port = detail.port;
  return err;
}

/** A failed native result: a negative number or a [-errno, syscall] pair. */
export type NativeFailure = number | readonly [number, string];

/**
 * Returns `ret` when it is a success value, throws the Node-style error otherwise. `syscall` names
 * the call for bare `-errno` results.
 */
export function checkNative<T>(ret: T | NativeFailure, syscall: string, detail?: ErrnoDetail): T {
  if (typeof ret === 'number' && ret < 0) throw errnoError(ret, syscall, detail);
  if (Array.isArray(ret) && typeof ret[0] === 'number' && ret[0] < 0) throw errnoError(ret[0], String(ret[1]), detail);
  return ret as T;
}
