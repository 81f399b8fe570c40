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
    // An unread figure is an empty cell, never 0.
    let pct = |c: &super::model::CpuReport| {
        c.process
            .map_or(String::new(), |p| format!("{:.2}", p.percent_of_core))
    };
    let cpu = format!("{},{}", pct(&e.cpu.local), pct(&e.cpu.remote));
    let mut out = String::from(HEADER);
    out.push('\n');
    let mut row = |kind: &str,
                   dir: &str,
                   stream: &str,
                   s: Option<&Throughput>,
                   rv: Option<&Throughput>,
                   retr: String,
                   rtt: String| {
        // An end that reported nothing leaves its three cells empty.
        let t = |t: Option<&Throughput>| {
            t.map_or(",,".into(), |t| {
                format!("{},{:.6},{:.0}", t.bytes, t.seconds, t.bits_per_second)
            })
        };
        let _ = writeln!(
            out,
            "{kind},{},{dir},{stream},{},{sockbuf},{},{},{retr},{rtt},{cpu}",
            e.mode,
            r.config.test.msg_size,
            t(s),
            t(rv)
        );
    };
    for f in &e.flows {
        let tcp = f.sender.as_ref().and_then(|s| s.tcp);
        row(
            "flow",
            f.direction.as_str(),
            &f.stream.to_string(),
            f.sender.as_ref().map(|s| &s.throughput),
            f.receiver.as_ref().map(|r| &r.throughput),
            tcp.map_or(String::new(), |t| t.retransmits.to_string()),
            tcp.map_or(String::new(), |t| t.rtt_us.to_string()),
        );
    }
    for d in &e.directions {
        row(
            "direction",
            d.direction.as_str(),
            "",
            Some(&d.sent),
            Some(&d.received),
            d.retransmits.map_or(String::new(), |r| r.to_string()),
            String::new(),
        );
    }
    // A total only when every direction's senders were measured.
    let retr: Option<u64> = e.directions.iter().map(|d| d.retransmits).sum();
    row(
        "total",
        r.config.test.direction.as_str(),
        "",
        Some(&e.sent),
        Some(&e.received),
        retr.map_or(String::new(), |r| r.to_string()),
        String::new(),
    );
    out
}

/// Column names of `run --plain --csv`.
#[cfg(target_os = "linux")]
pub const PLAIN_HEADER: &str =
    "row,mode,flow,local_port,remote,bytes,seconds,bps,retransmits,srtt_us,cwnd_segments,error";

/// A plain-peer test: one row per connection, then the total (whose TCP
/// cells are empty: they are per connection).
#[cfg(target_os = "linux")]
pub fn render_plain(r: &crate::datapath::xdp::stream::PlainReport) -> String {
    let mut out = String::from(PLAIN_HEADER);
    out.push('\n');
    let flow = match r.flow {
        crate::datapath::xdp::stream::Flow::Send => "send",
        crate::datapath::xdp::stream::Flow::Receive => "receive",
    };
    for s in &r.streams {
        // Errors are free text: quote them, doubling any quote inside.
        let error = s
            .error
            .as_deref()
            .map_or(String::new(), |e| format!("\"{}\"", e.replace('"', "\"\"")));
        let _ = writeln!(
            out,
            "stream,{},{flow},{},{},{},{:.6},{:.0},{},{},{},{error}",
            r.mode,
            s.local_port,
            s.remote,
            s.bytes,
            s.seconds,
            s.bits_per_second,
            s.retransmits,
            s.srtt_us,
            s.cwnd_segments
        );
    }
    let t = &r.total;
    let _ = writeln!(
        out,
        "total,{},{flow},,{},{},{:.6},{:.0},,,,",
        r.mode, r.peer, t.bytes, t.seconds, t.bits_per_second
    );
    out
}
