import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import YAML from 'yaml';
import { parseSnapshot, SnapshotError } from '../../../src/state/parse';

const SRC = 'snapshot.yaml';
const TD = 'example.org';
const ECHO = 'default/echo.default.svc.cluster.local';

type Doc = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

/** A small valid document; each row below breaks one thing in a fresh copy. */
function base(): Doc {
  return {
    workloads: [
      { uid: 'c//Pod/default/a', name: 'a', namespace: 'default', workloadIps: ['10.0.0.1'], services: { [ECHO]: { 80: 8080 } } },
      { uid: 'c//Pod/default/b', name: 'b', namespace: 'default', workloadIps: ['10.0.0.2'] },
    ],
    services: [
      { name: 'echo', namespace: 'default', hostname: 'echo.default.svc.cluster.local', vips: ['/10.96.0.1'], ports: { 80: 8080 } },
      { name: 'other', namespace: 'default', hostname: 'other.default.svc.cluster.local', vips: ['10.96.0.2'], ports: { 80: 0 } },
    ],
    policies: [
      { name: 'allow', namespace: 'default', scope: 'Namespace', action: 'Allow', rules: [[[{ namespaces: [{ Exact: 'default' }] }]]] },
    ],
  };
}

function parse(input: Doc | string) {
  return parseSnapshot(typeof input === 'string' ? input : JSON.stringify(input), { source: SRC, trustDomain: TD });
}

/** [path, full message] of every issue, or [] when the document is accepted. */
function issuesOf(input: Doc | string): [string, string][] {
  try {
    parse(input);
    return [];
  } catch (err) {
    if (!(err instanceof SnapshotError)) throw err;
    return err.errors.map((e) => [e.path, e.message]);
  }
}

const msg = (path: string, what: string): [string, string] => [path, path === '' ? `${SRC}: ${what}` : `${SRC}: ${path}: ${what}`];

t.test('the base document is valid', async (t) => {
  t.same(issuesOf(base()), []);
});

