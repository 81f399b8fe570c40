//! The guest builder's kernel-package logic (`vm-images/kernel.sh`) on
//! small fixtures: which kernel a suite's listing offers whole, which
//! packages make it up, where each of Debian's three package shapes keeps
//! vmlinuz and the modules, and modules unpacked from `.ko`, `.ko.xz` and
//! `.ko.zst`. No network, no root. Needs bash, xz and zstd (scripts/test
//! installs them).

use std::path::{Path, PathBuf};
use std::process::Command;
use wirespeed_tests::workspace;

/// Run `script` in bash with vm-images/kernel.sh sourced, `input` on stdin.
fn sh(script: &str, input: &str) -> (bool, String, String) {
    use std::io::Write;
    let lib = workspace().join("vm-images/kernel.sh");
    let mut child = Command::new("bash")
        .arg("-c")
        .arg(format!("set -euo pipefail; . {}; {script}", lib.display()))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("bash");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).trim().to_string(),
        String::from_utf8_lossy(&o.stderr).to_string(),
    )
}

fn stanza(pkg: &str, version: &str, depends: &str) -> String {
    format!("Package: {pkg}\nVersion: {version}\nDepends: {depends}\n\n")
}

/// A trixie-backports-like listing: split 7.x kernels, a 7.4 whose
/// modules package is gone, a 6.19 without modules, an unsplit 6.18 whose
/// linux-base is gone, and other flavours around them.
fn listing(with_7_3_parts: bool) -> String {
    let split = |v: &str, f: &str| {
        format!(
            "initramfs-tools, linux-base-{v}+deb13-{f} (= {v}-1), linux-binary-{v}+deb13-{f} (= {v}-1), linux-modules-{v}+deb13-{f} (= {v}-1)"
        )
    };
    let mut s = String::new();
    for (v, f) in [
        ("7.3.4", "cloud-amd64"),
        ("7.3.4", "amd64"),
        ("7.4.1", "cloud-amd64"),
        ("6.19.14", "cloud-amd64"),
    ] {
        s += &stanza(
            &format!("linux-image-{v}+deb13-{f}"),
            &format!("{v}-1"),
            &split(v, f),
        );
    }
    if with_7_3_parts {
        for part in ["base", "binary", "modules"] {
            s += &stanza(
                &format!("linux-{part}-7.3.4+deb13-cloud-amd64"),
                "7.3.4-1",
                "kmod",
            );
        }
    }
    for part in ["base", "binary", "modules"] {
        s += &stanza(
            &format!("linux-{part}-7.3.4+deb13-amd64"),
            "7.3.4-1",
            "kmod",
        );
    }
    for part in ["base", "binary"] {
        s += &stanza(
            &format!("linux-{part}-7.4.1+deb13-cloud-amd64"),
            "7.4.1-1",
            "kmod",
        );
        s += &stanza(
            &format!("linux-{part}-6.19.14+deb13-cloud-amd64"),
            "6.19.14-1",
            "kmod",
        );
    }
    s += &stanza(
        "linux-image-6.18.15+deb13-cloud-amd64",
        "6.18.15-1",
        "initramfs-tools, kmod, linux-base-6.18.15+deb13-cloud-amd64 (= 6.18.15-1)",
    );
    s += &stanza("linux-image-7.9.9+deb13-cloud-amd64-dbg", "7.9.9-1", "");
    s += &stanza("linux-image-7.9.9+deb13-rt-amd64", "7.9.9-1", "kmod");
    s += &stanza(
        "linux-image-cloud-amd64",
        "7.4.1-1",
        "linux-image-7.4.1+deb13-cloud-amd64",
    );
    s
}

#[test]
fn the_newest_kernel_held_whole_is_picked() {
    let (ok, out, err) = sh("newest_whole_kernel cloud-amd64", &listing(true));
    assert!(ok, "{err}");
    assert_eq!(
        out, "linux-image-7.3.4+deb13-cloud-amd64",
        "7.4.1 has no modules package"
    );
    // Without 7.3.4's parts, the unsplit 6.18 (its own linux-base gone) is whole.
    let (_, out, _) = sh("newest_whole_kernel cloud-amd64", &listing(false));
    assert_eq!(out, "linux-image-6.18.15+deb13-cloud-amd64");
    // Flavours do not mix: amd64 is not rt-amd64 nor cloud-amd64.
    let (_, out, _) = sh("newest_whole_kernel amd64", &listing(true));
    assert_eq!(out, "linux-image-7.3.4+deb13-amd64");
    let (ok, out, _) = sh("newest_whole_kernel arm64", &listing(true));
    assert!(ok && out.is_empty(), "{out}");
}

