//! TCP_STREAM with `--mode xdp`: the controller's flows run over TCP-lite
//! on AF_XDP; the agent's over kernel sockets (xdp-to-socket). Byte counts
//! match on both sides in every direction; ping keeps working; nothing
//! stays attached afterwards.

use std::time::Duration;
use wirespeed::datapath::xdp::loader::attached_program;
use wirespeed::testbed::sh;
use wirespeed_tests::process::{run, AgentProc, Output};
use wirespeed_tests::testbed::{pair, Testbed};
use wirespeed_tests::{bin, in_netns};

fn agent(tb: &Testbed) -> AgentProc {
    let mut c = tb.cmd(1, &bin());
    c.args(["agent", "--listen", &format!("{}:5290", tb.links[0].v4[1])]);
    AgentProc::start(c)
}

fn xdp(tb: &Testbed, a: &AgentProc, extra: &[&str]) -> Output {
    let mut c = tb.cmd(0, &bin());
    c.args([
        "run",
        "--to",
        &a.addr,
        "--mode",
        "xdp",
        "--iface",
        &tb.links[0].ifname[0],
    ]);
    c.args(extra);
    run(c, Duration::from_secs(90))
}

/// The kernel peer on veth leaves TCP checksums to an offload that never
/// happens; an AF_XDP receiver sees them unfilled. Turn it off there.
fn kernel_peer_checksums(tb: &Testbed) {
    let ns = tb.ns(1);
    sh(
        "ip",
        &[
            "netns",
            "exec",
            ns,
            "ethtool",
            "-K",
            &tb.links[0].ifname[1],
            "tx",
            "off",
        ],
    )
    .unwrap();
}

#[test]
fn xdp_to_socket_moves_exact_bytes_every_way() {
    let tb = pair();
    kernel_peer_checksums(&tb);
    let a = agent(&tb);
    for (dir, streams) in [("send", "1"), ("receive", "1"), ("both", "2")] {
        let j = xdp(
            &tb,
            &a,
            &[
                "--direction",
                dir,
                "--streams",
                streams,
                "--bytes",
                "16M",
                "--json",
            ],
        )
        .ok()
        .json();
        let end = &j["end"];
        assert_eq!(end["mode"], "xdp-copy", "{dir}");
        assert!(
            end["errors"].as_array().unwrap().is_empty(),
            "{dir}: {}",
            end["errors"]
        );
        let dirs = end["directions"].as_array().unwrap();
        assert_eq!(dirs.len(), if dir == "both" { 2 } else { 1 });
        for d in dirs {
            assert_eq!(d["sent"]["bytes"], 16 << 20, "{dir}: {d}");
            assert_eq!(d["received"]["bytes"], 16 << 20, "{dir}: {d}");
        }
    }
    // A timed run moves data and reports intervals from the TCP-lite side.
    let j = xdp(&tb, &a, &["--duration", "2s", "--json"]).ok().json();
    let e = &j["end"];
    assert!(e["received"]["bytes"].as_u64().unwrap() > 1 << 20);
    assert_eq!(e["sent"]["bytes"], e["received"]["bytes"]);
    assert!(!j["intervals"].as_array().unwrap().is_empty());
    let l = &tb.links[0];
    assert!(
        in_netns(tb.ns(0), || attached_program(&l.ifname[0])).is_none(),
        "detached"
    );
}

#[test]
fn xdp_mode_refuses_what_it_cannot_do() {
    let tb = pair();
    let a = agent(&tb);
    let mut c = tb.cmd(0, &bin());
    c.args(["run", "--to", &a.addr, "--mode", "xdp", "--duration", "1s"]);
    run(c, Duration::from_secs(30)).fails_with("--mode xdp needs the interface");
    xdp(&tb, &a, &["--streams", "9", "--duration", "1s"]).fails_with("1 to 8 streams");
    xdp(&tb, &a, &["--test", "rr", "--duration", "1s"]).fails_with("rr tests over TCP-lite");
}
