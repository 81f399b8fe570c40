//! What a TCP-lite run is asked to do (the plan), and what it reports:
//! shared by the end, its workers and their callers.

use crate::tcplite::{Config, Congestion};
use crate::wire::ethernet::MacAddr;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// The payload pattern's period: byte k of a stream is `k % 251`.
pub const PATTERN_PERIOD: usize = 251;

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
    /// The worker a connection this end opens runs on (from its
    /// [`super::placement::Placement`]); None = by the shared rule, port % workers.
    pub worker: Option<usize>,
    /// An agent's accepted connection: read the controller's data header
    /// (with this cookie) first; it says which flow this is, and so which
    /// way the bytes go and how many.
    pub header: Option<crate::datapath::socket::Cookie>,
    /// Bytes the peer must send first, checked and not counted (an iperf3
    /// client's cookie on each data connection); a mismatch ends the
    /// connection. Counted in `ready` once they arrived.
    pub expect: Vec<u8>,
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
    /// CPUs to pin the workers to, in queue order (wrapping); empty = unpinned.
    pub cpus: Vec<u16>,
    /// How the workers wait for work ([`super::polling`]).
    pub poll: crate::spec::XdpPoll,
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
    /// How the connections this end opens were placed on its workers.
    pub placement: Option<String>,
    /// rr clients: each latency is also recorded here, per stream, for
    /// interval percentiles.
    pub interval_latency: Vec<Option<crate::metrics::latency::Shared>>,
}

/// The measurement's start, set once by whoever schedules it: until then
/// connections open and exchange their prefixes, but send no payload.
pub type Gate = std::sync::Arc<std::sync::OnceLock<Instant>>;

/// Full segments per ACK a TCP-lite receiver sends on a LAN: at MTU 1500
/// on veth every frame costs either end about a microsecond in the
/// kernel, and an ACK per two segments made the receiver send one frame
/// for every three it took; a stretch of 8 segments (11.6 KB, at most a
/// quarter of the window) leaves the sender's ACK clock and loss
/// detection intact (out-of-order data is still acknowledged at once).
pub const LAN_ACK_EVERY: usize = 8;

impl RunPlan {
    /// A TCP-lite configuration for a LAN test: the MSS of the link,
    /// buffers that cover a few milliseconds at 10 Gb/s, delayed and
    /// stretch ACKs ([`LAN_ACK_EVERY`]).
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
            ack_every: LAN_ACK_EVERY,
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
    /// RTT variation and its congestion window in segments, at the end.
    #[serde(default)]
    pub rttvar_us: u64,
    /// Payload bytes of a full segment (the MSS both ends allow, less
    /// options), as the kernel's TCP_INFO `snd_mss`; this end's own MSS
    /// if no handshake completed, 0 without a connection.
    #[serde(default)]
    pub mss: u32,
    #[serde(default)]
    pub cwnd_segments: u32,
    /// SACK was negotiated, and segments resent in SACK-based recovery.
    #[serde(default)]
    pub sack: bool,
    #[serde(default)]
    pub sack_retransmits: u64,
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
                rttvar_us: self.rttvar_us as u32,
                snd_cwnd: self.cwnd_segments,
                mss: self.mss,
                ..Default::default()
            }),
            error: self.error.map(|e| with_checksum_hint(e, bad_checksum)),
            raw: None,
            rr: self.rr,
            sha256: self.sha256,
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

pub use crate::report::model::WorkerReport;

/// What an end's workers did, one entry per queue.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EndReport {
    /// `xdp-zerocopy`, `xdp-copy` or `xdp-generic`.
    pub mode: String,
    pub workers: Vec<WorkerReport>,
    /// How the connections it opened were placed on its workers.
    pub placement: Option<String>,
}

impl EndReport {
    /// Frames with bad checksums over all workers.
    pub fn bad_checksum(&self) -> u64 {
        self.workers.iter().map(|w| w.bad_checksum).sum()
    }
}

/// The payload: `PATTERN_PERIOD` repeated, long enough for any write
/// and at least `min` bytes (an rr message is written whole).
pub(super) fn pattern_source(min: usize) -> Vec<u8> {
    let n =
        (PATTERN_PERIOD * 512).max(min.div_ceil(PATTERN_PERIOD) * PATTERN_PERIOD + PATTERN_PERIOD);
    (0..n).map(|i| (i % PATTERN_PERIOD) as u8).collect()
}

pub(super) fn hex(b: &[u8]) -> String {
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
