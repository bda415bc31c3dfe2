#!/usr/bin/env bash
# Prints the krew plugin manifest for a release (for krew-index, or
# `kubectl krew install --manifest FILE --archive ARCHIVE`).
#
# Usage: scripts/krew-manifest.sh VERSION URL_BASE ARCHIVE...
#   VERSION   the release, vMAJOR.MINOR.PATCH
#   URL_BASE  where the archives are published (https://.../download/VERSION)
#   ARCHIVE   multiregion_OS_ARCH.tar.gz, each holding the binary as
#             kubectl-multiregion (scripts/krew-package.sh makes one)
# Prints the manifest; krew checks each archive's sha256 against it.
set -euo pipefail

[ $# -ge 3 ] || { echo "usage: $0 VERSION URL_BASE ARCHIVE..." >&2; exit 2; }
version=$1 base=${2%/}
shift 2
[[ $version =~ ^v[0-9]+\.[0-9]+\.[0-9]+$ ]] || { echo "VERSION must look like v1.2.3, not $version" >&2; exit 2; }

cat <<YAML
apiVersion: krew.googlecontainertools.github.com/v1alpha2
kind: Plugin
metadata:
  name: multiregion
spec:
  version: $version
  homepage: https://github.com/multiregion/multiregion
  shortDescription: Fail an app over between clusters acting as regions
  description: |
    The command line of the multiregion operator, which runs one application
    across several clusters ("regions") and moves traffic away from a
    failing region. As a kubectl plugin it shows each app's regions, health
    and weights (status), replays a region failure without a cluster
    (plan), moves or drains traffic for maintenance (failover, release,
    drain, cordon) and joins member clusters with least privilege (join).
  platforms:
YAML
for archive in "$@"; do
  file=$(basename "$archive")
  [[ $file =~ ^multiregion_([a-z]+)_([a-z0-9]+)\.tar\.gz$ ]] ||
    { echo "$file: expected multiregion_OS_ARCH.tar.gz" >&2; exit 2; }
  os=${BASH_REMATCH[1]} arch=${BASH_REMATCH[2]}
  sha=$(sha256sum "$archive" | cut -d' ' -f1)
  cat <<YAML
  - selector:
      matchLabels: { os: $os, arch: $arch }
    uri: $base/$file
    sha256: $sha
    bin: kubectl-multiregion
YAML
done
