//! Transaction latency in an HdrHistogram (3 significant digits, 1 ns to
//! 100 s), its percentile summary, and its standard portable form: the V2
//! deflate encoding in base64, which HdrHistogram's own tools read, so
//! histograms from several runs and hosts can be merged exactly.

use crate::{Error, Result};
use base64::Engine as _;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};

/// Longest latency recorded exactly; longer ones are clamped to it.
pub const MAX_NS: u64 = 100_000_000_000;

/// A histogram of nanoseconds.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_NS, 3).expect("valid bounds")
}

/// An interval's histogram, shared by a flow (which records) and the
/// sampler (which takes and resets it each tick).
pub type Shared = Arc<Mutex<Histogram<u64>>>;

/// A fresh shared histogram.
pub fn shared() -> Shared {
    Arc::new(Mutex::new(new_histogram()))
}

/// The figures users read, in microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    pub count: u64,
    pub min_us: f64,
    pub mean_us: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub p9999_us: f64,
    pub max_us: f64,
}

/// The percentiles of `h` (all zero when empty).
pub fn percentiles(h: &Histogram<u64>) -> Percentiles {
    if h.is_empty() {
        return Percentiles::default();
    }
    let us = |ns: u64| ns as f64 / 1000.0;
    let q = |p: f64| us(h.value_at_quantile(p));
    Percentiles {
        count: h.len(),
        min_us: us(h.min()),
        mean_us: h.mean() / 1000.0,
        p50_us: q(0.5),
        p90_us: q(0.9),
        p99_us: q(0.99),
        p999_us: q(0.999),
        p9999_us: q(0.9999),
        max_us: us(h.max()),
    }
}

/// `h` as base64 of its V2 deflate encoding.
pub fn encode(h: &Histogram<u64>) -> String {
    let mut bytes = Vec::new();
    V2DeflateSerializer::new()
        .serialize(h, &mut bytes)
        .expect("serializing to memory");
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Read what [`encode`] wrote (or any HdrHistogram V2 base64 form).
pub fn decode(s: &str) -> Result<Histogram<u64>> {
    // The deserializer sizes its buffer from lengths inside the encoding:
    // check them against what is actually there before it runs, so a
    // hostile histogram cannot make it allocate gigabytes.
    if s.len() > MAX_ENCODED {
        return Err(Error::Invalid(format!(
            "latency histogram is {} bytes of base64, more than the {MAX_ENCODED} any real one needs",
            s.len()
        )));
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .map_err(|e| Error::Invalid(format!("latency histogram is not base64: {e}")))?;
    check_lengths(&bytes)?;
    Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|e| Error::Invalid(format!("latency histogram does not decode: {e:?}")))
}

/// Longest base64 histogram accepted: a full 1 ns..100 s histogram at 3
/// digits encodes to a few tens of KiB.
const MAX_ENCODED: usize = 4 << 20;

/// The V2 deflate framing: cookie, compressed length, then a zlib stream
/// whose V2 header (cookie, payload length, ...) must not claim more than
/// the histogram's range can hold.
fn check_lengths(b: &[u8]) -> Result<()> {
    use std::io::Read;
    let bad = |why: &str| Err(Error::Invalid(format!("latency histogram: {why}")));
    if b.len() < 8 {
        return bad("too short");
    }
    let clen = u32::from_be_bytes([b[4], b[5], b[6], b[7]]) as usize;
    if clen > b.len() - 8 {
        return bad("its compressed length runs past its end");
    }
    // the inner header: cookie, payload length
    let mut head = [0u8; 8];
    let mut z = flate2::read::ZlibDecoder::new(&b[8..8 + clen]);
    if z.read_exact(&mut head).is_err() {
        return bad("its compressed data does not inflate");
    }
    let payload = u32::from_be_bytes([head[4], head[5], head[6], head[7]]) as usize;
    // at most one LEB128 count (9 bytes) per bucket of a 1..MAX_NS, 3-digit histogram
    if payload > new_histogram().distinct_values() * 9 {
        return bad("its payload length is larger than any histogram of its range");
    }
    Ok(())
}

/// Several encoded histograms added into one (runs, hosts, streams).
pub fn merge<'a>(encoded: impl IntoIterator<Item = &'a str>) -> Result<Histogram<u64>> {
    let mut all = new_histogram();
    for e in encoded {
        all.add(decode(e)?)
            .map_err(|e| Error::Invalid(format!("adding histograms: {e:?}")))?;
    }
    Ok(all)
}

