//! The testbed itself, made without iproute2 (named namespaces by mount,
//! links, addresses and qdiscs over rtnetlink), checked against what
//! iproute2 sees and makes: `ip netns list` sees the namespaces and then
//! no longer does, `tc` shows the same tbf as its own, and processes
//! started by `Testbed::cmd` are inside their host with its /sys.
//!
//! Root; run with --test-threads=1 (kernel state).

use std::path::Path;
use std::time::Duration;
use wirespeed_tests::process::run;
use wirespeed_tests::testbed::{pair_with_queues, sh, testbed, Testbed};

/// `script` run by /bin/sh inside host `h`, through `Testbed::cmd`.
fn in_host(tb: &Testbed, h: usize, script: &str) -> String {
    let mut c = tb.cmd(h, Path::new("/bin/sh"));
    c.args(["-c", script]);
    run(c, Duration::from_secs(20)).ok().stdout
}

fn netns_list() -> String {
    sh("ip", &["netns", "list"]).unwrap()
}

#[test]
fn namespaces_are_iproute2s_and_go_on_drop() {
    let tb = testbed(3, &[(0, 1), (1, 2)]);
    let names = tb.hosts.clone();
    let listed = netns_list();
    for n in &names {
        assert!(listed.contains(n.as_str()), "ip netns list:\n{listed}");
        // `ip netns exec` enters ours: the link is there, addressed and up.
        let addrs = sh("ip", &["netns", "exec", n, "ip", "-o", "addr", "show"]).unwrap();
        assert!(addrs.contains("198.18."), "{n}:\n{addrs}");
    }
    // Host 1 has both links; the v6 address is usable at once (nodad).
    let a = sh("ip", &["-n", tb.ns(1), "-o", "addr", "show"]).unwrap();
    for want in [
        "inet 198.18.0.2/24",
        "inet 198.18.1.1/24",
        "inet6 2001:2:0:1::1/64",
    ] {
        assert!(a.contains(want), "{want} missing:\n{a}");
    }
    for l in a.lines().filter(|l| l.contains("inet6 2001:2:")) {
        assert!(l.contains("nodad") && !l.contains("tentative"), "{l}");
    }
    let lo = sh("ip", &["-n", tb.ns(2), "link", "show", "lo"]).unwrap();
    assert!(lo.contains(",UP"), "lo is up:\n{lo}");
    drop(tb);
    let listed = netns_list();
    for n in &names {
        assert!(!listed.contains(n.as_str()), "{n} still listed:\n{listed}");
        assert!(!Path::new("/run/netns").join(n).exists());
    }
}

#[test]
fn hosts_reach_each_other_over_v4_and_v6() {
    let tb = testbed(2, &[(0, 1)]);
    let l = &tb.links[0];
    let out = in_host(
        &tb,
        0,
        &format!(
            "ping -c 2 -i 0.2 -W 2 {} && ping -6 -c 2 -i 0.2 -W 2 {}",
            l.v4[1], l.v6[1]
        ),
    );
    assert_eq!(out.matches(" 0% packet loss").count(), 2, "{out}");
}

#[test]
fn commands_see_their_hosts_sys_and_queues() {
    let tb = pair_with_queues(4);
    let l = &tb.links[0];
    let out = in_host(
        &tb,
        1,
        &format!(
            "ls /sys/class/net; ls /sys/class/net/{}/queues",
            l.ifname[1]
        ),
    );
    assert!(out.contains(&l.ifname[1]), "{out}");
    assert!(
        !out.contains(&l.ifname[0]),
        "the other end is elsewhere:\n{out}"
    );
    for q in ["rx-3", "tx-3"] {
        assert!(out.contains(q), "4 queues:\n{out}");
    }
    // /sys of the caller is untouched: our end is not in the root namespace.
    assert!(!Path::new("/sys/class/net").join(&l.ifname[1]).exists());
}

/// The tbf line `tc -d qdisc show` prints, without the handle (which the
/// kernel numbers per qdisc made).
fn tbf_line(ns: &str, dev: &str) -> String {
    let out = sh("tc", &["-n", ns, "-d", "qdisc", "show", "dev", dev]).unwrap();
    let line = out
        .lines()
        .find(|l| l.starts_with("qdisc tbf"))
        .unwrap_or_else(|| panic!("no tbf on {dev}:\n{out}"))
        .to_string();
    let mut w: Vec<&str> = line.split_whitespace().collect();
    w.remove(2);
    w.join(" ")
}

#[test]
fn tbf_is_the_one_tc_makes() {
    let tb = testbed(2, &[(0, 1), (0, 1)]);
    for spec in [
        &["tbf", "rate", "1gbit", "burst", "256kb", "latency", "10ms"][..],
        &["tbf", "rate", "100mbit", "burst", "64kb", "latency", "20ms"],
        &["tbf", "rate", "40gbit", "burst", "1mb", "limit", "4mb"],
    ] {
        // Ours on link 0, tc's on link 1, same side.
        tb.qdisc(0, 0, spec).unwrap();
        let l = &tb.links[1];
        let mut args = vec![
            "-n",
            tb.ns(0),
            "qdisc",
            "replace",
            "dev",
            &l.ifname[0],
            "root",
        ];
        args.extend_from_slice(spec);
        sh("tc", &args).unwrap();
        let ours = tbf_line(tb.ns(0), &tb.links[0].ifname[0]);
        assert_eq!(ours, tbf_line(tb.ns(0), &l.ifname[0]), "{spec:?}");
        assert!(
            ours.contains("linklayer ethernet") || !ours.contains("linklayer"),
            "{ours}"
        );
    }
    let e = tb.qdisc(0, 0, &["netem", "delay", "5ms"]).unwrap_err();
    assert!(e.to_string().contains("only tbf"), "{e}");
}

#[test]
fn stale_testbeds_of_dead_owners_are_swept() {
    // A pid that has exited: its process is gone.
    let mut c = std::process::Command::new("true");
    let mut child = c.spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    assert!(!Path::new(&format!("/proc/{dead}")).exists());
    let stale = format!("wst-{dead}-0-h0");
    sh("ip", &["netns", "add", &stale]).unwrap();
    let alive = format!("wst-{}-999-h0", std::process::id());
    sh("ip", &["netns", "add", &alive]).unwrap();
    let tb = testbed(1, &[]);
    let listed = netns_list();
    let _ = sh("ip", &["netns", "del", &alive]);
    let _ = sh("ip", &["netns", "del", &stale]);
    assert!(!listed.contains(&stale), "{stale} swept:\n{listed}");
    assert!(listed.contains(&alive), "our own kept:\n{listed}");
    drop(tb);
}
