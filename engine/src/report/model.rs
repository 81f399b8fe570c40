//! The result model: what each side measured and the merged run report.
//! Serialized as-is for `--json`; the schema is documented in docs/json.md
//! and versioned by [`SCHEMA`].

pub use crate::metrics::irq::IrqReport;
use crate::spec::{Direction, TestSpec};
use crate::units::bps;
use serde::{Deserialize, Serialize};

/// Identifies the JSON document's shape; bump on incompatible change.
/// v2: figures that were not measured are null (sender/receiver, process,
/// sockbuf, retransmits, kernel_dropped, interval latencies), not 0.
pub const SCHEMA: &str = "wirespeed.run/2";

/// What a host is, as reported by itself.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HostInfo {
    pub hostname: String,
    pub os: String,
    pub arch: String,
    pub cores: usize,
    pub version: String,
    /// The kernel release (`uname -r`); null where unknown (another OS, or
    /// an older wirespeed that did not say).
    #[serde(default)]
    pub kernel: Option<String>,
}

/// Bytes moved over a time, and the rate that makes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Throughput {
    pub bytes: u64,
    pub seconds: f64,
    pub bits_per_second: f64,
}

impl Throughput {
    pub fn new(bytes: u64, seconds: f64) -> Self {
        Throughput {
            bytes,
            seconds,
            bits_per_second: bps(bytes, seconds),
        }
    }

    /// Aggregate of flows running side by side: bytes add up, the time is
    /// the longest flow's.
    pub fn sum<'a>(it: impl IntoIterator<Item = &'a Throughput>) -> Throughput {
        let (bytes, seconds) = it
            .into_iter()
            .fold((0u64, 0f64), |(b, s), t| (b + t.bytes, s.max(t.seconds)));
        Throughput::new(bytes, seconds)
    }
}

/// Which end of a flow a result comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Sender,
    Receiver,
}

/// Socket buffer sizes as the kernel granted them (Linux reports double
/// the requested value: half is bookkeeping overhead); None where they
/// could not be read back, or there is no socket (raw frames).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SockBufs {
    pub snd: Option<u32>,
    pub rcv: Option<u32>,
}

/// TCP's own view of a connection at its end (Linux TCP_INFO).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TcpStats {
    pub retransmits: u32,
    pub rtt_us: u32,
    pub rttvar_us: u32,
    pub snd_cwnd: u32,
    pub mss: u32,
    pub pmtu: u32,
}

/// What one raw-mode worker did (AF_XDP, `--raw`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RawCount {
    pub frames: u64,
    /// L2 bytes: the frames as built, without the FCS the NIC appends.
    pub bytes: u64,
    pub gaps: u64,
    pub reorders: u64,
    pub malformed: u64,
    /// Frames the kernel dropped before the receiving socket saw them
    /// (its rx ring full, its fill ring empty, or invalid): loss that is the
    /// receiver's own, not the path's. None where XDP_STATISTICS could
    /// not be read (on any of the queues added up).
    #[serde(default)]
    pub kernel_dropped: Option<u64>,
}

impl RawCount {
    /// Add another worker's counts.
    pub fn add(&mut self, o: &RawCount) {
        self.frames += o.frames;
        self.bytes += o.bytes;
        self.gaps += o.gaps;
        self.reorders += o.reorders;
        self.malformed += o.malformed;
        self.kernel_dropped = self
            .kernel_dropped
            .zip(o.kernel_dropped)
            .map(|(a, b)| a + b);
    }
}

/// What one queue's worker did in a raw test.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct QueueRaw {
    pub queue: u16,
    /// The CPU the worker was pinned to (`--cpus`); None = unpinned.
    pub cpu_pinned: Option<u16>,
    /// The CPU the worker ran on when it finished.
    pub cpu: Option<u16>,
    /// Whether the socket took SO_PREFER_BUSY_POLL and SO_BUSY_POLL_BUDGET.
    pub busy_poll: bool,
    #[serde(flatten)]
    pub count: RawCount,
    pub seconds: f64,
    pub frames_per_second: f64,
}

