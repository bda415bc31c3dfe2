#!/usr/bin/env bash
# Makes, on this machine and without pulling anything from an image registry,
# every image the kind walkthrough runs, and kind itself:
#
#   kind node image   multiregion.local/kind-node:v1.35.4-<key>   (kind create cluster --image ...)
#   operator image    multiregion:dev        the repository's Dockerfile
#   example app       multiregion-app:dev    tests/controlplane/regionapp: answers with its region's name
#   kind              built from sigs.k8s.io/kind when it is not on PATH
#
# How:
# - Binaries come from Go modules through the Go module proxy, each built in a
#   wrapper module under kind-config/images/go/ whose go.mod/go.sum pin it:
#   kind; containerd, runc, crictl, the CNI plugins and the fuse-overlayfs
#   snapshotter (what kind's base image holds); kubelet, kubeadm, kube-proxy,
#   kubectl, kube-apiserver, kube-controller-manager, kube-scheduler (v1.35.4);
#   CoreDNS; etcd (tests/controlplane/etcd); pause, the example app and the
#   runc-nocaps runtime are small programs here.
# - Root filesystems come from Debian packages with debootstrap: the kind base
#   (systemd, iptables, conntrack, ... as kind's images/base/Dockerfile lists),
#   and a slim one (iptables and conntrack for kube-proxy, a shell for the
#   operator image's offline builder stage, and the C runtime files that make a
#   distroless-like base for the operator).
# - The kind base image is that root filesystem plus kind's own files from
#   its module (entrypoint, systemd units, containerd config) and the runtime
#   binaries; the node image adds the Kubernetes binaries and the images
#   kubeadm runs, imported into containerd's k8s.io namespace, tagged as
#   `kubeadm config images list` names them (registry.k8s.io/...).
# - The node image has no kindnetd (its module is not served here): a oneshot
#   unit writes a ptp + host-local CNI config for the node's pod CIDR, what
#   kindnetd writes for a single-node cluster, so it works with kind's default
#   networking settings (single-node clusters).
#
# Everything lands in ${MULTIREGION_CACHE:-~/.cache/multiregion}/kind, keyed by
# its inputs (this script, go.mod/go.sum, the Debian suite and package lists,
# the Go version); images are saved as tarballs there, so a warm run only
# `docker load`s what the engine lacks. Needs Go, Docker (started here when it
# is not running), and for a cold build root, debootstrap, gcc, pkg-config and
# libseccomp-dev (runc is built with seccomp).
#
# OPERATOR_IMAGE=NAME uses that image (already in the engine) for the operator
# instead of building one from this checkout.
#
# Usage: kind-config/images.sh [--env]
#   --env   print shell assignments (KIND, NODE_IMAGE, OPERATOR_IMAGE,
#           APP_IMAGE, KUBECTL) for the walkthrough, and nothing else on stdout
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

debian_suite=${DEBIAN_SUITE:-bookworm}
debian_mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
# What kind's base image installs (images/base/Dockerfile), less the
# storage test packages (nfs-common, open-iscsi) that these clusters never use.
node_packages=(systemd conntrack iptables nftables iproute2 ethtool util-linux mount kmod
  libseccomp2 pigz fuse-overlayfs e2fsprogs bash ca-certificates curl jq procps)
slim_packages=(ca-certificates iptables conntrack)
# The operator's runtime base: what distroless/cc holds.
cc_packages=(base-files netbase libc6 libgcc-s1 ca-certificates)

operator_image=multiregion:dev
app_image=multiregion-app:dev
go_dir=$kind_dir/images/go
self_key=$(key "$kind_dir/images.sh" </dev/null)
export DOCKER_BUILDKIT=0 # the legacy builder resolves FROM in the local image store only

# ---------------------------------------------------------------- binaries

k8s_ldflags() {
  local ld="-s -w" minor p
  minor=$(echo "$kubernetes_version" | cut -d. -f2)
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $p.gitVersion=$kubernetes_version -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
  done
  echo "$ld"
}

