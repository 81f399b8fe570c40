//! A token-bucket shaper (tbf) as a root qdisc over RTM_NEWQDISC, built
//! from the words `tc qdisc replace dev X root tbf rate R burst B latency
//! L` takes and sent with the same attributes iproute2 sends, except the
//! rate table: with the link layer named (ethernet) the kernel computes
//! transmit times itself and needs none.
//!
//! The spec parsing and the request are pure; [`replace_root`] sends it.

use super::NlError;
use netlink_packet_core::{DefaultNla, NLM_F_ACK, NLM_F_CREATE, NLM_F_REPLACE};
use netlink_packet_route::tc::{TcAttribute, TcHandle, TcMessage, TcOption};
use netlink_packet_route::RouteNetlinkMessage;

const TCA_TBF_PARMS: u16 = 1;
const TCA_TBF_RATE64: u16 = 4;
const TCA_TBF_BURST: u16 = 6;
const TC_LINKLAYER_ETHERNET: u8 = 1;
/// The kernel's psched tick is 2^PSCHED_SHIFT ns (64 ns).
const PSCHED_TICK_NS: f64 = 64.0;

/// A tbf: rate in bytes per second, burst (bucket) in bytes, and the
/// queue's limit in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tbf {
    pub rate_bytes: u64,
    pub burst: u32,
    pub limit: u32,
}

fn bad(msg: String) -> crate::Error {
    crate::Error::Invalid(msg)
}

/// The number and the unit of a word like `1gbit` or `2.5ms`.
fn split(word: &str) -> (f64, String) {
    let end = word
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(word.len());
    let n = word[..end].parse().unwrap_or(f64::NAN);
    (n, word[end..].to_ascii_lowercase())
}

/// A rate as tc writes it (`100mbit`, `1gbit`, `125MBps`), in bytes/s.
pub fn parse_rate(word: &str) -> crate::Result<u64> {
    let (n, unit) = split(word);
    let bits = match unit.as_str() {
        "bit" => 1.0,
        "kbit" => 1e3,
        "mbit" => 1e6,
        "gbit" => 1e9,
        "tbit" => 1e12,
        "kibit" => 1024.0,
        "mibit" => 1024.0 * 1024.0,
        "gibit" => 1024.0 * 1024.0 * 1024.0,
        "bps" => 8.0,
        "kbps" => 8e3,
        "mbps" => 8e6,
        "gbps" => 8e9,
        _ => {
            return Err(bad(format!(
                "rate {word:?}: give a number with a unit (bit, kbit, mbit, gbit, tbit, bps, kbps, mbps, gbps)"
            )))
        }
    };
    let bytes = n * bits / 8.0;
    if !(1.0..1e15).contains(&bytes) {
        return Err(bad(format!("rate {word:?} is out of range")));
    }
    Ok(bytes as u64)
}

/// A size as tc writes it (`256kb` is 256 KiB; `kbit` is 128 bytes), in bytes.
pub fn parse_size(word: &str) -> crate::Result<u32> {
    let (n, unit) = split(word);
    let scale = match unit.as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1024.0,
        "m" | "mb" => 1024.0 * 1024.0,
        "g" | "gb" => 1024.0 * 1024.0 * 1024.0,
        "kbit" => 1024.0 / 8.0,
        "mbit" => 1024.0 * 1024.0 / 8.0,
        "gbit" => 1024.0 * 1024.0 * 1024.0 / 8.0,
        _ => {
            return Err(bad(format!(
                "size {word:?}: units are b, kb, mb, gb, kbit, mbit, gbit"
            )))
        }
    };
    let v = n * scale;
    if !(1.0..=f64::from(u32::MAX)).contains(&v) {
        return Err(bad(format!("size {word:?} is out of range")));
    }
    Ok(v as u32)
}

