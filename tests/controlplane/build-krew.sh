#!/usr/bin/env bash
# Builds krew (as kubectl-krew) and validate-krew-manifest from the wrapper
# Go module in krew/ next to this script, through the Go module proxy, and
# prints the bin directory holding them.
#
# The binaries are cached under $HOME/.cache/multiregion/krew/<key>/bin (or
# $MULTIREGION_CACHE/krew/...), where <key> hashes this script, the
# wrapper's go.mod/go.sum and the Go version. Progress goes to stderr.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache_root=${MULTIREGION_CACHE:-$HOME/.cache/multiregion}
log() { echo "krew: $*" >&2; }

go_version=$(go env GOVERSION)
key=$( (cd "$here" && cat ./build-krew.sh ./krew/go.mod ./krew/go.sum; echo "$go_version") | sha256sum | cut -c1-16)
out="$cache_root/krew/$key"

if [ ! -x "$out/bin/kubectl-krew" ]; then
  mkdir -p "$cache_root/krew"
  exec 9>"$cache_root/krew/.lock"
  flock 9
  if [ ! -x "$out/bin/kubectl-krew" ]; then
    version=$(awk '$1 == "require" && $2 == "sigs.k8s.io/krew" { print $3; exit }' "$here/krew/go.mod")
    stage="$out.partial"
    rm -rf "$stage"
    mkdir -p "$stage/bin"
    log "building krew $version"
    start=$(date +%s)
    (cd "$here/krew" &&
      go build -mod=readonly -trimpath -buildvcs=false -ldflags "-s -w" \
        -o "$stage/bin/kubectl-krew" sigs.k8s.io/krew/cmd/krew &&
      go build -mod=readonly -trimpath -buildvcs=false -ldflags "-s -w" \
        -o "$stage/bin/validate-krew-manifest" sigs.k8s.io/krew/cmd/validate-krew-manifest) >&2
    log "built in $(( $(date +%s) - start ))s"
    rm -rf "$out"
    mv "$stage" "$out"
  fi
  exec 9>&-
fi
echo "$out/bin"
