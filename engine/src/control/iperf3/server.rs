//! `wirespeed agent --iperf3-listen ADDR`: serves stock `iperf3 -c`, one
//! test at a time as iperf3 does (others are told ACCESS_DENIED), under
//! the agent's limits. A refused test goes through iperf3's own error
//! path (SERVER_ERROR and a code its client prints); a peer that stalls,
//! lies or hangs up costs one bounded session, never the listener.

use super::conn;
use super::streams::Streams;
use super::wire::{self, Limits, Params, Results, State};
use crate::{Error, Result};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a client's state or document may take.
const STEP: Duration = Duration::from_secs(10);
/// iperf3's control timers allow this much past the test's time.
const GRACE: Duration = Duration::from_secs(40);

/// What the iperf3 listener serves.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    pub limits: Limits,
    /// How long to wait for a test's data connections.
    pub data_timeout: Duration,
    /// A stream that moves nothing this long ends.
    pub idle: Duration,
    /// Most tests the agent runs at once (its own and iperf3's).
    pub max_tests: usize,
    /// Some: data connections on TCP-lite (`--iperf3-mode xdp`), on the
    /// route's interface towards the client, which must be one of these.
    pub tcplite: Option<Vec<String>>,
}

/// Where a new connection goes: a test collecting its streams takes it.
enum Phase {
    Idle,
    Collecting(mpsc::Sender<TcpStream>),
    Busy,
}

/// A bound iperf3 listener.
pub struct Server {
    listener: TcpListener,
    cfg: Arc<ServeConfig>,
    phase: Arc<Mutex<Phase>>,
    tests: Arc<AtomicUsize>,
}

impl Server {
    /// Bind `cfg.listen`; `tests` counts the agent's running tests.
    pub fn bind(cfg: ServeConfig, tests: Arc<AtomicUsize>) -> Result<Server> {
        let listener = TcpListener::bind(cfg.listen).map_err(|e| {
            Error::io(
                format!(
                    "listening for iperf3 clients on {} (--iperf3-listen)",
                    cfg.listen
                ),
                e,
            )
        })?;
        Ok(Server {
            listener,
            cfg: Arc::new(cfg),
            phase: Arc::new(Mutex::new(Phase::Idle)),
            tests,
        })
    }

    pub fn local_addr(&self) -> Result<SocketAddr> {
        self.listener
            .local_addr()
            .map_err(|e| Error::io("reading the iperf3 listen address", e))
    }

    /// Serve forever.
    pub fn serve(self) {
        loop {
            let (s, peer) = match self.listener.accept() {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!("iperf3: accept failed: {e}");
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
            };
            let mut phase = self.phase.lock().unwrap_or_else(|p| p.into_inner());
            match &*phase {
                Phase::Collecting(tx) => {
                    let _ = tx.send(s);
                }
                Phase::Busy => deny(s),
                Phase::Idle if self.tests.load(Ordering::SeqCst) >= self.cfg.max_tests => deny(s),
                Phase::Idle => {
                    *phase = Phase::Busy;
                    self.tests.fetch_add(1, Ordering::SeqCst);
                    let (cfg, ph, tests) =
                        (self.cfg.clone(), self.phase.clone(), self.tests.clone());
                    let spawned = std::thread::Builder::new()
                        .name(format!("iperf3-{peer}"))
                        .spawn(move || {
                            match session(s, &cfg, &ph) {
                                Ok(summary) => tracing::info!(%peer, "iperf3 test done: {summary}"),
                                Err(e) => tracing::warn!(%peer, "iperf3 test: {e}"),
                            }
                            *ph.lock().unwrap_or_else(|p| p.into_inner()) = Phase::Idle;
                            tests.fetch_sub(1, Ordering::SeqCst);
                        });
                    if let Err(e) = spawned {
                        tracing::warn!(%peer, "iperf3: could not start a session thread: {e}");
                        *phase = Phase::Idle;
                        self.tests.fetch_sub(1, Ordering::SeqCst);
                    }
                }
            }
        }
    }
}

/// Tell a connection the server is busy, as iperf3 does, without reading.
fn deny(s: TcpStream) {
    let _ = s.set_write_timeout(Some(Duration::from_secs(1)));
    let _ = conn::write_state(&s, State::AccessDenied);
}

fn set_phase(ph: &Mutex<Phase>, p: Phase) {
    *ph.lock().unwrap_or_else(|p| p.into_inner()) = p;
}

