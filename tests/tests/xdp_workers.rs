//! TCP-lite at full width: one worker per queue on each end. On a veth
//! pair with two queues a side, xdp-to-xdp flows land on the worker that
//! owns them (nothing handed over); against a kernel peer, whose queue
//! choice is its own, frames that land on the wrong worker's queue are
//! handed over and counted. Byte counts match on both sides every way.

use std::time::Duration;
use wirespeed_tests::process::{run, AgentProc, Output};
use wirespeed_tests::testbed::sh;
use wirespeed_tests::testbed::{pair_with_queues, Testbed};
use wirespeed_tests::{bin, in_netns};

fn agent(tb: &Testbed) -> AgentProc {
    let mut c = tb.cmd(1, &bin());
    c.args(["agent", "--listen", &format!("{}:5290", tb.links[0].v4[1])]);
    c.args(["--max-streams", "1024"]);
    AgentProc::start(c)
}

fn ws(tb: &Testbed, a: &AgentProc, extra: &[&str]) -> Output {
    let mut c = tb.cmd(0, &bin());
    c.args(["run", "--to", &a.addr, "--mode", "xdp"]);
    c.args(["--iface", &tb.links[0].ifname[0], "--json"]);
    c.args(extra);
    run(c, Duration::from_secs(120))
}

/// Every direction moved `bytes` by both sides' counts, with no error.
fn exact(j: &serde_json::Value, bytes: u64, what: &str) {
    let end = &j["end"];
    let errors = end["errors"].as_array().unwrap();
    assert!(errors.is_empty(), "{what}: {errors:?}");
    for d in end["directions"].as_array().unwrap() {
        assert_eq!(d["sent"]["bytes"], bytes, "{what}: {d}");
        assert_eq!(d["received"]["bytes"], bytes, "{what}: {d}");
    }
}

/// A clean link loses nothing: no retransmission, no frame dropped by
/// the kernel before a worker's socket (the windows fit the fill rings).
fn lossless(j: &serde_json::Value, what: &str) {
    for d in j["end"]["directions"].as_array().unwrap() {
        assert_eq!(d["retransmits"], 0, "{what}: {d}");
    }
    for side in ["local", "remote"] {
        for w in j["end"]["workers"][side].as_array().unwrap() {
            assert_eq!(w["kernel_dropped"], 0, "{what} {side}: {w}");
            assert_eq!(w["fill_ring_empty"], 0, "{what} {side}: {w}");
        }
    }
}

/// A side's workers: (queue, flows, misrouted) each.
fn workers(j: &serde_json::Value, side: &str) -> Vec<(u64, u64, u64)> {
    j["end"]["workers"][side]
        .as_array()
        .unwrap_or_else(|| panic!("no {side} workers in {}", j["end"]))
        .iter()
        .map(|w| {
            let n = |k: &str| w[k].as_u64().unwrap_or_else(|| panic!("{k} in {w}"));
            (n("queue"), n("flows"), n("misrouted"))
        })
        .collect()
}

#[test]
fn two_workers_a_side_own_their_flows_xdp_to_xdp() {
    let tb = pair_with_queues(2);
    let a = agent(&tb);
    let theirs = tb.links[0].ifname[1].clone();
    for (dir, flows_per_end) in [("send", 16), ("receive", 16), ("both", 32)] {
        let args = [
            "--remote-mode",
            "xdp",
            "--remote-iface",
            &theirs,
            "--direction",
            dir,
            "--streams",
            "16",
            "--bytes",
            "32M",
            "--queues",
            "0-1",
            "--remote-queues",
            "0-1",
        ];
        let j = ws(&tb, &a, &args).ok().json();
        exact(&j, 32 << 20, dir);
        lossless(&j, dir);
        // veth hides its hash: the shared rule places the flows, and says why.
        let how = j["end"]["workers"]["placement"]
            .as_str()
            .unwrap_or_default();
        assert!(
            how.starts_with("port % workers (") && how.contains("veth"),
            "{how}"
        );
        for side in ["local", "remote"] {
            let w = workers(&j, side);
            assert_eq!(
                w.iter().map(|w| w.0).collect::<Vec<_>>(),
                [0, 1],
                "{dir} {side}: {w:?}"
            );
            assert!(
                w.iter().all(|w| w.1 > 0),
                "{dir} {side}: each owns flows: {w:?}"
            );
            assert_eq!(
                w.iter().map(|w| w.1).sum::<u64>(),
                flows_per_end,
                "{dir} {side}: {w:?}"
            );
            // Flow i leaves by queue (port % 2) and the other end owns it
            // by the same rule: nothing lands on the wrong worker.
            assert!(w.iter().all(|w| w.2 == 0), "{dir} {side}: {w:?}");
        }
    }
}

