//! What a test is: the parameters a controller sends to an agent. Pure data
//! plus validation, so both sides agree on the flows before any socket opens.

use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Which way data flows, seen from the controller (netperf's view).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Controller sends, agent receives (TCP_STREAM).
    Send,
    /// Agent sends, controller receives (TCP_MAERTS).
    Receive,
    /// Both at once, on separate connections (iperf3 --bidir).
    Both,
}

impl Direction {
    /// The one-way directions this test runs.
    pub fn flows(self) -> &'static [Direction] {
        match self {
            Direction::Send => &[Direction::Send],
            Direction::Receive => &[Direction::Receive],
            Direction::Both => &[Direction::Send, Direction::Receive],
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Send => "send",
            Direction::Receive => "receive",
            Direction::Both => "both",
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The data path a test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Pick the best path this host and NIC support, and say why.
    Auto,
    /// Kernel bypass: XDP steering into AF_XDP sockets.
    Xdp,
    /// Ordinary kernel TCP sockets (portable fallback).
    Socket,
}

impl Mode {
    /// What an agent runs unless told otherwise.
    fn socket() -> Mode {
        Mode::Socket
    }
}

/// Which AF_XDP bind an end asks for, so copy and zero-copy can be
/// measured on the same NIC; `auto` tries zero-copy first, then copy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum XdpBind {
    #[default]
    Auto,
    Zerocopy,
    Copy,
}

impl XdpBind {
    pub fn as_str(self) -> &'static str {
        match self {
            XdpBind::Auto => "auto",
            XdpBind::Zerocopy => "zerocopy",
            XdpBind::Copy => "copy",
        }
    }
}

/// How a TCP-lite worker waits for work, as xdpsock's `-B` busy poll
/// against its `poll()` mode: `busy` spins on the rings (lowest latency,
/// a core per worker), `event` sleeps in the kernel as soon as a pass
/// finds nothing (as kernel sockets do), `auto` spins only where the
/// workers fit in cores nothing else needs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum XdpPoll {
    #[default]
    Auto,
    Busy,
    Event,
}

impl XdpPoll {
    pub fn as_str(self) -> &'static str {
        match self {
            XdpPoll::Auto => "auto",
            XdpPoll::Busy => "busy",
            XdpPoll::Event => "event",
        }
    }
}

/// When a sender stops.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Limit {
    /// Send for this many seconds.
    Duration { seconds: f64 },
    /// Send this many bytes in each direction, split over the streams.
    Bytes { bytes: u64 },
}

/// The test parameters the controller sends to the agent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TestSpec {
    pub direction: Direction,
    pub limit: Limit,
    /// Bytes per send() call, and the receive buffer size per recv().
    pub msg_size: u32,
    /// SO_SNDBUF and SO_RCVBUF to request on both sides; None = autotuning.
    pub sockbuf: Option<u32>,
    /// Parallel connections per direction.
    pub streams: u16,
    /// Interface the agent binds its data sockets to (SO_BINDTODEVICE).
    pub remote_iface: Option<String>,
    /// Data port on the agent; None = any free port.
    pub data_port: Option<u16>,
    /// Raw frames over AF_XDP instead of a TCP stream.
    #[serde(default)]
    pub raw: Option<RawSpec>,
    /// A bulk stream (the default) or request/response transactions.
    #[serde(default)]
    pub test: TestKind,
    /// The agent's data path for TCP flows: kernel sockets, TCP-lite on
    /// AF_XDP on `remote_iface`, or its own pick (`auto`).
    #[serde(default = "Mode::socket")]
    pub remote_mode: Mode,
    /// The controller's flows run over TCP-lite: its frames carry full
    /// checksums, which an agent on `auto` over veth needs to know.
    #[serde(default)]
    pub peer_xdp: bool,
    /// The agent's TCP-lite workers: its queues and CPUs.
    #[serde(default)]
    pub remote_workers: Workers,
    /// The agent's AF_XDP bind (raw mode, or TCP-lite when it runs).
    #[serde(default)]
    pub remote_xdp_bind: XdpBind,
    /// Ask the agent to send its sending sockets' TCP_INFO this often
    /// (milliseconds) while the test runs, so the controller's interval
    /// lines show the sender's retransmits and RTT in a receive test.
    /// None: it sends none (and an older controller never asks).
    #[serde(default)]
    pub sender_tcp_ms: Option<u32>,
    /// Both ends hash every payload byte of each flow (SHA-256) and the
    /// controller compares sender's and receiver's digests. An older
    /// agent ignores it and returns none: the controller then fails the run.
    #[serde(default)]
    pub verify: bool,
}

