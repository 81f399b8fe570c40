//! `wirespeed agent`: serves tests to controllers, one thread per control
//! connection. Every failure of one connection is logged and answered with
//! an Error message where the peer can still hear it; the agent itself
//! keeps serving.

use super::auth::{self, Role as AuthRole};
use super::began::Began;
use super::frame::{self, PROTOCOL_VERSION};
use super::messages::{Msg, ServeOrder};
use super::sender_tcp::SenderFeed;
use super::token::{self, Token, TokenBook};
use super::{clock, expect_msg, poll_msg};
use crate::datapath::socket::{self as sockpath, Flow, FlowLimits, FlowSet, SocketOpts};
use crate::metrics::{host, interval::Counter};
use crate::report::model::Role;
use crate::spec::{Limit, Mode, TestSpec};
use crate::{Error, Result};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What an agent allows and how it listens.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    pub listen: SocketAddr,
    /// Pre-shared key; None = no authentication.
    pub psk: Option<Vec<u8>>,
    /// Interfaces a controller may name; empty = any that exists.
    pub allow_iface: Vec<String>,
    pub max_duration: Duration,
    pub max_streams: u16,
    pub max_tests: usize,
    /// How long to wait for a test's data connections.
    pub data_timeout: Duration,
    /// How long a flow may make no progress.
    pub idle_timeout: Duration,
    /// Refuse to be the client end of third-party pairs (`--no-originate`).
    pub no_originate: bool,
    /// How its TCP-lite workers wait where the controller leaves it to
    /// `auto` (`--xdp-poll`): a controller's busy or event wins.
    pub xdp_poll: crate::spec::XdpPoll,
}

impl AgentConfig {
    pub fn new(listen: SocketAddr) -> Self {
        AgentConfig {
            listen,
            psk: None,
            allow_iface: Vec::new(),
            max_duration: Duration::from_secs(3600),
            max_streams: 128,
            max_tests: 8,
            data_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(10),
            no_originate: false,
            xdp_poll: crate::spec::XdpPoll::Auto,
        }
    }
}

mod intervals;
mod originate;
use intervals::Feed;
pub use intervals::MIN_INTERVAL_MS;

/// Most message-buffer memory one test may make the agent allocate.
const MAX_TEST_BUFFERS: u64 = 1 << 30;

/// Clock probes a controller may send before Start.
const MAX_PINGS: usize = 64;
/// Furthest ahead a scheduled start may be.
const MAX_START_DELAY: Duration = Duration::from_secs(10);

/// Open connections beyond this are closed at once, so a flood of idle
/// connections cannot pile up threads.
const MAX_CONNECTIONS: usize = 64;

/// A bound agent, ready to serve.
pub struct Agent {
    listener: TcpListener,
    cfg: Arc<AgentConfig>,
    tests: Arc<AtomicUsize>,
    conns: Arc<AtomicUsize>,
    book: Arc<Mutex<TokenBook>>,
}

impl Agent {
    /// Bind the control port; a port in use is a clear error.
    pub fn bind(cfg: AgentConfig) -> Result<Agent> {
        let listener = TcpListener::bind(cfg.listen).map_err(|e| match e.kind() {
            std::io::ErrorKind::AddrInUse => Error::Invalid(format!(
                "cannot listen on {}: the port is in use (another agent?); choose another with --listen",
                cfg.listen
            )),
            std::io::ErrorKind::AddrNotAvailable => Error::Invalid(format!(
                "cannot listen on {}: that address is not on this host",
                cfg.listen
            )),
            std::io::ErrorKind::PermissionDenied => Error::Privilege(format!(
                "cannot listen on {}: ports below 1024 need root or CAP_NET_BIND_SERVICE; choose a higher port",
                cfg.listen
            )),
            _ => Error::io(format!("listening on {}", cfg.listen), e),
        })?;
        Ok(Agent {
            listener,
            cfg: Arc::new(cfg),
            tests: Arc::new(AtomicUsize::new(0)),
            conns: Arc::new(AtomicUsize::new(0)),
            book: Arc::default(),
        })
    }

    /// The address actually bound (resolves port 0).
    pub fn local_addr(&self) -> Result<SocketAddr> {
        self.listener
            .local_addr()
            .map_err(|e| Error::io("reading the listen address", e))
    }

