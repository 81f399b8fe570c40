//! Executes a plan: for each point, prepares every pair concurrently,
//! matches each agent's clock, starts all pairs at one instant, and turns
//! their run reports into a point result with wire-speed shares, skew and
//! a verdict. A point that fails (an unreachable agent, say) records why,
//! and the sweep goes on.

use super::file::{Configuration, Pair, Plan, Point};
use super::stats::Summary;
use super::wire::best_goodput;
use crate::control::auth;
use crate::control::controller::{self, Event, Prepared, RunOptions, CLOCK_SAMPLES};
use crate::control::start::{late_start, EndStart, LateStart, SKEW_LIMIT_US};
use crate::control::thirdparty::{self, PairOptions, PreparedPair};
use crate::host::iface::facts as iface_facts;
use crate::report::diagnosis::{diagnose, diagnose_latency, noise, HostFigures};
use crate::report::model::{Interval, Role, RrSummary, RunReport};
use crate::report::plan::{
    noise_words, ControlTimes, PairResult, PlanReport, PointResult, Repetition, RrPoint,
    PLAN_SCHEMA,
};
use crate::spec::Direction;
use crate::{Error, Result};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// What the runner tells its caller as it goes.
pub enum Progress<'a> {
    /// A point begins: its index, how many there are, its description.
    Point {
        index: usize,
        total: usize,
        label: String,
    },
    /// One pair's reporting interval.
    Interval {
        pair: &'a str,
        interval: &'a Interval,
        /// An rr test's: its flows carry `rr` where this end is the client.
        rr: bool,
    },
    /// A repetition ended (or failed).
    Repetition {
        label: String,
        aggregate_bps: Option<f64>,
        /// rr points: the transactions per second of all pairs.
        transactions_per_second: Option<f64>,
        error: Option<String>,
    },
}

/// Margin beyond the clock probes' round trip when scheduling the start.
const START_MARGIN: Duration = Duration::from_millis(50);
/// And per pair: sending 256 pairs' Start messages on a busy 2-core host
/// took over 1 s when data began at 50 ms.
const START_PER_PAIR: Duration = Duration::from_millis(2);

/// Repetitions of a point run again at most this often for starting
/// further apart than the plan's `max_start_skew`.
const SKEW_RETRIES: usize = 3;

/// A prepared pair probes its agents' clocks this often while slower pairs
/// prepare, so its agents (which wait 10 s for the next message) keep
/// waiting: each pair is bounded by its own timeouts, not the slowest's.
const KEEPALIVE: Duration = Duration::from_secs(2);
/// For at most this long (the agents answer 64 probes before a start).
const KEEPALIVE_FOR: Duration = Duration::from_secs(60);