/// What each flow does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum TestKind {
    /// Bulk transfer (netperf TCP_STREAM / TCP_MAERTS).
    #[default]
    Stream,
    /// Request/response (netperf TCP_RR): the side that would send in a
    /// stream test is the client; it keeps `burst` requests in flight and
    /// times each from its request's send to its response's last byte.
    Rr {
        request: u32,
        response: u32,
        burst: u32,
    },
}

/// Largest request or response of an rr test.
pub const MAX_RR_SIZE: u32 = 1 << 20;
/// Most transactions in flight per rr stream.
pub const MAX_BURST: u32 = 1024;
/// Most rr bytes in flight per stream (burst times the larger message).
pub const MAX_RR_INFLIGHT: u64 = 128 << 10;

/// Which rr parameter a problem is with, so a plan can point at its line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RrParam {
    Request,
    Response,
    Burst,
}

/// How `run` spells the rr parameters in its messages.
pub const CLI_RR_NAMES: [&str; 3] = ["--request-size", "--response-size", "--burst"];

/// The bounds of an rr test, one check for `run --test rr` and for plans;
/// `names` spells request, response and burst as the caller's user wrote
/// them, so the message says what to change.
pub fn check_rr(
    request: u32,
    response: u32,
    burst: u32,
    names: [&str; 3],
) -> std::result::Result<(), (RrParam, String)> {
    for (v, param, name) in [
        (request, RrParam::Request, names[0]),
        (response, RrParam::Response, names[1]),
    ] {
        if !(1..=MAX_RR_SIZE).contains(&v) {
            return Err((
                param,
                format!("{name} {v} must be between 1 byte and {MAX_RR_SIZE} (1 MiB)"),
            ));
        }
    }
    let b = names[2];
    if !(1..=MAX_BURST).contains(&burst) {
        return Err((
            RrParam::Burst,
            format!("{b} {burst} must be between 1 and {MAX_BURST}"),
        ));
    }
    // With several in flight, the client writes requests while the
    // server writes responses: both must fit the buffers between
    // them, or the two block each other for good.
    if burst > 1 && u64::from(burst) * u64::from(request.max(response)) > MAX_RR_INFLIGHT {
        return Err((
            RrParam::Burst,
            format!(
                "{b} {burst} of {}-byte messages keeps more than {} KiB in flight, which can deadlock on socket buffers: lower {b} or the sizes",
                request.max(response),
                MAX_RR_INFLIGHT >> 10
            ),
        ));
    }
    Ok(())
}

/// A raw-mode test: UDP test frames between two AF_XDP endpoints.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RawSpec {
    /// Frame size in bytes without the FCS (60 = a 64-byte frame on the wire).
    pub frame_size: u16,
    /// Frames per second; None = as fast as it goes.
    pub rate_pps: Option<f64>,
    /// The controller's end: its NIC's MAC, IPv4 address and UDP port.
    pub controller_mac: [u8; 6],
    pub controller_ip: std::net::Ipv4Addr,
    pub controller_port: u16,
    /// Tags every frame of this test.
    pub tag: u32,
    /// The agent's queues, one AF_XDP socket and worker each; None = all.
    #[serde(default)]
    pub queues: Option<Vec<u16>>,
    /// CPUs the agent pins its workers to, in queue order; empty = unpinned.
    #[serde(default)]
    pub cpus: Vec<u16>,
}

/// Which NIC queues a TCP-lite end runs a worker on, and where it pins them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workers {
    /// None = every queue (at most one per online CPU).
    pub queues: Option<Vec<u16>>,
    /// CPUs in queue order (wrapping); empty = unpinned.
    pub cpus: Vec<u16>,
    /// How they wait for work (an older agent ignores it: auto).
    #[serde(default)]
    pub poll: XdpPoll,
}

