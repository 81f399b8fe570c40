//! Clock offset between a controller and an agent, NTP's way: four
//! timestamps per exchange (controller send t0, agent receive t1, agent
//! send t2, controller receive t3), several exchanges, and the one with the
//! shortest round trip kept, since queueing only ever adds delay.
//!
//! Each process counts microseconds from its own monotonic epoch, so the
//! offset says how to turn one side's instants into the other's.

use serde::{Deserialize, Serialize};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

static EPOCH: OnceLock<Instant> = OnceLock::new();

fn epoch() -> Instant {
    *EPOCH.get_or_init(Instant::now)
}

/// Microseconds since this process's monotonic epoch.
pub fn now_us() -> u64 {
    us_of(Instant::now())
}

/// An instant in this process's microsecond clock.
pub fn us_of(t: Instant) -> u64 {
    t.saturating_duration_since(epoch()).as_micros() as u64
}

/// The instant a microsecond timestamp of this process's clock stands for.
pub fn instant_of(us: u64) -> Instant {
    epoch() + Duration::from_micros(us)
}

/// One four-timestamp exchange.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sample {
    pub t0: u64,
    pub t1: u64,
    pub t2: u64,
    pub t3: u64,
}

impl Sample {
    /// Agent clock minus controller clock (i128 inside: the agent's
    /// timestamps are untrusted input).
    pub fn offset_us(&self) -> i64 {
        let d = (i128::from(self.t1) - i128::from(self.t0))
            + (i128::from(self.t2) - i128::from(self.t3));
        (d / 2).clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
    }

    /// Whether the timestamps can be true: the agent replied after it
    /// received, and took no longer than the whole round trip.
    pub fn plausible(&self) -> bool {
        self.t2 >= self.t1 && self.t3 >= self.t0 && self.t2 - self.t1 <= self.t3 - self.t0
    }

    /// Round trip minus the agent's own turnaround.
    pub fn rtt_us(&self) -> u64 {
        (self.t3.saturating_sub(self.t0)).saturating_sub(self.t2.saturating_sub(self.t1))
    }
}

/// The kept estimate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Estimate {
    /// Agent clock minus controller clock, in microseconds.
    pub offset_us: i64,
    /// Round trip of the exchange it came from: the offset's error is at
    /// most half of it.
    pub rtt_us: u64,
    pub samples: u32,
}

impl Estimate {
    /// The sample with the least round trip.
    pub fn best(samples: &[Sample]) -> Option<Estimate> {
        samples
            .iter()
            .filter(|s| s.plausible())
            .min_by_key(|s| s.rtt_us())
            .map(|s| Estimate {
                offset_us: s.offset_us(),
                rtt_us: s.rtt_us(),
                samples: samples.len() as u32,
            })
    }

    /// A controller timestamp in the agent's clock.
    pub fn to_agent(&self, controller_us: u64) -> u64 {
        (i128::from(controller_us) + i128::from(self.offset_us)).clamp(0, i128::from(u64::MAX))
            as u64
    }

    /// An agent timestamp in the controller's clock.
    pub fn to_controller(&self, agent_us: u64) -> u64 {
        (i128::from(agent_us) - i128::from(self.offset_us)).clamp(0, i128::from(u64::MAX)) as u64
    }
}

/// How one end's start went, in its own clock: what the report needs to
/// say why an end started late.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartFacts {
    /// The instant it was to start at (microseconds of its clock).
    pub target_us: u64,
    /// How long after that instant it started.
    pub late_us: u64,
    /// By how much the instant had already passed when it began to wait
    /// (the start message came late, or reading counters took that long).
    pub missed_us: u64,
    /// Time it was ready to run but waiting for a CPU during the wait
    /// (schedstat); None where unknown.
    pub run_delay_us: Option<u64>,
    /// Steal time over the host's CPUs during the wait (10 ms resolution);
    /// None where unknown.
    pub steal_us: Option<u64>,
    /// Whether it waited at real-time priority (SCHED_FIFO).
    pub realtime: bool,
}

/// The last stretch of a wait is spun, not slept: a timer wake-up and a
/// context switch cost tens of microseconds.
const SPIN: Duration = Duration::from_micros(100);

/// Sleep until `at` (spinning its last 100 us) and return the instant we
/// actually woke, with how the wait went.
///
/// The ends of one process that are to start at about one instant (within
/// [`GATE_WINDOW`]: one controller instant, converted with estimates of
/// this process's clock over different connections) share one wait: the
/// first to ask waits for its instant and opens the gate for the rest, who
/// start at that same wake-up. On a small host every end that wakes by
/// itself queues for a CPU behind the others (measured on 2 cores: 512
/// waiting threads woke up to 4.4 ms apart, 64 within 0.6 ms), so one
/// wake-up per process is what keeps many ends close.
pub fn wait_until(at: Instant) -> (Instant, StartFacts) {
    gate::wait(at)
}

