//! Compiles the XDP steering program (xdp-programs/steer.bpf.c) with clang
//! so the binary embeds it; Linux targets only.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("../xdp-programs");
    println!(
        "cargo:rerun-if-changed={}",
        dir.join("steer.bpf.c").display()
    );
    println!("cargo:rerun-if-changed={}", dir.join("steer.h").display());
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux") {
        return;
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("steer.bpf.o");
    let arch = match std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() {
        Ok("aarch64") => "aarch64-linux-gnu",
        _ => "x86_64-linux-gnu",
    };
    let status = Command::new("clang")
        .args(["-O2", "-g", "-Wall", "-Werror", "-target", "bpf"])
        .arg(format!("-I{}", dir.display()))
        .arg(format!("-I/usr/include/{arch}"))
        .arg("-c")
        .arg(dir.join("steer.bpf.c"))
        .arg("-o")
        .arg(&out)
        .status()
        .unwrap_or_else(|e| {
            panic!("clang is needed to build the XDP program ({e}): apt-get install clang llvm libbpf-dev")
        });
    assert!(
        status.success(),
        "clang failed to build xdp-programs/steer.bpf.c: are libbpf-dev and linux-libc-dev installed?"
    );
}