    /// The count of tests running, shared with other listeners (iperf3's)
    /// that the agent's `max_tests` also bounds.
    pub fn tests(&self) -> Arc<AtomicUsize> {
        self.tests.clone()
    }

    /// Serve forever.
    pub fn serve(self) -> Result<()> {
        loop {
            let (conn, peer) = match self.listener.accept() {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
            };
            if self.conns.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
                self.conns.fetch_sub(1, Ordering::SeqCst);
                tracing::warn!(%peer, "refused: {MAX_CONNECTIONS} control connections already open");
                continue;
            }
            // The slot exists before the thread, so a failed spawn frees it too.
            let slot = Slot(self.conns.clone());
            let (cfg, tests, book) = (self.cfg.clone(), self.tests.clone(), self.book.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("ctl-{peer}"))
                .spawn(move || {
                    let _slot = slot;
                    match Session::new(conn, peer, cfg, tests, book).run() {
                        Ok(()) => tracing::info!(%peer, "test done"),
                        Err(e) => tracing::warn!(%peer, "{e}"),
                    }
                });
            if let Err(e) = spawned {
                tracing::warn!(%peer, "could not start a session thread: {e}");
            }
        }
    }
}

/// Decrements a counter when dropped, however the session ends.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

struct Session {
    conn: TcpStream,
    peer: SocketAddr,
    cfg: Arc<AgentConfig>,
    tests: Arc<AtomicUsize>,
    book: Arc<Mutex<TokenBook>>,
    /// Set when this session serves a third-party pair's server end.
    pair: Option<PairServe>,
}

/// A third-party pair's server end: whom to take data from, and with what.
struct PairServe {
    token: Token,
    client: IpAddr,
    local: Option<IpAddr>,
}

/// What came after the challenge: a controller, or a client agent asking
/// this agent to vouch for a pair's data address.
enum Greeting {
    Controller,
    Vouched,
}

impl Session {
    fn new(
        conn: TcpStream,
        peer: SocketAddr,
        cfg: Arc<AgentConfig>,
        tests: Arc<AtomicUsize>,
        book: Arc<Mutex<TokenBook>>,
    ) -> Self {
        Session {
            conn,
            peer,
            cfg,
            tests,
            book,
            pair: None,
        }
    }

    /// Run the session; on a failure the peer still hears why if it can.
    fn run(mut self) -> Result<()> {
        let _ = self.conn.set_nodelay(true);
        let mut speaks_v1 = false;
        let r = self.serve(&mut speaks_v1);
        if let Err(e) = &r {
            // Only a peer that passed the version check can parse our
            // messages; a closed connection just makes this write fail.
            if speaks_v1 {
                let _ = frame::write_msg(&mut self.conn, &Msg::from_error(e));
            }
        }
        r
    }

    fn serve(&mut self, speaks_v1: &mut bool) -> Result<()> {
        let _ = self.conn.set_write_timeout(Some(super::REPLY_TIMEOUT));
        self.conn
            .set_read_timeout(Some(super::REPLY_TIMEOUT))
            .map_err(|e| Error::io("setting a read timeout", e))?;
        frame::write_preamble(&mut self.conn, PROTOCOL_VERSION)?;
        let theirs = frame::read_preamble(&mut crate::deadline::Deadline::new(
            &self.conn,
            super::REPLY_TIMEOUT,
        ))?;
        frame::check_version(PROTOCOL_VERSION, theirs, "controller")?;
        *speaks_v1 = true;
        if let Greeting::Vouched = self.authenticate()? {
            return Ok(());
        }
        let spec = match expect_msg(&mut self.conn)? {
            Msg::Test(spec) => *spec,
            Msg::Serve(order) => return self.serve_pair(*order),
            Msg::Originate(order) => return self.originate(*order),
            other => {
                return Err(Error::Protocol(format!(
                    "expected a test, got {}",
                    other.name()
                )))
            }
        };
        self.check(&spec)?;
        let _guard = self.reserve()?;
        tracing::info!(peer = %self.peer, ?spec, "test accepted");
        self.run_test(&spec)
    }