/// Raw-mode figures of one flow end.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RawStats {
    #[serde(flatten)]
    pub count: RawCount,
    pub frame_size: u32,
    pub frames_per_second: f64,
    /// L2 rate: frame bytes (no FCS).
    pub l2_bits_per_second: f64,
    /// L1 rate: plus FCS (4), preamble (8) and inter-frame gap (12): what a
    /// link's speed counts.
    pub l1_bits_per_second: f64,
    /// Per queue, in queue order.
    #[serde(default)]
    pub queues: Vec<QueueRaw>,
    /// Receiver: frames of the test flow that the steering program
    /// redirected to a socket. Sent minus this is lost before the
    /// receiver's XDP hook (the link, the driver's ring); this minus
    /// received is `kernel_dropped`.
    #[serde(default)]
    pub steered: Option<u64>,
    /// Receiver: frames of the test flow that arrived on a queue without a
    /// socket (choose the queues the NIC's RSS uses with --queues).
    #[serde(default)]
    pub no_socket: Option<u64>,
}

/// Frames per second, zero when no time passed.
fn rate(frames: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        frames as f64 / seconds
    } else {
        0.0
    }
}

impl RawStats {
    pub fn new(count: RawCount, frame_size: u32, seconds: f64) -> RawStats {
        let pps = rate(count.frames, seconds);
        RawStats {
            count,
            frame_size,
            frames_per_second: pps,
            l2_bits_per_second: pps * f64::from(frame_size) * 8.0,
            l1_bits_per_second: pps * f64::from(frame_size + 24) * 8.0,
            queues: Vec::new(),
            steered: None,
            no_socket: None,
        }
    }

    /// The totals of several queues' workers, which ran side by side: the
    /// counts add up, the time is the longest worker's.
    pub fn from_queues(frame_size: u32, mut queues: Vec<QueueRaw>) -> RawStats {
        // Drops are known only if every queue's are.
        let mut count = RawCount {
            kernel_dropped: Some(0),
            ..Default::default()
        };
        let mut seconds = 0.0f64;
        for q in &mut queues {
            q.frames_per_second = rate(q.count.frames, q.seconds);
            count.add(&q.count);
            seconds = seconds.max(q.seconds);
        }
        RawStats {
            queues,
            ..RawStats::new(count, frame_size, seconds)
        }
    }
}

/// One side's measurement of one flow.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FlowResult {
    pub stream: u16,
    pub direction: Direction,
    pub role: Role,
    #[serde(flatten)]
    pub throughput: Throughput,
    pub sockbuf: SockBufs,
    pub tcp: Option<TcpStats>,
    /// Set when the flow ended abnormally; its bytes still count.
    pub error: Option<String>,
    /// Raw-mode figures (frames, gaps, L1/L2 rates); None for TCP flows.
    #[serde(default)]
    pub raw: Option<RawStats>,
    /// Request/response figures; None for stream tests.
    #[serde(default)]
    pub rr: Option<RrStats>,
    /// SHA-256 (hex) of every payload byte this end sent or received;
    /// None unless the test asked to verify (`--verify`).
    #[serde(default)]
    pub sha256: Option<String>,
}

/// What one end of an rr flow counted.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RrStats {
    /// Complete transactions: responses received (client) or sent (server).
    pub transactions: u64,
    pub transactions_per_second: f64,
    /// The client's latency percentiles; None on the server.
    pub latency: Option<crate::metrics::latency::Percentiles>,
    /// The client's HdrHistogram of nanoseconds (V2 deflate, base64).
    pub histogram: Option<String>,
}

/// CPU time shares in percent over the test, for a core or the host.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CpuShare {
    pub user: f64,
    pub nice: f64,
    pub system: f64,
    /// Hard interrupts; None where the OS does not break them out.
    pub irq: Option<f64>,
    pub softirq: Option<f64>,
    pub steal: Option<f64>,
    pub iowait: Option<f64>,
    pub idle: f64,
}

impl CpuShare {
    /// Everything but idle and iowait.
    pub fn busy(&self) -> f64 {
        100.0 - self.idle - self.iowait.unwrap_or(0.0)
    }
}

/// One core's share.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct CoreShare {
    pub cpu: usize,
    #[serde(flatten)]
    pub share: CpuShare,
}

/// The measuring process's own CPU time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProcessCpu {
    pub user_seconds: f64,
    pub system_seconds: f64,
    /// (user + system) / wall time, as iperf3 reports it: 100 = one core.
    pub percent_of_core: f64,
    /// The same divided by the number of cores: 100 = the whole host.
    pub percent_of_host: f64,
}

