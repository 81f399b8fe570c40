//! The controller side of one test (`wirespeed run`): connect, prove the
//! key, send the spec, open the data connections, start, measure its own
//! side, print intervals, and merge its results with the agent's.

use super::auth::{self, Role as AuthRole};
use super::began::Began;
use super::clock::{self, Estimate, Sample};
use super::frame::{self, PROTOCOL_VERSION};
use super::messages::Msg;
use super::{expect_msg, poll_msg, DEFAULT_PORT};
use crate::datapath::socket::{
    self as sockpath, Flow, FlowHeader, FlowLimits, FlowSet, SocketOpts,
};
use crate::metrics::interval::{next_tick, Counter, Sampler};
use crate::report::model::{
    End, HostInfo, Interval, RunConfig, RunReport, SideReport, Timing, WorkerReport, SCHEMA,
};
use crate::spec::{FlowId, Limit, Mode, TestSpec};
use crate::{Error, Result};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Everything `wirespeed run` needs.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// The agent: HOST, HOST:PORT, [V6]:PORT or a bare IPv6 address.
    pub to: String,
    pub spec: TestSpec,
    pub mode: Mode,
    pub local: Option<IpAddr>,
    pub iface: Option<String>,
    pub psk: Option<Vec<u8>>,
    /// Interval between progress samples; None = no intervals.
    pub interval: Option<Duration>,
    pub connect_timeout: Duration,
    /// Local flows give up after this long without progress.
    pub idle_timeout: Duration,
    /// Set from elsewhere (Ctrl-C) to stop the test; the agent is told.
    pub cancel: Option<Arc<AtomicBool>>,
    /// This end's TCP-lite workers: queues and CPUs.
    pub workers: crate::spec::Workers,
    /// This end's AF_XDP bind (raw mode, or TCP-lite when it runs).
    pub xdp_bind: crate::spec::XdpBind,
    /// Raw frames over AF_XDP (`--mode xdp --raw`) instead of TCP.
    pub raw: Option<RawOptions>,
}

/// Raw-mode choices of `wirespeed run`.
#[derive(Clone, Debug, PartialEq)]
pub struct RawOptions {
    pub frame_size: u16,
    pub rate_pps: Option<f64>,
    /// This end's queues (None = all) and the CPUs its workers are pinned to.
    pub queues: Option<Vec<u16>>,
    pub cpus: Vec<u16>,
    /// The agent's.
    pub remote_queues: Option<Vec<u16>>,
    pub remote_cpus: Vec<u16>,
}

/// The controller's raw endpoint and what the agent's is.
#[cfg(target_os = "linux")]
struct RawPrep {
    end: crate::datapath::xdp::session::RawEnd,
    peer: crate::datapath::xdp::session::Peer,
    spec: crate::spec::RawSpec,
}

#[cfg(not(target_os = "linux"))]
enum RawPrep {}

/// What this side runs while the test goes (also a pair's client agent).
pub(crate) enum LocalWork {
    Flows(FlowSet),
    #[cfg(target_os = "linux")]
    Raw(crate::datapath::xdp::session::RawWork),
    #[cfg(target_os = "linux")]
    Stream(crate::datapath::xdp::stream::StreamWork, Vec<FlowId>),
}

/// The controller's TCP-lite end (`--mode xdp`): its worker runs from
/// `prepare` on (connections open and send their data headers) and sends
/// payload once the gate holds the start.
#[cfg(target_os = "linux")]
pub(crate) struct XdpPrep {
    pub(crate) work: crate::datapath::xdp::stream::StreamWork,
    pub(crate) gate: crate::datapath::xdp::stream::Gate,
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) counters: Vec<Counter>,
    pub(crate) latency: Vec<Option<crate::metrics::latency::Shared>>,
    pub(crate) ids: Vec<FlowId>,
}

/// An rr test's (request, response, burst) for TCP-lite.
#[cfg(target_os = "linux")]
pub(crate) fn rr_of(spec: &crate::spec::TestSpec) -> Option<(u32, u32, u32)> {
    match spec.test {
        crate::spec::TestKind::Rr {
            request,
            response,
            burst,
        } => Some((request, response, burst)),
        crate::spec::TestKind::Stream => None,
    }
}

#[cfg(not(target_os = "linux"))]
enum XdpPrep {}

/// TCP-lite's results as the report's flows.
#[cfg(target_os = "linux")]
fn stream_flows(
    ids: &[FlowId],
    (results, end): (
        Vec<crate::datapath::xdp::stream::StreamResult>,
        crate::datapath::xdp::stream::EndReport,
    ),
) -> Vec<crate::report::model::FlowResult> {
    ids.iter()
        .zip(results)
        .map(|(&id, r)| r.into_flow(id, sockpath::role_of(id, true), end.bad_checksum()))
        .collect()
}

impl LocalWork {
    pub(crate) fn poll(&mut self, wait: Duration) -> bool {
        match self {
            LocalWork::Flows(s) => s.poll(wait),
            #[cfg(target_os = "linux")]
            LocalWork::Raw(r) => r.poll(wait),
            #[cfg(target_os = "linux")]
            LocalWork::Stream(w, _) => w.poll(wait),
        }
    }