// [name, how to break the base document (or the whole text), expected [path, what] issues]
const rows: [string, ((d: Doc) => void) | string, [string, string][]][] = [
  // document shape
  ['empty text', '', [['', 'the document is empty (write {} for a snapshot with nothing in it)']]],
  ['only a comment', '# nothing yet\n', [['', 'the document is empty (write {} for a snapshot with nothing in it)']]],
  ['top level is a list', '[1, 2]', [['', 'expected a mapping, got a list']]],
  // found by the property test: the YAML library throws for these instead of reporting them
  ['alias to a missing anchor', '*!', [['', 'Unresolved alias (the anchor must be set before the alias): !']]],
  ['unknown top-level field', (d) => (d.extra = 1), [['extra', 'unknown field']]],
  ['workloads is not a list', (d) => (d.workloads = {}), [['workloads', 'expected a list, got a mapping']]],
  ['a workload is not a mapping', (d) => (d.workloads[1] = 'b'), [['workloads[1]', 'expected a mapping, got string "b"']]],
  // fields
  ['unknown workload field', (d) => (d.workloads[0].color = 'red'), [['workloads[0].color', 'unknown field']]],
  ['snake_case field', (d) => (d.workloads[0].service_account = 'sa'), [['workloads[0].service_account', 'unknown field (did you mean "serviceAccount"?)']]],
  ['unsupported ztunnel field', (d) => (d.workloads[0].waypoint = { destination: '/10.0.0.9', hboneMtlsPort: 15008 }),
    [['workloads[0].waypoint', 'ztunnel accepts this field but ztunnel-ts does not support it; remove it']]],
  ['missing required field', (d) => delete d.workloads[0].uid, [['workloads[0].uid', 'required field is missing']]],
  ['null required field', (d) => (d.workloads[0].namespace = null), [['workloads[0].namespace', 'required field is missing']]],
  ['wrong type', (d) => (d.workloads[0].name = 5), [['workloads[0].name', 'expected a string, got number 5']]],
  ['empty uid', (d) => (d.workloads[0].uid = ''), [['workloads[0].uid', 'must not be empty']]],
  // the parts of the workload's SPIFFE id (the CA would otherwise sign a SAN no peer parses)
  ['upper-case trust domain', (d) => (d.workloads[0].trustDomain = 'Example.COM'),
    [['workloads[0].trustDomain', `"Example.COM" cannot be part of a SPIFFE id: it may only hold lower-case letters, digits, '.', '-' and '_'`]]],
  ['trust domain with a slash', (d) => (d.workloads[0].trustDomain = 'a/b'),
    [['workloads[0].trustDomain', `"a/b" cannot be part of a SPIFFE id: it may only hold lower-case letters, digits, '.', '-' and '_'`]]],
  ['service account with a slash', (d) => (d.workloads[0].serviceAccount = 'a/b'),
    [['workloads[0].serviceAccount', `"a/b" cannot be part of a SPIFFE id: it may only hold letters, digits, '.', '-' and '_'`]]],
  ['service account with a space', (d) => (d.workloads[1].serviceAccount = 'my sa'),
    [['workloads[1].serviceAccount', `"my sa" cannot be part of a SPIFFE id: it may only hold letters, digits, '.', '-' and '_'`]]],
  ['namespace with a colon', (d) => (d.workloads[0].namespace = 'ns:1'),
    [['workloads[0].namespace', `"ns:1" cannot be part of a SPIFFE id: it may only hold letters, digits, '.', '-' and '_'`]]],
  ['empty namespace', (d) => (d.workloads[0].namespace = ''), [['workloads[0].namespace', 'must not be empty']]],
  ['legal identity parts', (d) => Object.assign(d.workloads[0], { trustDomain: 'td_1.example-x', namespace: 'Kube.System-1', serviceAccount: 'Sa_2.x-y' }), []],
  ['empty trust domain and service account mean the defaults', (d) => Object.assign(d.workloads[0], { trustDomain: '', serviceAccount: '' }), []],
  ['wrong type boolean', (d) => (d.services[0].canonical = 'yes'), [['services[0].canonical', 'expected true or false, got string "yes"']]],
  ['string list item', (d) => (d.services[0].subjectAltNames = ['a', 7]), [['services[0].subjectAltNames[1]', 'expected a string, got number 7']]],
  // IPs
  ['bad IP', (d) => (d.workloads[0].workloadIps = ['10.0.0.300']), [['workloads[0].workloadIps[0]', '"10.0.0.300" is not an IP address']]],
  ['IP not a string', (d) => (d.workloads[0].workloadIps = [7]), [['workloads[0].workloadIps[0]', 'number 7 is not an IP address']]],
  ['IPs not a list', (d) => (d.workloads[0].workloadIps = '10.0.0.1'), [['workloads[0].workloadIps', 'expected a list, got string "10.0.0.1"']]],
  ['leading-zero octet', (d) => (d.workloads[1].workloadIps = ['010.0.0.2']), [['workloads[1].workloadIps[0]', '"010.0.0.2" is not an IP address']]],
  // enums
  ['unknown protocol', (d) => (d.workloads[0].protocol = 'UDP'), [['workloads[0].protocol', '"UDP" is not one of TCP, HBONE']]],
  ['unknown status', (d) => (d.workloads[0].status = 'Ready'), [['workloads[0].status', '"Ready" is not one of Healthy, Unhealthy']]],
  ['enum of wrong type', (d) => (d.workloads[0].protocol = 1), [['workloads[0].protocol', 'number 1 is not one of TCP, HBONE']]],
  // uniqueness
  ['duplicate uid', (d) => (d.workloads[1].uid = 'c//Pod/default/a'), [['workloads[1].uid', 'duplicate uid "c//Pod/default/a" (first at workloads[0])']]],
  ['same IP in one network', (d) => (d.workloads[1].workloadIps = ['10.0.0.1']),
    [['workloads[1].workloadIps[0]', '10.0.0.1 in network "" is already used by workloads[0]']]],
  ['same IP in one network, mapped form', (d) => (d.workloads[1].workloadIps = ['::ffff:10.0.0.1']),
    [['workloads[1].workloadIps[0]', '10.0.0.1 in network "" is already used by workloads[0]']]],
  ['same IP twice in one workload', (d) => (d.workloads[1].workloadIps = ['10.0.0.2', '10.0.0.2']),
    [['workloads[1].workloadIps[1]', '10.0.0.2 in network "" is already used by this workload already']]],
  ['same IP in two networks is fine', (d) => Object.assign(d.workloads[1], { workloadIps: ['10.0.0.1'], network: 'net2' }), []],
  // endpoints
  ['endpoint of an unknown service', (d) => (d.workloads[0].services = { 'default/nope.svc': { 80: 80 } }),
    [['workloads[0].services["default/nope.svc"]', 'no service "default/nope.svc" in this snapshot']]],
  ['endpoint key without a namespace', (d) => (d.workloads[0].services = { nope: { 80: 80 } }),
    [['workloads[0].services.nope', 'expected "namespace/hostname", got "nope"']]],
  ['endpoint of a port the service lacks', (d) => (d.workloads[0].services = { [ECHO]: { 81: 8080 } }),
    [[`workloads[0].services["${ECHO}"]["81"]`, `service "${ECHO}" has no port 81`]]],
  ['endpoint ports not a mapping', (d) => (d.workloads[0].services = { [ECHO]: [80] }),
    [[`workloads[0].services["${ECHO}"]`, 'expected a mapping of service port to target port, got a list']]],
  ['services not a mapping', (d) => (d.workloads[0].services = [ECHO]),
    [['workloads[0].services', 'expected a mapping of "namespace/hostname" to ports, got a list']]],
  // ports
  ['service port 0', (d) => (d.services[0].ports = { 0: 80, 80: 8080 }), [['services[0].ports["0"]', 'service port "0" is out of range 1..65535']]],
  ['service port 65536', (d) => (d.services[0].ports = { 65536: 80, 80: 8080 }), [['services[0].ports["65536"]', 'service port "65536" is out of range 1..65535']]],
  ['service port not a number', (d) => (d.services[0].ports = { http: 80, 80: 8080 }), [['services[0].ports.http', 'service port "http" is out of range 1..65535']]],
  ['target port 70000', (d) => (d.services[1].ports = { 80: 70000 }),
    [['services[1].ports["80"]', 'target port number 70000 is out of range 0..65535 (0 = same as the service port)']]],
  ['target port as text', (d) => (d.services[1].ports = { 80: '8080' }),
    [['services[1].ports["80"]', 'target port string "8080" is out of range 0..65535 (0 = same as the service port)']]],
  ['missing ports', (d) => delete d.services[1].ports, [['services[1].ports', 'required field is missing']]],
  // capacity
  ['capacity 0', (d) => (d.workloads[0].capacity = 0), [['workloads[0].capacity', 'must be a positive integer, got number 0']]],
  ['capacity 1.5', (d) => (d.workloads[0].capacity = 1.5), [['workloads[0].capacity', 'must be a positive integer, got number 1.5']]],
  ['capacity as text', (d) => (d.workloads[0].capacity = '2'), [['workloads[0].capacity', 'must be a positive integer, got string "2"']]],
  // locality and policy references
  ['unknown locality field', (d) => (d.workloads[0].locality = { region: 'r', city: 'c' }), [['workloads[0].locality.city', 'unknown field']]],
  ['locality not a mapping', (d) => (d.workloads[0].locality = 'r/z'), [['workloads[0].locality', 'expected a mapping, got string "r/z"']]],
  ['unknown policy reference', (d) => (d.workloads[0].authorizationPolicies = ['default/allow', 'default/nope']),
    [['workloads[0].authorizationPolicies[1]', 'no policy "default/nope" in this snapshot']]],
  // services
  ['duplicate service', (d) => (d.services[1].hostname = 'echo.default.svc.cluster.local'),
    [['services[1].hostname', 'duplicate service "default/echo.default.svc.cluster.local" (first at services[0])']]],
  ['same hostname in another namespace is fine', (d) => Object.assign(d.services[1], { hostname: 'echo.default.svc.cluster.local', namespace: 'other' }), []],
  ['same VIP in one network (bare and "/" forms)', (d) => (d.services[1].vips = ['10.96.0.1']),
    [['services[1].vips[0]', 'VIP "/10.96.0.1" is already used by services[0]']]],
  ['same VIP in two networks is fine', (d) => (d.services[1].vips = ['net2/10.96.0.1']), []],
  ['bad VIP', (d) => (d.services[0].vips = ['net/10.96.0.300']), [['services[0].vips[0]', '"net/10.96.0.300" is not a VIP ("network/ip" or "ip")']]],
  ['VIP written as a CIDR', (d) => (d.services[0].vips = ['10.96.0.0/24']), [['services[0].vips[0]', '"10.96.0.0/24" is not a VIP ("network/ip" or "ip")']]],
  ['unsupported service field', (d) => (d.services[0].ipFamilies = 'Dual'),
    [['services[0].ipFamilies', 'ztunnel accepts this field but ztunnel-ts does not support it; remove it']]],
  ['Passthrough load balancing', (d) => (d.services[0].loadBalancer = { mode: 'Passthrough', routingPreferences: [], healthPolicy: 'AllowAll' }),
    [['services[0].loadBalancer.mode', 'ztunnel\'s "Passthrough" mode is not supported by ztunnel-ts (use Standard, Strict or Failover)']]],
  ['unknown routing preference', (d) => (d.services[0].loadBalancer = { mode: 'Failover', routingPreferences: ['Zone', 'Planet'] }),
    [['services[0].loadBalancer.routingPreferences[1]', 'string "Planet" is not one of Network, Region, Zone, Subzone, Node, Cluster']]],
  // policies
  ['unknown scope', (d) => (d.policies[0].scope = 'Cluster'), [['policies[0].scope', '"Cluster" is not one of Global, Namespace, WorkloadSelector']]],
  ['unknown action', (d) => (d.policies[0].action = 'Audit'), [['policies[0].action', '"Audit" is not one of Allow, Deny']]],
  ['missing rules', (d) => delete d.policies[0].rules, [['policies[0].rules', 'required field is missing']]],
  ['duplicate policy', (d) => d.policies.push({ ...d.policies[0], action: 'Deny' }),
    [['policies[1].name', 'duplicate policy "default/allow" (first at policies[0])']]],
  ['string match with two kinds', (d) => (d.policies[0].rules = [[[{ principals: [{ Exact: 'a', Prefix: 'b' }] }]]]),
    [['policies[0].rules[0][0][0].principals[0]', 'a string match must have exactly one of Exact, Prefix, Suffix, Presence; got keys Exact, Prefix']]],
  ['string match of unknown kind', (d) => (d.policies[0].rules = [[[{ namespaces: [{ Regex: 'a.*' }] }]]]),
    [['policies[0].rules[0][0][0].namespaces[0]', 'a string match must have exactly one of Exact, Prefix, Suffix, Presence; got keys Regex']]],
  ['string match that is a bare string', (d) => (d.policies[0].rules = [[[{ namespaces: ['default'] }]]]),
    [['policies[0].rules[0][0][0].namespaces[0]', 'a string match must have exactly one of Exact, Prefix, Suffix, Presence; got string "default"']]],
  ['Presence with a value', (d) => (d.policies[0].rules = [[[{ principals: [{ Presence: ['x'] }] }]]]),
    [['policies[0].rules[0][0][0].principals[0].Presence', 'expected [], got a list']]],
  ['Exact of a number', (d) => (d.policies[0].rules = [[[{ principals: [{ Exact: 1 }] }]]]),
    [['policies[0].rules[0][0][0].principals[0].Exact', 'expected a string, got number 1']]],
  ['bad CIDR', (d) => (d.policies[0].rules = [[[{ sourceIps: ['10.0.0.0/8', '10.0.0.0/33'] }]]]),
    [['policies[0].rules[0][0][0].sourceIps[1]', '"10.0.0.0/33" is not a CIDR: prefix length must be 0..32']]],
  ['CIDR with a bad address', (d) => (d.policies[0].rules = [[[{ notDestinationIps: ['10.0.0.300/8'] }]]]),
    [['policies[0].rules[0][0][0].notDestinationIps[0]', '"10.0.0.300/8" is not a CIDR: "10.0.0.300" is not an IP address']]],
  ['policy port 0', (d) => (d.policies[0].rules = [[[{ destinationPorts: [80, 0] }]]]),
    [['policies[0].rules[0][0][0].destinationPorts[1]', 'port number 0 is out of range 1..65535']]],
  ['unknown match field', (d) => (d.policies[0].rules = [[[{ sourceIp: ['10.0.0.0/8'] }]]]),
    [['policies[0].rules[0][0][0].sourceIp', 'unknown field (did you mean "sourceIps"?)']]],
  ['service account match missing a field', (d) => (d.policies[0].rules = [[[{ serviceAccounts: [{ namespace: 'default' }] }]]]),
    [['policies[0].rules[0][0][0].serviceAccounts[0].serviceAccount', 'required field is missing']]],
  ['rule that is not a list', (d) => (d.policies[0].rules = [{ namespaces: [] }]),
    [['policies[0].rules[0]', 'expected a list of clauses, got a mapping']]],
  ['clause that is not a list', (d) => (d.policies[0].rules = [[{ namespaces: [] }]]),
    [['policies[0].rules[0][0]', 'expected a list of matches, got a mapping']]],
];