    /// The server end of a third-party pair: the token is taken (once),
    /// data comes only from the named client, and the token is spent
    /// however the test ends.
    fn serve_pair(&mut self, order: ServeOrder) -> Result<()> {
        let token = Token::parse(&order.token)?;
        if !token::plausible_peer(order.client) {
            return Err(Error::Invalid(format!(
                "{} cannot be a pair's client address",
                order.client
            )));
        }
        if order.spec.raw.is_some() {
            return Err(Error::Refused(
                "raw frames run only between a controller and an agent, not in third-party pairs"
                    .into(),
            ));
        }
        self.check(&order.spec)?;
        let _guard = self.reserve()?;
        let ttl = self.cfg.data_timeout + super::REPLY_TIMEOUT;
        self.book().grant(token, Instant::now(), ttl)?;
        self.pair = Some(PairServe {
            token,
            client: order.client,
            local: order.local,
        });
        tracing::info!(peer = %self.peer, client = %order.client, spec = ?order.spec, "pair test accepted (server end)");
        let r = self.run_test(&order.spec);
        self.book().retire(token);
        r
    }

    fn book(&self) -> std::sync::MutexGuard<'_, TokenBook> {
        // A panicked session cannot leave the book half-updated: every
        // change is one push or retain.
        self.book.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Where data connections come from: the pair's client, else the controller.
    #[cfg(target_os = "linux")]
    fn data_peer(&self) -> IpAddr {
        self.pair.as_ref().map_or(self.peer.ip(), |p| p.client)
    }

    /// The address data is taken on: the pair's server address if named,
    /// else the control connection's.
    fn data_local(&self) -> Result<IpAddr> {
        match self.pair.as_ref().and_then(|p| p.local) {
            Some(ip) => Ok(ip),
            None => super::local_ip(&self.conn),
        }
    }

    /// The data cookie: the pair's token, else a fresh one; and the
    /// source address data must come from (pairs only).
    fn data_cookie(&self) -> ([u8; 16], Option<IpAddr>) {
        match &self.pair {
            Some(p) => (p.token.0, Some(p.client)),
            None => (
                auth::nonce()[..16].try_into().expect("16 of 32 bytes"),
                None,
            ),
        }
    }

    /// Tell the token book where this pair listens, so the client can
    /// have it vouched for.
    fn note_listening(&self, ip: IpAddr, port: u16) {
        if let Some(p) = &self.pair {
            self.book().listening(p.token, SocketAddr::new(ip, port));
        }
    }

    fn authenticate(&mut self) -> Result<Greeting> {
        let nonce = auth::nonce();
        frame::write_msg(
            &mut self.conn,
            &Msg::Challenge {
                nonce: auth::to_hex(&nonce),
                auth_required: self.cfg.psk.is_some(),
            },
        )?;
        let (cnonce, proof) = match expect_msg(&mut self.conn)? {
            Msg::Hello { nonce, proof, .. } => (nonce, proof),
            Msg::Vouch { nonce, data } => {
                // Anyone may ask: the answer proves only that this agent
                // holds a token the asker must already know to check it.
                let nonce = auth::from_hex(&nonce)
                    .filter(|n| n.len() == auth::NONCE_LEN)
                    .ok_or_else(|| Error::Protocol("vouch carries a malformed nonce".into()))?;
                let proof = self.book().vouch(data, &nonce, Instant::now())?;
                frame::write_msg(&mut self.conn, &Msg::Vouched { proof })?;
                tracing::info!(peer = %self.peer, %data, "vouched for a pair's data address");
                return Ok(Greeting::Vouched);
            }
            other => {
                return Err(Error::Protocol(format!(
                    "expected hello, got {}",
                    other.name()
                )))
            }
        };
        let cnonce = auth::from_hex(&cnonce)
            .filter(|n| n.len() == auth::NONCE_LEN)
            .ok_or_else(|| Error::Protocol("hello carries a malformed nonce".into()))?;
        let reply_proof = match &self.cfg.psk {
            None => None,
            Some(key) => {
                let Some(p) = proof else {
                    return Err(Error::Auth(
                        "this agent requires a pre-shared key: pass --psk-file with the agent's key".into(),
                    ));
                };
                if !auth::verify(key, AuthRole::Controller, &nonce, &cnonce, &p) {
                    return Err(Error::Auth("wrong pre-shared key".into()));
                }
                Some(auth::prove(key, AuthRole::Agent, &nonce, &cnonce))
            }
        };
        frame::write_msg(
            &mut self.conn,
            &Msg::Welcome {
                proof: reply_proof,
                agent: host::info(),
            },
        )?;
        Ok(Greeting::Controller)
    }

