//! The result model: what each side measured and the merged run report.
//! Serialized as-is for `--json`; the schema is documented in docs/json.md
//! and versioned by [`SCHEMA`].

pub use crate::metrics::irq::IrqReport;
use crate::spec::{Direction, TestSpec};
use crate::units::bps;
use serde::{Deserialize, Serialize};

/// Identifies the JSON document's shape; bump on incompatible change.
pub const SCHEMA: &str = "wirespeed.run/1";

/// What a host is, as reported by itself.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HostInfo {
    pub hostname: String,
    pub os: String,
    pub arch: String,
    pub cores: usize,
    pub version: String,
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
/// the requested value: half is bookkeeping overhead).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SockBufs {
    pub snd: u32,
    pub rcv: u32,
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
    /// receiver's own, not the path's.
    #[serde(default)]
    pub kernel_dropped: u64,
}

impl RawCount {
    /// Add another worker's counts.
    pub fn add(&mut self, o: &RawCount) {
        self.frames += o.frames;
        self.bytes += o.bytes;
        self.gaps += o.gaps;
        self.reorders += o.reorders;
        self.malformed += o.malformed;
        self.kernel_dropped += o.kernel_dropped;
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
        let mut count = RawCount::default();
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
    pub process: ProcessCpu,
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
    /// Frames on our ports that were not TCP for us or did not parse.
    pub stray_frames: u64,
    /// Of those, frames whose IPv4 or TCP checksum was wrong.
    pub bad_checksum: u64,
    /// Frames dropped by the kernel before its socket (XDP_STATISTICS):
    /// the rx ring was full, plus other drops (no buffer, too long).
    pub kernel_dropped: u64,
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
    pub retransmits: Option<u32>,
    pub rtt_us: Option<u32>,
    /// rr tests: this interval's transactions and latency (client side).
    #[serde(default)]
    pub rr: Option<IntervalRr>,
}

/// One interval of an rr flow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct IntervalRr {
    pub transactions: u64,
    pub transactions_per_second: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
}

/// One reporting interval, measured on the controller.
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
    pub sender: FlowResult,
    pub receiver: FlowResult,
}

/// Totals for one direction: the sender's and the receiver's view.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DirectionSummary {
    pub direction: Direction,
    pub sent: Throughput,
    pub received: Throughput,
    pub retransmits: u64,
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
}

/// The end-of-test summary.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct End {
    pub mode: String,
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
}

impl RrSummary {
    /// Several summaries of rr flows that ran side by side (the pairs of a
    /// plan's point) as one: counts and rates add up, histograms merge
    /// exactly, so the percentiles are of every transaction, not averages
    /// of percentiles. None when there are none.
    pub fn combine<'a>(parts: impl IntoIterator<Item = &'a RrSummary>) -> Option<RrSummary> {
        use crate::metrics::latency;
        let parts: Vec<&RrSummary> = parts.into_iter().collect();
        if parts.is_empty() {
            return None;
        }
        // A part without a histogram (a client that recorded none) adds
        // no transactions to the merge.
        let h = latency::merge(
            parts
                .iter()
                .map(|p| p.histogram.as_str())
                .filter(|h| !h.is_empty()),
        )
        .unwrap_or_else(|_| latency::new_histogram());
        Some(RrSummary {
            client_transactions: parts.iter().map(|p| p.client_transactions).sum(),
            server_transactions: parts.iter().map(|p| p.server_transactions).sum(),
            transactions_per_second: parts.iter().map(|p| p.transactions_per_second).sum(),
            latency: latency::percentiles(&h),
            histogram: latency::encode(&h),
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
    /// Merge the two sides' results. A flow one side lost stays visible
    /// as an error rather than vanishing from the totals.
    pub fn merge(mode: &str, local: SideReport, remote: SideReport, timing: Timing) -> End {
        let mut flows = Vec::new();
        let mut errors = Vec::new();
        for l in &local.flows {
            let Some(r) = remote
                .flows
                .iter()
                .find(|r| r.stream == l.stream && r.direction == l.direction)
            else {
                errors.push(format!(
                    "stream {} ({}): the agent reported no result",
                    l.stream, l.direction
                ));
                continue;
            };
            let (sender, receiver) = match l.role {
                Role::Sender => (l.clone(), r.clone()),
                Role::Receiver => (r.clone(), l.clone()),
            };
            for (side, f) in [("local", l), ("remote", r)] {
                if let Some(e) = &f.error {
                    errors.push(format!(
                        "stream {} ({}), {side}: {e}",
                        f.stream, f.direction
                    ));
                }
            }
            flows.push(FlowPair {
                stream: l.stream,
                direction: l.direction,
                sender,
                receiver,
            });
        }
        let directions: Vec<DirectionSummary> = [Direction::Send, Direction::Receive]
            .into_iter()
            .filter(|d| flows.iter().any(|f| f.direction == *d))
            .map(|d| {
                let of = || flows.iter().filter(move |f| f.direction == d);
                DirectionSummary {
                    direction: d,
                    sent: Throughput::sum(of().map(|f| &f.sender.throughput)),
                    received: Throughput::sum(of().map(|f| &f.receiver.throughput)),
                    retransmits: of()
                        .filter_map(|f| f.sender.tcp.map(|t| u64::from(t.retransmits)))
                        .sum(),
                }
            })
            .collect();
        let latency = rr_summary(&flows);
        End {
            latency,
            workers: BothWorkers {
                local: local.workers,
                remote: remote.workers,
                placement: local.placement,
            },
            mode: mode.to_string(),
            sent: Throughput::sum(flows.iter().map(|f| &f.sender.throughput)),
            received: Throughput::sum(flows.iter().map(|f| &f.receiver.throughput)),
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

/// Merge the rr flows' histograms (None for stream tests).
fn rr_summary(flows: &[FlowPair]) -> Option<RrSummary> {
    let per_flow: Vec<RrSummary> = flows
        .iter()
        .filter_map(|f| {
            let c = f.sender.rr.as_ref()?;
            Some(RrSummary {
                client_transactions: c.transactions,
                server_transactions: f.receiver.rr.as_ref().map_or(0, |r| r.transactions),
                transactions_per_second: c.transactions_per_second,
                latency: c.latency.unwrap_or_default(),
                histogram: c.histogram.clone().unwrap_or_default(),
            })
        })
        .collect();
    RrSummary::combine(&per_flow)
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
            sender: FlowResult {
                rr: Some(c),
                ..flow(stream, Direction::Send, Role::Sender, 1, 1.0)
            },
            receiver: FlowResult {
                rr: Some(server(n)),
                ..flow(stream, Direction::Send, Role::Receiver, 1, 1.0)
            },
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
            sender: flow(0, Direction::Send, Role::Sender, 1, 1.0),
            receiver: flow(0, Direction::Send, Role::Receiver, 1, 1.0),
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
        assert_eq!(end.directions[0].retransmits, 4);
        assert_eq!(end.directions[1].received.bytes, 500);
        assert_eq!(end.flows[2].sender.role, Role::Sender);
        assert_eq!(end.flows[2].receiver.role, Role::Receiver);
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