#[test]
fn a_kernel_peer_lands_on_any_queue_and_is_handed_over() {
    let tb = pair_with_queues(2);
    let a = agent(&tb);
    // The kernel peer on veth leaves checksums to an offload that never happens.
    let (ns, dev) = (tb.ns(1), &tb.links[0].ifname[1]);
    sh(
        "ip",
        &["netns", "exec", ns, "ethtool", "-K", dev, "tx", "off"],
    )
    .unwrap();
    let mut misrouted = 0;
    for dir in ["send", "receive"] {
        let args = [
            "--remote-mode",
            "socket",
            "--direction",
            dir,
            "--streams",
            "16",
            "--bytes",
            "32M",
        ];
        let j = ws(&tb, &a, &args).ok().json();
        exact(&j, 32 << 20, dir);
        let w = workers(&j, "local");
        assert_eq!(w.len(), 2, "{dir}: {w:?}");
        assert_eq!(w.iter().map(|w| w.1).sum::<u64>(), 16, "{dir}: {w:?}");
        assert!(
            j["end"]["workers"]["remote"].as_array().unwrap().is_empty(),
            "kernel sockets have no workers"
        );
        misrouted += w.iter().map(|w| w.2).sum::<u64>();
    }
    // The kernel spreads its 16 connections over both transmit queues by
    // its own hash: some land on the queue of the worker that does not
    // own them.
    assert!(misrouted > 0, "no frame was handed over");
}

#[test]
fn a_thousand_flows_each_end() {
    let tb = pair_with_queues(2);
    let a = agent(&tb);
    let theirs = tb.links[0].ifname[1].clone();
    let args = [
        "--remote-mode",
        "xdp",
        "--remote-iface",
        &theirs,
        "--streams",
        "1024",
        "--bytes",
        "64M",
    ];
    let j = ws(&tb, &a, &args).ok().json();
    exact(&j, 64 << 20, "1024 streams");
    lossless(&j, "1024 streams");
    let flows = j["end"]["flows"].as_array().unwrap();
    assert_eq!(flows.len(), 1024);
    for f in flows {
        let (s, r) = (&f["sender"], &f["receiver"]);
        assert_eq!(s["bytes"], r["bytes"], "{f}");
        assert_eq!(s["bytes"], 65536, "{f}");
        // 1500 less 40 bytes of headers and 12 of timestamps
        assert_eq!(s["tcp"]["mss"], 1448, "the link's MSS: {f}");
    }
    // 1024 flows share the stated budget per end: 128 KiB buffers each.
    let snd = flows[0]["sender"]["sockbuf"]["snd"].as_u64().unwrap();
    assert_eq!(
        snd as usize,
        wirespeed::spec::TCPLITE_MIN_BUFFER.max(wirespeed::spec::TCPLITE_END_BUDGET / 2048)
    );
    for side in 0..2 {
        let l = &tb.links[0];
        let left = in_netns(tb.ns(side), || {
            wirespeed::datapath::xdp::loader::attached_program(&l.ifname[side])
        });
        assert!(left.is_none(), "XDP left on {}", l.ifname[side]);
    }
}