/// One test, from the cookie to IPERF_DONE.
fn session(c: TcpStream, cfg: &ServeConfig, ph: &Mutex<Phase>) -> Result<String> {
    let _ = c.set_nodelay(true);
    let cookie = conn::read_cookie(&c, Duration::from_secs(5))?;
    conn::write_state(&c, State::ParamExchange)?;
    let p: Params = match conn::read_json(&c, STEP) {
        Ok(p) => p,
        Err(e) => {
            let _ = conn::write_error(&c, wire::code::RECV_PARAMS);
            return Err(e);
        }
    };
    let a = match p.accept(&cfg.limits) {
        Ok(a) => a,
        Err((code, why)) => {
            let _ = conn::write_error(&c, code);
            return Err(Error::Refused(format!(
                "{why}; told the client: {}",
                wire::error_text(code)
            )));
        }
    };
    let send = a.reverse;
    let time = Duration::from_secs_f64(a.seconds);
    let hard = match a.bytes {
        Some(_) => cfg.limits.max_seconds,
        None => a.seconds,
    };
    let hard = Duration::from_secs_f64(hard) + GRACE;
    let n = usize::from(a.streams);
    let per_stream = a
        .bytes
        .filter(|_| send)
        .map(|b| wire::split_bytes(b, n))
        .unwrap_or_default();
    let duration = (send && a.bytes.is_none()).then_some(time);
    let mut data = match &cfg.tcplite {
        None => {
            let (tx, rx) = mpsc::channel();
            set_phase(ph, Phase::Collecting(tx));
            conn::write_state(&c, State::CreateStreams)?;
            let socks = collect(&rx, &cookie, n, cfg.data_timeout);
            set_phase(ph, Phase::Busy);
            let socks = socks.inspect_err(|_| {
                let _ = conn::write_error(&c, wire::code::STREAM_CONNECT);
            })?;
            Streams::sockets(
                socks,
                send,
                (duration, per_stream, cfg.idle, hard),
                a.len.unwrap_or(super::client::IPERF3_LEN) as usize,
            )
        }
        Some(allowed) => {
            tcplite_streams(&c, allowed, &cookie, &a, cfg, (per_stream, duration, hard))?
        }
    };
    conn::write_state(&c, State::TestStart)?;
    let cpu0 = crate::metrics::cpu::CpuSnapshot::take();
    let start = data.start()?;
    conn::write_state(&c, State::TestRunning)?;
    let ended = wait_test_end(&c, start + hard);
    data.stop_senders();
    ended.inspect_err(|_| data.stop())?;
    let cpu = cpu0.report(&crate::metrics::cpu::CpuSnapshot::take());
    conn::write_state(&c, State::ExchangeResults)?;
    let theirs: Results = conn::read_json(&c, STEP)?;
    // Everything the client counted as sent read (or, sending, as
    // received acknowledged: TCP-lite counts acknowledged bytes) before we
    // report.
    await_counts(&data, &theirs, Duration::from_secs(3));
    let moved = data.moved();
    let figures: Vec<_> = moved.iter().map(|&b| (b, -1, cpu.seconds)).collect();
    let has_retransmits = if send { 0 } else { -1 };
    conn::write_json(&c, &results(&figures, &cpu, has_retransmits))?;
    conn::write_state(&c, State::DisplayResults)?;
    // The client closes its streams, then says IPERF_DONE (or just closes).
    let done = conn::read_state(&c, STEP);
    data.stop();
    let (_, path) = data.finish(Duration::from_secs(2));
    done?;
    Ok(format!(
        "{} {} stream(s), {} B {}, client counted {} B, data path {path}",
        a.streams,
        if send { "reverse" } else { "forward" },
        moved.iter().sum::<u64>(),
        if send { "sent" } else { "received" },
        theirs.total_bytes()
    ))
}

/// The test's data connections on TCP-lite; a failure is told to the
/// client as iperf3's "cannot create a new test" before CREATE_STREAMS,
/// "cannot connect stream" after.
#[cfg(target_os = "linux")]
fn tcplite_streams(
    c: &TcpStream,
    allowed: &[String],
    cookie: &wire::Cookie,
    a: &wire::Accepted,
    cfg: &ServeConfig,
    (per_stream, duration, hard): (Vec<u64>, Option<Duration>, Duration),
) -> Result<Streams> {
    let announced = std::cell::Cell::new(false);
    let d = super::tcplite_serve::DataPlan {
        a,
        cookie,
        per_stream,
        duration,
        idle: cfg.idle,
        hard,
        within: cfg.data_timeout,
    };
    super::tcplite_serve::accept(c, allowed, d, || {
        announced.set(true);
        conn::write_state(c, State::CreateStreams)
    })
    .inspect_err(|_| {
        let code = match announced.get() {
            true => wire::code::STREAM_CONNECT,
            false => wire::code::NEW_TEST,
        };
        let _ = conn::write_error(c, code);
    })
}

