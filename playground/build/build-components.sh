#!/usr/bin/env bash
# Builds the playground's Go components (Kubernetes, etcd, cnitool, helm, fortio; containerd and
# CoreDNS for real nodes) from the committed module files in components/ and runtime/ (go.mod +
# go.sum pin every module), once per machine, into a cache outside the repository. Nothing is
# resolved here: the build runs with -mod=readonly, so a pin that is missing fails instead of
# being looked up. To change a version, edit versions.env and run pin-components.sh (see
# playground/build/README.md).
#
#   build-components.sh                 build if needed; prints the bin directory on stdout
#   build-components.sh --print-bin-dir print the bin directory for the current pins, build nothing
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
modules=(components runtime)
cache=${WEFT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/weft}
# shellcheck source=versions.env
. "$here/versions.env"

k8s_minor=${K8S_VERSION#v1.}; k8s_minor=${k8s_minor%%.*}
ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$k8s_minor"
  ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done
# containerd without the snapshotters that need cgo or kernel features these machines lack.
runtime_ldflags="-s -w -X github.com/containerd/containerd/v2/version.Version=$CONTAINERD_VERSION"
buildflags_components=(-trimpath "-ldflags=$ldflags")
buildflags_runtime=(-trimpath "-tags=no_btrfs,no_devmapper,no_zfs" "-ldflags=$runtime_ldflags")
# `go list` must see the same build tags as `go build` to count the same packages.
listflags_components=(); listflags_runtime=("-tags=no_btrfs,no_devmapper,no_zfs")

# The cache key is everything that decides what gets built: the pins, the list of binaries and
# the build flags. Another pin gets another directory, so a stale cache is never used.
key=$( (for m in "${modules[@]}"; do cat "$here/$m/go.mod" "$here/$m/go.sum"; done
  cat "$here/components/etcd/main.go" "$here/components/pause/main.go" "$here/runtime/coredns/main.go" "$here/components.list" "$here/versions.env"
  echo "${buildflags_components[*]} ${buildflags_runtime[*]}") | sha256sum | cut -c1-16)
bin="$cache/components/$K8S_VERSION-$key/bin"
if [ "${1:-}" = --print-bin-dir ]; then echo "$bin"; exit 0; fi

log() { printf '[build %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
# Binaries by module: names (what lands in the bin directory) and packages, in list order.
names_components=(etcd pause); pkgs_components=(./etcd ./pause); names_runtime=(coredns); pkgs_runtime=(./coredns)
for t in $(sed -n 's/^#tool //p' "$here/components.list"); do names_components+=("${t##*/}"); pkgs_components+=("$t"); done
for t in $(sed -n 's/^#tool:runtime //p' "$here/components.list"); do names_runtime+=("${t##*/}"); pkgs_runtime+=("$t"); done

missing_binaries() {
  missing=()
  for n in "${names_components[@]}" "${names_runtime[@]}"; do [ -x "$bin/$n" ] || missing+=("$n"); done
}
# A hit marks the build as used, so that cleaning up after another pin's build spares it.
missing_binaries
if [ ${#missing[@]} -eq 0 ]; then touch "$bin"; echo "$bin"; exit 0; fi

# Two starts at once (two playgrounds, a test run beside `npm start`) build once: the second
# waits for the first and then finds everything built.
mkdir -p "$(dirname "$bin")"
exec 9>"$(dirname "$bin")/.build.lock"
flock 9
missing_binaries
if [ ${#missing[@]} -eq 0 ]; then touch "$bin"; echo "$bin"; exit 0; fi

command -v go >/dev/null || { log "go is required to build the playground components (scripts/install-system-deps.sh installs it)"; exit 1; }
# The machine's Go if it is as new as every go.mod asks, else the pinned release, fetched once as
# a module: a Go as old as Debian 12's 1.19 can download it but cannot switch toolchains itself.
need=$(for m in "${modules[@]}"; do sed -n 's/^go \([0-9.]*\)$/\1/p' "$here/$m/go.mod"; done | sort -V | tail -n 1)
have=$(go env GOVERSION); have=${have#go}
if [ "$(printf '%s\n%s\n' "$need" "$have" | sort -V | head -n 1)" != "$need" ]; then
  log "go $have is older than go.mod's $need: using $GO_VERSION (downloaded once)"
  tc="golang.org/toolchain@v0.0.1-$GO_VERSION.$(go env GOOS)-$(go env GOARCH)"
  tcdir=$(cd / && GOFLAGS=-mod=mod go mod download -json "$tc" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  [ -f "$tcdir/bin/go" ] || { log "could not download $tc"; exit 1; }
  # Module zips carry no file modes; the go command's own toolchain switch sets them the same way.
  chmod a+x "$tcdir/bin/"* "$tcdir/pkg/tool/"*/*
  export PATH="$tcdir/bin:$PATH"
fi
export GOTOOLCHAIN=local
export GOFLAGS="-mod=readonly -buildvcs=false" CGO_ENABLED=0
mkdir -p "$cache/logs" "$(dirname "$bin")"
logfile="$cache/logs/build-components-$(date +%Y%m%d-%H%M%S).log"
explain_missing_sum() {
  log "the committed go.sum ($here/$1/go.sum) lacks an entry the build needs:"
  grep -o 'missing go.sum entry.*(imported by [^)]*)' "$logfile" | sort -u | head -n 5 >&2
  log "nothing is looked up at build time: regenerate the pins with playground/build/pin-components.sh and commit them"
}

start=$SECONDS
out="$bin.tmp"; rm -rf "$out"; mkdir -p "$out"
log "building ${missing[*]} (Kubernetes $K8S_VERSION, etcd $ETCD_VERSION, helm $HELM_VERSION, cnitool $CNI_VERSION, fortio $FORTIO_VERSION, containerd $CONTAINERD_VERSION, CoreDNS $COREDNS_VERSION)"
log "a cold build takes about 10-15 minutes on 2 cores, plus about 1.5 GB of module downloads; log: $logfile"

# build_module MODULE: downloads, checks and builds one module's binaries into $out.
build_module() {
  local module=$1
  local -n names=names_$module pkgs=pkgs_$module flags=buildflags_$module listflags=listflags_$module
  cd "$here/$module"
  # Downloading first separates "the network or a pin is wrong" from "the code does not compile".
  # Every download is checked against the committed go.sum.
  local pins_before; pins_before=$(cat go.mod go.sum | sha256sum)
  cp go.sum "$cache/logs/go.sum.committed"
  if ! go mod download -x >>"$logfile" 2>&1; then
    log "downloading the pinned modules of $module/ failed; the last lines of $logfile:"; tail -n 15 "$logfile" >&2; exit 1
  fi
  if [ "$(cat go.mod go.sum | sha256sum)" != "$pins_before" ]; then
    # The go command only writes go.sum when the committed one lacks a line; put it back and stop.
    cp "$cache/logs/go.sum.committed" go.sum
    log "the committed $here/$module/go.sum is incomplete (the download wanted to add to it); nothing is"
    log "looked up at build time: regenerate the pins with playground/build/pin-components.sh and commit them"
    exit 1
  fi
  log "$module: modules ready after $((SECONDS - start)) s"

  local total; total=$(go list "${listflags[@]}" -deps "${pkgs[@]}" 2>>"$logfile" | grep -c . || true)
  if [ "${total:-0}" -eq 0 ]; then
    if grep -q 'missing go.sum entry' "$logfile"; then
      explain_missing_sum "$module"
    else
      log "go list failed; the last lines of $logfile:"; tail -n 15 "$logfile" >&2
    fi
    exit 1
  fi

  # One `go build` for all of a module's binaries: the packages they share compile once. -v names
  # each package as it is compiled, which gives the progress below; a main package compiled means
  # its binary is next.
  set +e
  go build -v "${flags[@]}" -o "$out/" "${pkgs[@]}" 2>&1 | tee -a "$logfile" | {
    done_pkgs=0; next=10
    while IFS= read -r line; do
      case $line in '#'*|*.go:*) continue ;; esac
      done_pkgs=$((done_pkgs + 1))
      for i in "${!pkgs[@]}"; do
        p=${pkgs[$i]}; [ "${p#./}" != "$p" ] && p=weft.dev/playground/$module/${p#./}
        [ "$line" = "$p" ] && log "${names[$i]}: compiled after $((SECONDS - start)) s, linking"
      done
      pct=$((done_pkgs * 100 / total))
      if [ "$pct" -ge "$next" ]; then log "$module: $pct% of $total packages compiled ($((SECONDS - start)) s elapsed)"; next=$((next + 10)); fi
    done
  }
  local rc=${PIPESTATUS[0]}
  set -e
  if [ "$rc" -ne 0 ]; then
    if grep -q 'missing go.sum entry' "$logfile"; then
      explain_missing_sum "$module"
      exit 1
    fi
    local failed; failed=$(sed -n 's/^# \(.*\)/\1/p' "$logfile" | head -n 3 | tr '\n' ' ')
    log "the build failed in package(s): ${failed:-see the log}"
    for i in "${!pkgs[@]}"; do
      for f in $failed; do
        if go list "${listflags[@]}" -deps "${pkgs[$i]}" 2>/dev/null | grep -qx "$f"; then log "  needed by ${names[$i]}"; break; fi
      done
    done
    log "full output: $logfile; the last lines:"; tail -n 15 "$logfile" >&2
    exit 1
  fi
}

for m in "${modules[@]}"; do build_module "$m"; done
rm -rf "$bin"; mv "$out" "$bin"
# Builds for other pins (~600 MB each) go once nothing has used them for three days: another
# checkout on this machine (a worktree, an older branch) may still be on them.
for old in "$cache/components/"*/; do
  [ "${old%/}" = "$(dirname "$bin")" ] && continue
  [ -n "$(find "$old" -maxdepth 1 -name bin -mtime -3)" ] || rm -rf "$old"
done
log "all components built in $((SECONDS - start)) s, in $bin"
echo "$bin"
