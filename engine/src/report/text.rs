//! Human-readable output: iperf3-style interval lines and a netperf-style
//! summary with both sides' view.

use super::model::{CpuReport, Interval, IntervalRr, RunReport};
use crate::units::{fmt_bps, fmt_bytes};
use std::fmt::Write;

/// Header printed above the interval lines: retr, rtt and cwnd are the
/// sending socket's, and `tcp of` says which end that was.
pub fn interval_header() -> String {
    format!(
        "{:<14} {:>13} {:>12} {:>14} {:>6} {:>9} {:>6} {:>6}",
        "[stream]", "interval", "transfer", "bitrate", "retr", "rtt", "cwnd", "tcp of"
    )
}

/// One interval: a line per flow when there are several, then the sum.
pub fn interval_lines(iv: &Interval) -> String {
    let mut s = String::new();
    let span = format!("{:.2}-{:.2} s", iv.start, iv.end);
    for f in &iv.flows {
        let _ = writeln!(
            s,
            "{:<14} {:>13} {:>12} {:>14} {:>6} {:>9} {:>6} {:>6}",
            format!("[{} {}]", f.stream, f.direction),
            span,
            fmt_bytes(f.bytes),
            fmt_bps(f.bits_per_second),
            opt_u32(f.retransmits),
            f.rtt_us.map_or("-".into(), |r| format!("{r} us")),
            opt_u32(f.snd_cwnd),
            f.tcp_from.map_or("-", |e| e.as_str()),
        );
    }
    if iv.flows.len() > 1 {
        let _ = writeln!(
            s,
            "{:<14} {:>13} {:>12} {:>14}",
            "[SUM]",
            span,
            fmt_bytes(iv.sum.bytes),
            fmt_bps(iv.sum.bits_per_second)
        );
    }
    s
}

/// The rr header: transactions and this interval's latency.
pub fn rr_interval_header() -> String {
    format!(
        "{:<14} {:>13} {:>12} {:>12} {:>11} {:>11} {:>11}",
        "[stream]", "interval", "trans", "trans/s", "p50", "p99", "max"
    )
}

/// One rr interval: a line per client flow.
pub fn rr_interval_lines(iv: &Interval) -> String {
    let mut s = String::new();
    let span = format!("{:.2}-{:.2} s", iv.start, iv.end);
    for f in &iv.flows {
        let Some(r) = &f.rr else { continue };
        let _ = writeln!(
            s,
            "{:<14} {:>13} {:>12} {:>12.0} {:>11} {:>11} {:>11}",
            format!("[{} {}]", f.stream, f.direction),
            span,
            r.transactions,
            r.transactions_per_second,
            opt_us(r.p50_us),
            opt_us(r.p99_us),
            opt_us(r.max_us),
        );
    }
    s
}

/// One rr interval of several client flows in a few words: their
/// transactions per second together and the worst p99 among them; None
/// when this end is no client (the agent is, and reports at the end).
pub fn rr_interval_sum(iv: &Interval) -> Option<String> {
    let rr: Vec<&IntervalRr> = iv.flows.iter().filter_map(|f| f.rr.as_ref()).collect();
    if rr.is_empty() {
        return None;
    }
    let tps: f64 = rr.iter().map(|r| r.transactions_per_second).sum();
    // The worst of the flows that completed any transaction.
    let p99 = rr.iter().filter_map(|r| r.p99_us).reduce(f64::max);
    Some(format!("{tps:.0} tr/s, p99 {}", opt_us(p99)))
}

/// p50 to max of a latency summary, as the summaries print them.
pub fn percentile_line(p: &crate::metrics::latency::Percentiles) -> String {
    format!(
        "p50 {} p90 {} p99 {} p99.9 {} p99.99 {} max {}",
        fmt_us(p.p50_us),
        fmt_us(p.p90_us),
        fmt_us(p.p99_us),
        fmt_us(p.p999_us),
        fmt_us(p.p9999_us),
        fmt_us(p.max_us)
    )
}

/// Microseconds, or `-` where none were measured.
fn opt_us(us: Option<f64>) -> String {
    us.map_or("-".into(), fmt_us)
}

/// Microseconds, with a unit that keeps three figures readable.
pub fn fmt_us(us: f64) -> String {
    if us >= 1e6 {
        format!("{:.2} s", us / 1e6)
    } else if us >= 1e3 {
        format!("{:.2} ms", us / 1e3)
    } else {
        format!("{us:.1} us")
    }
}

