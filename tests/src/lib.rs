//! End-to-end test support: network-namespace testbeds and the real
//! `wirespeed` binary run inside them.
//!
//! Everything here makes real kernel state (namespaces, veth, qdiscs) and
//! tears it down on drop, including during a panic's unwinding. Tests that
//! use it need root; without it they fail with the reason, never skip.

pub mod kernel_peer;
pub mod linkem;
pub mod process;
pub mod testbed;
pub mod vm;

use std::path::PathBuf;

/// Fail loudly unless we are root: these tests make namespaces.
pub fn require_root() {
    if !nix::unistd::geteuid().is_root() {
        panic!(
            "this test builds network namespaces and needs root: run scripts/test as root (sudo -E scripts/test)"
        );
    }
}

/// The workspace root.
pub fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The `wirespeed` binary under test: `WIRESPEED_BIN`, or the debug build.
pub fn bin() -> PathBuf {
    let p = std::env::var_os("WIRESPEED_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/debug/wirespeed"));
    assert!(
        p.exists(),
        "{} is missing: build it first (cargo build -p wirespeed-cli) or set WIRESPEED_BIN",
        p.display()
    );
    p
}

/// Run `f` with this thread inside namespace `ns`, then return to ours.
/// Sockets and XDP attachments made inside stay in that namespace.
pub fn in_netns<T>(ns: &str, f: impl FnOnce() -> T) -> T {
    use nix::sched::{setns, CloneFlags};
    let here = std::fs::File::open("/proc/thread-self/ns/net").expect("our namespace");
    let there = std::fs::File::open(format!("/var/run/netns/{ns}")).expect("the test namespace");
    setns(&there, CloneFlags::CLONE_NEWNET).expect("entering the namespace");
    let r = f();
    setns(&here, CloneFlags::CLONE_NEWNET).expect("returning to our namespace");
    r
}

/// Raw mode's loss accounting, from the sender's and the receiver's `raw`
/// JSON: every frame sent is received or dropped at a counted place. What
/// the steering program redirected is what the sockets got plus what the
/// kernel dropped on their way, nothing more than was sent arrived, and
/// gaps are lost frames (a lost tail is no gap).
pub fn raw_accounted(s: &serde_json::Value, r: &serde_json::Value) {
    let n = |v: &serde_json::Value, k: &str| v[k].as_u64().unwrap_or_else(|| panic!("{k} in {v}"));
    let (sent, got) = (n(s, "frames"), n(r, "frames"));
    let (steered, dropped) = (n(r, "steered"), n(r, "kernel_dropped"));
    assert_eq!(
        steered,
        got + dropped,
        "steered {steered} = received {got} + dropped {dropped}"
    );
    assert!(
        steered + n(r, "no_socket") <= sent,
        "steered {steered} of {sent} sent"
    );
    assert!(
        n(r, "gaps") <= sent - got,
        "gaps are lost frames (a lost tail is no gap)"
    );
}

/// The text of every `<text>` element of an SVG figure (axis labels,
/// legend), trimmed; a figure that is not well-formed SVG panics.
pub fn svg_texts(path: &std::path::Path) -> Vec<String> {
    let svg = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let doc = roxmltree::Document::parse(&svg).expect("the figure is well-formed SVG");
    doc.descendants()
        .filter(|n| n.has_tag_name("text"))
        .filter_map(|n| n.text())
        .map(|t| t.trim().to_string())
        .collect()
}
