//! TCP streams over AF_XDP: TCP-lite connections whose frames go straight
//! between a worker and the NIC's rings. The steering program hands this
//! end's TCP ports to its AF_XDP sockets; everything else (ARP, the
//! control connection) stays with the kernel. The peer may be another
//! wirespeed, a wirespeed agent on kernel sockets, or any plain TCP
//! server or client: it is real TCP on the wire.
//!
//! One worker thread runs every connection of the end: it busy-polls the
//! receive rings of all its queues, feeds segments to their connections,
//! moves application bytes, fires timers, and builds outgoing frames in
//! place in UMEM frames. When nothing happens for a while it sleeps in
//! `poll()` until the next timer, so a small machine's kernel keeps a core.

use super::loader::{FlowMatch, Steering};
use super::session::{check_frame_fits, mode_of, open_sockets, select_queues};
use super::xsk::XskQueue;
use crate::tcplite::{
    frame::{parse_frame, poll_transmit_frame, LinkAddrs},
    Config, Congestion, Connection, State,
};
use crate::wire::ethernet::MacAddr;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Ports one end may steer: the program's flow table holds this many.
pub const MAX_PORTS: usize = 8;
/// Frames taken from a ring per pass.
const BATCH: usize = 64;
/// Frames one queue may have on its way out (on the TX ring or in the
/// kernel, not yet completed). More only queues: every frame behind the
/// last adds its wait to the RTT, delaying the other connections' ACKs.
const TX_INFLIGHT: usize = 256;
/// How long a worker whose connections are all done keeps answering
/// their last frames (TIME-WAIT, a lost final ACK).
const LINGER: Duration = Duration::from_millis(500);
/// Frames past [`TX_INFLIGHT`] a queue may still take, for ACKs.
const ACK_RESERVE: usize = 16;
/// Idle passes before the worker sleeps in `poll()`.
const SPINS: u32 = 2000;
/// The payload pattern's period: byte k of a stream is `k % 251`.
pub const PATTERN_PERIOD: usize = 251;

/// An end's TCP ports, reserved in the kernel so no kernel socket takes
/// them, and steered to its AF_XDP sockets.
pub struct StreamEnd {
    queues: Vec<XskQueue>,
    steering: Steering,
    _reserved: Vec<socket2::Socket>,
    pub mac: MacAddr,
    pub ip: Ipv4Addr,
    pub ports: Vec<u16>,
    /// `xdp-zerocopy`, `xdp-copy` or `xdp-generic`.
    pub mode: &'static str,
    /// The interface it runs on.
    pub iface: String,
    mtu: u32,
}

/// Bind a TCP socket without listening: the port is ours, and the kernel
/// never sees its frames (the steering program takes them first).
fn reserve(ip: Ipv4Addr, port: u16) -> Result<(socket2::Socket, u16)> {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
        .map_err(|e| Error::io("reserving a TCP port", e))?;
    s.bind(&SocketAddr::new(ip.into(), port).into())
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AddrInUse => Error::Refused(format!(
                "TCP port {port} on {ip} is in use: choose another port"
            )),
            _ => Error::io(
                format!("reserving a TCP port on {ip} (is it the interface's address?)"),
                e,
            ),
        })?;
    let got = s
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .map_or(port, |a| a.port());
    Ok((s, got))
}

impl StreamEnd {
    /// Reserve `ports` on `ip` (0 = any free port; at most [`MAX_PORTS`]),
    /// steer them on `iface` and open a socket per queue. `native_only`
    /// refuses the generic (skb) hook instead of falling back to it.
    pub fn open(
        iface: &str,
        ip: Ipv4Addr,
        ports: &[u16],
        queues: Option<&[u16]>,
        native_only: bool,
    ) -> Result<StreamEnd> {
        if ports.is_empty() || ports.len() > MAX_PORTS {
            return Err(Error::Invalid(format!(
                "TCP over AF_XDP runs 1 to {MAX_PORTS} streams per end in this build"
            )));
        }
        check_frame_fits(iface, 60)?;
        let mtu = crate::host::iface::facts(iface).1.unwrap_or(1500);
        let want = select_queues(iface, queues)?;
        let mut reserved = Vec::new();
        let mut got = Vec::new();
        for &p in ports {
            let (s, p) = reserve(ip, p)?;
            reserved.push(s);
            got.push(p);
        }
        let flows: Vec<FlowMatch> = got
            .iter()
            .map(|&p| FlowMatch {
                proto: 6,
                addr: Some(ip.into()),
                ports: (p, p),
            })
            .collect();
        let mut steering = Steering::attach(iface, &flows, native_only)?;
        let queues = open_sockets(iface, &mut steering, &want)?;
        let mode = mode_of(&steering, &queues);
        Ok(StreamEnd {
            queues,
            steering,
            _reserved: reserved,
            mac: MacAddr(crate::host::iface::mac_of(iface)?),
            ip,
            ports: got,
            mode,
            iface: iface.to_string(),
            mtu,
        })
    }

