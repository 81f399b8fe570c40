//! Results of a plan: per point (configuration, direction, pair count) the
//! repetitions, each with every pair's full run report and every host's
//! CPU and interrupt figures, the aggregate with its confidence interval,
//! the share of wire speed, and the verdict. Also its table and CSV.
//! rr points carry transactions per second and merged latency
//! percentiles instead of goodput and shares of wire speed.

use super::diagnosis::{HostFigures, Noise, Verdict};
use super::model::{RrSummary, RunReport};
use super::text::{fmt_us, percentile_line};
use crate::control::start::LateStart;
use crate::metrics::latency::Percentiles;
use crate::plan::stats::Summary;
use crate::spec::Direction;
use crate::units::fmt_bps;
use serde::{Deserialize, Serialize};
use std::fmt::Write;

/// Identifies the JSON document's shape.
pub const PLAN_SCHEMA: &str = "wirespeed.plan/1";

/// One pair's part in one repetition.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PairResult {
    pub pair: String,
    /// The server agent.
    pub agent: String,
    /// The client end: "controller", or the agent of a third-party pair.
    #[serde(default = "controller")]
    pub client: String,
    /// Receiver-side goodput after the warm-up; 0 for rr pairs, whose
    /// figures are in `run.end.latency`.
    pub goodput_bps: f64,
    pub link_bps: Option<f64>,
    pub best_bps: Option<f64>,
    pub percent_of_link: Option<f64>,
    pub percent_of_best: Option<f64>,
    /// Start of this pair's two ends relative to the earliest start of the
    /// repetition (controller clock).
    pub start_offset_us: (u64, u64),
    pub run: RunReport,
}

fn controller() -> String {
    "controller".into()
}

impl PairResult {
    /// The pair's two ends for the table: `agent`, or `client>server`.
    pub fn ends(&self) -> String {
        match self.client.as_str() {
            "controller" => self.agent.clone(),
            c => format!("{c}>{}", self.agent),
        }
    }
}

/// One repetition of a point.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Repetition {
    /// The sum of the pairs' goodput (0 for rr points).
    pub aggregate_bps: f64,
    /// Latest minus earliest start over every end of every pair.
    pub start_skew_us: u64,
    /// Set when that skew reached 1 ms (or the plan's lower
    /// `max_start_skew`): the end that started last and why.
    #[serde(default)]
    pub late: Option<LateStart>,
    pub pairs: Vec<PairResult>,
    pub hosts: Vec<HostFigures>,
    pub verdict: Verdict,
    /// rr points: every pair's transactions and histograms together.
    #[serde(default)]
    pub rr: Option<RrSummary>,
    /// The most steal and co-tenant CPU any core of the test saw.
    #[serde(default)]
    pub noise: Noise,
    /// That reached the plan's `noise_threshold`.
    #[serde(default)]
    pub noisy: bool,
    /// How long the control plane took to get every pair going.
    #[serde(default)]
    pub control: Option<ControlTimes>,
}

/// The control plane's share of a repetition, in milliseconds: every pair
/// prepared (connected, ordered, data connections open), every agent's
/// clock matched, and the lead from then to the common start instant.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ControlTimes {
    pub prepare_ms: f64,
    pub clock_ms: f64,
    pub start_lead_ms: f64,
}

impl Repetition {
    /// The figure repetitions are compared by: transactions per second
    /// for rr, goodput otherwise.
    pub fn figure(&self) -> f64 {
        self.rr
            .as_ref()
            .map_or(self.aggregate_bps, |r| r.transactions_per_second)
    }
}

/// An rr point over all its repetitions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RrPoint {
    /// Transactions per second (the sum over the pairs) over the
    /// repetitions, with its confidence interval.
    pub transactions_per_second: Summary,
    /// Every repetition's transactions, as the clients and the servers
    /// counted them.
    pub client_transactions: u64,
    pub server_transactions: u64,
    /// Percentiles of every transaction of every pair and repetition: the
    /// histograms merged, not the percentiles averaged.
    pub latency: Percentiles,
    /// That merged HdrHistogram of nanoseconds (V2 deflate, base64).
    pub histogram: String,
}