/// A time as tc writes it (`10ms`, `1s`; bare numbers are µs), in µs.
pub fn parse_time_us(word: &str) -> crate::Result<f64> {
    let (n, unit) = split(word);
    let scale = match unit.as_str() {
        "s" | "sec" | "secs" => 1e6,
        "ms" | "msec" | "msecs" => 1e3,
        "" | "us" | "usec" | "usecs" => 1.0,
        _ => return Err(bad(format!("time {word:?}: units are s, ms, us"))),
    };
    if !(0.0..1e12).contains(&(n * scale)) {
        return Err(bad(format!("time {word:?} is out of range")));
    }
    Ok(n * scale)
}

impl Tbf {
    /// The spec words after `root`: `tbf rate R burst B (latency L | limit
    /// N)`, the subset of tc's syntax testbeds use; anything else is
    /// refused, not ignored.
    pub fn parse(spec: &[&str]) -> crate::Result<Tbf> {
        let whole = || spec.join(" ");
        let Some((&"tbf", rest)) = spec.split_first() else {
            return Err(bad(format!(
                "qdisc {:?}: only tbf (rate, burst, latency or limit) is supported",
                whole()
            )));
        };
        if rest.len() % 2 != 0 {
            return Err(bad(format!(
                "qdisc {:?}: every option takes a value",
                whole()
            )));
        }
        let (mut rate, mut burst, mut latency, mut limit) = (None, None, None, None);
        for kv in rest.chunks(2) {
            match kv[0] {
                "rate" => rate = Some(parse_rate(kv[1])?),
                "burst" | "buffer" | "maxburst" => burst = Some(parse_size(kv[1])?),
                "latency" => latency = Some(parse_time_us(kv[1])?),
                "limit" => limit = Some(parse_size(kv[1])?),
                k => {
                    return Err(bad(format!(
                        "qdisc {:?}: unsupported tbf option {k:?}",
                        whole()
                    )))
                }
            }
        }
        let (Some(rate_bytes), Some(burst)) = (rate, burst) else {
            return Err(bad(format!(
                "qdisc {:?}: tbf needs rate and burst",
                whole()
            )));
        };
        let limit = match (latency, limit) {
            // As tc computes it: what the rate drains in `latency`, plus the bucket.
            (Some(us), None) => {
                (rate_bytes as f64 * us / 1e6 + f64::from(burst)).min(f64::from(u32::MAX)) as u32
            }
            (None, Some(l)) => l,
            _ => {
                return Err(bad(format!(
                    "qdisc {:?}: tbf needs exactly one of latency and limit",
                    whole()
                )))
            }
        };
        Ok(Tbf {
            rate_bytes,
            burst,
            limit,
        })
    }

    /// struct tc_tbf_qopt as iproute2 fills it: the rate (capped at 32
    /// bits, the rest in TCA_TBF_RATE64) with linklayer ethernet, no peak
    /// rate, the limit, and the bucket as a transmit time in psched ticks.
    pub fn qopt(&self) -> Vec<u8> {
        let rate32 = self.rate_bytes.min(u64::from(u32::MAX)) as u32;
        let mut b = Vec::with_capacity(36);
        // tc_ratespec: cell_log, linklayer, overhead, cell_align, mpu, rate.
        b.extend_from_slice(&[3, TC_LINKLAYER_ETHERNET]);
        b.extend_from_slice(&0u16.to_ne_bytes());
        b.extend_from_slice(&(-1i16).to_ne_bytes());
        b.extend_from_slice(&0u16.to_ne_bytes());
        b.extend_from_slice(&rate32.to_ne_bytes());
        b.extend_from_slice(&[0; 12]); // peakrate: none
        let ticks = (f64::from(self.burst) / rate32 as f64 * 1e9 / PSCHED_TICK_NS).ceil();
        for v in [self.limit, ticks.min(f64::from(u32::MAX)) as u32, 0] {
            b.extend_from_slice(&v.to_ne_bytes());
        }
        b
    }

    /// The TCA_OPTIONS attributes: parameters, burst in bytes, and the
    /// 64-bit rate when it does not fit 32 bits.
    pub fn options(&self) -> Vec<TcOption> {
        let mut o = vec![
            TcOption::Other(DefaultNla::new(TCA_TBF_PARMS, self.qopt())),
            TcOption::Other(DefaultNla::new(
                TCA_TBF_BURST,
                self.burst.to_ne_bytes().to_vec(),
            )),
        ];
        if self.rate_bytes > u64::from(u32::MAX) {
            o.push(TcOption::Other(DefaultNla::new(
                TCA_TBF_RATE64,
                self.rate_bytes.to_ne_bytes().to_vec(),
            )));
        }
        o
    }
}

