//! Results of a plan: per point (configuration, direction, pair count) the
//! repetitions, each with every pair's full run report and every host's
//! CPU and interrupt figures, the aggregate with its confidence interval,
//! the share of wire speed, and the verdict. Also its table and CSV.

use super::diagnosis::{HostFigures, Verdict};
use super::model::RunReport;
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
    pub agent: String,
    /// Receiver-side goodput after the warm-up.
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

/// One repetition of a point.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Repetition {
    pub aggregate_bps: f64,
    /// Latest minus earliest start over every end of every pair.
    pub start_skew_us: u64,
    pub pairs: Vec<PairResult>,
    pub hosts: Vec<HostFigures>,
    pub verdict: Verdict,
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
    pub repetitions: Vec<Repetition>,
    /// Aggregate goodput over the repetitions.
    pub aggregate: Summary,
    pub link_bps: Option<f64>,
    pub best_bps: Option<f64>,
    pub percent_of_link: Option<f64>,
    pub percent_of_best: Option<f64>,
    pub max_start_skew_us: u64,
    /// The verdict of the repetition closest to the mean.
    pub verdict: Option<Verdict>,
    /// Why the point failed; its repetitions so far are kept.
    pub error: Option<String>,
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
}

fn pct(v: Option<f64>) -> String {
    v.map_or("-".into(), |p| format!("{p:.1}%"))
}

/// The terminal table: a line per point, a line per pair under it.
pub fn table(r: &PlanReport) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<12} {:<8} {:>5} {:>14} {:>9} {:>8} {:>8} {:>9}  verdict",
        "config", "dir", "pairs", "aggregate", "ci", "% link", "% best", "skew"
    );
    for p in &r.points {
        let ci = match (p.aggregate.width_percent(), p.aggregate.samples) {
            (Some(w), _) => format!("±{:.1}%", w / 2.0),
            (None, n) => format!("n={n}"),
        };
        let _ = writeln!(
            s,
            "{:<12} {:<8} {:>5} {:>14} {:>9} {:>8} {:>8} {:>7}us  {}",
            p.configuration,
            p.direction.as_str(),
            p.pairs,
            fmt_bps(p.aggregate.mean),
            ci,
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
        if let Some(rep) = p.repetitions.last() {
            for pr in &rep.pairs {
                let _ = writeln!(
                    s,
                    "    {:<10} {:<10} {:>14} {:>8} of best  {}",
                    pr.pair,
                    pr.agent,
                    fmt_bps(pr.goodput_bps),
                    pct(pr.percent_of_best),
                    paths(&pr.run)
                );
            }
        }
    }
    s
}

/// `controller/agent` data paths of one run (`socket/xdp-copy`).
fn paths(r: &RunReport) -> String {
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
        }
    }
    s
}

/// CSV columns.
pub const CSV_HEADER: &str = "configuration,direction,pairs,repetition,pair,agent,goodput_bps,aggregate_bps,link_bps,best_bps,percent_of_best,start_skew_us,verdict";

/// One row per pair per repetition.
pub fn csv(r: &PlanReport) -> String {
    let mut s = String::from(CSV_HEADER);
    s.push('\n');
    let opt = |v: Option<f64>| v.map_or(String::new(), |x| format!("{x:.0}"));
    for p in &r.points {
        for (i, rep) in p.repetitions.iter().enumerate() {
            for pr in &rep.pairs {
                let _ = writeln!(
                    s,
                    "{},{},{},{},{},{},{:.0},{:.0},{},{},{},{},{}",
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
                    rep.verdict.limit
                );
            }
        }
    }
    s
}