t.test('every kind of error is reported with its path and message', async (t) => {
  for (const [name, breakIt, want] of rows) {
    let input: Doc | string;
    if (typeof breakIt === 'string') input = breakIt;
    else {
      input = base();
      breakIt(input);
    }
    t.same(issuesOf(input), want.map(([p, w]) => msg(p, w)), name);
  }
});

t.test('all errors are collected, in document order, in one SnapshotError', async (t) => {
  const d = base();
  d.policies[0].scope = 'Cluster';
  d.services[0].vips = ['x'];
  d.workloads[1].protocol = 'UDP';
  d.workloads[0].workloadIps = ['nope'];
  const err = t.throws(() => parse(d), { code: 'ERR_SNAPSHOT', name: 'SnapshotError' }) as unknown as SnapshotError;
  t.same(err.errors.map((e) => e.path), ['workloads[0].workloadIps[0]', 'workloads[1].protocol', 'services[0].vips[0]', 'policies[0].scope']);
  t.equal(err.omitted, 0);
  t.match(err.message, /^snapshot\.yaml: invalid snapshot \(4 errors\):\n {2}snapshot\.yaml: workloads\[0\]\.workloadIps\[0\]: "nope" is not an IP address\n/);
});

t.test('errors are capped and the rest counted', async (t) => {
  const d = base();
  d.workloads[0].workloadIps = Array.from({ length: 150 }, (_, i) => `bad-${i}`);
  const err = t.throws(() => parse(d)) as unknown as SnapshotError;
  t.equal(err.errors.length, 100);
  t.equal(err.omitted, 50);
  t.match(err.message, /\(150 errors\)/);
  t.match(err.message, /\.\.\. and 50 more$/);
  const small = t.throws(() => parseSnapshot(JSON.stringify(d), { source: SRC, trustDomain: TD, maxErrors: 3 })) as unknown as SnapshotError;
  t.equal(small.errors.length, 3);
  t.equal(small.omitted, 147);
});

