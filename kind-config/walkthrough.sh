#!/usr/bin/env bash
# The kind walkthrough: three kind clusters (hub, us-east, eu-west) on this
# machine, the operator running in the hub as a pod of the Helm chart, the
# members registered as Regions, and an app (kind-config/app.yaml) that
# answers HTTP in both regions; then us-east's node is stopped to watch the
# failover, and started again to see it come back fenced.
#
# Usage: kind-config/walkthrough.sh up|failover|recover|down|kubectl ARGS...
#   up        images (kind-config/images.sh: all made here, nothing pulled),
#             clusters, the README's "Install with Helm" lines as written
#             (image, CRDs, chart), Regions with `multiregion join` (least
#             privilege), the app; waits until us-east serves it on
#             http://127.0.0.1:30081
#   failover  docker stop us-east-control-plane; prints the app's status as
#             the weights move to eu-west (http://127.0.0.1:30082)
#   recover   docker start us-east-control-plane; waits until us-east is back
#             as a Standby with weight 0
#   down      deletes the clusters, and stops the Docker engine if `up`
#             started it
#   kubectl   runs the walkthrough's kubectl (the clusters' version)
#
# Needs Docker (started here if it is installed but not running), Go, and
# Rust; kind, kubectl and Helm are taken from PATH or built from their Go
# modules (tests/controlplane/build.sh). The contexts kind-hub, kind-us-east
# and kind-eu-west go to your kubeconfig ($KUBECONFIG or ~/.kube/config).
# WAIT_SECONDS (default 300) bounds each wait.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$repo_root"

clusters=(hub us-east eu-west)
regions=(us-east eu-west)
declare -A host_port=([us-east]=30081 [eu-west]=30082)
ns=multiregion-system
app_ns=shop
app=hello
state=$repo_root/.local/kind
wait_seconds=${WAIT_SECONDS:-300}
started=$SECONDS

step() { printf '\n==> [%3ds] %s\n' "$((SECONDS - started))" "$*"; }

# ------------------------------------------------------------------ tools

# tools: kind, kubectl and helm on PATH (recorded in $state/env by `up`).
tools() {
  if [ -f "$state/env" ]; then
    # shellcheck disable=SC1091 # written by up
    source "$state/env"
  fi
  if [ -n "${TOOLS_PATH:-}" ]; then PATH=$TOOLS_PATH:$PATH; fi
}

# The multiregion CLI on this host, for `join`: $MULTIREGION_BIN, else
# built with cargo.
multiregion_cli() {
  if [ -n "${MULTIREGION_BIN:-}" ]; then echo "$MULTIREGION_BIN"; return; fi
  say "cargo build --bin multiregion (the CLI, for join)"
  cargo build --locked --bin multiregion >&2
  echo "${CARGO_TARGET_DIR:-$repo_root/target}/debug/multiregion"
}

prepare_tools() {
  mkdir -p "$state"
  step "images and tools (kind-config/images.sh; cached after the first run)"
  local images_env
  images_env=$(MULTIREGION_KEEP_DOCKER=1 "$kind_dir/images.sh" --env)
  eval "$images_env"
  local path_dirs=()
  command -v kind >/dev/null || path_dirs+=("$(dirname "$KIND")")
  if ! command -v helm >/dev/null; then
    path_dirs+=("$(bash tests/controlplane/build.sh)")
  fi
  # kubectl of the clusters' version (the one built with the node image)
  path_dirs=("$(dirname "$KUBECTL")" "${path_dirs[@]}")
  TOOLS_PATH=$(IFS=:; echo "${path_dirs[*]}")
  printf 'TOOLS_PATH=%q\nNODE_IMAGE=%q\nOPERATOR_IMAGE=%q\nAPP_IMAGE=%q\n' \
    "$TOOLS_PATH" "$NODE_IMAGE" "$OPERATOR_IMAGE" "$APP_IMAGE" >"$state/env"
  PATH=$TOOLS_PATH:$PATH
  say "kind $(kind version | awk '{print $2}'), kubectl $(kubectl version --client -o json | sed -n 's/.*"gitVersion": "\(.*\)".*/\1/p' | head -1), helm $(helm version --short)"
}

# ------------------------------------------------------------------ clusters