/// The raw-mode header: frames as well as bits.
pub fn raw_interval_header() -> String {
    format!(
        "{:<14} {:>13} {:>12} {:>14} {:>12}",
        "[end]", "interval", "transfer", "L2 bitrate", "frames/s"
    )
}

/// One raw interval of this end's workers together; `frame_size` turns
/// bytes back into frames.
pub fn raw_interval_lines(iv: &Interval, frame_size: u32) -> String {
    let mut s = String::new();
    let span = format!("{:.2}-{:.2} s", iv.start, iv.end);
    for f in &iv.flows {
        let secs = (iv.end - iv.start).max(1e-9);
        let pps = f.bytes as f64 / f64::from(frame_size.max(1)) / secs;
        let _ = writeln!(
            s,
            "{:<14} {:>13} {:>12} {:>14} {:>12}",
            format!("[{}]", f.direction),
            span,
            fmt_bytes(f.bytes),
            fmt_bps(f.bits_per_second),
            fmt_pps(pps),
        );
    }
    s
}

/// Frames per second, as pktgen and MoonGen print them.
fn fmt_pps(pps: f64) -> String {
    if pps >= 1e6 {
        format!("{:.3} Mpps", pps / 1e6)
    } else {
        format!("{:.1} kpps", pps / 1e3)
    }
}

/// A figure, or `-` where it was not measured.
fn opt_u32(v: Option<u32>) -> String {
    v.map_or("-".into(), |v| v.to_string())
}

fn cpu_line(c: &CpuReport) -> String {
    let opt = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.1}"));
    let host = match &c.host {
        Some(h) => format!(
            "host busy {:.1}% (usr {:.1} sys {:.1} irq {} soft {})",
            h.busy(),
            h.user + h.nice,
            h.system,
            opt(h.irq),
            opt(h.softirq)
        ),
        None => format!("host {}", c.source),
    };
    let process = match &c.process {
        Some(p) => format!(
            "process {:.1}% of a core ({:.1}% of {} cores)",
            p.percent_of_core, p.percent_of_host, c.cores
        ),
        None => format!("process {}", c.process_source),
    };
    format!("{process}; {host}")
}

