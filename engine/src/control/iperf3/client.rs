//! `wirespeed run --iperf3 HOST`: a test against an unmodified `iperf3
//! -s`, this end's data path being kernel sockets or TCP-lite. The
//! report carries the server's own figures (its results document) beside
//! ours, and whether the byte counts agree.

use super::conn;
use super::streams::{self, Streams};
use super::wire::{self, Params, Results, State};
use crate::datapath::socket::SocketOpts;
use crate::report::model::{CpuReport, FlowResult, Interval, Throughput};
use crate::spec::{Direction, Mode, XdpBind};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How long a state or document from the server may take.
const STEP: Duration = Duration::from_secs(10);
/// iperf3's block size, the default for `len`.
pub const IPERF3_LEN: u32 = 128 << 10;

/// What to run against the server.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    pub server: SocketAddr,
    /// Send: we send, the server receives; Receive: iperf3's `-R`.
    pub direction: Direction,
    pub streams: u16,
    pub duration: Duration,
    /// Bytes over all streams (iperf3's `-n`).
    pub bytes: Option<u64>,
    /// Bytes per read and write, ours and the server's (`-l`).
    pub len: u32,
    pub sockbuf: Option<u32>,
    pub mode: Mode,
    pub iface: Option<String>,
    pub local: Option<IpAddr>,
    pub xdp_bind: XdpBind,
    pub queues: Option<Vec<u16>>,
    pub cpus: Vec<u16>,
    /// Time between interval samples; None = none.
    pub interval: Option<Duration>,
}

/// What a test against iperf3 measured (`--json`: schema `wirespeed.iperf3/1`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Iperf3Report {
    pub schema: String,
    pub server: String,
    pub direction: Direction,
    /// `socket`, `xdp-copy`, ...: this end's data path, and why.
    pub mode: String,
    pub mode_reason: String,
    /// This end's streams and their sum.
    pub streams: Vec<FlowResult>,
    pub total: Throughput,
    /// The server's results document as it sent it, and its byte sum.
    pub server_results: Results,
    pub server_bytes: u64,
    /// Our byte count equals the server's.
    pub bytes_agree: bool,
    pub cpu: CpuReport,
    /// Our streams' bytes per interval, as `run` reports them; the last
    /// one partial. Together they sum to `total`.
    #[serde(default)]
    pub intervals: Vec<Interval>,
}

fn params(o: &ClientOptions) -> Params {
    Params {
        tcp: Some(true),
        time: o.duration.as_secs_f64().ceil().max(1.0),
        num: o.bytes.unwrap_or(0) as f64,
        parallel: f64::from(o.streams),
        reverse: (o.direction == Direction::Receive).then_some(true),
        window: o.sockbuf.map(f64::from),
        len: Some(f64::from(o.len)),
        client_version: Some(format!("wirespeed {}", crate::VERSION)),
        ..Params::default()
    }
}

/// Whatever the server says instead of the state we wait for.
fn unexpected(conn: &TcpStream, got: State, want: &str) -> Error {
    match got {
        State::AccessDenied => {
            Error::Refused("the iperf3 server is busy running a test: try again later".into())
        }
        State::ServerError => match conn::read_error(conn, STEP) {
            Ok((code, errno)) => Error::Refused(format!(
                "the iperf3 server refused the test: {} (iperf3 error {code}, errno {errno})",
                wire::error_text(code)
            )),
            Err(e) => e,
        },
        State::ServerTerminate => Error::PeerLost("the iperf3 server terminated the test".into()),
        s => Error::Protocol(format!("the iperf3 server sent {s:?} where {want} was due")),
    }
}

fn expect(conn: &TcpStream, want: State, within: Duration) -> Result<()> {
    match conn::read_state(conn, within)? {
        s if s == want => Ok(()),
        s => Err(unexpected(conn, s, &format!("{want:?}"))),
    }
}

