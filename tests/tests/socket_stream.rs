//! Socket-mode TCP_STREAM between two namespaces on real kernel TCP:
//! every direction, 1 and 4 streams, IPv4 and IPv6, with byte counts
//! checked against each other on the two sides.

use serde_json::Value;
use std::time::Duration;
use wirespeed_tests::bin;
use wirespeed_tests::process::{run, AgentProc, Output};
use wirespeed_tests::testbed::{self, Testbed};

fn agent(tb: &Testbed, listen: &str, extra: &[&str]) -> AgentProc {
    let mut c = tb.cmd(1, &bin());
    c.args(["agent", "--listen", listen]).args(extra);
    AgentProc::start(c)
}

fn ws(tb: &Testbed, args: &[&str]) -> Output {
    let mut c = tb.cmd(0, &bin());
    c.arg("run").args(args);
    run(c, Duration::from_secs(60))
}

/// The checks every successful run on a lossless link must pass: both
/// sides start at one scheduled instant (one host, so the skew is
/// scheduling noise; on a lossy link a lost Start costs a retransmit).
fn check_counts(j: &Value, streams: usize, directions: usize) {
    let t = &j["end"]["timing"];
    assert!(t["start_skew_us"].as_i64().unwrap().abs() < 2_000, "{t}");
    assert!(t["clock_rtt_us"].as_u64().unwrap() > 0, "{t}");
    check_lossy(j, streams, directions);
}

/// No errors, and each flow's receiver got exactly what its sender sent.
fn check_lossy(j: &Value, streams: usize, directions: usize) {
    let end = &j["end"];
    assert_eq!(end["mode"], "socket");
    assert_eq!(end["errors"].as_array().unwrap().len(), 0, "{end}");
    let flows = end["flows"].as_array().unwrap();
    assert_eq!(flows.len(), streams * directions, "{end}");
    for f in flows {
        let (s, r) = (&f["sender"]["bytes"], &f["receiver"]["bytes"]);
        assert!(s.as_u64().unwrap() > 0, "flow moved nothing: {f}");
        assert_eq!(s, r, "sender and receiver disagree: {f}");
    }
    assert_eq!(end["sent"]["bytes"], end["received"]["bytes"]);
    assert_eq!(end["directions"].as_array().unwrap().len(), directions);
    for side in ["local", "remote"] {
        let irq = &end["irq"][side];
        assert!(
            !irq["net_rx_softirqs"].as_array().unwrap().is_empty(),
            "{irq}"
        );
        assert!(irq.get("unavailable").is_none(), "{irq}");
        let cpu = &end["cpu"][side];
        assert_eq!(cpu["source"], "/proc/stat", "{cpu}");
        assert!(
            cpu["host"]["idle"]
                .as_f64()
                .is_some_and(|i| (0.0..=100.0).contains(&i)),
            "{cpu}"
        );
        assert_eq!(
            cpu["per_core"].as_array().unwrap().len() as u64,
            cpu["cores"].as_u64().unwrap(),
            "{cpu}"
        );
        assert!(
            cpu["process"]["percent_of_core"].as_f64().unwrap() > 0.0,
            "{cpu}"
        );
    }
}

#[test]
fn matrix_directions_streams_families() {
    let tb = testbed::pair();
    let l = &tb.links[0];
    let a4 = agent(&tb, &format!("{}:5290", l.v4[1]), &[]);
    let a6 = agent(&tb, &format!("[{}]:5290", l.v6[1]), &[]);
    for (target, family) in [(&a4.addr, "v4"), (&a6.addr, "v6")] {
        for dir in ["send", "receive", "both"] {
            for streams in [1usize, 4] {
                let sockbuf: &[&str] = if streams == 1 {
                    &["--sockbuf", "64K"]
                } else {
                    &[]
                };
                let mut args = vec![
                    "--to",
                    target.as_str(),
                    "--mode",
                    "socket",
                    "--direction",
                    dir,
                    "--duration",
                    "1s",
                    "--streams",
                ];
                let s = streams.to_string();
                args.push(&s);
                args.extend_from_slice(sockbuf);
                args.push("--json");
                let o = ws(&tb, &args).ok();
                let j = o.json();
                let ndir = if dir == "both" { 2 } else { 1 };
                check_counts(&j, streams, ndir);
                assert_eq!(j["end"]["remote_host"]["os"], "linux");
                if !sockbuf.is_empty() {
                    let f = &j["end"]["flows"][0];
                    assert!(
                        f["sender"]["sockbuf"]["snd"].as_u64().unwrap() >= 65536,
                        "{family} {dir}: {f}"
                    );
                    assert!(
                        f["receiver"]["sockbuf"]["rcv"].as_u64().unwrap() >= 65536,
                        "{family} {dir}: {f}"
                    );
                }
                let to = j["config"]["to"].as_str().unwrap();
                assert_eq!(to.starts_with('['), family == "v6", "{to}");
                // one interval a second, the last one partial at most
                let ivs = j["intervals"].as_array().unwrap();
                assert!(
                    !ivs.is_empty() && ivs.len() <= 2,
                    "{family} {dir} {streams}: {} intervals",
                    ivs.len()
                );
            }
        }
    }
}

