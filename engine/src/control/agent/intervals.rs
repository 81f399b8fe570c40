//! What an agent sends on the control connection while a test runs: its
//! senders' TCP state for the controller's interval lines, or, as a
//! third-party pair's client end (which stands where the controller's end
//! would), the intervals themselves, sampled here as the controller would.

use super::super::messages::Msg;
use super::super::sender_tcp::SenderFeed;
use crate::metrics::interval::{next_tick, Sampler};
use std::time::{Duration, Instant};

/// Intervals more often than this flood the control connection.
pub const MIN_INTERVAL_MS: u32 = 100;

/// A source of mid-test messages, asked as the test runs.
pub(in crate::control) trait Feed {
    /// The message due at `now`, if one is.
    fn next_msg(&mut self, now: Instant) -> Option<Msg>;
    /// A last message once the local work has ended (before the result).
    fn last_msg(&mut self, _now: Instant) -> Option<Msg> {
        None
    }
}

impl Feed for SenderFeed {
    fn next_msg(&mut self, now: Instant) -> Option<Msg> {
        self.due(now).map(|flows| Msg::SenderTcp { flows })
    }
}

/// One interval per period from `sampler`, and the last partial one as
/// iperf3 prints it (when it is at least a tenth of a period).
pub(in crate::control) struct IntervalFeed {
    sampler: Sampler,
    every: Duration,
    next: Instant,
}

impl IntervalFeed {
    /// Intervals every `every` from the sampler's start `t0`.
    pub fn new(sampler: Sampler, t0: Instant, every: Duration) -> IntervalFeed {
        IntervalFeed {
            sampler,
            every,
            next: t0 + every,
        }
    }
}

impl Feed for IntervalFeed {
    fn next_msg(&mut self, now: Instant) -> Option<Msg> {
        if now < self.next {
            return None;
        }
        self.next = next_tick(self.next, self.every, now);
        Some(Msg::Interval(Box::new(self.sampler.sample(now))))
    }

    fn last_msg(&mut self, now: Instant) -> Option<Msg> {
        self.sampler
            .has_partial(now, self.every)
            .then(|| Msg::Interval(Box::new(self.sampler.sample(now))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::interval::Counter;
    use crate::spec::{Direction, FlowId};

    fn interval(m: Option<Msg>) -> crate::report::model::Interval {
        match m {
            Some(Msg::Interval(iv)) => *iv,
            other => panic!("expected an interval, got {other:?}"),
        }
    }

    #[test]
    fn one_interval_per_period_then_the_partial_last() {
        let t0 = Instant::now();
        let mut s = Sampler::new(t0);
        let c = Counter::default();
        let id = FlowId {
            stream: 0,
            direction: Direction::Send,
        };
        s.watch(id, c.clone(), None);
        let sec = Duration::from_secs(1);
        let mut f = IntervalFeed::new(s, t0, sec);
        c.add(1000);
        assert!(f.next_msg(t0 + sec / 2).is_none(), "not due yet");
        let a = interval(f.next_msg(t0 + sec));
        assert_eq!((a.start, a.end, a.sum.bytes), (0.0, 1.0, 1000));
        // A wake-up 2.5 periods late gives one interval, and the next
        // tick is the one after it.
        c.add(500);
        let b = interval(f.next_msg(t0 + sec * 3 + sec / 2));
        assert_eq!((b.start, b.end, b.sum.bytes), (1.0, 3.5, 500));
        assert!(f.next_msg(t0 + sec * 3 + sec * 9 / 10).is_none());
        // The end: a partial interval only when it is long enough to mean
        // something.
        assert!(f.last_msg(t0 + sec * 3 + sec / 2 + sec / 20).is_none());
        c.add(100);
        let last = interval(f.last_msg(t0 + sec * 3 + sec * 8 / 10));
        assert_eq!(last.sum.bytes, 100);
    }
}
