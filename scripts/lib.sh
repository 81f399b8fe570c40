# Shared helpers for wirespeed's scripts: install what is missing on a
# Debian machine, find the toolchain, fail with one clear line.
# Source it: . "$(dirname "$0")/lib.sh"

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
APT_UPDATED=0

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

need_root() {
    [ "$(id -u)" -eq 0 ] || die "$1 needs root (network namespaces, veth, tc): run it with sudo"
}

# apt_ensure PKG...: install the Debian packages that are not installed yet.
apt_ensure() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    command -v apt-get >/dev/null || die "missing packages ${missing[*]} and no apt-get to install them"
    say "installing ${missing[*]}"
    if [ "$APT_UPDATED" -eq 0 ]; then
        apt-get update -qq >/dev/null
        APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

# rust_ensure [COMPONENT...]: cargo on PATH, plus rustup components.
rust_ensure() {
    if ! command -v cargo >/dev/null; then
        [ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
    fi
    command -v cargo >/dev/null || die "Rust is not installed: install rustup (https://rustup.rs), then run this again"
    local c
    for c in "$@"; do
        rustup component list --installed 2>/dev/null | grep -q "^$c" || { say "rustup component add $c"; rustup component add "$c" >/dev/null; }
    done
}

# rust_target_ensure TRIPLE: the standard library for a cross target.
rust_target_ensure() {
    rustup target list --installed | grep -qx "$1" || { say "rustup target add $1"; rustup target add "$1" >/dev/null; }
}

# Packages the end-to-end tests and benchmarks use.
TEST_PACKAGES=(iproute2 nftables socat iperf3 util-linux python3 procps)