# module_version DIR MODULE: the version DIR's go.mod requires.
module_version() { (cd "$1" && go list -m -f '{{.Version}}' "$2"); }

build_binaries() {
  local static=CGO_ENABLED=0
  cmd_bin=$(go_build cmd "$kind_dir/images/cmd" $static "-s -w" "" ./pause ./runc-nocaps)
  app_bin=$(go_build regionapp "$repo_root/tests/controlplane/regionapp" $static "-s -w" "" .)
  if command -v kind >/dev/null; then kind_bin=$(dirname "$(command -v kind)"); else
    kind_bin=$(go_build kind "$go_dir/kind" $static "-s -w" "" sigs.k8s.io/kind)
  fi
  containerd_bin=$(go_build containerd "$go_dir/containerd" $static \
    "-s -w -X github.com/containerd/containerd/v2/version.Version=$(module_version "$go_dir/containerd" github.com/containerd/containerd/v2)" \
    "no_aufs no_zfs no_btrfs no_devmapper" \
    github.com/containerd/containerd/v2/cmd/containerd github.com/containerd/containerd/v2/cmd/ctr \
    github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2)
  # runc needs cgo (its nsexec is C) and libseccomp; linked statically so the
  # node's libc does not matter.
  runc_bin=$(go_build runc "$go_dir/runc" "CGO_ENABLED=1" \
    "-s -w -X main.version=$(module_version "$go_dir/runc" github.com/opencontainers/runc | tr -d v) -extldflags -static" \
    "seccomp urfave_cli_no_docs netgo osusergo" \
    github.com/opencontainers/runc)
  crictl_bin=$(go_build crictl "$go_dir/crictl" $static "-s -w" "" sigs.k8s.io/cri-tools/cmd/crictl)
  cni_bin=$(go_build cni "$go_dir/cni" $static "-s -w" "" \
    github.com/containernetworking/plugins/plugins/main/ptp github.com/containernetworking/plugins/plugins/ipam/host-local \
    github.com/containernetworking/plugins/plugins/main/loopback github.com/containernetworking/plugins/plugins/meta/portmap)
  fuse_bin=$(go_build fuse-overlayfs "$go_dir/fuse-overlayfs" $static "-s -w" "" \
    github.com/containerd/fuse-overlayfs-snapshotter/v2/cmd/containerd-fuse-overlayfs-grpc)
  coredns_bin=$(go_build coredns "$go_dir/coredns" $static "-s -w" "" github.com/coredns/coredns)
  etcd_bin=$(go_build etcd "$repo_root/tests/controlplane/etcd" $static "-s -w" "" .)
  k8s_bin=$(go_build kubernetes "$go_dir/kubernetes" $static "$(k8s_ldflags)" "" \
    k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kubeadm k8s.io/kubernetes/cmd/kube-proxy \
    k8s.io/kubernetes/cmd/kubectl k8s.io/kubernetes/cmd/kube-apiserver \
    k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kube-scheduler)
}