/// CPU use on one host over the measured interval.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CpuReport {
    /// Where the figures come from (`/proc/stat`, `GetSystemTimes`), or
    /// `unavailable: REASON`.
    pub source: String,
    pub seconds: f64,
    pub cores: usize,
    /// None when the host's counters could not be read (`source` says why).
    pub host: Option<CpuShare>,
    pub per_core: Vec<CoreShare>,
    /// None when the process's times could not be read (`process_source`
    /// says why).
    pub process: Option<ProcessCpu>,
    /// `getrusage`, `GetProcessTimes`, or `unavailable: REASON`.
    #[serde(default)]
    pub process_source: String,
    /// CPU used by processes other than wirespeed on this host, per CPU;
    /// None from an older agent.
    #[serde(default)]
    pub tenants: Option<crate::metrics::tenants::TenantReport>,
}

/// Everything one side reports about a test.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SideReport {
    pub host: HostInfo,
    pub flows: Vec<FlowResult>,
    pub cpu: CpuReport,
    /// Interrupt and softirq work over the test (Linux; empty elsewhere).
    #[serde(default)]
    pub irq: IrqReport,
    /// When this side started and ended its flows, in its own clock
    /// (microseconds since its process's monotonic epoch).
    pub start_us: u64,
    pub end_us: u64,
    /// How its wait for the common start went (None: an older agent).
    #[serde(default)]
    pub start: Option<crate::control::clock::StartFacts>,
    /// TCP-lite ends: one entry per worker.
    #[serde(default)]
    pub workers: Vec<WorkerReport>,
    /// And how the connections it opened were placed on them.
    #[serde(default)]
    pub placement: Option<String>,
}

/// What one TCP-lite worker (one AF_XDP queue, one thread) did.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkerReport {
    /// The NIC queue it polled.
    pub queue: u32,
    pub cpu_pinned: Option<u16>,
    /// The CPU it ran on when it finished.
    pub cpu: Option<u16>,
    /// Connections it owned.
    pub flows: u32,
    /// TCP segments handled (from its own queue or handed over) and sent.
    pub segments_in: u64,
    pub segments_out: u64,
    /// Frames that arrived on its queue for a connection another worker
    /// owns, handed to that worker; and of those, frames dropped because
    /// the owner's hand-off ring was full (TCP retransmits them).
    pub misrouted: u64,
    pub handoff_dropped: u64,
    /// Passes of its loop, and the share of them that found work.
    pub polls: u64,
    pub busy_polls: u64,
    /// How it waited for work: `busy` or `event` (`--xdp-poll`, auto
    /// resolved); None from an agent that predates the choice.
    #[serde(default)]
    pub poll_mode: Option<String>,
    /// Times it slept in the kernel waiting for a frame or a timer.
    #[serde(default)]
    pub sleeps: u64,
    /// Frames on our ports that were not TCP for us or did not parse.
    pub stray_frames: u64,
    /// Of those, frames whose IPv4 or TCP checksum was wrong.
    pub bad_checksum: u64,
    /// Frames dropped by the kernel before its socket (XDP_STATISTICS):
    /// the rx ring was full, plus other drops (no buffer, too long); None
    /// where the kernel's statistics could not be read.
    pub kernel_dropped: Option<u64>,
    /// Of those, the rx ring full; and times the fill ring was found
    /// empty (a frame then waits or is dropped, by driver).
    #[serde(default)]
    pub rx_ring_full: Option<u64>,
    #[serde(default)]
    pub fill_ring_empty: Option<u64>,
    /// Its socket was bound with XDP_USE_SG: frames longer than one UMEM
    /// chunk (jumbo frames) come and go as chains of descriptors.
    #[serde(default)]
    pub multi_buffer: bool,
}

impl WorkerReport {
    /// Share of passes that found work, 0 to 1; None before any pass.
    pub fn poll_efficiency(&self) -> Option<f64> {
        (self.polls > 0).then(|| self.busy_polls as f64 / self.polls as f64)
    }
}

/// Both ends' TCP-lite workers (empty for an end on kernel sockets).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BothWorkers {
    pub local: Vec<WorkerReport>,
    pub remote: Vec<WorkerReport>,
    /// How this end's connections were placed on its workers (the
    /// controller opens them; the agent's follow).
    #[serde(default)]
    pub placement: Option<String>,
}

/// One flow's share of a reporting interval.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct IntervalFlow {
    pub stream: u16,
    pub direction: Direction,
    pub bytes: u64,
    pub bits_per_second: f64,
    /// The sending socket's TCP state (TCP_INFO): retransmits in this
    /// interval, smoothed RTT and congestion window (segments) at its end;
    /// None where the sender's state was not read.
    pub retransmits: Option<u32>,
    pub rtt_us: Option<u32>,
    #[serde(default)]
    pub snd_cwnd: Option<u32>,
    /// Which end's socket those came from: the sender's, this end's in a
    /// send test, the agent's (its latest report) in a receive test.
    #[serde(default)]
    pub tcp_from: Option<TcpFrom>,
    /// rr tests: this interval's transactions and latency (client side).
    #[serde(default)]
    pub rr: Option<IntervalRr>,
}