    /// The agent's caps and allow-lists, each with its own refusal.
    fn check(&self, spec: &TestSpec) -> Result<()> {
        spec.validate()?;
        let cfg = &self.cfg;
        if let Limit::Duration { seconds } = spec.limit {
            if seconds > cfg.max_duration.as_secs_f64() {
                return Err(Error::Refused(format!(
                    "duration {seconds} s exceeds this agent's cap of {} s (--max-duration)",
                    cfg.max_duration.as_secs_f64()
                )));
            }
        }
        let nflows = spec.flows().len();
        // Message buffers, and TCP-lite's two per connection if it may run.
        let tcplite = match spec.remote_mode {
            Mode::Socket => 0,
            _ => 2 * spec.tcplite_buffer() as u64,
        };
        let buffers = (u64::from(spec.msg_size) + tcplite) * nflows as u64;
        if buffers > MAX_TEST_BUFFERS {
            return Err(Error::Refused(format!(
                "{} flows of {} B messages need {} MiB of buffers, over this agent's {} MiB: use fewer streams, smaller messages or a smaller --sockbuf",
                nflows,
                spec.msg_size,
                buffers >> 20,
                MAX_TEST_BUFFERS >> 20
            )));
        }
        if let Some(raw) = &spec.raw {
            // Raw frames go only to the controller that asked for them.
            if std::net::IpAddr::V4(raw.controller_ip) != self.peer.ip() {
                return Err(Error::Refused(format!(
                    "raw frames may go only to the controller itself ({}), not to {}",
                    self.peer.ip(),
                    raw.controller_ip
                )));
            }
        }
        if spec.streams > cfg.max_streams {
            return Err(Error::Refused(format!(
                "{} streams exceed this agent's cap of {} (--max-streams)",
                spec.streams, cfg.max_streams
            )));
        }
        if let Some(i) = &spec.remote_iface {
            if !cfg.allow_iface.is_empty() && !cfg.allow_iface.contains(i) {
                return Err(Error::Refused(format!(
                    "interface {i} is not allowed on this agent (allowed: {})",
                    cfg.allow_iface.join(", ")
                )));
            }
            sockpath::check_iface(i).map_err(|e| Error::Refused(format!("agent: {e}")))?;
        }
        Ok(())
    }

    /// Take one of the agent's concurrent-test slots.
    fn reserve(&self) -> Result<Slot> {
        let n = self.tests.fetch_add(1, Ordering::SeqCst);
        let slot = Slot(self.tests.clone());
        if n >= self.cfg.max_tests {
            return Err(Error::Refused(format!(
                "the agent is already running {n} tests, its cap (--max-tests); try again later"
            )));
        }
        Ok(slot)
    }

    /// Whether the controller, within `wait`, aborted the test, sent
    /// something out of turn, or went away: the reason, if so.
    fn stop_requested(&mut self, wait: Duration) -> Option<Error> {
        match poll_msg(&mut self.conn, wait, frame::MAX_FRAME) {
            Ok(None) => None,
            Ok(Some(Msg::Abort { reason })) => Some(Error::PeerLost(format!(
                "controller aborted the test: {reason}"
            ))),
            Ok(Some(other)) => Some(Error::Protocol(format!(
                "unexpected {} during a test",
                other.name()
            ))),
            Err(e) => Some(Error::PeerLost(format!(
                "controller went away mid-test ({e})"
            ))),
        }
    }

