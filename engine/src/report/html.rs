//! A plan's results as one self-contained HTML page (`report --html`): the
//! study table, the verdicts, the figures as inline SVG, each point's
//! pairs folded in `<details>`, and the facts of the machines and the run.
//! No script, no external style, font or image: the page reads the same
//! offline, mailed, or years later. Every text from the results is escaped.

use super::diagnosis::Verdict;
use super::plan::{ci, fmt_tps, paths, pct, PlanReport, PointResult, Repetition};
use super::plot;
use super::text::{fmt_us, percentile_line};
use crate::report::model::HostInfo;
use crate::units::fmt_bps;
use crate::Result;
use std::fmt::Write;

/// A host's steal time at or above this share of its CPU makes a point
/// noisy: the hypervisor took that much from the measurement.
const NOISY_STEAL: f64 = 5.0;

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em auto;max-width:70em;\
color:#222;line-height:1.4}h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;margin-top:2em}\
table{border-collapse:collapse;margin:.5em 0}th,td{border:1px solid #ddd;padding:.2em .6em;\
text-align:left;vertical-align:top}td.n{text-align:right;font-variant-numeric:tabular-nums}\
th{background:#f3f3f3}tr.error td{color:#a00}figure{margin:1em 0}figure svg{max-width:100%;\
height:auto;border:1px solid #eee}details{margin:.4em 0;padding:.3em .6em;border:1px solid #ddd}\
summary{cursor:pointer;font-weight:600}.muted{color:#666}.warn{color:#a00}";

/// Escape text for HTML element content and attribute values.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// The whole page.
pub fn render(r: &PlanReport) -> Result<String> {
    let mut s = String::new();
    let _ = write!(
        s,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\">\
         <title>wirespeed: {plan}</title><style>{STYLE}</style></head><body>\n\
         <h1>wirespeed: {plan}</h1>\n<p class=\"muted\">started {started} UTC, {n} point(s), \
         results schema {schema}</p>\n",
        plan = esc(&r.plan),
        started = utc(r.started_unix),
        n = r.points.len(),
        schema = esc(&r.schema),
    );
    if r.interrupted {
        s.push_str(
            "<p class=\"warn\">Interrupted: only the points measured before are here.</p>\n",
        );
    }
    s.push_str(&study_table(r));
    s.push_str(&verdicts(r));
    s.push_str(&figures(r)?);
    s.push_str("<h2 id=\"points\">Points in detail</h2>\n");
    for p in &r.points {
        s.push_str(&point_detail(p)?);
    }
    s.push_str(&facts(r));
    s.push_str("</body></html>\n");
    Ok(s)
}

/// `YYYY-MM-DD HH:MM:SS` of a Unix time (UTC), `-` when not set.
fn utc(unix: f64) -> String {
    if !unix.is_finite() || unix <= 0.0 {
        return "-".into();
    }
    let secs = unix as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The point's headline figure and its interval, as the terminal table.
fn headline(p: &PointResult) -> (String, String) {
    match &p.rr {
        Some(rr) => (
            fmt_tps(rr.transactions_per_second.mean),
            ci(&rr.transactions_per_second),
        ),
        None => (fmt_bps(p.aggregate.mean), ci(&p.aggregate)),
    }
}

fn verdict_cell(v: Option<&Verdict>) -> String {
    v.map_or("-".into(), |v| format!("{} ({})", v.limit, v.confidence))
}

/// The study table: a row per point, as `wirespeed report` prints it.
fn study_table(r: &PlanReport) -> String {
    let mut s = String::from(
        "<h2 id=\"study\">Study</h2>\n<table class=\"study\"><thead><tr><th>config</th>\
         <th>dir</th><th>pairs</th><th>aggregate</th><th>ci</th><th>% link</th><th>% best</th>\
         <th>skew</th><th>verdict</th></tr></thead><tbody>\n",
    );
    for p in &r.points {
        let (aggregate, interval) = headline(p);
        let late = p.repetitions.iter().any(|r| r.late.is_some());
        let _ = writeln!(
            s,
            "<tr{cls}><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{} us{}</td><td>{}</td></tr>",
            esc(&p.configuration),
            p.direction.as_str(),
            p.pairs,
            esc(&aggregate),
            esc(&interval),
            pct(p.percent_of_link),
            pct(p.percent_of_best),
            p.max_start_skew_us,
            if late { " !" } else { "" },
            esc(&verdict_cell(p.verdict.as_ref())),
            cls = if p.error.is_some() {
                " class=\"error\""
            } else {
                ""
            },
        );
        if let Some(e) = &p.error {
            let _ = writeln!(
                s,
                "<tr class=\"error\"><td colspan=\"9\">error: {}</td></tr>",
                esc(e)
            );
        }
    }
    s.push_str("</tbody></table>\n");
    s
}

/// Each point's verdict: what limits it, how sure, what to try.
fn verdicts(r: &PlanReport) -> String {
    let mut s = String::from("<h2 id=\"verdicts\">Verdicts</h2>\n<ul class=\"verdicts\">\n");
    let mut any = false;
    for p in &r.points {
        let Some(v) = &p.verdict else { continue };
        any = true;
        let _ = write!(
            s,
            "<li><b>{} {} {} pair(s)</b>: {} [{} confidence]<br>try: {}",
            esc(&p.configuration),
            p.direction.as_str(),
            p.pairs,
            esc(&v.message),
            esc(&v.confidence),
            esc(&v.advice)
        );
        for n in &v.notes {
            let _ = write!(s, "<br><span class=\"muted\">note: {}</span>", esc(n));
        }
        if !v.lacking.is_empty() {
            let _ = write!(
                s,
                "<br><span class=\"muted\">without: {}</span>",
                esc(&v.lacking.join("; "))
            );
        }
        s.push_str("</li>\n");
    }
    if !any {
        s.push_str("<li>-</li>\n");
    }
    s.push_str("</ul>\n");
    s
}

/// One inline figure with its caption.
fn figure(svg: &str, caption: &str) -> String {
    format!(
        "<figure class=\"figure\">{svg}<figcaption>{}</figcaption></figure>\n",
        esc(caption)
    )
}

/// The plan's figures: goodput against pairs per direction, and the
/// latency percentile plots.
fn figures(r: &PlanReport) -> Result<String> {
    let mut s = String::from("<h2 id=\"figures\">Figures</h2>\n");
    let mut any = false;
    for d in plot::goodput_directions(r) {
        any = true;
        s.push_str(&figure(
            &plot::throughput_svg(r, d)?,
            &format!("Aggregate goodput against pairs, {d}"),
        ));
    }
    for (c, d) in plot::latency_figures(r) {
        any = true;
        s.push_str(&figure(
            &plot::latency_svg(r, c, d)?,
            &format!("Latency by percentile, {c} {d}"),
        ));
    }
    if !any {
        s.push_str("<p>-</p>\n");
    }
    Ok(s)
}

/// A point folded: each repetition's pairs, late starts, and the CPU
/// figure of its middle repetition.
fn point_detail(p: &PointResult) -> Result<String> {
    let (aggregate, interval) = headline(p);
    let mut s = format!(
        "<details class=\"point\"><summary>{} {} {} pair(s): {} ({})</summary>\n",
        esc(&p.configuration),
        p.direction.as_str(),
        p.pairs,
        esc(&aggregate),
        esc(&interval)
    );
    if let Some(rr) = &p.rr {
        let _ = writeln!(s, "<p>latency {}</p>", esc(&percentile_line(&rr.latency)));
    }
    for l in &p.retried_for_skew {
        let _ = writeln!(
            s,
            "<p class=\"warn\">run again: {} us apart (over max_start_skew), {} last: {}</p>",
            l.skew_us,
            esc(&l.end),
            esc(&l.cause)
        );
    }
    for (i, rep) in p.repetitions.iter().enumerate() {
        s.push_str(&repetition_table(i + 1, rep));
    }
    if !p.repetitions.is_empty() {
        s.push_str(&figure(
            &plot::cpu_svg(p)?,
            "Per-core CPU of every host (middle repetition)",
        ));
    }
    s.push_str("</details>\n");
    Ok(s)
}

/// One repetition's pairs.
fn repetition_table(n: usize, rep: &Repetition) -> String {
    let mut s = format!(
        "<p>repetition {n}: start skew {} us{}</p>\n<table class=\"pairs\"><thead><tr>\
         <th>pair</th><th>ends</th><th>figure</th><th>% best</th><th>paths</th>\
         <th>start offsets</th><th>retransmits</th><th>errors</th></tr></thead><tbody>\n",
        rep.start_skew_us,
        rep.late.as_ref().map_or(String::new(), |l| format!(
            ", late start: {} last: {}",
            esc(&l.end),
            esc(&l.cause)
        )),
    );
    for pr in &rep.pairs {
        let end = &pr.run.end;
        let figure = match &end.latency {
            Some(l) => format!(
                "{}, p50 {} p99 {}",
                fmt_tps(l.transactions_per_second),
                fmt_us(l.latency.p50_us),
                fmt_us(l.latency.p99_us)
            ),
            None => fmt_bps(pr.goodput_bps),
        };
        let retr: Option<u64> = end
            .directions
            .iter()
            .map(|d| d.retransmits)
            .try_fold(0, |a, r| Some(a + r?));
        let _ = writeln!(
            s,
            "<tr><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td>{}</td><td class=\"n\">{} / {} us</td><td class=\"n\">{}</td><td>{}</td></tr>",
            esc(&pr.pair),
            esc(&pr.ends()),
            esc(&figure),
            pct(pr.percent_of_best),
            esc(&paths(&pr.run)),
            pr.start_offset_us.0,
            pr.start_offset_us.1,
            retr.map_or("-".into(), |r| r.to_string()),
            esc(&end.errors.join("; ")),
        );
    }
    s.push_str("</tbody></table>\n");
    s
}

/// Every host the results name, once: (role, facts).
fn hosts(r: &PlanReport) -> Vec<(String, &HostInfo)> {
    let mut v: Vec<(String, &HostInfo)> = Vec::new();
    let pairs = r
        .points
        .iter()
        .flat_map(|p| &p.repetitions)
        .flat_map(|rep| &rep.pairs);
    for pr in pairs {
        for (role, h) in [
            (pr.client.clone(), &pr.run.end.local_host),
            (pr.agent.clone(), &pr.run.end.remote_host),
        ] {
            if !v.iter().any(|(r, _)| *r == role) {
                v.push((role, h));
            }
        }
    }
    v
}

/// Machine and run facts: hosts, the NICs the flows used and their
/// drivers, the data paths chosen and why, and the noisy points.
fn facts(r: &PlanReport) -> String {
    let mut s = String::from(
        "<h2 id=\"facts\">Machines and run</h2>\n<table class=\"hosts\"><thead><tr><th>end</th>\
         <th>hostname</th><th>os</th><th>kernel</th><th>arch</th><th>CPUs</th><th>wirespeed</th>\
         </tr></thead><tbody>\n",
    );
    for (role, h) in hosts(r) {
        let _ = writeln!(
            s,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td>\
             <td>{}</td></tr>",
            esc(&role),
            esc(&h.hostname),
            esc(&h.os),
            esc(h.kernel.as_deref().unwrap_or("-")),
            esc(&h.arch),
            h.cores,
            esc(&h.version)
        );
    }
    s.push_str("</tbody></table>\n");
    s.push_str(&nics(r));
    s.push_str(&modes(r));
    s.push_str(&noisy(r));
    s
}

/// The interfaces each host's flows used, the NIC under each and its
/// driver (from the interrupt path of every host's figures).
fn nics(r: &PlanReport) -> String {
    let mut rows: Vec<String> = Vec::new();
    for h in r
        .points
        .iter()
        .flat_map(|p| &p.repetitions)
        .flat_map(|rep| &rep.hosts)
    {
        for n in h.irq.path.iter().flat_map(|p| &p.nics) {
            let row = format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&h.name),
                esc(&n.iface),
                esc(n.nic.as_deref().unwrap_or("- (virtual)")),
                esc(n.driver.as_deref().unwrap_or("-")),
                esc(n.bus.as_deref().unwrap_or("-"))
            );
            if !rows.contains(&row) {
                rows.push(row);
            }
        }
    }
    let mut s = String::from(
        "<h3>NICs</h3>\n<table class=\"nics\"><thead><tr><th>host</th><th>interface</th>\
         <th>NIC</th><th>driver</th><th>bus</th></tr></thead><tbody>\n",
    );
    if rows.is_empty() {
        rows.push("<tr><td colspan=\"5\">- (no host reported its path)</td></tr>".into());
    }
    for row in rows {
        s.push_str(&row);
        s.push('\n');
    }
    s.push_str("</tbody></table>\n");
    s
}

/// The data paths each configuration ran, and why each end chose it.
fn modes(r: &PlanReport) -> String {
    let mut rows: Vec<String> = Vec::new();
    for p in &r.points {
        let Some(pr) = p.repetitions.first().and_then(|rep| rep.pairs.first()) else {
            continue;
        };
        let c = &pr.run.config;
        let row = format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&p.configuration),
            esc(&pr.run.end.mode),
            esc(&c.mode_reason),
            esc(pr.run.end.remote_mode.as_deref().unwrap_or("-")),
            esc(&c.remote_mode_reason)
        );
        if !rows.contains(&row) {
            rows.push(row);
        }
    }
    let mut s = String::from(
        "<h3>Data paths</h3>\n<table class=\"modes\"><thead><tr><th>config</th><th>client mode</th>\
         <th>why</th><th>agent mode</th><th>why</th></tr></thead><tbody>\n",
    );
    for row in rows {
        s.push_str(&row);
        s.push('\n');
    }
    s.push_str("</tbody></table>\n");
    s
}

