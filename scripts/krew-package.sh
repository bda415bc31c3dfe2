#!/usr/bin/env bash
# Packs a multiregion binary for krew: OUT_DIR/multiregion_OS_ARCH.tar.gz
# holding it as kubectl-multiregion.
#
# Usage: scripts/krew-package.sh BINARY OUT_DIR [OS ARCH]
#   OS and ARCH default to this machine's (linux, amd64 or arm64).
set -euo pipefail

[ $# -ge 2 ] || { echo "usage: $0 BINARY OUT_DIR [OS ARCH]" >&2; exit 2; }
binary=$1 out=$2
os=${3:-$(uname -s | tr '[:upper:]' '[:lower:]')}
case "${4:-$(uname -m)}" in
  x86_64|amd64) arch=amd64 ;;
  aarch64|arm64) arch=arm64 ;;
  *) arch=${4:-$(uname -m)} ;;
esac
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
install -m 0755 "$binary" "$stage/kubectl-multiregion"
mkdir -p "$out"
tar -C "$stage" -czf "$out/multiregion_${os}_${arch}.tar.gz" kubectl-multiregion
echo "$out/multiregion_${os}_${arch}.tar.gz"
