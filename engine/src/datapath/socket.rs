//! Kernel-socket data path (netperf TCP_STREAM semantics): one blocking
//! socket and one thread per flow, fixed-size send() calls, reads of the
//! same size. Portable to Windows; SO_BINDTODEVICE and TCP_INFO are
//! Linux-only.

use crate::error::IoContext;
use crate::metrics::{interval::Counter, latency, tcpinfo};
use crate::report::model::{FlowResult, Role, RrStats, SockBufs, Throughput};
use crate::spec::{Direction, FlowId, TestKind};
use crate::{Error, Result};
use sha2::{Digest, Sha256};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How long a blocking socket call may wait before we re-check the clock
/// and the stop flag. Bounds the reaction time to an abort.
const POLL: Duration = Duration::from_millis(200);

/// Magic that opens every data connection, so stray connections to a data
/// port are told apart from ours.
const DATA_MAGIC: [u8; 8] = *b"WSDATA\0\x01";
/// Size of the header a controller writes first on each data connection.
pub const HEADER_LEN: usize = 28;
/// Random per-test token tying data connections to their test.
pub type Cookie = [u8; 16];

/// The first bytes on a data connection: which test and which flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowHeader {
    pub cookie: Cookie,
    pub id: FlowId,
}

impl FlowHeader {
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[..8].copy_from_slice(&DATA_MAGIC);
        b[8..24].copy_from_slice(&self.cookie);
        b[24..26].copy_from_slice(&self.id.stream.to_be_bytes());
        b[26] = match self.id.direction {
            Direction::Receive => 1,
            _ => 0,
        };
        b
    }

    pub fn decode(b: &[u8; HEADER_LEN]) -> Result<FlowHeader> {
        if b[..8] != DATA_MAGIC {
            return Err(Error::Protocol(
                "data connection without wirespeed's header".into(),
            ));
        }
        let direction = match b[26] {
            0 => Direction::Send,
            1 => Direction::Receive,
            d => return Err(Error::Protocol(format!("data header names direction {d}"))),
        };
        let mut cookie = [0u8; 16];
        cookie.copy_from_slice(&b[8..24]);
        Ok(FlowHeader {
            cookie,
            id: FlowId {
                stream: u16::from_be_bytes([b[24], b[25]]),
                direction,
            },
        })
    }
}

/// Socket options shared by every data socket of one side.
#[derive(Clone, Debug, Default)]
pub struct SocketOpts {
    /// SO_SNDBUF and SO_RCVBUF; None leaves the kernel's autotuning on.
    pub sockbuf: Option<u32>,
    /// Interface to bind to (SO_BINDTODEVICE).
    pub iface: Option<String>,
    /// Source address to bind.
    pub local: Option<IpAddr>,
}

/// Fail early, with the fix, when an interface does not exist.
pub fn check_iface(name: &str) -> Result<()> {
    #[cfg(target_os = "linux")]
    {
        nix::net::if_::if_nametoindex(name)
            .map(|_| ())
            .map_err(|_| {
                Error::Invalid(format!(
                    "no interface named {name:?} on this host (see `ip link`)"
                ))
            })
    }
    #[cfg(not(target_os = "linux"))]
    {
        Err(Error::Invalid(format!(
            "binding to interface {name:?} needs Linux's SO_BINDTODEVICE; bind a source address with --local instead"
        )))
    }
}

fn new_socket(addr: &SocketAddr, opts: &SocketOpts) -> Result<Socket> {
    let sock = Socket::new(
        Domain::for_address(*addr),
        Type::STREAM,
        Some(Protocol::TCP),
    )
    .ctx(|| "creating a TCP socket".into())?;
    if let Some(b) = opts.sockbuf {
        // Set before connect/listen so the window scale matches the buffer.
        sock.set_send_buffer_size(b as usize)
            .ctx(|| format!("setting SO_SNDBUF to {b}"))?;
        sock.set_recv_buffer_size(b as usize)
            .ctx(|| format!("setting SO_RCVBUF to {b}"))?;
    }
    if let Some(i) = &opts.iface {
        bind_device(&sock, i)?;
    }
    Ok(sock)
}