    /// The flows, and the TCP-lite workers' reports (none for other paths).
    pub(crate) fn finish(
        self,
    ) -> (
        Vec<crate::report::model::FlowResult>,
        Vec<WorkerReport>,
        Option<String>,
    ) {
        match self {
            LocalWork::Flows(s) => (s.finish(), Vec::new(), None),
            #[cfg(target_os = "linux")]
            LocalWork::Raw(r) => (r.finish(), Vec::new(), None),
            #[cfg(target_os = "linux")]
            LocalWork::Stream(w, ids) => {
                let (results, end) = w.finish();
                let (workers, placement) = (end.workers.clone(), end.placement.clone());
                (stream_flows(&ids, (results, end)), workers, placement)
            }
        }
    }
}

/// What the controller tells its caller while a test runs.
pub enum Event<'a> {
    /// Connected and accepted; data connections are next.
    Accepted {
        agent: &'a HostInfo,
        addr: SocketAddr,
        data_port: u16,
    },
    /// One reporting interval.
    Interval(&'a Interval),
}

/// Split `HOST[:PORT]`; IPv6 literals need brackets to carry a port.
pub fn parse_target(s: &str) -> Result<(String, u16)> {
    let bad = || Error::Invalid(format!("--to {s:?} is not HOST, HOST:PORT or [IPV6]:PORT"));
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(bad)?;
        let port = match after {
            "" => DEFAULT_PORT,
            p => p
                .strip_prefix(':')
                .and_then(|p| p.parse().ok())
                .ok_or_else(bad)?,
        };
        return Ok((host.to_string(), port));
    }
    match s.matches(':').count() {
        0 if !s.is_empty() => Ok((s.to_string(), DEFAULT_PORT)),
        1 => {
            let (h, p) = s.split_once(':').ok_or_else(bad)?;
            if h.is_empty() {
                return Err(bad());
            }
            Ok((h.to_string(), p.parse().map_err(|_| bad())?))
        }
        _ if s.parse::<IpAddr>().is_ok() => Ok((s.to_string(), DEFAULT_PORT)),
        _ => Err(bad()),
    }
}

/// Choose the data path for `--mode` (and `--raw`), with the reason that
/// goes in the report; the xdp variant that ran is known once attached.
pub fn resolve_mode(mode: Mode, raw: bool) -> Result<(&'static str, String)> {
    match (mode, raw) {
        (Mode::Socket, false) => Ok(("socket", "requested with --mode socket".into())),
        // Decided once connected: the interface and the peer are known then.
        (Mode::Auto, false) => Ok(("auto", String::new())),
        (Mode::Xdp | Mode::Auto, true) => Ok(("xdp", "raw frames over AF_XDP (--raw)".into())),
        (Mode::Socket, true) => Err(Error::Invalid(
            "--raw sends frames over AF_XDP: use --mode xdp".into(),
        )),
        (Mode::Xdp, false) => Ok((
            "xdp",
            "TCP-lite over AF_XDP on this end, requested with --mode xdp".into(),
        )),
    }
}

/// The controller's raw endpoint on its `--iface`, at the control
/// connection's local IPv4 address.
#[cfg(target_os = "linux")]
fn open_raw(
    opts: &RunOptions,
    conn: &TcpStream,
    r: &RawOptions,
) -> Result<(crate::datapath::xdp::session::RawEnd, crate::spec::RawSpec)> {
    let iface = opts.iface.as_deref().ok_or_else(|| {
        Error::Invalid("raw mode needs the interface to send and receive on: --iface IF".into())
    })?;
    let ip = super::ipv4_only(super::local_ip(conn)?, "raw mode")?;
    crate::datapath::xdp::session::check_cpus(&r.cpus)?;
    let end = crate::datapath::xdp::session::RawEnd::open(
        iface,
        ip,
        None,
        r.frame_size,
        (r.queues.as_deref(), opts.xdp_bind),
    )?;
    let tag = u32::from_be_bytes(auth::nonce()[..4].try_into().expect("4 bytes"));
    let spec = crate::spec::RawSpec {
        frame_size: r.frame_size,
        rate_pps: r.rate_pps,
        controller_mac: end.mac,
        controller_ip: ip,
        controller_port: end.port,
        tag,
        queues: r.remote_queues.clone(),
        cpus: r.remote_cpus.clone(),
    };
    Ok((end, spec))
}

#[cfg(not(target_os = "linux"))]
fn open_raw(
    _: &RunOptions,
    _: &TcpStream,
    _: &RawOptions,
) -> Result<(std::convert::Infallible, crate::spec::RawSpec)> {
    Err(Error::Invalid("raw mode needs Linux AF_XDP".into()))
}

