//! CSV output: one row per flow with both ends' figures, then one row per
//! direction and a total; the same columns for every row so a spreadsheet
//! or pandas reads it directly.

use super::model::{RunReport, Throughput};
use std::fmt::Write;

/// Column names, in order.
pub const HEADER: &str = "row,mode,direction,stream,msg_size,sockbuf,sent_bytes,sent_seconds,sent_bps,received_bytes,received_seconds,received_bps,retransmits,rtt_us,local_cpu_percent,remote_cpu_percent";

/// Render the whole report.
pub fn render(r: &RunReport) -> String {
    let e = &r.end;
    let sockbuf = r
        .config
        .test
        .sockbuf
        .map_or(String::new(), |b| b.to_string());
    let cpu = format!(
        "{:.2},{:.2}",
        e.cpu.local.process.percent_of_core, e.cpu.remote.process.percent_of_core
    );
    let mut out = String::from(HEADER);
    out.push('\n');
    let mut row = |kind: &str,
                   dir: &str,
                   stream: &str,
                   s: &Throughput,
                   rv: &Throughput,
                   retr: String,
                   rtt: String| {
        let _ = writeln!(
            out,
            "{kind},{},{dir},{stream},{},{sockbuf},{},{:.6},{:.0},{},{:.6},{:.0},{retr},{rtt},{cpu}",
            e.mode, r.config.test.msg_size, s.bytes, s.seconds, s.bits_per_second, rv.bytes, rv.seconds, rv.bits_per_second
        );
    };
    for f in &e.flows {
        let tcp = f.sender.tcp;
        row(
            "flow",
            f.direction.as_str(),
            &f.stream.to_string(),
            &f.sender.throughput,
            &f.receiver.throughput,
            tcp.map_or(String::new(), |t| t.retransmits.to_string()),
            tcp.map_or(String::new(), |t| t.rtt_us.to_string()),
        );
    }
    for d in &e.directions {
        row(
            "direction",
            d.direction.as_str(),
            "",
            &d.sent,
            &d.received,
            d.retransmits.to_string(),
            String::new(),
        );
    }
    let retr: u64 = e.directions.iter().map(|d| d.retransmits).sum();
    row(
        "total",
        r.config.test.direction.as_str(),
        "",
        &e.sent,
        &e.received,
        retr.to_string(),
        String::new(),
    );
    out
}
