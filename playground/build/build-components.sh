#!/usr/bin/env bash
# Builds the playground's Kubernetes components, etcd, cnitool and helm from their Go modules at
# pinned versions, once per machine, into a cache outside the repository. Safe to re-run: a
# component whose binary is already in the cache is skipped. Prints progress, because a cold
# build on a 2-core machine takes 10-25 minutes.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.env
. "$here/versions.env"

cache=${WEFT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/weft}
bin="$cache/k8s-$K8S_VERSION/bin"
work="$cache/k8s-$K8S_VERSION/src"
mkdir -p "$bin" "$work"

log() { printf '[build %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

command -v go >/dev/null || { log "go is required (Go >= 1.26) to build the playground components"; exit 1; }

k8s_minor=${K8S_VERSION#v1.}; k8s_minor=${k8s_minor%%.*}
staging_version="v0.${K8S_VERSION#v1.}"

# --- Kubernetes + etcd: one wrapper module. k8s.io/kubernetes replaces its staging modules with
# relative paths, which do not apply to a dependent module, so we pin each one ourselves.
kmod="$work/kubernetes"
if [ ! -f "$kmod/go.mod" ] || ! grep -q "k8s.io/kubernetes $K8S_VERSION" "$kmod/go.mod"; then
  log "preparing wrapper module for Kubernetes $K8S_VERSION and etcd $ETCD_VERSION"
  rm -rf "$kmod"; mkdir -p "$kmod/etcd"
  cat > "$kmod/etcd/main.go" <<'GO'
// Command etcd runs etcd's own entry point; this wrapper exists so that etcd builds inside the
// same module graph as the Kubernetes components.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
  (
    cd "$kmod"
    go mod init weft.dev/playground-components >/dev/null 2>&1
    go mod edit -require="k8s.io/kubernetes@$K8S_VERSION" -require="go.etcd.io/etcd/server/v3@$ETCD_VERSION"
    kdir=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
    for m in $(sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\1#p' "$kdir/go.mod"); do
      go mod edit -replace="$m=$m@$staging_version"
    done
    go mod tidy >/dev/null 2>&1 || true
    # tidy drops the etcd/k8s requirements until a main package imports them; add the imports.
    cat > tools.go <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
    go mod tidy
  )
fi

ver_ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ver_ldflags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$k8s_minor"
  ver_ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done

build() { # name, module dir, package
  local name=$1 dir=$2 pkg=$3
  if [ -x "$bin/$name" ]; then log "$name: cached"; return; fi
  log "$name: building $pkg (this is the slow part)"
  local t0=$SECONDS
  (cd "$dir" && CGO_ENABLED=0 go build -trimpath -ldflags "$ver_ldflags" -o "$bin/$name.tmp" "$pkg")
  mv "$bin/$name.tmp" "$bin/$name"
  log "$name: done in $((SECONDS - t0)) s"
}

build etcd "$kmod" ./etcd
build kube-apiserver "$kmod" k8s.io/kubernetes/cmd/kube-apiserver
build kube-controller-manager "$kmod" k8s.io/kubernetes/cmd/kube-controller-manager
build kube-scheduler "$kmod" k8s.io/kubernetes/cmd/kube-scheduler
build kube-proxy "$kmod" k8s.io/kubernetes/cmd/kube-proxy
build kubectl "$kmod" k8s.io/kubernetes/cmd/kubectl

# --- cnitool and helm live in their own module graphs.
standalone() { # name, module@version, package
  local name=$1 modver=$2 pkg=$3 dir="$work/$1"
  if [ -x "$bin/$name" ]; then log "$name: cached"; return; fi
  if [ ! -f "$dir/go.mod" ] || ! grep -q "${modver%@*} ${modver#*@}" "$dir/go.mod"; then
    rm -rf "$dir"; mkdir -p "$dir"
    # `go get` of the package at the module's version records the module and every go.sum entry
    # the build needs (a main package cannot be imported from a tools.go file for `go mod tidy`).
    (cd "$dir" && go mod init "weft.dev/playground-$name" >/dev/null 2>&1 && go get "$pkg@${modver#*@}")
  fi
  log "$name: building $pkg"
  (cd "$dir" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$bin/$name.tmp" "$pkg")
  mv "$bin/$name.tmp" "$bin/$name"
}
standalone cnitool "github.com/containernetworking/cni@$CNI_VERSION" github.com/containernetworking/cni/cnitool
standalone helm "helm.sh/helm/v3@$HELM_VERSION" helm.sh/helm/v3/cmd/helm
# fortio: the load generator of the benchmarks (fixed-rate latency, TCP echo). Pinned below
# v1.67: later versions need grol.io modules that the Go module proxy does not serve.
standalone fortio "fortio.org/fortio@$FORTIO_VERSION" fortio.org/fortio

log "all components are in $bin"
echo "$bin"