    /// `--mode auto` for one end's TCP flows from `ip` to `peer_ip`: the
    /// facts first ([`crate::auto::pre_check`]: privileges, address
    /// family, flow count, the link's driver and what the peer runs), then
    /// a real native attach on `iface` (or the interface of `route`, the
    /// kernel's route to the peer). `Some` runs TCP-lite; `None` kernel
    /// sockets. The reason says which and why, for the report.
    pub fn open_auto(
        iface: Option<&str>,
        route: &super::neigh::Route,
        (ip, peer_ip): (std::net::IpAddr, std::net::IpAddr),
        ports: &[u16],
        flows: usize,
        peer: crate::auto::Peer,
    ) -> (Option<StreamEnd>, String) {
        use super::neigh::Route;
        let iface = iface.or(match route {
            Route::Dev(d) => Some(d.as_str()),
            _ => None,
        });
        let driver = iface.and_then(crate::host::iface::driver);
        let facts = crate::auto::Facts {
            linux: true,
            ipv4: ip.is_ipv4() && peer_ip.is_ipv4(),
            flows,
            max_flows: MAX_PORTS,
            peer_local: *route == Route::Local || peer_ip.is_loopback(),
            iface,
            driver: driver.as_deref(),
            privileged: crate::auto::xdp_privileged(),
            peer,
        };
        let iface = match crate::auto::pre_check(&facts) {
            Ok(i) => i,
            Err(why) => return (None, why),
        };
        let std::net::IpAddr::V4(ip4) = ip else {
            unreachable!("pre_check refuses IPv6")
        };
        match StreamEnd::open(iface, ip4, ports, None, true) {
            Ok(end) => {
                let why = crate::auto::after_probe(iface, facts.driver, Ok(end.mode));
                (Some(end), why)
            }
            Err(e) => (
                None,
                crate::auto::after_probe(iface, facts.driver, Err(e.to_string())),
            ),
        }
    }

    /// The MSS this end announces: the MTU less IPv4 and TCP headers, and
    /// no more than a UMEM frame holds.
    pub fn mss(&self) -> u16 {
        (self.mtu.min(3498) - 40) as u16
    }
}

/// Which way a connection's bytes go, seen from this end.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Flow {
    Send,
    Receive,
}

/// How a connection opens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Open {
    /// From our port `local` to `remote`.
    Connect { local: u16, remote: SocketAddr },
    /// The next SYN to our port `local` from `from` (any, if None).
    Accept { local: u16, from: Option<IpAddr> },
}

/// One connection to run.
#[derive(Clone, Debug)]
pub struct StreamPlan {
    pub open: Open,
    pub flow: Flow,
    /// Bytes to send before the payload (a data header); none for a plain peer.
    pub prefix: Vec<u8>,
    /// This stream's byte count, overriding the plan's.
    pub bytes: Option<u64>,
    /// An agent's accepted connection: read the controller's data header
    /// (with this cookie) first; it says which flow this is, and so which
    /// way the bytes go and how many.
    pub header: Option<crate::datapath::socket::Cookie>,
}

/// What every connection of a run shares.
#[derive(Clone, Debug)]
pub struct RunPlan {
    pub streams: Vec<StreamPlan>,
    pub peer_mac: MacAddr,
    /// Senders stop writing after this long, or after `bytes` each.
    pub duration: Option<Duration>,
    pub bytes: Option<u64>,
    /// Hash what is sent and received (SHA-256).
    pub verify: bool,
    pub config: Config,
    /// No progress for this long fails a connection; nothing runs past `hard`.
    pub idle: Duration,
    pub hard: Duration,
    pub cpu: Option<u16>,
    /// Per stream, bytes moved so far (acknowledged or read), for intervals.
    pub counters: Vec<crate::metrics::interval::Counter>,
    /// Header-driven streams: bytes per stream number (`--bytes` split).
    pub stream_bytes: Vec<Option<u64>>,
    /// Counts streams whose header has arrived and checked out.
    pub ready: Option<std::sync::Arc<std::sync::atomic::AtomicUsize>>,
    /// Request/response instead of a bulk stream: (request, response,
    /// burst). The `Send` end of a flow is its client.
    pub rr: Option<(u32, u32, u32)>,
    /// Receivers end their connections at the duration or byte limit
    /// themselves (a plain source sends until told); between wirespeed
    /// ends the sender decides, and the receiver reads to its FIN.
    pub receiver_limits: bool,
    /// Header-driven streams: the flows the headers may name, each once.
    pub expect_ids: Vec<crate::spec::FlowId>,
    /// rr clients: each latency is also recorded here, per stream, for
    /// interval percentiles.
    pub interval_latency: Vec<Option<crate::metrics::latency::Shared>>,
}

/// The measurement's start, set once by whoever schedules it: until then
/// connections open and exchange their prefixes, but send no payload.
pub type Gate = std::sync::Arc<std::sync::OnceLock<Instant>>;

impl RunPlan {
    /// A TCP-lite configuration for a LAN test: the MSS of the link,
    /// buffers that cover a few milliseconds at 10 Gb/s, delayed ACKs.
    /// `buffer` sizes the send and receive buffers as SO_SNDBUF/SO_RCVBUF
    /// size a kernel socket's ([`crate::spec::TestSpec::tcplite_buffer`]:
    /// the study's 64 KiB then caps the window alike), never below a few
    /// segments.
    pub fn lan_config(mss: u16, window: Option<usize>, buffer: usize) -> Config {
        let buffer = buffer.max(4 * usize::from(mss));
        Config {
            mss,
            send_buffer: buffer,
            recv_buffer: buffer,
            congestion: window.map_or(Congestion::NewReno, Congestion::Fixed),
            max_retries: 8,
            // Long enough to answer a retransmitted FIN if our last ACK
            // was lost; the worker lingers for it (see LINGER).
            time_wait: 300 * crate::tcplite::MS,
            ..Config::default()
        }
    }
}

