#!/usr/bin/env bash
# Regenerates the module files of playground/build — components/go.mod + go.sum and
# runtime/go.mod + go.sum — from the versions in versions.env and the binaries in components.list.
# Run this only on the day someone bumps a version, then build, test and commit the result:
# the normal build (build-components.sh) never resolves anything and fails on a missing go.sum
# line instead. Even here nothing is chosen by date: every module must come from the pinned
# versions' own requirements (minimal version selection), or the script stops.
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
  # `go mod tidy` takes the newest version of a module for an import that nothing in the graph
  # provides. Here every module must come from the pins' own requirements: one that only the
  # main module requires was resolved by date, not by a pin, and stops the script.
  # Reading the whole graph adds go.mod hashes to go.sum that the build never needs: put it back.
  local graph unpinned=() tidied; tidied=$(cat go.sum)
  graph=$(go mod graph | awk -v main="$(go list -m)" '$1 != main { print $2 }' | sort -u)
  for t in $(go list -m -f '{{if not .Main}}{{.Path}}@{{.Version}}{{end}}' all); do
    case " $* " in *" $t "*) continue ;; esac
    grep -qxF "$t" <<<"$graph" || unpinned+=("$t")
  done
  printf '%s\n' "$tidied" >go.sum
  if [ ${#unpinned[@]} -gt 0 ]; then
    echo "resolved by date, not by a pin, in $module: ${unpinned[*]} (pin it in versions.env)" >&2; exit 1
  fi
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