impl RrPoint {
    /// The point from its repetitions (None unless they are rr).
    pub fn of(reps: &[Repetition], confidence: u32) -> Option<RrPoint> {
        let all = RrSummary::combine_named(
            reps.iter()
                .enumerate()
                .filter_map(|(i, r)| Some((format!("repetition {}", i + 1), r.rr.as_ref()?))),
        )?;
        let tps: Vec<f64> = reps.iter().map(Repetition::figure).collect();
        Some(RrPoint {
            transactions_per_second: Summary::of(&tps, confidence),
            client_transactions: all.client_transactions,
            server_transactions: all.server_transactions,
            latency: all.latency,
            histogram: all.histogram,
        })
    }
}

/// One sweep point.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PointResult {
    pub configuration: String,
    pub direction: Direction,
    pub pairs: usize,
    /// The controller's and the agents' data paths, as the first pair ran them.
    pub mode: Option<String>,
    #[serde(default)]
    pub remote_mode: Option<String>,
    /// How the first pair's TCP-lite workers waited for work (`busy` or
    /// `event`), the controller's and the agent's; None for an end on
    /// kernel sockets.
    #[serde(default)]
    pub poll_mode: Option<String>,
    #[serde(default)]
    pub remote_poll_mode: Option<String>,
    pub repetitions: Vec<Repetition>,
    /// Aggregate goodput over the repetitions.
    pub aggregate: Summary,
    pub link_bps: Option<f64>,
    pub best_bps: Option<f64>,
    pub percent_of_link: Option<f64>,
    pub percent_of_best: Option<f64>,
    pub max_start_skew_us: u64,
    /// Repetitions run again for starting further apart than the plan's
    /// `max_start_skew` (not in `repetitions` or the figures).
    #[serde(default)]
    pub retried_for_skew: Vec<LateStart>,
    /// Noisy repetitions measured again (not in `repetitions` or the
    /// figures), kept whole.
    #[serde(default)]
    pub noisy_repetitions: Vec<Repetition>,
    /// The point's figures come from noisy repetitions: none was clean
    /// within `max_noisy_retries`.
    #[serde(default)]
    pub noisy: bool,
    /// The verdict of the repetition closest to the mean.
    pub verdict: Option<Verdict>,
    /// Why the point failed; its repetitions so far are kept.
    pub error: Option<String>,
    /// rr points: transactions per second and latency; None for streams.
    #[serde(default)]
    pub rr: Option<RrPoint>,
}

/// The whole `wirespeed plan --json` document.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlanReport {
    pub schema: String,
    pub plan: String,
    pub started_unix: f64,
    /// True when the run was stopped early (Ctrl-C): the points are those
    /// measured before.
    pub interrupted: bool,
    pub points: Vec<PointResult>,
    /// The plan's `noise_threshold`: steal or co-tenant percent of a core
    /// that made a repetition noisy.
    #[serde(default)]
    pub noise_threshold: f64,
}

/// A repetition's noise as words: `steal 38.6%, co-tenants 3.0%`.
pub fn noise_words(n: &Noise) -> String {
    let p = |v: Option<f64>| v.map_or("-".into(), |x| format!("{x:.1}%"));
    format!(
        "steal {}, co-tenants {}",
        p(n.steal_percent),
        p(n.co_tenant_percent)
    )
}

/// Whether the host was quiet enough to trust the results: one line for
/// the end of `plan` and `demo`.
pub fn quiet(r: &PlanReport) -> String {
    let all = || {
        r.points
            .iter()
            .flat_map(|p| p.repetitions.iter().chain(&p.noisy_repetitions))
    };
    let worst = |f: fn(&Noise) -> Option<f64>| {
        all()
            .filter_map(|x| f(&x.noise))
            .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))))
    };
    let worst = Noise {
        steal_percent: worst(|n| n.steal_percent),
        co_tenant_percent: worst(|n| n.co_tenant_percent),
    };
    let remeasured = r
        .points
        .iter()
        .filter(|p| !p.noisy_repetitions.is_empty())
        .count();
    let noisy = r.points.iter().filter(|p| p.noisy).count();
    let some_noisy = r
        .points
        .iter()
        .filter(|p| p.repetitions.iter().any(|x| x.noisy))
        .count();
    let n = r.points.len();
    let t = r.noise_threshold;
    if noisy > 0 {
        format!("host: NOT quiet enough to trust: {noisy} of {n} point(s) measured only while steal or co-tenant CPU was over {t}% (marked *); worst {}; run again on a quiet host", noise_words(&worst))
    } else if remeasured > 0 || some_noisy > 0 {
        format!("host: noisy at times, results usable: {} of {n} point(s) had noisy repetitions (over {t}%), measured again or left out of the figures; worst {}", remeasured.max(some_noisy), noise_words(&worst))
    } else if worst.steal_percent.is_none() && worst.co_tenant_percent.is_none() {
        "host: quietness unknown (no steal or co-tenant figures were read)".into()
    } else {
        format!("host: quiet enough to trust: no repetition saw steal or co-tenant CPU over {t}% (worst {})", noise_words(&worst))
    }
}

