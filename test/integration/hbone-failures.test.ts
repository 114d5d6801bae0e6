/**
 * HBONE refusals on loopback 127.5.2.0/24, each checked on both ends: what the client is told
 * (status or error code) and what the server logged. Certificates come from the real LocalCa;
 * the "no client certificate" and "GET" cases use node's own http2/tls clients, since HboneClient
 * cannot be made to misbehave that way.
 */
import t from 'tap';
import * as http2 from 'node:http2';
import * as tls from 'node:tls';
import * as net from 'node:net';
import { loopbackBlock } from '../helpers/loopback';
import { LocalCa } from '../../src/identity/ca';
import { isProxyError } from '../../src/errors';
import { authorize } from '../../src/authz/authorize';
import { HboneStatusError } from '../../src/proxy/hbone-client';
import { TlsContexts } from '../../src/tls/contexts';
import {
  DENY_SLEEP,
  ECHO,
  FOREIGN,
  HOUR,
  SLEEP,
  closed,
  echoServer,
  makeCerts,
  readAll,
  snapshotDoc,
  startHarness,
  type Harness,
} from './hbone-fixtures';

const lb = loopbackBlock(5, 2);

async function rejection(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected a rejection');
}

/** The server's log lines about refused TLS connections, resolved once one is there. */
function tlsRefusals(h: Harness): { code: unknown; reason: unknown }[] {
  return h.logs.filter((l) => l.msg === 'HBONE TLS connection refused').map((l) => ({ code: l.obj['code'], reason: l.obj['reason'] }));
}

/** A raw http2 session to the harness with full control over TLS options. */
function rawSession(h: Harness, tlsOpts: tls.ConnectionOptions): http2.ClientHttp2Session {
  const session = http2.connect(`https://${h.dstIp}:${h.hbonePort}`, {
    createConnection: () => tls.connect({ ...tlsOpts, host: h.dstIp, port: h.hbonePort }),
  });
  session.on('error', () => undefined);
  return session;
}

function rawRequest(session: http2.ClientHttp2Session, headers: http2.OutgoingHttpHeaders): Promise<number | string> {
  return new Promise((resolve) => {
    const req = session.request(headers, { endStream: headers[':method'] !== 'CONNECT' });
    req.on('response', (h) => resolve(Number(h[':status'])));
    req.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
    req.on('close', () => resolve(`closed rst=${req.rstCode}`));
  });
}