impl Workers {
    /// Refuse lists no end could honour.
    pub fn validate(&self) -> Result<()> {
        if self
            .queues
            .as_ref()
            .is_some_and(|q| q.is_empty() || q.len() > MAX_QUEUES)
            || self.cpus.len() > MAX_QUEUES
        {
            return Err(Error::Invalid(format!(
                "TCP-lite takes 1 to {MAX_QUEUES} queues and at most {MAX_QUEUES} CPUs"
            )));
        }
        Ok(())
    }

    /// Whether anything was chosen (only AF_XDP ends have workers).
    pub fn is_set(&self) -> bool {
        self.queues.is_some() || !self.cpus.is_empty() || self.poll != XdpPoll::Auto
    }
}

/// Most queues one raw end opens.
pub const MAX_QUEUES: usize = 256;

/// Largest raw frame: one 4 KiB UMEM frame less XDP's headroom, as veth
/// allows at an MTU of at most 3498.
pub const MAX_RAW_FRAME: u16 = 3512;

/// TCP-lite's send and receive buffers per connection when `sockbuf` is
/// unset, and the most `sockbuf` gives them (the kernel caps SO_*BUF at
/// rmem_max/wmem_max alike): each is allocated whole.
pub const TCPLITE_DEFAULT_BUFFER: usize = 4 << 20;
pub const TCPLITE_MAX_BUFFER: usize = 64 << 20;
/// What one end's default buffers add up to at most, and the least each
/// gets: 1024 flows each way get 64 KiB buffers, 16 flows 4 MiB.
pub const TCPLITE_END_BUDGET: usize = 256 << 20;
pub const TCPLITE_MIN_BUFFER: usize = 64 << 10;

/// Hard bounds that hold whatever an agent's own caps say.
pub const MAX_MSG_SIZE: u32 = 16 << 20;
pub const MAX_SOCKBUF: u32 = 1 << 30;
pub const MAX_STREAMS: u16 = 1024;
/// Shortest period of the agent's mid-test TCP_INFO messages.
pub const MIN_SENDER_TCP_MS: u32 = 50;