pub(crate) fn pct(v: Option<f64>) -> String {
    v.map_or("-".into(), |p| format!("{p:.1}%"))
}

/// A summary's interval as ±percent of its mean, or its sample count.
pub(crate) fn ci(a: &Summary) -> String {
    match (a.width_percent(), a.samples) {
        (Some(w), _) => format!("±{:.1}%", w / 2.0),
        (None, n) => format!("n={n}"),
    }
}

/// Transactions per second, whole: rates of thousands are the norm.
pub(crate) fn fmt_tps(t: f64) -> String {
    format!("{t:.0} tr/s")
}

/// The terminal table: a line per point, a line per pair under it. An rr
/// point shows transactions per second where a stream point shows
/// goodput, no share of wire speed (a latency test has none), and its
/// merged percentiles on a line of their own.
pub fn table(r: &PlanReport) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<12} {:<8} {:>5} {:>14} {:>9} {:>8} {:>8} {:>9}  verdict",
        "config", "dir", "pairs", "aggregate", "ci", "% link", "% best", "skew"
    );
    for p in &r.points {
        let (aggregate, interval) = match &p.rr {
            Some(rr) => (
                fmt_tps(rr.transactions_per_second.mean),
                ci(&rr.transactions_per_second),
            ),
            None => (fmt_bps(p.aggregate.median), ci(&p.aggregate)),
        };
        // A point measured only while the host was noisy is marked `*`.
        let aggregate = if p.noisy {
            format!("{aggregate}*")
        } else {
            aggregate
        };
        // A late start is marked `!` and explained under the point.
        let late: Vec<&LateStart> = p
            .repetitions
            .iter()
            .filter_map(|r| r.late.as_ref())
            .collect();
        let mark = if late.is_empty() { ' ' } else { '!' };
        let _ = writeln!(
            s,
            "{:<12} {:<8} {:>5} {:>14} {:>9} {:>8} {:>8} {:>7}us{mark} {}",
            p.configuration,
            p.direction.as_str(),
            p.pairs,
            aggregate,
            interval,
            pct(p.percent_of_link),
            pct(p.percent_of_best),
            p.max_start_skew_us,
            p.verdict
                .as_ref()
                .map_or("-".into(), |v| format!("{} ({})", v.limit, v.confidence)),
        );
        if let Some(e) = &p.error {
            let _ = writeln!(s, "    error: {e}");
        }
        for l in late {
            let _ = writeln!(
                s,
                "    late start: {} us apart, {} last: {}",
                l.skew_us, l.end, l.cause
            );
        }
        for x in p
            .noisy_repetitions
            .iter()
            .chain(p.repetitions.iter().filter(|x| x.noisy))
        {
            let _ = writeln!(
                s,
                "    noisy: {} ({}), {}",
                noise_words(&x.noise),
                fmt_bps(x.aggregate_bps),
                match (p.repetitions.iter().any(|y| std::ptr::eq(x, y)), p.noisy) {
                    (false, _) => "measured again",
                    (true, true) => "counted: no clean repetition within max_noisy_retries",
                    (true, false) => "left out of the figures",
                }
            );
        }
        for l in &p.retried_for_skew {
            let _ = writeln!(
                s,
                "    run again: {} us apart (over max_start_skew), {} last: {}",
                l.skew_us, l.end, l.cause
            );
        }
        if let Some(rr) = &p.rr {
            let _ = writeln!(s, "    latency    {}", percentile_line(&rr.latency));
        }
        if let Some(rep) = p.repetitions.last() {
            for pr in &rep.pairs {
                let _ = match &pr.run.end.latency {
                    Some(l) => writeln!(
                        s,
                        "    {:<10} {:<10} {:>14}   p50 {} p99 {} max {}  {}",
                        pr.pair,
                        pr.ends(),
                        fmt_tps(l.transactions_per_second),
                        fmt_us(l.latency.p50_us),
                        fmt_us(l.latency.p99_us),
                        fmt_us(l.latency.max_us),
                        paths(&pr.run)
                    ),
                    None => writeln!(
                        s,
                        "    {:<10} {:<10} {:>14} {:>8} of best  {}",
                        pr.pair,
                        pr.ends(),
                        fmt_bps(pr.goodput_bps),
                        pct(pr.percent_of_best),
                        paths(&pr.run)
                    ),
                };
            }
        }
    }
    s
}

