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

# Packages building wirespeed needs: clang compiles the XDP program, and
# xsk-rs builds libxdp from source (libbpf-dev, libelf-dev, zlib1g-dev, m4).
BUILD_PACKAGES=(clang llvm libbpf-dev libelf-dev zlib1g-dev m4 pkg-config make gcc linux-libc-dev)

# Packages the end-to-end tests and benchmarks use (qemu-system-x86 and
# busybox-static: the VM guest tests; xz-utils and zstd: compressed kernel
# modules of 6.12+ guest kernels; vm-images/build adds the rest it needs;
# dpkg-dev, binutils and systemd: scripts/package and the package test's
# `systemd-analyze verify`; chromium: the HTML report's browser test).
TEST_PACKAGES=(iproute2 nftables socat iperf3 util-linux python3 procps ethtool iputils-ping qemu-system-x86 busybox-static xz-utils zstd tshark dpkg-dev binutils systemd chromium)

# make_pair NS_A NS_B VETH_A VETH_B: two namespaces joined by a veth pair,
# 198.18.0.1/24 on side a and 198.18.0.2/24 on side b (RFC 2544 range).
# The caller deletes the namespaces (which deletes the veth) on exit.
make_pair() {
    ip netns add "$1"
    ip netns add "$2"
    ip link add "$3" netns "$1" type veth peer name "$4" netns "$2"
    ip -n "$1" addr add 198.18.0.1/24 dev "$3"
    ip -n "$2" addr add 198.18.0.2/24 dev "$4"
    ip -n "$1" link set lo up
    ip -n "$2" link set lo up
    ip -n "$1" link set "$3" up
    ip -n "$2" link set "$4" up
}

# wait_port NS ADDR PORT: until a TCP connect from NS succeeds (5 s at most).
wait_port() {
    local _
    for _ in $(seq 50); do
        ip netns exec "$1" bash -c "exec 3<>/dev/tcp/$2/$3" 2>/dev/null && return 0
        sleep 0.1
    done
    die "nothing listens on $2:$3 after 5 s"
}
