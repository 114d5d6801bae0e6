import t from 'tap';
import { createPrivateKey, generateKeyPairSync, X509Certificate as NodeX509 } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { LocalCa } from '../../../src/identity/ca';
import { initCaDir } from '../../../src/identity/ca-dir';
import { isProxyError } from '../../../src/errors';
import { formatSpiffe, type Identity } from '../../../src/identity/spiffe';
import { x509 } from '../../../src/identity/x509';
import { makeCert, removeDir, writeCaFolder, type TestCert } from './ca-fixtures';

const HOUR = 3600_000;
const SLEEP: Identity = { trustDomain: 'cluster.local', namespace: 'default', serviceAccount: 'sleep' };

async function expectCode(t: tap.Test, p: Promise<unknown>, code: string, re: RegExp, label: string): Promise<void> {
  try {
    await p;
    t.fail(`${label}: expected ${code}, but it succeeded`);
  } catch (err) {
    t.ok(isProxyError(err, code), `${label}: code ${code} (got ${(err as { code?: string }).code})`);
    t.match((err as Error).message, re, `${label}: message`);
  }
}

t.test('an embedded CA issues Istio-shaped leaves', async (t) => {
  const now = Date.now();
  const ca = await LocalCa.generate({ now });
  t.equal(ca.origin.kind, 'embedded');
  t.match(ca.subject, /O=cluster\.local/);
  t.same(ca.chainPem, ca.rootsPem, 'a root signs leaves directly: chain and roots are the root');
  const ttl = 24 * HOUR;
  const leaf = await ca.sign(SLEEP, ttl, now);
  const n = new NodeX509(leaf.certPem);
  const root = new NodeX509(ca.rootsPem[0]!);

  t.equal(n.subjectAltName, `URI:${formatSpiffe(SLEEP)}`, 'the SPIFFE URI is the only SAN');
  t.equal(n.ca, false, 'not a CA');
  t.ok(n.checkIssued(root) && n.verify(root.publicKey), 'signed by the CA');
  t.ok(n.checkPrivateKey(createPrivateKey(leaf.keyPem)), 'keyPem is the leaf key');
  t.equal(n.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1', 'ECDSA P-256');
  t.equal(leaf.serial, n.serialNumber.toLowerCase());
  t.match(leaf.serial, /^[0-9a-f]{32}$/, '128-bit serial');

  const px = new x509.X509Certificate(leaf.certPem);
  t.equal(px.subject, '', 'empty subject, like Istio');
  const san = px.getExtension(x509.SubjectAlternativeNameExtension)!;
  t.equal(san.critical, true, 'SAN critical (subject is empty)');
  t.same(san.names.toJSON(), [{ type: 'url', value: formatSpiffe(SLEEP) }]);
  const bc = px.getExtension(x509.BasicConstraintsExtension)!;
  t.equal(bc.ca, false);
  t.equal(bc.critical, true);
  const ku = px.getExtension(x509.KeyUsagesExtension)!;
  t.equal(ku.usages, x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment);
  const eku = px.getExtension(x509.ExtendedKeyUsageExtension)!;
  t.same([...eku.usages].sort(), [x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth].sort());

  // X.509 times have 1 s resolution.
  const sec = (ms: number): number => Math.floor(ms / 1000) * 1000;
  t.equal(leaf.notBefore.getTime(), sec(now - 2 * 60_000), 'notBefore 2 min back (Istio clock-skew grace)');
  t.equal(leaf.notAfter.getTime(), sec(now + ttl), 'notAfter = now + ttl');
  t.equal(Date.parse(n.validTo), leaf.notAfter.getTime(), 'WorkloadCert dates are the certificate\'s');

  const again = await ca.sign(SLEEP, ttl, now);
  t.not(again.serial, leaf.serial, 'serials are random');
  t.not(again.keyPem, leaf.keyPem, 'a fresh key per leaf');
});

t.test('leaf lifetime is capped at the CA expiry; an expired CA refuses', async (t) => {
  const now = Date.now();
  const ca = await LocalCa.generate({ now, ttlMs: HOUR });
  const leaf = await ca.sign(SLEEP, 24 * HOUR, now);
  t.equal(leaf.notAfter.getTime(), ca.notAfter.getTime(), 'capped');
  await expectCode(t, ca.sign(SLEEP, HOUR, now + 2 * HOUR), 'ERR_CA_EXPIRED', /expired at/, 'sign after expiry');
  for (const ttl of [0, -1, Number.NaN, Number.POSITIVE_INFINITY]) {
    await expectCode(t, ca.sign(SLEEP, ttl, now), 'ERR_CA_TTL', /TTL/, `ttl ${ttl}`);
  }
});

t.test('plug-in CA folders', async (t) => {
  const root = await makeCert({ name: 'O=Istio, CN=Root CA', keyAlg: 'rsa' });
  const inter = await makeCert({ name: 'O=Istio, CN=Intermediate CA', issuer: root });
  const otherRoot = await makeCert({ name: 'O=Other, CN=Root CA' });
  const leafLike = await makeCert({ name: 'CN=not a ca', ca: false, issuer: root });
  const noCertSign = await makeCert({ name: 'CN=no certsign', issuer: root, keyUsage: x509.KeyUsageFlags.digitalSignature });
  const expired = await makeCert({ name: 'CN=expired', issuer: root, notBefore: new Date(Date.now() - 48 * HOUR), notAfter: new Date(Date.now() - HOUR) });
  const future = await makeCert({ name: 'CN=future', issuer: root, notBefore: new Date(Date.now() + HOUR), notAfter: new Date(Date.now() + 48 * HOUR) });
  const expiredRoot = await makeCert({ name: 'CN=old root', notBefore: new Date(Date.now() - 48 * HOUR), notAfter: new Date(Date.now() - HOUR) });
  const ed = generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
  const folder = (ca: TestCert, extra: { caKey?: string; rootCert?: string; certChain?: string; caCert?: string } = {}) => ({
    caCert: extra.caCert ?? ca.certPem,
    caKey: extra.caKey ?? ca.keyPem,
    rootCert: extra.rootCert ?? root.certPem,
    certChain: extra.certChain ?? ca.certPem + root.certPem,
  });
  const dirs: string[] = [];
  t.teardown(async () => {
    for (const d of dirs) await removeDir(d);
  });
  const mk = async (files: Parameters<typeof writeCaFolder>[0], mode = 0o600): Promise<string> => {
    const d = await writeCaFolder(files, mode);
    dirs.push(d);
    return d;
  };

  t.test('an intermediate under an RSA root loads and issues', async (t) => {
    const dir = await mk(folder(inter), 0o640);
    const ca = await LocalCa.load(dir);
    t.equal(ca.origin.kind, 'dir');
    t.equal(ca.origin.where, dir);
    t.equal(ca.chainPem.length, 2, 'chain: intermediate, root');
    t.equal(new NodeX509(ca.chainPem[0]!).fingerprint256, new NodeX509(inter.certPem).fingerprint256);
    t.same(ca.rootsPem.map((p) => new NodeX509(p).fingerprint256), [new NodeX509(root.certPem).fingerprint256]);
    const leaf = await ca.sign(SLEEP, HOUR);
    const n = new NodeX509(leaf.certPem);
    t.ok(n.verify(new NodeX509(inter.certPem).publicKey), 'leaf signed by the intermediate');
    t.equal(n.issuer, new NodeX509(inter.certPem).subject, 'issuer copied from ca-cert');
    t.ok(n.checkIssued(new NodeX509(inter.certPem)), 'authority key id / names line up');
  });

  t.test('RSA, P-384 and SKI-less CAs sign directly', async (t) => {
    const p384 = await makeCert({ name: 'CN=P-384 root', keyAlg: 'ec384' });
    const noSki = await makeCert({ name: 'CN=no SKI root', ski: false });
    for (const [label, c, sigOid] of [
      ['RSA root', root, 'sha256WithRSAEncryption'],
      ['P-384 root', p384, 'ecdsa-with-SHA384'],
      ['root without SKI', noSki, 'ecdsa-with-SHA256'],
    ] as const) {
      const ca = await LocalCa.load(await mk({ caCert: c.certPem, caKey: c.keyPem, rootCert: c.certPem, certChain: c.certPem }));
      const leaf = await ca.sign(SLEEP, HOUR);
      const n = new NodeX509(leaf.certPem);
      t.ok(n.verify(new NodeX509(c.certPem).publicKey), `${label}: leaf verifies`);
      t.ok(n.checkIssued(new NodeX509(c.certPem)), `${label}: issued by it`);
      const px = new x509.X509Certificate(leaf.certPem);
      const sa = px.signatureAlgorithm as unknown as { name: string; hash: { name: string } };
      t.equal(`${sa.name}/${sa.hash.name}`, { sha256WithRSAEncryption: 'RSASSA-PKCS1-v1_5/SHA-256', 'ecdsa-with-SHA384': 'ECDSA/SHA-384', 'ecdsa-with-SHA256': 'ECDSA/SHA-256' }[sigOid], `${label}: ${sigOid}`);
      const aki = px.getExtension(x509.AuthorityKeyIdentifierExtension);
      t.ok(aki?.keyId, `${label}: authority key id present`);
    }
  });

  t.test('a chain file without ca-cert gets ca-cert prepended', async (t) => {
    const ca = await LocalCa.load(await mk(folder(inter, { certChain: root.certPem })));
    t.equal(ca.chainPem.length, 2);
    t.equal(new NodeX509(ca.chainPem[0]!).fingerprint256, new NodeX509(inter.certPem).fingerprint256);
  });

  t.test('group-readable keys are accepted (Secret volumes with fsGroup)', async (t) => {
    for (const mode of [0o600, 0o640, 0o440, 0o400]) {
      await t.resolves(LocalCa.load(await mk(folder(inter), mode)), `mode 0${mode.toString(8)}`);
    }
  });

  t.test('each kind of bad folder has its own code', async (t) => {
    const cases: [string, () => Promise<string>, string, RegExp][] = [
      ['missing dir', async () => path.join(os.tmpdir(), 'ztunnel-ts-no-such-dir-' + process.pid), 'ERR_CA_FILE_MISSING', /does not exist/],
      ['dir is a file', async () => path.join(await mk(folder(inter)), 'ca-cert.pem'), 'ERR_CA_FILE_MISSING', /not a directory/],
      ['missing files', () => mk({ caCert: inter.certPem, caKey: inter.keyPem }), 'ERR_CA_FILE_MISSING', /lacks root-cert\.pem, cert-chain\.pem/],
      ['empty folder', () => mk({}), 'ERR_CA_FILE_MISSING', /lacks ca-cert\.pem, ca-key\.pem, root-cert\.pem, cert-chain\.pem/],
      ['world-readable key 0644', () => mk(folder(inter), 0o644), 'ERR_CA_KEY_PERMISSIONS', /ca-key\.pem is readable by every user \(mode 0644\)/],
      ['world-readable key 0604', () => mk(folder(inter), 0o604), 'ERR_CA_KEY_PERMISSIONS', /mode 0604/],
      ['ca-cert not PEM', () => mk(folder(inter, { caCert: 'hello\n' })), 'ERR_CA_PEM', /ca-cert\.pem: no PEM "CERTIFICATE" block/],
      [
        'ca-cert corrupt',
        () => mk(folder(inter, { caCert: '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n' })),
        'ERR_CA_PEM',
        /ca-cert\.pem: certificate #1 cannot be parsed/,
      ],
      ['root-cert not PEM', () => mk(folder(inter, { rootCert: '' })), 'ERR_CA_PEM', /root-cert\.pem: no PEM/],
      ['cert-chain not PEM', () => mk(folder(inter, { certChain: 'x' })), 'ERR_CA_PEM', /cert-chain\.pem: no PEM/],
      ['key not PEM', () => mk(folder(inter, { caKey: 'not a key\n' })), 'ERR_CA_PEM', /ca-key\.pem: private key cannot be parsed/],
      ['Ed25519 key', () => mk(folder(inter, { caKey: ed })), 'ERR_CA_KEY_UNSUPPORTED', /key type ed25519 is not supported/],
      ['key of another cert', () => mk(folder(inter, { caKey: otherRoot.keyPem })), 'ERR_CA_KEY_MISMATCH', /ca-key\.pem is not the private key of .*ca-cert\.pem/],
      ['not a CA', () => mk(folder(leafLike)), 'ERR_CA_NOT_CA', /basicConstraints CA:TRUE missing/],
      ['no keyCertSign', () => mk(folder(noCertSign)), 'ERR_CA_NOT_CA', /keyCertSign/],
      ['expired CA', () => mk(folder(expired)), 'ERR_CA_EXPIRED', /ca-cert\.pem expired at/],
      ['CA not yet valid', () => mk(folder(future)), 'ERR_CA_NOT_YET_VALID', /not valid before .*check the clock/],
      ['root does not match', () => mk(folder(inter, { rootCert: otherRoot.certPem })), 'ERR_CA_CHAIN', /does not chain to any certificate in .*root-cert\.pem/],
      [
        'expired cert in chain',
        () => mk(folder(inter, { certChain: inter.certPem + root.certPem + expiredRoot.certPem })),
        'ERR_CA_EXPIRED',
        /cert-chain\.pem: certificate #3 .*expired at/,
      ],
    ];
    for (const [label, setup, code, re] of cases) {
      await expectCode(t, setup().then((d) => LocalCa.load(d)), code, re, label);
    }
  });
});

t.test('initCaDir writes a loadable folder with private modes and never overwrites a key', async (t) => {
  const base = await fs.mkdtemp(path.join(os.tmpdir(), 'ztunnel-ts-init-'));
  t.teardown(() => removeDir(base));
  const dir = path.join(base, 'nested', 'cacerts');
  const res = await initCaDir(dir, { organization: 'example.org' });
  t.equal(res.dir, dir);
  t.match(res.subject, /O=example\.org/);
  t.ok(res.notAfter.getTime() > Date.now() + 9 * 365 * 24 * HOUR, '10-year root');
  t.equal((await fs.stat(dir)).mode & 0o777, 0o700, 'created directory is 0700');
  const names = ['ca-cert.pem', 'ca-key.pem', 'cert-chain.pem', 'root-cert.pem'];
  t.same((await fs.readdir(dir)).sort(), names);
  t.same(res.files.map((f) => path.basename(f)).sort(), names);
  for (const n of names) t.equal((await fs.stat(path.join(dir, n))).mode & 0o777, 0o600, `${n} is 0600`);
  const caCert = await fs.readFile(path.join(dir, 'ca-cert.pem'), 'utf8');
  t.equal(await fs.readFile(path.join(dir, 'root-cert.pem'), 'utf8'), caCert, 'root-cert = ca-cert');
  t.equal(await fs.readFile(path.join(dir, 'cert-chain.pem'), 'utf8'), caCert, 'cert-chain = ca-cert');
  const ca = await LocalCa.load(dir);
  const leaf = await ca.sign(SLEEP, HOUR);
  t.ok(new NodeX509(leaf.certPem).verify(new NodeX509(caCert).publicKey), 'issues leaves');

  const keyBefore = await fs.readFile(path.join(dir, 'ca-key.pem'), 'utf8');
  await expectCode(t, initCaDir(dir), 'ERR_CA_EXISTS', /ca-key\.pem already exists; refusing to overwrite/, 'second init');
  t.equal(await fs.readFile(path.join(dir, 'ca-key.pem'), 'utf8'), keyBefore, 'key untouched');
  t.equal(await fs.readFile(path.join(dir, 'ca-cert.pem'), 'utf8'), caCert, 'cert untouched');

  // An existing directory keeps its own mode; the files are still private.
  const existing = path.join(base, 'existing');
  await fs.mkdir(existing, { mode: 0o755 });
  await fs.chmod(existing, 0o755);
  await initCaDir(existing);
  t.equal((await fs.stat(existing)).mode & 0o777, 0o755, 'existing dir mode kept');
  t.equal((await fs.stat(path.join(existing, 'ca-key.pem'))).mode & 0o777, 0o600);
});