/// Run one test to completion, starting as soon as it is ready.
pub fn run(opts: &RunOptions, mut on_event: impl FnMut(Event<'_>)) -> Result<RunReport> {
    let mut p = prepare(opts, &mut on_event)?;
    let clock = p.sync_clock(CLOCK_SAMPLES)?;
    // Far enough ahead for Start to reach the agent, with margin.
    let lead = Duration::from_micros(clock.rtt_us * 4) + START_LEAD;
    p.run_at(Some(Instant::now() + lead), on_event)
}

/// How far ahead of now a start is scheduled, beyond the round trip:
/// enough for both sides to read their counters first (every task's times
/// for the co-tenant figure are read on a thread of their own meanwhile).
pub const START_LEAD: Duration = Duration::from_millis(20);

/// Clock probes per test: cheap (one round trip each), and the best of a
/// handful is within microseconds between namespaces.
pub const CLOCK_SAMPLES: usize = 8;

/// A test that is connected, accepted and ready to start.
pub struct Prepared {
    opts: RunOptions,
    conn: TcpStream,
    addr: SocketAddr,
    data_port: u16,
    mode: &'static str,
    mode_reason: String,
    /// The agent's data path, as its Accepted said, and why.
    remote_mode: String,
    remote_mode_reason: String,
    socks: Vec<(FlowId, Socket)>,
    raw: Option<RawPrep>,
    xdp: Option<XdpPrep>,
    clock: Estimate,
    /// The agent's description of itself.
    pub agent: HostInfo,
}

/// Connect, authenticate, have the agent accept the test, and open every
/// data connection; nothing is measured yet.
pub fn prepare(opts: &RunOptions, mut on_event: impl FnMut(Event<'_>)) -> Result<Prepared> {
    let (mut mode, mut mode_reason) = resolve_mode(opts.mode, opts.raw.is_some())?;
    refuse_what_cannot_apply(opts, mode)?;
    let addr = agent_addr(opts)?;
    let data_opts = SocketOpts {
        sockbuf: opts.spec.sockbuf,
        iface: opts.iface.clone(),
        local: opts.local,
    };
    let mut conn = connect_control(addr, &data_opts, opts.connect_timeout)?;
    let agent = handshake(&mut conn, addr, opts.psk.as_deref())?;

    let mut spec = opts.spec.clone();
    let raw_end = match &opts.raw {
        Some(r) => {
            let (end, rs) = open_raw(opts, &conn, r)?;
            spec.raw = Some(rs);
            Some(end)
        }
        None => None,
    };
    // The agent sends in receive and both tests: ask for its senders' TCP state.
    spec.sender_tcp_ms = sender_tcp_ms(opts.interval, &spec);
    spec.validate()?;
    // TCP-lite: this end's ports are reserved and steered before the agent
    // is asked, so a refusal here costs the agent nothing.
    #[cfg(target_os = "linux")]
    let xdp_end = match mode {
        _ if opts.raw.is_some() => None,
        "xdp" => Some(open_stream_end(opts, super::local_ip(&conn)?)?),
        "auto" => {
            let (end, why) = auto_stream_end(opts, &spec, super::local_ip(&conn)?, addr);
            mode_reason = why;
            end
        }
        _ => None,
    };
    #[cfg(not(target_os = "linux"))]
    if mode == "auto" {
        mode_reason = "auto: AF_XDP needs Linux; kernel sockets".into();
    }
    if mode == "auto" {
        mode = "socket";
    }
    #[cfg(target_os = "linux")]
    {
        spec.peer_xdp = xdp_end.is_some();
    }
    frame::write_msg(&mut conn, &Msg::Test(Box::new(spec.clone())))?;
    let (data_port, cookie, agent_mac, remote_mode, remote_mode_reason) =
        match expect_msg(&mut conn)? {
            Msg::Accepted {
                data_port,
                cookie,
                mac,
                mode,
                mode_reason,
            } => (data_port, cookie, mac, mode, mode_reason),
            other => return Err(unexpected("accepted", other)),
        };
    on_event(Event::Accepted {
        agent: &agent,
        addr,
        data_port,
    });

    let mut socks = Vec::new();
    #[cfg_attr(not(target_os = "linux"), allow(unused_mut))]
    let mut raw = None;
    #[cfg(target_os = "linux")]
    if let (Some(end), Some(rs)) = (raw_end, spec.raw.clone()) {
        mode = end.mode;
        let peer = raw_peer(opts, &end, addr, data_port, agent_mac.as_deref())?;
        raw = Some(RawPrep {
            end,
            peer,
            spec: rs,
        });
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (raw_end, agent_mac);
    #[cfg(not(target_os = "linux"))]
    let xdp: Option<XdpPrep> = None;
    #[cfg(target_os = "linux")]
    let xdp = match xdp_end {
        Some(end) => {
            mode = end.mode;
            Some(start_streams(opts, end, addr, data_port, &cookie)?)
        }
        None => None,
    };
    if raw.is_none() && xdp.is_none() {
        let data_addr = SocketAddr::new(addr.ip(), data_port);
        socks = connect_socket_flows(opts, &data_opts, data_addr, &cookie)?;
    }
    match expect_msg(&mut conn)? {
        Msg::Ready => {}
        other => return Err(unexpected("ready", other)),
    }
    Ok(Prepared {
        opts: opts.clone(),
        conn,
        addr,
        data_port,
        mode,
        mode_reason,
        remote_mode,
        remote_mode_reason,
        socks,
        raw,
        xdp,
        clock: Estimate::default(),
        agent,
    })
}

/// `--mode auto`: a TCP-lite end if this path can take one, and why or
/// why not.
#[cfg(target_os = "linux")]
fn auto_stream_end(
    opts: &RunOptions,
    spec: &TestSpec,
    local: IpAddr,
    addr: SocketAddr,
) -> (Option<crate::datapath::xdp::stream::StreamEnd>, String) {
    use crate::datapath::xdp::stream::{Ports, StreamEnd};
    let flows = spec.flows().len();
    StreamEnd::open_auto(
        opts.iface.as_deref(),
        &crate::datapath::xdp::neigh::route_to(addr.ip()),
        (local, addr.ip()),
        (
            Ports::Block(flows),
            opts.workers.queues.as_deref(),
            opts.xdp_bind,
        ),
        flows,
        crate::auto::Peer::of(spec.remote_mode),
    )
}

/// Options that this mode or test cannot apply are refused, never ignored.
fn refuse_what_cannot_apply(opts: &RunOptions, mode: &str) -> Result<()> {
    if mode == "socket" && opts.xdp_bind != crate::spec::XdpBind::Auto {
        return Err(Error::Invalid(format!(
            "--xdp-bind {} chooses this end's AF_XDP bind: it needs --mode xdp or auto, not socket",
            opts.xdp_bind.as_str()
        )));
    }
    if opts.spec.verify && opts.raw.is_some() {
        return Err(Error::Invalid(
            "--verify hashes a TCP stream's bytes: raw frames carry no stream to hash".into(),
        ));
    }
    if let Some(i) = &opts.iface {
        sockpath::check_iface(i)?;
    }
    Ok(())
}

/// The agent's address: `--to` resolved, of `--local`'s family if given.
fn agent_addr(opts: &RunOptions) -> Result<SocketAddr> {
    let (host_part, port) = parse_target(&opts.to)?;
    let addrs: Vec<SocketAddr> = (host_part.as_str(), port)
        .to_socket_addrs()
        .map_err(|e| Error::Invalid(format!("cannot resolve {host_part:?}: {e}")))?
        .filter(|a| opts.local.is_none_or(|l| l.is_ipv4() == a.is_ipv4()))
        .collect();
    addrs.first().copied().ok_or_else(|| {
        Error::Invalid(format!(
            "{host_part:?} has no address of the same family as --local"
        ))
    })
}

/// Where this end's raw frames go: the kernel's neighbour entry first, as
/// the kernel would address them (a gateway's MAC when routed); the
/// agent's own MAC only when that cannot be resolved.
#[cfg(target_os = "linux")]
fn raw_peer(
    opts: &RunOptions,
    end: &crate::datapath::xdp::session::RawEnd,
    addr: SocketAddr,
    data_port: u16,
    agent_mac: Option<&str>,
) -> Result<crate::datapath::xdp::session::Peer> {
    use crate::datapath::xdp::neigh;
    use crate::host::iface::parse_mac;
    let ip = super::ipv4_only(addr.ip(), "raw mode")?;
    let iface = opts.iface.as_deref().unwrap_or_default();
    let mac = match neigh::resolve(iface, end.ip, ip) {
        Ok(m) => m,
        Err(e) => agent_mac
            .and_then(parse_mac)
            .ok_or_else(|| Error::Protocol(format!("{e}; and the agent sent no MAC address")))?,
    };
    Ok(crate::datapath::xdp::session::Peer {
        mac,
        ip,
        port: data_port,
    })
}

/// The test's kernel-socket data connections to `data_addr`, each opened
/// with the agent's cookie and its flow's id.
fn connect_socket_flows(
    opts: &RunOptions,
    data_opts: &SocketOpts,
    data_addr: SocketAddr,
    cookie_hex: &str,
) -> Result<Vec<(FlowId, Socket)>> {
    let cookie: [u8; 16] = auth::from_hex(cookie_hex)
        .and_then(|c| c.try_into().ok())
        .ok_or_else(|| Error::Protocol("agent sent a malformed data cookie".into()))?;
    opts.spec
        .flows()
        .into_iter()
        .map(|id| {
            let h = FlowHeader { cookie, id };
            let sock = sockpath::connect_flow(data_addr, data_opts, &h, opts.connect_timeout)?;
            Ok((id, sock))
        })
        .collect()
}

/// How often an agent that sends in `spec` reports its senders' TCP state
/// for intervals every `interval`: twice per interval, so the latest is at
/// most half an interval old at each tick; None when it does not send.
pub(crate) fn sender_tcp_ms(interval: Option<Duration>, spec: &TestSpec) -> Option<u32> {
    interval
        .filter(|_| spec.direction != crate::spec::Direction::Send && spec.raw.is_none())
        .map(|i| {
            u32::try_from(i.as_millis() / 2)
                .unwrap_or(u32::MAX)
                .max(crate::spec::MIN_SENDER_TCP_MS)
        })
}

/// This end's TCP-lite ports on `--iface`, at address `ip` (the control
/// connection's local one, or a pair client's source): one per flow.
#[cfg(target_os = "linux")]
pub(crate) fn open_stream_end(
    opts: &RunOptions,
    ip: IpAddr,
) -> Result<crate::datapath::xdp::stream::StreamEnd> {
    let iface = opts.iface.as_deref().ok_or_else(|| {
        Error::Invalid("--mode xdp needs the interface to run TCP-lite on: --iface IF".into())
    })?;
    use crate::datapath::xdp::stream::{Ports, StreamEnd};
    StreamEnd::open(
        iface,
        ip,
        Ports::Block(opts.spec.flows().len()),
        (opts.workers.queues.as_deref(), opts.xdp_bind),
        false,
    )
}

/// Start the TCP-lite worker: it connects every flow to the agent's data
/// port and sends the flow's header, then waits for the start.
#[cfg(target_os = "linux")]
pub(crate) fn start_streams(
    opts: &RunOptions,
    end: crate::datapath::xdp::stream::StreamEnd,
    agent: SocketAddr,
    data_port: u16,
    cookie: &str,
) -> Result<XdpPrep> {
    use crate::datapath::xdp::{neigh, stream};
    let cookie: [u8; 16] = auth::from_hex(cookie)
        .and_then(|c| c.try_into().ok())
        .ok_or_else(|| Error::Protocol("agent sent a malformed data cookie".into()))?;
    let agent_ip = agent.ip();
    let peer_mac = crate::wire::ethernet::MacAddr(neigh::resolve(&end.iface, end.ip, agent_ip)?);
    let ids = opts.spec.flows();
    let counters: Vec<Counter> = ids.iter().map(|_| Counter::default()).collect();
    // rr clients on this side report interval percentiles.
    let latency: Vec<Option<crate::metrics::latency::Shared>> = ids
        .iter()
        .map(|&id| {
            (opts.spec.test != crate::spec::TestKind::Stream
                && sockpath::role_of(id, true) == crate::report::model::Role::Sender)
                .then(crate::metrics::latency::shared)
        })
        .collect();
    let remote = SocketAddr::new(agent.ip(), data_port);
    let placed = end.place(ids.len(), remote);
    let plan = stream::RunPlan {
        streams: ids
            .iter()
            .zip(&placed.flows)
            .map(|(&id, &(port, worker))| stream::StreamPlan {
                open: stream::Open::Connect {
                    local: port,
                    remote,
                },
                worker: Some(worker),
                flow: match id.direction {
                    crate::spec::Direction::Send => stream::Flow::Send,
                    _ => stream::Flow::Receive,
                },
                prefix: FlowHeader { cookie, id }.encode().to_vec(),
                bytes: opts.spec.bytes_for(id.stream),
                header: None,
                expect: Vec::new(),
            })
            .collect(),
        peer_mac,
        duration: match opts.spec.limit {
            Limit::Duration { seconds } => Some(Duration::from_secs_f64(seconds)),
            Limit::Bytes { .. } => None,
        },
        bytes: None,
        verify: opts.spec.verify,
        config: stream::RunPlan::lan_config(end.mss(), None, opts.spec.tcplite_buffer()),
        idle: opts.idle_timeout,
        hard: Duration::from_secs_f64(opts.spec.nominal_seconds()) + Duration::from_secs(24 * 3600),
        cpus: opts.workers.cpus.clone(),
        poll: opts.workers.poll,
        counters: counters.clone(),
        stream_bytes: Vec::new(),
        ready: None,
        receiver_limits: false,
        expect_ids: Vec::new(),
        rr: rr_of(&opts.spec),
        interval_latency: latency.clone(),
        placement: Some(placed.how),
    };
    let gate = stream::Gate::default();
    let stop = Arc::new(AtomicBool::new(false));
    let work = stream::StreamWork::spawn(end, plan, gate.clone(), &stop)?;
    Ok(XdpPrep {
        work,
        gate,
        stop,
        counters,
        latency,
        ids,
    })
}

impl Prepared {
    /// Estimate the agent's clock offset from `n` probes; the best is kept.
    pub fn sync_clock(&mut self, n: usize) -> Result<Estimate> {
        self.clock = probe_clock(&mut self.conn, n)?;
        Ok(self.clock)
    }

    /// The round trip of the best clock probe: a lower bound on how far
    /// ahead a common start must be scheduled.
    pub fn clock(&self) -> Estimate {
        self.clock
    }

    /// Start both sides at `at` (our clock; None = now), measure, and merge
    /// both sides' results.
    pub fn run_at(
        self,
        at: Option<Instant>,
        mut on_event: impl FnMut(Event<'_>),
    ) -> Result<RunReport> {
        let Prepared {
            opts,
            mut conn,
            addr,
            data_port,
            mode,
            mode_reason,
            remote_mode,
            remote_mode_reason,
            socks,
            raw,
            xdp,
            clock: est,
            ..
        } = self;
        let at_us = at.map(|t| est.to_agent(clock::us_of(t)));
        frame::write_msg(&mut conn, &Msg::Start { at_us })?;
        let local_ip = super::local_ip(&conn).unwrap_or(addr.ip());
        let began = Began::wait(at, opts.iface.as_deref(), local_ip, addr.ip());
        let started_unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let mut sampler = Sampler::new(began.start);
        #[cfg(target_os = "linux")]
        let stop = xdp
            .as_ref()
            .map_or_else(|| Arc::new(AtomicBool::new(false)), |x| x.stop.clone());
        #[cfg(not(target_os = "linux"))]
        let stop = Arc::new(AtomicBool::new(false));
        let mut set = start_local(&opts, (socks, xdp, raw), began.start, &stop, &mut sampler)?;
        let mut follow = Follow {
            opts: &opts,
            conn: &mut conn,
            sampler,
            intervals: Vec::new(),
        };
        let remote = match follow.until_done(&mut set, began.start, &mut on_event) {
            Ok(r) => r,
            Err(e) => {
                stop.store(true, Ordering::Relaxed);
                let _ = frame::write_msg(
                    &mut conn,
                    &Msg::Abort {
                        reason: e.to_string(),
                    },
                );
                let _ = set.finish();
                return Err(e);
            }
        };
        let intervals = follow.intervals;
        let (local_flows, workers, placement) = set.finish();
        let local = began.report(local_flows, workers, placement);
        // Our own clock is the controller's: the identity estimate.
        let end = join_ends(
            (mode, &remote_mode),
            (local, Estimate::default()),
            (remote, est),
            opts.spec.verify,
        );
        Ok(RunReport {
            schema: SCHEMA.into(),
            config: RunConfig {
                to: addr.to_string(),
                from: None,
                agent_data_port: data_port,
                mode: mode.into(),
                mode_reason,
                remote_mode,
                remote_mode_reason,
                test: opts.spec.clone(),
                local: opts.local.map(|l| l.to_string()),
                iface: opts.iface.clone(),
                started_unix,
            },
            intervals,
            end,
        })
    }
}

/// The prepared data ends of this side: socket flows, a TCP-lite end, or
/// a raw-frame end.
type Ends = (Vec<(FlowId, Socket)>, Option<XdpPrep>, Option<RawPrep>);

/// Release this side's data at `start` (TCP-lite's gate opens, socket
/// flows or the raw end start), each flow watched by `sampler`.
fn start_local(
    opts: &RunOptions,
    (socks, xdp, raw): Ends,
    start: Instant,
    stop: &Arc<AtomicBool>,
    sampler: &mut Sampler,
) -> Result<LocalWork> {
    #[cfg(target_os = "linux")]
    if let Some(x) = xdp {
        let _ = x.gate.set(start);
        for ((&id, c), l) in x.ids.iter().zip(&x.counters).zip(&x.latency) {
            sampler.watch_rr(id, c.clone(), None, l.clone());
        }
        return Ok(LocalWork::Stream(x.work, x.ids));
    }
    #[cfg(not(target_os = "linux"))]
    if let Some(never) = xdp {
        match never {}
    }
    #[cfg(target_os = "linux")]
    if let Some(RawPrep { end, peer, spec }) = raw {
        let id = FlowId {
            stream: 0,
            direction: opts.spec.direction,
        };
        let live = Counter::default();
        sampler.watch(id, live.clone(), None);
        let run = crate::datapath::xdp::session::RawRun {
            role: sockpath::role_of(id, true),
            direction: id.direction,
            peer,
            raw: spec,
            duration: Duration::from_secs_f64(opts.spec.nominal_seconds()),
            start,
            cpus: opts
                .raw
                .as_ref()
                .map(|r| r.cpus.clone())
                .unwrap_or_default(),
        };
        let work = crate::datapath::xdp::session::RawWork::spawn(end, run, stop, &live)?;
        return Ok(LocalWork::Raw(work));
    }
    #[cfg(not(target_os = "linux"))]
    if let Some(never) = raw {
        match never {}
    }
    let flows = socks
        .into_iter()
        .map(|(id, sock)| socket_flow(opts, id, sock, sampler))
        .collect();
    Ok(LocalWork::Flows(FlowSet::spawn(flows, start, stop)?))
}

/// One socket flow of this side, watched by `sampler`.
fn socket_flow(opts: &RunOptions, id: FlowId, sock: Socket, sampler: &mut Sampler) -> Flow {
    let counter = Counter::default();
    let role = sockpath::role_of(id, true);
    let sender = role == crate::report::model::Role::Sender;
    // rr clients on this side report interval percentiles.
    let interval_latency = (matches!(opts.spec.test, crate::spec::TestKind::Rr { .. }) && sender)
        .then(crate::metrics::latency::shared);
    // The sender's TCP state: ours where we send, else the agent's.
    let sending = sender.then(|| sock.try_clone().ok()).flatten();
    sampler.watch_rr(id, counter.clone(), sending, interval_latency.clone());
    Flow {
        id,
        role,
        sock,
        msg_size: opts.spec.msg_size as usize,
        limits: FlowLimits {
            duration: match opts.spec.limit {
                Limit::Duration { seconds } => Some(Duration::from_secs_f64(seconds)),
                Limit::Bytes { .. } => None,
            },
            bytes: opts.spec.bytes_for(id.stream),
            idle: opts.idle_timeout,
            hard: Duration::from_secs_f64(opts.spec.nominal_seconds())
                + Duration::from_secs(24 * 3600),
        },
        counter,
        test: opts.spec.test,
        interval_latency,
        verify: opts.spec.verify,
    }
}

/// The controller's side of a running test: its intervals as they come,
/// the agent's TCP state folded in, and the agent's result at the end.
struct Follow<'a> {
    opts: &'a RunOptions,
    conn: &'a mut TcpStream,
    sampler: Sampler,
    intervals: Vec<Interval>,
}

impl Follow<'_> {
    /// Poll the local work and the control connection until both sides
    /// are done: the agent's result, or why the test failed.
    fn until_done(
        &mut self,
        set: &mut LocalWork,
        start: Instant,
        on_event: &mut impl FnMut(Event<'_>),
    ) -> Result<SideReport> {
        let interval = self.opts.interval;
        let grace = self.opts.idle_timeout * 2 + super::REPLY_TIMEOUT;
        let mut remote: Option<SideReport> = None;
        let mut local_end: Option<Instant> = None;
        let mut next_tick = interval.map(|i| start + i);
        loop {
            if local_end.is_none() {
                // Wake at the next tick, so interval edges land on whole seconds.
                let wait = next_tick.map_or(Duration::from_millis(20), |t| {
                    t.saturating_duration_since(Instant::now())
                        .min(Duration::from_millis(20))
                });
                let done = set.poll(wait);
                if let (Some(every), Some(tick)) = (interval, next_tick) {
                    next_tick = Some(self.tick(every, tick, done, on_event));
                }
                if done {
                    local_end = Some(Instant::now());
                }
            } else if let Some(since) = local_end {
                // Our side is done: the agent's result must follow soon.
                if since.elapsed() > grace {
                    return Err(Error::PeerLost(format!(
                        "the agent sent no result within {:.0} s of the test's end",
                        grace.as_secs_f64()
                    )));
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            if remote.is_none() {
                remote = self.agent_news()?;
            }
            if local_end.is_some() {
                if let Some(r) = remote.take() {
                    return Ok(r);
                }
            }
            if self
                .opts
                .cancel
                .as_ref()
                .is_some_and(|c| c.load(Ordering::Relaxed))
            {
                return Err(Error::PeerLost("interrupted".into()));
            }
        }
    }

    /// An interval when `tick` has come, or the last partial one when the
    /// work is `done` (as iperf3 prints it); the next tick.
    fn tick(
        &mut self,
        every: Duration,
        tick: Instant,
        done: bool,
        on_event: &mut impl FnMut(Event<'_>),
    ) -> Instant {
        let now = Instant::now();
        if now < tick && !(done && self.sampler.has_partial(now, every)) {
            return tick;
        }
        let iv = self.sampler.sample(now);
        on_event(Event::Interval(&iv));
        self.intervals.push(iv);
        next_tick(tick, every, now)
    }

    /// What the agent sent, if anything: its result, or its senders' TCP
    /// state (folded into the intervals).
    fn agent_news(&mut self) -> Result<Option<SideReport>> {
        match poll_msg(self.conn, Duration::from_millis(1), frame::MAX_REPORT) {
            Ok(None) => Ok(None),
            Ok(Some(Msg::Result(r))) => Ok(Some(*r)),
            Ok(Some(Msg::SenderTcp { flows })) => {
                for f in flows {
                    let id = FlowId {
                        stream: f.stream,
                        direction: f.direction,
                    };
                    self.sampler.remote_tcp(id, f.tcp);
                }
                Ok(None)
            }
            Ok(Some(Msg::Error { kind, message })) => Err(Msg::into_error(kind, message)),
            Ok(Some(other)) => Err(unexpected("result", other)),
            Err(e) => Err(Error::PeerLost(format!("agent went away mid-test ({e})"))),
        }
    }
}

/// Both ends' reports as one [`End`]: each end's start put on the
/// controller's clock with that end's own estimate, the server end's mode,
/// and with `verify` every flow's digests compared. Shared by tests the
/// controller takes part in and third-party pairs.
pub(crate) fn join_ends(
    (mode, remote_mode): (&str, &str),
    (local, local_clock): (SideReport, Estimate),
    (remote, remote_clock): (SideReport, Estimate),
    verify: bool,
) -> End {
    let local_start = local_clock.to_controller(local.start_us);
    let remote_start = remote_clock.to_controller(remote.start_us);
    let timing = Timing {
        clock_offset_us: remote_clock.offset_us,
        clock_rtt_us: local_clock.rtt_us.max(remote_clock.rtt_us),
        local_start_us: local_start,
        remote_start_us: remote_start,
        start_skew_us: remote_start as i64 - local_start as i64,
        local_start: local.start,
        remote_start: remote.start,
    };
    let mut end = End::merge(mode, local, remote, timing);
    end.remote_mode = Some(remote_mode.to_string()).filter(|m| !m.is_empty());
    if verify {
        let bad = crate::report::verify::digest_errors(&end.flows);
        end.errors.extend(bad);
    }
    end
}

/// An agent's clock offset from `n` probes over its control connection:
/// the best (shortest round trip) is kept.
pub(crate) fn probe_clock(conn: &mut TcpStream, n: usize) -> Result<Estimate> {
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let t0 = clock::now_us();
        frame::write_msg(conn, &Msg::Ping { t0 })?;
        match expect_msg(conn)? {
            Msg::Pong { t0: echoed, t1, t2 } if echoed == t0 => samples.push(Sample {
                t0,
                t1,
                t2,
                t3: clock::now_us(),
            }),
            other => return Err(unexpected("pong", other)),
        }
    }
    // No plausible probe means no offset: refuse rather than assume the
    // clocks agree (offset 0, rtt 0) and schedule a wrong start.
    Estimate::best(&samples).ok_or_else(|| {
        Error::Protocol(format!(
            "clock sync: none of the agent's {n} probe answers had plausible timestamps (it replied before it received, or took longer than the round trip)"
        ))
    })
}

pub(crate) fn connect_control(
    addr: SocketAddr,
    opts: &SocketOpts,
    timeout: Duration,
) -> Result<TcpStream> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
        .map_err(|e| Error::io("creating a control socket", e))?;
    if let Some(ip) = opts.local {
        s.bind(&SocketAddr::new(ip, 0).into())
            .map_err(|e| Error::io(format!("binding source address {ip}"), e))?;
    }
    s.connect_timeout(&SockAddr::from(addr), timeout)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::ConnectionRefused => Error::PeerLost(format!(
                "connection refused by {addr}: is `wirespeed agent` running there?"
            )),
            std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => {
                Error::PeerLost(format!(
                    "no answer from {addr} within {:.0} s",
                    timeout.as_secs_f64()
                ))
            }
            _ => Error::io(format!("connecting to {addr}"), e),
        })?;
    let s: TcpStream = s.into();
    let _ = s.set_nodelay(true);
    let _ = s.set_write_timeout(Some(super::REPLY_TIMEOUT));
    Ok(s)
}

/// Preambles (versions compared), then the key proved both ways.
pub(crate) fn handshake(
    conn: &mut TcpStream,
    addr: SocketAddr,
    psk: Option<&[u8]>,
) -> Result<HostInfo> {
    frame::write_preamble(conn, PROTOCOL_VERSION)?;
    let theirs = frame::read_preamble(&mut crate::deadline::Deadline::new(
        &*conn,
        super::REPLY_TIMEOUT,
    ))?;
    frame::check_version(PROTOCOL_VERSION, theirs, &format!("the agent at {addr}"))?;
    authenticate(conn, psk)
}

fn authenticate(conn: &mut TcpStream, psk: Option<&[u8]>) -> Result<HostInfo> {
    let nonce = match expect_msg(conn)? {
        Msg::Challenge { nonce, .. } => auth::from_hex(&nonce)
            .filter(|n| n.len() == auth::NONCE_LEN)
            .ok_or_else(|| Error::Protocol("agent sent a malformed challenge".into()))?,
        other => return Err(unexpected("challenge", other)),
    };
    let cnonce = auth::nonce();
    let proof = psk.map(|k| auth::prove(k, AuthRole::Controller, &nonce, &cnonce));
    frame::write_msg(
        conn,
        &Msg::Hello {
            nonce: auth::to_hex(&cnonce),
            proof,
            version: crate::VERSION.into(),
        },
    )?;
    match expect_msg(conn)? {
        Msg::Welcome { proof, agent } => {
            if let Some(key) = psk {
                let ok =
                    proof.is_some_and(|p| auth::verify(key, AuthRole::Agent, &nonce, &cnonce, &p));
                if !ok {
                    return Err(Error::Auth(
                        "the agent did not prove it holds the key (is it running without --psk-file?)".into(),
                    ));
                }
            }
            Ok(agent)
        }
        other => Err(unexpected("welcome", other)),
    }
}

/// An agent's Error becomes our error; anything else is a protocol fault.
pub(crate) fn unexpected(wanted: &str, got: Msg) -> Error {
    match got {
        Msg::Error { kind, message } => Msg::into_error(kind, message),
        other => Error::Protocol(format!("expected {wanted}, got {}", other.name())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(parse_target("h").unwrap(), ("h".into(), DEFAULT_PORT));
        assert_eq!(
            parse_target("198.18.0.2:99").unwrap(),
            ("198.18.0.2".into(), 99)
        );
        assert_eq!(
            parse_target("[2001:2::2]:7").unwrap(),
            ("2001:2::2".into(), 7)
        );
        assert_eq!(
            parse_target("[2001:2::2]").unwrap(),
            ("2001:2::2".into(), DEFAULT_PORT)
        );
        assert_eq!(
            parse_target("2001:2::2").unwrap(),
            ("2001:2::2".into(), DEFAULT_PORT)
        );
        assert!(parse_target("h:x").is_err());
        assert!(parse_target(":5").is_err());
        assert!(parse_target("[::1").is_err());
        assert!(parse_target("").is_err());
    }

    #[test]
    fn modes() {
        assert_eq!(resolve_mode(Mode::Auto, false).unwrap().0, "auto");
        assert_eq!(resolve_mode(Mode::Xdp, false).unwrap().0, "xdp");
        assert_eq!(resolve_mode(Mode::Xdp, true).unwrap().0, "xdp");
        assert!(resolve_mode(Mode::Socket, true).is_err());
    }
}