/// How far apart the instants of one process's ends may be to share a
/// wake-up: the error of the clock offset estimates between namespaces
/// and hosts on a LAN is well below it.
pub const GATE_WINDOW: Duration = Duration::from_millis(1);

mod gate {
    use super::{us_of, wait_alone, StartFacts, GATE_WINDOW};
    use std::sync::{Arc, Condvar, Mutex};
    use std::time::{Duration, Instant};

    /// One shared wake-up: its instant, and once opened when it woke and
    /// how the wait went.
    struct Gate {
        at: Instant,
        opened: Mutex<Option<(Instant, StartFacts)>>,
        cv: Condvar,
    }

    /// The gates not yet opened.
    static WAITING: Mutex<Vec<Arc<Gate>>> = Mutex::new(Vec::new());

    fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        // Every change under these locks is one push, retain or store.
        m.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Join the gate within the window of `at`, or lead a new one.
    fn join(at: Instant) -> (Arc<Gate>, bool) {
        let mut g = lock(&WAITING);
        let near = |x: &Gate| x.at.max(at) - x.at.min(at) <= GATE_WINDOW;
        if let Some(x) = g.iter().find(|x| near(x)) {
            return (x.clone(), false);
        }
        let x = Arc::new(Gate {
            at,
            opened: Mutex::new(None),
            cv: Condvar::new(),
        });
        g.push(x.clone());
        (x, true)
    }

    pub(super) fn wait(at: Instant) -> (Instant, StartFacts) {
        let (gate, leader) = join(at);
        if leader {
            let (woke, facts) = wait_alone(at);
            lock(&WAITING).retain(|x| !Arc::ptr_eq(x, &gate));
            *lock(&gate.opened) = Some((woke, facts));
            gate.cv.notify_all();
            return (woke, facts);
        }
        let began = Instant::now();
        // Bounded: a leader that never opens (it cannot panic between
        // joining and opening, but still) leaves this end to start alone.
        let limit = gate.at.saturating_duration_since(began) + Duration::from_secs(1);
        let opened = *gate
            .cv
            .wait_timeout_while(lock(&gate.opened), limit, |o| o.is_none())
            .unwrap_or_else(|p| p.into_inner())
            .0;
        let Some((woke, leader)) = opened else {
            return wait_alone(at);
        };
        // The leader's wait is this end's too: its run-queue wait, steal
        // and priority; the lateness is against this end's own instant.
        let facts = StartFacts {
            target_us: us_of(at),
            late_us: woke.saturating_duration_since(at).as_micros() as u64,
            missed_us: began.saturating_duration_since(at).as_micros() as u64,
            ..leader
        };
        (woke, facts)
    }
}

/// [`wait_until`] for one end by itself.
///
/// When several processes on one small host start together, the ones
/// that wake after the first must wait for a CPU (about a scheduler
/// tick). So, where permitted, the thread waits as SCHED_FIFO and drops
/// back to normal scheduling right after taking its timestamp: a waiting
/// real-time thread runs as soon as a CPU frees, and the drop yields to
/// the next. Without the privilege it is a plain sleep, and the reported
/// facts say so. The run-queue counter is opened before and read with
/// pread after: a fresh open of a /proc file costs each end a few
/// microseconds more that the next end in the queue waits for.
fn wait_alone(at: Instant) -> (Instant, StartFacts) {
    let boosted = realtime(true);
    let sched = SchedStat::open();
    let (delay0, steal0) = (sched.run_delay_ns(), steal_ticks());
    let began = Instant::now();
    std::thread::sleep(at.saturating_duration_since(began + SPIN));
    while Instant::now() < at {
        std::hint::spin_loop();
    }
    let woke = Instant::now();
    // Read before dropping the priority: waits after the start are not its.
    let delay1 = sched.run_delay_ns();
    if boosted {
        realtime(false);
    }
    let steal1 = steal_ticks();
    let facts = StartFacts {
        target_us: us_of(at),
        late_us: woke.saturating_duration_since(at).as_micros() as u64,
        missed_us: began.saturating_duration_since(at).as_micros() as u64,
        run_delay_us: delay0.zip(delay1).map(|(a, b)| b.saturating_sub(a) / 1000),
        steal_us: steal0
            .zip(steal1)
            .map(|(a, b)| b.saturating_sub(a) * 10_000),
        realtime: boosted,
    };
    (woke, facts)
}

/// This thread's scheduler statistics, opened once.
#[cfg(target_os = "linux")]
struct SchedStat(Option<std::fs::File>);
#[cfg(not(target_os = "linux"))]
struct SchedStat;

impl SchedStat {
    #[cfg(target_os = "linux")]
    fn open() -> SchedStat {
        SchedStat(std::fs::File::open("/proc/thread-self/schedstat").ok())
    }

    #[cfg(not(target_os = "linux"))]
    fn open() -> SchedStat {
        SchedStat
    }

