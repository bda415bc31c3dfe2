#!/usr/bin/env bash
# Benchmark of the local regions: prints one JSON object with
#   build_cold_seconds  building every control-plane binary with an empty Go
#                       build cache and an empty binary cache (module
#                       downloads are reused); only with BENCH_COLD=1, else null
#   build_warm_seconds  build.sh when its cache is complete
#   up_seconds          `localregions up hub us-east eu-west`
#   resident_kib        resident memory of every process, and the total
# Usage: bash tests/controlplane/bench.sh  (after `cargo build --release`)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
bin=${LOCALREGIONS_BIN:-${CARGO_TARGET_DIR:-$root/target}/release/localregions}
now() { date +%s.%N; }
secs() { python3 -c 'import sys; print(f"{float(sys.argv[2]) - float(sys.argv[1]):.2f}")' "$1" "$2"; }

cold=null
if [ "${BENCH_COLD:-0}" = 1 ]; then
  tmp=$(mktemp -d)
  t0=$(now)
  MULTIREGION_CACHE="$tmp/cache" GOCACHE="$tmp/gocache" bash "$here/build.sh" >/dev/null
  cold=$(secs "$t0" "$(now)")
  rm -rf "$tmp"
fi

bash "$here/build.sh" >/dev/null # make sure the cache is complete
t0=$(now)
bash "$here/build.sh" >/dev/null
warm=$(secs "$t0" "$(now)")

dir=$(mktemp -d)
trap '"$bin" --dir "$dir" down >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT
t0=$(now)
RUST_LOG=warn,kube_client=off "$bin" --dir "$dir" up hub us-east eu-west >/dev/null
up=$(secs "$t0" "$(now)")
sleep 10 # let the clusters settle before reading memory: a figure, not a test
memory=$("$bin" --dir "$dir" memory)
total=$(echo "$memory" | python3 -c 'import json,sys; print(sum(json.load(sys.stdin).values()))')

cat <<JSON
{
  "machine": "$(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB",
  "build_cold_seconds": $cold,
  "build_warm_seconds": $warm,
  "up_seconds": $up,
  "clusters": ["hub", "us-east", "eu-west"],
  "resident_kib": $memory,
  "resident_total_mib": $((total / 1024))
}
JSON
