//! `run --iperf3`'s per-interval lines: the project's own [`Sampler`]
//! over the test's stream counters, ticked from the control loop, so the
//! lines read like `run`'s (and iperf3's).

use super::streams::Streams;
use crate::metrics::interval::Sampler;
use crate::report::model::Interval;
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
        for (id, counter, sock) in data.probes() {
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
        let mut next = tick + every;
        while next <= now {
            next += every;
        }
        self.next = Some(next);
    }

    /// The last, partial interval, once the streams have ended: with it
    /// the intervals sum to the streams' totals.
    pub fn finish(mut self, now: Instant) -> Vec<Interval> {
        if self.every.is_some() {
            self.take(now);
        }
        self.intervals
    }

    fn take(&mut self, now: Instant) {
        let iv = self.sampler.sample(now);
        (self.emit)(&iv);
        self.intervals.push(iv);
    }
}