/// The request: this tbf as the root qdisc of interface `index`, replacing
/// whatever is there.
pub fn replace_root_request(index: u32, tbf: &Tbf) -> RouteNetlinkMessage {
    let mut m = TcMessage::default();
    m.header.index = index as i32;
    m.header.parent = TcHandle::ROOT;
    m.attributes.push(TcAttribute::Kind("tbf".into()));
    m.attributes.push(TcAttribute::Options(tbf.options()));
    RouteNetlinkMessage::NewQueueDiscipline(m)
}

/// Make `tbf` the root qdisc of interface `index` in the calling thread's
/// namespace.
pub fn replace_root(index: u32, tbf: &Tbf) -> Result<(), NlError> {
    super::ask(
        replace_root_request(index, tbf),
        NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
    )
    .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_as_tc_reads_them() {
        assert_eq!(parse_rate("1gbit").unwrap(), 125_000_000);
        assert_eq!(parse_rate("100Mbit").unwrap(), 12_500_000);
        assert_eq!(parse_rate("2MBps").unwrap(), 2_000_000);
        assert!(parse_rate("100").is_err(), "no unit");
        assert!(parse_rate("fastbit").is_err());
        assert_eq!(parse_size("256kb").unwrap(), 262_144);
        assert_eq!(parse_size("1500").unwrap(), 1500);
        assert_eq!(parse_size("8kbit").unwrap(), 1024);
        assert!(parse_size("5gb").is_err(), "over 32 bits");
        assert_eq!(parse_time_us("10ms").unwrap(), 10_000.0);
        assert_eq!(parse_time_us("1.5s").unwrap(), 1_500_000.0);
        assert!(parse_time_us("3h").is_err());
    }

    #[test]
    fn the_demo_shaper() {
        let t = Tbf::parse(&["tbf", "rate", "1gbit", "burst", "256kb", "latency", "10ms"]).unwrap();
        // tc: limit = 125e6 B/s * 10 ms + 256 KiB.
        assert_eq!(
            t,
            Tbf {
                rate_bytes: 125_000_000,
                burst: 262_144,
                limit: 1_250_000 + 262_144
            }
        );
        let q = t.qopt();
        assert_eq!(q.len(), 36);
        assert_eq!(&q[..2], &[3, TC_LINKLAYER_ETHERNET]);
        assert_eq!(
            u32::from_ne_bytes(q[8..12].try_into().unwrap()),
            125_000_000
        );
        // 256 KiB at 125 MB/s: 2.097152 ms, in 64 ns ticks.
        assert_eq!(u32::from_ne_bytes(q[28..32].try_into().unwrap()), 32_768);
        assert_eq!(t.options().len(), 2, "no 64-bit rate needed");
    }

    #[test]
    fn fast_rates_go_in_64_bits() {
        let t = Tbf::parse(&["tbf", "rate", "40gbit", "burst", "1mb", "limit", "4mb"]).unwrap();
        assert_eq!((t.rate_bytes, t.limit), (5_000_000_000, 4 << 20));
        assert_eq!(
            u32::from_ne_bytes(t.qopt()[8..12].try_into().unwrap()),
            u32::MAX
        );
        assert_eq!(t.options().len(), 3);
    }

    #[test]
    fn what_is_not_a_supported_tbf_is_refused() {
        for spec in [
            &["netem", "delay", "10ms"][..],
            &["tbf", "rate", "1gbit", "burst", "256kb"],
            &[
                "tbf", "rate", "1gbit", "burst", "256kb", "latency", "1ms", "limit", "1mb",
            ],
            &[
                "tbf", "rate", "1gbit", "burst", "256kb", "peakrate", "2gbit",
            ],
            &["tbf", "rate"],
            &[],
        ] {
            assert!(Tbf::parse(spec).is_err(), "{spec:?}");
        }
    }
}