#[test]
fn a_kernels_parts_come_from_its_depends() {
    let deps = "dracut | initramfs-tools (>= 0.120), kmod, linux-base-7.3.4+deb13-cloud-amd64 (= 7.3.4-1), linux-binary-7.3.4+deb13-cloud-amd64 (= 7.3.4-1), linux-modules-7.3.4+deb13-cloud-amd64 (= 7.3.4-1)";
    let (ok, out, err) = sh("kernel_parts linux-image-7.3.4+deb13-cloud-amd64", deps);
    assert!(ok, "{err}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "linux-image-7.3.4+deb13-cloud-amd64",
            "linux-base-7.3.4+deb13-cloud-amd64",
            "linux-binary-7.3.4+deb13-cloud-amd64",
            "linux-modules-7.3.4+deb13-cloud-amd64",
        ]
    );
    let (_, out, _) = sh(
        "kernel_parts linux-image-6.1.0-9-amd64",
        "kmod, linux-base (>= 4.3~)",
    );
    assert_eq!(
        out, "linux-image-6.1.0-9-amd64",
        "linux-base itself is no part"
    );
}

fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ws-vmb-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn touch(root: &Path, rel: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, b"x").unwrap();
}

#[test]
fn each_package_shape_has_its_kernel_found() {
    let cases = [
        // 6.1: /boot and /lib/modules.
        (
            "v61",
            vec!["boot/vmlinuz-6.1.0-9-amd64", "lib/modules/6.1.0-9-amd64/kernel/a.ko"],
            "6.1.0-9-amd64 boot/vmlinuz-6.1.0-9-amd64 lib/modules/6.1.0-9-amd64",
        ),
        // 6.12+ on merged /usr: /boot, /usr/lib/modules.
        (
            "v618",
            vec!["boot/vmlinuz-6.18.15+deb13-amd64", "usr/lib/modules/6.18.15+deb13-amd64/kernel/a.ko.xz"],
            "6.18.15+deb13-amd64 boot/vmlinuz-6.18.15+deb13-amd64 usr/lib/modules/6.18.15+deb13-amd64",
        ),
        // 6.19+ split: vmlinuz beside the modules.
        (
            "v73",
            vec!["usr/lib/modules/7.3.4+deb13-amd64/vmlinuz", "usr/lib/modules/7.3.4+deb13-amd64/kernel/a.ko.xz"],
            "7.3.4+deb13-amd64 usr/lib/modules/7.3.4+deb13-amd64/vmlinuz usr/lib/modules/7.3.4+deb13-amd64",
        ),
    ];
    for (tag, files, want) in cases {
        let d = scratch(tag);
        for f in files {
            touch(&d, f);
        }
        let (ok, out, err) = sh(&format!("kernel_tree {}", d.display()), "");
        assert!(ok, "{tag}: {err}");
        assert_eq!(out, want, "{tag}");
        let _ = std::fs::remove_dir_all(&d);
    }
    // No kernel: a failure, not a guess.
    let d = scratch("none");
    touch(&d, "usr/share/doc/x");
    let (ok, _, _) = sh(&format!("kernel_tree {}", d.display()), "");
    assert!(!ok);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn modules_unpack_from_every_compression() {
    let d = scratch("mods");
    let body = b"\x7fELF fake module body";
    std::fs::write(d.join("plain.ko"), body).unwrap();
    for (name, tool) in [("x.ko", "xz"), ("z.ko", "zstd")] {
        std::fs::write(d.join(name), body).unwrap();
        let ok = Command::new(tool)
            .arg("-q")
            .arg(d.join(name))
            .status()
            .unwrap_or_else(|e| panic!("{tool}: {e} (apt-get install xz-utils zstd)"))
            .success();
        assert!(ok, "{tool}");
    }
    for src in ["plain.ko", "x.ko.xz", "z.ko.zst"] {
        let (ok, out, err) = sh(
            &format!(
                "unpack_module {0}/{src} {0}/out/$(plain_module kernel/{src}); plain_module kernel/{src}",
                d.display()
            ),
            "",
        );
        assert!(ok, "{src}: {err}");
        assert!(out.ends_with(".ko") && !out.contains(".ko."), "{out}");
        assert_eq!(
            std::fs::read(d.join("out").join(&out)).unwrap(),
            body,
            "{src}"
        );
    }
    let (ok, _, err) = sh(
        &format!("unpack_module {0}/plain.ko.lz4 {0}/o.ko", d.display()),
        "",
    );
    assert!(!ok && err.contains("not a kernel module"), "{err}");
    let _ = std::fs::remove_dir_all(&d);
}
