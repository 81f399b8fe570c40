//! Third-party pairs: two agents carry the data, the controller only
//! orchestrates. The testbed has a management network apart from the data
//! links: host 0 (the controller) has one link to every agent and routes
//! between them (control traffic only: an agent vouching to another); each
//! pair's two agents share their own veth on their own subnet. The checks:
//! exact bytes on both ends, the controller's interfaces carrying only
//! control traffic, start skew under 1 ms, and hostile orders refused
//! with both agents serving on.

use std::io::Write;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::Duration;
use wirespeed::control::frame::{self, PROTOCOL_VERSION};
use wirespeed::control::messages::{Msg, OriginateOrder, ServeOrder};
use wirespeed::control::token::Token;
use wirespeed::datapath::socket::FlowHeader;
use wirespeed::spec::{Direction, FlowId, Limit, Mode, TestSpec};
use wirespeed::testbed::Testbed;
use wirespeed_tests::process::{run, AgentProc, Output};
use wirespeed_tests::testbed::sh;
use wirespeed_tests::{bin, in_netns, require_root};

/// Controller, `pairs` client agents and `pairs` server agents.
struct Fleet {
    tb: Testbed,
    agents: Vec<AgentProc>,
    pairs: usize,
}

impl Fleet {
    /// Hosts: 0 controller; pair i's client is host 1+2i, its server 2+2i.
    /// Links: agent host h's management link is link h-1 (controller on
    /// side a); pair i's data link is link 2*pairs+i (client on side a).
    fn new(pairs: usize, extra: impl Fn(usize) -> Vec<String>) -> Fleet {
        require_root();
        let n = 2 * pairs;
        let mut links: Vec<(usize, usize)> = (1..=n).map(|h| (0, h)).collect();
        links.extend((0..pairs).map(|i| (1 + 2 * i, 2 + 2 * i)));
        let tb = Testbed::new("wspair", n + 1, &links)
            .unwrap_or_else(|e| panic!("building the testbed: {e}"));
        let ns0 = tb.ns(0).to_string();
        for key in ["net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"] {
            sh("ip", &["netns", "exec", &ns0, "sysctl", "-qw", key]).unwrap();
        }
        for h in 1..=n {
            let via = tb.links[h - 1].v4[0].to_string();
            sh(
                "ip",
                &["-n", tb.ns(h), "route", "add", "default", "via", &via],
            )
            .unwrap();
        }
        let agents = (1..=n)
            .map(|h| {
                let mut c = tb.cmd(h, &bin());
                c.args([
                    "agent",
                    "--listen",
                    &format!("{}:5290", tb.links[h - 1].v4[1]),
                    "--data-timeout",
                    "3s",
                ])
                .args(extra(h));
                AgentProc::start(c)
            })
            .collect();
        Fleet { tb, agents, pairs }
    }

    fn client(&self, i: usize) -> &AgentProc {
        &self.agents[2 * i]
    }

    fn server(&self, i: usize) -> &AgentProc {
        &self.agents[2 * i + 1]
    }

    fn data_link(&self, i: usize) -> &wirespeed::testbed::Link {
        &self.tb.links[2 * self.pairs + i]
    }

    /// `wirespeed ARGS` in the controller's namespace.
    fn ws(&self, args: &[&str]) -> Output {
        let mut c = self.tb.cmd(0, &bin());
        c.args(args);
        run(c, Duration::from_secs(90))
    }

    /// Bytes received plus sent over all of the controller's interfaces.
    fn controller_bytes(&self) -> u64 {
        (0..2 * self.pairs)
            .map(|k| {
                let dev = &self.tb.links[k].ifname[0];
                ["rx_bytes", "tx_bytes"]
                    .iter()
                    .map(|f| {
                        sh(
                            "ip",
                            &[
                                "netns",
                                "exec",
                                self.tb.ns(0),
                                "cat",
                                &format!("/sys/class/net/{dev}/statistics/{f}"),
                            ],
                        )
                        .unwrap()
                        .trim()
                        .parse::<u64>()
                        .unwrap()
                    })
                    .sum::<u64>()
            })
            .sum()
    }

