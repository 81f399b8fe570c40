//! The XDP steering program on a real veth: it takes only the test flows
//! and passes everything else (ping, TCP, the control connection) to the
//! kernel; a killed owner leaves nothing attached; a program already on the
//! interface is refused, never replaced; `doctor` probes veth correctly;
//! `cleanup` removes only what an older wirespeed left.

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use wirespeed::datapath::xdp::loader::{attached_program, FlowMatch, Steering};
use wirespeed::datapath::xdp::xsk;
use wirespeed_tests::process::{run, AgentProc};
use wirespeed_tests::testbed::{pair, ping, Testbed};
use wirespeed_tests::{bin, in_netns};

const PORT: u16 = 9000;

fn ws(tb: &Testbed, host: usize, args: &[&str]) -> wirespeed_tests::process::Output {
    let mut c = tb.cmd(host, &bin());
    c.args(args);
    run(c, Duration::from_secs(60))
}

fn udp_burst(tb: &Testbed, n: usize) {
    let to = format!("{}:{PORT}", tb.links[0].v4[1]);
    in_netns(tb.ns(0), || {
        let s = UdpSocket::bind("0.0.0.0:0").unwrap();
        for i in 0..n {
            s.send_to(&(i as u32).to_be_bytes(), &to).unwrap();
        }
    });
}

#[test]
fn doctor_probes_veth_and_leaves_nothing() {
    let tb = pair();
    let l = &tb.links[0];
    let o = ws(&tb, 0, &["doctor", "--iface", &l.ifname[0], "--json"]).ok();
    let j: Value = serde_json::from_str(&o.stdout).unwrap();
    let r = &j[0];
    assert_eq!(r["driver"], "veth", "{r}");
    assert_eq!(r["native_xdp"], "native", "{r}");
    assert!(
        r["af_xdp"].as_str().unwrap().starts_with("copy"),
        "veth has no zero-copy AF_XDP: {r}"
    );
    assert!(
        r["auto_reason"].as_str().unwrap().contains("xdp-copy"),
        "{r}"
    );
    assert_eq!(r["rx_queues"], 1);
    assert!(
        in_netns(tb.ns(0), || attached_program(&l.ifname[0])).is_none(),
        "the probe left XDP attached"
    );
    // without --iface: every interface, nothing probed
    let o = ws(&tb, 0, &["doctor"]).ok();
    assert!(
        o.stdout.contains(&l.ifname[0]) && o.stdout.contains("not probed"),
        "{}",
        o.stdout
    );
    ws(&tb, 0, &["doctor", "--iface", "nosuch0"]).fails_with("no interface named \"nosuch0\"");
}

#[test]
fn steering_takes_only_test_flows() {
    let tb = pair();
    let l = &tb.links[0];
    let flow = FlowMatch {
        proto: 17,
        addr: Some(l.v4[1].into()),
        ports: (PORT, PORT),
        ..Default::default()
    };
    let mut steer =
        in_netns(tb.ns(1), || Steering::attach(&l.ifname[1], &[flow], false)).expect("attaching");
    assert_eq!(steer.mode.as_str(), "native", "veth runs XDP natively");

    // Everything else reaches the kernel: ping, and a TCP test to an agent.
    let o = ping(&tb, 0, l.v4[1].into());
    assert!(
        o.status.success(),
        "ping failed with steering attached:\n{}{}",
        o.stdout,
        o.stderr
    );
    let mut c = tb.cmd(1, &bin());
    c.args(["agent", "--listen", &format!("{}:5290", l.v4[1])]);
    let agent = AgentProc::start(c);
    let j = ws(
        &tb,
        0,
        &["run", "--to", &agent.addr, "--bytes", "4M", "--json"],
    )
    .ok()
    .json();
    assert_eq!(j["end"]["received"]["bytes"], 4u64 << 20);

    // A test flow with no AF_XDP socket on its queue still reaches the kernel.
    let udp = in_netns(tb.ns(1), || UdpSocket::bind((l.v4[1], PORT))).unwrap();
    udp.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    udp_burst(&tb, 5);
    let mut b = [0u8; 16];
    assert!(
        udp.recv(&mut b).is_ok(),
        "matched flow without a socket must pass to the kernel"
    );
    let c0 = steer.counters().unwrap();
    assert!(c0.passed > 0 && c0.seen >= c0.passed, "{c0:?}");
    assert!(c0.no_socket >= 5, "{c0:?}");
    assert_eq!(c0.redirected, 0, "{c0:?}");

    // With an AF_XDP socket on queue 0 the flow goes there, not to the kernel.
    let mut q = in_netns(tb.ns(1), || {
        xsk::open(&l.ifname[1], 0, 256, wirespeed::spec::XdpBind::Auto, false)
    })
    .expect("AF_XDP socket");
    assert_eq!(q.mode.as_str(), "copy");
    steer.register(0, q.rx.fd()).unwrap();
    // SAFETY: these frames are ours and idle.
    unsafe { q.fill.produce(&q.descs[..128]) };
    while udp.recv(&mut b).is_ok() {} // drain what the kernel already had
    udp.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    udp_burst(&tb, 20);
    let mut got = 0;
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut rx = q.descs[128..].to_vec();
    while got < 20 && Instant::now() < deadline {
        // SAFETY: rx descriptors are ours to fill.
        got += unsafe { q.rx.poll_and_consume(&mut rx, 100).unwrap() };
    }
    assert_eq!(
        got, 20,
        "every test-flow datagram arrives on the AF_XDP socket"
    );
    assert!(
        udp.recv(&mut b).is_err(),
        "the kernel socket got a redirected datagram"
    );
    let c1 = steer.counters().unwrap();
    assert!(c1.redirected >= 20, "{c1:?}");
    drop(q);
    drop(steer);
    assert!(in_netns(tb.ns(1), || attached_program(&l.ifname[1])).is_none());
    drop(agent);
}