/// `controller/agent` data paths of one run (`socket/xdp-copy`).
pub(crate) fn paths(r: &RunReport) -> String {
    match r.config.remote_mode.as_str() {
        "" => r.end.mode.clone(),
        agent => format!("{}/{agent}", r.end.mode),
    }
}

/// Verdict lines, one per point that has one.
pub fn verdicts(r: &PlanReport) -> String {
    let mut s = String::new();
    for p in &r.points {
        if let Some(v) = &p.verdict {
            let _ = writeln!(
                s,
                "{} {} {} pair(s): {} [{} confidence] try: {}",
                p.configuration,
                p.direction.as_str(),
                p.pairs,
                v.message,
                v.confidence,
                v.advice
            );
            for n in &v.notes {
                let _ = writeln!(s, "    note: {n}");
            }
            if !v.lacking.is_empty() {
                let _ = writeln!(s, "    without: {}", v.lacking.join("; "));
            }
        }
    }
    s
}

/// CSV columns.
pub const CSV_HEADER: &str = "configuration,direction,pairs,repetition,pair,agent,goodput_bps,aggregate_bps,link_bps,best_bps,percent_of_best,start_skew_us,verdict,client,noisy";

/// Columns added when the results hold rr points: the pair's
/// transactions and percentiles, and its repetition's transactions per
/// second; empty on stream rows.
pub const CSV_RR_HEADER: &str = ",transactions_per_second,aggregate_transactions_per_second,client_transactions,server_transactions,p50_us,p90_us,p99_us,p999_us,p9999_us,max_us";

/// One row per pair per repetition; the rr columns only when there are
/// rr points, so stream results keep their columns.
pub fn csv(r: &PlanReport) -> String {
    let with_rr = r.points.iter().any(|p| p.rr.is_some());
    let mut s = String::from(CSV_HEADER);
    if with_rr {
        s.push_str(CSV_RR_HEADER);
    }
    s.push('\n');
    let opt = |v: Option<f64>| v.map_or(String::new(), |x| format!("{x:.0}"));
    for p in &r.points {
        for (i, rep) in p.repetitions.iter().enumerate() {
            for pr in &rep.pairs {
                let _ = write!(
                    s,
                    "{},{},{},{},{},{},{:.0},{:.0},{},{},{},{},{},{},{}",
                    p.configuration,
                    p.direction.as_str(),
                    p.pairs,
                    i + 1,
                    pr.pair,
                    pr.agent,
                    pr.goodput_bps,
                    rep.aggregate_bps,
                    opt(pr.link_bps),
                    opt(pr.best_bps),
                    pr.percent_of_best
                        .map_or(String::new(), |x| format!("{x:.2}")),
                    rep.start_skew_us,
                    rep.verdict.limit,
                    pr.client,
                    rep.noisy
                );
                if with_rr {
                    s.push_str(&csv_rr(rep, pr.run.end.latency.as_ref()));
                }
                s.push('\n');
            }
        }
    }
    s
}

/// The rr columns of one pair's row (empty fields for a stream pair).
fn csv_rr(rep: &Repetition, pair: Option<&RrSummary>) -> String {
    let (Some(l), Some(all)) = (pair, &rep.rr) else {
        return ",".repeat(CSV_RR_HEADER.matches(',').count());
    };
    let p = &l.latency;
    format!(
        ",{:.1},{:.1},{},{},{:.3},{:.3},{:.3},{:.3},{:.3},{:.3}",
        l.transactions_per_second,
        all.transactions_per_second,
        l.client_transactions,
        l.server_transactions,
        p.p50_us,
        p.p90_us,
        p.p99_us,
        p.p999_us,
        p.p9999_us,
        p.max_us
    )
}

