//! TCP_STREAM over TCP-lite on AF_XDP: the controller's end (`--mode
//! xdp`), the agent's (`--remote-mode xdp`), or both, against kernel
//! sockets or each other. Byte counts match on both sides in every
//! direction, and nothing stays attached afterwards.

use std::time::Duration;
use wirespeed::datapath::xdp::loader::attached_program;
use wirespeed_tests::process::{run, AgentProc, Output};
use wirespeed_tests::testbed::sh;
use wirespeed_tests::testbed::{pair, Testbed};
use wirespeed_tests::{bin, in_netns};

fn agent(tb: &Testbed) -> AgentProc {
    let mut c = tb.cmd(1, &bin());
    c.args(["agent", "--listen", &format!("{}:5290", tb.links[0].v4[1])]);
    AgentProc::start(c)
}

fn ws(tb: &Testbed, a: &AgentProc, mode: &str, extra: &[&str]) -> Output {
    let mut c = tb.cmd(0, &bin());
    c.args(["run", "--to", &a.addr, "--mode", mode]);
    if mode == "xdp" {
        c.args(["--iface", &tb.links[0].ifname[0]]);
    }
    c.args(extra);
    run(c, Duration::from_secs(90))
}

/// A kernel TCP end on veth leaves its checksums to an offload that never
/// happens; an AF_XDP receiver sees them unfilled. Turn it off there.
fn kernel_checksums(tb: &Testbed, side: usize) {
    let ns = tb.ns(side);
    let dev = &tb.links[0].ifname[side];
    sh(
        "ip",
        &["netns", "exec", ns, "ethtool", "-K", dev, "tx", "off"],
    )
    .unwrap();
}

/// Every direction of the test moved exactly 16 MiB, by both sides' counts.
fn exact(j: &serde_json::Value, what: &str) {
    let end = &j["end"];
    let errors = end["errors"].as_array().unwrap();
    assert!(errors.is_empty(), "{what}: {errors:?}");
    for d in end["directions"].as_array().unwrap() {
        assert_eq!(d["sent"]["bytes"], 16 << 20, "{what}: {d}");
        assert_eq!(d["received"]["bytes"], 16 << 20, "{what}: {d}");
    }
}

fn no_xdp_left(tb: &Testbed) {
    let l = &tb.links[0];
    for side in 0..2 {
        let left = in_netns(tb.ns(side), || attached_program(&l.ifname[side]));
        assert!(left.is_none(), "XDP left on {}", l.ifname[side]);
    }
}

const WAYS: [(&str, &str); 3] = [("send", "1"), ("receive", "1"), ("both", "2")];

#[test]
fn xdp_to_socket_moves_exact_bytes_every_way() {
    let tb = pair();
    kernel_checksums(&tb, 1);
    let a = agent(&tb);
    for (dir, streams) in WAYS {
        let args = [
            "--direction",
            dir,
            "--streams",
            streams,
            "--bytes",
            "16M",
            "--json",
        ];
        let j = ws(&tb, &a, "xdp", &args).ok().json();
        exact(&j, &format!("xdp to socket, {dir}"));
        assert_eq!(j["end"]["mode"], "xdp-copy", "{dir}");
        let dirs = j["end"]["directions"].as_array().unwrap();
        assert_eq!(dirs.len(), if dir == "both" { 2 } else { 1 });
    }
    // A timed run moves data and reports intervals from the TCP-lite side;
    // --sockbuf sizes TCP-lite's buffers as it does the kernel socket's.
    let j = ws(
        &tb,
        &a,
        "xdp",
        &["--duration", "2s", "--sockbuf", "64K", "--json"],
    )
    .ok()
    .json();
    let e = &j["end"];
    let f = &e["flows"][0];
    assert_eq!(
        f["sender"]["sockbuf"]["snd"], 65536,
        "TCP-lite's send buffer: {f}"
    );
    assert_eq!(f["sender"]["sockbuf"]["rcv"], 65536, "{f}");
    assert!(
        f["receiver"]["sockbuf"]["rcv"].as_u64().unwrap() >= 65536,
        "the kernel's: {f}"
    );
    assert!(e["received"]["bytes"].as_u64().unwrap() > 1 << 20);
    assert_eq!(e["sent"]["bytes"], e["received"]["bytes"]);
    let iv = j["intervals"].as_array().unwrap();
    assert!(
        iv.iter().any(|i| i["sum"]["bytes"].as_u64().unwrap() > 0),
        "{iv:?}"
    );
    no_xdp_left(&tb);
}