# ---------------------------------------------------------------- Debian root filesystems

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# rootfs NAME PACKAGES... -> prints the path of a tarball of a debootstrap'd
# Debian (minbase variant plus PACKAGES), without docs, man pages and apt lists.
rootfs() {
  local name=$1
  shift
  local k tar dir
  k=$({ declare -f rootfs; echo "$debian_suite $debian_mirror $*"; } | key)
  tar=$kind_cache/rootfs/$name-$k.tar
  if [ -f "$tar" ]; then
    echo "$tar"
    return 0
  fi
  command -v debootstrap >/dev/null || die "debootstrap is needed for a cold build (Debian: apt-get install debootstrap)"
  say "debootstrap $debian_suite ($name: $*)"
  local start=$SECONDS
  mkdir -p "$kind_cache/rootfs" "$kind_cache/debs"
  dir=$kind_cache/rootfs/$name-$k.d
  as_root rm -rf "$dir"
  local pkgs
  pkgs=$(IFS=,; echo "$*")
  as_root nice -n "${MULTIREGION_NICE:-10}" debootstrap --variant=minbase --cache-dir="$kind_cache/debs" \
    --include="$pkgs" "$debian_suite" "$dir" "$debian_mirror" >"$kind_cache/rootfs/$name.log" 2>&1 ||
    { tail -20 "$kind_cache/rootfs/$name.log" >&2; die "debootstrap failed (log: $kind_cache/rootfs/$name.log)"; }
  as_root chroot "$dir" apt-get clean
  as_root sh -c "rm -rf '$dir'/var/lib/apt/lists/* '$dir'/usr/share/doc/* '$dir'/usr/share/man/* \
    '$dir'/usr/share/info/* '$dir'/usr/share/locale/* '$dir'/var/log/*.log '$dir'/var/cache/debconf/*-old"
  as_root tar -C "$dir" --numeric-owner -cf "$tar.partial" .
  as_root rm -rf "$dir"
  mv "$tar.partial" "$tar"
  say "rootfs $name in $((SECONDS - start))s"
  echo "$tar"
}

# ---------------------------------------------------------------- images

have_image() { docker image inspect "$1" >/dev/null 2>&1; }

# image NAME KEY BUILD_COMMAND: makes sure the engine has NAME. It is loaded
# from the cache's tarball when one exists for KEY, else built by
# BUILD_FUNCTION (which gets NAME) and saved.
image_tar() { echo "$kind_cache/images/$(echo "$1" | tr '/:' '__')-$2.tar"; }

image() {
  local name=$1 k=$2 build=$3 tar
  tar=$(image_tar "$name" "$k")
  if have_image "$name"; then return 0; fi
  if [ -f "$tar" ]; then
    say "loading $name from the cache"
    docker load -i "$tar" >/dev/null
    return 0
  fi
  local start=$SECONDS
  mkdir -p "$kind_cache/images"
  $build "$name"
  docker save -o "$tar.partial" "$name"
  mv "$tar.partial" "$tar"
  say "image $name in $((SECONDS - start))s"
}

# import_dir NAME DIR CHANGES...: an image of one layer holding DIR, with the
# Dockerfile instructions CHANGES. (`docker import` takes no STOPSIGNAL: that
# one is set by a build FROM the imported image.)
import_dir() {
  local name=$1 dir=$2
  shift 2
  local changes=() stop='' c
  for c in "$@"; do
    case $c in
      STOPSIGNAL*) stop=$c ;;
      *) changes+=(--change "$c") ;;
    esac
  done
  as_root tar -C "$dir" --numeric-owner -c . | docker import "${changes[@]}" - "$name" >/dev/null
  if [ -n "$stop" ]; then
    printf 'FROM %s\n%s\n' "$name" "$stop" | quiet docker build -q -t "$name" -
  fi
}

# quiet COMMAND...: its output only when it fails (the legacy builder warns
# that it is deprecated on every run).
quiet() {
  local out
  if ! out=$("$@" 2>&1); then
    say "$out"
    return 1
  fi
}

scratch() {
  local d
  d=$(mktemp -d "$kind_cache/tmp.$$.XXXXXX")
  echo "$d"
}

# The slim Debian: kube-proxy's base, and the shell of the Dockerfile's
# offline builder stage.
build_slim() {
  as_root cat "$slim_rootfs" | docker import --change 'CMD ["/bin/bash"]' - "$1" >/dev/null
}

