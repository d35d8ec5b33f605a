#!/bin/sh
# Installs what building and testing this project needs, once: Debian's Rust
# 1.96 toolchain with its library source (for -Zbuild-std), ld.lld for the
# bare-metal images, QEMU for aarch64, and clippy/rustfmt for the same
# compiler. Idempotent: when everything is present it says so in one line.
set -eu

PACKAGES="rustc-web cargo-web rust-web-src rust-web-clippy rustfmt-web lld qemu-system-arm"

missing=""
for p in $PACKAGES; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done

if [ -z "$missing" ]; then
    echo "setup: toolchain present ($PACKAGES), nothing to install"
    exit 0
fi

line="apt-get update && apt-get install -y --no-install-recommends$missing"
if [ "$(id -u)" -ne 0 ]; then
    echo "setup: missing Debian packages:$missing" >&2
    echo "setup: run as root:  $line" >&2
    exit 1
fi

echo "setup: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $missing >/dev/null
echo "setup: installed$missing"
