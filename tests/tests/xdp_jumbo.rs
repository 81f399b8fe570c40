//! Jumbo frames over TCP-lite: on a veth at MTU 9000 the MSS follows the
//! MTU past what one 4 KiB UMEM chunk holds, the AF_XDP sockets chain each
//! frame over several chunks (XDP_USE_SG), and the bytes arrive exact:
//! xdp↔xdp, xdp↔kernel through the agent, and against a plain kernel
//! listener and sender with SHA-256 on both sides.

use std::time::Duration;
use wirespeed::datapath::xdp::stream::pattern_sha256;
use wirespeed_tests::bin;
use wirespeed_tests::kernel_peer::{kernel_sink, kernel_source};
use wirespeed_tests::process::{run, AgentProc};
use wirespeed_tests::testbed::sh;
use wirespeed_tests::testbed::{pair, Testbed};

const MTU: &str = "9000";
/// The largest MSS one chunk allowed before (3498 - 40): a jumbo run's
/// segments must be longer.
const ONE_CHUNK_MSS: u64 = 3458;
const BYTES: u64 = 16 << 20;

/// Two hosts on a veth at MTU 9000; side `kernel`'s checksums filled in
/// by the kernel (veth would leave them to an offload that never runs).
fn jumbo_pair(kernel: Option<usize>) -> Testbed {
    let tb = pair();
    let l = &tb.links[0];
    for side in 0..2 {
        let (ns, dev) = (tb.ns(side), l.ifname[side].as_str());
        sh("ip", &["-n", ns, "link", "set", "dev", dev, "mtu", MTU]).unwrap();
    }
    if let Some(side) = kernel {
        let (ns, dev) = (tb.ns(side), l.ifname[side].as_str());
        sh(
            "ip",
            &["netns", "exec", ns, "ethtool", "-K", dev, "tx", "off"],
        )
        .unwrap();
    }
    tb
}

/// A run from host 0 (TCP-lite on its veth) against an agent in host 1.
fn run_xdp(tb: &Testbed, agent: &AgentProc, extra: &[&str]) -> serde_json::Value {
    let mut c = tb.cmd(0, &bin());
    c.args(["run", "--to", &agent.addr, "--mode", "xdp"])
        .args(["--iface", &tb.links[0].ifname[0], "--json"])
        .args(["--bytes", &BYTES.to_string()])
        .args(extra);
    run(c, Duration::from_secs(90)).ok().json()
}

/// Every direction moved exactly [`BYTES`] by both sides' counts, and on
/// every flow both sides' MSS is a jumbo one (TCP-lite's own, or the
/// kernel's TCP_INFO: it sends what TCP-lite's SYN allowed).
fn exact_and_jumbo(j: &serde_json::Value, what: &str) {
    let end = &j["end"];
    let errors = end["errors"].as_array().unwrap();
    assert!(errors.is_empty(), "{what}: {errors:?}");
    assert_eq!(end["mode"], "xdp-copy", "{what}");
    for d in end["directions"].as_array().unwrap() {
        assert_eq!(d["sent"]["bytes"], BYTES, "{what}: {d}");
        assert_eq!(d["received"]["bytes"], BYTES, "{what}: {d}");
    }
    for f in end["flows"].as_array().unwrap() {
        for side in ["sender", "receiver"] {
            let mss = f[side]["tcp"]["mss"].as_u64().unwrap_or(0);
            assert!(mss > ONE_CHUNK_MSS, "{what}: {side}'s MSS {mss}: {f}");
        }
    }
}

/// Both ends' workers ran multi-buffer sockets, `remote` too if it ran
/// TCP-lite, and each end sent and received segments.
fn chained(j: &serde_json::Value, remote: bool) {
    let w = &j["end"]["workers"];
    let sides: &[&str] = if remote {
        &["local", "remote"]
    } else {
        &["local"]
    };
    for side in sides {
        let ws = w[side].as_array().unwrap();
        assert!(!ws.is_empty(), "{side}: {w}");
        for x in ws {
            assert_eq!(x["multi_buffer"], true, "{side}: {x}");
            assert!(x["segments_in"].as_u64().unwrap() > 0, "{x}");
            assert!(x["segments_out"].as_u64().unwrap() > 0, "{x}");
        }
    }
}

#[test]
fn xdp_to_xdp_at_mtu_9000() {
    let tb = jumbo_pair(None);
    let mut c = tb.cmd(1, &bin());
    c.args(["agent", "--listen", &format!("{}:5290", tb.links[0].v4[1])]);
    let a = AgentProc::start(c);
    let theirs = ["--remote-mode", "xdp", "--remote-iface"];
    let remote = [&theirs[..], &[tb.links[0].ifname[1].as_str()]].concat();
    let j = run_xdp(&tb, &a, &[&remote[..], &["--direction", "both"]].concat());
    exact_and_jumbo(&j, "xdp to xdp, both ways");
    chained(&j, true);
    let j = run_xdp(&tb, &a, &[&remote[..], &["--streams", "2"]].concat());
    exact_and_jumbo(&j, "xdp to xdp, 2 streams");
}

#[test]
fn xdp_to_kernel_at_mtu_9000() {
    let tb = jumbo_pair(Some(1));
    let mut c = tb.cmd(1, &bin());
    c.args(["agent", "--listen", &format!("{}:5290", tb.links[0].v4[1])]);
    let a = AgentProc::start(c);
    for dir in ["send", "receive"] {
        let j = run_xdp(&tb, &a, &["--direction", dir]);
        exact_and_jumbo(&j, &format!("xdp to kernel, {dir}"));
        chained(&j, false);
        assert!(j["end"]["workers"]["remote"].as_array().unwrap().is_empty());
    }
    drop(a);

    // Against a plain kernel listener and sender: both sides' SHA-256.
    let iface = tb.links[0].ifname[0].as_str();
    let peer = tb.links[0].v4[1];
    let plain = |args: &[&str]| {
        let mut c = tb.cmd(0, &bin());
        c.args([
            "run", "--mode", "xdp", "--iface", iface, "--verify", "--json",
        ])
        .args(args);
        run(c, Duration::from_secs(90)).ok().json()
    };
    let sink = kernel_sink(&tb, &format!("{peer}:9000"));
    let to = format!("{peer}:9000");
    let j = plain(&["--plain", &to, "--bytes", &BYTES.to_string()]);
    let (n, hash) = sink.join().expect("sink");
    let s = &j["streams"][0];
    assert_eq!(n, BYTES, "the kernel got every byte: {j}");
    assert_eq!(s["sha256"], hash.as_str(), "what TCP-lite sent: {j}");
    assert_eq!(hash, pattern_sha256(BYTES), "the documented pattern");
    assert!(s["mss"].as_u64().unwrap() > ONE_CHUNK_MSS, "{s}");
    assert_eq!(j["workers"][0]["multi_buffer"], true, "{j}");

    let source = kernel_source(&tb, &format!("{peer}:9001"), BYTES as usize);
    let from = format!("{peer}:9001");
    let j = plain(&["--plain", &from, "--direction", "receive"]);
    let want = source.join().expect("source");
    let s = &j["streams"][0];
    assert_eq!(s["bytes"], BYTES, "{j}");
    assert_eq!(s["sha256"], want.as_str(), "what the kernel sent: {j}");
    assert!(s["mss"].as_u64().unwrap() > ONE_CHUNK_MSS, "{s}");
}