impl TestSpec {
    /// Reject parameters no data path could honour.
    pub fn validate(&self) -> Result<()> {
        if self.msg_size == 0 || self.msg_size > MAX_MSG_SIZE {
            return Err(Error::Invalid(format!(
                "message size {} must be between 1 and {MAX_MSG_SIZE} bytes",
                self.msg_size
            )));
        }
        if let Some(b) = self.sockbuf {
            if !(1024..=MAX_SOCKBUF).contains(&b) {
                return Err(Error::Invalid(format!(
                    "socket buffer {b} must be between 1K and 1G"
                )));
            }
        }
        if self.streams == 0 || self.streams > MAX_STREAMS {
            return Err(Error::Invalid(format!(
                "streams {} must be between 1 and {MAX_STREAMS}",
                self.streams
            )));
        }
        match self.limit {
            Limit::Duration { seconds } if !(seconds > 0.0 && seconds.is_finite()) => {
                return Err(Error::Invalid(format!(
                    "duration {seconds} s must be positive"
                )))
            }
            Limit::Bytes { bytes } if bytes < u64::from(self.streams) => {
                return Err(Error::Invalid(format!(
                    "--bytes {bytes} is less than one byte per stream"
                )))
            }
            _ => {}
        }
        if self.sender_tcp_ms.is_some_and(|ms| ms < MIN_SENDER_TCP_MS) {
            return Err(Error::Invalid(format!(
                "sender TCP samples more often than every {MIN_SENDER_TCP_MS} ms flood the control connection"
            )));
        }
        if let Some(r) = &self.raw {
            if !(60..=MAX_RAW_FRAME).contains(&r.frame_size) {
                return Err(Error::Invalid(format!(
                    "--frame-size {} must be between 60 (64 on the wire) and {MAX_RAW_FRAME}",
                    r.frame_size
                )));
            }
            if r.rate_pps.is_some_and(|p| !(p > 0.0 && p.is_finite())) {
                return Err(Error::Invalid("--rate must be positive".into()));
            }
            if self.direction == Direction::Both || self.streams != 1 {
                return Err(Error::Invalid(
                    "raw mode runs one direction (--direction send or receive) with --streams 1; use --queues for parallel workers".into(),
                ));
            }
            if r.queues
                .as_ref()
                .is_some_and(|q| q.is_empty() || q.len() > MAX_QUEUES)
                || r.cpus.len() > MAX_QUEUES
            {
                return Err(Error::Invalid(format!(
                    "raw mode takes 1 to {MAX_QUEUES} queues and at most {MAX_QUEUES} CPUs"
                )));
            }
            if self.remote_iface.is_none() {
                return Err(Error::Invalid(
                    "raw mode needs the agent's interface: --remote-iface IF".into(),
                ));
            }
            if matches!(self.limit, Limit::Bytes { .. }) {
                return Err(Error::Invalid(
                    "raw mode runs for a --duration, not --bytes".into(),
                ));
            }
        }
        if let TestKind::Rr {
            request,
            response,
            burst,
        } = self.test
        {
            check_rr(request, response, burst, CLI_RR_NAMES)
                .map_err(|(_, msg)| Error::Invalid(msg))?;
            if self.direction == Direction::Both || self.raw.is_some() {
                return Err(Error::Invalid(
                    "an rr test has one client side (--direction send: this end; receive: the agent) and runs over TCP, not --raw".into(),
                ));
            }
            if matches!(self.limit, Limit::Bytes { .. }) {
                return Err(Error::Invalid(
                    "an rr test runs for a --duration, not --bytes".into(),
                ));
            }
        }
        if self.verify && (self.raw.is_some() || self.test != TestKind::Stream) {
            return Err(Error::Invalid(
                "--verify hashes a TCP stream's bytes: raw frames and rr transactions carry no stream to hash".into(),
            ));
        }
        if self.remote_mode == Mode::Xdp && (self.remote_iface.is_none() || self.raw.is_some()) {
            return Err(Error::Invalid(
                "--remote-mode xdp runs TCP tests over AF_XDP on the agent's --remote-iface".into(),
            ));
        }
        if self.remote_xdp_bind != XdpBind::Auto
            && self.remote_mode == Mode::Socket
            && self.raw.is_none()
        {
            return Err(Error::Invalid(format!(
                "--remote-xdp-bind {} chooses the agent's AF_XDP bind: it needs --remote-mode xdp or auto, or --raw (the agent runs kernel sockets here)",
                self.remote_xdp_bind.as_str()
            )));
        }
        self.remote_workers.validate()?;
        if self.remote_workers.is_set() && (self.remote_mode == Mode::Socket || self.raw.is_some())
        {
            return Err(Error::Invalid(
                "--remote-queues, --remote-cpus and --xdp-poll set the agent's TCP-lite workers: they need --remote-mode xdp or auto (raw mode takes them for its own workers)".into(),
            ));
        }
        if let Some(i) = &self.remote_iface {
            if i.is_empty() || i.len() > 15 || i.contains(['/', '\0']) {
                return Err(Error::Invalid(format!(
                    "{i:?} is not a valid interface name"
                )));
            }
        }
        Ok(())
    }

    /// The size of each of a TCP-lite connection's two buffers: `sockbuf`
    /// as a kernel socket takes it, within [`TCPLITE_MAX_BUFFER`]; unset,
    /// [`TCPLITE_DEFAULT_BUFFER`] shrunk so that one end's flows share at
    /// most [`TCPLITE_END_BUDGET`] (never below [`TCPLITE_MIN_BUFFER`]).
    pub fn tcplite_buffer(&self) -> usize {
        let flows = self.flows().len().max(1);
        self.sockbuf.map_or(
            (TCPLITE_END_BUDGET / (2 * flows)).clamp(TCPLITE_MIN_BUFFER, TCPLITE_DEFAULT_BUFFER),
            |b| (b as usize).min(TCPLITE_MAX_BUFFER),
        )
    }

    /// Every one-way flow of the test, in a fixed order both sides share.
    pub fn flows(&self) -> Vec<FlowId> {
        let mut v = Vec::new();
        for &direction in self.direction.flows() {
            for stream in 0..self.streams {
                v.push(FlowId { stream, direction });
            }
        }
        v
    }

