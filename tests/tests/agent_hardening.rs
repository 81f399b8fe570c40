//! Bad input against a running agent: each case gets a one-line reason on
//! the side that asked, the agent logs it, and then the agent still serves
//! a good test (`assert_serves`), so a regression that kills or wedges
//! the agent fails here.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;
use wirespeed::control::frame::{self, PROTOCOL_VERSION};
use wirespeed::control::messages::{ErrorKind, Msg};
use wirespeed::spec::{Direction, Limit, TestSpec};
use wirespeed_tests::process::{run, AgentProc, Output};
use wirespeed_tests::testbed::{self, Testbed};
use wirespeed_tests::{bin, in_netns};

struct Bed {
    tb: Testbed,
}

impl Bed {
    fn new() -> Bed {
        Bed {
            tb: testbed::pair(),
        }
    }

    fn agent(&self, extra: &[&str]) -> AgentProc {
        let mut c = self.tb.cmd(1, &bin());
        c.args([
            "agent",
            "--listen",
            &format!("{}:5290", self.tb.links[0].v4[1]),
        ])
        .args(extra);
        AgentProc::start(c)
    }

    fn ws(&self, args: &[&str]) -> Output {
        let mut c = self.tb.cmd(0, &bin());
        c.args(args);
        run(c, Duration::from_secs(60))
    }

    /// A good test still runs to completion against the agent.
    fn assert_serves(&self, a: &mut AgentProc, extra: &[&str]) {
        a.assert_alive();
        let mut args = vec!["run", "--to", a.addr.as_str(), "--bytes", "1M", "--json"];
        args.extend_from_slice(extra);
        let j = self.ws(&args).ok().json();
        assert_eq!(j["end"]["received"]["bytes"], 1u64 << 20);
        a.assert_alive();
    }

    /// A raw control connection from the controller's namespace. Tests run
    /// in the root namespace, so enter host 0's for the socket's lifetime.
    fn raw(&self, a: &AgentProc) -> TcpStream {
        let c = in_netns(self.tb.ns(0), || TcpStream::connect(&a.addr))
            .expect("connecting to the agent");
        c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        c
    }
}

/// Exchange preambles and pass the (keyless) handshake.
fn handshake(c: &mut TcpStream) {
    assert_eq!(frame::read_preamble(c).unwrap(), PROTOCOL_VERSION);
    frame::write_preamble(c, PROTOCOL_VERSION).unwrap();
    assert!(matches!(frame::read_msg(c).unwrap(), Msg::Challenge { .. }));
    let nonce = wirespeed::control::auth::to_hex(&wirespeed::control::auth::nonce());
    frame::write_msg(
        c,
        &Msg::Hello {
            nonce,
            proof: None,
            version: "test".into(),
        },
    )
    .unwrap();
    assert!(matches!(frame::read_msg(c).unwrap(), Msg::Welcome { .. }));
}

fn expect_error(c: &mut TcpStream, kind: ErrorKind, needle: &str) {
    match frame::read_msg(c) {
        Ok(Msg::Error { kind: k, message }) => {
            assert_eq!(k, kind, "{message}");
            assert!(
                message.contains(needle),
                "{message:?} should mention {needle:?}"
            );
        }
        other => panic!("expected an error message, got {other:?}"),
    }
}

