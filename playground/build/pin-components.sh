#!/usr/bin/env bash
# Regenerates playground/build/components/go.mod and go.sum from the versions in versions.env.
# Run this only on the day someone bumps a version, then build, test and commit the result:
# the normal build (build-components.sh) never resolves anything and fails on a missing go.sum
# line instead. This script is the one place where the Go module proxy is asked what to use.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.env
. "$here/versions.env"
mod="$here/components"
export GOFLAGS=-mod=mod GOTOOLCHAIN=local

staging_version="v0.${K8S_VERSION#v1.}"
cd "$mod"
rm -f go.mod go.sum
go mod init weft.dev/playground/components >/dev/null 2>&1
go mod edit -go=1.26
go mod edit \
  -require="k8s.io/kubernetes@$K8S_VERSION" \
  -require="go.etcd.io/etcd/server/v3@$ETCD_VERSION" \
  -require="github.com/containernetworking/cni@$CNI_VERSION" \
  -require="helm.sh/helm/v3@$HELM_VERSION" \
  -require="fortio.org/fortio@$FORTIO_VERSION"

# k8s.io/kubernetes replaces its staging modules (k8s.io/api, client-go, ...) with relative
# paths, which do not apply to a dependent module: pin each one to the matching release.
kdir=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
for m in $(sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\1#p' "$kdir/go.mod"); do
  go mod edit -replace="$m=$m@$staging_version"
done

# The binaries are the module's tools: `go mod tidy` keeps every package they need, and
# build-components.sh builds them (and ./etcd, our wrapper of etcd's entry point) in one go.
for t in $(sed -n 's/^#tool //p' "$here/components.list"); do
  go mod edit -tool="$t"
done
go mod tidy
# Tidy must not have moved a pinned version: fail loudly if MVS raised one.
for pin in "k8s.io/kubernetes $K8S_VERSION" "go.etcd.io/etcd/server/v3 $ETCD_VERSION" \
  "github.com/containernetworking/cni $CNI_VERSION" "helm.sh/helm/v3 $HELM_VERSION" \
  "fortio.org/fortio $FORTIO_VERSION"; do
  grep -q "	$pin\$\|	$pin //\|require $pin\$" go.mod || { echo "pin moved: $pin" >&2; grep "${pin% *}" go.mod >&2; exit 1; }
done
echo "pinned: $(grep -c . go.sum) go.sum lines in $mod" >&2
