//! An end's workers on their own threads, one per queue: started together,
//! joined together, their results merged back into plan order.

use super::end::StreamEnd;
use super::flow::Shared;
use super::handoff;
use super::plan::{EndReport, Gate, Open, RunPlan, StreamResult, WorkerReport};
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
        let StreamEnd {
            queues,
            steering,
            reserved,
            mac,
            ip,
            mode,
            ..
        } = end;
        let n = queues.len().max(1);
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