    /// `run --from client(i) --to server(i)` with the data on pair i's
    /// link, `v6` choosing its family; `extra` appended.
    fn run_pair(&self, i: usize, v6: bool, extra: &[&str]) -> Output {
        let l = self.data_link(i);
        let server_data = if v6 {
            l.v6[1].to_string()
        } else {
            l.v4[1].to_string()
        };
        let mut args = vec![
            "run",
            "--from",
            &self.client(i).addr,
            "--to",
            &self.server(i).addr,
            "--remote-local",
            &server_data,
            "--json",
        ];
        args.extend_from_slice(extra);
        self.ws(&args)
    }

    /// A good pair still runs on every agent.
    fn assert_serves(&mut self) {
        for a in &mut self.agents {
            a.assert_alive();
        }
        for i in 0..self.pairs {
            let j = self
                .run_pair(i, false, &["--bytes", "1M", "--mode", "socket"])
                .ok()
                .json();
            assert_eq!(j["end"]["received"]["bytes"], 1u64 << 20);
        }
    }
}

/// Exact bytes on both ends of every flow, and the start skew in bounds.
fn assert_exact(j: &serde_json::Value, bytes: u64) {
    assert_eq!(j["end"]["errors"], serde_json::json!([]), "{j}");
    assert_eq!(j["end"]["sent"]["bytes"], bytes, "{}", j["end"]);
    assert_eq!(j["end"]["received"]["bytes"], bytes, "{}", j["end"]);
    for f in j["end"]["flows"].as_array().unwrap() {
        assert_eq!(
            f["sender"]["bytes"], f["receiver"]["bytes"],
            "both ends of a flow count the same bytes: {f}"
        );
    }
    let skew = j["end"]["timing"]["start_skew_us"].as_i64().unwrap();
    assert!(skew.abs() < 1000, "start skew {skew} us");
}

#[test]
fn run_from_to_moves_exact_bytes_agent_to_agent_ipv4_and_ipv6() {
    let fleet = Fleet::new(1, |_| Vec::new());
    let before = fleet.controller_bytes();
    let mut moved = 0;
    for (v6, dir) in [
        (false, "send"),
        (true, "send"),
        (false, "receive"),
        (true, "receive"),
    ] {
        let j = fleet
            .run_pair(
                0,
                v6,
                &[
                    "--bytes",
                    "32M",
                    "--mode",
                    "socket",
                    "--direction",
                    dir,
                    "--streams",
                    "2",
                ],
            )
            .ok()
            .json();
        assert_exact(&j, 32 << 20);
        moved += 32u64 << 20;
        assert_eq!(
            j["config"]["from"],
            fleet.client(0).addr.as_str(),
            "{}",
            j["config"]
        );
        // Each end's own host: the client agent stands where the controller's end would.
        assert_ne!(j["end"]["local_host"], serde_json::Value::Null);
        assert_ne!(j["end"]["cpu"]["remote"], serde_json::Value::Null);
    }
    let control = fleet.controller_bytes() - before;
    assert!(
        control < moved / 100,
        "the controller's links carried {control} bytes while the pair moved {moved}: data went through it"
    );
}