# A distroless/cc-like base: only the files of cc_packages (libc, libgcc,
# CA certificates, /etc/os-release, /etc/services), a nonroot user 65532.
build_cc() {
  local d list
  d=$(scratch)
  as_root tar -C "$d" -xf "$slim_rootfs"
  list=$(scratch)/files
  {
    echo ./etc/ssl/certs/ca-certificates.crt
    # merged /usr: keep the top-level links, and every path through them
    for l in bin sbin lib lib64; do [ -L "$d/$l" ] && echo "./$l"; done
    local p parent
    while read -r p; do
      [ -e "$d$p" ] || [ -L "$d$p" ] || continue
      [ -d "$d$p" ] && [ ! -L "$d$p" ] && continue
      parent=$(readlink -f "$d$(dirname "$p")")
      echo ".${parent#"$d"}/$(basename "$p")"
    done < <(dpkg-query --admindir="$d/var/lib/dpkg" -L "${cc_packages[@]}" | grep -v -e '^/usr/share/doc' -e '^/usr/share/man' -e '^/usr/share/lintian')
  } | sort -u >"$list"
  local out
  out=$(scratch)
  as_root tar -C "$d" --numeric-owner -cf - -T "$list" | tar -C "$out" -xf -
  mkdir -p "$out/tmp" "$out/home/nonroot" "$out/root"
  chmod 1777 "$out/tmp"
  chown 65532:65532 "$out/home/nonroot"
  printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' 'nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin' \
    'nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin' >"$out/etc/passwd"
  printf '%s\n' 'root:x:0:' 'nobody:x:65534:' 'nonroot:x:65532:' >"$out/etc/group"
  import_dir "$1" "$out" 'USER 65532:65532' 'WORKDIR /home/nonroot' \
    'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt'
  as_root rm -rf "$d" "$out" "$(dirname "$list")"
}

build_app() {
  local d
  d=$(scratch)
  mkdir -p "$d/usr/local/bin" "$d/tmp"
  chmod 1777 "$d/tmp"
  cp "$app_bin/regionapp" "$d/usr/local/bin/app"
  import_dir "$1" "$d" 'USER 65532:65532' 'EXPOSE 8080' 'ENTRYPOINT ["/usr/local/bin/app"]' \
    'LABEL org.opencontainers.image.title=multiregion-app org.opencontainers.image.description="Answers every request with its region name (env REGION)"'
  rm -rf "$d"
}

# The images kubeadm runs, as one `docker save` tarball for the node image.
# Names and tags are those of `kubeadm config images list` for this version.
kube_image_names() {
  "$k8s_bin/kubeadm" config images list --kubernetes-version "$kubernetes_version" 2>/dev/null
}

