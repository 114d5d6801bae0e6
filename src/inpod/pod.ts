/**
 * A pod registered over ZDS (in-pod mode), as plain data: it crosses from the main thread (which
 * speaks ZDS and holds the pod's network-namespace fd) into every data-plane worker. A file
 * descriptor is process-wide, so the number is valid in every thread for as long as the main
 * thread keeps it open: from the pod's add until every data plane has let the pod go.
 */
export interface InpodPod {
  /** The Kubernetes pod uid istio-cni sent. */
  readonly uid: string;
  readonly name: string;
  readonly namespace: string;
  readonly serviceAccount: string;
  /** The pod's network namespace (an open /proc/<pid>/ns/net or /var/run/netns file). */
  readonly netnsFd: number;
}

/** What one data plane made of a pod: serving, waiting for its workload, or failed (with why). */
export type PodState =
  | { readonly state: 'up'; readonly ip: string; readonly workload: string }
  | { readonly state: 'pending'; readonly reason: string }
  | { readonly state: 'failed'; readonly reason: string };

export function podName(p: Pick<InpodPod, 'namespace' | 'name'>): string {
  return `${p.namespace}/${p.name}`;
}
