//! SVG figures of a plan's results (plotters): aggregate goodput against
//! the number of pairs, one series per configuration, with the best TCP
//! goodput the links allow (the study's Figures 1 and 2, send and receive
//! apart); per point, each host's per-core CPU split into user, system,
//! irq and softirq; and for rr points HdrHistogram's percentile plot per
//! configuration and direction.

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
    for d in goodput_directions(r) {
        let f = dir.join(format!("throughput-{d}.svg"));
        throughput(r, d, &f)?;
        files.push(f);
    }
    for (configuration, direction) in latency_figures(r) {
        let f = dir.join(format!("latency-{configuration}-{direction}.svg"));
        latency(r, configuration, direction, &f)?;
        files.push(f);
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

/// Write a figure's SVG text to its file.
fn write(path: &Path, svg: &str) -> Result<()> {
    std::fs::write(path, svg).map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

/// The directions that have a goodput figure: those with a measured
/// stream point.
pub fn goodput_directions(r: &PlanReport) -> Vec<Direction> {
    [Direction::Send, Direction::Receive, Direction::Both]
        .into_iter()
        .filter(|&d| {
            r.points
                .iter()
                .any(|p| p.direction == d && goodput_point(p))
        })
        .collect()
}

/// A measured stream point: rr points have no goodput to draw.
fn goodput_point(p: &PointResult) -> bool {
    !p.repetitions.is_empty() && p.rr.is_none()
}

/// The (configuration, direction) of every latency figure, in plan order.
pub fn latency_figures(r: &PlanReport) -> Vec<(&str, Direction)> {
    let mut v: Vec<(&str, Direction)> = Vec::new();
    for p in r.points.iter().filter(|p| p.rr.is_some()) {
        let k = (p.configuration.as_str(), p.direction);
        if !v.contains(&k) {
            v.push(k);
        }
    }
    v
}

/// The percentile axis runs to 1/(1-q) = 10^k for at least k = 5
/// (99.999%), further when a point has more transactions than that.
fn percentile_axis_end(counts: impl IntoIterator<Item = u64>) -> f64 {
    let most = counts.into_iter().max().unwrap_or(0).max(1) as f64;
    10f64.powf(most.log10().ceil().clamp(5.0, 9.0))
}

/// The label of a percentile axis tick at x = 1/(1-q): "0%" at 1, "90%"
/// at 10, "99.9%" at 1000; no label between the powers of ten.
pub fn percentile_label(x: f64) -> String {
    let k = x.log10();
    if x < 1.0 || (k - k.round()).abs() > 1e-6 {
        return String::new();
    }
    let k = k.round() as usize;
    if k == 0 {
        return "0%".into();
    }
    format!(
        "{:.*}%",
        k.saturating_sub(2),
        100.0 * (1.0 - 10f64.powi(-(k as i32)))
    )
}

/// (x, y) points of a line.
type Curve = Vec<(f64, f64)>;

/// HdrHistogram's percentile plot of one configuration and direction:
/// latency against percentile on a log scale of 1/(1-q), a line per pair
/// count, each from the point's histogram merged over pairs and
/// repetitions.
pub fn latency(
    r: &PlanReport,
    configuration: &str,
    direction: Direction,
    path: &Path,
) -> Result<()> {
    write(path, &latency_svg(r, configuration, direction)?)
}

/// [`latency`]'s figure as SVG text (the HTML report inlines it).
pub fn latency_svg(r: &PlanReport, configuration: &str, direction: Direction) -> Result<String> {
    use crate::metrics::latency as lat;
    // (pairs, curve at x = 1/(1-q), transactions)
    let mut series: Vec<(usize, Curve, u64)> = Vec::new();
    for p in &r.points {
        let Some(rr) = p.rr.as_ref() else { continue };
        if p.configuration != configuration || p.direction != direction {
            continue;
        }
        let h = lat::decode(&rr.histogram)?;
        let pts = lat::curve(&h)
            .into_iter()
            .map(|(q, us)| (1.0 / (1.0 - q), us))
            .collect();
        series.push((p.pairs, pts, h.len()));
    }
    let x_end = percentile_axis_end(series.iter().map(|s| s.2));
    let top = series
        .iter()
        .flat_map(|s| s.1.iter().map(|p| p.1))
        .fold(0.0, f64::max)
        * 1.1;
    let mut svg = String::new();
    let root = SVGBackend::with_string(&mut svg, (800, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(draw_err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "{}: latency by percentile, {configuration} {direction}",
                r.plan
            ),
            ("sans-serif", 22),
        )
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d((1f64..x_end).log_scale(), 0f64..top.max(1.0))
        .map_err(draw_err)?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency (us)")
        .x_label_formatter(&|x| percentile_label(*x))
        .draw()
        .map_err(draw_err)?;
    for (i, (pairs, pts, _)) in series.into_iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        chart
            .draw_series(LineSeries::new(pts, colour.stroke_width(2)))
            .map_err(draw_err)?
            .label(format!("{pairs} pair(s)"))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(draw_err)?;
    root.present().map_err(draw_err)?;
    // The figure borrows the text until it is dropped.
    drop(chart);
    drop(root);
    Ok(svg)
}

/// Aggregate goodput (Mb/s) against pairs, a series per configuration.
pub fn throughput(r: &PlanReport, direction: Direction, path: &Path) -> Result<()> {
    write(path, &throughput_svg(r, direction)?)
}

/// [`throughput`]'s figure as SVG text.
pub fn throughput_svg(r: &PlanReport, direction: Direction) -> Result<String> {
    let pts: Vec<&PointResult> = r
        .points
        .iter()
        .filter(|p| p.direction == direction && goodput_point(p))
        .collect();
    let max_pairs = pts.iter().map(|p| p.pairs).max().unwrap_or(1);
    let top = pts
        .iter()
        .flat_map(|p| {
            [
                p.aggregate.high.unwrap_or(p.aggregate.median),
                p.best_bps.unwrap_or(0.0),
            ]
        })
        .fold(0.0, f64::max)
        / 1e6
        * 1.15;
    let mut svg = String::new();
    let root = SVGBackend::with_string(&mut svg, (800, 500)).into_drawing_area();
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
        let series: Vec<(f64, f64, bool)> = pts
            .iter()
            .filter(|p| p.configuration == *c)
            .map(|p| (p.pairs as f64, p.aggregate.median / 1e6, p.noisy))
            .collect();
        let line: Vec<(f64, f64)> = series.iter().map(|&(x, y, _)| (x, y)).collect();
        chart
            .draw_series(LineSeries::new(line, colour.stroke_width(2)))
            .map_err(draw_err)?
            .label(*c)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
            });
        // A point measured only on a noisy host is hollow.
        chart
            .draw_series(series.iter().map(|&(x, y, noisy)| {
                let style = if noisy {
                    colour.stroke_width(2)
                } else {
                    colour.filled()
                };
                Circle::new((x, y), 5, style)
            }))
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
                            p.aggregate.median / 1e6,
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
    root.present().map_err(draw_err)?;
    // The figure borrows the text until it is dropped.
    drop(chart);
    drop(root);
    Ok(svg)
}

/// Per-core CPU of every host in the point's middle repetition, stacked.
pub fn cpu(p: &PointResult, path: &Path) -> Result<()> {
    write(path, &cpu_svg(p)?)
}

/// [`cpu`]'s figure as SVG text.
pub fn cpu_svg(p: &PointResult) -> Result<String> {
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
    let mut svg = String::new();
    let root = SVGBackend::with_string(&mut svg, (120 + 70 * n as u32, 450)).into_drawing_area();
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
    root.present().map_err(draw_err)?;
    // The figure borrows the text until it is dropped.
    drop(chart);
    drop(root);
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::plan::fixture::*;

    #[test]
    fn percentile_labels_at_the_powers_of_ten() {
        let at = |x: f64| percentile_label(x);
        assert_eq!(at(1.0), "0%");
        assert_eq!(at(10.0), "90%");
        assert_eq!(at(100.0), "99%");
        assert_eq!(at(1000.0), "99.9%");
        assert_eq!(at(1e4), "99.99%");
        assert_eq!(at(1e5), "99.999%");
        assert_eq!(at(20.0), "");
        assert_eq!(at(0.5), "");
        assert_eq!(percentile_axis_end([10]), 1e5);
        assert_eq!(percentile_axis_end([300_000, 5]), 1e6);
    }

    #[test]
    fn rr_points_draw_a_percentile_figure_and_no_goodput_one() {
        let dir = std::env::temp_dir().join(format!("ws-plot-rr-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let slow: Vec<u64> = (1..=2000).collect();
        let fast: Vec<u64> = (1..=2000).map(|x| x / 2 + 1).collect();
        let r = report(vec![
            rr_point("lat", vec![rr_repetition(&[&slow])]),
            rr_point("lat", vec![rr_repetition(&[&slow, &fast])]),
        ]);
        let files = write_all(&r, &dir).unwrap();
        let names: Vec<String> = files
            .iter()
            .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert!(
            names.contains(&"latency-lat-send.svg".to_string()),
            "{names:?}"
        );
        assert!(
            !names.iter().any(|n| n.starts_with("throughput-")),
            "rr points have no goodput: {names:?}"
        );
        let svg = std::fs::read_to_string(dir.join("latency-lat-send.svg")).unwrap();
        for t in [
            "percentile",
            "latency (us)",
            "1 pair(s)",
            "2 pair(s)",
            "90%",
            "99.9%",
            "99.999%",
        ] {
            assert!(svg.contains(t), "no {t:?} in the figure");
        }
        // Curves, not axes and ticks (plotters draws those as polylines too).
        let curves = svg
            .split("<polyline")
            .skip(1)
            .filter(|el| {
                el.split("points=\"")
                    .nth(1)
                    .and_then(|p| p.split('"').next())
                    .is_some_and(|p| p.split_whitespace().count() > 10)
            })
            .count();
        assert_eq!(curves, 2, "one curve per pair count");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