/// Plan results made up in memory, for the tests of the table, the CSV and
/// the figures.
#[cfg(test)]
pub(crate) mod fixture {
    use super::*;
    use crate::metrics::latency;
    use crate::report::model::{
        End, FlowResult, Role, RrStats, SideReport, SockBufs, Throughput, Timing,
    };
    use crate::spec::{Limit, TestKind, TestSpec};

    fn flow(role: Role, rr: RrStats) -> FlowResult {
        FlowResult {
            stream: 0,
            direction: Direction::Send,
            role,
            throughput: Throughput::new(100, 1.0),
            sockbuf: SockBufs::default(),
            tcp: None,
            error: None,
            raw: None,
            rr: Some(rr),
            sha256: None,
        }
    }

    /// One pair's rr run whose client saw these latencies (microseconds)
    /// in one second.
    pub fn rr_run(us: &[u64]) -> RunReport {
        let mut h = latency::new_histogram();
        for &u in us {
            latency::record(&mut h, u * 1000);
        }
        let n = us.len() as u64;
        let client = RrStats {
            transactions: n,
            transactions_per_second: n as f64,
            latency: Some(latency::percentiles(&h)),
            histogram: Some(latency::encode(&h)),
        };
        let server = RrStats {
            transactions: n,
            ..Default::default()
        };
        let side = |f| SideReport {
            flows: vec![f],
            ..Default::default()
        };
        let end = End::merge(
            "socket",
            side(flow(Role::Sender, client)),
            side(flow(Role::Receiver, server)),
            Timing::default(),
        );
        RunReport {
            schema: crate::report::model::SCHEMA.into(),
            config: crate::report::model::RunConfig {
                to: "198.18.1.2:5290".into(),
                from: None,
                agent_data_port: 7001,
                mode: "socket".into(),
                mode_reason: "test".into(),
                remote_mode: "socket".into(),
                remote_mode_reason: "test".into(),
                test: TestSpec {
                    direction: Direction::Send,
                    limit: Limit::Duration { seconds: 1.0 },
                    msg_size: 8192,
                    sockbuf: None,
                    streams: 1,
                    remote_iface: None,
                    data_port: None,
                    raw: None,
                    test: TestKind::Rr {
                        request: 1,
                        response: 1,
                        burst: 1,
                    },
                    remote_mode: crate::spec::Mode::Socket,
                    peer_xdp: false,
                    remote_workers: Default::default(),
                    remote_xdp_bind: Default::default(),
                    sender_tcp_ms: None,
                    verify: false,
                },
                local: None,
                iface: None,
                started_unix: 0.0,
            },
            intervals: Vec::new(),
            end,
        }
    }

    /// A repetition of rr pairs, each with its latencies, as the runner
    /// assembles it.
    pub fn rr_repetition(pairs: &[&[u64]]) -> Repetition {
        let pairs: Vec<PairResult> = pairs
            .iter()
            .enumerate()
            .map(|(i, us)| PairResult {
                pair: format!("pair{}", i + 1),
                agent: format!("a{i}"),
                client: controller(),
                goodput_bps: 0.0,
                link_bps: Some(1e9),
                best_bps: None,
                percent_of_link: None,
                percent_of_best: None,
                start_offset_us: (0, 0),
                run: rr_run(us),
            })
            .collect();
        let rr = RrSummary::combine(pairs.iter().filter_map(|p| p.run.end.latency.as_ref()));
        Repetition {
            control: None,
            aggregate_bps: 0.0,
            start_skew_us: 12,
            late: None,
            verdict: crate::report::diagnosis::diagnose_latency(&[], &rr.as_ref().unwrap().latency),
            pairs,
            hosts: Vec::new(),
            rr,
            noise: Noise::default(),
            noisy: false,
        }
    }