/// The end a flow's TCP state was read on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TcpFrom {
    Local,
    Agent,
}

impl TcpFrom {
    pub fn as_str(self) -> &'static str {
        match self {
            TcpFrom::Local => "local",
            TcpFrom::Agent => "agent",
        }
    }
}

/// One interval of an rr flow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct IntervalRr {
    pub transactions: u64,
    pub transactions_per_second: f64,
    /// This interval's latency; None when no transaction completed in it.
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
    pub max_us: Option<f64>,
}

/// One reporting interval, measured on the controller (or on a
/// third-party pair's client agent, which stands where it would).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    pub start: f64,
    pub end: f64,
    pub flows: Vec<IntervalFlow>,
    pub sum: Throughput,
}

/// How the test was set up, including what was resolved at run time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    /// The agent's control address, resolved (a third-party pair's server).
    pub to: String,
    /// A third-party pair's client agent; null when the controller is the client.
    #[serde(default)]
    pub from: Option<String>,
    /// The data port the agent listened on.
    pub agent_data_port: u16,
    pub mode: String,
    pub mode_reason: String,
    /// The agent's data path (`socket`, `xdp-copy`, ...) and why it runs it.
    #[serde(default)]
    pub remote_mode: String,
    #[serde(default)]
    pub remote_mode_reason: String,
    /// The parameters sent to the agent.
    pub test: TestSpec,
    pub local: Option<String>,
    pub iface: Option<String>,
    pub started_unix: f64,
}

/// Both ends of one flow.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FlowPair {
    pub stream: u16,
    pub direction: Direction,
    /// None when that end reported nothing for this flow (an error in
    /// `End::errors` says so); the other end's figures still count.
    pub sender: Option<FlowResult>,
    pub receiver: Option<FlowResult>,
}

/// Totals for one direction: the sender's and the receiver's view.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DirectionSummary {
    pub direction: Direction,
    pub sent: Throughput,
    pub received: Throughput,
    /// The senders' retransmits (TCP_INFO or TCP-lite); None unless every
    /// sender of this direction measured them (a Windows sender, raw
    /// frames): a partial sum would read as a clean link.
    pub retransmits: Option<u64>,
}

/// CPU on both sides.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BothCpu {
    pub local: CpuReport,
    pub remote: CpuReport,
}

/// Interrupt work on both sides.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BothIrq {
    pub local: IrqReport,
    pub remote: IrqReport,
}

/// When the two sides started, in the controller's clock (microseconds
/// since its process epoch), and how well the clocks were matched.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Timing {
    /// Agent clock minus controller clock.
    pub clock_offset_us: i64,
    /// Round trip of the best clock probe: the offset is good to half of it.
    pub clock_rtt_us: u64,
    pub local_start_us: u64,
    pub remote_start_us: u64,
    /// Remote start minus local start.
    pub start_skew_us: i64,
    /// How each end's wait for the start went, in its own clock.
    #[serde(default)]
    pub local_start: Option<crate::control::clock::StartFacts>,
    #[serde(default)]
    pub remote_start: Option<crate::control::clock::StartFacts>,
}

/// The end-of-test summary.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct End {
    /// The controller's data path (kept for scripts; `local_mode` is the same).
    pub mode: String,
    /// Both ends' data paths, side by side (`xdp-zerocopy`, `xdp-copy`,
    /// `xdp-generic`, `socket`): the controller's, and the agent's as it
    /// reported it (null from an agent that does not say).
    #[serde(default)]
    pub local_mode: String,
    #[serde(default)]
    pub remote_mode: Option<String>,
    /// All flows, as their senders counted them.
    pub sent: Throughput,
    /// All flows, as their receivers counted them.
    pub received: Throughput,
    pub directions: Vec<DirectionSummary>,
    pub flows: Vec<FlowPair>,
    pub cpu: BothCpu,
    pub irq: BothIrq,
    pub local_host: HostInfo,
    pub remote_host: HostInfo,
    /// Flow errors from either side; empty on a clean run.
    pub errors: Vec<String>,
    pub timing: Timing,
    /// rr tests: every client flow's histogram merged.
    #[serde(default)]
    pub latency: Option<RrSummary>,
    /// TCP-lite ends' workers, per side.
    #[serde(default)]
    pub workers: BothWorkers,
}