#[cfg(target_os = "linux")]
fn bind_device(sock: &Socket, iface: &str) -> Result<()> {
    check_iface(iface)?;
    sock.bind_device(Some(iface.as_bytes())).map_err(|e| {
        if e.raw_os_error() == Some(nix::libc::EPERM) {
            Error::Privilege(format!(
                "binding to interface {iface} needs CAP_NET_RAW: run as root, or drop --iface and use --local"
            ))
        } else {
            Error::io(format!("binding to interface {iface}"), e)
        }
    })
}

#[cfg(not(target_os = "linux"))]
fn bind_device(_sock: &Socket, iface: &str) -> Result<()> {
    check_iface(iface)
}

/// Listen for data connections on `ip:port` (port 0 = any).
pub fn listen(ip: IpAddr, port: u16, opts: &SocketOpts) -> Result<Socket> {
    let addr = SocketAddr::new(ip, port);
    let sock = new_socket(&addr, opts)?;
    // Lets a fixed data port be reused across sequential tests (TIME_WAIT);
    // on Windows the same option would let another process steal the port.
    #[cfg(not(windows))]
    sock.set_reuse_address(true)
        .ctx(|| "setting SO_REUSEADDR".into())?;
    sock.bind(&addr.into()).map_err(|e| match e.kind() {
        io::ErrorKind::AddrInUse => Error::Refused(format!(
            "data port {port} on {ip} is in use: choose another --data-port or leave it unset"
        )),
        io::ErrorKind::AddrNotAvailable => {
            Error::Refused(format!("address {ip} is not on this host"))
        }
        _ => Error::io(format!("binding data port {addr}"), e),
    })?;
    sock.listen(1024).ctx(|| format!("listening on {addr}"))?;
    Ok(sock)
}

/// Open one data connection and send its header.
pub fn connect_flow(
    to: SocketAddr,
    opts: &SocketOpts,
    header: &FlowHeader,
    timeout: Duration,
) -> Result<Socket> {
    connect_with(to, opts, &header.encode(), timeout)
}

/// Open one data connection and send `first` on it (a wirespeed data
/// header, or another tool's, such as iperf3's cookie).
pub fn connect_with(
    to: SocketAddr,
    opts: &SocketOpts,
    first: &[u8],
    timeout: Duration,
) -> Result<Socket> {
    let sock = new_socket(&to, opts)?;
    if let Some(ip) = opts.local {
        sock.bind(&SocketAddr::new(ip, 0).into())
            .ctx(|| format!("binding source address {ip}"))?;
    }
    sock.connect_timeout(&SockAddr::from(to), timeout)
        .ctx(|| format!("opening data connection to {to}"))?;
    sock.set_write_timeout(Some(timeout))
        .ctx(|| "setting a send timeout".into())?;
    (&sock)
        .write_all(first)
        .ctx(|| format!("sending data header to {to}"))?;
    Ok(sock)
}

