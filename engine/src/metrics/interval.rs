//! Per-interval sampling: flows bump a shared byte counter; a sampler on
//! another thread turns counter deltas (and, on Linux, TCP_INFO) into one
//! [`Interval`] per tick, as iperf3 prints them.

use crate::metrics::{latency, tcpinfo};
use crate::report::model::{Interval, IntervalFlow, IntervalRr, TcpFrom, TcpStats, Throughput};
use crate::spec::FlowId;
use socket2::Socket;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Bytes a flow has moved so far; cheap to bump from the data path.
#[derive(Clone, Debug, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

struct Probe {
    id: FlowId,
    counter: Counter,
    /// This end's sending socket, when this end sends.
    sock: Option<Socket>,
    /// Else the agent's latest report of its sending socket.
    remote: Option<TcpStats>,
    /// rr flows: the counter counts transactions, and this holds the
    /// interval's latencies (taken and reset at each sample).
    latency: Option<latency::Shared>,
    last_bytes: u64,
    last_retrans: u32,
}

/// The tick after `tick` on its grid of `every`, past `now`: ticks a late
/// wake-up already passed are not made up (the next interval is longer).
pub fn next_tick(tick: Instant, every: Duration, now: Instant) -> Instant {
    let mut next = tick + every;
    while next <= now {
        next += every;
    }
    next
}

/// Turns counters into intervals.
pub struct Sampler {
    t0: Instant,
    last: Instant,
    probes: Vec<Probe>,
}

impl Sampler {
    /// Start sampling at `t0`, the test's start.
    pub fn new(t0: Instant) -> Sampler {
        Sampler {
            t0,
            last: t0,
            probes: Vec::new(),
        }
    }

    /// Watch a flow; `sock` (a duplicate handle of this end's socket, given
    /// only where this end sends) lets us read the sender's TCP_INFO.
    pub fn watch(&mut self, id: FlowId, counter: Counter, sock: Option<Socket>) {
        self.watch_rr(id, counter, sock, None);
    }

    /// Watch a flow that may be an rr client: with `latency`, its counter
    /// counts transactions and the interval reports their percentiles.
    pub fn watch_rr(
        &mut self,
        id: FlowId,
        counter: Counter,
        sock: Option<Socket>,
        latency: Option<latency::Shared>,
    ) {
        self.probes.push(Probe {
            id,
            counter,
            sock,
            latency,
            remote: None,
            last_bytes: 0,
            last_retrans: 0,
        });
    }

    /// The agent's latest TCP state of a flow it sends; used for flows
    /// this end watches without a sending socket of its own.
    pub fn remote_tcp(&mut self, id: FlowId, tcp: TcpStats) {
        if let Some(p) = self
            .probes
            .iter_mut()
            .find(|p| p.id == id && p.sock.is_none())
        {
            p.remote = Some(tcp);
        }
    }

    /// Seconds since the last sample.
    pub fn since_last(&self, now: Instant) -> f64 {
        now.duration_since(self.last).as_secs_f64()
    }

    /// Whether what ran since the last sample makes a last, partial
    /// interval of its own, as iperf3 prints it: a tenth of one or more.
    pub fn has_partial(&self, now: Instant, every: Duration) -> bool {
        self.since_last(now) >= every.as_secs_f64() / 10.0
    }

    /// The interval from the previous sample to `now`.
    pub fn sample(&mut self, now: Instant) -> Interval {
        let secs = now.duration_since(self.last).as_secs_f64();
        let flows: Vec<IntervalFlow> = self
            .probes
            .iter_mut()
            .map(|p| {
                let bytes = p.counter.get();
                let delta = bytes - p.last_bytes;
                p.last_bytes = bytes;
                let (tcp, from) = match &p.sock {
                    Some(s) => (tcpinfo::read(s), TcpFrom::Local),
                    None => (p.remote, TcpFrom::Agent),
                };
                let retransmits = tcp.map(|t| {
                    let d = t.retransmits.saturating_sub(p.last_retrans);
                    p.last_retrans = t.retransmits;
                    d
                });
                let rr = p.latency.as_ref().map(|h| {
                    // A flow thread that panicked holding the lock leaves
                    // the figures it recorded: read them all the same.
                    let mut h = h.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                    let pct = (!h.is_empty()).then(|| latency::percentiles(&h));
                    h.reset();
                    IntervalRr {
                        transactions: delta,
                        transactions_per_second: if secs > 0.0 { delta as f64 / secs } else { 0.0 },
                        p50_us: pct.map(|p| p.p50_us),
                        p99_us: pct.map(|p| p.p99_us),
                        max_us: pct.map(|p| p.max_us),
                    }
                });
                let bytes = if rr.is_some() { 0 } else { delta };
                IntervalFlow {
                    stream: p.id.stream,
                    direction: p.id.direction,
                    bytes,
                    bits_per_second: crate::units::bps(bytes, secs),
                    retransmits,
                    rtt_us: tcp.map(|t| t.rtt_us),
                    snd_cwnd: tcp.map(|t| t.snd_cwnd),
                    tcp_from: tcp.map(|_| from),
                    rr,
                }
            })
            .collect();
        let total = flows.iter().map(|f| f.bytes).sum();
        let iv = Interval {
            start: self.last.duration_since(self.t0).as_secs_f64(),
            end: now.duration_since(self.t0).as_secs_f64(),
            flows,
            sum: Throughput::new(total, secs),
        };
        self.last = now;
        iv
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Direction;
    use std::time::Duration;

    #[test]
    fn deltas_per_interval() {
        let t0 = Instant::now();
        let mut s = Sampler::new(t0);
        let c = Counter::default();
        s.watch(
            FlowId {
                stream: 0,
                direction: Direction::Send,
            },
            c.clone(),
            None,
        );
        c.add(1000);
        let a = s.sample(t0 + Duration::from_secs(1));
        assert_eq!(a.sum.bytes, 1000);
        assert_eq!(a.flows[0].bits_per_second, 8000.0);
        c.add(500);
        let b = s.sample(t0 + Duration::from_secs(2));
        assert_eq!(b.sum.bytes, 500);
        assert_eq!((b.start, b.end), (1.0, 2.0));
        assert_eq!(b.flows[0].retransmits, None);
        assert_eq!(b.flows[0].tcp_from, None, "nothing read, no end named");
    }

    #[test]
    fn without_a_sending_socket_the_agents_report_is_used_and_labelled() {
        let t0 = Instant::now();
        let mut s = Sampler::new(t0);
        let id = FlowId {
            stream: 0,
            direction: Direction::Receive,
        };
        s.watch(id, Counter::default(), None);
        let a = s.sample(t0 + Duration::from_secs(1));
        assert_eq!(a.flows[0].rtt_us, None, "no report yet: absent");
        let tcp = |retransmits| TcpStats {
            retransmits,
            rtt_us: 1200,
            snd_cwnd: 40,
            ..Default::default()
        };
        s.remote_tcp(id, tcp(7));
        let b = s.sample(t0 + Duration::from_secs(2));
        let f = &b.flows[0];
        assert_eq!(
            (f.retransmits, f.rtt_us, f.snd_cwnd),
            (Some(7), Some(1200), Some(40))
        );
        assert_eq!(f.tcp_from, Some(TcpFrom::Agent));
        s.remote_tcp(id, tcp(10));
        let c = s.sample(t0 + Duration::from_secs(3));
        assert_eq!(c.flows[0].retransmits, Some(3), "a delta per interval");
    }
}
