//! Honest numbers end to end: the sender's TCP state in a receive test, a
//! flow whose peer connection is killed mid-test, and a host whose
//! /proc/stat cannot be read. Each asserts what a silent fallback would
//! get wrong.

use serde_json::Value;
use std::process::Command;
use std::time::{Duration, Instant};
use wirespeed_tests::bin;
use wirespeed_tests::process::{run, AgentProc, Output};
use wirespeed_tests::testbed::{self, Testbed};

fn agent(tb: &Testbed) -> AgentProc {
    let mut c = tb.cmd(1, &bin());
    c.args(["agent", "--listen", &format!("{}:5290", tb.links[0].v4[1])]);
    AgentProc::start(c)
}

fn ws(tb: &Testbed, args: &[&str]) -> Output {
    let mut c = tb.cmd(0, &bin());
    c.arg("run").args(args);
    run(c, Duration::from_secs(60))
}

/// In a receive test the agent sends: the interval lines must carry its
/// socket's TCP state (labelled "agent"), not the controller's receiving
/// socket's, which never retransmits and keeps its initial window.
#[test]
fn receive_intervals_carry_the_agents_sending_socket() {
    let tb = testbed::pair();
    let a = agent(&tb);
    // 2% loss into the controller: the agent's sender must retransmit.
    testbed::ingress_loss(&tb, 0, 0, 2.0).unwrap();
    let receive = [
        "--to",
        &a.addr,
        "--mode",
        "socket",
        "--direction",
        "receive",
    ];
    let json = ["--duration", "3s", "--interval", "1s", "--json"];
    let o = ws(&tb, &[&receive[..], &json].concat()).ok();
    let j = o.json();
    let ivs = j["intervals"].as_array().unwrap();
    assert!(ivs.len() >= 2, "{ivs:?}");
    let (mut retr, mut labelled) = (0, 0);
    for iv in ivs {
        let f = &iv["flows"][0];
        if f["tcp_from"].is_null() {
            // Only the first interval may precede the agent's first report.
            assert_eq!(f["rtt_us"], Value::Null, "{f}");
            continue;
        }
        labelled += 1;
        assert_eq!(f["tcp_from"], "agent", "{f}");
        retr += f["retransmits"].as_u64().unwrap();
        assert!(f["snd_cwnd"].as_u64().unwrap() > 0, "{f}");
    }
    assert!(labelled >= ivs.len() - 1, "agent reports missing: {ivs:?}");
    assert!(
        retr > 0,
        "2% loss, yet the sender retransmitted nothing: {ivs:?}"
    );
    let d = &j["end"]["directions"][0];
    assert!(d["retransmits"].as_u64().unwrap() > 0, "{d}");
    // And the text names the end.
    let o = ws(&tb, &[&receive[..], &["--duration", "2s"]].concat()).ok();
    let line = o
        .stdout
        .lines()
        .find(|l| l.starts_with("[0 receive]") && l.contains("1.0") && l.contains("-2.0"))
        .unwrap_or_else(|| panic!("no second interval line:\n{}", o.stdout));
    assert!(line.trim_end().ends_with("agent"), "{line}");
    assert!(o.stdout.contains("tcp of"), "{}", o.stdout);
}

/// The agent's established data connections (not the control port's):
/// (local, peer) address pairs from `ss`.
fn data_connections(tb: &Testbed) -> Vec<(String, String)> {
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            tb.ns(1),
            "ss",
            "-Htn",
            "state",
            "established",
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (local, peer) = (f.get(2)?, f.get(3)?);
            (!local.ends_with(":5290")).then(|| (local.to_string(), peer.to_string()))
        })
        .collect()
}

