#!/usr/bin/env bash
# Regenerates the module files of playground/build — components/go.mod + go.sum and
# runtime/go.mod + go.sum — from the versions in versions.env and the binaries in components.list.
# Run this only on the day someone bumps a version, then build, test and commit the result:
# the normal build (build-components.sh) never resolves anything and fails on a missing go.sum
# line instead. This script is the one place where the Go module proxy is asked what to use.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.env
. "$here/versions.env"
export GOFLAGS=-mod=mod GOTOOLCHAIN=local

# tools_of MODULE: the packages components.list builds in that module.
tools_of() {
  if [ "$1" = components ]; then sed -n 's/^#tool //p' "$here/components.list"
  else sed -n "s/^#tool:$1 //p" "$here/components.list"; fi
}

# fresh_module DIR MODULE-PATH PIN...: a new go.mod requiring each "module@version" pin.
fresh_module() {
  local dir=$1 path=$2; shift 2
  mkdir -p "$dir"; cd "$dir"
  rm -f go.mod go.sum
  go mod init "$path" >/dev/null 2>&1
  go mod edit -go=1.26
  local p
  for p in "$@"; do go mod edit -require="$p"; done
}

# tidy_and_check MODULE PIN...: records the binaries as the module's tools, lets `go mod tidy`
# complete the graph, and fails loudly if minimal version selection raised a chosen version.
tidy_and_check() {
  local module=$1 t p; shift
  for t in $(tools_of "$module"); do go mod edit -tool="$t"; done
  go mod tidy
  for p in "$@"; do
    local pin="${p%@*} ${p#*@}"
    grep -q "	$pin\$\|	$pin //\|require $pin\$" go.mod || { echo "pin moved in $module: $pin" >&2; grep "${p%@*} " go.mod >&2; exit 1; }
  done
  echo "pinned: $(grep -c . go.sum) go.sum lines in $here/$module" >&2
}

# components/: Kubernetes (control plane, kube-proxy, kubelet, kubectl), etcd, cnitool, helm, fortio.
pins=("k8s.io/kubernetes@$K8S_VERSION" "go.etcd.io/etcd/server/v3@$ETCD_VERSION" "github.com/containernetworking/cni@$CNI_VERSION"
  "helm.sh/helm/v3@$HELM_VERSION" "fortio.org/fortio@$FORTIO_VERSION")
fresh_module "$here/components" weft.dev/playground/components "${pins[@]}"
# k8s.io/kubernetes replaces its staging modules (k8s.io/api, client-go, ...) with relative
# paths, which do not apply to a dependent module: pin each one to the matching release.
staging_version="v0.${K8S_VERSION#v1.}"
kdir=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
for m in $(sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\1#p' "$kdir/go.mod"); do
  go mod edit -replace="$m=$m@$staging_version"
done
# The binaries are the module's tools: `go mod tidy` keeps every package they need, and
# build-components.sh builds them (and ./etcd, our wrapper of etcd's entry point) in one go.
tidy_and_check components "${pins[@]}"

# runtime/: containerd (daemon, runc shim, ctr) and CoreDNS, for real nodes. A module of their
# own because containerd in the first graph would raise its pins (CNI, etcd's bbolt, gRPC,
# OpenTelemetry) and build it against Kubernetes' cri-api rather than its own.
pins=("github.com/containerd/containerd/v2@$CONTAINERD_VERSION" "github.com/coredns/coredns@$COREDNS_VERSION")
# runtime/coredns is a wrapper of CoreDNS's entry point with a cluster DNS's plugins only.
fresh_module "$here/runtime" weft.dev/playground/runtime "${pins[@]}"
tidy_and_check runtime "${pins[@]}"