/// The percentile curve of `h`, as HdrHistogram's percentile output
/// gives it: (quantile, microseconds) points, ever denser towards the
/// tail. The last point, the maximum, sits at quantile 1 - 1/count (where
/// one transaction in `count` lies beyond), not at 1, so that a plot
/// against 1/(1-q) can place it. Empty for an empty histogram.
pub fn curve(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    if h.is_empty() {
        return Vec::new();
    }
    let last = 1.0 - 1.0 / h.len() as f64;
    let mut v: Vec<(f64, f64)> = h
        .iter_quantiles(5)
        .map(|x| {
            (
                x.quantile_iterated_to(),
                x.value_iterated_to() as f64 / 1000.0,
            )
        })
        .filter(|&(q, _)| q < last)
        .collect();
    v.push((last, h.max() as f64 / 1000.0));
    v
}

/// Record one latency, clamped to the histogram's range.
pub fn record(h: &mut Histogram<u64>, ns: u64) {
    let _ = h.record(ns.clamp(1, MAX_NS));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_ordered_and_near_the_truth() {
        let mut h = new_histogram();
        for v in 1..=10_000u64 {
            record(&mut h, v * 1000); // 1 us .. 10 ms
        }
        let p = percentiles(&h);
        assert_eq!(p.count, 10_000);
        assert!((p.p50_us - 5000.0).abs() / 5000.0 < 0.002, "{p:?}");
        assert!((p.p99_us - 9900.0).abs() / 9900.0 < 0.002, "{p:?}");
        assert!(p.min_us <= p.p50_us && p.p50_us <= p.p90_us && p.p90_us <= p.p99_us);
        assert!(p.p99_us <= p.p999_us && p.p999_us <= p.p9999_us && p.p9999_us <= p.max_us);
        assert_eq!(percentiles(&new_histogram()), Percentiles::default());
    }

    #[test]
    fn curve_climbs_to_the_max_at_one_in_count() {
        let mut h = new_histogram();
        for v in 1..=1000u64 {
            record(&mut h, v * 1000); // 1 us .. 1 ms
        }
        let c = curve(&h);
        assert!(c.len() > 20, "{c:?}");
        assert!(
            c.windows(2).all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1),
            "{c:?}"
        );
        assert!(c[0].0 < 0.01 && c[0].1 < 2.0, "{:?}", c[0]);
        let (q, us) = *c.last().unwrap();
        assert!(
            (q - 0.999).abs() < 1e-12 && (us - 1000.0).abs() < 1.0,
            "{q} {us}"
        );
        let mid = c.iter().find(|p| p.0 >= 0.5).unwrap();
        assert!((mid.1 - 500.0).abs() < 5.0, "{mid:?}");
        assert!(curve(&new_histogram()).is_empty());
    }

    #[test]
    fn encoding_round_trips_and_merges() {
        let mut a = new_histogram();
        let mut b = new_histogram();
        record(&mut a, 1_000);
        record(&mut b, 2_000_000);
        record(&mut b, 0); // clamped, not lost
        let m = merge([encode(&a).as_str(), encode(&b).as_str()]).unwrap();
        assert_eq!(m.len(), 3);
        assert_eq!(decode(&encode(&a)).unwrap(), a);
        assert!(decode("not base64!").is_err());
        assert!(decode("AAAA").is_err());
        // A V2 deflate cookie claiming a 4 GiB payload is refused before
        // anything is allocated for it.
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut z, &[0x1c, 0x84, 0x93, 0x13, 0xff, 0xff, 0xff, 0xf0])
            .unwrap();
        let inner = z.finish().unwrap();
        let mut hostile = vec![0x1c, 0x84, 0x93, 0x14];
        hostile.extend_from_slice(&(inner.len() as u32).to_be_bytes());
        hostile.extend_from_slice(&inner);
        let e = decode(&base64::engine::general_purpose::STANDARD.encode(hostile)).unwrap_err();
        assert!(e.to_string().contains("payload length"), "{e}");
    }
}