/// An rr test's totals.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RrSummary {
    /// As the clients and as the servers counted them.
    pub client_transactions: u64,
    pub server_transactions: u64,
    pub transactions_per_second: f64,
    pub latency: crate::metrics::latency::Percentiles,
    pub histogram: String,
    /// True when some flow's latencies are not in `latency`: their
    /// transactions still count, `unmerged` says whose and why.
    #[serde(default)]
    pub partial: bool,
    /// One line per flow (or pair) whose histogram was missing or did not
    /// decode, naming it.
    #[serde(default)]
    pub unmerged: Vec<String>,
}

impl RrSummary {
    /// Several summaries of rr flows that ran side by side (the pairs of a
    /// plan's point) as one: counts and rates add up, histograms merge
    /// exactly, so the percentiles are of every transaction, not averages
    /// of percentiles. None when there are none.
    pub fn combine<'a>(parts: impl IntoIterator<Item = &'a RrSummary>) -> Option<RrSummary> {
        Self::combine_named(
            parts
                .into_iter()
                .enumerate()
                .map(|(i, p)| (format!("part {i}"), p)),
        )
    }

    /// As [`RrSummary::combine`], with each part's name for the line in
    /// `unmerged` when its histogram does not decode: one bad histogram
    /// leaves the others' latencies standing, marked partial.
    pub fn combine_named<'a>(
        parts: impl IntoIterator<Item = (String, &'a RrSummary)>,
    ) -> Option<RrSummary> {
        use crate::metrics::latency;
        let parts: Vec<(String, &RrSummary)> = parts.into_iter().collect();
        if parts.is_empty() {
            return None;
        }
        let mut h = latency::new_histogram();
        let mut unmerged = Vec::new();
        for (name, p) in &parts {
            // A part's own unmerged flows stay named, under its name.
            unmerged.extend(p.unmerged.iter().map(|u| format!("{name}: {u}")));
            if p.histogram.is_empty() {
                if p.client_transactions > 0 && p.unmerged.is_empty() {
                    unmerged.push(format!("{name}: no latency histogram"));
                }
                continue;
            }
            let added = latency::decode(&p.histogram).and_then(|one| {
                h.add(one).map_err(|e| {
                    crate::Error::Invalid(format!("latency histogram does not add: {e:?}"))
                })
            });
            match added {
                Ok(()) => {}
                Err(crate::Error::Invalid(why)) => unmerged.push(format!("{name}: {why}")),
                Err(e) => unmerged.push(format!("{name}: {e}")),
            }
        }
        Some(RrSummary {
            client_transactions: parts.iter().map(|p| p.1.client_transactions).sum(),
            server_transactions: parts.iter().map(|p| p.1.server_transactions).sum(),
            transactions_per_second: parts.iter().map(|p| p.1.transactions_per_second).sum(),
            latency: latency::percentiles(&h),
            histogram: latency::encode(&h),
            partial: !unmerged.is_empty(),
            unmerged,
        })
    }
}

/// The whole `--json` document.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    pub schema: String,
    pub config: RunConfig,
    pub intervals: Vec<Interval>,
    pub end: End,
}

impl End {
    /// Merge the two sides' results. Every flow either side reported is
    /// in the totals with what it moved; a flow one side lost, and a flow
    /// that ended abnormally, is also an error (which fails the run).
    pub fn merge(mode: &str, local: SideReport, remote: SideReport, timing: Timing) -> End {
        let (flows, mut errors) = pair_flows(&local.flows, &remote.flows);
        let directions: Vec<DirectionSummary> = [Direction::Send, Direction::Receive]
            .into_iter()
            .filter(|d| flows.iter().any(|f| f.direction == *d))
            .map(|d| {
                let of = || flows.iter().filter(move |f| f.direction == d);
                DirectionSummary {
                    direction: d,
                    sent: Throughput::sum(
                        of().filter_map(|f| f.sender.as_ref().map(|s| &s.throughput)),
                    ),
                    received: Throughput::sum(
                        of().filter_map(|f| f.receiver.as_ref().map(|r| &r.throughput)),
                    ),
                    retransmits: of()
                        .map(|f| f.sender.as_ref()?.tcp.map(|t| u64::from(t.retransmits)))
                        .sum(),
                }
            })
            .collect();
        let latency = rr_summary(&flows);
        if let Some(l) = &latency {
            errors.extend(
                l.unmerged.iter().map(|u| {
                    format!("{u}: its latencies are left out of the percentiles (partial)")
                }),
            );
        }
        End {
            latency,
            workers: BothWorkers {
                local: local.workers,
                remote: remote.workers,
                placement: local.placement,
            },
            mode: mode.to_string(),
            local_mode: mode.to_string(),
            remote_mode: None,
            sent: Throughput::sum(
                flows
                    .iter()
                    .filter_map(|f| f.sender.as_ref().map(|s| &s.throughput)),
            ),
            received: Throughput::sum(
                flows
                    .iter()
                    .filter_map(|f| f.receiver.as_ref().map(|r| &r.throughput)),
            ),
            directions,
            flows,
            cpu: BothCpu {
                local: local.cpu,
                remote: remote.cpu,
            },
            irq: BothIrq {
                local: local.irq,
                remote: remote.irq,
            },
            local_host: local.host,
            remote_host: remote.host,
            errors,
            timing,
        }
    }
}

