//! `run --iperf3`'s per-interval lines: the project's own [`Sampler`]
//! over the test's stream counters, ticked from the control loop, so the
//! lines read like `run`'s (and iperf3's).

use super::streams::Streams;
use crate::metrics::interval::{next_tick, Sampler};
use crate::report::model::{Interval, Throughput};
use std::time::{Duration, Instant};

/// Samples every `every` from the start; none when `every` is None.
pub struct Ticks<'a> {
    sampler: Sampler,
    every: Option<Duration>,
    next: Option<Instant>,
    pub intervals: Vec<Interval>,
    emit: &'a mut dyn FnMut(&Interval),
}

impl<'a> Ticks<'a> {
    /// Watch `data`'s streams from `start`; `emit` sees each interval as
    /// it is taken.
    pub fn new(
        start: Instant,
        every: Option<Duration>,
        data: &Streams,
        emit: &'a mut dyn FnMut(&Interval),
    ) -> Ticks<'a> {
        let mut sampler = Sampler::new(start);
        let probes = data.probes();
        // Numbered as iperf3 numbers them (1, 3, 4, ...), as in the summary.
        let ids = super::wire::stream_ids(probes.len());
        for ((mut id, counter, sock), n) in probes.into_iter().zip(ids) {
            id.stream = u16::try_from(n).unwrap_or(u16::MAX);
            sampler.watch(id, counter, sock);
        }
        Ticks {
            sampler,
            every,
            next: every.map(|e| start + e),
            intervals: Vec::new(),
            emit,
        }
    }

    /// Take an interval if a tick has passed (ticks a late wake-up
    /// skipped are not made up: the next interval is longer).
    pub fn poll(&mut self, now: Instant) {
        let (Some(every), Some(tick)) = (self.every, self.next) else {
            return;
        };
        if now < tick {
            return;
        }
        self.take(now);
        self.next = Some(next_tick(tick, every, now));
    }

    /// The last, partial interval, once the streams have ended: with it
    /// the intervals sum to the streams' totals. A tail under a tenth of
    /// an interval (the moments the streams took to close) is folded into
    /// the interval before, unprinted: its rate alone would mean nothing.
    pub fn finish(mut self, now: Instant) -> Vec<Interval> {
        let Some(every) = self.every else {
            return self.intervals;
        };
        let short = !self.sampler.has_partial(now, every);
        match self.intervals.last_mut() {
            Some(prev) if short => fold(prev, self.sampler.sample(now)),
            _ => self.take(now),
        }
        self.intervals
    }

    fn take(&mut self, now: Instant) {
        let iv = self.sampler.sample(now);
        (self.emit)(&iv);
        self.intervals.push(iv);
    }
}

/// `tail` added to `prev`, which then ends where `tail` ends.
fn fold(prev: &mut Interval, tail: Interval) {
    prev.end = tail.end;
    let secs = prev.end - prev.start;
    for (p, t) in prev.flows.iter_mut().zip(&tail.flows) {
        p.bytes += t.bytes;
        p.bits_per_second = crate::units::bps(p.bytes, secs);
        p.retransmits = match (p.retransmits, t.retransmits) {
            (Some(a), Some(b)) => Some(a + b),
            (a, b) => a.or(b),
        };
        p.rtt_us = t.rtt_us.or(p.rtt_us);
        p.snd_cwnd = t.snd_cwnd.or(p.snd_cwnd);
    }
    prev.sum = Throughput::new(prev.sum.bytes + tail.sum.bytes, secs);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::model::IntervalFlow;
    use crate::spec::Direction;

    fn iv(start: f64, end: f64, bytes: u64) -> Interval {
        Interval {
            start,
            end,
            flows: vec![IntervalFlow {
                stream: 1,
                direction: Direction::Send,
                bytes,
                bits_per_second: crate::units::bps(bytes, end - start),
                retransmits: Some(1),
                rtt_us: None,
                snd_cwnd: None,
                tcp_from: None,
                rr: None,
            }],
            sum: Throughput::new(bytes, end - start),
        }
    }

    #[test]
    fn a_short_tail_folds_into_the_interval_before() {
        let mut prev = iv(1.0, 2.0, 1000);
        fold(&mut prev, iv(2.0, 2.05, 50));
        assert_eq!((prev.start, prev.end), (1.0, 2.05));
        assert_eq!(prev.sum.bytes, 1050);
        assert_eq!(prev.flows[0].bytes, 1050);
        assert_eq!(prev.flows[0].retransmits, Some(2));
        assert!((prev.sum.bits_per_second - 1050.0 * 8.0 / 1.05).abs() < 1e-6);
    }
}
