//! One end's test window, alike for the controller and an agent: the
//! counters read and the path looked up *before* the start instant (so
//! reading them does not delay the start), the wait for that instant, and
//! at the end this side's report from them.

use super::clock::{self, StartFacts};
use crate::metrics::{cpu::CpuSnapshot, host, irq::IrqSnapshot, irq_path::PathWatch};
use crate::report::model::{FlowResult, SideReport, WorkerReport};
use std::net::IpAddr;
use std::time::Instant;

/// What an end holds from just before its start to its result.
pub(crate) struct Began {
    cpu0: CpuSnapshot,
    irq0: IrqSnapshot,
    path: PathWatch,
    /// The instant this end woke to start.
    pub start: Instant,
    /// How the wait went; None for a start without a scheduled instant.
    pub facts: Option<StartFacts>,
}

impl Began {
    /// Read the counters, watch the path of flows bound to `bound` (else
    /// routed from `local` to `peer`), then wait for `at` (None: now).
    pub fn wait(at: Option<Instant>, bound: Option<&str>, local: IpAddr, peer: IpAddr) -> Began {
        let cpu0 = CpuSnapshot::take();
        let irq0 = IrqSnapshot::take();
        let path = PathWatch::start(bound, local, peer);
        let (start, facts) = match at {
            Some(at) => {
                let (t, f) = clock::wait_until(at);
                (t, Some(f))
            }
            None => (Instant::now(), None),
        };
        Began {
            cpu0,
            irq0,
            path,
            start,
            facts,
        }
    }

    /// This side's report now: its flows and workers with the CPU and
    /// interrupt use since the readings, the path's among them.
    pub fn report(
        self,
        flows: Vec<FlowResult>,
        workers: Vec<WorkerReport>,
        placement: Option<String>,
    ) -> SideReport {
        let end = Instant::now();
        let cpu = self.cpu0.report(&CpuSnapshot::take());
        let mut irq = self.irq0.report(&IrqSnapshot::take());
        self.path.finish(&mut irq);
        SideReport {
            host: host::info(),
            flows,
            cpu,
            irq,
            start_us: clock::us_of(self.start),
            end_us: clock::us_of(end),
            start: self.facts,
            workers,
            placement,
        }
    }
}
