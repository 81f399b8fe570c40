//! Why an end started late. Every end of every pair is told one instant;
//! each reports how its wait went ([`StartFacts`]: how late it woke by its
//! own clock, whether the instant had passed before it began to wait, how
//! long it sat runnable without a CPU, the steal around it). From those and
//! the starts in the controller's clock this names the end that started
//! last and the likeliest cause: a late start message, no free CPU, the
//! hypervisor, or the clock offset estimate.

use super::clock::StartFacts;
use serde::{Deserialize, Serialize};

/// Skew at or above this is marked on the repetition with its cause.
pub const SKEW_LIMIT_US: u64 = 1000;

/// A start whose ends were further apart than the limit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LateStart {
    /// Latest minus earliest start over every end, microseconds.
    pub skew_us: u64,
    /// The end that started last (`nic3 agent vm3`, `nic1 controller`).
    pub end: String,
    /// Why, as far as the figures tell.
    pub cause: String,
}

/// One end's start as the controller saw it.
#[derive(Clone, Debug)]
pub struct EndStart {
    pub name: String,
    /// Its start in the controller's clock, microseconds.
    pub start_us: u64,
    /// How its wait went, in its own clock (None: an older agent).
    pub facts: Option<StartFacts>,
    /// Round trip of the clock probe its start time was converted with
    /// (0 for the controller's own ends).
    pub clock_rtt_us: u64,
}

fn ms(us: u64) -> String {
    if us >= 1000 {
        format!("{:.1} ms", us as f64 / 1000.0)
    } else {
        format!("{us} us")
    }
}

/// The mark for a start whose skew is at least `limit_us` (None when the
/// ends were closer).
pub fn late_start(ends: &[EndStart], limit_us: u64) -> Option<LateStart> {
    let first = ends.iter().min_by_key(|e| e.start_us)?;
    let last = ends.iter().max_by_key(|e| e.start_us)?;
    let skew_us = last.start_us - first.start_us;
    (skew_us >= limit_us).then(|| LateStart {
        skew_us,
        end: last.name.clone(),
        cause: cause(last, first, skew_us),
    })
}

/// The likeliest reason `last` started `skew_us` after `first`.
fn cause(last: &EndStart, first: &EndStart, skew_us: u64) -> String {
    let Some(f) = last.facts else {
        return format!(
            "{} does not report how its wait went (an older agent)",
            last.name
        );
    };
    let name = &last.name;
    if f.missed_us >= skew_us / 2 {
        return format!(
            "the start instant had passed {} before {name} began to wait: its start message came late, or reading its counters took that long",
            ms(f.missed_us)
        );
    }
    if f.late_us >= skew_us / 2 {
        let late = ms(f.late_us);
        let steal = f.steal_us.unwrap_or(0);
        let delay = f.run_delay_us.unwrap_or(0);
        return if steal >= f.late_us / 2 {
            format!(
                "{name} woke {late} late with {} of steal on the host's CPUs: the hypervisor ran something else",
                ms(steal)
            )
        } else if delay >= f.late_us / 2 {
            let rt = if f.realtime {
                ""
            } else {
                " (without real-time priority: SCHED_FIFO was refused)"
            };
            format!(
                "{name} woke {late} late, {} of it waiting for a CPU{rt}",
                ms(delay)
            )
        } else {
            format!(
                "{name}'s timer fired {late} late without a run-queue wait: its CPU was not running it (hypervisor steal shorter than /proc/stat's 10 ms resolution) or had interrupts off"
            )
        };
    }
    let rtt = last.clock_rtt_us.max(first.clock_rtt_us);
    format!(
        "both ends woke on time by their own clocks ({name} {} late, {} {} late): the clock offset estimate was off by about {} (best probe round trip {rtt} us)",
        ms(f.late_us),
        first.name,
        first.facts.map_or("?".into(), |g| ms(g.late_us)),
        ms(skew_us)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn end(name: &str, start_us: u64, f: Option<StartFacts>) -> EndStart {
        EndStart {
            name: name.into(),
            start_us,
            facts: f,
            clock_rtt_us: 9,
        }
    }

    fn facts(late_us: u64, missed_us: u64, run_delay: u64, steal: u64) -> Option<StartFacts> {
        Some(StartFacts {
            late_us,
            missed_us,
            run_delay_us: Some(run_delay),
            steal_us: Some(steal),
            realtime: true,
            ..Default::default()
        })
    }

    /// The issue's receive point: offsets 4684/0, 35/29, 5410/4663 us.
    fn issue(last: Option<StartFacts>) -> Vec<EndStart> {
        vec![
            end("nic1 controller", 4684, facts(4684, 0, 10, 0)),
            end("nic1 agent vm1", 0, facts(0, 0, 0, 0)),
            end("nic2 controller", 35, facts(35, 0, 0, 0)),
            end("nic2 agent vm2", 29, facts(29, 0, 0, 0)),
            end("nic3 controller", 5410, last),
            end("nic3 agent vm3", 4663, facts(4663, 0, 0, 0)),
        ]
    }

    #[test]
    fn close_starts_are_not_marked() {
        let ends = [end("a", 100, None), end("b", 150, None)];
        assert_eq!(late_start(&ends, SKEW_LIMIT_US), None);
        assert!(late_start(&ends, 40).is_some(), "a plan's own limit");
        assert_eq!(late_start(&[], 0), None);
    }

    #[test]
    fn causes_from_each_ends_facts() {
        let mark = |f| late_start(&issue(f), SKEW_LIMIT_US).unwrap();
        let m = mark(facts(5410, 0, 0, 10_000));
        assert_eq!((m.skew_us, m.end.as_str()), (5410, "nic3 controller"));
        assert!(
            m.cause.contains("5.4 ms late with 10.0 ms of steal"),
            "{}",
            m.cause
        );
        let m = mark(facts(5410, 0, 5000, 0));
        assert!(
            m.cause.contains("5.0 ms of it waiting for a CPU"),
            "{}",
            m.cause
        );
        let m = mark(facts(5410, 0, 0, 0));
        assert!(m.cause.contains("timer fired 5.4 ms late"), "{}", m.cause);
        let m = mark(facts(5500, 5400, 0, 0));
        assert!(m.cause.contains("had passed 5.4 ms before"), "{}", m.cause);
        let m = mark(facts(3, 0, 0, 0));
        assert!(
            m.cause
                .contains("clock offset estimate was off by about 5.4 ms"),
            "{}",
            m.cause
        );
        let m = mark(None);
        assert!(m.cause.contains("older agent"), "{}", m.cause);
    }
}
