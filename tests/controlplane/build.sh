#!/usr/bin/env bash
# Builds the control-plane binaries localregions runs (etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, kubectl, kwok, helm) from the Go
# modules beside this script, through the Go module proxy.
#
# The result is cached under $HOME/.cache/multiregion/controlplane/<key>/bin,
# where <key> hashes every go.mod/go.sum here, this script and the Go version,
# so a warm run costs a hash and a few stat calls. Prints the bin directory.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache_root=${MULTIREGION_CACHE:-$HOME/.cache/multiregion}
go_version=$(go env GOVERSION)
# Only this script's own modules: build-traffic.sh's have a cache of their own.
modules=(etcd kubernetes kwok helm)
key=$( (cd "$here" && cat ./build.sh; for m in "${modules[@]}"; do cat "./$m/go.mod" "./$m/go.sum" ./"$m"/*.go 2>/dev/null; done; echo "$go_version") | sha256sum | cut -c1-16)
out="$cache_root/controlplane/$key"
bins=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok helm)

complete() {
  for b in "${bins[@]}"; do [ -x "$out/bin/$b" ] || return 1; done
}

if complete; then
  echo "$out/bin"
  exit 0
fi

mkdir -p "$cache_root/controlplane"
exec 9>"$cache_root/controlplane/.lock"
flock 9
if complete; then
  echo "$out/bin"
  exit 0
fi

k8s_version=$(sed -n 's/^require k8s.io\/kubernetes \(v[0-9.]*\).*/\1/p' "$here/kubernetes/go.mod")
k8s_minor=$(echo "$k8s_version" | cut -d. -f2)
helm_version=$(awk '$1 == "helm.sh/helm/v3" {print $2}' "$here/helm/go.mod")
build_date=$(date -u +%Y-%m-%dT%H:%M:%SZ)

stage="$out.partial"
rm -rf "$stage"
mkdir -p "$stage/bin"
log() { echo "controlplane: $*" >&2; }

# Version stamps: kubectl version, /version and Helm's kubeVersion checks read these.
k8s_ld="-s -w"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  k8s_ld+=" -X $p.gitVersion=$k8s_version -X $p.gitMajor=1 -X $p.gitMinor=$k8s_minor"
  k8s_ld+=" -X $p.gitTreeState=clean -X $p.buildDate=$build_date"
done

build() { # dir ldflags packages...
  local dir=$1 ld=$2; shift 2
  log "building $* (this takes a while on a cold cache)"
  (cd "$here/$dir" && go build -mod=readonly -trimpath -ldflags "$ld" -o "$stage/bin/" "$@") >&2 &
  heartbeat $! "${*##*/}"
}

# heartbeat PID WHAT: waits for PID, saying every 30 s that WHAT is still
# building and for how long, so a cold build never looks stuck.
heartbeat() {
  local pid=$1 what=$2 began waited=0
  began=$(date +%s)
  while kill -0 "$pid" 2>/dev/null; do
    sleep 1
    waited=$((waited + 1))
    if [ $((waited % 30)) -eq 0 ]; then
      log "still building $what ($(( $(date +%s) - began ))s)"
    fi
  done
  wait "$pid"
}

start=$(date +%s)
build kubernetes "$k8s_ld" k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl
build etcd "-s -w" .
build kwok "-s -w" sigs.k8s.io/kwok/cmd/kwok
build helm "-s -w -X helm.sh/helm/v3/internal/version.version=$helm_version -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$k8s_minor -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$k8s_minor" helm.sh/helm/v3/cmd/helm
log "built in $(( $(date +%s) - start ))s"

rm -rf "$out"
mv "$stage" "$out"
complete || { log "missing binaries in $out/bin"; exit 1; }
echo "$out/bin"
