//! iperf3 interoperability against Debian's real `iperf3`, in namespaces:
//! `wirespeed run --iperf3` against `iperf3 -s` (kernel sockets and
//! TCP-lite on our end, both directions, 1 and 4 streams), stock `iperf3
//! -c` against `wirespeed agent --iperf3-listen`, and what the agent does
//! with refused options and hostile or truncated control exchanges.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};
use wirespeed::testbed::Testbed;
use wirespeed_tests::process::{run, wait_bounded, AgentProc, Output};
use wirespeed_tests::testbed::{kernel_checksums, pair, sh};
use wirespeed_tests::{bin, in_netns};

const MIB16: u64 = 16 << 20;

/// Wait (bounded) until something listens on `port` in host `h`.
fn listening(tb: &Testbed, h: usize, port: u16) {
    let until = Instant::now() + Duration::from_secs(10);
    let filter = format!("sport = :{port}");
    while Instant::now() < until {
        let out =
            sh("ip", &["netns", "exec", tb.ns(h), "ss", "-Hltn", &filter]).unwrap_or_default();
        if !out.trim().is_empty() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("nothing listens on port {port} in {} after 10 s", tb.ns(h));
}

/// `iperf3 -s -1 -J` in host 1, listening.
fn iperf3_server(tb: &Testbed) -> Child {
    let mut c = tb.cmd(1, Path::new("iperf3"));
    c.args(["-s", "-1", "-J", "-B", &tb.links[0].v4[1].to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = c
        .spawn()
        .expect("iperf3 is installed (Debian's iperf3 package)");
    listening(tb, 1, 5201);
    child
}

/// The one-off server's -J document, once it has exited.
fn server_json(mut child: Child) -> serde_json::Value {
    let status = wait_bounded(&mut child, Duration::from_secs(15)).expect("iperf3 -s -1 exits");
    let mut s = String::new();
    child.stdout.take().unwrap().read_to_string(&mut s).unwrap();
    assert!(status.success(), "iperf3 -s failed: {s}");
    serde_json::from_str(&s).unwrap_or_else(|e| panic!("iperf3 -J ({e}): {s}"))
}

/// `wirespeed run --iperf3` from host 0 against host 1's iperf3 server.
fn run_iperf3(tb: &Testbed, mode: &str, dir: &str, args: &[&str]) -> Output {
    let mut c = tb.cmd(0, &bin());
    let server = tb.links[0].v4[1].to_string();
    c.args([
        "run",
        "--iperf3",
        &server,
        "--mode",
        mode,
        "--direction",
        dir,
    ])
    .args(args)
    .args(["--iface", &tb.links[0].ifname[0]]);
    run(c, Duration::from_secs(60))
}

#[test]
fn wirespeed_against_a_stock_iperf3_server() {
    let tb = pair();
    kernel_checksums(&tb, 1);
    for (mode, dir, streams) in [
        ("socket", "send", "1"),
        ("socket", "receive", "4"),
        ("xdp", "send", "4"),
        ("xdp", "receive", "1"),
    ] {
        let what = format!("{mode} {dir} x{streams}");
        let srv = iperf3_server(&tb);
        let ours = run_iperf3(
            &tb,
            mode,
            dir,
            &[
                "--streams",
                streams,
                "--bytes",
                &MIB16.to_string(),
                "--json",
            ],
        )
        .ok()
        .json();
        let theirs = server_json(srv);
        let end = &theirs["end"];
        // iperf3 -s reports what it received (forward) or sent (-R).
        let iperf3_bytes = match dir {
            "send" => &end["sum_received"]["bytes"],
            _ => &end["sum_sent"]["bytes"],
        };
        assert_eq!(
            ours["total"]["bytes"], *iperf3_bytes,
            "{what}: ours {ours} iperf3 {end}"
        );
        assert_eq!(
            ours["server_bytes"], *iperf3_bytes,
            "{what}: results exchange"
        );
        assert_eq!(ours["bytes_agree"], true, "{what}");
        let total = ours["total"]["bytes"].as_u64().unwrap();
        match dir {
            // We send exactly --bytes; iperf3's server sends until told.
            "send" => assert_eq!(total, MIB16, "{what}"),
            _ => assert!(total >= MIB16, "{what}: {total}"),
        }
        assert_eq!(
            ours["streams"].as_array().unwrap().len(),
            streams.parse::<usize>().unwrap()
        );
        let want_mode = if mode == "xdp" { "xdp-copy" } else { "socket" };
        assert_eq!(ours["mode"], want_mode, "{what}");
    }
}

fn agent(tb: &Testbed) -> AgentProc {
    let mut c = tb.cmd(1, &bin());
    let ip = tb.links[0].v4[1].to_string();
    c.args([
        "agent",
        "--listen",
        &format!("{ip}:5290"),
        "--iperf3-listen",
        &ip,
    ])
    .args(["--max-streams", "8"]);
    let a = AgentProc::start(c);
    listening(tb, 1, 5201);
    a
}

/// Stock `iperf3 -c` from host 0 with `args`, bounded, and its -J document.
fn iperf3_client(tb: &Testbed, args: &[&str]) -> (Output, serde_json::Value) {
    let mut c = tb.cmd(0, Path::new("iperf3"));
    c.args(["-c", &tb.links[0].v4[1].to_string(), "-J"])
        .args(args);
    let out = run(c, Duration::from_secs(30));
    let j = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("iperf3 -J ({e}): {}\n{}", out.stdout, out.stderr));
    (out, j)
}

#[test]
fn stock_iperf3_clients_against_the_agent() {
    let tb = pair();
    let a = agent(&tb);
    let n = MIB16.to_string();
    for args in [
        vec!["-n", &n],
        vec!["-R", "-n", &n, "-P", "4"],
        vec!["-t", "1", "-P", "4", "-l", "64K", "-w", "1M"],
        vec!["-R", "-t", "1"],
    ] {
        // iperf3 3.12 with -J exits 0 on errors too: its document says.
        let (out, j) = iperf3_client(&tb, &args);
        assert!(j["error"].is_null(), "{args:?}: {}", out.stdout);
        let end = &j["end"];
        let sent = end["sum_sent"]["bytes"].as_u64().unwrap();
        let received = end["sum_received"]["bytes"].as_u64().unwrap();
        if args == ["-R", "-t", "1"] {
            // iperf3's client stops counting at its own timer: what the
            // agent sent that was still in flight is not counted (docs/iperf3.md).
            assert!(
                received <= sent && received * 10 >= sent * 9,
                "{args:?}: {end}"
            );
        } else {
            assert_eq!(sent, received, "{args:?}: both ends' counts, {end}");
        }
        if args.contains(&"-n") {
            // iperf3's client may send a block past -n (it checks after
            // sending); with -R the agent sends exactly -n.
            match args.contains(&"-R") {
                true => assert_eq!(sent, MIB16, "{args:?}"),
                false => assert!(sent >= MIB16, "{args:?}: {sent}"),
            }
        }
        let streams = if args.contains(&"-P") { 4 } else { 1 };
        assert_eq!(
            end["streams"].as_array().unwrap().len(),
            streams,
            "{args:?}"
        );
    }
    assert!(
        a.wait_count("iperf3 test done", 4, Duration::from_secs(5)),
        "{}",
        a.log_text()
    );
    let log = a.log_text();
    // The agent's own count beside the client's, each test.
    let forward = |l: &&str| l.contains("iperf3 test done") && l.contains("forward");
    for line in log.lines().filter(forward) {
        let nums: Vec<u64> = line.split(' ').filter_map(|w| w.parse().ok()).collect();
        assert_eq!(nums.len(), 3, "{line}");
        assert_eq!(
            nums[1], nums[2],
            "the agent's and the client's bytes: {line}"
        );
    }
    assert!(
        log.contains(&format!("{MIB16} B sent, client counted {MIB16} B")),
        "{log}"
    );
}

/// Something a hostile peer does on a fresh control connection.
type Hostile<'a> = Box<dyn Fn(&mut TcpStream) + 'a>;

/// A short valid test: the agent still serves.
fn still_serves(tb: &Testbed, after: &str) {
    let (out, j) = iperf3_client(tb, &["-n", "4M"]);
    assert!(j["error"].is_null(), "after {after}: {}", out.stdout);
    served_4m(&j, after);
}

/// A forward `-n 4M` test's figures: the agent received what the client
/// sent, at least 4 MiB (iperf3's client may send a block past -n when a
/// write was partial, as under load).
fn served_4m(j: &serde_json::Value, what: &str) {
    let end = &j["end"];
    let received = end["sum_received"]["bytes"].as_u64().unwrap_or(0);
    assert_eq!(end["sum_sent"]["bytes"], received, "{what}: {end}");
    assert!(received >= 4 << 20, "{what}: {end}");
}

#[test]
fn refusals_and_hostile_control_exchanges_leave_the_agent_serving() {
    let tb = pair();
    let mut a = agent(&tb);
    // Refused options: iperf3's own error, at once, never a hang.
    for (args, says) in [
        (vec!["-u", "-t", "1"], "not implemented yet"),
        (vec!["--bidir", "-t", "1"], "not implemented yet"),
        (vec!["-P", "9", "-t", "1"], "parallel streams too large"),
        (vec!["-t", "1", "-b", "10M"], "not implemented yet"),
    ] {
        let t0 = Instant::now();
        let (out, j) = iperf3_client(&tb, &args);
        let e = j["error"].as_str().unwrap_or_default();
        assert!(
            j["end"]["sum_sent"].is_null(),
            "{args:?} ran: {}",
            out.stdout
        );
        assert!(e.contains(says), "{args:?}: {e}");
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "{args:?} took {:?}",
            t0.elapsed()
        );
    }
    let addr = format!("{}:5201", tb.links[0].v4[1]);
    let connect = || in_netns(tb.ns(0), || TcpStream::connect(&addr).expect("connect"));
    let cookie = [b'a'; 36].iter().copied().chain([0]).collect::<Vec<u8>>();
    let hostile: [(&str, Hostile<'_>); 4] = [
        (
            "a truncated cookie",
            Box::new(|s| s.write_all(b"abc").unwrap()),
        ),
        (
            "a cookie without its NUL",
            Box::new(|s| s.write_all(&[b'z'; 37]).unwrap()),
        ),
        (
            "a 4 GiB parameter length",
            Box::new(|s| {
                s.write_all(&cookie).unwrap();
                let mut st = [0u8; 1];
                s.read_exact(&mut st).unwrap();
                assert_eq!(st[0], 9, "PARAM_EXCHANGE");
                s.write_all(&[0xff; 4]).unwrap();
            }),
        ),
        (
            "truncated parameters",
            Box::new(|s| {
                s.write_all(&cookie).unwrap();
                s.write_all(&[0, 0, 0, 100]).unwrap();
                s.write_all(b"{\"tcp\":tr").unwrap();
            }),
        ),
    ];
    for (what, act) in &hostile {
        let mut s = connect();
        act(&mut s);
        drop(s);
        a.assert_alive();
        still_serves(&tb, what);
    }
    // A peer that connects and says nothing holds the one test slot for
    // the cookie's deadline (5 s), not for ever: busy, then serving again.
    let _silent = connect();
    let opened = Instant::now();
    std::thread::sleep(Duration::from_millis(200));
    let (_, j) = iperf3_client(&tb, &["-n", "1M"]);
    assert!(
        j["error"].as_str().unwrap_or_default().contains("busy"),
        "{j}"
    );
    // Free again once the deadline has passed: asked every half second
    // from 5 s on, it must serve within 10 s of the silent connection
    // (the slack is a loaded machine's, not the agent's).
    std::thread::sleep(Duration::from_secs(5).saturating_sub(opened.elapsed()));
    loop {
        a.assert_alive();
        let (out, j) = iperf3_client(&tb, &["-n", "4M"]);
        let busy = j["error"].as_str().unwrap_or_default().contains("busy");
        if !busy || opened.elapsed() > Duration::from_secs(10) {
            assert!(
                j["error"].is_null(),
                "after a silent connection: {}",
                out.stdout
            );
            served_4m(&j, "after a silent connection");
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The agent serving iperf3 with TCP-lite on its side of link 0.
fn tcplite_agent(tb: &Testbed) -> AgentProc {
    let mut c = tb.cmd(1, &bin());
    let ip = tb.links[0].v4[1].to_string();
    c.args(["agent", "--listen", &format!("{ip}:5291")])
        .args(["--iperf3-listen", &ip, "--iperf3-mode", "xdp"])
        .args(["--allow-iface", &tb.links[0].ifname[1]])
        .args(["--max-streams", "8", "--data-timeout", "3s"]);
    let a = AgentProc::start(c);
    listening(tb, 1, 5201);
    a
}

/// The agent's own byte count in its log line for its `k`th test (from 1),
/// and the data path it names.
fn agent_count(a: &AgentProc, k: usize) -> (u64, String) {
    assert!(
        a.wait_count("iperf3 test done", k, Duration::from_secs(10)),
        "test {k}: {}",
        a.log_text()
    );
    let log = a.log_text();
    let line = log
        .lines()
        .filter(|l| l.contains("iperf3 test done"))
        .nth(k - 1)
        .expect("counted")
        .to_string();
    let words: Vec<&str> = line.split(' ').collect();
    let at = words
        .iter()
        .position(|w| *w == "sent," || *w == "received,")
        .unwrap_or_else(|| panic!("{line}"));
    let path = line.rsplit("data path ").next().unwrap_or_default();
    (words[at - 2].parse().unwrap(), path.trim().to_string())
}

/// A raw iperf3 client that asks for one stream and gets CREATE_STREAMS.
fn ask_for_streams(tb: &Testbed, cookie: &[u8]) -> TcpStream {
    let addr = format!("{}:5201", tb.links[0].v4[1]);
    let mut s = in_netns(tb.ns(0), || TcpStream::connect(&addr).expect("connect"));
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(cookie).unwrap();
    let mut st = [0u8; 1];
    s.read_exact(&mut st).unwrap();
    assert_eq!(st[0], 9, "PARAM_EXCHANGE");
    let p = br#"{"tcp":true,"omit":0,"time":1,"num":0,"blockcount":0,"parallel":1,"len":131072,"pacing_timer":1000,"client_version":"3.12"}"#;
    s.write_all(&(p.len() as u32).to_be_bytes()).unwrap();
    s.write_all(p).unwrap();
    s.read_exact(&mut st).unwrap();
    assert_eq!(st[0], 10, "CREATE_STREAMS");
    s
}

/// The control connection's next state is SERVER_ERROR, within `within`.
fn told_error(s: &mut TcpStream, within: Duration, what: &str) {
    let t0 = Instant::now();
    s.set_read_timeout(Some(within)).unwrap();
    let mut st = [0u8; 1];
    s.read_exact(&mut st)
        .unwrap_or_else(|e| panic!("{what}: no state within {within:?}: {e}"));
    assert_eq!(st[0] as i8, -2, "{what}: SERVER_ERROR");
    assert!(t0.elapsed() <= within, "{what}");
}

#[test]
fn stock_iperf3_clients_against_the_agent_on_tcplite() {
    let tb = pair();
    // TCP-lite checks checksums the client's veth would leave to offload.
    kernel_checksums(&tb, 0);
    let agent_if = tb.links[0].ifname[1].clone();
    let mut a = tcplite_agent(&tb);
    let n = MIB16.to_string();
    let cases = [
        vec!["-n", &n],
        vec!["-R", "-n", &n, "-P", "4"],
        vec!["-n", &n, "-P", "4", "-l", "64K", "-w", "1M"],
        vec!["-R", "-t", "2"],
    ];
    for (k, args) in cases.iter().enumerate() {
        let (out, j) = iperf3_client(&tb, args);
        assert!(j["error"].is_null(), "{args:?}: {}", out.stdout);
        let end = &j["end"];
        let sent = end["sum_sent"]["bytes"].as_u64().unwrap();
        let received = end["sum_received"]["bytes"].as_u64().unwrap();
        let reverse = args.contains(&"-R");
        if args.contains(&"-t") {
            // iperf3's client stops counting at its own timer (docs/iperf3.md).
            assert!(
                received <= sent && received * 10 >= sent * 9,
                "{args:?}: {end}"
            );
        } else {
            assert_eq!(sent, received, "{args:?}: both ends' counts, {end}");
        }
        if args.contains(&"-n") && reverse {
            assert_eq!(sent, MIB16, "{args:?}: the agent sends exactly -n");
        }
        let streams = if args.contains(&"-P") { 4 } else { 1 };
        assert_eq!(
            end["streams"].as_array().unwrap().len(),
            streams,
            "{args:?}"
        );
        // The agent's figure, in iperf3's JSON as the server's side.
        let (ours, path) = agent_count(&a, k + 1);
        let server_side = if reverse { sent } else { received };
        assert_eq!(ours, server_side, "{args:?}: agent log vs iperf3 -J {end}");
        assert!(path.starts_with("xdp-"), "{args:?}: data path {path}");
        assert!(ours > 0, "{args:?}");
    }
    // A client that asks for streams and opens none: told so after the
    // data timeout (3 s), the program detached, the agent serving.
    let cookie: Vec<u8> = [b'b'; 36].iter().copied().chain([0]).collect();
    let mut s = ask_for_streams(&tb, &cookie);
    told_error(&mut s, Duration::from_secs(6), "no streams");
    drop(s);
    a.assert_alive();
    still_serves(&tb, "a client that opened no streams");
    // A data connection with another cookie ends that test at once.
    let mut s = ask_for_streams(&tb, &cookie);
    let addr = format!("{}:5201", tb.links[0].v4[1]);
    let mut d = in_netns(tb.ns(0), || {
        TcpStream::connect(&addr).expect("data connect")
    });
    let _ = d.write_all(&[b'c'; 37]);
    told_error(&mut s, Duration::from_secs(2), "a wrong cookie");
    drop((s, d));
    a.assert_alive();
    still_serves(&tb, "a data connection with a wrong cookie");
    let (_, path) = agent_count(&a, cases.len() + 2);
    assert!(path.starts_with("xdp-"), "{path}");
    drop(a);
    assert!(
        in_netns(tb.ns(1), || {
            wirespeed::datapath::xdp::loader::attached_program(&agent_if)
        })
        .is_none(),
        "an XDP program is still attached to {agent_if} after the agent stopped"
    );
}

#[test]
fn iperf3_mode_xdp_needs_an_allowed_interface() {
    let out = std::process::Command::new(bin())
        .args([
            "agent",
            "--iperf3-listen",
            "127.0.0.1:0",
            "--iperf3-mode",
            "xdp",
        ])
        .output()
        .expect("runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("--allow-iface"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
}

/// Sum of a report's interval bytes, and the intervals' spans.
fn interval_sums(rep: &serde_json::Value) -> (u64, Vec<(f64, f64)>) {
    let ivs = rep["intervals"].as_array().expect("intervals");
    let sum = ivs
        .iter()
        .map(|i| i["sum"]["bytes"].as_u64().unwrap())
        .sum();
    let spans = ivs
        .iter()
        .map(|i| (i["start"].as_f64().unwrap(), i["end"].as_f64().unwrap()))
        .collect();
    (sum, spans)
}

#[test]
fn run_iperf3_prints_per_second_intervals_that_sum_to_the_total() {
    let tb = pair();
    kernel_checksums(&tb, 1);
    for (mode, dir) in [("socket", "send"), ("xdp", "receive")] {
        let what = format!("{mode} {dir}");
        // JSON: the intervals sum to the total exactly (the last partial).
        let srv = iperf3_server(&tb);
        let ours = run_iperf3(
            &tb,
            mode,
            dir,
            &["--streams", "2", "--duration", "3s", "--json"],
        )
        .ok()
        .json();
        drop(server_json(srv));
        let (sum, spans) = interval_sums(&ours);
        assert_eq!(
            sum,
            ours["total"]["bytes"].as_u64().unwrap(),
            "{what}: {ours}"
        );
        assert!(spans.len() >= 3, "{what}: {spans:?}");
        // Whole seconds but the last (a late tick makes one longer).
        for (s, e) in &spans[..spans.len() - 1] {
            assert!((0.9..2.1).contains(&(e - s)), "{what}: {spans:?}");
        }
        assert!(
            spans.windows(2).all(|w| w[0].1 == w[1].0),
            "{what}: {spans:?}"
        );
        // Text: a header and a [SUM] line per interval, as `run` prints.
        let srv = iperf3_server(&tb);
        let text = run_iperf3(&tb, mode, dir, &["--streams", "2", "--duration", "2s"])
            .ok()
            .stdout;
        drop(server_json(srv));
        assert!(
            text.contains("interval") && text.contains("bitrate"),
            "{what}: {text}"
        );
        // "[SUM]  0.00-1.00 s ...": the summary's [SUM] line has no span.
        let sums = text
            .lines()
            .filter(|l| l.starts_with("[SUM]") && l.split_whitespace().nth(2) == Some("s"))
            .count();
        assert!(sums >= 2, "{what}: {text}");
    }
}