/// Pair each flow's two ends, from both sides' lists (a flow only one
/// side reported keeps that side's figures), and the errors: each end's
/// own, and one for each end that reported nothing. Ordered by direction,
/// then stream.
fn pair_flows(local: &[FlowResult], remote: &[FlowResult]) -> (Vec<FlowPair>, Vec<String>) {
    let mut ids: Vec<(Direction, u16)> = local
        .iter()
        .chain(remote)
        .map(|f| (f.direction, f.stream))
        .collect();
    ids.sort_by_key(|&(d, s)| (d == Direction::Receive, s));
    ids.dedup();
    let mut flows = Vec::new();
    let mut errors = Vec::new();
    for (direction, stream) in ids {
        let find = |side: &[FlowResult]| {
            side.iter()
                .find(|f| f.stream == stream && f.direction == direction)
                .cloned()
        };
        let (l, r) = (find(local), find(remote));
        for (side, f) in [("local", &l), ("agent", &r)] {
            match f {
                None => errors.push(format!(
                    "stream {stream} ({direction}): the {side} end reported no result; the totals hold only the other end's count"
                )),
                Some(f) => {
                    if let Some(e) = &f.error {
                        errors.push(format!(
                            "stream {stream} ({direction}), {side}: {e} (after {} B)",
                            f.throughput.bytes
                        ));
                    }
                }
            }
        }
        // The controller's role decides which end is which.
        let local_sends =
            crate::datapath::socket::role_of(crate::spec::FlowId { stream, direction }, true)
                == Role::Sender;
        let (sender, receiver) = if local_sends { (l, r) } else { (r, l) };
        flows.push(FlowPair {
            stream,
            direction,
            sender,
            receiver,
        });
    }
    (flows, errors)
}

