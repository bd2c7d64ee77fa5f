#!/usr/bin/env bash
# Copies the Gateway API CRDs Weft serves (HTTPRoute, GRPCRoute, ReferenceGrant, and in the
# experimental channel XBackendTrafficPolicy) from the Go module
# pinned in tests/gateway-api/go.mod into the chart (helm/weft/gateway-api/<channel>/). The module
# is fetched by its go.sum-verified version into the module cache; no version is ever resolved
# here (-mod=readonly: a go.mod and go.sum that disagree fail instead of being rewritten).
# Run it after changing the pin; commit what it writes.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
mod="$repo/tests/gateway-api"
out="$repo/helm/weft/gateway-api"
export GOTOOLCHAIN=local GOFLAGS=-mod=readonly
cd "$mod"
go mod download sigs.k8s.io/gateway-api
dir="$(go list -m -f '{{.Dir}}' sigs.k8s.io/gateway-api)"
version="$(go list -m -f '{{.Version}}' sigs.k8s.io/gateway-api)"
for channel in standard experimental; do
  mkdir -p "$out/$channel"
  rm -f "$out/$channel"/*.yaml
  for kind in httproutes grpcroutes referencegrants; do
    install -m 0644 "$dir/config/crd/$channel/gateway.networking.k8s.io_$kind.yaml" "$out/$channel/"
  done
done
# Retry budgets per backend Service (controller/route/backend-policy.ts); experimental only.
install -m 0644 "$dir/config/crd/experimental/gateway.networking.x-k8s.io_xbackendtrafficpolicies.yaml" "$out/experimental/"
echo "$version" >"$out/VERSION"
echo "copied Gateway API $version CRDs into ${out#"$repo"/}"
