#!/usr/bin/env bash
# Builds promtool (github.com/prometheus/prometheus/cmd/promtool) from the
# wrapper Go module in promtool/ next to this script, through the Go module
# proxy, and prints the bin directory holding it. tests/chart.rs uses it to
# check the chart's alerting rules and run their unit tests
# (charts/multiregion/tests/alerts.test.yaml) with `promtool test rules`.
#
# The binary is cached under $HOME/.cache/multiregion/promtool/<key>/bin (or
# $MULTIREGION_CACHE/promtool/...), where <key> hashes this script, the
# wrapper's go.mod/go.sum and the Go version. Progress goes to stderr.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache_root=${MULTIREGION_CACHE:-$HOME/.cache/multiregion}
log() { echo "promtool: $*" >&2; }

go_version=$(go env GOVERSION)
key=$( (cd "$here" && cat ./build-promtool.sh ./promtool/go.mod ./promtool/go.sum; echo "$go_version") | sha256sum | cut -c1-16)
out="$cache_root/promtool/$key"

if [ ! -x "$out/bin/promtool" ]; then
  mkdir -p "$cache_root/promtool"
  exec 9>"$cache_root/promtool/.lock"
  flock 9
  if [ ! -x "$out/bin/promtool" ]; then
    version=$(awk '$1 == "github.com/prometheus/prometheus" { print $2; exit }' "$here/promtool/go.mod")
    stage="$out.partial"
    rm -rf "$stage"
    mkdir -p "$stage/bin"
    log "building promtool $version (a few minutes on a cold cache)"
    start=$(date +%s)
    (cd "$here/promtool" && go build -mod=readonly -trimpath -buildvcs=false \
      -ldflags "-s -w -X github.com/prometheus/common/version.Version=${version#v}" \
      -o "$stage/bin/promtool" github.com/prometheus/prometheus/cmd/promtool) >&2
    log "built in $(( $(date +%s) - start ))s"
    rm -rf "$out"
    mv "$stage" "$out"
  fi
  exec 9>&-
fi
echo "$out/bin"