t.test('defaults are applied so consumers never see undefined', async (t) => {
  const doc = parse({
    workloads: [{ uid: 'u1', name: 'n', namespace: 'ns', workloadIps: [] }],
    services: [{ name: 's', namespace: 'ns', hostname: 's.ns', ports: {} }],
    policies: [{ name: 'p', namespace: 'ns', scope: 'Global', action: 'Deny', rules: [] }],
  });
  t.same(doc.workloads[0], {
    uid: 'u1', name: 'n', namespace: 'ns', workloadIps: [], protocol: 'TCP', trustDomain: TD, serviceAccount: 'default',
    node: '', network: '', workloadName: '', workloadType: '', canonicalName: '', canonicalRevision: '', clusterId: '',
    locality: null, status: 'Healthy', authorizationPolicies: [], capacity: 1, services: {},
  });
  t.same(doc.services[0], { name: 's', namespace: 'ns', hostname: 's.ns', vips: [], ports: {}, subjectAltNames: [], loadBalancer: null, canonical: false });
  t.same(doc.policies[0], { name: 'p', namespace: 'ns', scope: 'Global', action: 'Deny', rules: [], dryRun: false });
  t.same(parse('{}'), { workloads: [], services: [], policies: [] });
  // empty strings and YAML nulls mean "the default" too
  const nulls = parse('workloads:\n  - {uid: u, name: n, namespace: ns, workloadIps: [], trustDomain: "", serviceAccount: "", node: , capacity: }\n');
  t.equal(nulls.workloads[0]!.trustDomain, TD);
  t.equal(nulls.workloads[0]!.serviceAccount, 'default');
  t.equal(nulls.workloads[0]!.node, '');
  t.equal(nulls.workloads[0]!.capacity, 1);
  const lb = parse({ services: [{ name: 's', namespace: 'ns', hostname: 'h', ports: { 80: 0 }, loadBalancer: {} }] });
  t.same(lb.services[0]!.loadBalancer, { mode: 'Standard', routingPreferences: [], healthPolicy: 'OnlyHealthy' });
  t.same(lb.services[0]!.ports, { 80: 0 }, 'target 0 (same port) is allowed');
});

