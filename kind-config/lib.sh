# shellcheck shell=bash
# Shared by kind-config/images.sh and kind-config/walkthrough.sh (sourced, not
# run): the cache layout, cached Go builds, and starting the Docker engine
# where it is not running.
#
# Cache: ${MULTIREGION_CACHE:-$HOME/.cache/multiregion}/kind/
#   bin/<name>-<key>/     binaries built from the Go modules under kind-config/
#   rootfs/<name>-<key>.tar  Debian root filesystems made by debootstrap
#   images/<name>-<key>.tar  images saved with `docker save`
#   dockerd.pid           a Docker engine these scripts started (and will stop)
# Each <key> hashes what the thing is made from (these scripts, go.mod/go.sum,
# sources, the package list, the Go version), so a changed input makes a new
# entry and an unchanged one is found again.

# shellcheck disable=SC2034 # these are for the scripts that source this file
kind_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck disable=SC2034
repo_root=$(cd "$kind_dir/.." && pwd)
cache_root=${MULTIREGION_CACHE:-$HOME/.cache/multiregion}
kind_cache=$cache_root/kind
dockerd_pidfile=$kind_cache/dockerd.pid
# shellcheck disable=SC2034
kubernetes_version=v1.35.4

say() { printf '%s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

# key FILES... -> a short hash of the files' contents, the Go version and
# the words on stdin.
key() {
  { for f in "$@"; do if [ -f "$f" ]; then cat "$f"; else echo "absent: $f"; fi; done
    go env GOVERSION 2>/dev/null; cat; } | sha256sum | cut -c1-16
}

# go_build NAME MODULE_DIR ENV LDFLAGS TAGS PACKAGES... -> prints the bin dir.
# Builds PACKAGES in the wrapper module MODULE_DIR (go.mod pins them, go.sum
# checks them) with the environment words ENV (e.g. CGO_ENABLED=0), unless the
# cache already has them.
go_build() {
  local name=$1 dir=$2 env=$3 ldflags=$4 tags=$5
  shift 5
  local k out sources
  mapfile -t sources < <(find "$dir" -name '*.go' | sort)
  k=$({ declare -f go_build; printf '%s\n' "$env" "$ldflags" "$tags" "$@"; } | key "$dir"/go.mod "$dir"/go.sum "${sources[@]}")
  out=$kind_cache/bin/$name-$k
  if [ -f "$out/.complete" ]; then
    echo "$out"
    return 0
  fi
  say "building $name from Go modules ($*)"
  local start=$SECONDS
  rm -rf "$out.partial"
  mkdir -p "$out.partial"
  # shellcheck disable=SC2086 # ENV is a list of words on purpose
  (cd "$dir" && env $env GOFLAGS=-mod=readonly nice -n "${MULTIREGION_NICE:-10}" \
    go build -trimpath -tags "$tags" -ldflags "$ldflags" -o "$out.partial/" "$@") >&2 ||
    die "building $name failed"
  touch "$out.partial/.complete"
  rm -rf "$out"
  mv "$out.partial" "$out"
  say "built $name in $((SECONDS - start))s"
  echo "$out"
}

# Docker refuses a privileged container (which kind nodes are) when this
# machine's capability bounding set lacks a capability Docker grants: runc
# fails with "unable to apply caps: operation not permitted". Prints the
# missing capability numbers (0..40), nothing on a normal machine.
missing_caps() {
  local bnd
  bnd=$(awk '/^CapBnd:/ {print $2}' /proc/self/status 2>/dev/null)
  [ -n "$bnd" ] || return 0
  local i
  for i in $(seq 0 40); do
    if (((0x$bnd >> i & 1) == 0)); then printf '%s ' "$i"; fi
  done
}

# runc_nocaps -> path of the runtime wrapper that drops those capabilities.
runc_nocaps() {
  echo "$(go_build runc-nocaps "$kind_dir/images/cmd" "CGO_ENABLED=0" "-s -w" "" ./runc-nocaps)/runc-nocaps"
}

# docker_up: makes sure a Docker engine answers. One already running is used
# as it is. Otherwise dockerd is started here (as root), with the runc-nocaps
# runtime only when missing_caps finds something, and its pid is written to
# $dockerd_pidfile so that docker_down stops it again. Sets docker_started=1
# when it started one.
# shellcheck disable=SC2034 # read by the scripts that source this file
docker_started=0
docker_up() {
  if docker info >/dev/null 2>&1; then
    if [ -n "$(missing_caps)" ] && ! docker info --format '{{.DefaultRuntime}}' 2>/dev/null | grep -qx nocaps; then
      say "warning: this machine lacks capabilities ($(missing_caps)) that privileged containers get;"
      say "         the running Docker engine may fail to start kind nodes (see kind-config/lib.sh)"
    fi
    return 0
  fi
  command -v dockerd >/dev/null || die "Docker is not running and dockerd is not installed (Debian: apt-get install docker.io)"
  [ "$(id -u)" = 0 ] || die "Docker is not running; start it (or run this as root to have it started here)"
  local args=()
  if [ -n "$(missing_caps)" ]; then
    local wrapper
    wrapper=$(runc_nocaps)
    say "this machine's capability bounding set lacks capabilities $(missing_caps): dockerd gets the runc-nocaps runtime"
    args+=(--add-runtime "nocaps=$wrapper" --default-runtime nocaps)
  fi
  mkdir -p "$kind_cache"
  say "starting dockerd (log: $kind_cache/dockerd.log)"
  nohup dockerd "${args[@]}" >"$kind_cache/dockerd.log" 2>&1 &
  echo $! >"$dockerd_pidfile"
  # shellcheck disable=SC2034
  docker_started=1
  local deadline=$((SECONDS + 60))
  until docker info >/dev/null 2>&1; do
    if ! kill -0 "$(cat "$dockerd_pidfile")" 2>/dev/null; then
      tail -20 "$kind_cache/dockerd.log" >&2
      rm -f "$dockerd_pidfile"
      die "dockerd exited"
    fi
    ((SECONDS < deadline)) || die "dockerd did not answer within 60s (log: $kind_cache/dockerd.log)"
    sleep 0.5
  done
}

# docker_down: stops the dockerd that docker_up started (by its pid), if any.
docker_down() {
  [ -f "$dockerd_pidfile" ] || return 0
  local pid
  pid=$(cat "$dockerd_pidfile")
  if kill -0 "$pid" 2>/dev/null && grep -q dockerd "/proc/$pid/comm" 2>/dev/null; then
    say "stopping the dockerd started by these scripts (pid $pid)"
    kill -TERM "$pid"
    local deadline=$((SECONDS + 60))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.5; done
  fi
  rm -f "$dockerd_pidfile"
}
