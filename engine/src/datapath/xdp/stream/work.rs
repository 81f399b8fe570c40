//! An end's workers on their own threads, one per queue: started together,
//! joined together, their results merged back into plan order.

use super::end::StreamEnd;
use super::flow::Shared;
use super::handoff;
use super::plan::{EndReport, Gate, Open, RunPlan, StreamResult, WorkerReport};
use super::polling::{self, Load, Polling};
use super::worker::{Owners, Worker};
use crate::tcplite::frame::LinkAddrs;
use crate::{Error, Result};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

type Done = (Vec<(usize, StreamResult)>, WorkerReport);

/// A running end. Dropping it unfinished stops the workers and waits for
/// them, so its XDP program and ports are released on every early return,
/// not after an idle timeout.
pub struct StreamWork {
    handles: Vec<std::thread::JoinHandle<Done>>,
    stop: Arc<AtomicBool>,
    plan: Arc<RunPlan>,
    mode: &'static str,
    queues: Vec<u32>,
    /// Held until the workers are joined: the program and the ports.
    _end: (super::super::loader::Steering, Vec<socket2::Socket>),
    /// Its workers' place in the process's count.
    _live: Live,
}

/// TCP-lite workers running in this process, over all its ends: what
/// `auto` polling weighs against the CPUs.
static LIVE_WORKERS: AtomicUsize = AtomicUsize::new(0);

/// An end's workers counted in [`LIVE_WORKERS`] until it is dropped.
struct Live(usize);

impl Live {
    fn join(n: usize) -> Live {
        LIVE_WORKERS.fetch_add(n, Ordering::AcqRel);
        Live(n)
    }

    fn total(&self) -> usize {
        LIVE_WORKERS.load(Ordering::Acquire)
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        LIVE_WORKERS.fetch_sub(self.0, Ordering::AcqRel);
    }
}

/// How an end on `iface` with `workers` in this process (its own
/// included) polls: `auto` measures the rest of the host's CPU use only
/// when the workers alone would fit.
fn polling_for(asked: crate::spec::XdpPoll, iface: &str, workers: usize) -> Polling {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    // a veth's far end, and its kernel work, is on this host
    let local_peer = crate::host::iface::driver(iface).is_some_and(|d| d == "veth");
    let mut load = Load {
        workers,
        cpus,
        local_peer,
        others: None,
    };
    if asked == crate::spec::XdpPoll::Auto
        && polling::cores_needed(workers, local_peer) <= cpus as f64
    {
        load.others = others_cores(Duration::from_millis(50));
    }
    polling::resolve(asked, &load)
}

/// CPU the rest of the host used over `window`, in cores: all CPUs' busy
/// time (/proc/stat) less this process's own (getrusage). None where it
/// cannot be read: `auto` then counts nothing else.
fn others_cores(window: Duration) -> Option<f64> {
    let busy = || -> Option<(f64, f64)> {
        let text = std::fs::read_to_string("/proc/stat").ok()?;
        let (host, _) = crate::metrics::cpu::parse_proc_stat(&text).ok()?;
        // SAFETY: sysconf only reads a system constant.
        let tick = unsafe { nix::libc::sysconf(nix::libc::_SC_CLK_TCK) }.max(1) as f64;
        let idle = host.idle + host.iowait.unwrap_or(0);
        let host_busy = (host.total() - idle) as f64 / tick;
        let own = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF).ok()?;
        let secs = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 * 1e-6;
        Some((host_busy, secs(own.user_time()) + secs(own.system_time())))
    };
    let (h0, o0) = busy()?;
    std::thread::sleep(window);
    let (h1, o1) = busy()?;
    Some((((h1 - h0) - (o1 - o0)) / window.as_secs_f64()).max(0.0))
}