#[test]
fn malformed_control_messages() {
    let bed = Bed::new();
    let mut a = bed.agent(&[]);

    // Garbage instead of a preamble (an HTTP client, a port scanner).
    let mut c = bed.raw(&a);
    c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut sink = Vec::new();
    let _ = c.read_to_end(&mut sink);
    assert!(
        a.wait_log("not a wirespeed endpoint", Duration::from_secs(5)),
        "{}",
        a.log_text()
    );
    bed.assert_serves(&mut a, &[]);

    // A wrong protocol version: the agent says so in its log and closes.
    let mut c = bed.raw(&a);
    assert_eq!(frame::read_preamble(&mut c).unwrap(), PROTOCOL_VERSION);
    frame::write_preamble(&mut c, 999).unwrap();
    let _ = c.read_to_end(&mut sink);
    assert!(
        a.wait_log("speaks control protocol v999", Duration::from_secs(5)),
        "{}",
        a.log_text()
    );
    bed.assert_serves(&mut a, &[]);

    // An oversized message: refused from its length alone.
    let mut c = bed.raw(&a);
    handshake(&mut c);
    c.write_all(&(1u32 << 30).to_be_bytes()).unwrap();
    expect_error(&mut c, ErrorKind::Protocol, "outside");
    bed.assert_serves(&mut a, &[]);

    // A truncated message: the length promises more than ever comes.
    let mut c = bed.raw(&a);
    handshake(&mut c);
    c.write_all(&100u32.to_be_bytes()).unwrap();
    c.write_all(b"{\"type\":").unwrap();
    c.shutdown(std::net::Shutdown::Write).unwrap();
    expect_error(&mut c, ErrorKind::Protocol, "truncated");
    bed.assert_serves(&mut a, &[]);

    // A well-framed message that is not JSON of any message.
    let mut c = bed.raw(&a);
    handshake(&mut c);
    c.write_all(&5u32.to_be_bytes()).unwrap();
    c.write_all(b"hello").unwrap();
    expect_error(&mut c, ErrorKind::Protocol, "undecodable");
    bed.assert_serves(&mut a, &[]);

    // A valid message out of order.
    let mut c = bed.raw(&a);
    handshake(&mut c);
    frame::write_msg(&mut c, &Msg::Start { at_us: None }).unwrap();
    expect_error(&mut c, ErrorKind::Protocol, "expected a test");
    bed.assert_serves(&mut a, &[]);

    // A connection that says nothing at all and then vanishes.
    let c = bed.raw(&a);
    drop(c);
    bed.assert_serves(&mut a, &[]);
}

