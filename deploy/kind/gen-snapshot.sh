#!/usr/bin/env bash
# Regenerates the proxies' snapshot from the cluster: namespaces, pods and services as JSON from
# kubectl, converted by `ztunnel-ts kube-snapshot` (run from the image, so only docker is needed
# here), written into the ztunnel-ts-snapshot ConfigMap. The kubelet swaps the mounted file within
# about a minute and every proxy hot-reloads it; a bad snapshot is refused before it is applied.
#   deploy/kind/gen-snapshot.sh [--policies FILE] [--dry-run]
# --policies FILE: carry the authorization policies of FILE (local snapshot format) along.
# --dry-run: print the snapshot instead of applying it.
set -euo pipefail

IMAGE="${IMAGE:-ztunnel-ts:dev}"
NAMESPACE="istio-system"
CONFIGMAP="ztunnel-ts-snapshot"
policies=""
dry_run=false
while [ $# -gt 0 ]; do
  case "$1" in
    --policies) policies="${2:?--policies needs a file}"; shift 2 ;;
    --dry-run) dry_run=true; shift ;;
    *) echo "usage: $0 [--policies FILE] [--dry-run]" >&2; exit 2 ;;
  esac
done

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

kubectl get namespaces,pods,services --all-namespaces -o json >"$tmp/kubectl.json"
args=(kube-snapshot)
mounts=(-v "$tmp:/in:ro")
if [ -n "$policies" ]; then
  mounts+=(-v "$(cd "$(dirname "$policies")" && pwd)/$(basename "$policies"):/policies.yaml:ro")
  args+=(--policies /policies.yaml)
fi
args+=(/in/kubectl.json)
docker run --rm --user "$(id -u):$(id -g)" "${mounts[@]}" "$IMAGE" "${args[@]}" >"$tmp/snapshot.yaml"

if [ "$dry_run" = true ]; then
  cat "$tmp/snapshot.yaml"
  exit 0
fi
# keep the label the kustomization gave it, so `kubectl apply` does not strip it
kubectl -n "$NAMESPACE" create configmap "$CONFIGMAP" --from-file=snapshot.yaml="$tmp/snapshot.yaml" --dry-run=client -o yaml \
  | kubectl label --local -f - app.kubernetes.io/name=ztunnel-ts -o yaml \
  | kubectl apply -f -
head -n 2 "$tmp/snapshot.yaml"