/// Run every point of `plan`. Stops between repetitions, and aborts the one
/// running, once `cancel` is set; the report then says it was interrupted.
pub fn run_plan(
    plan: &Plan,
    cancel: &Arc<AtomicBool>,
    on: &(dyn Fn(Progress<'_>) + Sync),
) -> PlanReport {
    let started_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let points = plan.points();
    let mut out = Vec::new();
    for (index, point) in points.iter().enumerate() {
        if cancel.load(Ordering::Relaxed) {
            break;
        }
        let conf = &plan.configurations[point.configuration];
        let label = format!("{} {} {} pair(s)", conf.name, point.direction, point.pairs);
        on(Progress::Point {
            index,
            total: points.len(),
            label: label.clone(),
        });
        out.push(run_point(plan, point, &label, cancel, on));
    }
    PlanReport {
        schema: PLAN_SCHEMA.into(),
        plan: plan.name.clone(),
        started_unix,
        interrupted: cancel.load(Ordering::Relaxed),
        points: out,
        noise_threshold: plan.repeat.noise_threshold,
    }
}

fn run_point(
    plan: &Plan,
    point: &Point,
    label: &str,
    cancel: &Arc<AtomicBool>,
    on: &(dyn Fn(Progress<'_>) + Sync),
) -> PointResult {
    let conf = &plan.configurations[point.configuration];
    let pairs = &conf.pairs[..point.pairs];
    let mut reps: Vec<Repetition> = Vec::new();
    let mut retried: Vec<LateStart> = Vec::new();
    let mut noisy: Vec<Repetition> = Vec::new();
    let mut error = None;
    while (reps.len() as u32) < plan.repeat.max && !cancel.load(Ordering::Relaxed) {
        if reps.len() as u32 >= plan.repeat.min {
            let s = Summary::of(
                &counted(&reps)
                    .iter()
                    .map(|r| r.figure())
                    .collect::<Vec<_>>(),
                plan.repeat.confidence,
            );
            if s.within(plan.repeat.width_percent) {
                break;
            }
        }
        match run_repetition(
            conf,
            pairs,
            point.direction,
            plan.repeat.max_start_skew_us,
            cancel,
            on,
        ) {
            Ok(mut r) => {
                r.noisy = r.noise.over(plan.repeat.noise_threshold);
                let over = r.late.as_ref().filter(|l| {
                    plan.repeat.max_start_skew_us.is_some_and(|m| l.skew_us > m)
                        && retried.len() < SKEW_RETRIES
                });
                if let Some(l) = over {
                    on(Progress::Repetition {
                        label: format!(
                            "{label} (start skew {} us over max_start_skew: run again)",
                            l.skew_us
                        ),
                        aggregate_bps: Some(r.aggregate_bps),
                        transactions_per_second: r.rr.as_ref().map(|x| x.transactions_per_second),
                        error: None,
                    });
                    retried.push(l.clone());
                    continue;
                }
                if r.noisy && (noisy.len() as u32) < plan.repeat.max_noisy_retries {
                    on(Progress::Repetition {
                        label: format!(
                            "{label} (noisy: {} over {}%: run again)",
                            noise_words(&r.noise),
                            plan.repeat.noise_threshold
                        ),
                        aggregate_bps: Some(r.aggregate_bps),
                        transactions_per_second: r.rr.as_ref().map(|x| x.transactions_per_second),
                        error: None,
                    });
                    noisy.push(r);
                    continue;
                }
                on(Progress::Repetition {
                    label: label.into(),
                    aggregate_bps: Some(r.aggregate_bps),
                    transactions_per_second: r.rr.as_ref().map(|x| x.transactions_per_second),
                    error: None,
                });
                reps.push(r);
            }
            Err(e) => {
                on(Progress::Repetition {
                    label: label.into(),
                    aggregate_bps: None,
                    transactions_per_second: None,
                    error: Some(e.to_string()),
                });
                error = Some(e.to_string());
                break;
            }
        }
    }
    // The figures come from the clean repetitions; from all of them, and
    // the point marked noisy, when none was clean.
    let used = counted(&reps);
    let aggregate = Summary::of(
        &used.iter().map(|r| r.aggregate_bps).collect::<Vec<_>>(),
        plan.repeat.confidence,
    );
    let first = reps.first();
    let sum_of = |f: fn(&PairResult) -> Option<f64>| -> Option<f64> {
        first.and_then(|r| r.pairs.iter().map(f).sum::<Option<f64>>())
    };
    let link_bps = sum_of(|p| p.link_bps);
    let best_bps = sum_of(|p| p.best_bps);
    let used_owned: Vec<Repetition> = used.iter().map(|r| (*r).clone()).collect();
    let rr = RrPoint::of(&used_owned, plan.repeat.confidence);
    // The verdict comes from the repetition closest to the point's value.
    let mean = rr
        .as_ref()
        .map_or(aggregate.median, |r| r.transactions_per_second.median);
    let closest = used.iter().min_by(|a, b| {
        (a.figure() - mean)
            .abs()
            .total_cmp(&(b.figure() - mean).abs())
    });
    PointResult {
        configuration: conf.name.clone(),
        direction: point.direction,
        pairs: point.pairs,
        mode: first
            .and_then(|r| r.pairs.first())
            .map(|p| p.run.end.mode.clone()),
        remote_mode: first
            .and_then(|r| r.pairs.first())
            .map(|p| p.run.config.remote_mode.clone()),
        poll_mode: poll_mode(first, |w| &w.local),
        remote_poll_mode: poll_mode(first, |w| &w.remote),
        percent_of_link: link_bps
            .filter(|_| !reps.is_empty() && rr.is_none())
            .map(|l| 100.0 * aggregate.median / l),
        percent_of_best: best_bps
            .filter(|_| !reps.is_empty())
            .map(|b| 100.0 * aggregate.median / b),
        max_start_skew_us: reps.iter().map(|r| r.start_skew_us).max().unwrap_or(0),
        verdict: closest.map(|r| r.verdict.clone()),
        noisy: !reps.is_empty() && reps.iter().all(|r| r.noisy),
        noisy_repetitions: noisy,
        aggregate,
        link_bps,
        best_bps,
        repetitions: reps,
        retried_for_skew: retried,
        error,
        rr,
    }
}

/// The repetitions a point's figures come from: the clean ones, or all
/// when none is clean.
fn counted(reps: &[Repetition]) -> Vec<&Repetition> {
    let clean: Vec<&Repetition> = reps.iter().filter(|r| !r.noisy).collect();
    if clean.is_empty() {
        reps.iter().collect()
    } else {
        clean
    }
}

/// The poll mode of one side's first TCP-lite worker in a repetition's
/// first pair; None where that side ran kernel sockets.
fn poll_mode(
    rep: Option<&Repetition>,
    side: impl Fn(&crate::report::model::BothWorkers) -> &Vec<crate::report::model::WorkerReport>,
) -> Option<String> {
    let p = rep?.pairs.first()?;
    side(&p.run.end.workers).first()?.poll_mode.clone()
}

fn options(
    conf: &Configuration,
    pair: &Pair,
    direction: Direction,
    cancel: &Arc<AtomicBool>,
) -> Result<RunOptions> {
    let mut spec = conf.spec(pair.direction.unwrap_or(direction), 1);
    spec.remote_iface = pair.remote_iface.clone();
    spec.data_port = pair.data_port;
    Ok(RunOptions {
        to: pair.address.clone(),
        spec,
        mode: conf.mode,
        local: pair.local,
        iface: pair.iface.clone(),
        psk: pair.psk_file.as_deref().map(auth::load_key).transpose()?,
        interval: Some(Duration::from_secs(1)),
        connect_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(10),
        cancel: Some(cancel.clone()),
        workers: crate::spec::Workers {
            poll: conf.xdp_poll,
            ..Default::default()
        },
        xdp_bind: conf.xdp_bind,
        raw: None,
    })
}

/// A pair ready to start: the controller's own end, or two agents'.
enum Ready {
    Controller(Box<Prepared>),
    ThirdParty(Box<PreparedPair>),
}

impl Ready {
    fn prepare(opts: &RunOptions, pair: &Pair) -> Result<Ready> {
        let Some(c) = &pair.client else {
            let p = controller::prepare(opts, |_| {})?;
            return Ok(Ready::Controller(Box::new(p)));
        };
        let p = thirdparty::prepare(&PairOptions {
            from: c.address.clone(),
            from_psk: c.psk_file.as_deref().map(auth::load_key).transpose()?,
            run: opts.clone(),
            remote_local: pair.remote_local,
        })?;
        Ok(Ready::ThirdParty(Box::new(p)))
    }

    /// Estimate the clocks of the pair's agents (once every pair is ready).
    fn sync_clock(&mut self, n: usize) -> Result<()> {
        match self {
            Ready::Controller(p) => p.sync_clock(n).map(drop),
            Ready::ThirdParty(p) => p.sync_clock(n),
        }
    }

    fn rtt_us(&self) -> u64 {
        match self {
            Ready::Controller(p) => p.clock().rtt_us,
            Ready::ThirdParty(p) => p.rtt_us(),
        }
    }

    fn run_at(self, at: Instant, on: impl FnMut(Event<'_>)) -> Result<RunReport> {
        match self {
            Ready::Controller(p) => p.run_at(Some(at), on),
            Ready::ThirdParty(p) => p.run_at(at, on),
        }
    }
}

/// One repetition: all pairs prepared, started at one instant, measured.
fn run_repetition(
    conf: &Configuration,
    pairs: &[Pair],
    direction: Direction,
    max_skew_us: Option<u64>,
    cancel: &Arc<AtomicBool>,
    on: &(dyn Fn(Progress<'_>) + Sync),
) -> Result<Repetition> {
    let opts = pairs
        .iter()
        .map(|p| options(conf, p, direction, cancel))
        .collect::<Result<Vec<_>>>()?;
    let named = |i: usize, e: Error| {
        Error::PeerLost(format!(
            "pair {} (agent {} at {}): {e}",
            pairs[i].name, pairs[i].agent, pairs[i].address
        ))
    };
    // Prepare concurrently: connecting to N agents should not take N
    // round trips, and a pair that is ready keeps its agents waiting
    // while slower ones prepare.
    let done = AtomicUsize::new(0);
    let t0 = Instant::now();
    let prepared: Vec<Result<Ready>> = std::thread::scope(|s| {
        let hs: Vec<_> = opts
            .iter()
            .zip(pairs)
            .map(|(o, pair)| {
                let done = &done;
                s.spawn(move || {
                    let r = Ready::prepare(o, pair);
                    done.fetch_add(1, Ordering::SeqCst);
                    keep_alive(r?, || done.load(Ordering::SeqCst) >= pairs.len(), cancel)
                })
            })
            .collect();
        join_all(hs)
    });
    let mut ready = Vec::with_capacity(prepared.len());
    for (i, p) in prepared.into_iter().enumerate() {
        ready.push(p.map_err(|e| named(i, e))?);
    }
    let t_ready = Instant::now();
    // Every pair is ready: only now estimate the clocks, so no estimate is
    // older than the slowest pair's setup, and an agent's answers confirm
    // it is waiting for the start before the instant is fixed.
    let synced = sync_clocks(ready);
    let mut ready = Vec::with_capacity(synced.len());
    for (i, p) in synced.into_iter().enumerate() {
        ready.push(p.map_err(|e| named(i, e))?);
    }
    let t_synced = Instant::now();
    let rr = matches!(conf.test, crate::spec::TestKind::Rr { .. });
    let worst_rtt = ready.iter().map(Ready::rtt_us).max().unwrap_or(0);
    // Every pair's Start must reach both its ends before the first data
    // moves and starves the rest of the CPU: margin grows with the pairs.
    let at = Instant::now()
        + Duration::from_micros(worst_rtt * 4)
        + START_MARGIN
        + START_PER_PAIR * pairs.len() as u32;
    let limit_us = max_skew_us.map_or(SKEW_LIMIT_US, |m| m.min(SKEW_LIMIT_US));
    let runs: Vec<Result<RunReport>> = std::thread::scope(|s| {
        let hs: Vec<_> = ready
            .into_iter()
            .zip(pairs)
            .map(|(p, pair)| {
                s.spawn(move || {
                    p.run_at(at, |ev| {
                        if let Event::Interval(iv) = ev {
                            on(Progress::Interval {
                                pair: &pair.name,
                                interval: iv,
                                rr,
                            });
                        }
                    })
                })
            })
            .collect();
        join_all(hs)
    });
    let mut reports = Vec::with_capacity(runs.len());
    for (i, r) in runs.into_iter().enumerate() {
        reports.push(r.map_err(|e| named(i, e))?);
    }
    let mut rep = assemble(conf, pairs, reports);
    rep.late = late_start(&end_starts(pairs, &rep), limit_us);
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    rep.control = Some(ControlTimes {
        prepare_ms: ms(t_ready - t0),
        clock_ms: ms(t_synced - t_ready),
        start_lead_ms: ms(at - t_synced),
    });
    Ok(rep)
}

/// Probe a ready pair's clocks every [`KEEPALIVE`] until `all_ready`
/// (for at most [`KEEPALIVE_FOR`]).
fn keep_alive(mut p: Ready, all_ready: impl Fn() -> bool, cancel: &AtomicBool) -> Result<Ready> {
    let until = Instant::now() + KEEPALIVE_FOR;
    let mut next = Instant::now() + KEEPALIVE;
    while !all_ready() && !cancel.load(Ordering::Relaxed) && Instant::now() < until {
        if Instant::now() >= next {
            p.sync_clock(1)?;
            next = Instant::now() + KEEPALIVE;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(p)
}

/// Match every pair's clocks, a few pairs at a time (as many as the
/// controller has CPUs): probes that queue for the CPUs come back with
/// long round trips, and an offset is only as good as half its round trip
/// (512 connections probed all at once on 2 cores: round trips near 1 ms,
/// ends 1 ms apart that each woke on time).
fn sync_clocks(ready: Vec<Ready>) -> Vec<Result<Ready>> {
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(2, 16)
        .min(ready.len().max(1));
    let mut shares: Vec<Vec<(usize, Ready)>> = (0..workers).map(|_| Vec::new()).collect();
    for (i, p) in ready.into_iter().enumerate() {
        shares[i % workers].push((i, p));
    }
    let n: usize = shares.iter().map(Vec::len).sum();
    let mut out: Vec<Option<Result<Ready>>> = (0..n).map(|_| None).collect();
    std::thread::scope(|s| {
        let hs: Vec<_> = shares
            .into_iter()
            .map(|share| {
                let idx: Vec<usize> = share.iter().map(|(i, _)| *i).collect();
                let h = s.spawn(move || {
                    share
                        .into_iter()
                        .map(|(i, mut p)| (i, p.sync_clock(CLOCK_SAMPLES).map(|()| p)))
                        .collect::<Vec<_>>()
                });
                (idx, h)
            })
            .collect();
        for (idx, h) in hs {
            match h.join() {
                Ok(done) => done.into_iter().for_each(|(i, r)| out[i] = Some(r)),
                Err(_) => idx.into_iter().for_each(|i| {
                    out[i] = Some(Err(Error::Protocol("clock thread panicked".into())))
                }),
            }
        }
    });
    out.into_iter()
        .map(|r| r.expect("every pair has a result"))
        .collect()
}

/// Every end of every pair with its start in the controller's clock.
fn end_starts(pairs: &[Pair], rep: &Repetition) -> Vec<EndStart> {
    pairs
        .iter()
        .zip(&rep.pairs)
        .flat_map(|(pair, pr)| {
            let t = &pr.run.end.timing;
            let client = pair.client.as_ref().map_or_else(
                || "controller".into(),
                |c| format!("client agent {}", c.name),
            );
            [
                EndStart {
                    name: format!("{} {client}", pair.name),
                    start_us: t.local_start_us,
                    facts: t.local_start,
                    // A client agent's start came through its own estimate.
                    clock_rtt_us: if pair.client.is_some() {
                        t.clock_rtt_us
                    } else {
                        0
                    },
                },
                EndStart {
                    name: format!("{} agent {}", pair.name, pair.agent),
                    start_us: t.remote_start_us,
                    facts: t.remote_start,
                    clock_rtt_us: t.clock_rtt_us,
                },
            ]
        })
        .collect()
}

/// Wait for every pair's thread; a panicked one becomes that pair's error.
fn join_all<T>(hs: Vec<std::thread::ScopedJoinHandle<'_, Result<T>>>) -> Vec<Result<T>> {
    hs.into_iter()
        .map(|h| {
            h.join()
                .unwrap_or_else(|_| Err(Error::Protocol("pair thread panicked".into())))
        })
        .collect()
}

/// Receiver-side goodput after the warm-up. The controller's intervals
/// count what it received for the flows it receives; for the flows it
/// sends they count what it wrote, so those take the receiver's total less
/// what had been written by the warm-up's end, over the receiver's time
/// less the warm-up (the bytes still in flight then — socket buffers and
/// a queue — are taken as warm-up). Without a warm-up or intervals (third-
/// party pairs): the receivers' end-of-test figure.
fn goodput(r: &RunReport, warmup: Duration) -> f64 {
    let w = warmup.as_secs_f64();
    // Intervals that do not split at the warm-up's end (a warm-up shorter
    // than one interval) cannot take it out: the whole run's figure.
    let split = r.intervals.iter().any(|iv| (iv.end - w).abs() < 1e-3);
    if w <= 0.0 || !split {
        return r.end.received.bits_per_second;
    }
    let bytes_of = |keep: &dyn Fn(&Interval) -> bool, stream: u16, d: Direction| -> u64 {
        r.intervals
            .iter()
            .filter(|iv| keep(iv))
            .flat_map(|iv| &iv.flows)
            .filter(|f| f.stream == stream && f.direction == d)
            .map(|f| f.bytes)
            .sum()
    };
    let after = |iv: &Interval| iv.start >= w - 1e-3;
    let during = |iv: &Interval| iv.end <= w + 1e-3;
    let kept: Vec<&Interval> = r.intervals.iter().filter(|iv| after(iv)).collect();
    let span = match (kept.first(), kept.last()) {
        (Some(a), Some(b)) => b.end - a.start,
        _ => return r.end.received.bits_per_second,
    };
    let mut bps = 0.0;
    for f in &r.end.flows {
        let Some(rx) = &f.receiver else { continue };
        let id = crate::spec::FlowId {
            stream: f.stream,
            direction: f.direction,
        };
        bps += if crate::datapath::socket::role_of(id, true) == Role::Receiver {
            crate::units::bps(bytes_of(&after, f.stream, f.direction), span)
        } else {
            let early = bytes_of(&during, f.stream, f.direction);
            crate::units::bps(
                rx.throughput.bytes.saturating_sub(early),
                rx.throughput.seconds - w,
            )
        };
    }
    bps
}

fn assemble(conf: &Configuration, pairs: &[Pair], reports: Vec<RunReport>) -> Repetition {
    let starts: Vec<(u64, u64)> = reports
        .iter()
        .map(|r| (r.end.timing.local_start_us, r.end.timing.remote_start_us))
        .collect();
    let earliest = starts.iter().flat_map(|&(a, b)| [a, b]).min().unwrap_or(0);
    let latest = starts.iter().flat_map(|&(a, b)| [a, b]).max().unwrap_or(0);
    let mut hosts = Vec::new();
    // The controller is a data host only where it is some pair's client;
    // otherwise it only orchestrated.
    if let Some((_, r)) = pairs.iter().zip(&reports).find(|(p, _)| p.client.is_none()) {
        hosts.push(HostFigures {
            name: "controller".into(),
            controller: true,
            cpu: r.end.cpu.local.clone(),
            irq: r.end.irq.local.clone(),
        });
    }
    let mut out = Vec::with_capacity(reports.len());
    for ((pair, run), (ls, rs)) in pairs.iter().zip(reports).zip(starts) {
        if let Some(c) = pair
            .client
            .as_ref()
            .filter(|c| !hosts.iter().any(|h| h.name == c.name))
        {
            hosts.push(HostFigures {
                name: c.name.clone(),
                controller: false,
                cpu: run.end.cpu.local.clone(),
                irq: run.end.irq.local.clone(),
            });
        }
        if !hosts.iter().any(|h| h.name == pair.agent) {
            hosts.push(HostFigures {
                name: pair.agent.clone(),
                controller: false,
                cpu: run.end.cpu.remote.clone(),
                irq: run.end.irq.remote.clone(),
            });
        }
        let (sys_speed, sys_mtu) = pair.iface.as_deref().map_or((None, None), iface_facts);
        let link_bps = pair.link_bps.or(sys_speed);
        let mtu = conf.mtu.or(sys_mtu).unwrap_or(1500);
        // An rr pair moves no bulk data: no goodput, no wire speed to reach.
        let rr = run.end.latency.is_some();
        let best_bps = link_bps
            .filter(|_| !rr)
            .map(|l| best_goodput(l, mtu, conf.framing));
        let g = if rr { 0.0 } else { goodput(&run, conf.warmup) };
        out.push(PairResult {
            pair: pair.name.clone(),
            agent: pair.agent.clone(),
            client: pair
                .client
                .as_ref()
                .map_or_else(|| "controller".into(), |c| c.name.clone()),
            goodput_bps: g,
            link_bps,
            best_bps,
            percent_of_link: link_bps.filter(|_| !rr).map(|l| 100.0 * g / l),
            percent_of_best: best_bps.map(|b| 100.0 * g / b),
            start_offset_us: (ls - earliest, rs - earliest),
            run,
        });
    }
    let aggregate_bps = out.iter().map(|p| p.goodput_bps).sum();
    let best: Option<f64> = out.iter().map(|p| p.best_bps).sum();
    // A pair whose histogram is bad is named; the others still merge.
    let rr = RrSummary::combine_named(
        out.iter()
            .filter_map(|p| Some((format!("pair {}", p.pair), p.run.end.latency.as_ref()?))),
    );
    let verdict = match &rr {
        Some(r) => diagnose_latency(&hosts, &r.latency),
        None => diagnose(&hosts, best.map(|b| 100.0 * aggregate_bps / b)),
    };
    Repetition {
        control: None,
        aggregate_bps,
        start_skew_us: latest - earliest,
        late: None,
        pairs: out,
        noise: noise(&hosts),
        noisy: false,
        hosts,
        verdict,
        rr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::model::{FlowPair, IntervalFlow, Throughput};
    use crate::report::plan::fixture::{rr_repetition, rr_run};

    /// A one-flow run of 4 s after a 1 s warm-up: the controller's
    /// intervals count `per_second` bytes a second (5 of them), the
    /// receiver took `received` bytes over 5 s in all.
    fn run(direction: Direction, per_second: [u64; 5], received: u64) -> RunReport {
        let mut r = rr_run(&[10]);
        r.end.latency = None;
        r.intervals = per_second
            .iter()
            .enumerate()
            .map(|(i, &b)| Interval {
                start: i as f64,
                end: i as f64 + 1.0,
                flows: vec![IntervalFlow {
                    stream: 0,
                    direction,
                    bytes: b,
                    bits_per_second: b as f64 * 8.0,
                    retransmits: None,
                    rtt_us: None,
                    snd_cwnd: None,
                    tcp_from: None,
                    rr: None,
                }],
                sum: Throughput::new(b, 1.0),
            })
            .collect();
        let mut rx = r.end.flows[0].receiver.clone().unwrap();
        rx.throughput = Throughput::new(received, 5.0);
        rx.rr = None;
        r.end.flows = vec![FlowPair {
            stream: 0,
            direction,
            sender: None,
            receiver: Some(rx),
        }];
        r.end.received = Throughput::new(received, 5.0);
        r
    }

    #[test]
    fn warm_up_goodput_is_the_receivers() {
        let w = Duration::from_secs(1);
        // Receive: the controller is the receiver; its intervals after
        // the warm-up (4 x 100 bytes over 4 s) are the figure.
        let g = goodput(&run(Direction::Receive, [900, 100, 100, 100, 100], 1300), w);
        assert!((g - 800.0).abs() < 1e-9, "{g}");
        // Send: the controller wrote 900 bytes in the warm-up and 500
        // after, but the receiver took only 1100: (1100 - 900) over 4 s,
        // not the 500 bytes the sender wrote.
        let g = goodput(&run(Direction::Send, [900, 125, 125, 125, 125], 1100), w);
        assert!((g - 400.0).abs() < 1e-9, "{g}");
        // No warm-up: the receiver's end-of-test figure.
        let g = goodput(
            &run(Direction::Send, [900, 125, 125, 125, 125], 1100),
            Duration::ZERO,
        );
        assert!((g - 1760.0).abs() < 1e-9, "{g}");
    }

    #[test]
    fn figures_count_clean_repetitions_unless_none_is() {
        let clean = rr_repetition(&[&[10]]);
        let mut noisy = clean.clone();
        noisy.noisy = true;
        noisy.aggregate_bps = 1.0;
        let reps = vec![noisy.clone(), clean.clone()];
        let c = counted(&reps);
        assert_eq!(c.len(), 1);
        assert!(!c[0].noisy);
        let all_noisy = vec![noisy.clone(), noisy];
        assert_eq!(counted(&all_noisy).len(), 2);
    }
}
