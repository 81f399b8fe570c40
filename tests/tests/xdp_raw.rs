//! Raw mode over AF_XDP between two namespaces: frames sent and received
//! are counted on both sides and agree at a pace the path sustains; the
//! kernel's own traffic (ping, a TCP test) keeps flowing during a raw
//! test; killing the agent mid-test leaves no XDP program behind; bad
//! parameters get a one-line reason.

use serde_json::Value;
use std::time::{Duration, Instant};
use wirespeed::datapath::xdp::loader::attached_program;
use wirespeed_tests::process::{run, AgentProc, Output};
use wirespeed_tests::testbed::{pair, pair_with_queues, ping, Testbed};
use wirespeed_tests::{bin, in_netns};

fn agent(tb: &Testbed) -> AgentProc {
    let mut c = tb.cmd(1, &bin());
    c.args(["agent", "--listen", &format!("{}:5290", tb.links[0].v4[1])]);
    AgentProc::start(c)
}

fn raw_args<'a>(tb: &'a Testbed, a: &'a AgentProc) -> Vec<&'a str> {
    let l = &tb.links[0];
    vec![
        "run",
        "--to",
        &a.addr,
        "--mode",
        "xdp",
        "--raw",
        "--iface",
        &l.ifname[0],
        "--remote-iface",
        &l.ifname[1],
    ]
}

fn ws(tb: &Testbed, args: &[&str]) -> Output {
    let mut c = tb.cmd(0, &bin());
    c.args(args);
    run(c, Duration::from_secs(60))
}