    /// Answer clock probes until Start; return the instant it names.
    fn await_start(&mut self) -> Result<Instant> {
        for _ in 0..MAX_PINGS {
            match expect_msg(&mut self.conn)? {
                Msg::Ping { t0 } => {
                    let t1 = clock::now_us();
                    frame::write_msg(
                        &mut self.conn,
                        &Msg::Pong {
                            t0,
                            t1,
                            t2: clock::now_us(),
                        },
                    )?;
                }
                Msg::Start { at_us: None } => return Ok(Instant::now()),
                Msg::Start { at_us: Some(at) } => {
                    let at = clock::instant_of(at);
                    let wait = at.saturating_duration_since(Instant::now());
                    if wait > MAX_START_DELAY {
                        return Err(Error::Protocol(format!(
                            "start time is {:.1} s away, more than the {} s allowed",
                            wait.as_secs_f64(),
                            MAX_START_DELAY.as_secs()
                        )));
                    }
                    return Ok(at);
                }
                Msg::Abort { reason } => {
                    return Err(Error::PeerLost(format!("controller aborted: {reason}")))
                }
                other => {
                    return Err(Error::Protocol(format!(
                        "expected start, got {}",
                        other.name()
                    )))
                }
            }
        }
        Err(Error::Protocol(format!(
            "more than {MAX_PINGS} clock probes before start"
        )))
    }

    /// A raw-frame test over AF_XDP on the agent's `--remote-iface`.
    #[cfg(target_os = "linux")]
    fn run_raw(&mut self, spec: &TestSpec, raw: crate::spec::RawSpec) -> Result<()> {
        use crate::datapath::xdp::session::{Peer, RawEnd, RawRun, RawWork};
        use crate::host::iface::fmt_mac;
        let iface = spec
            .remote_iface
            .as_deref()
            .expect("validated: raw tests name the agent's interface");
        let local = super::ipv4_only(super::local_ip(&self.conn)?, "raw mode")?;
        crate::datapath::xdp::session::check_cpus(&raw.cpus)?;
        let end = RawEnd::open(
            iface,
            local,
            spec.data_port,
            raw.frame_size,
            (raw.queues.as_deref(), spec.remote_xdp_bind),
        )?;
        // As the controller does: the neighbour table, else the MAC it sent.
        let peer = Peer {
            mac: crate::datapath::xdp::neigh::resolve(iface, local, raw.controller_ip)
                .unwrap_or(raw.controller_mac),
            ip: raw.controller_ip,
            port: raw.controller_port,
        };
        frame::write_msg(
            &mut self.conn,
            &Msg::Accepted {
                data_port: end.port,
                cookie: String::new(),
                mode: end.mode.into(),
                mode_reason: "raw frames over AF_XDP (--raw)".into(),
                mac: Some(fmt_mac(&end.mac)),
            },
        )?;
        frame::write_msg(&mut self.conn, &Msg::Ready)?;
        let at = self.await_start()?;
        let began = self.begin(at, Some(iface));
        let start = began.start;
        let stop = Arc::new(AtomicBool::new(false));
        let role = sockpath::role_of(
            crate::spec::FlowId {
                stream: 0,
                direction: spec.direction,
            },
            false,
        );
        let duration = Duration::from_secs_f64(spec.nominal_seconds());
        let run = RawRun {
            role,
            direction: spec.direction,
            peer,
            cpus: raw.cpus.clone(),
            raw,
            duration,
            start,
        };
        let mut work = RawWork::spawn(end, run, &stop, &Counter::default())?;
        let lost = self.watch(
            || work.poll(Duration::from_millis(20)),
            &stop,
            &mut SenderFeed::none(),
        );
        let flows = work.finish();
        self.send_result(lost, (flows, Vec::new()), began)
    }

