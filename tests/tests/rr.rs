//! Request/response (TCP_RR) over kernel sockets: both sides count the
//! same transactions, the percentiles are ordered, the histogram in the
//! JSON holds every transaction, and a link that delays each frame by
//! 5 ms raises the median by at least that — which no fake clock could do.

use serde_json::Value;
use std::time::Duration;
use wirespeed::metrics::latency;
use wirespeed_tests::bin;
use wirespeed_tests::linkem::{ImpairedPair, Impairment};
use wirespeed_tests::process::{run, AgentProc, Output};
use wirespeed_tests::testbed::{pair, Testbed};

fn agent(tb: &Testbed, addr: &str) -> AgentProc {
    let mut c = tb.cmd(1, &bin());
    c.args(["agent", "--listen", &format!("{addr}:5290")]);
    AgentProc::start(c)
}

fn rr(tb: &Testbed, a: &AgentProc, extra: &[&str]) -> Output {
    let mut c = tb.cmd(0, &bin());
    c.args(["run", "--to", &a.addr, "--test", "rr"]);
    if !extra.contains(&"--mode") {
        c.args(["--mode", "socket"]);
    }
    c.args(extra);
    run(c, Duration::from_secs(60))
}

fn p(l: &Value, k: &str) -> f64 {
    l[k].as_f64().unwrap_or_else(|| panic!("{k} in {l}"))
}

/// The end's latency summary, checked for order and completeness.
fn checked(end: &Value) -> &Value {
    let s = &end["latency"];
    let (c, v) = (
        s["client_transactions"].as_u64().unwrap(),
        s["server_transactions"].as_u64().unwrap(),
    );
    assert!(c > 100, "some transactions: {s}");
    assert_eq!(c, v, "client and server count the same transactions");
    let l = &s["latency"];
    let order = [
        "min_us", "p50_us", "p90_us", "p99_us", "p999_us", "p9999_us", "max_us",
    ];
    for w in order.windows(2) {
        assert!(p(l, w[0]) <= p(l, w[1]), "{} <= {}: {l}", w[0], w[1]);
    }
    let h = latency::decode(s["histogram"].as_str().unwrap()).unwrap();
    assert_eq!(h.len(), c, "the histogram holds every transaction");
    l
}

#[test]
fn rr_counts_agree_and_percentiles_are_ordered() {
    let tb = pair();
    let mut a = agent(&tb, "198.18.0.2");
    for (dir, extra) in [
        ("send", vec![]),
        (
            "receive",
            vec![
                "--burst",
                "4",
                "--streams",
                "2",
                "--request-size",
                "64",
                "--response-size",
                "1K",
            ],
        ),
    ] {
        let mut args = vec!["--duration", "2s", "--direction", dir, "--json"];
        args.extend(extra.iter().copied());
        let j = rr(&tb, &a, &args).ok().json();
        checked(&j["end"]);
        let flows = j["end"]["flows"].as_array().unwrap();
        assert_eq!(flows.len(), if dir == "send" { 1 } else { 2 });
        for f in flows {
            let (c, s) = (&f["sender"]["rr"], &f["receiver"]["rr"]);
            assert_eq!(c["transactions"], s["transactions"], "per stream: {f}");
            assert!(s["latency"].is_null(), "servers time nothing");
        }
        let ivs = j["intervals"].as_array().unwrap();
        if dir == "send" {
            // this end is the client: it reports interval percentiles
            assert!(!ivs.is_empty());
            let r = &ivs[0]["flows"][0]["rr"];
            assert!(r["transactions"].as_u64().unwrap() > 0, "{r}");
            assert!(p(r, "p50_us") <= p(r, "p99_us") && p(r, "p99_us") <= p(r, "max_us"));
        }
    }
    let o = rr(&tb, &a, &["--duration", "1s"]).ok();
    assert!(o.stdout.contains("latency: min"), "{}", o.stdout);
    assert!(o.stdout.contains("p99.99"), "{}", o.stdout);
    // What no rr test can be.
    for (args, why) in [
        (vec!["--burst", "0"], "--burst 0 must be between 1 and"),
        (vec!["--bytes", "1M"], "runs for a --duration"),
        (vec!["--direction", "both"], "one client side"),
        (vec!["--request-size", "0"], "between 1 byte"),
    ] {
        rr(&tb, &a, &args).fails_with(why);
    }
    a.assert_alive();
    rr(&tb, &a, &["--duration", "1s"]).ok();
}

#[test]
fn rr_over_tcp_lite_both_ends_and_against_kernel_sockets() {
    let tb = pair();
    // Kernel TCP on veth leaves checksums to an offload AF_XDP never sees done.
    for side in 0..2 {
        wirespeed_tests::testbed::kernel_checksums(&tb, side);
    }
    let a = agent(&tb, "198.18.0.2");
    let (ours, theirs) = (tb.links[0].ifname[0].clone(), tb.links[0].ifname[1].clone());
    for (what, extra) in [
        ("xdp to socket", vec!["--mode", "xdp", "--iface", &ours]),
        (
            "socket to xdp",
            vec!["--remote-mode", "xdp", "--remote-iface", &theirs],
        ),
        (
            "xdp to xdp",
            vec![
                "--mode",
                "xdp",
                "--iface",
                &ours,
                "--remote-mode",
                "xdp",
                "--remote-iface",
                &theirs,
                "--burst",
                "2",
            ],
        ),
    ] {
        let mut args = vec!["--duration", "2s", "--json"];
        args.extend(extra.iter().copied());
        let j = rr(&tb, &a, &args).ok().json();
        let e = &j["end"];
        assert!(
            e["errors"].as_array().unwrap().is_empty(),
            "{what}: {}",
            e["errors"]
        );
        checked(e);
        // Each end ran the path asked of it, as the report says.
        let (ours, agents) = what.split_once(" to ").unwrap();
        let ran = |p: &str| if p == "xdp" { "xdp-copy" } else { "socket" };
        assert_eq!(e["mode"], ran(ours), "{what}");
        assert_eq!(j["config"]["remote_mode"], ran(agents), "{what}");
    }
}

#[test]
fn link_delay_raises_the_median() {
    let plain = pair();
    let a = agent(&plain, "198.18.0.2");
    let j = rr(&plain, &a, &["--duration", "2s", "--json"]).ok().json();
    let base = p(checked(&j["end"]), "p50_us");
    drop(a);
    drop(plain);
    let slow = ImpairedPair::new(Impairment {
        delay: Duration::from_millis(5),
        ..Default::default()
    });
    let a = agent(&slow.tb, "198.18.0.2");
    let j = rr(&slow.tb, &a, &["--duration", "2s", "--json"])
        .ok()
        .json();
    let delayed = p(checked(&j["end"]), "p50_us");
    assert!(
        delayed - base >= 5000.0,
        "p50 {base} us on a plain link, {delayed} us with 5 ms of delay each way"
    );
}