/// Accept the expected data connections. Connections with a wrong header,
/// an unknown flow or a duplicate are closed and do not count; if not all
/// arrive before `timeout`, the test fails with a reason.
pub fn accept_flows(
    listener: &Socket,
    cookie: &Cookie,
    expected: &[FlowId],
    timeout: Duration,
    from: Option<IpAddr>,
) -> Result<Vec<(FlowId, Socket)>> {
    listener
        .set_nonblocking(true)
        .ctx(|| "setting listener non-blocking".into())?;
    let deadline = Instant::now() + timeout;
    let mut got: Vec<(FlowId, Socket)> = Vec::with_capacity(expected.len());
    while got.len() < expected.len() {
        if Instant::now() >= deadline {
            let port = listener
                .local_addr()
                .ok()
                .and_then(|a| a.as_socket())
                .map_or(0, |a| a.port());
            return Err(Error::PeerLost(format!(
                "only {} of {} data connections arrived within {:.0} s: is something between controller and agent blocking port {port}?",
                got.len(),
                expected.len(),
                timeout.as_secs_f64()
            )));
        }
        let (sock, peer) = match listener.accept() {
            Ok(x) => x,
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock
                    || e.kind() == io::ErrorKind::Interrupted =>
            {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
            Err(e) => return Err(Error::io("accepting a data connection", e)),
        };
        let peer_ip = peer.as_socket().map(|a| a.ip());
        let peer = peer
            .as_socket()
            .map_or_else(|| "?".into(), |a| a.to_string());
        // A third-party pair's token is bound to its client's address:
        // closed before its header is even read.
        if let Some(want) = from.filter(|w| peer_ip.map(canonical) != Some(canonical(*w))) {
            tracing::warn!(%peer, "refused a data connection: this test takes data only from {want}");
            continue;
        }
        match read_header(&sock) {
            Ok(h)
                if &h.cookie == cookie
                    && expected.contains(&h.id)
                    && !got.iter().any(|(id, _)| *id == h.id) =>
            {
                got.push((h.id, sock));
            }
            Ok(h) => {
                tracing::warn!(%peer, ?h.id, "closed a data connection for another test or a duplicate flow")
            }
            Err(e) => tracing::warn!(%peer, "closed a bad data connection: {e}"),
        }
    }
    Ok(got)
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn read_header(sock: &Socket) -> Result<FlowHeader> {
    sock.set_nonblocking(false)
        .ctx(|| "setting socket blocking".into())?;
    let mut b = [0u8; HEADER_LEN];
    crate::deadline::Deadline::new(sock, Duration::from_secs(2))
        .read_exact(&mut b)
        .map_err(|e| Error::Protocol(format!("no complete data header within 2 s: {e}")))?;
    FlowHeader::decode(&b)
}

/// When a flow stops, and how long it may stall.
#[derive(Clone, Copy, Debug)]
pub struct FlowLimits {
    /// Senders stop after this long.
    pub duration: Option<Duration>,
    /// Senders stop after this many bytes.
    pub bytes: Option<u64>,
    /// No progress for this long ends the flow with an error.
    pub idle: Duration,
    /// Nothing runs past this, whatever the peer does.
    pub hard: Duration,
}

/// One flow's work: its socket and what to do with it.
pub struct Flow {
    pub id: FlowId,
    pub role: Role,
    pub sock: Socket,
    pub msg_size: usize,
    pub limits: FlowLimits,
    /// Bytes moved (stream) or transactions done (rr), for intervals.
    pub counter: Counter,
    /// Stream or request/response.
    pub test: TestKind,
    /// rr clients record each latency here too, for interval percentiles.
    pub interval_latency: Option<latency::Shared>,
    /// Hash every payload byte sent or received (SHA-256, `--verify`).
    pub verify: bool,
}

impl Flow {
    /// Move bytes until the limit, the peer's close, an error, or `stop`.
    /// Never panics on peer behaviour; errors land in the result.
    pub fn run(self, start: Instant, stop: &AtomicBool) -> FlowResult {
        let read = |v: io::Result<usize>| v.ok().and_then(|b| u32::try_from(b).ok());
        let sockbuf = SockBufs {
            snd: read(self.sock.send_buffer_size()),
            rcv: read(self.sock.recv_buffer_size()),
        };
        let _ = self.sock.set_read_timeout(Some(POLL));
        let _ = self.sock.set_write_timeout(Some(POLL));
        let mut rr = None;
        let mut hash = self.verify.then(Sha256::new);
        let (bytes, seconds, error) = match (self.test, self.role) {
            (TestKind::Stream, Role::Sender) => self.send(start, stop, hash.as_mut()),
            (TestKind::Stream, Role::Receiver) => self.receive(start, stop, hash.as_mut()),
            (TestKind::Rr { .. }, _) => {
                let (b, secs, err, stats) = self.rr(start, stop);
                rr = Some(stats);
                (b, secs, err)
            }
        };
        FlowResult {
            stream: self.id.stream,
            direction: self.id.direction,
            role: self.role,
            throughput: Throughput::new(bytes, seconds),
            sockbuf,
            tcp: tcpinfo::read(&self.sock),
            error,
            raw: None,
            rr,
            sha256: hash.map(|h| crate::control::auth::to_hex(&h.finalize())),
        }
    }

    fn send(
        &self,
        start: Instant,
        stop: &AtomicBool,
        mut hash: Option<&mut Sha256>,
    ) -> (u64, f64, Option<String>) {
        let buf = pattern(self.msg_size);
        let mut sent = 0u64;
        let mut last_progress = Instant::now();
        let mut error = None;
        loop {
            let now = Instant::now();
            if stop.load(Ordering::Relaxed) {
                error = Some("aborted".to_string());
                break;
            }
            let elapsed = now.duration_since(start);
            if self.limits.duration.is_some_and(|d| elapsed >= d) || elapsed >= self.limits.hard {
                break;
            }
            let n = match self.limits.bytes {
                Some(b) if sent >= b => break,
                Some(b) => (b - sent).min(buf.len() as u64) as usize,
                None => buf.len(),
            };
            match (&self.sock).write(&buf[..n]) {
                Ok(k) => {
                    if let Some(h) = hash.as_deref_mut() {
                        h.update(&buf[..k]);
                    }
                    sent += k as u64;
                    self.counter.add(k as u64);
                    last_progress = now;
                }
                Err(e) if is_timeout(&e) => {
                    if now.duration_since(last_progress) >= self.limits.idle {
                        error = Some(format!(
                            "the receiver took nothing for {:.0} s",
                            self.limits.idle.as_secs_f64()
                        ));
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    error = Some(format!("send failed: {e}"));
                    break;
                }
            }
        }
        let seconds = start.elapsed().as_secs_f64();
        // Half-close, then wait for the receiver to close: its EOF is the
        // proof that every byte was read.
        let _ = self.sock.shutdown(std::net::Shutdown::Write);
        if error.is_none() {
            error = self.drain(start, stop).err();
        }
        (sent, seconds, error)
    }

    fn drain(&self, start: Instant, stop: &AtomicBool) -> Result<(), String> {
        let mut b = [0u8; 4096];
        let since = Instant::now();
        loop {
            match (&self.sock).read(&mut b) {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => {}
                // The receiver may reset instead of closing once it has all.
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Ok(()),
                Err(e) => return Err(format!("waiting for the receiver to finish: {e}")),
            }
            if stop.load(Ordering::Relaxed) {
                return Err("aborted".into());
            }
            if since.elapsed() >= self.limits.idle || start.elapsed() >= self.limits.hard {
                return Err("the receiver never closed its end".into());
            }
        }
    }

    fn receive(
        &self,
        start: Instant,
        stop: &AtomicBool,
        mut hash: Option<&mut Sha256>,
    ) -> (u64, f64, Option<String>) {
        let mut buf = vec![0u8; self.msg_size];
        let mut got = 0u64;
        let mut last_progress = Instant::now();
        let mut error = None;
        loop {
            if stop.load(Ordering::Relaxed) {
                error = Some("aborted".to_string());
                break;
            }
            match (&self.sock).read(&mut buf) {
                Ok(0) => break,
                Ok(k) => {
                    if let Some(h) = hash.as_deref_mut() {
                        h.update(&buf[..k]);
                    }
                    got += k as u64;
                    self.counter.add(k as u64);
                    last_progress = Instant::now();
                }
                Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => {
                    if last_progress.elapsed() >= self.limits.idle {
                        error = Some(format!(
                            "no data for {:.0} s: the sender stalled or vanished",
                            self.limits.idle.as_secs_f64()
                        ));
                        break;
                    }
                }
                Err(e) => {
                    error = Some(format!("receive failed: {e}"));
                    break;
                }
            }
            if start.elapsed() >= self.limits.hard {
                error = Some("the sender went on past the test's time limit".to_string());
                break;
            }
        }
        let seconds = start.elapsed().as_secs_f64();
        // Close explicitly: a duplicate handle (the interval sampler's) must
        // not keep the connection open and leave the sender waiting.
        let _ = self.sock.shutdown(std::net::Shutdown::Both);
        (got, seconds, error)
    }
}

/// Why an rr exchange stopped early.
enum Stall {
    Stop,
    Closed,
    Idle,
    Failed(io::Error),
}

impl Flow {
    /// One request/response flow: the client (this flow's Sender role)
    /// keeps `burst` requests in flight and times each transaction; the
    /// server answers every complete request. Both count transactions.
    fn rr(&self, start: Instant, stop: &AtomicBool) -> (u64, f64, Option<String>, RrStats) {
        let TestKind::Rr {
            request,
            response,
            burst,
        } = self.test
        else {
            unreachable!("rr flows only")
        };
        let _ = self.sock.set_nodelay(true);
        let (mine, theirs) = match self.role {
            Role::Sender => (request as usize, response as usize),
            Role::Receiver => (response as usize, request as usize),
        };
        let out = pattern(mine);
        let mut inb = vec![0u8; theirs];
        let mut hist = latency::new_histogram();
        let mut inflight = std::collections::VecDeque::with_capacity(burst as usize);
        let deadline = start + self.limits.duration.unwrap_or(self.limits.hard);
        let (mut done, mut sent, mut last) = (0u64, 0u64, start);
        let mut error = None;
        let client = self.role == Role::Sender;
        if client {
            for _ in 0..burst {
                // Stamped before the write: the answer can come back
                // before the write call returns.
                inflight.push_back(Instant::now());
                if let Err(e) = self.put(&out, start, stop) {
                    error = Some(self.stall_text(e, "sending a request"));
                    break;
                }
                sent += out.len() as u64;
            }
        }
        while error.is_none() && (!client || !inflight.is_empty()) {
            match self.get(&mut inb, start, stop) {
                Ok(()) => {}
                // The client closing after its last response ends a server cleanly.
                Err(Stall::Closed) if !client => break,
                Err(e) => {
                    error = Some(self.stall_text(e, "waiting for the peer"));
                    break;
                }
            }
            let now = Instant::now();
            done += 1;
            last = now;
            if client {
                // intervals count the client's transactions only
                self.counter.add(1);
            }
            if let Some(t0) = inflight.pop_front() {
                let ns = now.duration_since(t0).as_nanos() as u64;
                latency::record(&mut hist, ns);
                if let Some(h) = &self.interval_latency {
                    if let Ok(mut h) = h.lock() {
                        latency::record(&mut h, ns);
                    }
                }
            }
            if !client || now < deadline {
                if client {
                    inflight.push_back(Instant::now());
                }
                if let Err(e) = self.put(&out, start, stop) {
                    error = Some(self.stall_text(e, "answering"));
                    break;
                }
                sent += out.len() as u64;
            }
        }
        let seconds = last.duration_since(start).as_secs_f64();
        if client {
            // Half-close: the server's EOF in return says it saw the end.
            let _ = self.sock.shutdown(std::net::Shutdown::Write);
            if error.is_none() {
                error = self.drain(start, stop).err();
            }
        } else {
            let _ = self.sock.shutdown(std::net::Shutdown::Both);
        }
        let stats = RrStats {
            transactions: done,
            transactions_per_second: if seconds > 0.0 {
                done as f64 / seconds
            } else {
                0.0
            },
            latency: client.then(|| latency::percentiles(&hist)),
            histogram: client.then(|| latency::encode(&hist)),
        };
        (sent, seconds, error, stats)
    }

    fn stall_text(&self, s: Stall, doing: &str) -> String {
        match s {
            Stall::Stop => "aborted".into(),
            Stall::Closed => format!("{doing}: the peer closed the connection"),
            Stall::Idle => format!(
                "{doing}: nothing for {:.0} s: the peer stalled or vanished",
                self.limits.idle.as_secs_f64()
            ),
            Stall::Failed(e) => format!("{doing}: {e}"),
        }
    }

    /// Fill `buf` from the socket, bounded by the stop flag and the limits.
    fn get(&self, buf: &mut [u8], start: Instant, stop: &AtomicBool) -> Result<(), Stall> {
        let n = buf.len();
        self.all(n, start, stop, |at| (&self.sock).read(&mut buf[at..]))
    }

    /// Write all of `buf`, bounded as [`Flow::get`] is.
    fn put(&self, buf: &[u8], start: Instant, stop: &AtomicBool) -> Result<(), Stall> {
        self.all(buf.len(), start, stop, |at| (&self.sock).write(&buf[at..]))
    }

    /// Run `step` (a read or write from offset `at`) until `len` bytes are
    /// done, re-checking the stop flag, the idle limit and the hard limit
    /// at every socket timeout. Zero bytes is the peer's close.
    fn all(
        &self,
        len: usize,
        start: Instant,
        stop: &AtomicBool,
        mut step: impl FnMut(usize) -> io::Result<usize>,
    ) -> Result<(), Stall> {
        let mut done = 0;
        let mut progress = Instant::now();
        while done < len {
            match step(done) {
                Ok(0) => return Err(Stall::Closed),
                Ok(k) => {
                    done += k;
                    progress = Instant::now();
                }
                Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Stall::Failed(e)),
            }
            if stop.load(Ordering::Relaxed) {
                return Err(Stall::Stop);
            }
            if progress.elapsed() >= self.limits.idle || start.elapsed() >= self.limits.hard {
                return Err(Stall::Idle);
            }
        }
        Ok(())
    }
}

/// A test's flows running on their own threads.
pub struct FlowSet {
    rx: std::sync::mpsc::Receiver<FlowResult>,
    handles: Vec<std::thread::JoinHandle<()>>,
    results: Vec<FlowResult>,
    /// Each flow's identity and live counter, so a flow whose thread dies
    /// without a result is still accounted for with what it moved.
    started: Vec<Started>,
    start: Instant,
}

/// What is known of a flow without its thread's result.
#[derive(Clone, Debug)]
pub struct Started {
    pub id: FlowId,
    pub role: Role,
    pub test: TestKind,
    pub counter: Counter,
}

/// The results of a flow set, with one made up from its counter for each
/// flow whose thread ended without one: what it moved (bytes, or an rr
/// flow's transactions) and an error saying why (`why` per flow, e.g. its
/// panic message). Its TCP state and buffers are absent, not zero.
pub fn account_lost(
    mut results: Vec<FlowResult>,
    started: &[Started],
    why: impl Fn(FlowId) -> String,
    seconds: f64,
) -> Vec<FlowResult> {
    for s in started {
        if results
            .iter()
            .any(|r| r.stream == s.id.stream && r.direction == s.id.direction)
        {
            continue;
        }
        let moved = s.counter.get();
        let rr = matches!(s.test, TestKind::Rr { .. });
        results.push(FlowResult {
            stream: s.id.stream,
            direction: s.id.direction,
            role: s.role,
            // An rr flow's counter counts transactions, not bytes.
            throughput: Throughput::new(if rr { 0 } else { moved }, seconds),
            sockbuf: SockBufs::default(),
            tcp: None,
            error: Some(format!(
                "its flow thread ended without a result ({}) after {moved} {}",
                why(s.id),
                if rr { "transactions" } else { "B" }
            )),
            raw: None,
            sha256: None,
            rr: rr.then(|| RrStats {
                transactions: moved,
                transactions_per_second: if seconds > 0.0 {
                    moved as f64 / seconds
                } else {
                    0.0
                },
                latency: None,
                histogram: None,
            }),
        });
    }
    results
}

impl FlowSet {
    /// Start every flow at `start`; each thread ends on its own limits or
    /// when `stop` is set.
    pub fn spawn(
        flows: Vec<Flow>,
        start: Instant,
        stop: &std::sync::Arc<AtomicBool>,
    ) -> Result<FlowSet> {
        let (tx, rx) = std::sync::mpsc::channel();
        let mut handles = Vec::with_capacity(flows.len());
        let started = flows
            .iter()
            .map(|f| Started {
                id: f.id,
                role: f.role,
                test: f.test,
                counter: f.counter.clone(),
            })
            .collect();
        for f in flows {
            let (tx, stop) = (tx.clone(), stop.clone());
            let name = format!("flow-{}-{}", f.id.stream, f.id.direction);
            let h = std::thread::Builder::new()
                .name(name)
                .spawn(move || {
                    let _ = tx.send(f.run(start, &stop));
                })
                .ctx(|| "starting a flow thread".into())?;
            handles.push(h);
        }
        Ok(FlowSet {
            rx,
            handles,
            results: Vec::new(),
            started,
            start,
        })
    }

    /// Wait up to `wait` for flows to finish; true once all have.
    pub fn poll(&mut self, wait: Duration) -> bool {
        if self.results.len() < self.handles.len() {
            match self.rx.recv_timeout(wait) {
                Ok(r) => {
                    self.results.push(r);
                    self.results.extend(self.rx.try_iter());
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                // Every sender is gone: a flow thread died without a result.
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return true,
            }
        }
        self.results.len() == self.handles.len()
    }

    /// Join the threads and return the results (waits for all); a flow
    /// whose thread died without one is in them with what it moved and
    /// an error.
    pub fn finish(mut self) -> Vec<FlowResult> {
        while !self.poll(Duration::from_millis(100)) {}
        let mut panics = Vec::new();
        for (h, s) in self.handles.into_iter().zip(&self.started) {
            if let Err(p) = h.join() {
                let msg = p
                    .downcast_ref::<&str>()
                    .map(|m| m.to_string())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic".into());
                panics.push((s.id, msg));
            }
        }
        self.results.extend(self.rx.try_iter());
        let why = |id: FlowId| {
            panics
                .iter()
                .find(|(p, _)| *p == id)
                .map_or("it vanished".into(), |(_, m)| format!("panicked: {m}"))
        };
        let seconds = self.start.elapsed().as_secs_f64();
        let mut results = account_lost(self.results, &self.started, why, seconds);
        results.sort_by_key(|r| (r.direction == Direction::Receive, r.stream));
        results
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// The payload every sender writes: byte i of each message is `i mod 251`
/// (a prime, so the pattern does not align with power-of-two sizes).
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// Dial or accept role for a flow as seen from one side.
pub fn role_of(id: FlowId, controller: bool) -> Role {
    match (id.direction == Direction::Send, controller) {
        (true, true) | (false, false) => Role::Sender,
        _ => Role::Receiver,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_and_rejects() {
        let h = FlowHeader {
            cookie: [7; 16],
            id: FlowId {
                stream: 300,
                direction: Direction::Receive,
            },
        };
        assert_eq!(FlowHeader::decode(&h.encode()).unwrap(), h);
        let mut bad = h.encode();
        bad[0] = b'X';
        assert!(FlowHeader::decode(&bad).is_err());
        let mut bad = h.encode();
        bad[26] = 9;
        assert!(FlowHeader::decode(&bad).is_err());
    }

    #[test]
    fn a_flow_lost_without_a_result_keeps_its_bytes_and_fails() {
        let id = |stream| FlowId {
            stream,
            direction: Direction::Send,
        };
        let started: Vec<Started> = [(0, 1000), (1, 4096)]
            .into_iter()
            .map(|(s, n)| {
                let counter = Counter::default();
                counter.add(n);
                Started {
                    id: id(s),
                    role: Role::Sender,
                    test: TestKind::Stream,
                    counter,
                }
            })
            .collect();
        let finished = FlowResult {
            stream: 0,
            direction: Direction::Send,
            role: Role::Sender,
            throughput: Throughput::new(1000, 2.0),
            sockbuf: SockBufs::default(),
            tcp: None,
            error: None,
            raw: None,
            rr: None,
            sha256: None,
        };
        let all = account_lost(
            vec![finished.clone()],
            &started,
            |_| "panicked: boom".into(),
            2.0,
        );
        assert_eq!(all.len(), 2);
        assert_eq!(all[0], finished, "a flow with a result is left alone");
        let lost = &all[1];
        assert_eq!((lost.stream, lost.throughput.bytes), (1, 4096));
        let e = lost.error.as_deref().unwrap();
        assert!(e.contains("panicked: boom") && e.contains("4096 B"), "{e}");
        assert_eq!((lost.tcp, lost.sockbuf.snd), (None, None));
    }

    #[test]
    fn roles() {
        let s = FlowId {
            stream: 0,
            direction: Direction::Send,
        };
        let r = FlowId {
            stream: 0,
            direction: Direction::Receive,
        };
        assert_eq!(role_of(s, true), Role::Sender);
        assert_eq!(role_of(s, false), Role::Receiver);
        assert_eq!(role_of(r, true), Role::Receiver);
        assert_eq!(role_of(r, false), Role::Sender);
    }

    #[test]
    fn loopback_flow_moves_exact_bytes() {
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let l = listen(lo, 0, &SocketOpts::default()).unwrap();
        let port = l.local_addr().unwrap().as_socket().unwrap().port();
        let id = FlowId {
            stream: 0,
            direction: Direction::Send,
        };
        let cookie = [1u8; 16];
        let h = FlowHeader { cookie, id };
        let t = std::thread::spawn(move || {
            connect_flow(
                SocketAddr::new(lo, port),
                &SocketOpts::default(),
                &h,
                Duration::from_secs(2),
            )
            .unwrap()
        });
        let mut acc = accept_flows(&l, &cookie, &[id], Duration::from_secs(5), None).unwrap();
        let c = t.join().unwrap();
        let limits = FlowLimits {
            duration: None,
            bytes: Some(1_000_003),
            idle: Duration::from_secs(5),
            hard: Duration::from_secs(30),
        };
        let stop = AtomicBool::new(false);
        let start = Instant::now();
        let (_, rs) = acc.pop().unwrap();
        let recv = Flow {
            id,
            role: Role::Receiver,
            sock: rs,
            msg_size: 8192,
            limits,
            counter: Counter::default(),
            test: TestKind::Stream,
            interval_latency: None,
            verify: true,
        };
        let rx = std::thread::spawn(move || recv.run(start, &AtomicBool::new(false)));
        let send = Flow {
            id,
            role: Role::Sender,
            sock: c,
            msg_size: 8192,
            limits,
            counter: Counter::default(),
            test: TestKind::Stream,
            interval_latency: None,
            verify: true,
        };
        let s = send.run(start, &stop);
        let r = rx.join().unwrap();
        assert_eq!(s.throughput.bytes, 1_000_003);
        assert_eq!(r.throughput.bytes, 1_000_003);
        assert_eq!(s.error, None);
        assert_eq!(r.error, None);
        // Both ends hashed the same bytes: the pattern, message by message.
        assert!(s.sha256.as_ref().is_some_and(|h| h.len() == 64));
        assert_eq!(s.sha256, r.sha256);
    }
}