/// Merge the rr flows' histograms (None for stream tests); a flow whose
/// histogram is missing or bad is named in `unmerged`.
fn rr_summary(flows: &[FlowPair]) -> Option<RrSummary> {
    let per_flow: Vec<(String, RrSummary)> = flows
        .iter()
        .filter_map(|f| {
            let c = f.sender.as_ref()?.rr.as_ref()?;
            let summary = RrSummary {
                client_transactions: c.transactions,
                server_transactions: f
                    .receiver
                    .as_ref()
                    .and_then(|r| r.rr.as_ref())
                    .map_or(0, |r| r.transactions),
                transactions_per_second: c.transactions_per_second,
                latency: c.latency.unwrap_or_default(),
                histogram: c.histogram.clone().unwrap_or_default(),
                partial: false,
                unmerged: Vec::new(),
            };
            Some((format!("stream {} ({})", f.stream, f.direction), summary))
        })
        .collect();
    RrSummary::combine_named(per_flow.iter().map(|(n, s)| (n.clone(), s)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(stream: u16, direction: Direction, role: Role, bytes: u64, secs: f64) -> FlowResult {
        FlowResult {
            stream,
            direction,
            role,
            throughput: Throughput::new(bytes, secs),
            sockbuf: SockBufs::default(),
            tcp: Some(TcpStats {
                retransmits: 2,
                ..Default::default()
            }),
            error: None,
            raw: None,
            rr: None,
            sha256: None,
        }
    }

    #[test]
    fn rr_latency_merges_every_client_histogram() {
        use crate::metrics::latency;
        let client = |us: &[u64]| {
            let mut h = latency::new_histogram();
            for &u in us {
                latency::record(&mut h, u * 1000);
            }
            RrStats {
                transactions: us.len() as u64,
                transactions_per_second: us.len() as f64,
                latency: Some(latency::percentiles(&h)),
                histogram: Some(latency::encode(&h)),
            }
        };
        let server = |n| RrStats {
            transactions: n,
            ..Default::default()
        };
        let pair = |stream, c: RrStats, n| FlowPair {
            stream,
            direction: Direction::Send,
            sender: Some(FlowResult {
                rr: Some(c),
                ..flow(stream, Direction::Send, Role::Sender, 1, 1.0)
            }),
            receiver: Some(FlowResult {
                rr: Some(server(n)),
                ..flow(stream, Direction::Send, Role::Receiver, 1, 1.0)
            }),
        };
        let flows = [
            pair(0, client(&[10, 20]), 2),
            pair(1, client(&[30, 40, 1000]), 3),
        ];
        let s = rr_summary(&flows).expect("an rr test");
        assert_eq!((s.client_transactions, s.server_transactions), (5, 5));
        assert_eq!(s.latency.count, 5);
        assert!((s.latency.min_us - 10.0).abs() < 0.1 && (s.latency.max_us - 1000.0).abs() < 1.0);
        assert_eq!(latency::decode(&s.histogram).unwrap().len(), 5);
        let stream = [FlowPair {
            stream: 0,
            direction: Direction::Send,
            sender: Some(flow(0, Direction::Send, Role::Sender, 1, 1.0)),
            receiver: Some(flow(0, Direction::Send, Role::Receiver, 1, 1.0)),
        }];
        assert!(
            rr_summary(&stream).is_none(),
            "stream tests have no latency"
        );
    }

    #[test]
    fn merge_pairs_flows_and_sums_directions() {
        let local = SideReport {
            flows: vec![
                flow(0, Direction::Send, Role::Sender, 1000, 1.0),
                flow(1, Direction::Send, Role::Sender, 3000, 2.0),
                flow(0, Direction::Receive, Role::Receiver, 500, 1.0),
            ],
            ..Default::default()
        };
        let remote = SideReport {
            flows: vec![
                flow(1, Direction::Send, Role::Receiver, 3000, 2.0),
                flow(0, Direction::Send, Role::Receiver, 1000, 1.0),
                flow(0, Direction::Receive, Role::Sender, 500, 1.0),
            ],
            ..Default::default()
        };
        let end = End::merge("socket", local, remote, Timing::default());
        assert!(end.errors.is_empty());
        assert_eq!(end.flows.len(), 3);
        assert_eq!(end.sent.bytes, 4500);
        assert_eq!(end.sent.seconds, 2.0);
        assert_eq!(end.directions[0].sent.bytes, 4000);
        assert_eq!(end.directions[0].retransmits, Some(4));
        assert_eq!(end.directions[1].received.bytes, 500);
        assert_eq!(end.flows[2].sender.as_ref().unwrap().role, Role::Sender);
        assert_eq!(end.flows[2].receiver.as_ref().unwrap().role, Role::Receiver);
    }

    #[test]
    fn a_flow_either_end_lost_stays_in_the_totals_and_is_an_error() {
        // The agent lost send stream 1 (its thread died before reporting);
        // this end lost receive stream 0.
        let local = SideReport {
            flows: vec![
                flow(0, Direction::Send, Role::Sender, 1000, 1.0),
                flow(1, Direction::Send, Role::Sender, 700, 1.0),
            ],
            ..Default::default()
        };
        let remote = SideReport {
            flows: vec![
                flow(0, Direction::Send, Role::Receiver, 1000, 1.0),
                flow(0, Direction::Receive, Role::Sender, 300, 1.0),
            ],
            ..Default::default()
        };
        let end = End::merge("socket", local, remote, Timing::default());
        assert_eq!(end.flows.len(), 3, "{:?}", end.flows);
        assert_eq!(end.sent.bytes, 2000, "every sender's bytes count");
        assert_eq!(end.received.bytes, 1000);
        assert_eq!(end.directions[1].sent.bytes, 300);
        assert_eq!(end.errors.len(), 2, "{:?}", end.errors);
        assert!(end.errors[0].starts_with("stream 1 (send): the agent end reported no result"));
        assert!(end.errors[1].starts_with("stream 0 (receive): the local end reported no result"));
        let lost = &end.flows[1];
        assert_eq!((lost.stream, lost.receiver.is_none()), (1, true));
        assert_eq!(lost.sender.as_ref().unwrap().throughput.bytes, 700);
        assert_eq!(end.flows[2].receiver, None);
    }

    #[test]
    fn a_flow_error_names_the_flow_its_end_and_its_bytes() {
        let local = SideReport {
            flows: vec![FlowResult {
                error: Some("send failed: Connection reset by peer".into()),
                ..flow(2, Direction::Send, Role::Sender, 5000, 1.0)
            }],
            ..Default::default()
        };
        let remote = SideReport {
            flows: vec![flow(2, Direction::Send, Role::Receiver, 4000, 1.0)],
            ..Default::default()
        };
        let end = End::merge("socket", local, remote, Timing::default());
        assert_eq!(
            end.errors,
            vec!["stream 2 (send), local: send failed: Connection reset by peer (after 5000 B)"]
        );
        assert_eq!(end.sent.bytes, 5000);
    }

    #[test]
    fn retransmits_are_absent_unless_every_sender_measured_them() {
        let side = |tcp: bool| SideReport {
            flows: vec![
                flow(0, Direction::Send, Role::Sender, 1, 1.0),
                FlowResult {
                    tcp: tcp.then(TcpStats::default),
                    ..flow(1, Direction::Send, Role::Sender, 1, 1.0)
                },
            ],
            ..Default::default()
        };
        let peer = || SideReport {
            flows: vec![
                flow(0, Direction::Send, Role::Receiver, 1, 1.0),
                flow(1, Direction::Send, Role::Receiver, 1, 1.0),
            ],
            ..Default::default()
        };
        let end = End::merge("socket", side(false), peer(), Timing::default());
        assert_eq!(end.directions[0].retransmits, None, "not retr 2");
        let end = End::merge("socket", side(true), peer(), Timing::default());
        assert_eq!(end.directions[0].retransmits, Some(2));
    }

    #[test]
    fn a_bad_histogram_is_an_error_and_the_others_still_merge() {
        use crate::metrics::latency;
        let client = |us: &[u64], histogram: Option<String>| {
            let mut h = latency::new_histogram();
            for &u in us {
                latency::record(&mut h, u * 1000);
            }
            RrStats {
                transactions: us.len() as u64,
                transactions_per_second: us.len() as f64,
                latency: Some(latency::percentiles(&h)),
                histogram: Some(histogram.unwrap_or_else(|| latency::encode(&h))),
            }
        };
        let side = |flows| SideReport {
            flows,
            ..Default::default()
        };
        let local = side(vec![
            FlowResult {
                rr: Some(client(&[10, 20, 30], None)),
                ..flow(0, Direction::Send, Role::Sender, 1, 1.0)
            },
            FlowResult {
                rr: Some(client(&[5000], Some("bm90IGEgaGlzdG9ncmFt".into()))),
                ..flow(1, Direction::Send, Role::Sender, 1, 1.0)
            },
        ]);
        let remote = side(vec![
            flow(0, Direction::Send, Role::Receiver, 1, 1.0),
            flow(1, Direction::Send, Role::Receiver, 1, 1.0),
        ]);
        let end = End::merge("socket", local, remote, Timing::default());
        let l = end.latency.as_ref().unwrap();
        assert!(l.partial);
        assert_eq!(
            l.client_transactions, 4,
            "the bad flow's transactions count"
        );
        assert_eq!(l.latency.count, 3, "the good flow's latencies are kept");
        assert!((l.latency.max_us - 30.0).abs() < 0.1, "{:?}", l.latency);
        assert_eq!(end.errors.len(), 1, "{:?}", end.errors);
        assert!(
            end.errors[0].starts_with("stream 1 (send): latency histogram")
                && end.errors[0].ends_with("(partial)"),
            "{}",
            end.errors[0]
        );
        // Merged again (a plan's point), the bad pair stays named.
        let again = RrSummary::combine_named([("pair vm1".to_string(), l)]).unwrap();
        assert!(again.partial && again.unmerged[0].starts_with("pair vm1: stream 1 (send)"));
    }

    #[test]
    fn missing_remote_flow_is_an_error_not_silence() {
        let local = SideReport {
            flows: vec![flow(0, Direction::Send, Role::Sender, 1, 1.0)],
            ..Default::default()
        };
        let end = End::merge("socket", local, SideReport::default(), Timing::default());
        assert_eq!(end.errors.len(), 1);
        assert!(end.errors[0].contains("no result"));
    }
}
