#!/usr/bin/env bash
# The kind walkthrough (needs Docker, kind, kubectl and helm): three clusters
# (hub, us-east, eu-west), the operator image built and loaded into the hub,
# the members registered as Regions, CRDs with kubectl and the operator with
# Helm, an example app, then us-east's node stopped to watch the failover.
#
# Usage: kind-config/walkthrough.sh [up|failover|recover|down]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

image=multiregion:dev
regions=(us-east eu-west)
ns=multiregion-system

step() { printf '\n==> %s\n' "$*"; }

up() {
  for cluster in hub "${regions[@]}"; do
    if ! kind get clusters | grep -qx "$cluster"; then
      step "creating kind cluster $cluster"
      kind create cluster --config "kind-config/$cluster.yaml"
    fi
  done
  step "building $image and loading it into the hub"
  docker build -t "$image" .
  kind load docker-image "$image" --name hub
  kubectl config use-context kind-hub
  step "installing the CRDs"
  kubectl apply --server-side -f crds/
  kubectl create namespace "$ns" --dry-run=client -o yaml | kubectl apply -f -
  for region in "${regions[@]}"; do
    step "registering $region"
    kind get kubeconfig --internal --name "$region" > "/tmp/$region.kubeconfig"
    kubectl -n "$ns" create secret generic "$region-kubeconfig" \
      --from-file=kubeconfig="/tmp/$region.kubeconfig" --dry-run=client -o yaml | kubectl apply -f -
    kubectl apply -f - <<YAML
apiVersion: multiregion.io/v1alpha1
kind: Region
metadata: { name: $region }
spec:
  kubeconfigSecretRef: { namespace: $ns, name: $region-kubeconfig }
  context: kind-$region
  probe: { intervalSeconds: 2, timeoutSeconds: 1 }
YAML
  done
  step "installing the operator with Helm"
  helm upgrade --install multiregion charts/multiregion -n "$ns" \
    --set image.repository=multiregion --set image.tag=dev --set image.pullPolicy=Never --wait
  step "applying examples/checkout.yaml"
  kubectl create namespace shop --dry-run=client -o yaml | kubectl apply -f -
  kubectl apply -f examples/checkout.yaml
  kubectl get regions
  kubectl get mra -A
}

failover() {
  step "stopping us-east's node: watch the weights move (Ctrl-C to stop watching)"
  docker stop us-east-control-plane
  kubectl --context kind-hub get mra -A -w
}

recover() {
  step "starting us-east again: it comes back as a Standby"
  docker start us-east-control-plane
  kubectl --context kind-hub get mra -A -w
}

down() {
  for cluster in hub "${regions[@]}"; do
    kind delete cluster --name "$cluster"
  done
}

case "${1:-up}" in
  up) up ;;
  failover) failover ;;
  recover) recover ;;
  down) down ;;
  *) echo "usage: $0 [up|failover|recover|down]" >&2; exit 2 ;;
esac