    /// How many bytes a given stream sends in `--bytes` mode.
    pub fn bytes_for(&self, stream: u16) -> Option<u64> {
        match self.limit {
            Limit::Bytes { bytes } => {
                let n = u64::from(self.streams);
                let extra = u64::from(u64::from(stream) < bytes % n);
                Some(bytes / n + extra)
            }
            Limit::Duration { .. } => None,
        }
    }

    /// Longest a test may take before either side gives up on it.
    pub fn nominal_seconds(&self) -> f64 {
        match self.limit {
            Limit::Duration { seconds } => seconds,
            Limit::Bytes { .. } => 0.0,
        }
    }
}

/// One connection of a test: a stream index and the way its data flows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FlowId {
    pub stream: u16,
    /// `Send` or `Receive`, never `Both`.
    pub direction: Direction,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> TestSpec {
        TestSpec {
            direction: Direction::Both,
            limit: Limit::Bytes { bytes: 10 },
            msg_size: 8192,
            sockbuf: Some(65536),
            streams: 4,
            remote_iface: None,
            data_port: None,
            raw: None,
            test: TestKind::Stream,
            remote_mode: Mode::Socket,
            peer_xdp: false,
            remote_workers: Default::default(),
            remote_xdp_bind: XdpBind::Auto,
            sender_tcp_ms: None,
            verify: false,
        }
    }

    #[test]
    fn verify_is_refused_where_there_is_no_stream_to_hash() {
        let mut s = spec();
        s.verify = true;
        s.validate().unwrap();
        s.direction = Direction::Send;
        s.streams = 1;
        s.limit = Limit::Duration { seconds: 1.0 };
        s.test = TestKind::Rr {
            request: 1,
            response: 1,
            burst: 1,
        };
        let e = s.validate().unwrap_err().to_string();
        assert!(e.contains("--verify") && e.contains("rr"), "{e}");
        // An agent that predates the field reads it as off.
        let mut j = serde_json::to_value(spec()).unwrap();
        j.as_object_mut().unwrap().remove("verify");
        assert!(!serde_json::from_value::<TestSpec>(j).unwrap().verify);
    }

    #[test]
    fn an_xdp_bind_for_a_socket_agent_is_refused() {
        let mut s = spec();
        s.remote_xdp_bind = XdpBind::Copy;
        let e = s.validate().unwrap_err().to_string();
        assert!(
            e.contains("--remote-xdp-bind copy") && e.contains("kernel sockets"),
            "{e}"
        );
        s.remote_mode = Mode::Auto;
        s.validate().unwrap();
        // An agent that predates the field reads it as auto.
        let mut j = serde_json::to_value(spec()).unwrap();
        j.as_object_mut().unwrap().remove("remote_xdp_bind");
        let back: TestSpec = serde_json::from_value(j).unwrap();
        assert_eq!(back.remote_xdp_bind, XdpBind::Auto);
    }

    #[test]
    fn flows_cover_both_directions() {
        let f = spec().flows();
        assert_eq!(f.len(), 8);
        assert_eq!(
            f[0],
            FlowId {
                stream: 0,
                direction: Direction::Send
            }
        );
        assert_eq!(
            f[7],
            FlowId {
                stream: 3,
                direction: Direction::Receive
            }
        );
    }

    #[test]
    fn bytes_split_exactly() {
        let s = spec();
        let total: u64 = (0..4).map(|i| s.bytes_for(i).unwrap()).sum();
        assert_eq!(total, 10);
        assert_eq!(s.bytes_for(0), Some(3));
        assert_eq!(s.bytes_for(3), Some(2));
    }

    #[test]
    fn validation_rejects_nonsense() {
        assert!(spec().validate().is_ok());
        let mut s = spec();
        s.msg_size = 0;
        assert!(s.validate().is_err());
        let mut s = spec();
        s.streams = 0;
        assert!(s.validate().is_err());
        let mut s = spec();
        s.sockbuf = Some(10);
        assert!(s.validate().is_err());
        let mut s = spec();
        s.remote_iface = Some("a/b".into());
        assert!(s.validate().is_err());
        let mut s = spec();
        s.limit = Limit::Duration { seconds: f64::NAN };
        assert!(s.validate().is_err());
    }
}
