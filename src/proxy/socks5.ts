/**
 * SOCKS5 (RFC 1928) as ztunnel's :15080 speaks it: no authentication, CONNECT only, IPv4 / IPv6 /
 * domain-name destinations. This module is the wire protocol only — parse the greeting and the
 * request from a paused socket, write replies; what happens to the destination is the outbound
 * handler's business.
 */
import type { Socket } from 'node:net';
import { ProxyError } from '../errors';
import { ipFamily } from '../net/ip';

export const SOCKS_VERSION = 5;

/** RFC 1928 §6 reply codes. */
export const SocksReply = {
  SUCCEEDED: 0x00,
  GENERAL_FAILURE: 0x01,
  NOT_ALLOWED: 0x02,
  NETWORK_UNREACHABLE: 0x03,
  HOST_UNREACHABLE: 0x04,
  CONNECTION_REFUSED: 0x05,
  COMMAND_NOT_SUPPORTED: 0x07,
  ADDRESS_TYPE_NOT_SUPPORTED: 0x08,
} as const;

export type SocksDestination =
  | { readonly kind: 'ip'; readonly ip: string; readonly port: number }
  | { readonly kind: 'domain'; readonly host: string; readonly port: number };

/** Result of parsing a buffer prefix: need more bytes, a value plus bytes consumed, or an error. */
export type Parsed<T> =
  | { readonly state: 'more' }
  | { readonly state: 'done'; readonly value: T; readonly used: number }
  | { readonly state: 'error'; readonly reply: number; readonly message: string };

/** Greeting: VER NMETHODS METHODS… — we accept only "no authentication" (0x00). */
export function parseGreeting(buf: Buffer): Parsed<{ noAuth: boolean }> {
  if (buf.length < 2) return { state: 'more' };
  if (buf[0] !== SOCKS_VERSION) {
    return { state: 'error', reply: SocksReply.GENERAL_FAILURE, message: `unsupported SOCKS version ${buf[0]}` };
  }
  const n = buf[1]!;
  if (buf.length < 2 + n) return { state: 'more' };
  const methods = buf.subarray(2, 2 + n);
  return { state: 'done', value: { noAuth: methods.includes(0x00) }, used: 2 + n };
}

/** Request: VER CMD RSV ATYP DST.ADDR DST.PORT. */
export function parseRequest(buf: Buffer): Parsed<SocksDestination> {
  if (buf.length < 4) return { state: 'more' };
  if (buf[0] !== SOCKS_VERSION) {
    return { state: 'error', reply: SocksReply.GENERAL_FAILURE, message: `unsupported SOCKS version ${buf[0]}` };
  }
  if (buf[1] !== 0x01) {
    return { state: 'error', reply: SocksReply.COMMAND_NOT_SUPPORTED, message: `unsupported SOCKS command ${buf[1]} (only CONNECT)` };
  }
  const atyp = buf[3];
  let addrEnd: number;
  let dest: (port: number) => SocksDestination;
  if (atyp === 0x01) {
    addrEnd = 8;
    if (buf.length < addrEnd + 2) return { state: 'more' };
    const ip = `${buf[4]}.${buf[5]}.${buf[6]}.${buf[7]}`;
    dest = (port) => ({ kind: 'ip', ip, port });
  } else if (atyp === 0x04) {
    addrEnd = 20;
    if (buf.length < addrEnd + 2) return { state: 'more' };
    const words: string[] = [];
    for (let i = 4; i < 20; i += 2) words.push(buf.readUInt16BE(i).toString(16));
    const ip = words.join(':');
    dest = (port) => ({ kind: 'ip', ip, port });
  } else if (atyp === 0x03) {
    if (buf.length < 5) return { state: 'more' };
    const len = buf[4]!;
    addrEnd = 5 + len;
    if (buf.length < addrEnd + 2) return { state: 'more' };
    const host = buf.toString('latin1', 5, addrEnd);
    if (len === 0 || !/^[A-Za-z0-9.-]+$/.test(host)) {
      return { state: 'error', reply: SocksReply.HOST_UNREACHABLE, message: `bad SOCKS domain name ${JSON.stringify(host)}` };
    }
    dest = (port) => (ipFamily(host) !== null ? { kind: 'ip', ip: host, port } : { kind: 'domain', host, port });
  } else {
    return { state: 'error', reply: SocksReply.ADDRESS_TYPE_NOT_SUPPORTED, message: `unsupported SOCKS address type ${atyp}` };
  }
  const port = buf.readUInt16BE(addrEnd);
  if (port === 0) return { state: 'error', reply: SocksReply.HOST_UNREACHABLE, message: 'SOCKS destination port 0' };
  return { state: 'done', value: dest(port), used: addrEnd + 2 };
}

/** VER REP RSV ATYP BND.ADDR BND.PORT — we report 0.0.0.0:0 as the bound address, as ztunnel does. */
export function encodeReply(code: number): Buffer {
  return Buffer.from([SOCKS_VERSION, code, 0x00, 0x01, 0, 0, 0, 0, 0, 0]);
}

/**
 * Reads a greeting and a request from `socket` (paused, nothing consumed yet), answering the
 * greeting. Resolves with the destination; bytes the client sent after the request are pushed
 * back with unshift so the relay sees them. Rejects with ERR_SOCKS (after writing the reply the
 * RFC asks for) on bad input, or when the socket ends first.
 */
export function negotiate(socket: Socket): Promise<SocksDestination> {
  return new Promise((resolve, reject) => {
    let buf: Buffer = Buffer.alloc(0);
    let phase: 'greeting' | 'request' = 'greeting';
    const fail = (reply: number | null, message: string): void => {
      cleanup();
      if (reply !== null) {
        // a greeting error gets "no acceptable methods"; a request error gets its reply code
        socket.end(phase === 'greeting' ? Buffer.from([SOCKS_VERSION, 0xff]) : encodeReply(reply));
      }
      reject(new ProxyError('ERR_SOCKS', message));
    };
    const onData = (chunk: Buffer): void => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      if (phase === 'greeting') {
        const g = parseGreeting(buf);
        if (g.state === 'more') return;
        if (g.state === 'error') return fail(g.reply, g.message);
        if (!g.value.noAuth) return fail(SocksReply.GENERAL_FAILURE, 'SOCKS client offers no "no authentication" method');
        socket.write(Buffer.from([SOCKS_VERSION, 0x00]));
        buf = buf.subarray(g.used);
        phase = 'request';
      }
      const r = parseRequest(buf);
      if (r.state === 'more') return;
      if (r.state === 'error') return fail(r.reply, r.message);
      cleanup();
      socket.pause();
      const rest = buf.subarray(r.used);
      if (rest.length > 0) socket.unshift(rest);
      resolve(r.value);
    };
    const onEnd = (): void => fail(null, `SOCKS client closed during the ${phase}`);
    const onError = (err: Error): void => fail(null, `SOCKS client socket error during the ${phase}: ${err.message}`);
    function cleanup(): void {
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.off('error', onError);
    }
    socket.on('data', onData);
    socket.once('end', onEnd);
    socket.once('error', onError);
    socket.resume();
  });
}
