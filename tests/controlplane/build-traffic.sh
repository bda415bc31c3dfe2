#!/usr/bin/env bash
# Builds the traffic-path components the tests run as local processes beside
# the control planes: Toxiproxy (toxiproxy-server, toxiproxy-cli), the region
# endpoint (regionapp, answers with its region's name), Traefik,
# CoreDNS and ExternalDNS (external-dns), from the wrapper Go modules in
# toxiproxy/, traefik/, coredns/ and externaldns/ next to this script, through
# the Go module proxy.
#
# Usage: build-traffic.sh [toxiproxy|traefik|coredns|externaldns]...
# With no argument it builds all four. Each named component is built only if
# its binaries are missing, so a test that needs Toxiproxy alone does not pay
# for Traefik or ExternalDNS.
#
# The result is cached under $HOME/.cache/multiregion/traffic/<key>/bin (or
# $MULTIREGION_CACHE/traffic/...), where <key> hashes this script, the four
# wrappers' go.mod/go.sum/*.go and the Go version; it is separate from
# build.sh's cache. Prints the bin directory on stdout; progress goes to
# stderr, with a line at least every 20 s while a build runs.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache_root=${MULTIREGION_CACHE:-$HOME/.cache/multiregion}
go_version=$(go env GOVERSION)
components=(toxiproxy regionapp traefik coredns externaldns)
key=$( (cd "$here" && cat ./build-traffic.sh; for c in "${components[@]}"; do cat "./$c/go.mod" "./$c/go.sum" ./"$c"/*.go 2>/dev/null; done; echo "$go_version") | sha256sum | cut -c1-16)
out="$cache_root/traffic/$key"

log() { echo "traffic: $*" >&2; }

binaries() { # component -> the binaries it provides
  case $1 in
    toxiproxy) echo toxiproxy-server toxiproxy-cli ;;
    regionapp) echo regionapp ;;
    traefik) echo traefik ;;
    coredns) echo coredns ;;
    externaldns) echo external-dns ;;
    *) log "unknown component '$1' (want one of: ${components[*]})"; return 1 ;;
  esac
}

wanted=("$@")
[ ${#wanted[@]} -gt 0 ] || wanted=("${components[@]}")
for c in "${wanted[@]}"; do binaries "$c" >/dev/null; done

present() { # component
  local b
  for b in $(binaries "$1"); do [ -x "$out/bin/$b" ] || return 1; done
}

missing() {
  local c
  for c in "${wanted[@]}"; do present "$c" || return 0; done
  return 1
}

if ! missing; then
  echo "$out/bin"
  exit 0
fi

mkdir -p "$cache_root/traffic"
exec 9>"$cache_root/traffic/.lock"
flock 9
if ! missing; then
  echo "$out/bin"
  exit 0
fi

mod_version() { # wrapper-dir module -> version required in that wrapper's go.mod
  awk -v m="$2" '($1 == m || ($1 == "require" && $2 == m)) { print ($1 == m ? $2 : $3); exit }' "$here/$1/go.mod"
}

ticker_pid=
stop_ticker() {
  if [ -n "$ticker_pid" ]; then
    kill "$ticker_pid" 2>/dev/null || true
    wait "$ticker_pid" 2>/dev/null || true
    ticker_pid=
  fi
}
trap stop_ticker EXIT

go_build() { # component stage-dir output-name ldflags package
  local comp=$1 stage=$2 name=$3 ld=$4 pkg=$5 started
  started=$(date +%s)
  log "building $name ($pkg) ..."
  (
    sp=
    trap '[ -z "$sp" ] || kill "$sp" 2>/dev/null; exit 0' TERM
    while :; do
      sleep 20 & sp=$!
      wait "$sp"
      log "still building $name ($comp): $(( $(date +%s) - started ))s"
    done
  ) &
  ticker_pid=$!
  (cd "$here/$comp" && go build -mod=readonly -trimpath -buildvcs=false -ldflags "$ld" -o "$stage/$name" "$pkg") >&2
  stop_ticker
  log "built $name in $(( $(date +%s) - started ))s"
}

build_component() { # component
  local comp=$1 stage v b
  stage="$out/.stage-$comp"
  rm -rf "$stage"
  mkdir -p "$stage" "$out/bin"
  case $comp in
    toxiproxy)
      v=$(mod_version toxiproxy github.com/Shopify/toxiproxy/v2)
      go_build toxiproxy "$stage" toxiproxy-server "-s -w -X github.com/Shopify/toxiproxy/v2.Version=$v" github.com/Shopify/toxiproxy/v2/cmd/server
      go_build toxiproxy "$stage" toxiproxy-cli "-s -w -X github.com/Shopify/toxiproxy/v2.Version=$v" github.com/Shopify/toxiproxy/v2/cmd/cli
      ;;
    regionapp)
      go_build regionapp "$stage" regionapp "-s -w" .
      ;;
    traefik)
      v=$(mod_version traefik github.com/traefik/traefik/v3)
      go_build traefik "$stage" traefik "-s -w -X github.com/traefik/traefik/v3/pkg/version.Version=$v" github.com/traefik/traefik/v3/cmd/traefik
      ;;
    coredns)
      go_build coredns "$stage" coredns "-s -w" .
      ;;
    externaldns)
      v=$(mod_version externaldns sigs.k8s.io/external-dns)
      go_build externaldns "$stage" external-dns "-s -w -X sigs.k8s.io/external-dns/pkg/apis/externaldns.Version=$v" sigs.k8s.io/external-dns
      ;;
  esac
  # Each binary appears in bin/ whole (rename), so a reader never sees half of one.
  for b in $(binaries "$comp"); do mv -f "$stage/$b" "$out/bin/$b"; done
  rm -rf "$stage"
}

start=$(date +%s)
for c in "${wanted[@]}"; do
  present "$c" || build_component "$c"
done
log "done in $(( $(date +%s) - start ))s"

if missing; then
  log "missing binaries in $out/bin"
  exit 1
fi
echo "$out/bin"