#[test]
fn xdp_to_xdp_and_socket_to_xdp() {
    let tb = pair();
    kernel_checksums(&tb, 0);
    let a = agent(&tb);
    let remote = [
        "--remote-mode",
        "xdp",
        "--remote-iface",
        &tb.links[0].ifname[1],
    ];
    for (dir, streams) in WAYS {
        let mut args = vec![
            "--direction",
            dir,
            "--streams",
            streams,
            "--bytes",
            "16M",
            "--json",
        ];
        args.extend(remote);
        let j = ws(&tb, &a, "xdp", &args).ok().json();
        exact(&j, &format!("xdp to xdp, {dir}"));
        assert_eq!(j["end"]["mode"], "xdp-copy");
        let j = ws(&tb, &a, "socket", &args).ok().json();
        exact(&j, &format!("socket to xdp, {dir}"));
    }
    // Timed: the sender ends it, the receiver reads to the FIN, no reset.
    let mut args = vec!["--duration", "2s", "--json"];
    args.extend(remote);
    let j = ws(&tb, &a, "xdp", &args).ok().json();
    let e = &j["end"];
    assert!(
        e["errors"].as_array().unwrap().is_empty(),
        "{}",
        e["errors"]
    );
    assert!(e["received"]["bytes"].as_u64().unwrap() > 1 << 20);
    assert_eq!(e["sent"]["bytes"], e["received"]["bytes"]);
    no_xdp_left(&tb);
}

#[test]
fn xdp_mode_refuses_what_it_cannot_do() {
    let tb = pair();
    let a = agent(&tb);
    let mut c = tb.cmd(0, &bin());
    c.args(["run", "--to", &a.addr, "--mode", "xdp", "--duration", "1s"]);
    run(c, Duration::from_secs(30)).fails_with("--mode xdp needs the interface");
    ws(&tb, &a, "xdp", &["--streams", "1025", "--duration", "1s"]).fails_with("1024");
    ws(&tb, &a, "socket", &["--queues", "0", "--duration", "1s"])
        .fails_with("need --mode xdp or auto");
    ws(
        &tb,
        &a,
        "socket",
        &["--remote-mode", "xdp", "--duration", "1s"],
    )
    .fails_with("--remote-mode xdp runs TCP tests");
}