/// The end-of-test summary.
pub fn summary(r: &RunReport) -> String {
    let e = &r.end;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "- - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - -"
    );
    let _ = writeln!(
        s,
        "mode {} ({}); to {} ({} {} {} cores, wirespeed {})",
        e.mode,
        r.config.mode_reason,
        r.config.to,
        e.remote_host.hostname,
        e.remote_host.os,
        e.remote_host.cores,
        e.remote_host.version
    );
    if !r.config.remote_mode.is_empty() {
        let _ = writeln!(
            s,
            "agent mode {} ({})",
            r.config.remote_mode, r.config.remote_mode_reason
        );
    }
    if let Some(l) = &e.latency {
        let p = &l.latency;
        let _ = writeln!(
            s,
            "rr: {} transactions ({:.0}/s) as the clients counted them, {} as the servers did",
            l.client_transactions, l.transactions_per_second, l.server_transactions
        );
        let _ = writeln!(
            s,
            "latency: min {} mean {} {}",
            fmt_us(p.min_us),
            fmt_us(p.mean_us),
            percentile_line(p)
        );
    }
    for d in e.directions.iter().filter(|_| e.latency.is_none()) {
        let (snd, rcv) = match d.direction {
            crate::spec::Direction::Send => ("local", "agent"),
            _ => ("agent", "local"),
        };
        let _ = writeln!(
            s,
            "{:<8} sender   ({snd}) {:>12} in {:>6.2} s = {:>14}   retr {}",
            d.direction.as_str(),
            fmt_bytes(d.sent.bytes),
            d.sent.seconds,
            fmt_bps(d.sent.bits_per_second),
            d.retransmits.map_or("-".into(), |r| r.to_string())
        );
        let _ = writeln!(
            s,
            "{:<8} receiver ({rcv}) {:>12} in {:>6.2} s = {:>14}",
            d.direction.as_str(),
            fmt_bytes(d.received.bytes),
            d.received.seconds,
            fmt_bps(d.received.bits_per_second)
        );
    }
    for f in &e.flows {
        let (sr, rr) = (f.sender.as_ref(), f.receiver.as_ref());
        if let (Some(sr), Some(rr)) = (
            sr.and_then(|e| e.raw.as_ref()),
            rr.and_then(|e| e.raw.as_ref()),
        ) {
            let lost = sr.count.frames.saturating_sub(rr.count.frames);
            let pct = if sr.count.frames > 0 {
                100.0 * lost as f64 / sr.count.frames as f64
            } else {
                0.0
            };
            let _ = writeln!(
                s,
                "raw {} B frames: sent {} ({}), received {} ({}), lost {lost} ({pct:.3}%), gaps {}, reordered {}, malformed {}",
                sr.frame_size,
                sr.count.frames,
                fmt_pps(sr.frames_per_second),
                rr.count.frames,
                fmt_pps(rr.frames_per_second),
                rr.count.gaps,
                rr.count.reorders,
                rr.count.malformed
            );
            let _ = writeln!(
                s,
                "raw rates: L2 {} sent / {} received; L1 (with preamble, FCS, gap) {} / {}",
                fmt_bps(sr.l2_bits_per_second),
                fmt_bps(rr.l2_bits_per_second),
                fmt_bps(sr.l1_bits_per_second),
                fmt_bps(rr.l1_bits_per_second)
            );
            if let Some(steered) = rr.steered {
                let _ = writeln!(
                    s,
                    "raw loss, where: {} before the receiver's XDP hook (link, driver rings), {} between XDP and the receiving sockets (rx ring full, no fill buffer), {} on queues without a socket",
                    sr.count.frames.saturating_sub(steered + rr.no_socket.unwrap_or(0)),
                    rr.count.kernel_dropped.map_or("-".into(), |n| n.to_string()),
                    rr.no_socket.unwrap_or(0)
                );
            }
            for (who, st) in [("sender", sr), ("receiver", rr)] {
                for q in &st.queues {
                    let _ = writeln!(
                        s,
                        "  {who:<8} queue {:>3}: {:>10} frames {:>12} in {:>6.2} s, cpu {}{}, busy-poll {}",
                        q.queue,
                        q.count.frames,
                        fmt_pps(q.frames_per_second),
                        q.seconds,
                        q.cpu.map_or("?".into(), |c| c.to_string()),
                        q.cpu_pinned.map_or(" (unpinned)".into(), |c| format!(" (pinned to {c})")),
                        if q.busy_poll { "on" } else { "off" }
                    );
                }
            }
        }
    }
    if let Some(f) = e.flows.first().filter(|f| {
        [&f.sender, &f.receiver]
            .iter()
            .filter_map(|end| end.as_ref())
            .all(|end| end.raw.is_none() && end.rr.is_none())
    }) {
        let req = r
            .config
            .test
            .sockbuf
            .map_or("autotuned".into(), |b| format!("{b} requested"));
        let _ = writeln!(
            s,
            "socket buffers: {req}; granted sender snd {} / receiver rcv {}; message {} B",
            opt_u32(f.sender.as_ref().and_then(|e| e.sockbuf.snd)),
            opt_u32(f.receiver.as_ref().and_then(|e| e.sockbuf.rcv)),
            r.config.test.msg_size
        );
    }
    if let Some(p) = &e.workers.placement {
        let _ = writeln!(s, "placement: {p}");
    }
    for (side, ws) in [("local ", &e.workers.local), ("remote", &e.workers.remote)] {
        for w in ws {
            let _ = writeln!(s, "workers {side} {}", worker_line(w));
        }
    }
    let _ = writeln!(s, "cpu local:  {}", cpu_line(&e.cpu.local));
    let _ = writeln!(s, "cpu remote: {}", cpu_line(&e.cpu.remote));
    if r.config.test.verify {
        let _ = writeln!(s, "{}", super::verify::summary_line(&e.flows));
    }
    for err in &e.errors {
        let _ = writeln!(s, "error: {err}");
    }
    s
}

/// The summary of a TCP-lite test against a plain peer.
#[cfg(target_os = "linux")]
pub fn plain_summary(r: &crate::datapath::xdp::stream::PlainReport) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "mode {} (TCP-lite over AF_XDP); {} {} plain TCP peer {}",
        r.mode,
        r.local,
        match r.flow {
            crate::datapath::xdp::stream::Flow::Send => "sending to",
            crate::datapath::xdp::stream::Flow::Receive => "receiving from",
        },
        r.peer
    );
    for st in &r.streams {
        let _ = writeln!(
            s,
            "[{:>5}] {:>12} in {:>6.2} s = {:>14}   retrans {} B, timeouts {}, fast retransmits {}, srtt {} us{}{}",
            st.local_port,
            fmt_bytes(st.bytes),
            st.seconds,
            fmt_bps(st.bits_per_second),
            st.retransmitted_bytes,
            st.timeouts,
            st.fast_retransmits,
            st.srtt_us,
            st.sha256
                .as_deref()
                .map_or(String::new(), |h| format!(", sha256 {h}")),
            st.error
                .as_deref()
                .map_or(String::new(), |e| format!(", error: {e}")),
        );
    }
    let _ = writeln!(
        s,
        "[  SUM] {:>12} in {:>6.2} s = {:>14}",
        fmt_bytes(r.total.bytes),
        r.total.seconds,
        fmt_bps(r.total.bits_per_second),
    );
    if let Some(p) = &r.placement {
        let _ = writeln!(s, "placement: {p}");
    }
    for w in &r.workers {
        let _ = writeln!(s, "{}", worker_line(w));
    }
    let _ = writeln!(s, "cpu: {}", cpu_line(&r.cpu));
    s
}

