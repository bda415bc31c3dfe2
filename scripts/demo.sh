#!/usr/bin/env bash
# The first run without Docker: local hub + us-east + eu-west as real control
# planes, CRDs with kubectl, the chart with Helm, the operator running under
# the chart's ServiceAccount, a real gateway (Traefik) and DNS (ExternalDNS,
# CoreDNS) consuming its weights, an example app, then us-east fails whole
# and comes back while you watch the weights and real requests switch.
#
# Usage: scripts/demo.sh [--non-interactive]
#   --non-interactive  do not wait for Ctrl-C at the end (used by the tests)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

interactive=1
[ "${1:-}" = "--non-interactive" ] && interactive=0
dir=${DEMO_DIR:-.local/demo}
target=${CARGO_TARGET_DIR:-target}
# The tests hand in the binaries they built; otherwise they are built here.
mr=${MULTIREGION_BIN:-$target/debug/multiregion}
lr=${LOCALREGIONS_BIN:-$target/debug/localregions}
ns=multiregion-system
operator_pid=""

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

cleanup() {
  # `make demo | tee log` and Ctrl-C close the pipe first: a write to it
  # must not end the cleanup (SIGPIPE ignored, every write allowed to fail,
  # `down` kept off stdout), or the clusters keep running.
  trap '' PIPE
  set +e
  step "stopping everything" 2>/dev/null
  if [ -n "$operator_pid" ]; then
    kill "$operator_pid" 2>/dev/null
    wait "$operator_pid" 2>/dev/null
  fi
  "$lr" --dir "$dir" down >/dev/null 2>&1
  step "stopped" 2>/dev/null
  return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Polls a command until its output contains a string; prints what it sees.
wait_for() { # description, timeout seconds, expected substring, command...
  local what=$1 timeout=$2 want=$3
  shift 3
  local start=$SECONDS out=""
  while (( SECONDS - start < timeout )); do
    out=$("$@" 2>/dev/null || true)
    if [[ $out == *"$want"* ]]; then
      printf '  %s after %ss\n' "$what" "$((SECONDS - start))"
      return 0
    fi
    sleep 1
  done
  printf '  timed out waiting for %s; last output:\n%s\n' "$what" "$out" >&2
  return 1
}

weights() { kubectl get mra -n shop checkout -o 'jsonpath={.status.weights}'; }
endpoint() { local var="ENDPOINT_${1^^}"; var=${var//-/_}; echo "${!var}"; }

if [ -z "${MULTIREGION_BIN:-}" ]; then
  step "building multiregion and localregions"
  cargo build --workspace --bins
fi
step "building (or finding cached) etcd, kube-apiserver, kubectl, KWOK, Helm, Traefik, CoreDNS, ExternalDNS"
bins=$(bash tests/controlplane/build.sh)
bash tests/controlplane/build-traffic.sh >/dev/null
export PATH="$bins:$PATH"

step "starting hub, us-east and eu-west (real control planes as processes)"
RUST_LOG=warn,kube_client=off "$lr" --dir "$dir" up hub us-east eu-west
export KUBECONFIG="$dir/hub.kubeconfig"
eval "$("$lr" --dir "$dir" env)"   # ENDPOINT_US_EAST=http://127.0.0.11:PORT ...

step "starting the gateway (Traefik) and DNS (ExternalDNS into CoreDNS) on the hub"
"$lr" --dir "$dir" traffic | tee "$dir/traffic.txt"
gateway=$(awk '$1 == "gateway" {print $2}' "$dir/traffic.txt")

step "installing the CRDs with kubectl"
kubectl apply --server-side -f crds/
kubectl wait --for=condition=Established crd/multiregionapps.multiregion.io crd/regions.multiregion.io

step "installing the chart with Helm (namespace enforces the restricted Pod Security Standard)"
kubectl create namespace "$ns"
kubectl label namespace "$ns" pod-security.kubernetes.io/enforce=restricted
helm install multiregion charts/multiregion -n "$ns" --set image.repository=multiregion,image.tag=demo --wait --timeout 90s

step "running the operator under the chart's ServiceAccount"
token=$(kubectl -n "$ns" create token multiregion --duration 2h)
server=$(kubectl config view --raw -o 'jsonpath={.clusters[0].cluster.server}')
ca=$(kubectl config view --raw -o 'jsonpath={.clusters[0].cluster.certificate-authority-data}')
cat > "$dir/operator.kubeconfig" <<YAML
apiVersion: v1
kind: Config
clusters: [ { name: hub, cluster: { server: "$server", certificate-authority-data: "$ca" } } ]
users: [ { name: multiregion, user: { token: "$token" } } ]
contexts: [ { name: multiregion, context: { cluster: hub, user: multiregion } } ]
current-context: multiregion
YAML
for region in us-east eu-west; do
  # Least privilege: join creates the operator's identity in the member and
  # stores only its token in the hub, with the Region.
  "$mr" join "$region" --member-kubeconfig "$dir/$region.kubeconfig" --hub-kubeconfig "$dir/hub.kubeconfig" \
    --endpoint "$(endpoint "$region")" --allow-namespace shop
  kubectl patch region "$region" --type merge -p '{"spec":{"probe":{"intervalSeconds":1,"timeoutSeconds":1}}}'
done
RUST_LOG=info,kube_client=off "$mr" run --kubeconfig "$dir/operator.kubeconfig" \
  --namespace "$ns" --metrics-addr 127.0.0.1:0 --log-format text > "$dir/logs/operator.log" 2>&1 &
operator_pid=$!
wait_for "Regions Reachable" 30 "Reachable Reachable" kubectl get regions -o 'jsonpath={.items[*].status.phase}'
kubectl get regions

step "applying examples/checkout.yaml (health rounds every second for the demo)"
kubectl create namespace shop
kubectl apply -f examples/checkout.yaml
kubectl patch mra -n shop checkout --type merge -p '{"spec":{
  "healthCheck":{"intervalSeconds":1,"timeoutSeconds":1,"http":{"path":"/healthz"}},
  "traffic":{"httpRoute":{"name":"checkout","parentRefs":[{"name":"multiregion","namespace":"gateway"}]},
             "dnsEndpoint":{"dnsName":"checkout.multiregion.test","recordTTL":5,"mode":"Failover"}}}}'
wait_for "us-east serving" 60 "us-east=100 eu-west=0" weights
wait_for "the gateway answering from us-east" 60 "us-east" curl -fsS --max-time 1 "$gateway/"
kubectl get mra -n shop
"$mr" status -n shop

step "us-east fails: its API server, nodes and endpoint stop; 20 requests/s go through the gateway"
"$lr" --dir "$dir" load --url "$gateway/" --rate 20 --seconds 15 > "$dir/load" &
load_pid=$!
sleep 3
"$lr" --dir "$dir" fail us-east
start=$SECONDS
while (( SECONDS - start < 30 )); do
  w=$(weights)
  printf '  t=%2ss  %s\n' "$((SECONDS - start))" "$w"
  [[ $w == "us-east=0 eu-west=100" ]] && break
  sleep 1
done
[[ $(weights) == "us-east=0 eu-west=100" ]] || { echo "failover did not happen" >&2; exit 1; }
wait "$load_pid"
echo "  requests through the gateway, second by second (us-east failed at t=3s):"
sed 's/^/  /' "$dir/load"
kubectl get mra -n shop
"$mr" status -n shop

step "us-east comes back: it is fenced as a Standby with weight 0"
"$lr" --dir "$dir" recover us-east
wait_for "us-east Healthy again, as Standby" 30 "Standby Healthy" \
  kubectl get mra -n shop checkout -o 'jsonpath={.status.regions[0].role} {.status.regions[0].health}'
"$mr" status -n shop
kubectl get events -n shop --sort-by=.metadata.creationTimestamp | tail -8

if [ "$interactive" = 1 ]; then
  step "the clusters keep running: try kubectl (KUBECONFIG=$KUBECONFIG); Ctrl-C stops everything"
  while true; do sleep 3600; done
fi
step "demo finished"
