#!/usr/bin/env bash
# Builds the playground's Go components (Kubernetes, etcd, cnitool, helm, fortio) from the
# committed module files in components/ (go.mod + go.sum pin every module), once per machine,
# into a cache outside the repository. Nothing is resolved here: the build runs with
# -mod=readonly, so a pin that is missing fails instead of being looked up. To change a
# version, edit versions.env and run pin-components.sh (see playground/build/README.md).
#
#   build-components.sh                 build if needed; prints the bin directory on stdout
#   build-components.sh --print-bin-dir print the bin directory for the current pins, build nothing
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
mod="$here/components"
cache=${WEFT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/weft}
# shellcheck source=versions.env
. "$here/versions.env"

k8s_minor=${K8S_VERSION#v1.}; k8s_minor=${k8s_minor%%.*}
ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$k8s_minor"
  ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done
buildflags=(-trimpath "-ldflags=$ldflags")

# The cache key is everything that decides what gets built: the pins, the list of binaries and
# the build flags. Another pin gets another directory, so a stale cache is never used.
key=$( (cat "$mod/go.mod" "$mod/go.sum" "$mod/etcd/main.go" "$here/components.list" "$here/versions.env"; echo "${buildflags[*]}") \
  | sha256sum | cut -c1-16)
bin="$cache/components/$K8S_VERSION-$key/bin"
if [ "${1:-}" = --print-bin-dir ]; then echo "$bin"; exit 0; fi

log() { printf '[build %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
names=(etcd)
pkgs=(./etcd)
for t in $(sed -n 's/^#tool //p' "$here/components.list"); do names+=("${t##*/}"); pkgs+=("$t"); done

missing=()
for n in "${names[@]}"; do [ -x "$bin/$n" ] || missing+=("$n"); done
if [ ${#missing[@]} -eq 0 ]; then echo "$bin"; exit 0; fi

command -v go >/dev/null || { log "go is required to build the playground components (scripts/install-system-deps.sh installs it)"; exit 1; }
# The machine's Go if it is as new as go.mod asks, else the pinned release, fetched once as a
# module: a Go as old as Debian 12's 1.19 can download it but cannot switch toolchains itself.
need=$(sed -n 's/^go \([0-9.]*\)$/\1/p' "$mod/go.mod")
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
  log "the committed go.sum ($mod/go.sum) lacks an entry the build needs:"
  grep -o 'missing go.sum entry.*(imported by [^)]*)' "$logfile" | sort -u | head -n 5 >&2
  log "nothing is looked up at build time: regenerate the pins with playground/build/pin-components.sh and commit them"
}

cd "$mod"
start=$SECONDS
log "building ${missing[*]} (Kubernetes $K8S_VERSION, etcd $ETCD_VERSION, helm $HELM_VERSION, cnitool $CNI_VERSION, fortio $FORTIO_VERSION)"
log "a cold build takes about 5-10 minutes on 2 cores, plus about 1 GB of module downloads; log: $logfile"
# Downloading first separates "the network or a pin is wrong" from "the code does not compile".
# Every download is checked against the committed go.sum.
pins_before=$(cat go.mod go.sum | sha256sum)
cp go.sum "$cache/logs/go.sum.committed"
if ! go mod download -x >"$logfile" 2>&1; then
  log "downloading the pinned modules failed; the last lines of $logfile:"; tail -n 15 "$logfile" >&2; exit 1
fi
if [ "$(cat go.mod go.sum | sha256sum)" != "$pins_before" ]; then
  # The go command only writes go.sum when the committed one lacks a line; put it back and stop.
  cp "$cache/logs/go.sum.committed" go.sum
  log "the committed $mod/go.sum is incomplete (the download wanted to add to it); nothing is"
  log "looked up at build time: regenerate the pins with playground/build/pin-components.sh and commit them"
  exit 1
fi
log "modules ready after $((SECONDS - start)) s"

total=$(go list -deps "${pkgs[@]}" 2>>"$logfile" | grep -c . || true)
if [ "${total:-0}" -eq 0 ]; then
  if grep -q 'missing go.sum entry' "$logfile"; then
    explain_missing_sum
  else
    log "go list failed; the last lines of $logfile:"; tail -n 15 "$logfile" >&2
  fi
  exit 1
fi

# One `go build` for all binaries: the packages they share compile once. -v names each package as
# it is compiled, which gives the progress below; a main package compiled means its binary is next.
out="$bin.tmp"; rm -rf "$out"; mkdir -p "$out"
set +e
go build -v "${buildflags[@]}" -o "$out/" "${pkgs[@]}" 2>&1 | tee -a "$logfile" | {
  done_pkgs=0; next=10
  while IFS= read -r line; do
    case $line in '#'*|*.go:*) continue ;; esac
    done_pkgs=$((done_pkgs + 1))
    for i in "${!pkgs[@]}"; do
      p=${pkgs[$i]}; [ "$p" = ./etcd ] && p=weft.dev/playground/components/etcd
      [ "$line" = "$p" ] && log "${names[$i]}: compiled after $((SECONDS - start)) s, linking"
    done
    pct=$((done_pkgs * 100 / total))
    if [ "$pct" -ge "$next" ]; then log "$pct% of $total packages compiled ($((SECONDS - start)) s elapsed)"; next=$((next + 10)); fi
  done
}
rc=${PIPESTATUS[0]}
set -e
if [ "$rc" -ne 0 ]; then
  if grep -q 'missing go.sum entry' "$logfile"; then
    explain_missing_sum
    exit 1
  fi
  failed=$(sed -n 's/^# \(.*\)/\1/p' "$logfile" | head -n 3 | tr '\n' ' ')
  log "the build failed in package(s): ${failed:-see the log}"
  for i in "${!pkgs[@]}"; do
    for f in $failed; do
      if go list -deps "${pkgs[$i]}" 2>/dev/null | grep -qx "$f"; then log "  needed by ${names[$i]}"; break; fi
    done
  done
  log "full output: $logfile; the last lines:"; tail -n 15 "$logfile" >&2
  exit 1
fi
rm -rf "$bin"; mv "$out" "$bin"
# Builds for other pins are never used again (each is ~500 MB): keep only this one.
for old in "$cache/components/"*/; do [ "${old%/}" = "$(dirname "$bin")" ] || rm -rf "$old"; done
log "all components built in $((SECONDS - start)) s, in $bin"
echo "$bin"
