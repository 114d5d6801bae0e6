/**
 * Which snapshot workload a pod registered over ZDS stands for (ztunnel's find_by_info): by uid on
 * this node, else by namespace + name + service account among this node's workloads — never a
 * same-named workload of another node, namespace or service account.
 */
import t from 'tap';
import { workloadForPod } from '../../../src/inpod/inpod-plane';
import { parseSnapshot } from '../../../src/state/parse';
import { buildSnapshot } from '../../../src/state/snapshot';

const w = (uid: string, name: string, namespace: string, node: string, serviceAccount = 'sa', ip = '10.0.0.1') => ({ uid, name, namespace, node, serviceAccount, workloadIps: [ip] });
const doc = parseSnapshot(
  JSON.stringify({
    workloads: [
      w('c1//v1/Pod/shop/web-0', 'web-0', 'shop', 'node-2', 'sa', '10.0.2.1'), // same name, other node
      w('c1//v1/Pod/shop/web-0-local', 'web-0', 'shop', 'node-1', 'sa', '10.0.1.1'),
      w('c1//v1/Pod/shop/db', 'db', 'shop', 'node-1', 'db-sa', '10.0.1.2'),
      w('c1//v1/Pod/other/db', 'db', 'other', 'node-1', 'db-sa', '10.0.1.3'),
      w('uid-remote', 'far', 'shop', 'node-2', 'sa', '10.0.2.9'),
    ],
    services: [],
    policies: [],
  }),
  { source: 'test', trustDomain: 'cluster.local' },
);
const snap = buildSnapshot(doc, { version: 1, nodeName: 'node-1' });

t.test('pod → workload', async (t) => {
  const cases: Array<[string, { uid: string; namespace: string; name: string; serviceAccount: string }, string | undefined]> = [
    ['uid on this node', { uid: 'c1//v1/Pod/shop/db', namespace: 'x', name: 'y', serviceAccount: '' }, 'c1//v1/Pod/shop/db'],
    ['uid on another node is not taken', { uid: 'uid-remote', namespace: 'shop', name: 'far', serviceAccount: 'sa' }, undefined],
    ['name on this node wins over the same name elsewhere', { uid: 'k8s-uid-1', namespace: 'shop', name: 'web-0', serviceAccount: 'sa' }, 'c1//v1/Pod/shop/web-0-local'],
    ['namespace must match', { uid: 'k8s-uid-2', namespace: 'other', name: 'db', serviceAccount: 'db-sa' }, 'c1//v1/Pod/other/db'],
    ['service account must match when sent', { uid: 'k8s-uid-3', namespace: 'shop', name: 'db', serviceAccount: 'web-sa' }, undefined],
    ['no service account sent: namespace and name decide', { uid: 'k8s-uid-4', namespace: 'shop', name: 'db', serviceAccount: '' }, 'c1//v1/Pod/shop/db'],
    ['unknown pod', { uid: 'k8s-uid-5', namespace: 'shop', name: 'nope', serviceAccount: 'sa' }, undefined],
  ];
  for (const [what, pod, want] of cases) t.equal(workloadForPod(snap, pod)?.uid, want, what);
});
