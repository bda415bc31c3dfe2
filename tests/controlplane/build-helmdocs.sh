#!/usr/bin/env bash
# Builds helm-docs (github.com/norwoodj/helm-docs) from the wrapper Go module
# in helmdocs/ next to this script, through the Go module proxy, and
# optionally writes a chart's README.md with it.
#
# Usage:
#   build-helmdocs.sh                 # prints the bin directory holding helm-docs
#   build-helmdocs.sh docs CHART_DIR  # writes CHART_DIR/README.md from its
#                                     # values.yaml (`# --` comments) and README.md.gotmpl
#
# `docs` is the one place the helm-docs flags live: tests/chart.rs runs it on
# a copy of charts/multiregion and fails when the committed README differs.
#
# The binary is cached under $HOME/.cache/multiregion/helmdocs/<key>/bin (or
# $MULTIREGION_CACHE/helmdocs/...), where <key> hashes this script, the
# wrapper's go.mod/go.sum and the Go version; separate from build.sh's and
# build-traffic.sh's caches. Progress goes to stderr.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache_root=${MULTIREGION_CACHE:-$HOME/.cache/multiregion}

log() { echo "helmdocs: $*" >&2; }
usage() { log "usage: $0 [docs CHART_DIR]"; exit 2; }

chart=
case $# in
  0) ;;
  2) [ "$1" = docs ] || usage; chart=$2 ;;
  *) usage ;;
esac
if [ -n "$chart" ] && [ ! -f "$chart/Chart.yaml" ]; then
  log "$chart has no Chart.yaml"
  exit 2
fi

go_version=$(go env GOVERSION)
key=$( (cd "$here" && cat ./build-helmdocs.sh ./helmdocs/go.mod ./helmdocs/go.sum; echo "$go_version") | sha256sum | cut -c1-16)
out="$cache_root/helmdocs/$key"

if [ ! -x "$out/bin/helm-docs" ]; then
  mkdir -p "$cache_root/helmdocs"
  exec 9>"$cache_root/helmdocs/.lock"
  flock 9
  if [ ! -x "$out/bin/helm-docs" ]; then
    version=$(awk '$1 == "github.com/norwoodj/helm-docs" { print $2; exit }' "$here/helmdocs/go.mod")
    stage="$out.partial"
    rm -rf "$stage"
    mkdir -p "$stage/bin"
    log "building helm-docs $version"
    start=$(date +%s)
    (cd "$here/helmdocs" && go build -mod=readonly -trimpath -buildvcs=false \
      -ldflags "-s -w -X main.version=${version#v}" \
      -o "$stage/bin/helm-docs" github.com/norwoodj/helm-docs/cmd/helm-docs) >&2
    log "built in $(( $(date +%s) - start ))s"
    rm -rf "$out"
    mv "$stage" "$out"
  fi
  exec 9>&-
fi

if [ -z "$chart" ]; then
  echo "$out/bin"
  exit 0
fi

# helm-docs reports a chart it cannot document as a warning and still exits
# 0, so any warning fails here.
chart=$(cd "$chart" && pwd)
warnings=$(cd "$chart" && "$out/bin/helm-docs" \
  --chart-search-root . \
  --template-files README.md.gotmpl \
  --output-file README.md \
  --sort-values-order file \
  --log-level warning 2>&1 >/dev/null) || { log "helm-docs failed: $warnings"; exit 1; }
if [ -n "$warnings" ]; then
  log "helm-docs: $warnings"
  exit 1
fi
log "wrote $chart/README.md"