# render_config CLUSTER: kind-config/CLUSTER.yaml plus what this machine needs:
# - cgroup v1: Kubernetes 1.35's kubelet refuses it unless failCgroupV1 is false;
# - a capability bounding set without CAP_SYS_RESOURCE (see lib.sh): runc in
#   the node cannot give pods a negative OOM score, so containerd must not ask.
render_config() {
  local cluster=$1 out=$state/$1.yaml
  cp "kind-config/$cluster.yaml" "$out"
  if [ "$(stat -fc %T /sys/fs/cgroup)" != cgroup2fs ]; then
    cat >>"$out" <<'YAML'
# added by walkthrough.sh: this host has cgroup v1
kubeadmConfigPatches:
  - |
    kind: KubeletConfiguration
    failCgroupV1: false
YAML
  fi
  if [ -n "$(missing_caps)" ]; then
    cat >>"$out" <<'YAML'
# added by walkthrough.sh: this host cannot grant CAP_SYS_RESOURCE
containerdConfigPatches:
  - |
    [plugins."io.containerd.grpc.v1.cri"]
      restrict_oom_score_adj = true
YAML
  fi
  echo "$out"
}

cluster_exists() { kind get clusters 2>/dev/null | grep -qx "$1"; }

create_clusters() {
  local c t
  for c in "${clusters[@]}"; do
    if cluster_exists "$c"; then
      step "kind cluster $c exists"
      continue
    fi
    step "creating kind cluster $c"
    t=$SECONDS
    kind create cluster --name "$c" --image "$NODE_IMAGE" --config "$(render_config "$c")"
    say "cluster $c created in $((SECONDS - t))s"
  done
}

# wait_for DESCRIPTION COMMAND...: runs COMMAND every second until it succeeds.
wait_for() {
  local what=$1 deadline=$((SECONDS + wait_seconds))
  shift
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      say "timed out after ${wait_seconds}s waiting for $what"
      return 1
    fi
    sleep 1
  done
}

nodes_ready() {
  [ "$(kubectl --context "kind-$1" get nodes -o 'jsonpath={.items[*].status.conditions[?(@.type=="Ready")].status}')" = True ]
}

# ------------------------------------------------------------------ the app

mra() { kubectl --context kind-hub -n "$app_ns" get mra "$app" "$@"; }
mra_field() { mra -o "jsonpath=$1" 2>/dev/null; }
region_field() { mra_field "{.status.regions[?(@.name==\"$1\")].$2}"; }

# the region name the app answers with on the host port, or nothing
answer() { curl -fsS --max-time 2 "http://127.0.0.1:${host_port[$1]}/" 2>/dev/null | tr -d '\n' || true; }

serving() { # REGION: the app is Healthy there with all the weight, and answers HTTP
  [ "$(mra_field '{.status.activeRegion}')" = "$1" ] &&
    [ "$(region_field "$1" weight)" = 100 ] &&
    [ "$(region_field "$1" health)" = Healthy ] &&
    [ -n "$(answer "$1")" ]
}

fenced() { # REGION: back, Healthy, a Standby with weight 0
  [ "$(region_field "$1" role)" = Standby ] &&
    [ "$(region_field "$1" weight)" = 0 ] &&
    [ "$(region_field "$1" health)" = Healthy ]
}

show() {
  mra
  kubectl --context kind-hub -n "$app_ns" get mra "$app" -o \
    'jsonpath={range .status.regions[*]}{"  "}{.name}{": role="}{.role}{" health="}{.health}{" ready="}{.readyReplicas}{"/"}{.desiredReplicas}{" weight="}{.weight}{"\n"}{end}'
  local r a
  for r in "${regions[@]}"; do
    a=$(answer "$r")
    printf '  curl http://127.0.0.1:%s/ -> %s\n' "${host_port[$r]}" "${a:-(no answer)}"
  done
}

# watch_until DESCRIPTION COMMAND...: prints the app's weights each time they
# change, until COMMAND succeeds.
watch_until() {
  local what=$1 deadline=$((SECONDS + wait_seconds)) t0=$SECONDS last='' now
  shift
  changed() {
    now="active=$(mra_field '{.status.activeRegion}') weights=[$(mra_field '{.status.weights}')] healthy=$(mra_field '{.status.healthy}')"
    if [ "$now" != "$last" ]; then
      printf '  +%3ds  %s\n' "$((SECONDS - t0))" "$now"
      last=$now
    fi
  }
  while :; do
    changed
    if "$@" >/dev/null 2>&1; then
      changed
      say "  $what after $((SECONDS - t0))s"
      return 0
    fi
    if ((SECONDS >= deadline)); then
      say "timed out after ${wait_seconds}s waiting for $what"
      return 1
    fi
    sleep 1
  done
}

ensure_namespace() { # CONTEXT NAME
  kubectl --context "$1" get namespace "$2" >/dev/null 2>&1 || kubectl --context "$1" create namespace "$2"
}

apply_app() {
  kubectl --context kind-hub apply -f kind-config/app.yaml
}

