# Kernel-package logic of vm-images/build, apart from its I/O so that
# tests/tests/vm_builder.rs can check it on small fixtures. Source it.
#
# Debian's kernel packaging changed twice since bookworm's 6.1, and a guest
# builder meets all three shapes:
#   * 6.1 (bookworm): linux-image-X holds /boot/vmlinuz-X and
#     /lib/modules/X with plain `.ko` modules;
#   * 6.12+ (bookworm-backports, trixie): modules are `.ko.xz`, and trixie's
#     merged /usr puts them under /usr/lib/modules/X;
#   * 6.19+ (trixie-backports): linux-image-X is a near-empty package that
#     depends on linux-binary-X (/usr/lib/modules/X/vmlinuz),
#     linux-modules-X (the modules) and linux-base-X (modules.builtin,
#     config).

# The Debian suites a guest kernel may come from.
KERNEL_SUITES=(bookworm bookworm-backports trixie trixie-backports)

# newest_whole_kernel FLAVOUR < STANZAS: the newest linux-image-VERSION-FLAVOUR
# in an `apt-cache dumpavail` listing whose parts the listing holds whole:
# every linux-binary-* and linux-modules-* package it depends on, and for a
# split image (one that has a linux-binary dependency) its linux-base-* too.
# (A suite keeps old signed images after their unsigned parts have gone.)
# Prints nothing when there is none.
newest_whole_kernel() {
    awk -v flav="$1" '
        function flush() {
            if (pkg != "") {
                have[pkg] = 1
                if (pkg ~ "^linux-image-[0-9][0-9.]*(-[0-9]+|[+]deb[0-9]+)-" flav "$" && (!(pkg in ver) || ver[pkg] < v)) {
                    ver[pkg] = v; deps[pkg] = d
                }
            }
            pkg = ""; v = ""; d = ""
        }
        /^Package: / { flush(); pkg = $2 }
        /^Version: / { v = $2 }
        /^Depends: / { d = substr($0, 10) }
        /^$/ { flush() }
        END {
            flush()
            for (p in ver) {
                n = split(deps[p], a, ",")
                split_image = (deps[p] ~ /linux-binary-/)
                whole = 1
                for (i = 1; i <= n; i++) {
                    dep = a[i]; sub(/^ +/, "", dep); sub(/[ (|].*/, "", dep)
                    part = (dep ~ /^linux-(binary|modules)-[0-9]/) || (split_image && dep ~ /^linux-base-[0-9]/)
                    if (part && !(dep in have)) whole = 0
                }
                if (whole) { k = p; sub(/^linux-image-/, "", k); print k "\t" p }
            }
        }' | sort -V | tail -1 | cut -f2
}

# kernel_parts IMAGE_PKG < DEPENDS: the packages that make up a kernel: the
# image itself and its linux-binary-*, linux-modules-* and linux-base-*
# dependencies, one a line (DEPENDS: the image's Depends field's value).
kernel_parts() {
    echo "$1"
    tr ',' '\n' | sed -E 's/^ +//; s/[ (|].*//' | grep -E '^linux-(binary|modules|base)-[0-9]' || true
}

# kernel_tree DIR: where the unpacked packages in DIR keep the kernel, as
# "KVER VMLINUZ MODULES_DIR" (paths relative to DIR): /boot/vmlinuz-KVER
# or (6.19+) /usr/lib/modules/KVER/vmlinuz; modules under /lib/modules or
# merged-/usr's /usr/lib/modules. Fails when DIR holds no kernel.
kernel_tree() {
    local d m kver
    for m in lib/modules usr/lib/modules; do
        [ -d "$1/$m" ] || continue
        for d in "$1/$m"/*/; do
            kver="$(basename "$d")"
            [ -d "$d/kernel" ] || continue
            if [ -f "$1/boot/vmlinuz-$kver" ]; then
                echo "$kver boot/vmlinuz-$kver $m/$kver"
                return 0
            fi
            for v in lib/modules usr/lib/modules; do
                [ -f "$1/$v/$kver/vmlinuz" ] && { echo "$kver $v/$kver/vmlinuz $m/$kver"; return 0; }
            done
        done
    done
    return 1
}

# unpack_module SRC DST: a kernel module, decompressed (`.ko`, `.ko.xz`,
# `.ko.zst`, `.ko.gz`): the guest's busybox insmod loads plain `.ko`
# files, whatever decompression the kernel was built with.
unpack_module() {
    mkdir -p "$(dirname "$2")"
    case "$1" in
    *.ko) cp "$1" "$2" ;;
    *.ko.xz) xz -dc "$1" >"$2" ;;
    *.ko.zst) zstd -q -dc "$1" >"$2" ;;
    *.ko.gz) gzip -dc "$1" >"$2" ;;
    *) echo "unpack_module: $1 is not a kernel module (.ko, .ko.xz, .ko.zst, .ko.gz)" >&2; return 1 ;;
    esac
}

# plain_module PATH: the module's path with its compression suffix dropped.
plain_module() {
    echo "${1%.ko*}.ko"
}