    /// TCP streams over TCP-lite on `end` (opened on the agent's
    /// `--remote-iface`, or by its `auto` pick): the worker accepts the
    /// controller's connections on one steered port and learns each flow
    /// from its data header.
    #[cfg(target_os = "linux")]
    fn run_xdp_stream(
        &mut self,
        spec: &TestSpec,
        end: crate::datapath::xdp::stream::StreamEnd,
        mode_reason: String,
    ) -> Result<()> {
        use crate::datapath::xdp::{neigh, stream};
        let local = end.ip;
        let peer = self.data_peer();
        let iface = end.iface.clone();
        let iface = iface.as_str();
        let port = end.ports[0];
        let peer_mac = crate::wire::ethernet::MacAddr(neigh::resolve(iface, local, peer)?);
        let (cookie, _) = self.data_cookie();
        let expected = spec.flows();
        let ready = Arc::new(AtomicUsize::new(0));
        let plan = stream::RunPlan {
            streams: expected
                .iter()
                .map(|_| stream::StreamPlan {
                    open: stream::Open::Accept {
                        local: port,
                        from: Some(peer),
                    },
                    flow: stream::Flow::Receive,
                    prefix: Vec::new(),
                    bytes: None,
                    header: Some(cookie),
                    expect: Vec::new(),
                    worker: None,
                })
                .collect(),
            peer_mac,
            duration: match spec.limit {
                Limit::Duration { seconds } => Some(Duration::from_secs_f64(seconds)),
                Limit::Bytes { .. } => None,
            },
            bytes: None,
            verify: spec.verify,
            config: stream::RunPlan::lan_config(end.mss(), None, spec.tcplite_buffer()),
            idle: self.cfg.idle_timeout,
            hard: match spec.limit {
                Limit::Duration { seconds } => {
                    Duration::from_secs_f64(seconds) + self.cfg.idle_timeout * 2
                }
                Limit::Bytes { .. } => self.cfg.max_duration,
            } + self.cfg.data_timeout,
            cpus: spec.remote_workers.cpus.clone(),
            poll: match spec.remote_workers.poll {
                crate::spec::XdpPoll::Auto => self.cfg.xdp_poll,
                asked => asked,
            },
            counters: Vec::new(),
            stream_bytes: (0..spec.streams).map(|s| spec.bytes_for(s)).collect(),
            ready: Some(ready.clone()),
            receiver_limits: false,
            expect_ids: expected.clone(),
            placement: None,
            rr: super::controller::rr_of(spec),
            interval_latency: Vec::new(),
        };
        let mode = end.mode;
        let gate = stream::Gate::default();
        let stop = Arc::new(AtomicBool::new(false));
        let mut work = stream::StreamWork::spawn(end, plan, gate.clone(), &stop)?;
        self.note_listening(local, port);
        frame::write_msg(
            &mut self.conn,
            &Msg::Accepted {
                data_port: port,
                cookie: auth::to_hex(&cookie),
                mode: mode.into(),
                mode_reason,
                mac: None,
            },
        )?;
        let deadline = Instant::now() + self.cfg.data_timeout;
        while ready.load(Ordering::Relaxed) < expected.len() {
            if Instant::now() >= deadline || work.poll(Duration::from_millis(10)) {
                stop.store(true, Ordering::Relaxed);
                let _ = work.finish();
                return Err(Error::PeerLost(format!(
                    "only {} of {} TCP-lite data connections arrived with a valid header: is the controller's side blocked, or the agent's interface not the one the controller reaches?",
                    ready.load(Ordering::Relaxed),
                    expected.len()
                )));
            }
        }
        frame::write_msg(&mut self.conn, &Msg::Ready)?;
        let at = self.await_start();
        let at = match at {
            Ok(at) => at,
            Err(e) => {
                stop.store(true, Ordering::Relaxed);
                let _ = work.finish();
                return Err(e);
            }
        };
        let began = self.begin(at, Some(iface));
        let _ = gate.set(began.start);
        // TCP-lite's own state comes with the result, not mid-test.
        let lost = self.watch(
            || work.poll(Duration::from_millis(20)),
            &stop,
            &mut SenderFeed::none(),
        );
        let (results, end) = work.finish();
        let workers = end.workers.clone();
        let flows = results
            .into_iter()
            .filter_map(|r| {
                let id = r.id?;
                Some(r.into_flow(id, sockpath::role_of(id, false), end.bad_checksum()))
            })
            .collect();
        self.send_result(lost, (flows, workers), began)
    }

    /// The agent's `--remote-iface` for `--remote-mode xdp`, opened as
    /// asked (the generic hook allowed).
    #[cfg(target_os = "linux")]
    fn open_xdp(&self, spec: &TestSpec) -> Result<crate::datapath::xdp::stream::StreamEnd> {
        let iface = spec
            .remote_iface
            .as_deref()
            .expect("validated: xdp tests name the agent's interface");
        let local = self.data_local()?;
        crate::datapath::xdp::stream::StreamEnd::open(
            iface,
            local,
            crate::datapath::xdp::stream::Ports::Listen(spec.data_port.unwrap_or(0)),
            (spec.remote_workers.queues.as_deref(), spec.remote_xdp_bind),
            false,
        )
    }