t.test('values are normalised', async (t) => {
  const doc = parse({
    workloads: [
      {
        uid: 'u1', name: 'n', namespace: 'ns', workloadIps: ['2001:DB8:0:0:0:0:0:1', '::ffff:10.1.2.3'], protocol: 'HBONE',
        trustDomain: 'td.local', serviceAccount: 'sa', locality: { region: 'r' }, capacity: 3, status: 'Unhealthy',
        authorizationPolicies: ['ns/p'], services: { 'ns/s.ns': { 443: 8443 } },
      },
    ],
    services: [{ name: 's', namespace: 'ns', hostname: 's.ns', vips: ['net1/FD00::0:1', '10.96.0.1'], ports: { 443: 8443 } }],
    policies: [{
      name: 'p', namespace: 'ns', scope: 'WorkloadSelector', action: 'Allow', dryRun: true,
      rules: [[[{ namespaces: [], principals: [{ Presence: [] }], sourceIps: ['10.1.2.3/8', 'fd00::1/16', '10.9.9.9'], destinationPorts: [443] }], []]],
    }],
  });
  const w = doc.workloads[0]!;
  t.same(w.workloadIps, ['2001:db8::1', '10.1.2.3']);
  t.same([w.protocol, w.trustDomain, w.serviceAccount, w.capacity, w.status], ['HBONE', 'td.local', 'sa', 3, 'Unhealthy']);
  t.same(w.locality, { region: 'r', zone: '', subzone: '' });
  t.same(w.services, { 'ns/s.ns': { 443: 8443 } });
  t.same(doc.services[0]!.vips, [{ network: 'net1', address: 'fd00::1' }, { network: '', address: '10.96.0.1' }]);
  const m = doc.policies[0]!.rules[0]![0]![0]!;
  t.notOk('namespaces' in m, 'an empty list is dropped: ztunnel treats it as absent');
  t.same(m, {
    principals: [{ Presence: [] }],
    sourceIps: [{ address: '10.0.0.0', prefixLen: 8 }, { address: 'fd00::', prefixLen: 16 }, { address: '10.9.9.9', prefixLen: 32 }],
    destinationPorts: [443],
  });
  t.same(doc.policies[0]!.rules[0]![1], [], 'an empty clause is kept');
  t.equal(doc.policies[0]!.dryRun, true);
});