#[test]
fn run_from_to_runs_tcplite_on_both_agents() {
    let fleet = Fleet::new(1, |_| Vec::new());
    let l = fleet.data_link(0).clone();
    let before = fleet.controller_bytes();
    for dir in ["send", "receive"] {
        let j = fleet
            .run_pair(
                0,
                false,
                &[
                    "--bytes",
                    "16M",
                    "--direction",
                    dir,
                    "--mode",
                    "xdp",
                    "--iface",
                    &l.ifname[0],
                    "--remote-mode",
                    "xdp",
                    "--remote-iface",
                    &l.ifname[1],
                ],
            )
            .ok()
            .json();
        assert_exact(&j, 16 << 20);
        assert!(
            j["end"]["mode"].as_str().unwrap().starts_with("xdp"),
            "{}",
            j["end"]["mode"]
        );
        assert!(
            j["config"]["remote_mode"]
                .as_str()
                .unwrap()
                .starts_with("xdp"),
            "{}",
            j["config"]
        );
    }
    let control = fleet.controller_bytes() - before;
    assert!(
        control < (32 << 20) / 100,
        "controller links carried {control} bytes"
    );
}

/// A control connection from the controller's namespace that has passed
/// the handshake (no key).
fn control(fleet: &Fleet, agent: &AgentProc) -> TcpStream {
    let mut c = in_netns(fleet.tb.ns(0), || TcpStream::connect(&agent.addr)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    frame::write_preamble(&mut c, PROTOCOL_VERSION).unwrap();
    assert_eq!(frame::read_preamble(&mut c).unwrap(), PROTOCOL_VERSION);
    let Msg::Challenge { .. } = frame::read_msg(&mut c).unwrap() else {
        panic!("expected a challenge")
    };
    frame::write_msg(
        &mut c,
        &Msg::Hello {
            nonce: wirespeed::control::auth::to_hex(&wirespeed::control::auth::nonce()),
            proof: None,
            version: "test".into(),
        },
    )
    .unwrap();
    let Msg::Welcome { .. } = frame::read_msg(&mut c).unwrap() else {
        panic!("expected welcome")
    };
    c
}

fn spec(bytes: u64) -> TestSpec {
    TestSpec {
        direction: Direction::Send,
        limit: Limit::Bytes { bytes },
        msg_size: 8192,
        sockbuf: None,
        streams: 1,
        remote_iface: None,
        data_port: None,
        raw: None,
        test: Default::default(),
        remote_mode: Mode::Socket,
        peer_xdp: false,
        remote_workers: Default::default(),
        remote_xdp_bind: Default::default(),
        sender_tcp_ms: None,
        verify: false,
    }
}

fn error_of(m: Msg) -> String {
    match m {
        Msg::Error { message, .. } => message,
        other => panic!("expected an error, got {}", other.name()),
    }
}

#[test]
fn hostile_orders_are_refused_and_both_agents_serve_on() {
    let mut fleet = Fleet::new(1, |_| Vec::new());
    let l = fleet.data_link(0).clone();
    let server_data = IpAddr::V4(l.v4[1]);
    let client_data = IpAddr::V4(l.v4[0]);

    // A token bound to another address: the real client's connection is
    // closed unread, and the server gives up with the reason.
    let token = Token::fresh();
    let mut s = control(&fleet, fleet.server(0));
    let serve = |token: &Token, client: IpAddr| {
        Msg::Serve(Box::new(ServeOrder {
            spec: spec(1 << 20),
            token: token.hex(),
            client,
            local: Some(server_data),
        }))
    };
    frame::write_msg(&mut s, &serve(&token, "198.18.250.9".parse().unwrap())).unwrap();
    let Msg::Accepted { data_port, .. } = frame::read_msg(&mut s).unwrap() else {
        panic!("expected accepted")
    };
    let data = SocketAddr::new(server_data, data_port);
    let send_header = |cookie: [u8; 16]| {
        in_netns(fleet.tb.ns(1), || {
            let mut c = TcpStream::connect(data).unwrap();
            let h = FlowHeader {
                cookie,
                id: FlowId {
                    stream: 0,
                    direction: Direction::Send,
                },
            };
            let _ = c.write_all(&h.encode());
        })
    };
    send_header(token.0);
    assert!(fleet
        .server(0)
        .wait_log("takes data only from 198.18.250.9", Duration::from_secs(5)));
    // Nor with any other token from there.
    send_header(Token::fresh().0);
    assert!(fleet.server(0).wait_count(
        "takes data only from 198.18.250.9",
        2,
        Duration::from_secs(5)
    ));
    let m = error_of(frame::read_msg(&mut s).unwrap());
    assert!(m.contains("only 0 of 1"), "{m}");
    // A data connection without a prepared test: nothing listens any more.
    let e = in_netns(fleet.tb.ns(1), || TcpStream::connect(data)).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}");

    // The same token again: it works once.
    let mut s = control(&fleet, fleet.server(0));
    frame::write_msg(&mut s, &serve(&token, client_data)).unwrap();
    let m = error_of(frame::read_msg(&mut s).unwrap());
    assert!(m.contains("already used"), "{m}");

    // A client told to send to a third host (the controller): the server
    // agent named cannot vouch for that address, so nothing is sent.
    let mut c = control(&fleet, fleet.client(0));
    let third: IpAddr = IpAddr::V4(fleet.tb.links[0].v4[0]);
    frame::write_msg(
        &mut c,
        &Msg::Originate(Box::new(OriginateOrder {
            spec: spec(1 << 20),
            server: third,
            mode: Mode::Socket,
            local: None,
            iface: None,
            workers: Default::default(),
            interval_ms: None,
        })),
    )
    .unwrap();
    let Msg::Originating { .. } = frame::read_msg(&mut c).unwrap() else {
        panic!("expected originating")
    };
    frame::write_msg(
        &mut c,
        &Msg::Connect {
            server_agent: fleet.server(0).addr.parse().unwrap(),
            data_port: 5001,
            token: Token::fresh().hex(),
        },
    )
    .unwrap();
    let m = error_of(frame::read_msg(&mut c).unwrap());
    assert!(
        m.contains("did not vouch") && m.contains("holds no prepared pair test"),
        "{m}"
    );

    fleet.assert_serves();
}