#[test]
fn kill_9_leaves_nothing_and_cleanup_spares_live_owners() {
    let tb = pair();
    let l = &tb.links[0];
    let mut child = Command::new(env!("CARGO_BIN_EXE_hold-steering"))
        .args([tb.ns(0), &l.ifname[0]])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert!(
        lines.any(|l| l.map(|l| l.contains("attached")).unwrap_or(false)),
        "helper did not attach"
    );
    assert!(in_netns(tb.ns(0), || attached_program(&l.ifname[0])).is_some());
    // a live owner's program is not cleanup's to remove
    let o = ws(&tb, 0, &["cleanup", "--iface", &l.ifname[0]]).ok();
    assert!(
        o.stdout.contains("held by a running wirespeed"),
        "{}",
        o.stdout
    );
    assert!(in_netns(tb.ns(0), || attached_program(&l.ifname[0])).is_some());
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while in_netns(tb.ns(0), || attached_program(&l.ifname[0])).is_some() {
        assert!(
            Instant::now() < deadline,
            "kill -9 left the XDP program attached"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn foreign_program_is_refused_and_old_ones_cleaned_up() {
    let tb = pair();
    let l = &tb.links[0];
    // A netlink-attached program, as an older tool (or run) would leave it.
    let obj = std::env::temp_dir().join(format!("ws-steer-{}.o", std::process::id()));
    std::fs::write(&obj, wirespeed::datapath::xdp::loader::program_object()).unwrap();
    let obj_s = obj.to_str().unwrap();
    wirespeed_tests::testbed::sh(
        "ip",
        &[
            "-n",
            tb.ns(0),
            "link",
            "set",
            "dev",
            &l.ifname[0],
            "xdpgeneric",
            "obj",
            obj_s,
            "sec",
            "xdp.frags",
        ],
    )
    .unwrap();
    let _ = std::fs::remove_file(&obj);
    let e = in_netns(tb.ns(0), || Steering::attach(&l.ifname[0], &[], false))
        .err()
        .expect("must refuse");
    assert!(e.to_string().contains("already has an XDP program"), "{e}");
    let o = ws(&tb, 0, &["cleanup"]).ok();
    assert!(
        o.stdout.contains("detached wirespeed's XDP program"),
        "{}",
        o.stdout
    );
    assert!(in_netns(tb.ns(0), || attached_program(&l.ifname[0])).is_none());
    let s = in_netns(tb.ns(0), || Steering::attach(&l.ifname[0], &[], false))
        .expect("attaches once the old one is gone");
    drop(s);
}

/// The counters once `done` says so (veth runs the peer's XDP in its
/// NAPI poll, a moment after the send), or after 2 s.
fn settled(
    steer: &Steering,
    done: impl Fn(&wirespeed::datapath::xdp::loader::SteerCounters) -> bool,
) -> wirespeed::datapath::xdp::loader::SteerCounters {
    let until = Instant::now() + Duration::from_secs(2);
    loop {
        let c = steer.counters().unwrap();
        if done(&c) || Instant::now() >= until {
            return c;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `n` datagrams to the test port from `from_port` in host 0.
fn udp_from(tb: &Testbed, from_port: u16, n: usize) {
    let to = format!("{}:{PORT}", tb.links[0].v4[1]);
    in_netns(tb.ns(0), || {
        let s = UdpSocket::bind((tb.links[0].v4[0], from_port)).unwrap();
        for i in 0..n {
            s.send_to(&(i as u32).to_be_bytes(), &to).unwrap();
        }
    });
}

/// A flow entry limited to one peer, with one of its source ports left to
/// the kernel (an iperf3 server's control connection, docs/iperf3.md):
/// that port's packets pass, the peer's others match, another peer's
/// never do. Read from the counters, with no AF_XDP socket (a match then
/// counts as `no_socket` and still reaches the kernel).
#[test]
fn steering_leaves_one_peer_port_to_the_kernel() {
    let tb = pair();
    let l = &tb.links[0];
    let (kept, other) = (9101, 9102);
    let attach = |peer: std::net::Ipv4Addr| {
        let flow = FlowMatch {
            proto: 17,
            addr: Some(l.v4[1].into()),
            ports: (PORT, PORT),
            peer: Some((peer.into(), Some(kept))),
        };
        in_netns(tb.ns(1), || Steering::attach(&l.ifname[1], &[flow], false)).expect("attaching")
    };
    let steer = attach(l.v4[0]);
    udp_from(&tb, kept, 5);
    let c = settled(&steer, |c| c.passed >= 5);
    assert_eq!(c.no_socket, 0, "the kept port matched: {c:?}");
    assert!(c.passed >= 5, "{c:?}");
    udp_from(&tb, other, 5);
    let c = settled(&steer, |c| c.no_socket >= 5);
    assert_eq!(c.no_socket, 5, "the peer's other port: {c:?}");
    drop(steer);
    // Another peer's flow entry: nothing from this one matches.
    let steer = attach(std::net::Ipv4Addr::new(198, 18, 0, 99));
    udp_from(&tb, other, 5);
    let c = settled(&steer, |c| c.passed >= 5);
    assert_eq!(c.no_socket, 0, "another peer matched: {c:?}");
    assert!(c.passed >= 5, "{c:?}");
    drop(steer);
    assert!(in_netns(tb.ns(1), || attached_program(&l.ifname[1])).is_none());
}