/// One TCP-lite worker: its queue and CPU, its connections, the segments
/// it moved, frames it handed to other workers, and how often it found work.
pub fn worker_line(w: &super::model::WorkerReport) -> String {
    format!(
        "[ q{:>3}] cpu {}{}: {} flows, segments in {} / out {}, misrouted {}{}, poll {} ({} sleeps), busy polls {}, stray {}, kernel dropped {} (rx ring full {}, fill ring empty {}){}",
        w.queue,
        w.cpu.map_or("-".into(), |c| c.to_string()),
        w.cpu_pinned
            .map_or(" (unpinned)".into(), |c| format!(" (pinned to {c})")),
        w.flows,
        w.segments_in,
        w.segments_out,
        w.misrouted,
        if w.handoff_dropped > 0 {
            format!(" ({} dropped: hand-off ring full)", w.handoff_dropped)
        } else {
            String::new()
        },
        w.poll_mode.as_deref().unwrap_or("-"),
        w.sleeps,
        w.poll_efficiency()
            .map_or("-".into(), |e| format!("{:.1}%", e * 100.0)),
        w.stray_frames,
        w.kernel_dropped.map_or("-".into(), |n| n.to_string()),
        w.rx_ring_full.map_or("-".into(), |n| n.to_string()),
        w.fill_ring_empty.map_or("-".into(), |n| n.to_string()),
        if w.multi_buffer {
            ", multi-buffer"
        } else {
            ""
        }
    )
}

/// A test against iperf3: our streams beside the server's own figures.
pub fn iperf3_summary(r: &crate::control::iperf3::client::Iperf3Report) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{} iperf3 server {}, mode {} ({})",
        match r.direction {
            crate::spec::Direction::Receive => "receiving from",
            _ => "sending to",
        },
        r.server,
        r.mode,
        r.mode_reason
    );
    let _ = writeln!(
        s,
        "{:<8}{:>14}{:>10}{:>16}{:>16}",
        "stream", "ours", "seconds", "rate", "iperf3's"
    );
    let ids = crate::control::iperf3::wire::stream_ids(r.streams.len());
    for (f, id) in r.streams.iter().zip(ids) {
        let theirs = r.server_results.streams.iter().find(|t| t.id == id);
        let _ = writeln!(
            s,
            "{:<8}{:>14}{:>10.2}{:>16}{:>16}{}",
            format!("[{id}]"),
            f.throughput.bytes,
            f.throughput.seconds,
            fmt_bps(f.throughput.bits_per_second),
            theirs.map_or("-".into(), |t| format!("{}", t.bytes.max(0.0) as u64)),
            f.error
                .as_deref()
                .map_or(String::new(), |e| format!("  error: {e}")),
        );
    }
    let _ = writeln!(
        s,
        "{:<8}{:>14}{:>10.2}{:>16}{:>16}  {}",
        "[SUM]",
        r.total.bytes,
        r.total.seconds,
        fmt_bps(r.total.bits_per_second),
        r.server_bytes,
        if r.bytes_agree {
            "bytes agree"
        } else {
            "bytes DIFFER"
        }
    );
    let _ = writeln!(
        s,
        "cpu: ours {}; iperf3 server {:.1}% of a core (user {:.1}%, system {:.1}%)",
        cpu_line(&r.cpu),
        r.server_results.cpu_util_total,
        r.server_results.cpu_util_user,
        r.server_results.cpu_util_system
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unread_host_cpu_says_so_instead_of_a_figure() {
        let c = CpuReport {
            source: "unavailable: /proc/stat: Permission denied (os error 13)".into(),
            cores: 2,
            ..Default::default()
        };
        let line = cpu_line(&c);
        assert!(
            line.ends_with("host unavailable: /proc/stat: Permission denied (os error 13)"),
            "{line}"
        );
        assert!(!line.contains("busy"), "{line}");
    }
}
