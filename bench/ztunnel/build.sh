#!/usr/bin/env bash
# Builds ztunnel from a checkout of its source, for `npm run bench` to run beside Weft.
#
#   bench/ztunnel/build.sh <ztunnel-source-dir>
#
# The source is edited in place: the BoringSSL FIPS build (the `tls-boring` feature and its git
# dependency) cannot be fetched here, and is not what the bench compares against anyway; the
# default aws-lc provider is what ztunnel ships. `testing` is the feature that lets FAKE_CA mint
# certificates from the test root in src/tls/testdata, which the bench's interop check trusts.
# Nothing of ztunnel's is ever committed to this repository.
set -euo pipefail

src=${1:?usage: bench/ztunnel/build.sh <ztunnel-source-dir>}
cd "$src"
[ -f Cargo.toml ] && grep -q '^name = "ztunnel"' Cargo.toml || { echo "$src is not a ztunnel checkout" >&2; exit 2; }
command -v cargo >/dev/null || { echo "cargo not found (ztunnel needs the Rust toolchain named by rust-version in its Cargo.toml)" >&2; exit 2; }
command -v protoc >/dev/null || { echo "protoc not found: apt-get install protobuf-compiler" >&2; exit 2; }

# vendor/ holds BoringSSL FIPS archives for the feature dropped below; the build never reads it.
rm -rf vendor
# Drop the feature line and the git dependency; both are single lines in Cargo.toml.
sed -i -e '/^tls-boring *=/d' -e '/^boring-rustls-provider *=/d' Cargo.toml
if grep -q 'boring-rustls-provider' Cargo.toml; then
  echo "Cargo.toml still names boring-rustls-provider: its layout changed, edit it by hand" >&2
  exit 1
fi

start=$(date +%s)
nice -n 10 cargo build --release --features testing
# ztunnel's .cargo/config.toml moves the target directory (out/rust today); ask cargo.
target=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
echo "built $target/release/ztunnel in $(( $(date +%s) - start )) s"
echo "run the bench with: ZTUNNEL_BIN=$target/release/ztunnel npm run bench"