#[test]
fn bytes_mode_moves_exactly_that_many() {
    let tb = testbed::pair();
    let a = agent(&tb, &format!("{}:5290", tb.links[0].v4[1]), &[]);
    for dir in ["send", "receive"] {
        let j = ws(
            &tb,
            &[
                "--to",
                &a.addr,
                "--bytes",
                "10000001",
                "--streams",
                "3",
                "--direction",
                dir,
                "--json",
            ],
        )
        .ok()
        .json();
        check_counts(&j, 3, 1);
        assert_eq!(j["end"]["sent"]["bytes"], 10_000_001u64);
        assert_eq!(j["end"]["received"]["bytes"], 10_000_001u64);
    }
}

#[test]
fn text_and_csv_outputs() {
    let tb = testbed::pair();
    let a = agent(&tb, &format!("{}:5290", tb.links[0].v4[1]), &[]);
    let o = ws(
        &tb,
        &["--to", &a.addr, "--duration", "2s", "--direction", "both"],
    )
    .ok();
    // the first interval ends at 1 s, give or take a scheduling delay
    assert!(o.stdout.contains("0.00-1.0"), "{}", o.stdout);
    assert!(
        o.stdout.contains("send     receiver (agent)"),
        "{}",
        o.stdout
    );
    assert!(
        o.stdout.contains("receive  receiver (local)"),
        "{}",
        o.stdout
    );
    assert!(o.stdout.contains("cpu remote: process"), "{}", o.stdout);
    let o = ws(
        &tb,
        &[
            "--to",
            &a.addr,
            "--duration",
            "1s",
            "--streams",
            "2",
            "--csv",
        ],
    )
    .ok();
    let lines: Vec<&str> = o.stdout.lines().collect();
    assert_eq!(lines[0], wirespeed::report::csv::HEADER);
    // 2 flows, 1 direction row, 1 total row
    assert_eq!(lines.len(), 5, "{}", o.stdout);
    let cols = lines[0].split(',').count();
    for l in &lines[1..] {
        assert_eq!(l.split(',').count(), cols, "{l}");
        let f: Vec<&str> = l.split(',').collect();
        assert_eq!(f[6], f[9], "sent and received bytes differ in {l}");
    }
}

#[test]
fn pinned_to_interfaces_and_source_address() {
    let tb = testbed::pair();
    let l = &tb.links[0];
    let a = agent(
        &tb,
        &format!("{}:5290", l.v4[1]),
        &["--allow-iface", &l.ifname[1]],
    );
    let j = ws(
        &tb,
        &[
            "--to",
            &a.addr,
            "--duration",
            "1s",
            "--local",
            &l.v4[0].to_string(),
            "--iface",
            &l.ifname[0],
            "--remote-iface",
            &l.ifname[1],
            "--json",
        ],
    )
    .ok()
    .json();
    check_counts(&j, 1, 1);
    assert_eq!(j["config"]["iface"], l.ifname[0].as_str());
}

#[test]
fn shaped_link_and_lossy_link() {
    let tb = testbed::pair();
    let a = agent(&tb, &format!("{}:5290", tb.links[0].v4[1]), &[]);
    // tbf at 100 Mbit/s on the sender's egress: goodput can not exceed it.
    tb.qdisc(
        0,
        0,
        &["tbf", "rate", "100mbit", "burst", "64kb", "latency", "20ms"],
    )
    .unwrap();
    let j = ws(&tb, &["--to", &a.addr, "--duration", "2s", "--json"])
        .ok()
        .json();
    check_counts(&j, 1, 1);
    let bps = j["end"]["received"]["bits_per_second"].as_f64().unwrap();
    assert!(
        bps < 100e6 * 1.05 && bps > 30e6,
        "goodput {bps} through a 100 Mbit/s shaper"
    );
    // 2% loss into the receiver: TCP retransmits, every byte still arrives, TCP_INFO shows it.
    testbed::ingress_loss(&tb, 0, 1, 2.0).unwrap();
    let j = ws(&tb, &["--to", &a.addr, "--duration", "2s", "--json"])
        .ok()
        .json();
    check_lossy(&j, 1, 1);
    let retr = j["end"]["directions"][0]["retransmits"].as_u64().unwrap();
    assert!(
        retr > 0,
        "2% loss but no retransmits reported: {}",
        j["end"]
    );
}

#[test]
fn concurrent_tests_on_one_agent() {
    let tb = testbed::pair();
    let a = agent(&tb, &format!("{}:5290", tb.links[0].v4[1]), &[]);
    let runs: Vec<_> = ["send", "receive", "both"]
        .into_iter()
        .map(|dir| {
            let mut c = tb.cmd(0, &bin());
            c.args([
                "run",
                "--to",
                &a.addr,
                "--duration",
                "2s",
                "--streams",
                "2",
                "--direction",
                dir,
                "--json",
            ]);
            std::thread::spawn(move || run(c, Duration::from_secs(60)))
        })
        .collect();
    let mut ports = Vec::new();
    for (r, ndir) in runs.into_iter().zip([1, 1, 2]) {
        let j = r.join().unwrap().ok().json();
        check_counts(&j, 2, ndir);
        ports.push(j["config"]["agent_data_port"].as_u64().unwrap());
    }
    ports.sort();
    ports.dedup();
    assert_eq!(ports.len(), 3, "each concurrent test has its own data port");
}