t.test('the result is deeply frozen and repeated values are shared', async (t) => {
  const d = base();
  d.workloads[1].services = { [ECHO]: { 80: 8080 } };
  const doc = parse(d);
  const w = doc.workloads[0]!;
  for (const [name, v] of Object.entries({
    doc, workloads: doc.workloads, workload: w, ips: w.workloadIps, services: w.services, ports: w.services[ECHO],
    service: doc.services[0], vips: doc.services[0]!.vips, vip: doc.services[0]!.vips[0], svcPorts: doc.services[0]!.ports,
    policy: doc.policies[0], rules: doc.policies[0]!.rules, match: doc.policies[0]!.rules[0]![0]![0], sm: doc.policies[0]!.rules[0]![0]![0]!.namespaces![0],
  })) {
    t.ok(Object.isFrozen(v), `${name} is frozen`);
  }
  t.equal(doc.workloads[1]!.services, w.services, 'identical endpoint maps are one object');
  t.equal(doc.services[0]!.ports, w.services[ECHO], 'identical port maps are one object');
});

t.test('YAML and JSON forms', async (t) => {
  const yaml = [
    'workloads:',
    '  - uid: u1',
    '    name: a',
    '    namespace: default',
    '    workloadIps: [10.0.0.1]',
    '    services:',
    '      default/echo.svc:',
    '        80: 8080',
    'services:',
    '  - {name: echo, namespace: default, hostname: echo.svc, vips: [/10.96.0.1], ports: {80: 8080}}',
    'policies: []',
  ].join('\n');
  const fromYaml = parse(yaml);
  t.same(fromYaml.workloads[0]!.services, { 'default/echo.svc': { 80: 8080 } });
  const asJson = JSON.stringify(YAML.parse(yaml));
  t.ok(asJson.startsWith('{"workloads":[{"uid"'));
  t.same(parse('\ufeff  ' + asJson), fromYaml, 'JSON (with a BOM and leading space) gives the same document');
  // not strict JSON: the YAML parser takes over and reports where
  const bad = issuesOf('{"workloads": [}');
  t.equal(bad[0]![0], '');
  t.match(bad[0]![1], /^snapshot\.yaml: .* at line 1, column \d+$/);
  const dupKey = issuesOf('workloads: []\nworkloads: []\n');
  t.same(dupKey, [msg('', 'Map keys must be unique at line 2, column 1')]);
  const flowJsonish = parse("{workloads: [], services: [], policies: []}");
  t.same(flowJsonish, { workloads: [], services: [], policies: [] });
});

t.test('the bundled example snapshot is valid', async (t) => {
  const text = readFileSync(join(__dirname, '../../../../examples/local-snapshot.yaml'), 'utf8');
  const doc = parseSnapshot(text, { source: 'examples/local-snapshot.yaml', trustDomain: 'cluster.local' });
  t.ok(doc.workloads.length > 0);
});

t.test('non-string input is an empty document, not a crash', async (t) => {
  t.throws(() => parseSnapshot(undefined as unknown as string, { source: SRC, trustDomain: TD }), { code: 'ERR_SNAPSHOT' });
});