/// One flow's connection is destroyed mid-test on the agent (`ss -K`, as
/// a crashed peer would leave it): the run must fail, name that flow and
/// the bytes it moved, and keep those bytes in the totals.
#[test]
fn a_killed_flow_fails_the_run_named_with_its_bytes() {
    let tb = testbed::pair();
    let a = agent(&tb);
    let mut c = tb.cmd(0, &bin());
    c.args([
        "run",
        "--to",
        &a.addr,
        "--mode",
        "socket",
        "--streams",
        "2",
        "--duration",
        "4s",
        "--json",
    ]);
    let runner = std::thread::spawn(move || run(c, Duration::from_secs(60)));
    // Wait for both data connections, then let bytes flow for a second.
    let deadline = Instant::now() + Duration::from_secs(10);
    let conns = loop {
        let c = data_connections(&tb);
        if c.len() == 2 || Instant::now() > deadline {
            break c;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(conns.len(), 2, "{conns:?}");
    std::thread::sleep(Duration::from_millis(1500));
    let (_, peer) = &conns[0];
    let (ip, port) = peer.rsplit_once(':').unwrap();
    let killed = Command::new("ip")
        .args([
            "netns",
            "exec",
            tb.ns(1),
            "ss",
            "-K",
            "dst",
            ip,
            "dport",
            "=",
            port,
        ])
        .output()
        .unwrap();
    assert!(killed.status.success(), "{killed:?}");
    let o = runner.join().unwrap();
    assert!(
        !o.status.success(),
        "the run must fail:\n{}\n{}",
        o.stdout,
        o.stderr
    );
    assert!(o.stderr.contains("flow error"), "{}", o.stderr);
    let j = o.json();
    let end = &j["end"];
    let flows = end["flows"].as_array().unwrap();
    assert_eq!(flows.len(), 2, "both flows stay in the report: {end}");
    let bad: Vec<&Value> = flows
        .iter()
        .filter(|f| !f["sender"]["error"].is_null() || !f["receiver"]["error"].is_null())
        .collect();
    assert_eq!(bad.len(), 1, "exactly the killed flow failed: {end}");
    let (stream, sent) = (
        bad[0]["stream"].as_u64().unwrap(),
        bad[0]["sender"]["bytes"].as_u64().unwrap(),
    );
    assert!(sent > 0, "it moved bytes before it was killed: {}", bad[0]);
    let errors: Vec<&str> = end["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with(&format!("stream {stream} (send)"))
                && e.contains(&format!("(after {sent} B)"))),
        "{errors:?}"
    );
    let total: u64 = flows
        .iter()
        .map(|f| f["sender"]["bytes"].as_u64().unwrap())
        .sum();
    assert_eq!(end["sent"]["bytes"].as_u64().unwrap(), total, "{end}");
}

/// The controller runs in a mount namespace where /proc/stat is an empty
/// file: its host CPU is unavailable — `null` in JSON, "unavailable" in
/// text, never "busy 100 %" — while the agent's is still measured.
#[test]
fn unreadable_proc_stat_is_unavailable_not_busy() {
    let tb = testbed::pair();
    let a = agent(&tb);
    let empty = std::env::temp_dir().join(format!("honest-empty-stat-{}", std::process::id()));
    std::fs::write(&empty, "").unwrap();
    // `wirespeed ARGS` on host h with an empty /proc/stat.
    let masked_cmd = |h: usize, args: &[&str]| {
        let script = format!(
            "mount --bind {} /proc/stat && exec {} {}",
            empty.display(),
            bin().display(),
            args.join(" ")
        );
        let mut c = Command::new("ip");
        c.args([
            "netns",
            "exec",
            tb.ns(h),
            "unshare",
            "-m",
            "--propagation",
            "private",
        ])
        .args(["sh", "-c", &script]);
        c
    };
    let masked = |args: &[&str]| {
        run(
            masked_cmd(0, &[&["run"], args].concat()),
            Duration::from_secs(60),
        )
    };
    let base = ["--to", &a.addr, "--mode", "socket", "--duration", "1s"];
    let j = masked(&[&base[..], &["--json"]].concat()).ok().json();
    let local = &j["end"]["cpu"]["local"];
    assert_eq!(local["host"], Value::Null, "{local}");
    assert!(
        local["source"]
            .as_str()
            .unwrap()
            .starts_with("unavailable: /proc/stat"),
        "{local}"
    );
    assert_eq!(local["per_core"].as_array().unwrap().len(), 0, "{local}");
    let remote = &j["end"]["cpu"]["remote"];
    assert_eq!(
        remote["source"], "/proc/stat",
        "the agent's is unaffected: {remote}"
    );
    assert!(remote["host"]["idle"].is_number(), "{remote}");
    let o = masked(&base).ok();
    let line = o
        .stdout
        .lines()
        .find(|l| l.starts_with("cpu local:"))
        .unwrap_or_else(|| panic!("{}", o.stdout));
    assert!(line.contains("host unavailable: /proc/stat"), "{line}");
    assert!(!line.contains("busy"), "{line}");
    // A plan whose every host has no CPU figures: no CPU verdict.
    let listen = format!("{}:5291", tb.links[0].v4[1]);
    let _blind = AgentProc::start(masked_cmd(1, &["agent", "--listen", &listen]));
    let plan = empty.with_extension("toml");
    std::fs::write(
        &plan,
        format!(
            "name = \"blind\"\n[defaults]\nduration = \"1s\"\nwarmup = \"0s\"\nmode = \"socket\"\nlink_speed = \"10G\"\n[[agents]]\nname = \"a0\"\naddress = \"{listen}\"\n[[pairs]]\nagent = \"a0\"\n"
        ),
    )
    .unwrap();
    let results = empty.with_extension("json");
    let plan_args = [
        "plan",
        plan.to_str().unwrap(),
        "--json",
        results.to_str().unwrap(),
    ];
    run(masked_cmd(0, &plan_args), Duration::from_secs(60)).ok();
    let j: Value = serde_json::from_slice(&std::fs::read(&results).unwrap()).unwrap();
    let rep = &j["points"][0]["repetitions"][0];
    for h in rep["hosts"].as_array().unwrap() {
        assert_eq!(h["cpu"]["host"], Value::Null, "{h}");
    }
    let v = &rep["verdict"];
    assert!(
        !v["limit"].as_str().unwrap().contains("cpu") && v["limit"] != "irq-concentration",
        "a CPU verdict without CPU figures: {v}"
    );
    for f in [&empty, &plan, &results] {
        let _ = std::fs::remove_file(f);
    }
}

/// Options that cannot apply are refused before anything runs, with the
/// reason, never accepted and ignored.
#[test]
fn options_that_cannot_apply_are_refused() {
    let cases: [(&[&str], &str); 7] = [
        (&["--to", "127.0.0.1:9", "--burst", "2"], "add --test rr"),
        (
            &["--to", "127.0.0.1:9", "--request-size", "64"],
            "add --test rr",
        ),
        (
            &["--to", "127.0.0.1:9", "--test", "rr", "--msg-size", "4K"],
            "--msg-size sizes a stream's send() calls",
        ),
        (
            &[
                "--to",
                "127.0.0.1:9",
                "--mode",
                "xdp",
                "--raw",
                "--sockbuf",
                "64K",
            ],
            "drop --sockbuf and --msg-size",
        ),
        (
            &["--mode", "xdp", "--plain", "127.0.0.1:9", "--test", "rr"],
            "request/response needs a wirespeed agent",
        ),
        (
            &[
                "--mode",
                "xdp",
                "--plain",
                "127.0.0.1:9",
                "--msg-size",
                "8K",
            ],
            "drop --msg-size",
        ),
        (
            &[
                "--mode",
                "xdp",
                "--plain",
                "127.0.0.1:9",
                "--remote-cpus",
                "0",
            ],
            "--remote-cpus is for a wirespeed agent",
        ),
    ];
    for (args, why) in cases {
        let mut c = Command::new(bin());
        c.arg("run").args(args);
        let o = run(c, Duration::from_secs(10));
        assert!(!o.status.success(), "{args:?} must be refused");
        assert_eq!(
            o.stderr.lines().count(),
            1,
            "{args:?}: one line: {}",
            o.stderr
        );
        assert!(o.stderr.contains(why), "{args:?}: {}", o.stderr);
    }
}