    /// An rr point of these repetitions, as the runner completes it.
    pub fn rr_point(configuration: &str, reps: Vec<Repetition>) -> PointResult {
        let rr = RrPoint::of(&reps, 99);
        PointResult {
            configuration: configuration.into(),
            direction: Direction::Send,
            pairs: reps[0].pairs.len(),
            mode: Some("socket".into()),
            remote_mode: Some("socket".into()),
            poll_mode: None,
            remote_poll_mode: None,
            aggregate: Summary::of(&vec![0.0; reps.len()], 99),
            link_bps: Some(1e9),
            best_bps: None,
            percent_of_link: None,
            percent_of_best: None,
            max_start_skew_us: 12,
            retried_for_skew: Vec::new(),
            noisy_repetitions: Vec::new(),
            noisy: false,
            verdict: Some(reps[0].verdict.clone()),
            repetitions: reps,
            error: None,
            rr,
        }
    }

    pub fn report(points: Vec<PointResult>) -> PlanReport {
        PlanReport {
            schema: PLAN_SCHEMA.into(),
            plan: "latency".into(),
            started_unix: 0.0,
            interrupted: false,
            points,
            noise_threshold: 10.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixture::*;
    use super::*;

    #[test]
    fn rr_point_merges_histograms_not_percentiles() {
        // pair 1: 99 fast transactions; pair 2: one slow one. Averaging
        // the pairs' p99s would give ~5 ms; the merged p99 is fast.
        let fast: Vec<u64> = vec![10; 99];
        let rep = rr_repetition(&[&fast, &[10_000]]);
        let all = rep.rr.as_ref().unwrap();
        assert_eq!(
            (all.client_transactions, all.server_transactions),
            (100, 100)
        );
        assert_eq!(all.transactions_per_second, 100.0, "pairs add up");
        assert!(all.latency.p99_us < 11.0, "{:?}", all.latency);
        assert!((all.latency.max_us - 10_000.0).abs() < 10.0);
        assert_eq!(rep.figure(), 100.0);
        let p = rr_point(
            "lat",
            vec![rep.clone(), rr_repetition(&[&fast[..49], &[20]])],
        );
        let rr = p.rr.as_ref().unwrap();
        assert_eq!(rr.client_transactions, 150);
        assert_eq!(rr.latency.count, 150, "every repetition's transactions");
        assert_eq!(rr.transactions_per_second.samples, 2);
        assert_eq!(
            rr.transactions_per_second.mean, 75.0,
            "a mean over repetitions"
        );
        let l = &rr.latency;
        assert!(l.p50_us <= l.p90_us && l.p90_us <= l.p99_us && l.p99_us <= l.max_us);
    }

    #[test]
    fn rr_table_shows_transactions_and_latency_not_wire_speed() {
        let fast: Vec<u64> = vec![30; 50];
        let r = report(vec![rr_point("lat", vec![rr_repetition(&[&fast, &fast])])]);
        let t = table(&r);
        let row = t.lines().nth(1).unwrap();
        assert!(row.starts_with("lat") && row.contains("100 tr/s"), "{t}");
        assert!(
            row.contains(" - ") && !row.contains('%'),
            "no share of wire speed: {t}"
        );
        assert!(row.contains("none-visible (low)"), "{t}");
        assert!(
            t.contains("latency    p50 30.0 us p90 30.0 us p99 30.0 us p99.9"),
            "{t}"
        );
        assert!(
            t.contains("pair2") && t.contains("50 tr/s   p50 30.0 us"),
            "{t}"
        );
        let v = verdicts(&r);
        assert!(v.contains("median") && v.contains("30.0 us"), "{v}");
        // a stream-only report keeps its columns; rr rows add theirs
        let c = csv(&r);
        let mut lines = c.lines();
        assert_eq!(
            lines.next().unwrap(),
            format!("{CSV_HEADER}{CSV_RR_HEADER}")
        );
        let row: Vec<&str> = lines.next().unwrap().split(',').collect();
        let cols = (CSV_HEADER.to_string() + CSV_RR_HEADER).split(',').count();
        assert_eq!(row.len(), cols, "{c}");
        assert_eq!(row[13], "controller", "{c}");
        assert_eq!(row[14], "false", "not noisy: {c}");
        assert_eq!(&row[15..19], &["50.0", "100.0", "50", "50"], "{c}");
        let p50: f64 = row[19].parse().unwrap();
        assert!((p50 - 30.0).abs() < 0.05, "HdrHistogram's 3 digits: {p50}");
        assert_eq!(csv(&report(Vec::new())), format!("{CSV_HEADER}\n"));
        // the saved document reads back (wirespeed report)
        let back: PlanReport = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back, r);
        assert_eq!(table(&back), t);
        // no steal or co-tenant figures were read for these made-up runs
        assert!(
            quiet(&r).starts_with("host: quietness unknown"),
            "{}",
            quiet(&r)
        );
    }

    #[test]
    fn late_starts_and_verdict_notes_are_shown() {
        let fast: Vec<u64> = vec![30; 10];
        let late = |skew_us| LateStart {
            skew_us,
            end: "nic3 controller".into(),
            cause: "nic3 controller woke 5.4 ms late, 5.0 ms of it waiting for a CPU".into(),
        };
        let mut rep = rr_repetition(&[&fast]);
        rep.start_skew_us = 5410;
        rep.late = Some(late(5410));
        rep.verdict.notes = vec!["CPU1 on controller at 81% — little headroom left".into()];
        rep.verdict.lacking = vec!["vm1's CPU figures (unavailable: denied)".into()];
        let mut p = rr_point("lat", vec![rep]);
        p.max_start_skew_us = 5410;
        p.retried_for_skew = vec![late(7000)];
        let r = report(vec![p]);
        let t = table(&r);
        assert!(
            t.lines().nth(1).unwrap().contains(" 5410us! none-visible"),
            "{t}"
        );
        assert!(
            t.contains("    late start: 5410 us apart, nic3 controller last: nic3 controller woke 5.4 ms late"),
            "{t}"
        );
        assert!(
            t.contains("    run again: 7000 us apart (over max_start_skew)"),
            "{t}"
        );
        let v = verdicts(&r);
        assert!(
            v.contains("    note: CPU1 on controller at 81% — little headroom left"),
            "{v}"
        );
        assert!(v.contains("    without: vm1's CPU figures"), "{v}");
        let j = serde_json::to_value(&r).unwrap();
        assert_eq!(j["points"][0]["repetitions"][0]["late"]["skew_us"], 5410);
        assert_eq!(j["points"][0]["retried_for_skew"][0]["skew_us"], 7000);
        // an on-time point keeps the old layout
        let on_time = table(&report(vec![rr_point(
            "lat",
            vec![rr_repetition(&[&fast])],
        )]));
        assert!(on_time.contains("     12us  none-visible"), "{on_time}");
    }

    /// A point re-measured once for 38 % steal, then clean; another
    /// whose every repetition was noisy: `*`, the noisy lines, the CSV
    /// flag and the closing word on the host.
    #[test]
    fn noisy_points_are_marked_and_the_host_judged() {
        let noise = |steal| Noise {
            steal_percent: Some(steal),
            co_tenant_percent: Some(1.0),
        };
        let mut clean = rr_repetition(&[&[10]]);
        clean.noise = noise(0.5);
        let mut dirty = clean.clone();
        dirty.noise = noise(38.6);
        dirty.noisy = true;
        let mut remeasured = rr_point("again", vec![clean.clone()]);
        remeasured.noisy_repetitions = vec![dirty.clone()];
        let r = report(vec![remeasured.clone()]);
        let t = table(&r);
        assert!(
            t.contains("noisy: steal 38.6%, co-tenants 1.0%") && t.contains("measured again"),
            "{t}"
        );
        assert!(!t.contains('*'), "{t}");
        assert!(
            quiet(&r).starts_with("host: noisy at times, results usable: 1 of 1"),
            "{}",
            quiet(&r)
        );
        let mut stuck = rr_point("stuck", vec![dirty.clone()]);
        stuck.noisy = true;
        let r = report(vec![remeasured, stuck]);
        let t = table(&r);
        assert!(t.contains("tr/s*"), "{t}");
        assert!(
            t.contains("counted: no clean repetition within max_noisy_retries"),
            "{t}"
        );
        let q = quiet(&r);
        assert!(
            q.starts_with("host: NOT quiet enough to trust: 1 of 2"),
            "{q}"
        );
        assert!(q.contains("worst steal 38.6%"), "{q}");
        assert!(
            csv(&r).lines().last().unwrap().contains(",true,"),
            "{}",
            csv(&r)
        );
        let mut all_clean = report(vec![rr_point("quiet", vec![clean])]);
        all_clean.noise_threshold = 10.0;
        assert!(
            quiet(&all_clean).starts_with("host: quiet enough to trust"),
            "{}",
            quiet(&all_clean)
        );
    }
}