/// `--mode auto` and `--remote-mode auto`: each end finds its interface by
/// route, probes it, and picks; the report gives both ends' path and why.
/// On veth a kernel TCP peer's frames carry partial checksums, so an end
/// picks TCP-lite there only when the other end runs TCP-lite too.
#[test]
fn auto_picks_each_end_and_says_why() {
    let tb = pair();
    let a = agent(&tb);
    let bytes = ["--bytes", "16M", "--json"];
    let modes = |j: &serde_json::Value| {
        let c = &j["config"];
        let s = |k: &str| c[k].as_str().unwrap_or_default().to_string();
        (
            j["end"]["mode"].as_str().unwrap_or_default().to_string(),
            s("mode_reason"),
            s("remote_mode"),
            s("remote_mode_reason"),
        )
    };

    // Against the agent's kernel sockets: sockets here too, with the reason.
    let j = ws(&tb, &a, "auto", &bytes).ok().json();
    exact(&j, "auto to socket");
    let (m, why, rm, rwhy) = modes(&j);
    assert_eq!((m.as_str(), rm.as_str()), ("socket", "socket"), "{why}");
    assert!(
        why.starts_with("auto: ") && why.contains("veth link and the peer runs kernel TCP"),
        "{why}"
    );
    assert_eq!(rwhy, "requested with --remote-mode socket");

    // Both on auto: neither knows the other runs TCP-lite, so sockets.
    let j = ws(
        &tb,
        &a,
        "auto",
        &[&bytes[..], &["--remote-mode", "auto"]].concat(),
    )
    .ok()
    .json();
    exact(&j, "auto to auto");
    let (m, why, rm, rwhy) = modes(&j);
    assert_eq!(
        (m.as_str(), rm.as_str()),
        ("socket", "socket"),
        "{why} / {rwhy}"
    );
    assert!(why.contains("peer's mode is not known yet"), "{why}");
    assert!(rwhy.contains("peer runs kernel TCP"), "{rwhy}");

    // This end on TCP-lite: the agent's auto takes TCP-lite too, on the
    // interface its route to the controller leaves by.
    let args = [
        &bytes[..],
        &["--remote-mode", "auto", "--direction", "both"],
    ]
    .concat();
    let j = ws(&tb, &a, "xdp", &args).ok().json();
    exact(&j, "xdp to auto");
    let (m, _, rm, rwhy) = modes(&j);
    assert_eq!(
        (m.as_str(), rm.as_str()),
        ("xdp-copy", "xdp-copy"),
        "{rwhy}"
    );
    let theirs = &tb.links[0].ifname[1];
    assert!(
        rwhy.starts_with(&format!("auto: {theirs} (veth) runs XDP natively")),
        "{rwhy}"
    );

    // The agent on TCP-lite: this end's auto picks it as well.
    let args = [
        &bytes[..],
        &["--remote-mode", "xdp", "--remote-iface", theirs],
    ]
    .concat();
    let j = ws(&tb, &a, "auto", &args).ok().json();
    exact(&j, "auto to xdp");
    let (m, why, rm, _) = modes(&j);
    assert_eq!((m.as_str(), rm.as_str()), ("xdp-copy", "xdp-copy"), "{why}");
    let ours = &tb.links[0].ifname[0];
    assert!(
        why.starts_with(&format!("auto: {ours} (veth) runs XDP natively")),
        "{why}"
    );

    // Nine streams (once past the old 8-flow limit): still TCP-lite.
    let args = [
        &bytes[..],
        &[
            "--remote-mode",
            "xdp",
            "--remote-iface",
            theirs,
            "--streams",
            "9",
        ],
    ]
    .concat();
    let j = ws(&tb, &a, "auto", &args).ok().json();
    exact(&j, "auto with 9 streams");
    let (m, why, rm, _) = modes(&j);
    assert_eq!((m.as_str(), rm.as_str()), ("xdp-copy", "xdp-copy"), "{why}");

    // A controller on the agent's own host: no NIC between, sockets.
    let mut c = tb.cmd(1, &bin());
    c.args(["run", "--to", &a.addr, "--remote-mode", "auto"])
        .args(bytes);
    let j = run(c, Duration::from_secs(60)).ok().json();
    exact(&j, "auto to this host's own agent");
    let (m, why, rm, rwhy) = modes(&j);
    assert_eq!((m.as_str(), rm.as_str()), ("socket", "socket"));
    for w in [why, rwhy] {
        assert!(w.contains("the peer is this host itself"), "{w}");
    }

    // An agent limited by --allow-iface never attaches to another
    // interface: it stays on sockets (checksummed in full, for our TCP-lite).
    kernel_checksums(&tb, 1);
    let mut c = tb.cmd(1, &bin());
    c.args(["agent", "--listen", &format!("{}:5291", tb.links[0].v4[1])])
        .args(["--allow-iface", "lo"]);
    let limited = AgentProc::start(c);
    let args = [&bytes[..], &["--remote-mode", "auto"]].concat();
    let j = ws(&tb, &limited, "xdp", &args).ok().json();
    exact(&j, "xdp to an agent that may not use its veth");
    let (_, _, rm, rwhy) = modes(&j);
    assert_eq!(rm, "socket", "{rwhy}");
    let want = format!("{theirs}, the route's interface towards the controller, is not in this agent's --allow-iface list");
    assert!(rwhy.contains(&want), "{rwhy}");
    no_xdp_left(&tb);
}