/// Run one test against an iperf3 server. `stop` ends it early (Ctrl-C);
/// `on_interval` sees each interval as it is taken.
pub fn run(
    o: &ClientOptions,
    stop: &AtomicBool,
    on_interval: &mut dyn FnMut(&Interval),
) -> Result<Iperf3Report> {
    if o.streams == 0 || o.streams > crate::spec::MAX_STREAMS {
        return Err(Error::Invalid(format!(
            "--streams runs 1 to {} streams",
            crate::spec::MAX_STREAMS
        )));
    }
    let conn = TcpStream::connect_timeout(&o.server, STEP).map_err(|e| {
        Error::PeerLost(format!(
            "connecting to the iperf3 server at {}: {e}",
            o.server
        ))
    })?;
    let _ = conn.set_nodelay(true);
    let cookie = wire::new_cookie();
    // This end's TCP-lite ports are reserved and steered before the test.
    let (end, mode_reason) = open_end(o, &conn)?;
    conn::write_all(&conn, &cookie, "sending the cookie")?;
    expect(&conn, State::ParamExchange, STEP)?;
    conn::write_json(&conn, &params(o))?;
    expect(&conn, State::CreateStreams, STEP)?;
    let send = o.direction == Direction::Send;
    let per_stream = o
        .bytes
        .filter(|_| send)
        .map(|b| wire::split_bytes(b, usize::from(o.streams)));
    let mut data = connect(o, end, &cookie, per_stream.clone(), send)?;
    expect(&conn, State::TestStart, STEP)?;
    expect(&conn, State::TestRunning, STEP)?;
    let cpu0 = crate::metrics::cpu::CpuSnapshot::take();
    let start = data.start()?;
    let mut ticks = super::ticks::Ticks::new(start, o.interval, &data, on_interval);
    wait_for_end(
        o,
        &conn,
        &data,
        (start, per_stream.as_deref()),
        (stop, &mut ticks),
    )?;
    conn::write_state(&conn, State::TestEnd)?;
    // The server closes its streams at TEST_END: receivers read to its
    // FIN, so they hold everything it sent.
    let (flows, mode) = data.finish(Duration::from_secs(5));
    let intervals = ticks.finish(Instant::now());
    let cpu = cpu0.report(&crate::metrics::cpu::CpuSnapshot::take());
    expect(&conn, State::ExchangeResults, STEP)?;
    conn::write_json(&conn, &our_results(&flows, &cpu, send))?;
    let theirs: Results = conn::read_json(&conn, STEP)?;
    expect(&conn, State::DisplayResults, STEP)?;
    conn::write_state(&conn, State::IperfDone)?;
    let total = Throughput::sum(flows.iter().map(|f| &f.throughput));
    let server_bytes = theirs.total_bytes();
    Ok(Iperf3Report {
        schema: "wirespeed.iperf3/1".into(),
        server: o.server.to_string(),
        direction: o.direction,
        mode,
        mode_reason,
        bytes_agree: total.bytes == server_bytes,
        total,
        streams: flows,
        server_bytes,
        server_results: theirs,
        cpu,
        intervals,
    })
}