fn no_xdp_left(tb: &Testbed) {
    let l = &tb.links[0];
    for side in 0..2 {
        let deadline = Instant::now() + Duration::from_secs(5);
        while in_netns(tb.ns(side), || attached_program(&l.ifname[side])).is_some() {
            assert!(
                Instant::now() < deadline,
                "XDP program left on {}",
                l.ifname[side]
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn raw_of(end: &Value) -> (&Value, &Value) {
    let f = &end["flows"][0];
    (&f["sender"]["raw"], &f["receiver"]["raw"])
}

#[test]
fn paced_raw_frames_all_arrive_both_ways() {
    let tb = pair();
    let a = agent(&tb);
    for (dir, size) in [("send", "60"), ("receive", "1514")] {
        let mut args = raw_args(&tb, &a);
        args.extend([
            "--direction",
            dir,
            "--duration",
            "2s",
            "--rate",
            "50kpps",
            "--frame-size",
            size,
            "--json",
        ]);
        let j = ws(&tb, &args).ok().json();
        let end = &j["end"];
        assert_eq!(
            end["mode"], "xdp-copy",
            "veth: native XDP, copy-mode AF_XDP"
        );
        let (s, r) = raw_of(end);
        let sent = s["frames"].as_u64().unwrap();
        assert!(
            (95_000..=100_001).contains(&sent),
            "{dir}: {sent} frames at 50 kpps for 2 s"
        );
        assert_eq!(
            r["frames"], s["frames"],
            "{dir}: every frame arrives at a sustainable pace"
        );
        assert_eq!(r["gaps"], 0);
        assert_eq!(r["reorders"], 0);
        assert_eq!(r["malformed"], 0);
        assert_eq!(r["frame_size"].as_u64().unwrap().to_string(), size);
        let l1 = r["l1_bits_per_second"].as_f64().unwrap();
        let l2 = r["l2_bits_per_second"].as_f64().unwrap();
        assert!(l1 > l2, "L1 adds preamble, FCS and gap");
        assert_eq!(
            end["flows"][0]["receiver"]["bytes"],
            end["flows"][0]["sender"]["bytes"]
        );
    }
    no_xdp_left(&tb);
}

#[test]
fn unpaced_raw_counts_and_text() {
    let tb = pair();
    let a = agent(&tb);
    let mut args = raw_args(&tb, &a);
    args.extend(["--duration", "2s"]);
    let o = ws(&tb, &args).ok();
    assert!(o.stdout.contains("raw 60 B frames: sent"), "{}", o.stdout);
    assert!(
        o.stdout.contains("L1 (with preamble, FCS, gap)"),
        "{}",
        o.stdout
    );
    let mut args = raw_args(&tb, &a);
    args.extend(["--duration", "2s", "--json"]);
    let j = ws(&tb, &args).ok().json();
    let (s, r) = raw_of(&j["end"]);
    let (sent, got) = (s["frames"].as_u64().unwrap(), r["frames"].as_u64().unwrap());
    assert!(got > 0 && got <= sent, "received {got} of {sent}");
    assert_eq!(r["malformed"], 0);
    wirespeed_tests::raw_accounted(s, r);
    no_xdp_left(&tb);
}

#[test]
fn two_queues_pinned_workers_and_loss_accounting() {
    let tb = pair_with_queues(2);
    let a = agent(&tb);
    for dir in ["send", "receive"] {
        let mut args = raw_args(&tb, &a);
        args.extend([
            "--direction",
            dir,
            "--duration",
            "2s",
            "--queues",
            "0-1",
            "--cpus",
            "0,1",
            "--remote-cpus",
            "1,0",
            "--json",
        ]);
        let j = ws(&tb, &args).ok().json();
        let (s, r) = raw_of(&j["end"]);
        wirespeed_tests::raw_accounted(s, r);
        // --cpus pins the local end, --remote-cpus the agent's.
        let (local, remote) = if dir == "send" { (s, r) } else { (r, s) };
        for (end, cpus) in [(local, [0, 1]), (remote, [1, 0])] {
            let qs = end["queues"].as_array().expect("per-queue figures");
            assert_eq!(qs.len(), 2, "a worker per queue: {end}");
            let mut sum = 0;
            for (i, q) in qs.iter().enumerate() {
                assert_eq!(q["queue"], i);
                assert!(
                    q["frames"].as_u64().unwrap() > 0,
                    "{dir}: queue {i} idle: {q}"
                );
                assert_eq!(q["cpu_pinned"], cpus[i], "{dir}: queue {i}: {q}");
                assert_eq!(q["cpu"], cpus[i], "{dir}: pinned workers stay put: {q}");
                assert!(q["busy_poll"].is_boolean());
                sum += q["frames"].as_u64().unwrap();
            }
            assert_eq!(end["frames"].as_u64().unwrap(), sum, "totals add up");
        }
    }
    // The agent listens on queue 1 only; veth delivers queue 0's frames to
    // queue 0, where no socket is: all are counted there, none received.
    let mut args = raw_args(&tb, &a);
    args.extend([
        "--duration",
        "1s",
        "--rate",
        "20kpps",
        "--queues",
        "0",
        "--remote-queues",
        "1",
        "--json",
    ]);
    let j = ws(&tb, &args).ok().json();
    let (s, r) = raw_of(&j["end"]);
    assert_eq!(r["frames"], 0);
    assert_eq!(r["no_socket"], s["frames"], "{r}");
    // Out of range, here and at the agent, and a CPU that does not exist.
    for (flag, val, why) in [
        ("--queues", "2", "queue 2 is out of range"),
        ("--remote-queues", "3", "queue 3 is out of range"),
        (
            "--cpus",
            "4000",
            "CPU 4000 is not one this process may run on",
        ),
        (
            "--remote-cpus",
            "4000",
            "CPU 4000 is not one this process may run on",
        ),
    ] {
        let mut args = raw_args(&tb, &a);
        args.extend(["--duration", "1s", flag, val]);
        ws(&tb, &args).fails_with(why);
    }
    no_xdp_left(&tb);
}

#[test]
fn kernel_traffic_flows_during_a_raw_test() {
    let tb = pair();
    let a = agent(&tb);
    let l = &tb.links[0];
    let mut c = tb.cmd(0, &bin());
    let mut args = raw_args(&tb, &a);
    args.extend(["--duration", "4s", "--rate", "100kpps", "--json"]);
    c.args(&args);
    let raw = std::thread::spawn(move || run(c, Duration::from_secs(60)));
    std::thread::sleep(Duration::from_millis(800));
    let ping = ping(&tb, 0, l.v4[1].into());
    assert!(
        ping.status.success(),
        "ping during a raw test:\n{}{}",
        ping.stdout,
        ping.stderr
    );
    let tcp = ws(
        &tb,
        &[
            "run", "--to", &a.addr, "--mode", "socket", "--bytes", "8M", "--json",
        ],
    )
    .ok()
    .json();
    assert_eq!(tcp["end"]["received"]["bytes"], 8u64 << 20);
    let j = raw.join().unwrap().ok().json();
    let (s, r) = raw_of(&j["end"]);
    // The TCP test competes for the same two CPUs: a few raw frames may
    // drop at the receiver's ring, and each shows up as a gap.
    let (sent, got) = (s["frames"].as_u64().unwrap(), r["frames"].as_u64().unwrap());
    assert!(got as f64 >= 0.99 * sent as f64, "received {got} of {sent}");
    assert!(r["gaps"].as_u64().unwrap() <= sent - got, "{r}");
    no_xdp_left(&tb);
}

#[test]
fn killing_the_agent_mid_test_leaves_no_xdp() {
    let tb = pair();
    let a = agent(&tb);
    let accepted = a.count("test accepted");
    let mut c = tb.cmd(0, &bin());
    let mut args = raw_args(&tb, &a);
    args.extend(["--duration", "20s", "--rate", "50kpps"]);
    c.args(&args);
    let controller = std::thread::spawn(move || run(c, Duration::from_secs(60)));
    assert!(a.wait_count("test accepted", accepted + 1, Duration::from_secs(10)));
    std::thread::sleep(Duration::from_millis(700));
    let l = &tb.links[0];
    assert!(
        in_netns(tb.ns(1), || attached_program(&l.ifname[1])).is_some(),
        "the agent steers during the test"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(a.pid() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let o = controller.join().unwrap();
    o.fails_with("agent went away mid-test");
    no_xdp_left(&tb);
}

#[test]
fn bad_raw_parameters_are_refused() {
    let tb = pair();
    let mut a = agent(&tb);
    let l = &tb.links[0];
    let to = a.addr.clone();
    ws(
        &tb,
        &[
            "run",
            "--to",
            &to,
            "--mode",
            "socket",
            "--raw",
            "--iface",
            &l.ifname[0],
            "--remote-iface",
            &l.ifname[1],
        ],
    )
    .fails_with("--raw sends frames over AF_XDP: use --mode xdp");
    ws(
        &tb,
        &[
            "run",
            "--to",
            &to,
            "--mode",
            "xdp",
            "--raw",
            "--remote-iface",
            &l.ifname[1],
        ],
    )
    .fails_with("--iface IF");
    ws(
        &tb,
        &[
            "run",
            "--to",
            &to,
            "--mode",
            "xdp",
            "--raw",
            "--iface",
            &l.ifname[0],
        ],
    )
    .fails_with("--remote-iface IF");
    ws(&tb, &["run", "--to", &to, "--mode", "xdp"]).fails_with("--mode xdp needs the interface");
    let mut args = raw_args(&tb, &a);
    args.extend(["--frame-size", "3000"]);
    ws(&tb, &args).fails_with("needs an MTU of at least 2986");
    let mut args = raw_args(&tb, &a);
    args.extend(["--frame-size", "20"]);
    ws(&tb, &args).fails_with("must be between 60");
    no_xdp_left(&tb);
    a.assert_alive();
    let j = ws(&tb, &["run", "--to", &to, "--bytes", "1M", "--json"])
        .ok()
        .json();
    assert_eq!(j["end"]["received"]["bytes"], 1u64 << 20);
}