#[test]
fn controller_sees_version_mismatch() {
    // A fake agent that speaks protocol v999: the controller must say so.
    let bed = Bed::new();
    let addr = format!("{}:5290", bed.tb.links[0].v4[1]);
    let listener = in_netns(bed.tb.ns(1), || std::net::TcpListener::bind(&addr)).unwrap();
    let fake = std::thread::spawn(move || {
        let (mut c, _) = listener.accept().unwrap();
        c.write_all(b"WIRESPD\0\x03\xe7").unwrap();
        let mut theirs = [0u8; 10];
        c.read_exact(&mut theirs).unwrap();
        theirs
    });
    let to = format!("{}:5290", bed.tb.links[0].v4[1]);
    bed.ws(&["run", "--to", &to, "--duration", "1s"])
        .fails_with(&format!(
            "speaks control protocol v999, this build speaks v{PROTOCOL_VERSION}"
        ));
    // and the controller had sent its own version first, so such an agent can say the same
    let mut ours = *b"WIRESPD\0\0\0";
    ours[8..].copy_from_slice(&PROTOCOL_VERSION.to_be_bytes());
    assert_eq!(fake.join().unwrap(), ours);
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn controller_vanishes_mid_test() {
    let bed = Bed::new();
    let mut a = bed.agent(&[]);
    for dir in ["send", "receive"] {
        let mut c = bed.tb.cmd(0, &bin());
        c.args([
            "run",
            "--to",
            &a.addr,
            "--duration",
            "30s",
            "--direction",
            dir,
            "--streams",
            "2",
        ]);
        c.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let (accepted, gone) = (
            a.count("test accepted"),
            a.count("controller went away mid-test"),
        );
        let mut child = c.spawn().unwrap();
        assert!(a.wait_count("test accepted", accepted + 1, Duration::from_secs(10)));
        std::thread::sleep(Duration::from_millis(700));
        child.kill().unwrap(); // SIGKILL: no goodbye
        child.wait().unwrap();
        assert!(
            a.wait_count(
                "controller went away mid-test",
                gone + 1,
                Duration::from_secs(5)
            ),
            "agent did not notice within 5 s:\n{}",
            a.log_text()
        );
        bed.assert_serves(&mut a, &[]);
    }
}

#[test]
fn data_connections_never_arrive() {
    let bed = Bed::new();
    let mut a = bed.agent(&["--data-timeout", "2s"]);
    let mut c = bed.raw(&a);
    handshake(&mut c);
    let spec = TestSpec {
        direction: Direction::Send,
        limit: Limit::Duration { seconds: 1.0 },
        msg_size: 8192,
        sockbuf: None,
        streams: 2,
        remote_iface: None,
        data_port: None,
        raw: None,
        test: wirespeed::spec::TestKind::Stream,
        remote_mode: wirespeed::spec::Mode::Socket,
        peer_xdp: false,
        remote_workers: Default::default(),
        remote_xdp_bind: Default::default(),
        sender_tcp_ms: None,
        verify: false,
    };
    frame::write_msg(&mut c, &Msg::Test(Box::new(spec.clone()))).unwrap();
    assert!(matches!(
        frame::read_msg(&mut c).unwrap(),
        Msg::Accepted { .. }
    ));
    expect_error(
        &mut c,
        ErrorKind::Failed,
        "only 0 of 2 data connections arrived",
    );
    bed.assert_serves(&mut a, &[]);

    // A raw test whose frames would go to some other host is refused.
    let mut c = bed.raw(&a);
    handshake(&mut c);
    let mut raw = spec;
    raw.direction = Direction::Receive;
    raw.streams = 1;
    raw.remote_iface = Some(bed.tb.links[0].ifname[1].clone());
    raw.raw = Some(wirespeed::spec::RawSpec {
        frame_size: 60,
        rate_pps: None,
        controller_mac: [2, 0, 0, 0, 0, 1],
        controller_ip: "198.18.0.99".parse().unwrap(),
        controller_port: 9,
        tag: 1,
        queues: None,
        cpus: Vec::new(),
    });
    frame::write_msg(&mut c, &Msg::Test(Box::new(raw))).unwrap();
    expect_error(
        &mut c,
        ErrorKind::Refused,
        "raw frames may go only to the controller itself",
    );
    bed.assert_serves(&mut a, &[]);
}

#[test]
fn interfaces_ports_and_privileges() {
    let bed = Bed::new();
    let mut a = bed.agent(&[]);
    // Unknown interfaces, on either side.
    bed.ws(&[
        "run", "--to", &a.addr, "--iface", "nosuch0", "--bytes", "1M",
    ])
    .fails_with("no interface named \"nosuch0\"");
    bed.ws(&[
        "run",
        "--to",
        &a.addr,
        "--remote-iface",
        "nosuch0",
        "--bytes",
        "1M",
    ])
    .fails_with("no interface named \"nosuch0\"");
    bed.assert_serves(&mut a, &[]);
    // A test that would make the agent allocate gigabytes of buffers.
    bed.ws(&[
        "run",
        "--to",
        &a.addr,
        "--streams",
        "100",
        "--msg-size",
        "16M",
        "--bytes",
        "100M",
    ])
    .fails_with("MiB of buffers");

    // The agent's control port in use: a second agent refuses to start.
    let mut c = bed.tb.cmd(1, &bin());
    c.args(["agent", "--listen", &a.addr]);
    run(c, Duration::from_secs(10)).fails_with("in use");

    // A data port in use on the agent's host.
    let busy = std::process::Command::new("ip")
        .args(["netns", "exec", bed.tb.ns(1), "socat"])
        .arg(format!("TCP-LISTEN:6000,bind={}", bed.tb.links[0].v4[1]))
        .arg("/dev/null")
        .stdin(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let _busy = KillOnDrop(busy);
    std::thread::sleep(Duration::from_millis(300));
    bed.ws(&[
        "run",
        "--to",
        &a.addr,
        "--data-port",
        "6000",
        "--bytes",
        "1M",
    ])
    .fails_with("data port 6000");
    bed.assert_serves(&mut a, &["--data-port", "6001"]);

    // No privileges: an unprivileged agent cannot take a port below 1024
    // (SO_BINDTODEVICE no longer needs CAP_NET_RAW since Linux 5.7). The
    // binary is copied where an unprivileged user can run it.
    let dir = std::env::temp_dir().join(format!("ws-nobody-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let exe = dir.join("wirespeed");
    std::fs::copy(bin(), &exe).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut c = std::process::Command::new("ip");
    c.args([
        "netns",
        "exec",
        bed.tb.ns(1),
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--inh-caps=-all",
    ])
    .arg(&exe)
    .args([
        "agent",
        "--listen",
        &format!("{}:80", bed.tb.links[0].v4[1]),
    ]);
    let o = run(c, Duration::from_secs(30));
    let _ = std::fs::remove_dir_all(&dir);
    o.fails_with("ports below 1024 need root or CAP_NET_BIND_SERVICE");
    bed.assert_serves(&mut a, &[]);
}

#[test]
fn keys_allow_lists_and_caps() {
    let bed = Bed::new();
    let dir = std::env::temp_dir().join(format!("ws-keys-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("agent.key");
    let wrong = dir.join("wrong.key");
    std::fs::write(&key, "correct horse battery staple\n").unwrap();
    std::fs::write(&wrong, "incorrect pony battery staple\n").unwrap();
    let (k, w) = (key.to_str().unwrap(), wrong.to_str().unwrap());
    let link = &bed.tb.links[0];
    let mut a = bed.agent(&[
        "--psk-file",
        k,
        "--allow-iface",
        &link.ifname[1],
        "--max-duration",
        "5s",
        "--max-streams",
        "4",
        "--max-tests",
        "1",
    ]);

    bed.ws(&["run", "--to", &a.addr, "--bytes", "1M"])
        .fails_with("requires a pre-shared key");
    bed.ws(&["run", "--to", &a.addr, "--bytes", "1M", "--psk-file", w])
        .fails_with("wrong pre-shared key");
    assert!(a.wait_log("wrong pre-shared key", Duration::from_secs(2)));
    bed.assert_serves(&mut a, &["--psk-file", k]);

    bed.ws(&[
        "run",
        "--to",
        &a.addr,
        "--psk-file",
        k,
        "--remote-iface",
        "lo",
        "--bytes",
        "1M",
    ])
    .fails_with("interface lo is not allowed");
    bed.assert_serves(
        &mut a,
        &["--psk-file", k, "--remote-iface", &link.ifname[1]],
    );
    bed.ws(&["run", "--to", &a.addr, "--psk-file", k, "--duration", "10s"])
        .fails_with("exceeds this agent's cap of 5 s");
    bed.ws(&[
        "run",
        "--to",
        &a.addr,
        "--psk-file",
        k,
        "--streams",
        "5",
        "--bytes",
        "1M",
    ])
    .fails_with("5 streams exceed");

    // One test at a time: a second concurrent test is refused.
    let mut c = bed.tb.cmd(0, &bin());
    c.args(["run", "--to", &a.addr, "--psk-file", k, "--duration", "3s"]);
    c.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let accepted = a.count("test accepted");
    let first = KillOnDrop(c.spawn().unwrap());
    assert!(a.wait_count("test accepted", accepted + 1, Duration::from_secs(10)));
    bed.ws(&["run", "--to", &a.addr, "--psk-file", k, "--bytes", "1M"])
        .fails_with("already running 1 tests");
    drop(first);

    // A controller with a key refuses an agent that cannot prove it.
    let mut open = {
        let mut c = bed.tb.cmd(1, &bin());
        c.args(["agent", "--listen", &format!("{}:5291", link.v4[1])]);
        AgentProc::start(c)
    };
    bed.ws(&["run", "--to", &open.addr, "--psk-file", k, "--bytes", "1M"])
        .fails_with("did not prove it holds the key");
    open.assert_alive();
    // the keyed agent is still fine after all of the above
    std::thread::sleep(Duration::from_millis(500));
    bed.assert_serves(&mut a, &["--psk-file", k]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn agent_vanishes_mid_test() {
    let bed = Bed::new();
    let a = bed.agent(&[]);
    let mut c = bed.tb.cmd(0, &bin());
    c.args([
        "run",
        "--to",
        &a.addr,
        "--duration",
        "30s",
        "--direction",
        "receive",
    ]);
    let accepted = a.count("test accepted");
    let controller = std::thread::spawn(move || run(c, Duration::from_secs(30)));
    assert!(a.wait_count("test accepted", accepted + 1, Duration::from_secs(10)));
    std::thread::sleep(Duration::from_millis(700));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(a.pid() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let started = std::time::Instant::now();
    let o = controller.join().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "controller took {:?} to notice",
        started.elapsed()
    );
    o.fails_with("agent went away mid-test");
}

#[test]
fn a_dripping_controller_is_cut_off() {
    // One byte every second and a half keeps every single read under the
    // reply timeout; the whole preamble must still arrive within it.
    let bed = Bed::new();
    let mut a = bed.agent(&[]);
    let mut c = bed.raw(&a);
    assert_eq!(frame::read_preamble(&mut c).unwrap(), PROTOCOL_VERSION);
    let started = std::time::Instant::now();
    let mut closed = false;
    for b in b"WIRESPD\0\0\x01".iter().take(9) {
        if c.write_all(&[*b]).is_err() {
            closed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(1500));
        if a.count("timed out") > 0 {
            closed = true;
            break;
        }
    }
    assert!(
        closed,
        "the agent kept a dripping connection for {:?}",
        started.elapsed()
    );
    assert!(
        started.elapsed() < Duration::from_secs(13),
        "{:?}",
        started.elapsed()
    );
    assert!(
        a.wait_log("timed out reading preamble", Duration::from_secs(3)),
        "{}",
        a.log_text()
    );
    bed.assert_serves(&mut a, &[]);
}