build_kube_images() {
  local tar=$1 names=() name d
  while read -r name; do
    d=$(scratch)
    mkdir -p "$d/usr/local/bin" "$d/tmp" "$d/etc"
    chmod 1777 "$d/tmp"
    local changes=('ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin')
    case $name in
      */kube-proxy:*)
        as_root tar -C "$d" -xf "$slim_rootfs"
        cp "$k8s_bin/kube-proxy" "$d/usr/local/bin/"
        changes+=('ENTRYPOINT ["/usr/local/bin/kube-proxy"]')
        ;;
      */kube-apiserver:* | */kube-controller-manager:* | */kube-scheduler:*)
        local bin=${name##*/}
        bin=${bin%%:*}
        cp "$k8s_bin/$bin" "$d/usr/local/bin/"
        changes+=("ENTRYPOINT [\"/usr/local/bin/$bin\"]")
        ;;
      */etcd:*)
        cp "$etcd_bin/etcd" "$d/usr/local/bin/"
        mkdir -p "$d/var/lib/etcd"
        changes+=('ENTRYPOINT ["/usr/local/bin/etcd"]')
        ;;
      */coredns:*)
        cp "$coredns_bin/coredns" "$d/coredns"
        changes+=('ENTRYPOINT ["/coredns"]' 'EXPOSE 53 53/udp')
        ;;
      */pause:*)
        cp "$cmd_bin/pause" "$d/pause"
        changes+=('ENTRYPOINT ["/pause"]')
        ;;
      *) die "no recipe for kubeadm's image $name" ;;
    esac
    import_dir "$name" "$d" "${changes[@]}"
    as_root rm -rf "$d"
    names+=("$name")
  done < <(kube_image_names)
  [ ${#names[@]} -ge 7 ] || die "kubeadm config images list gave ${#names[@]} images"
  docker save -o "$tar" "${names[@]}"
  docker rmi "${names[@]}" >/dev/null
}

kind_module_dir() {
  (cd "$go_dir/kind" && go list -m -f '{{.Dir}}' sigs.k8s.io/kind)
}

# The kind base image: kind's images/base recipe, made from the debootstrap'd
# root filesystem, kind's files from its module and the binaries built here.
build_base() {
  local d kfiles
  d=$(scratch)
  kfiles=$(kind_module_dir)/images/base/files
  [ -d "$kfiles" ] || die "kind's base image files are not in its module ($kfiles)"
  as_root tar -C "$d" -xf "$node_rootfs"
  # shellcheck disable=SC2016 # the script gets its values as arguments
  as_root sh -euc '
    d=$1 f=$2
    install -m 0755 "$f"/usr/local/bin/* "$d/usr/local/bin/"
    mkdir -p "$d/kind/bin" "$d/etc/containerd" "$d/etc/default" "$d/etc/sysctl.d" \
      "$d/etc/systemd/system/kubelet.service.d" "$d/etc/kubernetes/manifests" "$d/opt/cni/bin" "$d/kind/manifests"
    cp -r "$f"/kind/. "$d/kind/"
    find "$d/kind" -type f -exec chmod 0644 {} +
    chmod 0755 "$d/kind" "$d/kind/bin" "$d"/kind/bin/*
    install -m 0644 "$f/etc/crictl.yaml" "$d/etc/"
    install -m 0644 "$f"/etc/containerd/* "$d/etc/containerd/"
    install -m 0644 "$f"/etc/default/* "$d/etc/default/"
    install -m 0644 "$f"/etc/sysctl.d/* "$d/etc/sysctl.d/"
    install -m 0644 "$f"/etc/systemd/system/*.service "$f"/etc/systemd/system/*.slice "$d/etc/systemd/system/"
    install -m 0644 "$f"/etc/systemd/system/kubelet.service.d/* "$d/etc/systemd/system/kubelet.service.d/"
    find "$d/lib/systemd/system/sysinit.target.wants/" -name systemd-tmpfiles-setup.service -delete
    rm -f "$d"/lib/systemd/system/multi-user.target.wants/* "$d"/etc/systemd/system/*.wants/* \
      "$d"/lib/systemd/system/local-fs.target.wants/* "$d"/lib/systemd/system/sockets.target.wants/*udev* \
      "$d"/lib/systemd/system/sockets.target.wants/*initctl* "$d"/lib/systemd/system/basic.target.wants/*
    echo ReadKMsg=no >>"$d/etc/systemd/journald.conf"
    ln -sf /usr/lib/systemd/systemd "$d/sbin/init"
  ' - "$d" "$kfiles"
  as_root install -m 0755 "$containerd_bin"/containerd "$containerd_bin"/ctr "$containerd_bin"/containerd-shim-runc-v2 \
    "$crictl_bin/crictl" "$fuse_bin/containerd-fuse-overlayfs-grpc" "$d/usr/local/bin/"
  as_root install -m 0755 "$runc_bin/runc" "$d/usr/local/sbin/runc"
  as_root install -m 0755 "$cni_bin"/ptp "$cni_bin"/host-local "$cni_bin"/loopback "$cni_bin"/portmap "$d/opt/cni/bin/"
  # containerd's base OCI spec: kind's hook that mounts the product files, and
  # no process rlimits (a nested runc may not raise them).
  "$containerd_bin/ctr" oci spec |
    as_root chroot "$d" jq '.hooks.createContainer[.hooks.createContainer | length] |= . + {"path": "/kind/bin/mount-product-files.sh"} | del(.process.rlimits)' |
    as_root tee "$d/etc/containerd/cri-base.json" >/dev/null
  write_cni_unit "$d"
  as_root chroot "$d" systemctl enable kubelet.service containerd.service undo-mount-hacks.service multiregion-ptp-cni.service >/dev/null 2>&1
  as_root chroot "$d" systemctl mask systemd-binfmt.service >/dev/null 2>&1
  import_dir "$1" "$d" 'ENV container=docker' 'STOPSIGNAL SIGRTMIN+3' \
    'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]'
  as_root rm -rf "$d"
}

# The CNI config kindnetd would write on a single node: a ptp veth per pod,
# addresses from the node's pod CIDR (host-local), masquerade for traffic
# leaving the pod network, portmap for hostPorts. A oneshot unit waits for
# the node's spec.podCIDR and writes it; containerd picks it up.
write_cni_unit() {
  local d=$1
  as_root tee "$d/usr/local/bin/multiregion-ptp-cni" >/dev/null <<'SCRIPT'
#!/bin/bash
# Writes /etc/cni/net.d/10-ptp.conflist for this node's pod CIDR (see
# kind-config/images.sh in the multiregion repository).
set -euo pipefail
conf=/etc/cni/net.d/10-ptp.conflist
[ -s "$conf" ] && exit 0
kubeconfig=/etc/kubernetes/kubelet.conf
cidr=
until [ -n "$cidr" ]; do
  sleep 1
  [ -f "$kubeconfig" ] || continue
  cidr=$(kubectl --kubeconfig="$kubeconfig" get node "$(hostname)" -o 'jsonpath={.spec.podCIDR}' 2>/dev/null) || cidr=
done
mkdir -p "$(dirname "$conf")"
cat >"$conf.tmp" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "kind-ptp",
  "plugins": [
    {
      "type": "ptp",
      "ipMasq": true,
      "mtu": 1500,
      "ipam": {
        "type": "host-local",
        "dataDir": "/run/cni-ipam-state",
        "ranges": [[{ "subnet": "$cidr" }]],
        "routes": [{ "dst": "0.0.0.0/0" }]
      }
    },
    { "type": "portmap", "capabilities": { "portMappings": true } }
  ]
}
EOF
mv "$conf.tmp" "$conf"
echo "wrote $conf for pod CIDR $cidr"
SCRIPT
  as_root chmod 0755 "$d/usr/local/bin/multiregion-ptp-cni"
  as_root tee "$d/etc/systemd/system/multiregion-ptp-cni.service" >/dev/null <<'UNIT'
[Unit]
Description=CNI config (ptp, host-local) for this node's pod CIDR
After=kubelet.service

[Service]
Type=simple
ExecStart=/usr/local/bin/multiregion-ptp-cni
Restart=on-failure
RestartSec=2s

[Install]
WantedBy=multi-user.target
UNIT
  # kind applies this manifest where it would apply kindnetd's; the network
  # itself is the unit above.
  as_root tee "$d/kind/manifests/default-cni.yaml" >/dev/null <<'YAML'
apiVersion: v1
kind: ConfigMap
metadata:
  name: kind-ptp-cni
  namespace: kube-system
data:
  README: |
    This node image has no kindnetd. Each node's multiregion-ptp-cni.service
    writes /etc/cni/net.d/10-ptp.conflist (ptp + host-local over the node's
    spec.podCIDR, masquerade, portmap): pod networking for single-node clusters.
YAML
}

# The node image: the base plus kubelet, kubeadm, kubectl and the images
# kubeadm runs, imported into containerd's k8s.io namespace and pinned, the
# way `kind build node-image` does it.
build_node() {
  local cid images
  images=$(scratch)/kube-images.tar
  build_kube_images "$images"
  cid=$(docker run -d --entrypoint sleep --security-opt seccomp=unconfined "$base_image" infinity)
  build_container=$cid
  local b
  for b in kubelet kubeadm kubectl; do docker cp "$k8s_bin/$b" "$cid:/usr/bin/$b"; done
  docker cp "$images" "$cid:/kind/kube-images.tar"
  docker exec -i "$cid" bash -euc '
    chown root:root /usr/bin/kubelet /usr/bin/kubeadm /usr/bin/kubectl
    echo "$1" >/kind/version
    # kubeadm and containerd agree on the sandbox image
    sed -i "s|sandbox_image = .*|sandbox_image = \"$2\"|" /etc/containerd/config.toml
    containerd >/tmp/containerd.log 2>&1 &
    pid=$!
    for _ in $(seq 100); do ctr version >/dev/null 2>&1 && break; sleep 0.1; done
    ctr --namespace=k8s.io images import --label=io.cri-containerd.pinned=pinned --all-platforms \
      --no-unpack --digests /kind/kube-images.tar >/dev/null 2>/tmp/import.err ||
      { grep -v DEPRECATION /tmp/import.err >&2; exit 1; }
    rm -f /tmp/import.err
    ctr --namespace=k8s.io images list -q 2>/dev/null | grep "^registry.k8s.io/" >&2
    kill "$pid"
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    rm -rf /kind/kube-images.tar /tmp/containerd.log /run/containerd
  ' - "$kubernetes_version" "$(kube_image_names | grep /pause:)"
  docker commit --change 'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]' "$cid" "$1" >/dev/null
  docker rm -f -v "$cid" >/dev/null
  build_container=
  rm -rf "$(dirname "$images")"
}

# The operator image, from the repository's Dockerfile. Offline the Rust
# toolchain is the host's: `cargo build --release` here (crates.io is
# reachable and the build is incremental), then the Dockerfile's build stage
# runs on the slim Debian image and takes the prebuilt binary
# (PREBUILT_BINARY) instead of compiling, and the runtime stage is the
# distroless-like image made here. Online, `docker build .` compiles in the
# public Rust image and runs on distroless, unchanged.
build_operator() {
  local target=${CARGO_TARGET_DIR:-$repo_root/target/kind}
  say "cargo build --release --bin multiregion (target: $target)"
  (cd "$repo_root" && CARGO_TARGET_DIR=$target nice -n "${MULTIREGION_NICE:-10}" \
    cargo build --release --locked --bin multiregion) >&2
  local ctx
  ctx=$(scratch)
  cp "$target/release/multiregion" "$ctx/multiregion"
  strip "$ctx/multiregion" 2>/dev/null || true
  quiet docker build -q -f "$repo_root/Dockerfile" -t "$operator_image" \
    --build-arg "BUILDER_IMAGE=$slim_image" --build-arg "RUNTIME_IMAGE=$cc_image" \
    --build-arg PREBUILT_BINARY=multiregion "$ctx"
  rm -rf "$ctx"
}

# prune CURRENT_IMAGES...: removes the multiregion.local/* images that older
# inputs made, from the engine and from the cache (one of each name is kept).
prune() {
  local keep=" $* " ref
  while read -r ref; do
    case $keep in *" $ref "*) continue ;; esac
    case " ${*%:*} " in *" ${ref%:*} "*) ;; *) continue ;; esac
    docker rmi "$ref" >/dev/null 2>&1 || true
    rm -f "$kind_cache/images/$(echo "$ref" | tr '/:' '__')"-*.tar
  done < <(docker images --format '{{.Repository}}:{{.Tag}}' 'multiregion.local/*' 2>/dev/null)
}

# A failed run leaves no build container and no scratch directory behind.
build_container=
cleanup() {
  if [ -n "$build_container" ]; then docker rm -f -v "$build_container" >/dev/null 2>&1 || true; fi
  as_root rm -rf "$kind_cache"/tmp."$$".* 2>/dev/null || true
}
trap cleanup EXIT

main() {
  local env_only=0
  [ "${1:-}" = --env ] && env_only=1
  local start=$SECONDS
  mkdir -p "$kind_cache"
  # On a cold cache debootstrap (network and disk) runs while Go compiles.
  rootfs_job=
  if ! ls "$kind_cache"/rootfs/slim-*.tar "$kind_cache"/rootfs/node-*.tar >/dev/null 2>&1; then
    (rootfs slim "${slim_packages[@]}" >/dev/null && rootfs node "${node_packages[@]}" >/dev/null) &
    rootfs_job=$!
  fi
  build_binaries
  local kind_files_key
  kind_files_key=$(cd "$(kind_module_dir)/images/base/files" && find . -type f | sort | xargs cat | sha256sum | cut -c1-16)
  slim_image=multiregion.local/debian-slim:$debian_suite-$(echo "${slim_packages[*]}" | key "$kind_dir/images.sh")
  cc_image=multiregion.local/cc-$debian_suite:nonroot-$(echo "${slim_packages[*]} ${cc_packages[*]}" | key "$kind_dir/images.sh")
  # The binaries' cache directories are named by their keys.
  base_key=$(echo "${node_packages[*]} $kind_files_key $debian_suite $containerd_bin $runc_bin $crictl_bin $cni_bin $fuse_bin" |
    key "$kind_dir/images.sh")
  base_image=multiregion.local/kind-base:$debian_suite-$base_key
  node_key=$(echo "$base_key ${slim_packages[*]} $k8s_bin $etcd_bin $coredns_bin $cmd_bin" | key "$kind_dir/images.sh")
  node_image=multiregion.local/kind-node:$kubernetes_version-$node_key
  app_key=$(echo "$app_bin" | key "$kind_dir/images.sh")

  docker_up
  # Root filesystems are only needed when an image that uses them is built.
  slim_rootfs='' node_rootfs=
  wait_rootfs() { if [ -n "$rootfs_job" ]; then wait "$rootfs_job" || die "debootstrap failed"; rootfs_job=; fi; }
  need_slim() { wait_rootfs; [ -n "$slim_rootfs" ] || slim_rootfs=$(rootfs slim "${slim_packages[@]}"); }
  need_node() { wait_rootfs; [ -n "$node_rootfs" ] || node_rootfs=$(rootfs node "${node_packages[@]}"); }
  with_slim() { need_slim; "$@"; }
  with_node() { need_node; "$@"; }
  image "$slim_image" "$self_key" "with_slim build_slim"
  image "$cc_image" "$self_key" "with_slim build_cc"
  # The base is only needed to build the node image.
  if ! have_image "$node_image" && [ ! -f "$(image_tar "$node_image" "$node_key")" ]; then
    image "$base_image" "$base_key" "with_node build_base"
  fi
  image "$node_image" "$node_key" "with_slim build_node"
  image "multiregion.local/app:$app_key" "$app_key" build_app
  docker tag "multiregion.local/app:$app_key" "$app_image"
  if [ -n "${OPERATOR_IMAGE:-}" ]; then
    have_image "$OPERATOR_IMAGE" || die "OPERATOR_IMAGE=$OPERATOR_IMAGE is not in the Docker engine"
    operator_image=$OPERATOR_IMAGE
  else
    build_operator
  fi
  prune "$slim_image" "$cc_image" "$base_image" "$node_image" "multiregion.local/app:$app_key"
  say "images ready in $((SECONDS - start))s: $node_image $operator_image $app_image"
  wait_rootfs
  if [ "$env_only" = 1 ]; then
    printf 'KIND=%q\nNODE_IMAGE=%q\nOPERATOR_IMAGE=%q\nAPP_IMAGE=%q\nKUBECTL=%q\n' \
      "$kind_bin/kind" "$node_image" "$operator_image" "$app_image" "$k8s_bin/kubectl"
  fi
  if [ "$docker_started" = 1 ] && [ "${MULTIREGION_KEEP_DOCKER:-0}" != 1 ]; then docker_down; fi
}

main "$@"