t.test('HBONE refusals', async (t) => {
  const certs = await makeCerts();
  const h = await startHarness(lb, { src: 2, dst: 10 }, certs);
  const echo = await echoServer(h.dstIp);
  t.teardown(async () => {
    await echo.close();
    await h.close();
  });
  const client = h.client();

  t.test('denied by policy: 401, the client stream is closed, the reason is logged', async (t) => {
    h.snapshot = snapshotDoc(h.srcIp, h.dstIp, [DENY_SLEEP], 2);
    t.teardown(() => void (h.snapshot = snapshotDoc(h.srcIp, h.dstIp)));
    const err = await rejection(client.connect(h.request(echo.port)));
    t.ok(err instanceof HboneStatusError, 'an HboneStatusError');
    t.match(err, { code: 'ERR_HBONE_STATUS', status: 401 });
    t.equal(client.stats().streams, 0, 'the refused stream was closed and its slot released');
    const line = h.logs.find((l) => l.obj['status'] === 401);
    t.match(line?.obj, { reason: 'denied by policy: explicitly denied by: default/deny-sleep', srcIdentity: 'spiffe://cluster.local/ns/default/sa/sleep' });
    t.equal(h.events.rejected.at(-1)?.status, 401);
    t.equal(echo.sockets.size, 0, 'no upstream connection was made');
  });

  t.test('authority IP other than the listener workload: 400', async (t) => {
    const err = await rejection(client.connect(h.request(echo.port, { authority: `${lb.ip(99)}:${echo.port}` })));
    t.match(err, { code: 'ERR_HBONE_STATUS', status: 400 });
    t.match(h.logs.at(-1)?.obj, { status: 400, reason: `authority IP ${lb.ip(99)} is not this listener's workload IP ${h.dstIp}` });
  });

  const badAuthorities: [string, RegExp][] = [
    [`echo.default.svc:${80}`, /hostnames are not supported/],
    [`${'1.2.3.4'}:0`, /port must be/],
    [`${'1.2.3.4'}`, /expected <ip>:<port>/],
  ];
  for (const [authority, re] of badAuthorities) {
    t.test(`bad authority ${authority}: 400`, async (t) => {
      const err = await rejection(client.connect(h.request(echo.port, { authority })));
      t.match(err, { code: 'ERR_HBONE_STATUS', status: 400 });
      t.match(String(h.logs.at(-1)?.obj['reason']), re);
    });
  }

  t.test('non-CONNECT (a GET from node http2): 400', async (t) => {
    const session = rawSession(h, new TlsContexts().clientTlsOptions(certs.client, [ECHO]));
    t.teardown(() => session.destroy());
    t.equal(await rawRequest(session, { ':method': 'GET', ':path': '/' }), 400);
    t.match(h.logs.at(-1)?.obj, { status: 400, reason: 'method GET is not CONNECT' });
  });

  t.test('no workload at the authority IP in the snapshot: 503', async (t) => {
    h.snapshot = snapshotDoc(h.srcIp, lb.ip(98));
    t.teardown(() => void (h.snapshot = snapshotDoc(h.srcIp, h.dstIp)));
    const err = await rejection(client.connect(h.request(echo.port)));
    t.match(err, { code: 'ERR_HBONE_STATUS', status: 503 });
    t.match(h.logs.at(-1)?.obj, { status: 503, reason: `no workload with IP ${h.dstIp} in the snapshot` });
  });

  t.test('upstream refused: 503', async (t) => {
    const probe = net.createServer();
    await new Promise<void>((r) => probe.listen(0, h.dstIp, r));
    const freePort = (probe.address() as net.AddressInfo).port;
    await new Promise<void>((r) => probe.close(() => r()));
    const err = await rejection(client.connect(h.request(freePort)));
    t.match(err, { code: 'ERR_HBONE_STATUS', status: 503 });
    t.match(String(h.logs.at(-1)?.obj['reason']), /upstream connect to .* failed: .*ECONNREFUSED/);
    t.equal(h.manager.size, 0, 'nothing left registered');
  });

  // ztunnel (proxy/inbound.rs): the destination IP is validated first (400), then the target is
  // resolved, and a target port among cfg.illegal_ports (15001/15006/15008) is Error::SelfCall
  // from that step, which it answers 503 like every other failure to resolve the target.
  for (const port of [15001, 15006, 15008]) {
    t.test(`target port ${port} of the proxy itself: 503`, async (t) => {
      const err = await rejection(client.connect(h.request(port)));
      t.match(err, { code: 'ERR_HBONE_STATUS', status: 503 });
      t.match(h.logs.at(-1)?.obj, { status: 503, reason: `target port ${port} is one of the proxy's own ports` });
    });
  }

  t.test("the proxy's own port at a foreign IP: the IP check comes first (400)", async (t) => {
    const err = await rejection(client.connect(h.request(15008, { authority: `${lb.ip(99)}:15008` })));
    t.match(err, { code: 'ERR_HBONE_STATUS', status: 400 });
    t.match(h.logs.at(-1)?.obj, { status: 400, reason: `authority IP ${lb.ip(99)} is not this listener's workload IP ${h.dstIp}` });
  });

  t.test('TLS refusals by the server, seen from both ends', async (t) => {
    const otherCa = await LocalCa.generate({ organization: 'other' });
    const cases: [string, () => Promise<Error>, string, RegExp][] = [
      [
        'client cert from another CA',
        async () => rejection(h.client().connect(h.request(echo.port, { source: { ...(await otherCa.sign(SLEEP, HOUR)), rootsPem: certs.client.rootsPem } }))),
        'ERR_TLS_PEER_UNVERIFIED',
        /client certificate rejected/,
      ],
      [
        'client of another trust domain',
        async () => rejection(h.client().connect(h.request(echo.port, { source: await certs.ca.sign(FOREIGN, HOUR) }))),
        'ERR_TLS_TRUST_DOMAIN',
        /other\.example.*not in trust domain cluster\.local/,
      ],
      [
        'expired client certificate',
        async () => rejection(h.client().connect(h.request(echo.port, { source: await certs.ca.sign(SLEEP, HOUR, Date.now() - 3 * HOUR) }))),
        'ERR_TLS_PEER_UNVERIFIED',
        /CERT_HAS_EXPIRED/,
      ],
    ];
    for (const [label, attempt, serverCode, re] of cases) {
      const before = tlsRefusals(h).length;
      const err = await attempt();
      t.match(err, { code: 'ERR_TLS' }, `${label}: the client is told ERR_TLS (${err.message})`);
      const refusals = tlsRefusals(h).slice(before);
      t.equal(refusals.length, 1, `${label}: one refusal logged`);
      t.match(refusals[0], { code: serverCode, reason: re }, `${label}: the server logged why`);
    }
  });

  t.test('no client certificate: refused by the server', async (t) => {
    const before = tlsRefusals(h).length;
    const session = rawSession(h, {
      ca: [...certs.client.rootsPem],
      ALPNProtocols: ['h2'],
      minVersion: 'TLSv1.3',
      servername: '',
      checkServerIdentity: () => undefined,
    });
    t.teardown(() => session.destroy());
    const outcome = await rawRequest(session, { ':method': 'CONNECT', ':authority': `${h.dstIp}:${echo.port}` });
    t.not(outcome, 200, `the request failed (${outcome})`);
    t.match(tlsRefusals(h).slice(before), [{ code: 'ERR_TLS_NO_PEER_CERT' }]);
    t.equal(echo.sockets.size, 0);
  });

  t.test('the client refuses a server whose identity is not expected', async (t) => {
    const err = await rejection(client.connect(h.request(echo.port, { expected: [SLEEP] })));
    t.match(err, { code: 'ERR_TLS' });
    t.ok(isProxyError((err as Error & { cause?: unknown }).cause, 'ERR_TLS_SAN_MISMATCH'), 'caused by the SAN check');
    t.match(err.message, /spiffe:\/\/cluster\.local\/ns\/default\/sa\/echo is not one of the expected/);
  });

  t.test('TCP refused at the next hop: ERR_CONNECT', async (t) => {
    const err = await rejection(client.connect(h.request(echo.port, { nextHop: { ip: lb.ip(97), port: h.hbonePort } })));
    t.match(err, { code: 'ERR_CONNECT', message: /ECONNREFUSED/ });
  });

  t.test('a policy change closes a live tunnel through ConnectionManager.recheck', async (t) => {
    const tun = await client.connect(h.request(echo.port));
    const got = readAll(tun.stream);
    tun.stream.write('before\n');
    await new Promise((r) => tun.stream.once('data', r));
    t.equal(h.manager.size, 1);
    t.match(h.manager.list()[0], { bytesReceived: 7, bytesSent: 7 }, 'live byte counters while the tunnel is open');
    t.same(h.manager.recheck(h.snapshot, authorize), [], 'unchanged policy: nothing closed');
    const denying = snapshotDoc(h.srcIp, h.dstIp, [DENY_SLEEP], 3);
    const closedConns = h.manager.recheck(denying, authorize);
    t.equal(closedConns.length, 1, 'the tunnel is now denied');
    t.equal(closedConns[0]?.decision.policy, 'default/deny-sleep');
    await closed(tun.stream);
    t.not(tun.stream.rstCode, 0, `the client saw a reset (code ${tun.stream.rstCode})`);
    t.equal((await got).toString(), 'before\n', 'no bytes after the close');
    await h.waitClosed(1);
    t.match(h.events.closed.at(-1)?.reason, /no longer allowed: explicitly denied by: default\/deny-sleep/);
    t.ok(h.logs.some((l) => /no longer allowed/.test(l.msg) && l.obj['policy'] === 'default/deny-sleep'), 'logged with the policy');
    t.equal(h.manager.size, 0);
  });
});