/// Until the test's end: a sender's bytes all acknowledged (exact byte
/// agreement with the server's count), a receiver's time or byte count
/// reached. The control connection is watched for the server giving up.
fn wait_for_end(
    o: &ClientOptions,
    conn: &TcpStream,
    data: &Streams,
    (start, per_stream): (Instant, Option<&[u64]>),
    (stop, ticks): (&AtomicBool, &mut super::ticks::Ticks),
) -> Result<()> {
    let hard = start + o.duration.max(Duration::from_secs(3600)) + Duration::from_secs(30);
    let mut last = (data.moved(), Instant::now());
    loop {
        if let Some(s) = conn::poll_state(conn, Duration::from_millis(20))? {
            return Err(unexpected(conn, s, "nothing"));
        }
        let now = Instant::now();
        ticks.poll(now);
        if stop.load(Ordering::Relaxed) {
            let _ = conn::write_state(conn, State::ClientTerminate);
            return Err(Error::PeerLost("stopped before the end".into()));
        }
        if now >= hard {
            return Err(Error::PeerLost("the test ran past its time limit".into()));
        }
        let moved = data.moved();
        if moved != last.0 {
            last = (moved.clone(), now);
        }
        let timed_out = o.bytes.is_none() && now >= start + o.duration;
        let done = if data.sending() {
            let reached = per_stream.is_some_and(|b| b == moved.as_slice());
            match data.drained() {
                Some(d) => d,
                // TCP-lite: acknowledged counts reached, or settled after the time.
                None => reached || (timed_out && now - last.1 >= Duration::from_millis(200)),
            }
        } else {
            timed_out || o.bytes.is_some_and(|b| moved.iter().sum::<u64>() >= b)
        };
        if done {
            if data.sending() {
                // Acknowledged is in the server's kernel; give its reader
                // a moment to take it before TEST_END closes the streams.
                std::thread::sleep(Duration::from_millis(100));
            }
            return Ok(());
        }
        if now - last.1 >= Duration::from_secs(10) && !(data.sending() && timed_out) {
            return Err(Error::PeerLost("no data moved for 10 s".into()));
        }
    }
}

/// Our side's results document, for the server.
fn our_results(flows: &[FlowResult], cpu: &CpuReport, send: bool) -> Results {
    let figures: Vec<_> = flows
        .iter()
        .map(|f| {
            let retransmits = match (send, &f.tcp) {
                (true, Some(t)) => i64::from(t.retransmits),
                _ => -1,
            };
            (f.throughput.bytes, retransmits, f.throughput.seconds)
        })
        .collect();
    super::server::results(&figures, cpu, if send { 1 } else { -1 })
}

/// This end's AF_XDP end, for `xdp` and for `auto` where it runs; the
/// reason for the mode chosen.
#[cfg(target_os = "linux")]
fn open_end(
    o: &ClientOptions,
    conn: &TcpStream,
) -> Result<(Option<crate::datapath::xdp::stream::StreamEnd>, String)> {
    use crate::datapath::xdp::stream::{Ports, StreamEnd};
    let local = crate::control::local_ip(conn)?;
    let ports = Ports::Block(usize::from(o.streams));
    match o.mode {
        Mode::Socket => Ok((None, "socket: asked for (--mode socket)".into())),
        Mode::Xdp => {
            let iface = o.iface.as_deref().ok_or_else(|| {
                Error::Invalid("--mode xdp runs TCP-lite on an interface: add --iface IF".into())
            })?;
            let end = StreamEnd::open(
                iface,
                local,
                ports,
                (o.queues.as_deref(), o.xdp_bind),
                false,
            )?;
            Ok((Some(end), "xdp: asked for (--mode xdp)".into()))
        }
        Mode::Auto => Ok(StreamEnd::open_auto(
            o.iface.as_deref(),
            &crate::datapath::xdp::neigh::route_to(o.server.ip()),
            (local, o.server.ip()),
            (ports, o.queues.as_deref(), o.xdp_bind),
            usize::from(o.streams),
            crate::auto::Peer::Kernel,
        )),
    }
}

#[cfg(not(target_os = "linux"))]
fn open_end(o: &ClientOptions, _conn: &TcpStream) -> Result<(Option<()>, String)> {
    match o.mode {
        Mode::Xdp => Err(Error::Invalid("--mode xdp (TCP-lite) needs Linux".into())),
        _ => Ok((None, "socket: AF_XDP needs Linux".into())),
    }
}

/// The data connections, on the path `end` says.
#[cfg(target_os = "linux")]
fn connect(
    o: &ClientOptions,
    end: Option<crate::datapath::xdp::stream::StreamEnd>,
    cookie: &wire::Cookie,
    per_stream: Option<Vec<u64>>,
    send: bool,
) -> Result<Streams> {
    match end {
        Some(end) => connect_xdp(o, end, cookie, per_stream, send),
        None => connect_socket(o, cookie, per_stream, send),
    }
}

