//! Wire-speed arithmetic: link speeds as people write them, and the best
//! TCP goodput a link allows, counted the way the link (or the shaper that
//! stands in for it) counts bytes.

use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// How the link's rate counts a frame.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Framing {
    /// A real Ethernet link: preamble and SFD (8), header (14), FCS (4) and
    /// inter-frame gap (12) per frame: 38 bytes beyond the IP packet.
    #[default]
    Ethernet,
    /// A `tc tbf` shaper: it counts the L2 frame as the kernel holds it,
    /// header (14) but no FCS, preamble or gap.
    Shaper,
}

impl Framing {
    /// Bytes per frame beyond the IP packet.
    pub fn overhead(self) -> u32 {
        match self {
            Framing::Ethernet => 38,
            Framing::Shaper => 14,
        }
    }
}

/// TCP/IP header bytes per segment: IPv4 (20), TCP (20), timestamps (12).
pub const TCP_IP_HEADERS: u32 = 52;

/// The best TCP goodput in bits/s on a link of `link_bps` with this MTU:
/// 1448/1538 of 1 Gb/s (941.5 Mb/s) on Ethernet, 1448/1514 (956.6 Mb/s)
/// through a shaper.
pub fn best_goodput(link_bps: f64, mtu: u32, framing: Framing) -> f64 {
    let payload = mtu.saturating_sub(TCP_IP_HEADERS) as f64;
    link_bps * payload / (mtu + framing.overhead()) as f64
}

/// Parse a link speed: `1G`, `10Gbit`, `100M`, `2.5G`, `1000000000`
/// (decimal, bits per second).
pub fn parse_speed(s: &str) -> Result<f64> {
    let t = s.trim().to_ascii_lowercase();
    let t = t
        .trim_end_matches("bit/s")
        .trim_end_matches("bps")
        .trim_end_matches("bit")
        .trim_end_matches("b/s");
    let (num, unit) = crate::units::split_number(t);
    let v: f64 = num.parse().map_err(|_| {
        Error::Invalid(format!(
            "link speed {s:?} does not parse: use e.g. \"1G\", \"10G\", \"100M\""
        ))
    })?;
    let mult = match unit.trim() {
        "" => 1.0,
        "k" => 1e3,
        "m" => 1e6,
        "g" => 1e9,
        "t" => 1e12,
        _ => {
            return Err(Error::Invalid(format!(
                "link speed {s:?} has an unknown unit: use K, M, G or T"
            )))
        }
    };
    let bps = v * mult;
    if !(bps.is_finite() && bps > 0.0) {
        return Err(Error::Invalid(format!("link speed {s:?} must be positive")));
    }
    Ok(bps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn best_goodputs_match_the_known_figures() {
        let e = best_goodput(1e9, 1500, Framing::Ethernet);
        assert!((e - 941.48e6).abs() < 0.01e6, "{e}");
        let s = best_goodput(1e9, 1500, Framing::Shaper);
        assert!((s - 956.41e6).abs() < 0.01e6, "{s}");
    }

    #[test]
    fn speeds() {
        assert_eq!(parse_speed("1G").unwrap(), 1e9);
        assert_eq!(parse_speed("2.5Gbit").unwrap(), 2.5e9);
        assert_eq!(parse_speed("100M").unwrap(), 1e8);
        assert_eq!(parse_speed("1000").unwrap(), 1e3);
        assert!(parse_speed("fast").is_err());
        assert!(parse_speed("0G").is_err());
        assert!(parse_speed("1X").is_err());
    }
}
