#!/usr/bin/env bash
# Installs what Weft's playground, tests and benchmarks need on a Debian/Ubuntu machine, then
# builds the pinned Kubernetes components from their Go modules (cached outside the repository,
# so this is quick after the first run). Idempotent; needs root.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

log() { printf '[deps] %s\n' "$*" >&2; }

packages=(
  iproute2 util-linux nftables iptables conntrack   # namespaces, links, redirection rules
  containernetworking-plugins                      # the real CNI chain: ptp, bridge, host-local
  curl socat tcpdump iperf3 wrk stunnel4 haproxy   # tests and benchmark references
  gcc libc6-dev                                     # the agent's Node-API addon (SO_ORIGINAL_DST)
  prometheus                                        # tests/dashboards.test.ts queries the chart's dashboards
  ca-certificates git openssl                       # openssl: test certificates (cni-plugin/testing)
  python3                                           # python3 -m http.server: test workloads in pods
  runc busybox-static                               # real nodes: containerd's runtime; the test workloads' image
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then log "need root to install: ${missing[*]}"; exit 1; fi
  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # The distribution's haproxy, stunnel and prometheus services are not ours to run; the
  # benchmarks and tests/dashboards.test.ts start their own instances.
  for svc in haproxy stunnel4 prometheus; do systemctl disable --now "$svc" >/dev/null 2>&1 || true; done
fi

# Go builds the playground's components. Any Go will do to start: when it is older than the
# components' go.mod asks, build-components.sh fetches the pinned release (versions.env) itself.
if ! command -v go >/dev/null; then
  for d in /usr/local/go/bin /usr/lib/go/bin; do [ -x "$d/go" ] && export PATH="$d:$PATH"; done
fi
if ! command -v go >/dev/null; then
  log "installing Go from Debian (it bootstraps the pinned Go release)"
  apt-get install -y -qq --no-install-recommends golang-go >/dev/null
fi

bash playground/build/build-components.sh >/dev/null
log "system dependencies ready"