impl StreamWork {
    /// Start the workers now: connections open at once; payload waits for
    /// `gate`.
    pub fn spawn(
        end: StreamEnd,
        mut plan: RunPlan,
        gate: Gate,
        stop: &Arc<AtomicBool>,
    ) -> Result<StreamWork> {
        // Worker k runs on CPU k: CPUs beyond the workers would be ignored.
        if plan.cpus.len() > end.queues.len().max(1) {
            return Err(crate::Error::Invalid(format!(
                "{} CPUs given to pin TCP-lite workers to, but this end runs {} (one per queue of {} it uses): name at most {} (--cpus / --remote-cpus)",
                plan.cpus.len(),
                end.queues.len().max(1),
                end.iface,
                end.queues.len().max(1)
            )));
        }
        let cap = end.window_cap(plan.streams.len());
        plan.config.recv_buffer = plan.config.recv_buffer.min(cap);
        let n = end.queues.len().max(1);
        let live = Live::join(n);
        let polling = polling_for(plan.poll, &end.iface, live.total());
        let StreamEnd {
            queues,
            steering,
            reserved,
            mac,
            ip,
            mode,
            ..
        } = end;
        let plan = Arc::new(plan);
        let owners = Arc::new(Owners::new(n, &plan));
        let accept_plans: Arc<Vec<usize>> = Arc::new(
            (0..plan.streams.len())
                .filter(|&i| matches!(plan.streams[i].open, Open::Accept { .. }))
                .collect(),
        );
        let link = LinkAddrs {
            src: mac,
            dst: plan.peer_mac,
        };
        let t0 = Instant::now();
        let queue_ids = queues.iter().map(|q| q.queue).collect();
        let mut workers: Vec<Worker> = queues
            .into_iter()
            .enumerate()
            .map(|(id, q)| {
                Worker::new(
                    id,
                    q,
                    link,
                    ip,
                    &plan,
                    owners.clone(),
                    accept_plans.clone(),
                    t0,
                    polling,
                )
            })
            .collect();
        // One hand-off ring per ordered pair of workers.
        for w in &mut workers {
            w.outbox = (0..n).map(|_| None).collect();
        }
        for from in 0..n {
            for to in 0..n {
                if from != to {
                    let (tx, rx) = handoff::channel(handoff::ring_bytes(n));
                    workers[from].outbox[to] = Some(tx);
                    workers[to].inbox.push(rx);
                }
            }
        }
        let shared = Arc::new(Shared::default());
        let running = Arc::new(AtomicUsize::new(n));
        let mut handles = Vec::with_capacity(n);
        for w in workers {
            let (plan, gate, halt, shared, running_w) = (
                plan.clone(),
                gate.clone(),
                stop.clone(),
                shared.clone(),
                running.clone(),
            );
            let spawned = std::thread::Builder::new()
                .name(format!("tcplite-{}", w.id()))
                .spawn(move || {
                    // A worker that panics stops the others: its flows are lost.
                    let guard = StopOnPanic(&halt);
                    let r = w.run(&plan, &gate, &halt, &shared, &running_w);
                    std::mem::forget(guard);
                    r
                });
            match spawned {
                Ok(h) => handles.push(h),
                Err(e) => {
                    stop.store(true, Ordering::Relaxed);
                    // the others see every worker "running": release them
                    running.store(0, Ordering::Release);
                    handles
                        .into_iter()
                        .for_each(|h: std::thread::JoinHandle<Done>| {
                            let _ = h.join();
                        });
                    return Err(Error::io("starting a TCP-lite worker", e));
                }
            }
        }
        Ok(StreamWork {
            handles,
            stop: stop.clone(),
            plan,
            mode,
            queues: queue_ids,
            _end: (steering, reserved),
            _live: live,
        })
    }

    /// Wait up to `wait`; true once every worker is done.
    pub fn poll(&mut self, wait: Duration) -> bool {
        let done = |w: &StreamWork| w.handles.iter().all(|h| h.is_finished());
        if !done(self) {
            std::thread::sleep(wait);
        }
        done(self)
    }

    /// The results in plan order (waits for the workers). A connection no
    /// worker ran (a worker that panicked, an accept that never came) still
    /// gives a result, with the error.
    pub fn finish(mut self) -> (Vec<StreamResult>, EndReport) {
        let n = self.plan.streams.len();
        let mut results: Vec<Option<StreamResult>> = vec![None; n];
        let mut report = EndReport {
            mode: self.mode.into(),
            workers: Vec::new(),
            placement: self.plan.placement.clone(),
        };
        let handles = std::mem::take(&mut self.handles);
        let mut panicked = false;
        for (k, h) in handles.into_iter().enumerate() {
            let joined = h.join();
            panicked |= joined.is_err();
            match joined {
                Ok((rs, w)) => {
                    for (i, r) in rs {
                        results[i] = Some(r);
                    }
                    report.workers.push(w);
                }
                Err(_) => report.workers.push(WorkerReport {
                    queue: self.queues.get(k).copied().unwrap_or_default(),
                    ..Default::default()
                }),
            }
        }
        let missing = |i: usize| {
            let why = match (self.plan.streams[i].open, panicked) {
                (_, true) => "a TCP-lite worker failed (panicked)".into(),
                (Open::Accept { .. }, false) => format!(
                    "no connection arrived in {:.0} s",
                    self.plan.idle.as_secs_f64()
                ),
                (Open::Connect { .. }, false) => "its TCP-lite worker never ran it".into(),
            };
            // What it moved before, where a live counter kept it.
            let bytes = self.plan.counters.get(i).map_or(0, |c| c.get());
            StreamResult {
                error: Some(match self.plan.counters.get(i) {
                    Some(_) => format!("{why}, after {bytes} B"),
                    None => why,
                }),
                bytes,
                ..Default::default()
            }
        };
        let results = results
            .into_iter()
            .enumerate()
            .map(|(i, r)| r.unwrap_or_else(|| missing(i)))
            .collect();
        (results, report)
    }
}

/// Sets the stop flag when dropped, i.e. when its worker unwinds.
struct StopOnPanic<'a>(&'a AtomicBool);

impl Drop for StopOnPanic<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

impl Drop for StreamWork {
    fn drop(&mut self) {
        if !self.handles.is_empty() {
            self.stop.store(true, Ordering::Relaxed);
            for h in self.handles.drain(..) {
                let _ = h.join();
            }
        }
    }
}