    /// Time spent runnable but not running, in ns.
    #[cfg(target_os = "linux")]
    fn run_delay_ns(&self) -> Option<u64> {
        use std::os::unix::fs::FileExt;
        let mut b = [0u8; 96];
        let n = self.0.as_ref()?.read_at(&mut b, 0).ok()?;
        std::str::from_utf8(&b[..n])
            .ok()?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    }

    #[cfg(not(target_os = "linux"))]
    fn run_delay_ns(&self) -> Option<u64> {
        None
    }
}

/// Steal ticks (USER_HZ) over all CPUs.
#[cfg(target_os = "linux")]
fn steal_ticks() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/stat").ok()?;
    s.lines().next()?.split_whitespace().nth(8)?.parse().ok()
}

#[cfg(not(target_os = "linux"))]
fn steal_ticks() -> Option<u64> {
    None
}

#[cfg(target_os = "linux")]
fn realtime(on: bool) -> bool {
    use nix::libc;
    let (policy, prio) = if on {
        (libc::SCHED_FIFO, 1)
    } else {
        (libc::SCHED_OTHER, 0)
    };
    let param = libc::sched_param {
        sched_priority: prio,
    };
    // SAFETY: 0 names the calling thread; param is a valid sched_param.
    unsafe { libc::sched_setscheduler(0, policy, &param) == 0 }
}

#[cfg(not(target_os = "linux"))]
fn realtime(_on: bool) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_and_rtt_from_a_symmetric_exchange() {
        // agent is 1000 us ahead; 50 us each way; 10 us turnaround
        let s = Sample {
            t0: 100,
            t1: 1150,
            t2: 1160,
            t3: 210,
        };
        assert_eq!(s.offset_us(), 1000);
        assert_eq!(s.rtt_us(), 100);
    }

    #[test]
    fn best_keeps_the_shortest_round_trip() {
        let queued = Sample {
            t0: 0,
            t1: 1900,
            t2: 1900,
            t3: 1000,
        }; // 900 us stuck one way
        let clean = Sample {
            t0: 2000,
            t1: 3010,
            t2: 3010,
            t3: 2020,
        };
        let e = Estimate::best(&[queued, clean]).unwrap();
        assert_eq!(e.offset_us, 1000);
        assert_eq!(e.rtt_us, 20);
        assert_eq!(e.samples, 2);
        assert_eq!(e.to_agent(5), 1005);
        assert_eq!(e.to_controller(1005), 5);
        assert!(Estimate::best(&[]).is_none());
        let forged = Sample {
            t0: 0,
            t1: u64::MAX,
            t2: 0,
            t3: 10,
        };
        assert!(!forged.plausible());
        assert!(Estimate::best(&[forged]).is_none());
        let _ = forged.offset_us(); // no overflow
    }

    #[test]
    fn waits_to_the_instant_and_says_how_it_went() {
        let at = Instant::now() + Duration::from_millis(5);
        let (woke, f) = wait_until(at);
        assert!(woke >= at);
        assert_eq!(f.target_us, us_of(at));
        assert_eq!(f.missed_us, 0);
        assert!(f.late_us < 5_000, "{f:?}");
        let past = Instant::now() - Duration::from_millis(2);
        let (_, f) = wait_until(past);
        assert!(f.missed_us >= 2_000 && f.late_us >= f.missed_us, "{f:?}");
        #[cfg(target_os = "linux")]
        assert!(f.run_delay_us.is_some() && f.steal_us.is_some(), "{f:?}");
    }

    #[test]
    fn ends_told_about_one_instant_share_one_wake_up() {
        let at = Instant::now() + Duration::from_millis(30);
        let us = |d| Duration::from_micros(d);
        // Three ends within the window of each other, one 5 ms later.
        let instants = [at, at + us(300), at - us(200), at + us(5000)];
        let woke: Vec<(Instant, StartFacts)> = std::thread::scope(|s| {
            let hs: Vec<_> = instants
                .iter()
                .map(|&t| s.spawn(move || wait_until(t)))
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(woke[0].0, woke[1].0, "one wake-up");
        assert_eq!(woke[0].0, woke[2].0, "one wake-up");
        assert!(woke[3].0 >= instants[3], "a later instant waits for itself");
        assert!(
            woke[0].0 >= at - us(200),
            "no earlier than the first instant told"
        );
        for (t, (w, f)) in instants.iter().zip(&woke) {
            assert_eq!(f.target_us, us_of(*t), "each end's own instant");
            assert_eq!(
                f.late_us,
                w.saturating_duration_since(*t).as_micros() as u64
            );
        }
    }

    #[test]
    fn clock_round_trips() {
        let _ = now_us(); // the epoch is set on first use
        let t = Instant::now();
        let us = us_of(t);
        let back = instant_of(us);
        assert!(back <= t && t.duration_since(back) < Duration::from_micros(1));
    }
}