/// One connection's outcome.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StreamResult {
    /// The flow a data header named (agent side); None otherwise.
    pub id: Option<crate::spec::FlowId>,
    pub local_port: u16,
    pub remote: String,
    pub flow: Option<Flow>,
    /// Payload bytes (prefix excluded): acknowledged (sender) or read (receiver).
    pub bytes: u64,
    /// From the start to the last byte acknowledged or read.
    pub seconds: f64,
    pub bits_per_second: f64,
    pub sha256: Option<String>,
    pub retransmitted_bytes: u64,
    /// Segments sent again, for any reason.
    pub retransmits: u64,
    pub timeouts: u64,
    pub fast_retransmits: u64,
    pub srtt_us: u64,
    pub error: Option<String>,
    /// rr tests: transactions, and the client's latency.
    #[serde(default)]
    pub rr: Option<crate::report::model::RrStats>,
    /// TCP-lite's send and receive buffer sizes.
    #[serde(default)]
    pub buffers: crate::report::model::SockBufs,
}

impl StreamResult {
    /// This connection as one side's flow of a run report. `bad_checksum`
    /// (the worker's count) adds the likely fix to an error.
    pub fn into_flow(
        self,
        id: crate::spec::FlowId,
        role: crate::report::model::Role,
        bad_checksum: u64,
    ) -> crate::report::model::FlowResult {
        use crate::report::model::{FlowResult, TcpStats, Throughput};
        FlowResult {
            stream: id.stream,
            direction: id.direction,
            role,
            throughput: Throughput::new(self.bytes, self.seconds),
            sockbuf: self.buffers,
            tcp: Some(TcpStats {
                retransmits: self.retransmits as u32,
                rtt_us: self.srtt_us as u32,
                ..Default::default()
            }),
            error: self.error.map(|e| with_checksum_hint(e, bad_checksum)),
            raw: None,
            rr: self.rr,
        }
    }
}

/// An error, and when frames with bad checksums arrived, their likely cause.
pub fn with_checksum_hint(e: String, bad_checksum: u64) -> String {
    if bad_checksum == 0 {
        return e;
    }
    format!(
        "{e} ({bad_checksum} frames arrived with bad checksums: a peer on veth or a virtual NIC may leave them to offload; turn that off on the peer's interface: ethtool -K IF tx off)"
    )
}

/// What the worker ran on.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkerReport {
    pub mode: String,
    pub cpu_pinned: Option<u16>,
    pub cpu: Option<u16>,
    /// Frames on our ports that were not TCP for us or did not parse.
    pub stray_frames: u64,
    /// Of those, frames whose IPv4 or TCP checksum was wrong.
    pub bad_checksum: u64,
    /// Frames dropped by the kernel before our sockets (XDP_STATISTICS).
    pub kernel_dropped: u64,
}

/// An rr flow's state.
#[derive(Default)]
struct RrState {
    /// Client: when each request in flight was written.
    inflight: std::collections::VecDeque<Instant>,
    /// Bytes of the message being read.
    partial: usize,
    /// Server: response bytes owed.
    owed: u64,
    transactions: u64,
    hist: Option<hdrhistogram::Histogram<u64>>,
}

struct Live {
    index: usize,
    rr: RrState,
    /// Header bytes still to read, and what was read.
    header_left: usize,
    header: Vec<u8>,
    id: Option<crate::spec::FlowId>,
    plan: StreamPlan,
    conn: Option<Connection>,
    queue: usize,
    prefix_left: usize,
    /// Payload bytes handed to the connection (sender) or read (receiver).
    moved: u64,
    hash: Option<Sha256>,
    last_progress: Instant,
    last_byte: Instant,
    /// Bytes acknowledged when last looked at (senders).
    acked: u64,
    closed_write: bool,
    error: Option<String>,
    done: bool,
}

/// The payload: `PATTERN_PERIOD` repeated, long enough for any write
/// and at least `min` bytes (an rr message is written whole).
fn pattern_source(min: usize) -> Vec<u8> {
    let n =
        (PATTERN_PERIOD * 512).max(min.div_ceil(PATTERN_PERIOD) * PATTERN_PERIOD + PATTERN_PERIOD);
    (0..n).map(|i| (i % PATTERN_PERIOD) as u8).collect()
}