/// Points to read with care: steal time, late starts, repetitions run
/// again for skew.
fn noisy(r: &PlanReport) -> String {
    let mut items: Vec<String> = Vec::new();
    for p in &r.points {
        let name = format!("{} {} {} pair(s)", p.configuration, p.direction, p.pairs);
        let steal = p
            .repetitions
            .iter()
            .flat_map(|rep| &rep.hosts)
            .filter_map(|h| Some((h.name.as_str(), h.cpu.host.as_ref()?.steal?)))
            .filter(|(_, st)| *st >= NOISY_STEAL)
            .fold(None, |m: Option<(&str, f64)>, x| match m {
                Some(m) if m.1 >= x.1 => Some(m),
                _ => Some(x),
            });
        if let Some((host, st)) = steal {
            items.push(format!("{name}: steal {st:.1}% on {host}"));
        }
        for l in p.repetitions.iter().filter_map(|rep| rep.late.as_ref()) {
            items.push(format!(
                "{name}: late start, {} us apart, {} last: {}",
                l.skew_us, l.end, l.cause
            ));
        }
        if !p.retried_for_skew.is_empty() {
            items.push(format!(
                "{name}: {} repetition(s) run again for start skew",
                p.retried_for_skew.len()
            ));
        }
    }
    let mut s = format!(
        "<h3>Noisy points</h3>\n<p class=\"muted\">Steal time of {NOISY_STEAL}% or more on a \
         host, late starts, repetitions run again.</p>\n<ul class=\"noisy\">\n"
    );
    if items.is_empty() {
        s.push_str("<li>none</li>\n");
    }
    for i in items {
        let _ = writeln!(s, "<li>{}</li>", esc(&i));
    }
    s.push_str("</ul>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::plan::fixture::*;

    #[test]
    fn escapes_markup_in_every_text() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0.0), "-");
        assert_eq!(utc(951_782_400.0), "2000-02-29 00:00:00");
        assert_eq!(utc(1_764_707_506.5), "2025-12-02 20:31:46");
    }

    #[test]
    fn a_hostile_plan_name_stays_text() {
        let mut r = report(vec![rr_point(
            "<script>x</script>",
            vec![rr_repetition(&[&[10, 20]])],
        )]);
        r.plan = "<img src=x onerror=alert(1)>".into();
        let page = render(&r).unwrap();
        assert!(!page.contains("<script>"), "{page}");
        assert!(!page.contains("<img"));
        assert!(page.contains("&lt;img src=x onerror=alert(1)&gt;"));
    }

    #[test]
    fn the_page_holds_table_figures_and_folded_points() {
        let r = report(vec![rr_point(
            "default",
            vec![rr_repetition(&[&[10, 20], &[30]])],
        )]);
        let page = render(&r).unwrap();
        assert!(page.starts_with("<!DOCTYPE html>"));
        assert_eq!(page.matches("<details class=\"point\">").count(), 1);
        // The latency figure and the point's CPU figure, inline.
        assert_eq!(page.matches("<svg").count(), 2, "{page}");
        assert!(page.contains("<table class=\"study\">"));
        // Self-contained: nothing fetched, nothing run.
        for outside in ["<link", " src=", "<script", "@import", "url("] {
            assert!(!page.contains(outside), "{outside} in the page");
        }
    }
}