#[cfg(not(target_os = "linux"))]
fn connect(
    o: &ClientOptions,
    _end: Option<()>,
    cookie: &wire::Cookie,
    per_stream: Option<Vec<u64>>,
    send: bool,
) -> Result<Streams> {
    connect_socket(o, cookie, per_stream, send)
}

fn connect_socket(
    o: &ClientOptions,
    cookie: &wire::Cookie,
    per_stream: Option<Vec<u64>>,
    send: bool,
) -> Result<Streams> {
    let opts = SocketOpts {
        sockbuf: o.sockbuf,
        iface: o.iface.clone(),
        local: o.local,
    };
    let socks = streams::connect_sockets(o.server, &opts, cookie, usize::from(o.streams))?;
    let duration = (send && o.bytes.is_none()).then_some(o.duration);
    let hard = o.duration.max(Duration::from_secs(3600)) + Duration::from_secs(30);
    Ok(Streams::sockets(
        socks,
        send,
        (
            duration,
            per_stream.unwrap_or_default(),
            Duration::from_secs(10),
            hard,
        ),
        o.len as usize,
    ))
}

/// TCP-lite connections to the server's port, each sending the cookie
/// first; payload waits for the start.
#[cfg(target_os = "linux")]
fn connect_xdp(
    o: &ClientOptions,
    end: crate::datapath::xdp::stream::StreamEnd,
    cookie: &wire::Cookie,
    per_stream: Option<Vec<u64>>,
    send: bool,
) -> Result<Streams> {
    use crate::datapath::xdp::stream::{Flow, Open, RunPlan, StreamPlan, StreamWork};
    let peer_mac = crate::wire::ethernet::MacAddr(crate::datapath::xdp::neigh::resolve(
        &end.iface,
        end.ip,
        o.server.ip(),
    )?);
    let config = RunPlan::lan_config(
        end.mss(),
        None,
        o.sockbuf
            .map_or(crate::spec::TCPLITE_DEFAULT_BUFFER, |b| b as usize),
    );
    let placed = end.place(usize::from(o.streams), o.server);
    let counters: Vec<_> = placed.flows.iter().map(|_| Default::default()).collect();
    let plan = RunPlan {
        streams: placed
            .flows
            .iter()
            .enumerate()
            .map(|(k, &(p, worker))| StreamPlan {
                open: Open::Connect {
                    local: p,
                    remote: o.server,
                },
                worker: Some(worker),
                flow: if send { Flow::Send } else { Flow::Receive },
                prefix: cookie.to_vec(),
                bytes: per_stream.as_ref().and_then(|b| b.get(k).copied()),
                header: None,
                expect: Vec::new(),
            })
            .collect(),
        peer_mac,
        duration: (send && o.bytes.is_none()).then_some(o.duration),
        bytes: None,
        verify: false,
        config,
        idle: Duration::from_secs(10),
        hard: o.duration.max(Duration::from_secs(3600)) + Duration::from_secs(30),
        cpus: o.cpus.clone(),
        poll: Default::default(),
        counters: counters.clone(),
        stream_bytes: Vec::new(),
        ready: None,
        // The server sends until TEST_END, then closes: read to its FIN.
        receiver_limits: false,
        expect_ids: Vec::new(),
        rr: None,
        interval_latency: Vec::new(),
        placement: Some(placed.how),
    };
    let mode = end.mode;
    let gate = crate::datapath::xdp::stream::Gate::default();
    let halt = std::sync::Arc::new(AtomicBool::new(false));
    let work = StreamWork::spawn(end, plan, gate.clone(), &halt)?;
    Ok(Streams::xdp(work, (counters, gate, halt), send, mode))
}