/// Run the plan's connections to their end on this thread; payload flows
/// once `gate` holds the start, and times count from it.
pub fn run(
    end: StreamEnd,
    plan: &RunPlan,
    gate: &std::sync::OnceLock<Instant>,
    stop: &AtomicBool,
) -> (Vec<StreamResult>, WorkerReport) {
    let StreamEnd {
        mut queues,
        steering: _steering,
        _reserved,
        mac,
        ip,
        mode,
        ..
    } = end;
    let pinned = plan
        .cpu
        .filter(|&c| core_affinity::set_for_current(core_affinity::CoreId { id: usize::from(c) }));
    let link = LinkAddrs {
        src: mac,
        dst: plan.peer_mac,
    };
    let t0 = Instant::now();
    let us = |t: Instant| t.saturating_duration_since(t0).as_micros() as u64;
    let mut start = gate.get().copied();
    let src = pattern_source(plan.rr.map_or(0, |(a, b, _)| a.max(b) as usize));
    let mut scratch = vec![0u8; 256 * 1024];
    let mut report = WorkerReport {
        mode: mode.into(),
        cpu_pinned: pinned,
        ..Default::default()
    };
    let nq = queues.len().max(1);
    let tx_frames: Vec<usize> = queues.iter().map(|q| q.descs.len()).collect();
    let mut live: Vec<Live> = plan
        .streams
        .iter()
        .enumerate()
        .map(|(i, p)| Live {
            index: i,
            rr: RrState::default(),
            header_left: if p.header.is_some() {
                crate::datapath::socket::HEADER_LEN
            } else {
                0
            },
            header: Vec::new(),
            id: None,
            conn: match p.open {
                Open::Connect { local, remote } => {
                    let iss = u32::from_be_bytes(
                        crate::control::auth::nonce()[..4].try_into().expect("4"),
                    );
                    Some(Connection::connect(
                        plan.config.clone(),
                        SocketAddr::new(ip.into(), local),
                        remote,
                        iss,
                        us(Instant::now()),
                    ))
                }
                Open::Accept { .. } => None,
            },
            queue: i % nq,
            prefix_left: p.prefix.len(),
            plan: p.clone(),
            moved: 0,
            hash: plan.verify.then(Sha256::new),
            last_progress: Instant::now(),
            last_byte: t0,
            acked: 0,
            closed_write: false,
            error: None,
            done: false,
        })
        .collect();
    let mut rx = vec![xsk_rs::FrameDesc::default(); BATCH];
    let mut done_descs = vec![xsk_rs::FrameDesc::default(); BATCH];
    // Reused every pass: the transmit loop allocates nothing per frame.
    let mut batch: Vec<xsk_rs::FrameDesc> = Vec::with_capacity(BATCH);
    let mut mine: Vec<usize> = Vec::with_capacity(live.len());
    let mut spins = 0u32;
    let mut turn = 0usize;
    let mut all_done: Option<Instant> = None;
    let mut seen_ids: Vec<crate::spec::FlowId> = Vec::new();
    let mut limit_at = None;
    let mut fresh = start.is_some();
    loop {
        let now_i = Instant::now();
        let now = us(now_i);
        let mut busy = false;
        if start.is_none() {
            start = gate.get().copied();
            fresh = start.is_some();
        }
        if fresh {
            // The gate opened: times count from the start from here on.
            let s0 = start.expect("set");
            limit_at = plan.duration.map(|d| s0 + d);
            for l in &mut live {
                l.last_byte = s0;
                l.last_progress = now_i.max(s0);
            }
            fresh = false;
        }
        if stop.load(Ordering::Relaxed) {
            for l in live.iter_mut().filter(|l| !l.done) {
                l.error = Some("aborted".into());
                if let Some(c) = &mut l.conn {
                    c.abort();
                }
            }
        }
        // Receive: every queue, parsed and handed to its connection.
        for (qi, q) in queues.iter_mut().enumerate() {
            // SAFETY: the completion ring returns frames of this UMEM.
            let n = unsafe { q.comp.consume(&mut done_descs) };
            q.descs.extend_from_slice(&done_descs[..n]);
            // SAFETY: the receive ring returns frames of this UMEM.
            let n = unsafe { q.rx.consume(&mut rx) };
            if n == 0 {
                continue;
            }
            busy = true;
            for d in &rx[..n] {
                // SAFETY: a received frame, ours until handed back.
                let data = unsafe { q.umem.data(d) };
                let f = match parse_frame(data.contents()) {
                    Ok(f) => f,
                    Err(e) => {
                        report.stray_frames += 1;
                        report.bad_checksum += u64::from(e == crate::wire::Error::Checksum);
                        continue;
                    }
                };
                let seg = &f.segment;
                let target = live.iter_mut().position(|l| match (&l.conn, l.plan.open) {
                    (Some(c), _) => {
                        c.local().port() == seg.dst_port
                            && c.remote().port() == seg.src_port
                            && c.remote().ip() == f.src
                    }
                    (None, Open::Accept { local, from }) => {
                        from.is_none_or(|a| a == f.src)
                            && local == seg.dst_port
                            && seg.flags.syn()
                            && !seg.flags.ack()
                            && !seg.flags.rst()
                    }
                    _ => false,
                });
                let Some(i) = target else {
                    report.stray_frames += 1;
                    continue;
                };
                let l = &mut live[i];
                match &mut l.conn {
                    Some(c) => c.handle_segment(now, seg),
                    None => {
                        let Open::Accept { local, .. } = l.plan.open else {
                            unreachable!()
                        };
                        let iss = u32::from_be_bytes(
                            crate::control::auth::nonce()[..4].try_into().expect("4"),
                        );
                        l.conn = Connection::accept(
                            plan.config.clone(),
                            SocketAddr::new(IpAddr::V4(ip), local),
                            f.src,
                            seg,
                            iss,
                            now,
                        );
                        l.queue = qi;
                    }
                }
                l.last_progress = now_i;
            }
            // SAFETY: handing consumed frames of this UMEM back to the kernel.
            for _ in 0..1000 {
                if unsafe { q.fill.produce(&rx[..n]) } == n {
                    break;
                }
                q.kick_rx();
            }
        }
        // Application bytes and timers.
        for l in live.iter_mut() {
            let Some(c) = &mut l.conn else { continue };
            // Timers run for finished connections too: TIME-WAIT and
            // LAST-ACK still answer the peer while the worker lingers.
            if c.poll_timeout().is_some_and(|t| t <= now) {
                c.on_timeout(now);
                busy = true;
            }
            if l.done {
                continue;
            }
            if c.is_established() && l.prefix_left > 0 {
                let at = l.plan.prefix.len() - l.prefix_left;
                let k = c.write(&l.plan.prefix[at..]);
                l.prefix_left -= k;
                busy |= k > 0;
            }
            if c.is_established() && l.header_left > 0 {
                let mut b = [0u8; crate::datapath::socket::HEADER_LEN];
                let k = c.read(&mut b[..l.header_left]);
                l.header.extend_from_slice(&b[..k]);
                l.header_left -= k;
                busy |= k > 0;
                if l.header_left > 0 {
                    continue;
                }
                let h = <[u8; crate::datapath::socket::HEADER_LEN]>::try_from(&l.header[..])
                    .ok()
                    .and_then(|h| crate::datapath::socket::FlowHeader::decode(&h).ok())
                    .filter(|h| Some(h.cookie) == l.plan.header)
                    .filter(|h| {
                        // a flow of this test, not named before
                        (plan.expect_ids.is_empty() || plan.expect_ids.contains(&h.id))
                            && !seen_ids.contains(&h.id)
                    });
                let Some(h) = h else {
                    c.abort();
                    l.error =
                        Some("a data connection sent a bad header or another test's cookie".into());
                    l.done = true;
                    continue;
                };
                // The controller's send is our receive, and the reverse.
                l.plan.flow = match h.id.direction {
                    crate::spec::Direction::Send => Flow::Receive,
                    _ => Flow::Send,
                };
                l.plan.bytes = plan
                    .stream_bytes
                    .get(usize::from(h.id.stream))
                    .copied()
                    .flatten();
                l.id = Some(h.id);
                seen_ids.push(h.id);
                if let Some(r) = &plan.ready {
                    r.fetch_add(1, Ordering::Relaxed);
                }
            }
            if let (Some((req, resp, burst)), true) =
                (plan.rr, c.is_established() && l.header_left == 0)
            {
                let out_of_time = limit_at.is_some_and(|t| now_i >= t);
                let (req, resp) = (req as usize, resp as usize);
                let r = &mut l.rr;
                let client = l.plan.flow == Flow::Send;
                let (incoming, outgoing) = if client { (resp, req) } else { (req, resp) };
                loop {
                    let k = c.read(&mut scratch);
                    if k == 0 {
                        break;
                    }
                    busy = true;
                    l.last_progress = now_i;
                    r.partial += k;
                    while r.partial >= incoming {
                        r.partial -= incoming;
                        r.transactions += 1;
                        l.last_byte = now_i;
                        if client {
                            if let Some(c) = plan.counters.get(l.index) {
                                c.add(1);
                            }
                        }
                        if client {
                            let done_at = Instant::now();
                            if let Some(t0) = r.inflight.pop_front() {
                                let ns = done_at.duration_since(t0).as_nanos() as u64;
                                let h = r
                                    .hist
                                    .get_or_insert_with(crate::metrics::latency::new_histogram);
                                crate::metrics::latency::record(h, ns);
                                if let Some(Some(sh)) = plan.interval_latency.get(l.index) {
                                    if let Ok(mut sh) = sh.lock() {
                                        crate::metrics::latency::record(&mut sh, ns);
                                    }
                                }
                            }
                        } else {
                            r.owed += outgoing as u64;
                        }
                    }
                }
                if client && start.is_some() && l.prefix_left == 0 {
                    if !out_of_time {
                        while r.inflight.len() < burst as usize && c.send_capacity() >= outgoing {
                            // Stamped before the write: the answer may
                            // arrive within this same pass.
                            r.inflight.push_back(Instant::now());
                            c.write(&src[..outgoing]);
                            busy = true;
                        }
                    } else if r.inflight.is_empty() && !l.closed_write {
                        c.close();
                        l.closed_write = true;
                    }
                }
                while r.owed > 0 {
                    let want = (r.owed.min(src.len() as u64) as usize).min(c.send_capacity());
                    let k = if want > 0 { c.write(&src[..want]) } else { 0 };
                    if k == 0 {
                        break;
                    }
                    r.owed -= k as u64;
                    busy = true;
                }
                if !client && c.read_finished() && r.owed == 0 && !l.closed_write {
                    c.close();
                    l.closed_write = true;
                }
                continue;
            }
            if c.is_established() && l.header_left == 0 {
                match l.plan.flow {
                    Flow::Send if start.is_none() => {}
                    Flow::Send => {
                        let out_of_time = limit_at.is_some_and(|t| now_i >= t);
                        let left = l
                            .plan
                            .bytes
                            .or(plan.bytes)
                            .map_or(u64::MAX, |b| b.saturating_sub(l.moved));
                        if l.prefix_left == 0 && !out_of_time && left > 0 {
                            let off = (l.moved % PATTERN_PERIOD as u64) as usize;
                            let want = c
                                .send_capacity()
                                .min(src.len() - off)
                                .min(left.min(usize::MAX as u64) as usize);
                            if want > 0 {
                                let k = c.write(&src[off..off + want]);
                                if let Some(h) = &mut l.hash {
                                    h.update(&src[off..off + k]);
                                }
                                l.moved += k as u64;
                                busy |= k > 0;
                            }
                        } else if l.prefix_left == 0 && !l.closed_write {
                            c.close();
                            l.closed_write = true;
                        }
                    }
                    Flow::Receive
                        if plan.receiver_limits
                            && (limit_at.is_some_and(|t| now_i >= t)
                                || l.plan.bytes.or(plan.bytes).is_some_and(|b| l.moved >= b)) =>
                    {
                        // A receiver with its own limit (a plain source that
                        // would send for ever) ends the connection itself.
                        if !l.closed_write {
                            c.abort();
                            l.closed_write = true;
                            l.done = true;
                        }
                    }
                    Flow::Receive => loop {
                        let k = c.read(&mut scratch);
                        if k == 0 {
                            break;
                        }
                        busy = true;
                        if let Some(h) = &mut l.hash {
                            h.update(&scratch[..k]);
                        }
                        l.moved += k as u64;
                        if let Some(c) = plan.counters.get(l.index) {
                            c.add(k as u64);
                        }
                        l.last_byte = now_i;
                        l.last_progress = now_i;
                    },
                }
            }
            if l.plan.flow == Flow::Receive && c.read_finished() && !l.closed_write {
                c.close();
                l.closed_write = true;
            }
        }
        // Transmit: build frames in place, as many as the ring has room for.
        for (qi, q) in queues.iter_mut().enumerate() {
            batch.clear();
            let in_flight = tx_frames[qi].saturating_sub(q.descs.len());
            // A few frames past the cap, so ACKs leave even while data fills it.
            let room = (q.tx.nb_free(BATCH as u32) as usize)
                .min((TX_INFLIGHT + ACK_RESERVE).saturating_sub(in_flight));
            mine.clear();
            mine.extend((0..live.len()).filter(|&i| live[i].queue == qi));
            if mine.is_empty() || room == 0 {
                continue;
            }
            // Fair shares from a rotating first connection: one bulk sender
            // must not starve another connection's ACKs.
            turn = turn.wrapping_add(1);
            let share = (room / mine.len()).max(1);
            for pass in 0..2 {
                for k in 0..mine.len() {
                    let l = &mut live[mine[(turn + k) % mine.len()]];
                    let Some(c) = &mut l.conn else { continue };
                    let quota = if pass == 0 { share } else { room };
                    let mut took = 0;
                    while batch.len() < room && took < quota {
                        let Some(mut d) = q.descs.pop() else { break };
                        // SAFETY: a free frame of this UMEM, on no ring.
                        let mut data = unsafe { q.umem.data_mut(&mut d) };
                        data.cursor().set_pos(usize::MAX);
                        match poll_transmit_frame(c, now, &link, data.contents_mut()) {
                            Some((len, _)) => {
                                data.cursor().set_pos(len);
                                batch.push(d);
                                took += 1;
                            }
                            None => {
                                q.descs.push(d);
                                break;
                            }
                        }
                    }
                }
            }
            if !batch.is_empty() {
                busy = true;
                // SAFETY: these frames are on no other ring; room was checked.
                let sent = unsafe { q.tx.produce(&batch) };
                if sent == 0 {
                    q.descs.extend_from_slice(&batch);
                }
            }
        }
        // Kick every queue with frames outstanding, new or not: in copy
        // mode one kick sends a few dozen frames, and frames left on the
        // ring would otherwise wait for the next segment or a timeout.
        for (qi, q) in queues.iter_mut().enumerate() {
            if tx_frames[qi] > q.descs.len() && (q.busy_poll || q.tx.needs_wakeup()) {
                let _ = q.tx.wakeup();
            }
        }
        // Progress, ends and failures.
        for l in live.iter_mut().filter(|l| !l.done) {
            // Before the start an established connection waits by design;
            // only one still opening can stall.
            let waiting = start.is_none() && l.conn.as_ref().is_some_and(|c| c.is_established());
            let idle = !waiting && now_i.duration_since(l.last_progress) >= plan.idle;
            if idle
                && l.conn
                    .as_ref()
                    .is_some_and(|c| !matches!(c.state(), State::Closed | State::TimeWait))
            {
                l.error = Some(format!(
                    "no progress for {:.0} s: the peer stalled or vanished",
                    plan.idle.as_secs_f64()
                ));
                if let Some(c) = &mut l.conn {
                    c.abort();
                }
                l.done = true;
                continue;
            }
            match &l.conn {
                Some(c) => {
                    if let Some(e) = c.error() {
                        l.error.get_or_insert_with(|| e.to_string());
                        l.done = true;
                    } else if matches!(c.state(), State::Closed | State::TimeWait) {
                        l.done = true;
                    }
                    let acked = c.stats().bytes_acked;
                    if l.plan.flow == Flow::Send && plan.rr.is_none() && acked > l.acked {
                        if let Some(c) = plan.counters.get(l.index) {
                            // payload only: the prefix is acknowledged first
                            let pre = l.plan.prefix.len() as u64;
                            c.add(acked.saturating_sub(pre) - l.acked.saturating_sub(pre));
                        }
                        l.acked = acked;
                        l.last_byte = now_i;
                        l.last_progress = now_i;
                    }
                }
                None if idle => {
                    l.error = Some(format!(
                        "no connection arrived in {:.0} s",
                        plan.idle.as_secs_f64()
                    ));
                    l.done = true;
                }
                None => {}
            }
            let hard_from = start.unwrap_or(t0);
            if !l.done && now_i.duration_since(hard_from) >= plan.hard {
                l.error = Some("the test ran past its time limit".into());
                if let Some(c) = &mut l.conn {
                    c.abort();
                }
                l.done = true;
            }
            if l.error.is_some() && stop.load(Ordering::Relaxed) {
                if let Some(c) = &mut l.conn {
                    c.abort();
                }
                l.done = true;
            }
        }
        if live.iter().all(|l| l.done) {
            // Linger until every connection has fully closed (its last ACK
            // delivered, TIME-WAIT over), so no late frame of ours meets a
            // kernel with no socket for it and draws a RST; bounded.
            let settled = live
                .iter()
                .all(|l| l.conn.as_ref().is_none_or(|c| c.is_closed()));
            let since = *all_done.get_or_insert(now_i);
            if settled || now_i.duration_since(since) >= LINGER {
                break;
            }
        }
        if busy {
            spins = 0;
        } else {
            spins += 1;
            if spins > SPINS {
                spins = 0;
                let next = live
                    .iter()
                    .filter_map(|l| l.conn.as_ref()?.poll_timeout())
                    .min()
                    .map_or(1000, |t| t.saturating_sub(us(Instant::now())));
                // A timer due within the millisecond poll() rounds to: spin on.
                if next >= 1000 {
                    use std::os::fd::AsRawFd;
                    let mut fds: Vec<nix::libc::pollfd> = queues
                        .iter()
                        .map(|q| nix::libc::pollfd {
                            fd: q.rx.fd().as_raw_fd(),
                            events: nix::libc::POLLIN,
                            revents: 0,
                        })
                        .collect();
                    // SAFETY: pollfds for sockets we own.
                    unsafe { nix::libc::poll(fds.as_mut_ptr(), fds.len() as _, 1) };
                }
            } else if spins.is_multiple_of(64) {
                for q in &queues {
                    if q.busy_poll || q.fill.needs_wakeup() {
                        q.kick_rx();
                    }
                }
            }
        }
    }
    // Let the last frames (final ACKs, FINs) leave, bounded.
    let drain = Instant::now() + Duration::from_millis(50);
    while Instant::now() < drain {
        for q in &mut queues {
            if q.tx.needs_wakeup() {
                let _ = q.tx.wakeup();
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    report.cpu = nix::sched::sched_getcpu().ok().map(|c| c as u16);
    report.kernel_dropped = queues.iter().map(|q| q.kernel_dropped()).sum();
    let results = live
        .into_iter()
        .map(|l| {
            let st = l.conn.as_ref().map(|c| c.stats()).unwrap_or_default();
            let bytes = match l.plan.flow {
                // what the peer acknowledged, less the prefix
                Flow::Send => st
                    .bytes_acked
                    .saturating_sub(l.plan.prefix.len() as u64)
                    .min(l.moved),
                Flow::Receive => l.moved,
            };
            let seconds = start.map_or(0.0, |s0| {
                l.last_byte.saturating_duration_since(s0).as_secs_f64()
            });
            StreamResult {
                id: l.id,
                local_port: l.conn.as_ref().map_or(0, |c| c.local().port()),
                remote: l
                    .conn
                    .as_ref()
                    .map_or(String::new(), |c| c.remote().to_string()),
                flow: Some(l.plan.flow),
                bytes,
                seconds,
                bits_per_second: crate::units::bps(bytes, seconds),
                sha256: l.hash.map(|h| hex(&h.finalize())),
                retransmitted_bytes: st.bytes_retransmitted,
                retransmits: st.retransmits,
                timeouts: st.rto_count,
                fast_retransmits: st.fast_retransmits,
                srtt_us: st.srtt,
                error: l.error,
                buffers: crate::report::model::SockBufs {
                    snd: plan.config.send_buffer as u32,
                    rcv: plan.config.recv_buffer as u32,
                },
                rr: plan.rr.map(|_| {
                    let client = l.plan.flow == Flow::Send;
                    crate::report::model::RrStats {
                        transactions: l.rr.transactions,
                        transactions_per_second: if seconds > 0.0 {
                            l.rr.transactions as f64 / seconds
                        } else {
                            0.0
                        },
                        latency: client.then(|| {
                            l.rr.hist
                                .as_ref()
                                .map(crate::metrics::latency::percentiles)
                                .unwrap_or_default()
                        }),
                        histogram: client.then(|| {
                            crate::metrics::latency::encode(
                                l.rr.hist
                                    .as_ref()
                                    .unwrap_or(&crate::metrics::latency::new_histogram()),
                            )
                        }),
                    }
                }),
            }
        })
        .collect();
    (results, report)
}

/// A stream end's worker on its own thread. Dropping it unfinished stops
/// the worker and waits for it, so its XDP program and ports are released
/// on every early return, not after its idle timeout.
pub struct StreamWork {
    handle: Option<std::thread::JoinHandle<(Vec<StreamResult>, WorkerReport)>>,
    stop: std::sync::Arc<AtomicBool>,
    streams: usize,
}

impl StreamWork {
    /// Start the worker now: connections open at once; payload waits for `gate`.
    pub fn spawn(
        end: StreamEnd,
        plan: RunPlan,
        gate: Gate,
        stop: &std::sync::Arc<AtomicBool>,
    ) -> Result<StreamWork> {
        let streams = plan.streams.len();
        let stop = stop.clone();
        let flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name("tcplite".into())
            .spawn(move || run(end, &plan, &gate, &flag))
            .map_err(|e| Error::io("starting the TCP-lite worker", e))?;
        Ok(StreamWork {
            handle: Some(handle),
            stop,
            streams,
        })
    }

    /// Wait up to `wait`; true once the worker is done.
    pub fn poll(&mut self, wait: Duration) -> bool {
        let done = |w: &StreamWork| w.handle.as_ref().is_none_or(|h| h.is_finished());
        if !done(self) {
            std::thread::sleep(wait);
        }
        done(self)
    }

    /// The results (waits for the worker). A worker that panicked still
    /// gives one result per stream, each with the error.
    pub fn finish(mut self) -> (Vec<StreamResult>, WorkerReport) {
        let joined = self.handle.take().map(|h| h.join());
        match joined {
            Some(Ok(r)) => r,
            _ => (
                (0..self.streams)
                    .map(|_| StreamResult {
                        error: Some("the TCP-lite worker failed (panicked)".into()),
                        ..Default::default()
                    })
                    .collect(),
                WorkerReport {
                    mode: "xdp".into(),
                    ..Default::default()
                },
            ),
        }
    }
}

impl Drop for StreamWork {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            self.stop.store(true, Ordering::Relaxed);
            let _ = h.join();
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The SHA-256 of the first `n` bytes of the payload pattern: what a
/// plain receiver of a wirespeed sender should hold.
pub fn pattern_sha256(n: u64) -> String {
    let src = pattern_source(0);
    let mut h = Sha256::new();
    let mut left = n;
    let mut off = 0usize;
    while left > 0 {
        let k = (src.len() - off).min(left as usize);
        h.update(&src[off..off + k]);
        left -= k as u64;
        off = (off + k) % PATTERN_PERIOD;
    }
    hex(&h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_hash_matches_a_direct_hash() {
        let n = 1_000_003u64;
        let direct: Vec<u8> = (0..n).map(|k| (k % PATTERN_PERIOD as u64) as u8).collect();
        assert_eq!(pattern_sha256(n), hex(&Sha256::digest(&direct)));
        assert_eq!(pattern_sha256(0), hex(&Sha256::digest(b"")));
    }
}

/// A TCP-lite test against a plain TCP peer that runs no wirespeed
/// (`wirespeed run --mode xdp --plain HOST:PORT`).
#[derive(Clone, Debug)]
pub struct PlainOptions {
    pub iface: String,
    /// This end's address; None = the interface's first IPv4 address.
    pub local: Option<Ipv4Addr>,
    pub peer: SocketAddr,
    pub flow: Flow,
    pub streams: u16,
    pub duration: Option<Duration>,
    /// Bytes per stream.
    pub bytes: Option<u64>,
    pub verify: bool,
    pub window: Option<usize>,
    pub pacing_bps: Option<u64>,
    pub queues: Option<Vec<u16>>,
    pub cpu: Option<u16>,
}

/// What a plain-peer test measured (`--json`: schema `wirespeed.plain/1`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlainReport {
    pub schema: String,
    pub mode: String,
    pub local: String,
    pub peer: String,
    pub flow: Flow,
    pub streams: Vec<StreamResult>,
    pub worker: WorkerReport,
    pub total: crate::report::model::Throughput,
    pub cpu: crate::report::model::CpuReport,
}

/// The first IPv4 address of `iface`.
pub fn ipv4_of(iface: &str) -> Result<Ipv4Addr> {
    nix::ifaddrs::getifaddrs()
        .map_err(|e| Error::Invalid(format!("listing addresses: {e}")))?
        .filter(|a| a.interface_name == iface)
        .find_map(|a| a.address?.as_sockaddr_in().map(|s| s.ip()))
        .ok_or_else(|| {
            Error::Invalid(format!(
                "{iface} has no IPv4 address: TCP over AF_XDP runs over IPv4 here (add one, or name it with --local)"
            ))
        })
}

/// Run TCP-lite streams to or from a plain TCP peer.
pub fn run_plain(o: &PlainOptions, stop: &AtomicBool) -> Result<PlainReport> {
    let IpAddr::V4(peer_ip) = o.peer.ip() else {
        return Err(Error::Invalid(
            "--plain takes an IPv4 peer in this build".into(),
        ));
    };
    crate::datapath::socket::check_iface(&o.iface)?;
    let local = match o.local {
        Some(l) => l,
        None => ipv4_of(&o.iface)?,
    };
    if o.duration.is_none() && o.bytes.is_none() && o.flow == Flow::Send {
        return Err(Error::Invalid(
            "a sender needs --duration or --bytes".into(),
        ));
    }
    let end = StreamEnd::open(
        &o.iface,
        local,
        &vec![0; usize::from(o.streams.max(1))],
        o.queues.as_deref(),
        false,
    )?;
    let peer_mac = MacAddr(super::neigh::resolve(&o.iface, local, peer_ip)?);
    let mut config = RunPlan::lan_config(end.mss(), o.window, crate::spec::TCPLITE_DEFAULT_BUFFER);
    config.pacing_rate = o.pacing_bps.map(|b| b / 8 / u64::from(o.streams.max(1)));
    let plan = RunPlan {
        streams: end
            .ports
            .iter()
            .map(|&p| StreamPlan {
                open: Open::Connect {
                    local: p,
                    remote: o.peer,
                },
                flow: o.flow,
                prefix: Vec::new(),
                bytes: None,
                header: None,
            })
            .collect(),
        peer_mac,
        duration: o.duration,
        bytes: o.bytes,
        verify: o.verify,
        config,
        idle: Duration::from_secs(10),
        hard: o.duration.unwrap_or(Duration::from_secs(3600)) + Duration::from_secs(30),
        cpu: o.cpu,
        counters: Vec::new(),
        stream_bytes: Vec::new(),
        ready: None,
        receiver_limits: true,
        expect_ids: Vec::new(),
        rr: None,
        interval_latency: Vec::new(),
    };
    let mode = end.mode.to_string();
    let cpu0 = crate::metrics::cpu::CpuSnapshot::take();
    let gate = std::sync::OnceLock::new();
    let _ = gate.set(Instant::now());
    let (mut streams, worker) = run(end, &plan, &gate, stop);
    for st in &mut streams {
        st.error = st
            .error
            .take()
            .map(|e| with_checksum_hint(e, worker.bad_checksum));
    }
    let cpu = cpu0.report(&crate::metrics::cpu::CpuSnapshot::take());
    let total = crate::report::model::Throughput::sum(
        streams
            .iter()
            .map(|s| crate::report::model::Throughput::new(s.bytes, s.seconds))
            .collect::<Vec<_>>()
            .iter(),
    );
    Ok(PlainReport {
        schema: "wirespeed.plain/1".into(),
        mode,
        local: local.to_string(),
        peer: o.peer.to_string(),
        flow: o.flow,
        streams,
        worker,
        total,
        cpu,
    })
}