#[test]
fn client_agents_apply_their_own_policy() {
    // Host 1 (pair 0's client) may use only its management interface and
    // host 3 (pair 1's client) originates nothing.
    let mut fleet = Fleet::new(2, |h| match h {
        1 => vec!["--allow-iface".into(), "lo".into()],
        3 => vec!["--no-originate".into()],
        _ => Vec::new(),
    });
    fleet
        .run_pair(0, false, &["--bytes", "1M", "--mode", "socket"])
        .fails_with("not an interface this agent allows");
    let l = fleet.data_link(0).clone();
    fleet
        .run_pair(
            0,
            false,
            &["--bytes", "1M", "--mode", "socket", "--iface", &l.ifname[0]],
        )
        .fails_with("is not allowed on this agent");
    fleet
        .run_pair(1, false, &["--bytes", "1M", "--mode", "socket"])
        .fails_with("does not originate tests (--no-originate)");
    // The server end of a --no-originate agent still serves: swap roles.
    let j = fleet
        .ws(&[
            "run",
            "--from",
            &fleet.server(1).addr,
            "--to",
            &fleet.client(1).addr,
            "--remote-local",
            &fleet.data_link(1).v4[0].to_string(),
            "--bytes",
            "1M",
            "--mode",
            "socket",
            "--json",
        ])
        .ok()
        .json();
    assert_exact(&j, 1 << 20);
    for a in &mut fleet.agents {
        a.assert_alive();
    }
    // Pair 0's client still serves a controller's test of its own.
    let j = fleet
        .ws(&[
            "run",
            "--to",
            &fleet.client(0).addr,
            "--bytes",
            "1M",
            "--mode",
            "socket",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(j["end"]["received"]["bytes"], 1u64 << 20);
}

/// The plan for `fleet`: `per_link` third-party pairs on every data
/// link, one point at all of them, in `directions`.
fn plan_text(fleet: &Fleet, duration: &str, per_link: usize, directions: &str) -> String {
    let mut t = format!(
        "name = \"third-party\"\n[defaults]\nduration = \"{duration}\"\nmode = \"socket\"\nlink_speed = \"10G\"\ndirections = {directions}\n[sweep]\npairs = [{}]\n",
        fleet.pairs * per_link
    );
    for (k, a) in fleet.agents.iter().enumerate() {
        t += &format!("[[agents]]\nname = \"a{k}\"\naddress = \"{}\"\n", a.addr);
    }
    for n in 0..per_link {
        for i in 0..fleet.pairs {
            t += &format!(
                "[[pairs]]\nname = \"p{i}.{n}\"\nclient = \"a{}\"\nserver = \"a{}\"\nremote_local = \"{}\"\n",
                2 * i,
                2 * i + 1,
                fleet.data_link(i).v4[1]
            );
        }
    }
    t
}

/// A pair's per-second figures, sampled by its client agent: whole
/// intervals back to back, no more bytes than the flows moved, and each
/// flow's sender TCP state from the end that sends (the client's own in
/// send, the server agent's in receive).
fn assert_intervals(run: &serde_json::Value, direction: &str, bytes: u64) {
    let ivs = run["intervals"].as_array().unwrap();
    assert!(!ivs.is_empty(), "no intervals: {}", run["config"]);
    let mut edge = 0.0;
    let mut sum = 0;
    for iv in ivs {
        let (a, b) = (iv["start"].as_f64().unwrap(), iv["end"].as_f64().unwrap());
        assert!((a - edge).abs() < 1e-9 && b > a, "{iv}");
        edge = b;
        sum += iv["sum"]["bytes"].as_u64().unwrap();
    }
    assert!(sum > 0 && sum <= bytes, "intervals {sum} of {bytes} bytes");
    let from = if direction == "send" {
        "local"
    } else {
        "agent"
    };
    let last = ivs.last().unwrap();
    assert!(
        last["flows"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["tcp_from"] == from && f["rtt_us"].as_u64().is_some()),
        "{direction}: {last}"
    );
}

#[test]
fn plan_of_four_third_party_pairs_keeps_data_off_the_controller() {
    let fleet = Fleet::new(4, |_| Vec::new());
    let dir = std::env::temp_dir().join(format!("ws-pairs-plan-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let plan = dir.join("plan.toml");
    std::fs::write(&plan, plan_text(&fleet, "2s", 1, "[\"send\", \"receive\"]")).unwrap();
    let json = dir.join("out.json");
    let csv = dir.join("out.csv");
    let before = fleet.controller_bytes();
    let out = fleet.ws(&[
        "plan",
        plan.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
        "--csv",
        csv.to_str().unwrap(),
    ]);
    let text = out.ok().stdout;
    let control = fleet.controller_bytes() - before;
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let points = j["points"].as_array().unwrap();
    assert_eq!(points.len(), 2, "send and receive at 4 pairs");
    let mut moved = 0u64;
    for p in points {
        assert_eq!(p["error"], serde_json::Value::Null, "{p}");
        let rep = &p["repetitions"][0];
        let skew = rep["start_skew_us"].as_u64().unwrap();
        assert!(skew < 1000, "start skew {skew} us over 4 third-party pairs");
        for (i, x) in rep["pairs"].as_array().unwrap().iter().enumerate() {
            assert_eq!(x["client"], format!("a{}", 2 * i));
            assert_eq!(x["agent"], format!("a{}", 2 * i + 1));
            let end = &x["run"]["end"];
            assert_eq!(end["errors"], serde_json::json!([]), "{end}");
            let bytes = end["received"]["bytes"].as_u64().unwrap();
            assert!(bytes > 1 << 20, "{end}");
            assert_eq!(
                end["sent"]["bytes"], bytes,
                "both ends count the same bytes"
            );
            moved += bytes;
            assert_intervals(&x["run"], p["direction"].as_str().unwrap(), bytes);
        }
        // Every agent took part; the controller only orchestrated.
        let hosts: Vec<&str> = rep["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["name"].as_str().unwrap())
            .collect();
        assert_eq!(hosts.len(), 8, "{hosts:?}");
        assert!(!hosts.contains(&"controller"), "{hosts:?}");
    }
    assert!(
        control < moved / 100,
        "the controller's links carried {control} bytes of {moved} moved"
    );
    assert!(text.contains("a0>a1"), "the table names both ends: {text}");
    let csv = std::fs::read_to_string(&csv).unwrap();
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    let client = header
        .iter()
        .position(|&c| c == "client")
        .expect("a client column");
    let row: Vec<&str> = csv.lines().nth(1).unwrap().split(',').collect();
    assert_eq!(row[client], "a0", "{csv}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The control plane at scale: 256 third-party pairs over 64 agents (32
/// data links, 8 pairs each), prepared, clock-matched and started at one
/// instant. Ignored by default (a minute of setup on a small machine);
/// run it with `--ignored --nocapture` to see the figures.
#[test]
#[ignore]
fn scale_256_pairs_over_64_agents() {
    let t0 = std::time::Instant::now();
    let fleet = Fleet::new(32, |_| Vec::new());
    let setup = t0.elapsed();
    let dir = std::env::temp_dir().join(format!("ws-pairs-scale-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let plan = dir.join("plan.toml");
    std::fs::write(&plan, plan_text(&fleet, "1s", 8, "[\"send\"]")).unwrap();
    let json = dir.join("out.json");
    let t1 = std::time::Instant::now();
    let out = fleet.ws(&[
        "plan",
        plan.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
    ]);
    let wall = t1.elapsed();
    let _ = out.ok();
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let p = &j["points"][0];
    assert_eq!(p["error"], serde_json::Value::Null, "{p}");
    let rep = &p["repetitions"][0];
    let pairs = rep["pairs"].as_array().unwrap();
    assert_eq!(pairs.len(), 256);
    for x in pairs {
        let end = &x["run"]["end"];
        assert_eq!(end["errors"], serde_json::json!([]), "{end}");
        assert_eq!(end["sent"]["bytes"], end["received"]["bytes"], "{end}");
    }
    let skew = rep["start_skew_us"].as_u64().unwrap();
    // Every end's start after the earliest, and how late each woke by its
    // own clock against its planned instant.
    let mut offsets: Vec<u64> = Vec::new();
    let mut late: Vec<u64> = Vec::new();
    for x in pairs {
        let t = &x["run"]["end"]["timing"];
        offsets.extend(
            x["start_offset_us"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap()),
        );
        for f in [&t["local_start"], &t["remote_start"]] {
            late.push(f["late_us"].as_u64().unwrap());
        }
    }
    offsets.sort_unstable();
    late.sort_unstable();
    let c = &rep["control"];
    println!(
        "scale: testbed {:.1} s; plan of 256 pairs over 64 agents (1 s of data) took {:.2} s wall: prepare {:.0} ms, clocks {:.0} ms, start lead {:.0} ms; \
         start after the earliest end: median {} us, max {skew} us; late against the planned instant: median {} us, max {} us; aggregate {:.2} Gb/s; late mark: {}",
        setup.as_secs_f64(),
        wall.as_secs_f64(),
        c["prepare_ms"].as_f64().unwrap(),
        c["clock_ms"].as_f64().unwrap(),
        c["start_lead_ms"].as_f64().unwrap(),
        offsets[offsets.len() / 2],
        late[late.len() / 2],
        late[late.len() - 1],
        rep["aggregate_bps"].as_f64().unwrap() / 1e9,
        rep["late"]
    );
    assert!(skew < 1000, "start skew {skew} us");
    assert!(wall.as_secs_f64() < 30.0, "a 1 s point took {wall:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
