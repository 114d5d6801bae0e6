import t from 'tap';
import { encodeReply, parseGreeting, parseRequest, SocksReply } from '../../../src/proxy/socks5';

const b = (...bytes: number[]): Buffer => Buffer.from(bytes);

t.test('parseGreeting', async (t) => {
  const cases: [string, Buffer, unknown][] = [
    ['empty', b(), { state: 'more' }],
    ['version only', b(5), { state: 'more' }],
    ['methods truncated', b(5, 2, 0), { state: 'more' }],
    ['no-auth offered', b(5, 2, 2, 0), { state: 'done', value: { noAuth: true }, used: 4 }],
    ['only user/pass', b(5, 1, 2), { state: 'done', value: { noAuth: false }, used: 3 }],
    ['zero methods', b(5, 0), { state: 'done', value: { noAuth: false }, used: 2 }],
    ['SOCKS4', b(4, 1, 0), { state: 'error', reply: SocksReply.GENERAL_FAILURE, message: 'unsupported SOCKS version 4' }],
  ];
  for (const [name, buf, want] of cases) t.same(parseGreeting(buf), want, name);
});

t.test('parseRequest', async (t) => {
  const v6 = Buffer.alloc(16);
  v6.writeUInt16BE(0x2001, 0);
  v6.writeUInt16BE(0x0db8, 2);
  v6.writeUInt16BE(1, 14);
  const host = Buffer.from('echo.default.svc.cluster.local', 'latin1');
  const cases: [string, Buffer, unknown][] = [
    ['short', b(5, 1, 0), { state: 'more' }],
    ['ipv4 truncated', b(5, 1, 0, 1, 10, 0), { state: 'more' }],
    ['ipv4', b(5, 1, 0, 1, 10, 0, 0, 7, 0x1f, 0x90), { state: 'done', value: { kind: 'ip', ip: '10.0.0.7', port: 8080 }, used: 10 }],
    ['ipv4 + early data', b(5, 1, 0, 1, 10, 0, 0, 7, 0, 80, 0x47), { state: 'done', value: { kind: 'ip', ip: '10.0.0.7', port: 80 }, used: 10 }],
    ['ipv6', Buffer.concat([b(5, 1, 0, 4), v6, b(0, 80)]), { state: 'done', value: { kind: 'ip', ip: '2001:db8:0:0:0:0:0:1', port: 80 }, used: 22 }],
    ['domain', Buffer.concat([b(5, 1, 0, 3, host.length), host, b(0, 80)]), { state: 'done', value: { kind: 'domain', host: 'echo.default.svc.cluster.local', port: 80 }, used: 7 + host.length }],
    ['domain that is an IP', Buffer.concat([b(5, 1, 0, 3, 8), Buffer.from('10.1.2.3'), b(0, 80)]), { state: 'done', value: { kind: 'ip', ip: '10.1.2.3', port: 80 }, used: 15 }],
    ['domain truncated', b(5, 1, 0, 3, 10, 0x61), { state: 'more' }],
    ['empty domain', b(5, 1, 0, 3, 0, 0, 80), { state: 'error', reply: SocksReply.HOST_UNREACHABLE, message: 'bad SOCKS domain name ""' }],
    ['bad domain chars', Buffer.concat([b(5, 1, 0, 3, 3), Buffer.from('a b'), b(0, 80)]), { state: 'error', reply: SocksReply.HOST_UNREACHABLE, message: 'bad SOCKS domain name "a b"' }],
    ['BIND', b(5, 2, 0, 1, 10, 0, 0, 7, 0, 80), { state: 'error', reply: SocksReply.COMMAND_NOT_SUPPORTED, message: 'unsupported SOCKS command 2 (only CONNECT)' }],
    ['UDP ASSOCIATE', b(5, 3, 0, 1, 10, 0, 0, 7, 0, 80), { state: 'error', reply: SocksReply.COMMAND_NOT_SUPPORTED, message: 'unsupported SOCKS command 3 (only CONNECT)' }],
    ['bad atyp', b(5, 1, 0, 9, 0, 0), { state: 'error', reply: SocksReply.ADDRESS_TYPE_NOT_SUPPORTED, message: 'unsupported SOCKS address type 9' }],
    ['bad version', b(4, 1, 0, 1), { state: 'error', reply: SocksReply.GENERAL_FAILURE, message: 'unsupported SOCKS version 4' }],
    ['port 0', b(5, 1, 0, 1, 10, 0, 0, 7, 0, 0), { state: 'error', reply: SocksReply.HOST_UNREACHABLE, message: 'SOCKS destination port 0' }],
  ];
  for (const [name, buf, want] of cases) t.same(parseRequest(buf), want, name);
});

t.test('encodeReply', async (t) => {
  t.same([...encodeReply(SocksReply.SUCCEEDED)], [5, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
  t.same([...encodeReply(SocksReply.NOT_ALLOWED)], [5, 2, 0, 1, 0, 0, 0, 0, 0, 0]);
});
