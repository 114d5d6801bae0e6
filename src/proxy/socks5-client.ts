/** A minimal SOCKS5 client (no auth; CONNECT to an IPv4 address or a domain name), for the demo, tests and bench. */
import { connect, type Socket } from 'node:net';

export class SocksError extends Error {
  constructor(readonly reply: number) {
    super(`SOCKS5 reply ${reply}`);
  }
}

/** Resolves with the connected socket once the proxy replied success; rejects with SocksError(reply). */
export function socksConnect(proxy: { host: string; port: number }, localAddress: string, dst: { host: string; port: number }): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: proxy.host, port: proxy.port, localAddress, allowHalfOpen: true });
    let buf = Buffer.alloc(0);
    let phase = 0;
    const fail = (err: Error): void => {
      s.destroy();
      reject(err);
    };
    s.once('error', fail);
    s.once('connect', () => {
      s.write(Buffer.from([5, 1, 0]));
    });
    const onData = (chunk: Buffer): void => {
      buf = Buffer.concat([buf, chunk]);
      if (phase === 0 && buf.length >= 2) {
        if (buf[1] !== 0) return fail(new SocksError(buf[1]!));
        buf = buf.subarray(2);
        phase = 1;
        const octets = dst.host.split('.');
        const isIp = octets.length === 4 && octets.every((o) => /^\d+$/.test(o));
        const addr = isIp
          ? Buffer.from([1, ...octets.map(Number)])
          : Buffer.concat([Buffer.from([3, dst.host.length]), Buffer.from(dst.host)]);
        const port = Buffer.alloc(2);
        port.writeUInt16BE(dst.port);
        s.write(Buffer.concat([Buffer.from([5, 1, 0]), addr, port]));
      }
      if (phase === 1 && buf.length >= 10) {
        s.off('data', onData);
        s.off('end', onEnd);
        s.off('error', fail);
        if (buf[1] !== 0) return fail(new SocksError(buf[1]!));
        const rest = buf.subarray(10);
        s.pause();
        if (rest.length > 0) s.unshift(rest);
        resolve(s);
      }
    };
    const onEnd = (): void => fail(new Error(`SOCKS5 proxy closed during the handshake (phase ${phase}, ${buf.length} bytes: ${buf.toString('hex')})`));
    s.on('data', onData);
    s.once('end', onEnd);
  });
}
