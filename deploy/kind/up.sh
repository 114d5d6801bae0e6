#!/usr/bin/env bash
# Creates the kind cluster (if missing), builds the ztunnel-ts image, loads it into every node,
# creates the plug-in CA Secret from `ztunnel-ts ca init` (the key goes from a temporary folder
# straight into the Secret, never into the repository) and applies deploy/manifests.
# Needs docker, kind and kubectl. Re-running it is safe: it keeps an existing cluster and CA.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CLUSTER="${CLUSTER:-ztunnel-ts}"
IMAGE="${IMAGE:-ztunnel-ts:dev}"
NAMESPACE="istio-system"
SECRET="ztunnel-ts-cacerts"

for tool in docker kind kubectl; do
  command -v "$tool" >/dev/null || { echo "up.sh: $tool is required" >&2; exit 2; }
done

if ! kind get clusters | grep -qx "$CLUSTER"; then
  kind create cluster --name "$CLUSTER" --config "$ROOT/deploy/kind/cluster.yaml"
fi
kubectl config use-context "kind-$CLUSTER" >/dev/null

echo "==> building $IMAGE"
docker build -f "$ROOT/deploy/Dockerfile" -t "$IMAGE" "$ROOT"
echo "==> loading $IMAGE into kind cluster $CLUSTER"
kind load docker-image "$IMAGE" --name "$CLUSTER"

kubectl create namespace "$NAMESPACE" --dry-run=client -o yaml | kubectl apply -f -

if kubectl -n "$NAMESPACE" get secret "$SECRET" >/dev/null 2>&1; then
  echo "==> keeping the existing CA Secret $NAMESPACE/$SECRET"
else
  echo "==> creating a new plug-in CA in Secret $NAMESPACE/$SECRET"
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  # run `ca init` from the image just built, as the calling user so the files stay readable here
  docker run --rm --user "$(id -u):$(id -g)" -v "$tmp:/out" "$IMAGE" ca init /out/cacerts
  kubectl -n "$NAMESPACE" create secret generic "$SECRET" --from-file="$tmp/cacerts"
  rm -rf "$tmp"
  trap - EXIT
fi

echo "==> applying deploy/manifests"
kubectl apply -k "$ROOT/deploy/manifests"
# a rebuilt image keeps the tag: restart so every node runs the image just loaded
kubectl -n "$NAMESPACE" rollout restart daemonset/ztunnel-ts
kubectl -n "$NAMESPACE" rollout status daemonset/ztunnel-ts --timeout=180s
kubectl -n "$NAMESPACE" get pods -l app=ztunnel -o wide
