//! How a worker waits for work: the `auto` rule that picks busy or event
//! polling for an end, and how long an idle event-mode worker sleeps.
//! Pure rules; the worker does the waiting and [`super::work`] measures
//! the load.
//!
//! Why event mode exists: on a small machine a spinning worker per end
//! takes the core that the kernel's forwarding, the peer's end and the
//! other ends need; with 64 KiB windows a millisecond of scheduling delay
//! caps a flow. Kernel sockets sleep until a segment comes, and so does
//! an event-mode worker: a window-bound sender waits for an ACK, i.e. for
//! the receive ring.

use crate::spec::XdpPoll;

/// How a worker runs once `auto` is resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Polling {
    /// Spin on the rings, sleeping only after [`super::worker`]'s long
    /// idle stretch.
    Busy,
    /// Sleep in the kernel as soon as a pass found nothing to do.
    Event,
}

impl Polling {
    pub fn as_str(self) -> &'static str {
        match self {
            Polling::Busy => "busy",
            Polling::Event => "event",
        }
    }
}

/// What `auto` weighs.
#[derive(Clone, Copy, Debug)]
pub struct Load {
    /// TCP-lite workers this process runs, the new end's included.
    pub workers: usize,
    /// Online CPUs.
    pub cpus: usize,
    /// The link's far end is on this host (veth): each worker's frames
    /// cost this host's kernel as much again on the other side.
    pub local_peer: bool,
    /// CPU everything else used just before, in cores; None when it need
    /// not be measured (the workers alone do not fit).
    pub others: Option<f64>,
}

/// A core left to the kernel's own network work (softirq, qdiscs).
const KERNEL_RESERVE: f64 = 1.0;

/// The cores this process's workers need before anything else runs: one
/// per worker (two with a local peer) plus the kernel's reserve.
pub fn cores_needed(workers: usize, local_peer: bool) -> f64 {
    let per = if local_peer { 2.0 } else { 1.0 };
    workers as f64 * per + KERNEL_RESERVE
}

/// The mode an end's workers run: `auto` spins only where its workers fit
/// in cores nothing else uses (what xdpsock's `-B` presumes).
pub fn resolve(asked: XdpPoll, load: &Load) -> Polling {
    match asked {
        XdpPoll::Busy => Polling::Busy,
        XdpPoll::Event => Polling::Event,
        XdpPoll::Auto => {
            let need = cores_needed(load.workers, load.local_peer) + load.others.unwrap_or(0.0);
            match need <= load.cpus as f64 {
                true => Polling::Busy,
                false => Polling::Event,
            }
        }
    }
}

/// A timer nearer than this is spun for: a sleep's timer slack (50 µs by
/// default) and wake-up would make it late.
pub const SPIN_BELOW_US: u64 = 50;
/// The longest event-mode sleep: the stop flag, the start gate and frames
/// handed over by other workers (no fd to wait on) are seen within it.
pub const MAX_SLEEP_US: u64 = 1000;

/// How an idle event-mode worker waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// Pass again at once.
    Spin,
    /// Sleep on the receive ring for at most this many microseconds.
    Sleep(u64),
}

/// The wait for a worker whose next timer is `next_timer_us` away (None:
/// no timer) and with `handoffs` frames from other workers pending.
pub fn wait(next_timer_us: Option<u64>, handoffs: bool) -> Wait {
    if handoffs {
        return Wait::Spin;
    }
    match next_timer_us.unwrap_or(MAX_SLEEP_US) {
        t if t < SPIN_BELOW_US => Wait::Spin,
        t => Wait::Sleep(t.min(MAX_SLEEP_US)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(workers: usize, cpus: usize, local_peer: bool, others: Option<f64>) -> Load {
        Load {
            workers,
            cpus,
            local_peer,
            others,
        }
    }

    #[test]
    fn asked_modes_are_kept_whatever_the_load() {
        let crowded = load(8, 2, true, Some(2.0));
        assert_eq!(resolve(XdpPoll::Busy, &crowded), Polling::Busy);
        let idle = load(1, 64, false, Some(0.0));
        assert_eq!(resolve(XdpPoll::Event, &idle), Polling::Event);
    }

    #[test]
    fn auto_spins_only_where_the_workers_fit_in_free_cores() {
        // one worker on a 2-core host, real NIC, nothing else: busy
        assert_eq!(
            resolve(XdpPoll::Auto, &load(1, 2, false, Some(0.0))),
            Polling::Busy
        );
        // the same with a veth peer: its kernel work needs the other core
        assert_eq!(
            resolve(XdpPoll::Auto, &load(1, 2, true, None)),
            Polling::Event
        );
        // the demo's controller: 4 workers on 2 cores
        assert_eq!(
            resolve(XdpPoll::Auto, &load(4, 2, false, None)),
            Polling::Event
        );
        // a co-tenant taking 1.5 cores of 4 leaves room for one worker only
        assert_eq!(
            resolve(XdpPoll::Auto, &load(1, 4, false, Some(1.5))),
            Polling::Busy
        );
        assert_eq!(
            resolve(XdpPoll::Auto, &load(2, 4, false, Some(1.5))),
            Polling::Event
        );
        // exactly fitting counts as fitting
        assert_eq!(cores_needed(3, false), 4.0);
        assert_eq!(
            resolve(XdpPoll::Auto, &load(3, 4, false, Some(0.0))),
            Polling::Busy
        );
    }

    #[test]
    fn near_timers_spin_and_far_ones_sleep_at_most_a_millisecond() {
        assert_eq!(wait(Some(0), false), Wait::Spin);
        assert_eq!(wait(Some(SPIN_BELOW_US - 1), false), Wait::Spin);
        assert_eq!(wait(Some(SPIN_BELOW_US), false), Wait::Sleep(SPIN_BELOW_US));
        assert_eq!(wait(Some(300), false), Wait::Sleep(300));
        assert_eq!(wait(Some(200_000), false), Wait::Sleep(MAX_SLEEP_US));
        assert_eq!(wait(None, false), Wait::Sleep(MAX_SLEEP_US));
        // frames handed over by another worker are taken at once
        assert_eq!(wait(Some(200_000), true), Wait::Spin);
    }
}