/// TCP-lite over IPv6 on the controller's end, against TCP-lite and
/// against kernel TCP on the agent's: exact both ways, nothing lost.
#[test]
fn ipv6_to_tcplite_and_to_kernel() {
    let tb = pair_with_queues(2);
    let l = &tb.links[0];
    let mut c = tb.cmd(1, &bin());
    c.args(["agent", "--listen", &format!("[{}]:5290", l.v6[1])]);
    let a = AgentProc::start(c);
    let theirs = l.ifname[1].clone();
    let both = ["--direction", "both", "--streams", "4", "--bytes", "32M"];
    let j = ws(
        &tb,
        &a,
        &[
            &both[..],
            &["--remote-mode", "xdp", "--remote-iface", &theirs],
        ]
        .concat(),
    )
    .ok()
    .json();
    exact(&j, 32 << 20, "IPv6 xdp to xdp");
    lossless(&j, "IPv6 xdp to xdp");
    assert_eq!(j["config"]["remote_mode"], "xdp-copy", "{}", j["config"]);
    // The kernel peer on veth leaves checksums to an offload that never happens.
    sh(
        "ip",
        &[
            "netns",
            "exec",
            tb.ns(1),
            "ethtool",
            "-K",
            &theirs,
            "tx",
            "off",
        ],
    )
    .unwrap();
    let j = ws(&tb, &a, &[&both[..], &["--remote-mode", "socket"]].concat())
        .ok()
        .json();
    exact(&j, 32 << 20, "IPv6 xdp to kernel");
    assert_eq!(j["end"]["mode"], "xdp-copy", "{}", j["end"]["mode"]);
    // Nothing lost on this end (the kernel sender's own probes may still
    // count as retransmissions on its side).
    for w in j["end"]["workers"]["local"].as_array().unwrap() {
        assert_eq!(w["kernel_dropped"], 0, "{w}");
        assert_eq!(w["handoff_dropped"], 0, "{w}");
    }
}

/// `--plain` against a kernel sink on a 2-queue link: 8 connections over
/// two workers, the kernel's ACKs landing on either queue; every
/// connection's bytes arrive whole (SHA-256 on both sides).
#[test]
fn plain_kernel_sink_over_two_workers_is_exact() {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    let tb = pair_with_queues(2);
    let l = &tb.links[0];
    let (ns, dev) = (tb.ns(1), &l.ifname[1]);
    sh(
        "ip",
        &["netns", "exec", ns, "ethtool", "-K", dev, "tx", "off"],
    )
    .unwrap();
    const STREAMS: usize = 8;
    const PER: u64 = 4 << 20;
    let addr = format!("{}:9000", l.v4[1]);
    let listener = in_netns(ns, || std::net::TcpListener::bind(&addr)).expect("listening");
    let sink = std::thread::spawn(move || {
        let readers: Vec<_> = (0..STREAMS)
            .map(|_| {
                let (mut s, _) = listener.accept().expect("a connection");
                std::thread::spawn(move || {
                    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                    let (mut h, mut n, mut buf) = (Sha256::new(), 0u64, vec![0u8; 1 << 16]);
                    loop {
                        match s.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(k) => {
                                h.update(&buf[..k]);
                                n += k as u64;
                            }
                        }
                    }
                    (n, wirespeed_tests::kernel_peer::hex(&h.finalize()))
                })
            })
            .collect();
        readers
            .into_iter()
            .map(|r| r.join().expect("reader"))
            .collect::<Vec<_>>()
    });
    let mut c = tb.cmd(0, &bin());
    c.args([
        "run",
        "--mode",
        "xdp",
        "--iface",
        &l.ifname[0],
        "--verify",
        "--json",
    ])
    .args(["--plain", &addr, "--streams", "8", "--bytes"])
    .arg((PER * STREAMS as u64).to_string());
    let j = run(c, Duration::from_secs(90)).ok().json();
    let want = wirespeed::datapath::xdp::stream::pattern_sha256(PER);
    for (n, hash) in sink.join().expect("sink") {
        assert_eq!((n, hash.as_str()), (PER, want.as_str()), "{j}");
    }
    let streams = j["streams"].as_array().unwrap();
    assert_eq!(streams.len(), STREAMS);
    assert!(streams.iter().all(|s| s["sha256"] == want.as_str()), "{j}");
    let workers = j["workers"].as_array().unwrap();
    assert_eq!(workers.len(), 2, "{j}");
    assert_eq!(
        workers
            .iter()
            .map(|w| w["flows"].as_u64().unwrap())
            .sum::<u64>(),
        STREAMS as u64
    );
    assert!(workers.iter().all(|w| w["handoff_dropped"] == 0), "{j}");
}