# The README's "Install with Helm" commands, run as written against the
# hub (a kubeconfig whose only context is kind-hub). Its first line,
# `docker build -t multiregion:dev .`, pulls public base images, which
# this machine cannot: images.sh built the same Dockerfile on base images
# made here, and that image is tagged multiregion:dev instead.
readme_install() {
  local line lines
  mapfile -t lines < <(readme_install_lines)
  [ "${#lines[@]}" -ge 3 ] || { echo "walkthrough: no install lines under README's '## Install with Helm'" >&2; return 1; }
  docker tag "$OPERATOR_IMAGE" multiregion:dev
  kind get kubeconfig --name hub >"$state/hub-only.kubeconfig"
  for line in "${lines[@]}"; do
    case $line in
      "docker build "*) step "README, replaced by images.sh's build of the same Dockerfile: $line" ;;
      *)
        step "README: $line"
        (export KUBECONFIG="$state/hub-only.kubeconfig"; eval "$line") </dev/null ||
          { echo "walkthrough: the README's install line failed: $line" >&2; return 1; }
        ;;
    esac
  done
}

# The first sh block under "## Install with Helm", one command a line
# (continued lines joined).
readme_install_lines() {
  awk '/^## Install with Helm/ {in_section=1; next}
       in_section && /^## / {exit}
       in_section && /^```sh/ {in_block=1; next}
       in_block && /^```/ {exit}
       in_block {print}' "$repo_root/README.md" |
    sed -e ':a' -e '/\\$/N; s/\\\n//; ta' -e 's/  *# .*$//'
}

# ------------------------------------------------------------------ steps

up() {
  docker_up
  prepare_tools
  create_clusters
  local c
  for c in "${clusters[@]}"; do wait_for "cluster $c's node to be Ready" nodes_ready "$c"; done

  step "loading the app image into the regions (kind load docker-image)"
  for c in "${regions[@]}"; do kind load docker-image "$APP_IMAGE" --name "$c"; done
  step "installing as the README says (Install with Helm)"
  readme_install

  local r mr
  mr=$(multiregion_cli)
  for r in "${regions[@]}"; do
    step "joining $r (multiregion join: least privilege in the member; the operator reaches https://$r-control-plane:6443)"
    kind get kubeconfig --name "$r" >"$state/$r.admin.kubeconfig"
    "$mr" join "$r" --member-kubeconfig "$state/$r.admin.kubeconfig" --hub-context kind-hub \
      --internal-server "https://$r-control-plane:6443" --endpoint "http://$r-control-plane:30080" \
      --allow-namespace "$app_ns"
    kubectl --context kind-hub patch region "$r" --type merge \
      -p "{\"spec\":{\"location\":{\"geo\":\"${r%%-*}\"},\"probe\":{\"intervalSeconds\":2,\"timeoutSeconds\":1}}}"
  done

  kubectl --context kind-hub -n "$ns" rollout status deployment/multiregion --timeout "${wait_seconds}s"
  kubectl --context kind-hub -n "$ns" get pods -o wide

  step "applying kind-config/app.yaml"
  ensure_namespace kind-hub "$app_ns"
  apply_app
  step "waiting until us-east serves the app"
  watch_until "us-east serves" serving us-east
  kubectl --context kind-hub get regions
  show
  step "up in $((SECONDS - started))s; next: $0 failover"
}

failover() {
  tools
  step "stopping us-east's node (docker stop us-east-control-plane); the weights as they move:"
  docker stop us-east-control-plane >"$state/docker-stop.log" 2>&1 &
  local stopping=$!
  watch_until "eu-west serves" serving eu-west
  wait "$stopping" || { cat "$state/docker-stop.log" >&2; return 1; }
  show
  step "failover in $((SECONDS - started))s; next: $0 recover"
}

recover() {
  tools
  step "starting us-east's node again (docker start us-east-control-plane)"
  docker start us-east-control-plane >/dev/null
  step "waiting for us-east to come back fenced (Standby, weight 0)"
  watch_until "us-east is back as a Standby" fenced us-east
  show
  say "  (traffic returns to us-east after it has been Healthy for failbackHoldSeconds: 60)"
  step "recover in $((SECONDS - started))s; next: $0 down"
}

down() {
  tools
  if docker info >/dev/null 2>&1; then
    local c
    for c in "${clusters[@]}"; do
      if command -v kind >/dev/null; then
        if cluster_exists "$c"; then
          step "deleting kind cluster $c"
          kind delete cluster --name "$c"
        fi
      else # kind is gone: its node containers carry the cluster's label
        docker ps -aq --filter "label=io.x-k8s.kind.cluster=$c" | xargs -r docker rm -f -v >/dev/null
      fi
    done
  fi
  docker_down
  rm -rf "$state"
  step "down in $((SECONDS - started))s"
}

case "${1:-}" in
  up) up ;;
  failover) failover ;;
  recover) recover ;;
  down) down ;;
  kubectl)
    shift
    tools
    exec kubectl "$@"
    ;;
  *)
    echo "usage: $0 up|failover|recover|down|kubectl ARGS..." >&2
    exit 2
    ;;
esac
