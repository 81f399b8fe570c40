//! SVG figures of a plan's results (plotters): aggregate goodput against
//! the number of pairs, one series per configuration, with the best TCP
//! goodput the links allow (the study's Figures 1 and 2, send and receive
//! apart); and per point, each host's per-core CPU split into user,
//! system, irq and softirq.

use super::plan::{PlanReport, PointResult};
use crate::spec::Direction;
use crate::{Error, Result};
use plotters::prelude::*;
use std::path::{Path, PathBuf};

fn draw_err(e: impl std::fmt::Display) -> Error {
    Error::Io {
        context: "drawing a figure".into(),
        err: std::io::Error::other(e.to_string()),
    }
}

const COLOURS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(140, 86, 75),
];

/// Write every figure into `dir`; returns the files written.
pub fn write_all(r: &PlanReport, dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    let mut files = Vec::new();
    for d in [Direction::Send, Direction::Receive, Direction::Both] {
        if r.points
            .iter()
            .any(|p| p.direction == d && !p.repetitions.is_empty())
        {
            let f = dir.join(format!("throughput-{d}.svg"));
            throughput(r, d, &f)?;
            files.push(f);
        }
    }
    for p in r.points.iter().filter(|p| !p.repetitions.is_empty()) {
        let f = dir.join(format!(
            "cpu-{}-{}-{}.svg",
            p.configuration, p.direction, p.pairs
        ));
        cpu(p, &f)?;
        files.push(f);
    }
    Ok(files)
}

/// Aggregate goodput (Mb/s) against pairs, a series per configuration.
pub fn throughput(r: &PlanReport, direction: Direction, path: &Path) -> Result<()> {
    let pts: Vec<&PointResult> = r
        .points
        .iter()
        .filter(|p| p.direction == direction && !p.repetitions.is_empty())
        .collect();
    let max_pairs = pts.iter().map(|p| p.pairs).max().unwrap_or(1);
    let top = pts
        .iter()
        .flat_map(|p| {
            [
                p.aggregate.high.unwrap_or(p.aggregate.mean),
                p.best_bps.unwrap_or(0.0),
            ]
        })
        .fold(0.0, f64::max)
        / 1e6
        * 1.15;
    let root = SVGBackend::new(path, (800, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(draw_err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{}: aggregate goodput, {direction}", r.plan),
            ("sans-serif", 22),
        )
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.5f64..max_pairs as f64 + 0.5, 0f64..top.max(1.0))
        .map_err(draw_err)?;
    chart
        .configure_mesh()
        .x_desc("stream pairs (one NIC each)")
        .y_desc("Mb/s")
        .x_labels(max_pairs + 1)
        .x_label_formatter(&|x| {
            if (x.fract()).abs() < 1e-9 {
                format!("{x:.0}")
            } else {
                String::new()
            }
        })
        .draw()
        .map_err(draw_err)?;
    let mut configs: Vec<&str> = pts.iter().map(|p| p.configuration.as_str()).collect();
    configs.dedup();
    // The wire-speed line: the best goodput of the links in use, per point.
    let mut best: Vec<(f64, f64)> = pts
        .iter()
        .filter_map(|p| p.best_bps.map(|b| (p.pairs as f64, b / 1e6)))
        .collect();
    best.sort_by(|a, b| a.0.total_cmp(&b.0));
    best.dedup_by(|a, b| a.0 == b.0);
    if !best.is_empty() {
        chart
            .draw_series(LineSeries::new(
                best,
                RGBColor(170, 170, 170).stroke_width(6),
            ))
            .map_err(draw_err)?
            .label("best TCP goodput (wire speed)")
            .legend(|(x, y)| {
                PathElement::new(
                    vec![(x, y), (x + 20, y)],
                    RGBColor(170, 170, 170).stroke_width(6),
                )
            });
    }
    for (i, c) in configs.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let series: Vec<(f64, f64)> = pts
            .iter()
            .filter(|p| p.configuration == *c)
            .map(|p| (p.pairs as f64, p.aggregate.mean / 1e6))
            .collect();
        chart
            .draw_series(LineSeries::new(series.clone(), colour.stroke_width(2)))
            .map_err(draw_err)?
            .label(*c)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
            });
        chart
            .draw_series(
                series
                    .iter()
                    .map(|&(x, y)| Circle::new((x, y), 4, colour.filled())),
            )
            .map_err(draw_err)?;
        chart
            .draw_series(
                pts.iter()
                    .filter(|p| p.configuration == *c)
                    .filter_map(|p| {
                        let (lo, hi) = (p.aggregate.low?, p.aggregate.high?);
                        Some(ErrorBar::new_vertical(
                            p.pairs as f64,
                            lo / 1e6,
                            p.aggregate.mean / 1e6,
                            hi / 1e6,
                            colour,
                            8,
                        ))
                    }),
            )
            .map_err(draw_err)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(draw_err)?;
    root.present().map_err(draw_err)
}

/// Per-core CPU of every host in the point's middle repetition, stacked.
pub fn cpu(p: &PointResult, path: &Path) -> Result<()> {
    let rep = &p.repetitions[p.repetitions.len() / 2];
    let mut bars: Vec<(String, [f64; 4])> = Vec::new();
    for h in &rep.hosts {
        for c in &h.cpu.per_core {
            let s = &c.share;
            bars.push((
                format!("{} cpu{}", h.name, c.cpu),
                [
                    s.user + s.nice,
                    s.system,
                    s.irq.unwrap_or(0.0),
                    s.softirq.unwrap_or(0.0),
                ],
            ));
        }
    }
    let n = bars.len().max(1);
    let root = SVGBackend::new(path, (120 + 70 * n as u32, 450)).into_drawing_area();
    root.fill(&WHITE).map_err(draw_err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "CPU: {} {} {} pair(s)",
                p.configuration, p.direction, p.pairs
            ),
            ("sans-serif", 18),
        )
        .margin(10)
        .x_label_area_size(60)
        .y_label_area_size(50)
        .build_cartesian_2d(0f64..n as f64, 0f64..100f64)
        .map_err(draw_err)?;
    let labels: Vec<String> = bars.iter().map(|b| b.0.clone()).collect();
    chart
        .configure_mesh()
        .y_desc("% of the core")
        .x_labels(n * 2 + 1)
        .x_label_formatter(&|x| {
            let i = (x - 0.5).round();
            if (x - 0.5 - i).abs() < 1e-6 && i >= 0.0 {
                labels.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .draw()
        .map_err(draw_err)?;
    let parts = [
        ("user", COLOURS[0]),
        ("system", COLOURS[1]),
        ("irq", COLOURS[4]),
        ("softirq", COLOURS[3]),
    ];
    for (k, (name, colour)) in parts.iter().enumerate() {
        let colour = *colour;
        chart
            .draw_series(bars.iter().enumerate().map(|(i, (_, v))| {
                let base: f64 = v[..k].iter().sum();
                Rectangle::new(
                    [(i as f64 + 0.15, base), (i as f64 + 0.85, base + v[k])],
                    colour.filled(),
                )
            }))
            .map_err(draw_err)?
            .label(*name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], colour.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(draw_err)?;
    root.present().map_err(draw_err)
}