#[cfg(not(target_os = "linux"))]
fn tcplite_streams(
    c: &TcpStream,
    _allowed: &[String],
    _cookie: &wire::Cookie,
    _a: &wire::Accepted,
    _cfg: &ServeConfig,
    _limits: (Vec<u64>, Option<Duration>, Duration),
) -> Result<Streams> {
    let _ = conn::write_error(c, wire::code::NEW_TEST);
    Err(Error::Refused(
        "TCP-lite (--iperf3-mode xdp) needs Linux".into(),
    ))
}

/// The test's data connections, each opening with the test's cookie;
/// others are told ACCESS_DENIED and closed.
fn collect(
    rx: &mpsc::Receiver<TcpStream>,
    cookie: &wire::Cookie,
    n: usize,
    within: Duration,
) -> Result<Vec<socket2::Socket>> {
    let until = Instant::now() + within;
    let mut got = Vec::with_capacity(n);
    while got.len() < n {
        let left = until.saturating_duration_since(Instant::now());
        let s = rx.recv_timeout(left).map_err(|_| {
            Error::PeerLost(format!(
                "only {} of {n} iperf3 streams arrived within {:.0} s",
                got.len(),
                within.as_secs_f64()
            ))
        })?;
        match conn::read_cookie(&s, Duration::from_secs(2)) {
            Ok(c) if &c == cookie => got.push(socket2::Socket::from(s)),
            _ => deny(s),
        }
    }
    Ok(got)
}

/// Until the client's TEST_END; anything else ends the test.
fn wait_test_end(c: &TcpStream, hard: Instant) -> Result<()> {
    loop {
        match conn::poll_state(c, Duration::from_millis(100))? {
            Some(State::TestEnd) => return Ok(()),
            Some(State::ClientTerminate) => {
                return Err(Error::PeerLost(
                    "the iperf3 client terminated the test".into(),
                ))
            }
            Some(s) => {
                return Err(Error::Protocol(format!(
                    "iperf3 client sent {s:?} mid-test"
                )))
            }
            None if Instant::now() >= hard => {
                let _ = conn::write_state(c, State::ServerTerminate);
                return Err(Error::PeerLost("the test ran past its time limit".into()));
            }
            None => {}
        }
    }
}

/// Wait (bounded) until each stream has read what the client sent on it.
fn await_counts(data: &Streams, theirs: &Results, within: Duration) {
    let want: Vec<u64> = wire::stream_ids(data.moved().len())
        .iter()
        .map(|id| {
            theirs
                .streams
                .iter()
                .find(|s| s.id == *id)
                .map_or(0, |s| s.bytes.max(0.0) as u64)
        })
        .collect();
    let until = Instant::now() + within;
    while Instant::now() < until && data.moved().iter().zip(&want).any(|(m, w)| m < w) {
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A results document: per stream (bytes, retransmits or -1, seconds),
/// and the process's CPU as iperf3 counts it (percent of one core).
pub(super) fn results(
    streams: &[(u64, i64, f64)],
    cpu: &crate::report::model::CpuReport,
    sender_has_retransmits: i64,
) -> Results {
    let (user, system) = cpu
        .process
        .as_ref()
        .map_or((0.0, 0.0), |p| (p.user_seconds, p.system_seconds));
    let secs = cpu.seconds.max(1e-9);
    Results {
        cpu_util_total: (user + system) / secs * 100.0,
        cpu_util_user: user / secs * 100.0,
        cpu_util_system: system / secs * 100.0,
        sender_has_retransmits,
        congestion_used: None,
        streams: streams
            .iter()
            .zip(wire::stream_ids(streams.len()))
            .map(|(&(bytes, retransmits, secs), id)| wire::StreamFigures {
                id,
                bytes: bytes as f64,
                retransmits,
                end_time: secs,
                ..Default::default()
            })
            .collect(),
    }
}
