//! Parsing and printing of sizes, durations and rates in the forms netperf
//! and iperf3 users type: `8K` is 8192 bytes (binary, as netperf), `10s`,
//! `500ms`; rates print in decimal bits (Gb/s = 10^9 bit/s).

use crate::{Error, Result};
use std::time::Duration;

/// Parse a byte size: a plain number, or with a binary suffix K, M, G
/// (optionally followed by `i`/`B`/`iB`, any case): `8K` = 8192.
pub fn parse_size(s: &str) -> Result<u64> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, suffix) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| {
        Error::Invalid(format!(
            "size {s:?} is not a number with an optional K/M/G suffix"
        ))
    })?;
    let mult: u64 = match suffix.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "ki" | "kib" => 1 << 10,
        "m" | "mb" | "mi" | "mib" => 1 << 20,
        "g" | "gb" | "gi" | "gib" => 1 << 30,
        _ => {
            return Err(Error::Invalid(format!(
                "size {s:?} has an unknown suffix (use K, M or G)"
            )))
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| Error::Invalid(format!("size {s:?} is too large")))
}

/// Split `"2.5G"` into the number and the unit that follows it.
pub fn split_number(t: &str) -> (&str, &str) {
    let at = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    t.split_at(at)
}

/// Parse a duration: a number with a unit `ms`, `s`, `m` or `h`; a bare
/// number is seconds (as netperf's `-l`).
pub fn parse_duration(s: &str) -> Result<Duration> {
    let (num, unit) = split_number(s.trim());
    let v: f64 = num.parse().map_err(|_| {
        Error::Invalid(format!(
            "duration {s:?} is not a number with a unit (10s, 500ms)"
        ))
    })?;
    let secs = match unit {
        "" | "s" => v,
        "ms" => v / 1e3,
        "m" | "min" => v * 60.0,
        "h" => v * 3600.0,
        _ => {
            return Err(Error::Invalid(format!(
                "duration {s:?} has an unknown unit (use ms, s, m or h)"
            )))
        }
    };
    if !secs.is_finite() || secs <= 0.0 || secs > 7.0 * 86400.0 {
        return Err(Error::Invalid(format!(
            "duration {s:?} must be positive and at most a week"
        )));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Format a byte count in binary units, as iperf3 prints transfers.
pub fn fmt_bytes(b: u64) -> String {
    const U: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i < U.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{b} B")
    } else {
        format!("{v:.2} {}", U[i])
    }
}

/// Format a rate in decimal bits per second (network convention).
pub fn fmt_bps(bps: f64) -> String {
    if bps >= 1e9 {
        format!("{:.3} Gb/s", bps / 1e9)
    } else if bps >= 1e6 {
        format!("{:.2} Mb/s", bps / 1e6)
    } else if bps >= 1e3 {
        format!("{:.2} Kb/s", bps / 1e3)
    } else {
        format!("{bps:.0} b/s")
    }
}

/// Bits per second from a byte count and seconds; zero when no time passed.
pub fn bps(bytes: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        bytes as f64 * 8.0 / seconds
    } else {
        0.0
    }
}

/// A list of indexes as `taskset` and `ethtool` users write them:
/// `0,2,4-7`, in the order written (a CPU list's order is meaningful);
/// at most `max` entries.
pub fn parse_index_list(s: &str, max: usize) -> Result<Vec<u16>> {
    let bad = || Error::Invalid(format!("{s:?} is not a list of indexes (e.g. 0,2,4-7)"));
    let mut v = Vec::new();
    for part in s.split(',').map(str::trim) {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a.trim(), b.trim()),
            None => (part, part),
        };
        let a: u16 = a.parse().map_err(|_| bad())?;
        let b: u16 = b.parse().map_err(|_| bad())?;
        if a > b || v.len() + usize::from(b - a) >= max {
            return Err(if a > b {
                bad()
            } else {
                Error::Invalid(format!("{s:?} names more than {max} indexes"))
            });
        }
        v.extend(a..=b);
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("8K").unwrap(), 8192);
        assert_eq!(parse_size("64k").unwrap(), 65536);
        assert_eq!(parse_size("1MiB").unwrap(), 1 << 20);
        assert_eq!(parse_size("1500").unwrap(), 1500);
        assert!(parse_size("8X").is_err());
        assert!(parse_size("").is_err());
        assert!(parse_size("99999999999999999999G").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("10").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("5y").is_err());
    }

    #[test]
    fn formatting() {
        assert_eq!(fmt_bytes(512), "512 B");
        assert_eq!(fmt_bytes(8192), "8.00 KiB");
        assert_eq!(fmt_bps(2.5e9), "2.500 Gb/s");
        assert_eq!(fmt_bps(941e6), "941.00 Mb/s");
        assert_eq!(bps(125, 1.0), 1000.0);
        assert_eq!(bps(1, 0.0), 0.0);
    }

    #[test]
    fn index_lists() {
        assert_eq!(parse_index_list("0", 8).unwrap(), vec![0]);
        assert_eq!(parse_index_list("3,0-2,2", 8).unwrap(), vec![3, 0, 1, 2, 2]);
        assert_eq!(parse_index_list(" 4 - 5 ", 8).unwrap(), vec![4, 5]);
        assert!(parse_index_list("2-1", 8).is_err());
        assert!(parse_index_list("a", 8).is_err());
        assert!(parse_index_list("", 8).is_err());
        assert!(parse_index_list("0-65535", 1024).is_err());
    }
}