    /// `--remote-mode auto`: TCP-lite where the agent's NIC runs XDP
    /// natively (and the link suits the controller's end), else sockets.
    #[cfg(target_os = "linux")]
    fn pick_auto(
        &self,
        spec: &TestSpec,
    ) -> Result<(Option<crate::datapath::xdp::stream::StreamEnd>, String)> {
        use crate::auto::Peer;
        let peer = if spec.peer_xdp {
            Peer::TcpLite
        } else {
            Peer::Kernel
        };
        use crate::datapath::xdp::neigh::{route_to, Route};
        // The route's interface when none is named; it must be allowed too
        // (a named one was checked with the test).
        let route = route_to(self.data_peer());
        let allow = &self.cfg.allow_iface;
        if let (None, Route::Dev(i)) = (&spec.remote_iface, &route) {
            if !allow.is_empty() && !allow.contains(i) {
                return Ok((None, format!(
                    "auto: {i}, the route's interface towards the controller, is not in this agent's --allow-iface list; kernel sockets"
                )));
            }
        }
        Ok(crate::datapath::xdp::stream::StreamEnd::open_auto(
            spec.remote_iface.as_deref(),
            &route,
            (self.data_local()?, self.data_peer()),
            // One steered port takes every flow on this end.
            (
                crate::datapath::xdp::stream::Ports::Listen(spec.data_port.unwrap_or(0)),
                spec.remote_workers.queues.as_deref(),
                spec.remote_xdp_bind,
            ),
            spec.flows().len(),
            peer,
        ))
    }

    #[cfg(not(target_os = "linux"))]
    fn pick_auto(&self, _spec: &TestSpec) -> Result<(Option<std::convert::Infallible>, String)> {
        Ok((None, "auto: AF_XDP needs Linux; kernel sockets".into()))
    }

    #[cfg(not(target_os = "linux"))]
    fn run_raw(&mut self, _spec: &TestSpec, _raw: crate::spec::RawSpec) -> Result<()> {
        Err(Error::Refused(
            "raw mode needs Linux AF_XDP; this agent runs on another system".into(),
        ))
    }

    fn run_test(&mut self, spec: &TestSpec) -> Result<()> {
        if let Some(raw) = spec.raw.clone() {
            return self.run_raw(spec, raw);
        }
        let mode_reason = match spec.remote_mode {
            #[cfg(target_os = "linux")]
            Mode::Xdp => {
                let end = self.open_xdp(spec)?;
                return self.run_xdp_stream(spec, end, "requested with --remote-mode xdp".into());
            }
            #[cfg(not(target_os = "linux"))]
            Mode::Xdp => {
                return Err(Error::Refused(
                    "TCP over AF_XDP needs Linux; this agent runs on another system: use --remote-mode socket".into(),
                ))
            }
            Mode::Auto => match self.pick_auto(spec)? {
                #[cfg(target_os = "linux")]
                (Some(end), why) => return self.run_xdp_stream(spec, end, why),
                #[cfg(not(target_os = "linux"))]
                (Some(never), _) => match never {},
                (None, why) => why,
            },
            Mode::Socket => "requested with --remote-mode socket".into(),
        };
        let local = self.data_local()?;
        let opts = SocketOpts {
            sockbuf: spec.sockbuf,
            iface: spec.remote_iface.clone(),
            local: None,
        };
        let listener = sockpath::listen(local, spec.data_port.unwrap_or(0), &opts)?;
        let data_port = listener
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .map_or(0, |a| a.port());
        let (cookie, from) = self.data_cookie();
        self.note_listening(local, data_port);
        frame::write_msg(
            &mut self.conn,
            &Msg::Accepted {
                data_port,
                cookie: auth::to_hex(&cookie),
                mode: "socket".into(),
                mode_reason,
                mac: None,
            },
        )?;
        let expected = spec.flows();
        let socks =
            sockpath::accept_flows(&listener, &cookie, &expected, self.cfg.data_timeout, from)?;
        drop(listener);
        frame::write_msg(&mut self.conn, &Msg::Ready)?;
        let at = self.await_start()?;
        let began = self.begin(at, spec.remote_iface.as_deref());
        let start = began.start;
        let senders = socks
            .iter()
            .filter(|(id, _)| sockpath::role_of(*id, false) == Role::Sender)
            .filter_map(|(id, s)| Some((*id, s.try_clone().ok()?)))
            .collect();
        let mut feed = SenderFeed::new(spec.sender_tcp_ms, senders, start);
        let flows = self.socket_flows(spec, socks, false);
        let stop = Arc::new(AtomicBool::new(false));
        let mut set = FlowSet::spawn(flows, start, &stop)?;
        let lost = self.watch(|| set.poll(Duration::from_millis(50)), &stop, &mut feed);
        drop(feed);
        let flows = set.finish();
        self.send_result(lost, (flows, Vec::new()), began)
    }

