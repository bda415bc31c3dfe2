#!/usr/bin/env bash
# Runs an outside checker, checkov's Kubernetes checks, over what this
# project asks users to install: the Helm chart rendered with its defaults
# and with every optional object on (CRDs, ServiceMonitor, PrometheusRule,
# dashboard), and the member identity `join` makes (`multiregion
# member-rbac`, plain and with `--allow-secrets`).
#
# Fails on any finding but the checks skipped below, each explained in
# docs/security.md ("An outside checker"). Prints checkov's summary of
# passed, failed and skipped checks.
#
# checkov (pinned below) is installed from PyPI into a virtualenv cached
# under $HOME/.cache/multiregion/checkov/<key> (or $MULTIREGION_CACHE),
# keyed by its version and the Python version; helm comes from
# tests/controlplane/build.sh's cache.
#
# Usage: check-manifests.sh [--all]   (--all: skip nothing, to count every finding)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

version=3.3.30
# Each one is explained in docs/security.md.
skipped=(CKV_K8S_43 CKV_K8S_38 CKV_K8S_15)

log() { echo "check-manifests: $*" >&2; }

cache_root=${MULTIREGION_CACHE:-$HOME/.cache/multiregion}
key=$( (echo "checkov $version"; python3 -V) | sha256sum | cut -c1-16)
venv="$cache_root/checkov/$key"
if [ ! -e "$venv/.installed" ]; then
  log "installing checkov $version into $venv (once; a few minutes)"
  rm -rf "$venv"
  mkdir -p "$cache_root/checkov"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "checkov==$version" >&2
  touch "$venv/.installed"
fi
# Builds for another checkov or Python are never used again.
find "$cache_root/checkov" -mindepth 1 -maxdepth 1 -type d ! -name "$key" -exec rm -rf {} +

bin=$(bash tests/controlplane/build.sh)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/manifests"
"$bin/helm" template multiregion charts/multiregion --namespace multiregion-system \
  > "$work/manifests/chart-defaults.yaml"
"$bin/helm" template multiregion charts/multiregion --namespace multiregion-system \
  --set crds.enabled=true --set serviceMonitor.enabled=true \
  --set prometheusRule.enabled=true --set dashboard.enabled=true \
  > "$work/manifests/chart-everything.yaml"
cargo run -q -- member-rbac > "$work/manifests/member.yaml"
cargo run -q -- member-rbac --allow-secrets > "$work/manifests/member-secrets.yaml"

skip=()
if [ "${1:-}" != --all ]; then
  skip=(--skip-check "$(IFS=,; echo "${skipped[*]}")")
fi
log "checkov $version over the chart and the member identity"
"$venv/bin/checkov" --framework kubernetes --directory "$work/manifests" \
  --compact --quiet --skip-download --output cli "${skip[@]}"