/// `--verify` in every mode pair, both directions at once: each flow's
/// sender and receiver hash every payload byte, the digests are in the
/// JSON and equal, and a TCP-lite sender's digest is that of exactly the
/// pattern bytes it counted (so the hash covers the payload, no header).
#[test]
fn verify_digests_match_in_every_mode_pair() {
    use wirespeed::datapath::xdp::stream::pattern_sha256;
    let tb = pair();
    // Either side may be the kernel end that sends to an AF_XDP receiver.
    kernel_checksums(&tb, 0);
    kernel_checksums(&tb, 1);
    let a = agent(&tb);
    let theirs = &tb.links[0].ifname[1];
    for (mode, remote) in [
        ("socket", "socket"),
        ("xdp", "socket"),
        ("socket", "xdp"),
        ("xdp", "xdp"),
    ] {
        let what = format!("{mode} to {remote}");
        let mut args = vec![
            "--direction",
            "both",
            "--bytes",
            "16M",
            "--verify",
            "--json",
            "--remote-mode",
            remote,
        ];
        if remote == "xdp" {
            args.extend(["--remote-iface", theirs.as_str()]);
        }
        let j = ws(&tb, &a, mode, &args).ok().json();
        exact(&j, &what);
        assert_eq!(j["config"]["test"]["verify"], true, "{what}");
        let flows = j["end"]["flows"].as_array().unwrap();
        assert_eq!(flows.len(), 2, "{what}");
        for f in flows {
            let (s, r) = (&f["sender"]["sha256"], &f["receiver"]["sha256"]);
            let s = s.as_str().unwrap_or_else(|| panic!("{what}: {f}"));
            assert_eq!(s.len(), 64, "{what}: {f}");
            assert_eq!(Some(s), r.as_str(), "{what}: {f}");
            // The TCP-lite sender writes one continuous pattern.
            let xdp_sender = match f["direction"].as_str().unwrap() {
                "send" => mode == "xdp",
                _ => remote == "xdp",
            };
            if xdp_sender {
                assert_eq!(s, pattern_sha256(16 << 20), "{what}: {f}");
            }
        }
    }
    // Without --verify no end hashes: the field is null, not a fake digest.
    let j = ws(&tb, &a, "socket", &["--bytes", "1M", "--json"])
        .ok()
        .json();
    assert!(j["end"]["flows"][0]["sender"]["sha256"].is_null());
    // Where there is no byte stream to hash, --verify is refused.
    ws(
        &tb,
        &a,
        "socket",
        &["--verify", "--test", "rr", "--duration", "1s"],
    )
    .fails_with("--verify hashes a TCP stream");
    no_xdp_left(&tb);
}

/// CPU seconds the controller's process spent over the measured interval.
fn process_cpu(j: &serde_json::Value) -> f64 {
    let p = &j["end"]["cpu"]["local"]["process"];
    p["user_seconds"].as_f64().unwrap() + p["system_seconds"].as_f64().unwrap()
}

#[test]
fn event_polling_moves_exact_bytes_with_far_less_cpu_than_busy() {
    let tb = pair();
    kernel_checksums(&tb, 1);
    // The kernel end sends at 80 Mbit/s: a TCP-lite receiver spends most
    // of the 1.7 s waiting, spinning (busy) or asleep (event).
    let (ns, dev) = (tb.ns(1), &tb.links[0].ifname[1]);
    let tbf = ["rate", "80mbit", "burst", "32kb", "latency", "50ms"];
    let mut args = vec!["netns", "exec", ns, "tc", "qdisc", "replace", "dev", dev];
    args.extend(["root", "tbf"].iter().chain(&tbf));
    sh("ip", &args).unwrap();
    let a = agent(&tb);
    let mut seen = Vec::new();
    for mode in ["busy", "event"] {
        let args = [
            "--direction",
            "receive",
            "--bytes",
            "16M",
            "--xdp-poll",
            mode,
            "--json",
        ];
        let j = ws(&tb, &a, "xdp", &args).ok().json();
        exact(&j, &format!("{mode} polling"));
        let w = &j["end"]["workers"]["local"][0];
        assert_eq!(w["poll_mode"], mode, "{w}");
        let (polls, busy) = (
            w["polls"].as_f64().unwrap(),
            w["busy_polls"].as_f64().unwrap(),
        );
        seen.push((process_cpu(&j), busy / polls, w["sleeps"].as_u64().unwrap()));
    }
    let [(busy_cpu, busy_share, _), (event_cpu, event_share, event_sleeps)] = seen[..] else {
        unreachable!()
    };
    let what = format!("CPU s and share of passes that found work: busy {busy_cpu:.3} s {busy_share:.4}, event {event_cpu:.3} s {event_share:.4}");
    eprintln!("{what}");
    assert!(
        event_sleeps > 100,
        "event mode slept {event_sleeps} times: {what}"
    );
    assert!(event_cpu * 3.0 < busy_cpu, "{what}");
    assert!(
        event_share > 0.2 && busy_share * 2.0 < event_share,
        "{what}"
    );
    // Where no end runs TCP-lite the option is refused, not ignored.
    ws(
        &tb,
        &a,
        "socket",
        &["--xdp-poll", "event", "--duration", "1s"],
    )
    .fails_with("--xdp-poll sets how TCP-lite workers wait");
    no_xdp_left(&tb);
}