    /// Kernel-socket flows for this agent's end: the controller's role
    /// when `controller_side` (a pair's client end), the agent's otherwise.
    fn socket_flows(
        &self,
        spec: &TestSpec,
        socks: Vec<(crate::spec::FlowId, socket2::Socket)>,
        controller_side: bool,
    ) -> Vec<Flow> {
        let hard = match spec.limit {
            Limit::Duration { seconds } => {
                Duration::from_secs_f64(seconds) + self.cfg.idle_timeout * 2
            }
            Limit::Bytes { .. } => self.cfg.max_duration,
        };
        socks
            .into_iter()
            .map(|(id, sock)| Flow {
                id,
                role: sockpath::role_of(id, controller_side),
                sock,
                test: spec.test,
                interval_latency: None,
                verify: spec.verify,
                msg_size: spec.msg_size as usize,
                limits: FlowLimits {
                    duration: match spec.limit {
                        Limit::Duration { seconds } => Some(Duration::from_secs_f64(seconds)),
                        Limit::Bytes { .. } => None,
                    },
                    bytes: spec.bytes_for(id.stream),
                    idle: self.cfg.idle_timeout,
                    hard,
                },
                counter: Counter::default(),
            })
            .collect()
    }

    /// Watch the control connection until `done` says the local work has
    /// ended, sending `feed`'s messages when due (and its last one after);
    /// a stop request (abort, or the controller gone) sets `stop` and is
    /// returned.
    fn watch(
        &mut self,
        mut done: impl FnMut() -> bool,
        stop: &AtomicBool,
        feed: &mut dyn Feed,
    ) -> Option<Error> {
        let mut lost = None;
        while !done() {
            if lost.is_none() {
                lost = self.stop_requested(Duration::from_millis(1));
                if lost.is_some() {
                    stop.store(true, Ordering::Relaxed);
                }
            }
            if let (None, Some(m)) = (&lost, feed.next_msg(Instant::now())) {
                if let Err(e) = frame::write_msg(&mut self.conn, &m) {
                    stop.store(true, Ordering::Relaxed);
                    lost = Some(e);
                }
            }
        }
        if let (None, Some(m)) = (&lost, feed.last_msg(Instant::now())) {
            lost = frame::write_msg(&mut self.conn, &m).err();
        }
        // Work can end "cleanly" because the controller died (its kernel
        // closed the data connections too): only a live control connection
        // makes that the test's end.
        lost.or_else(|| self.stop_requested(Duration::from_millis(20)))
    }

    /// This end's counters, path and wait for the start instant
    /// ([`Began::wait`]), its flows bound to `bound` or routed to the
    /// controller.
    fn begin(&self, at: Instant, bound: Option<&str>) -> Began {
        let local = self.conn.local_addr().map_or(self.peer.ip(), |a| a.ip());
        Began::wait(Some(at), bound, local, self.peer.ip())
    }

    /// Report this side's results, or the reason the test stopped.
    fn send_result(
        &mut self,
        lost: Option<Error>,
        (flows, workers): (
            Vec<crate::report::model::FlowResult>,
            Vec<crate::report::model::WorkerReport>,
        ),
        began: Began,
    ) -> Result<()> {
        if let Some(e) = lost {
            return Err(e);
        }
        let report = began.report(flows, workers, None);
        frame::write_msg(&mut self.conn, &Msg::Result(Box::new(report)))
    }
}
