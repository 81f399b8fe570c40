//! The Internet checksum (RFC 1071): one's-complement sum of 16-bit words.
//!
//! The bulk sum reads 8 bytes at a time as one big-endian `u64` and adds them
//! into a `u128`, which cannot overflow for any slice that fits in memory;
//! the result is folded only once. Because 2^16 ≡ 1 (mod 0xffff), a sum of
//! 64-bit words folds to the same 16-bit one's-complement sum as a sum of
//! 16-bit words, so the wide sum is exact, not an approximation.
//! Pseudo-header sums (RFC 793 / RFC 8200) and the RFC 1624 incremental
//! update let callers fix a checksum without re-summing a whole packet.

use std::net::{Ipv4Addr, Ipv6Addr};

/// Fold a 128-bit sum down to 64 bits with end-around carry, keeping its
/// value modulo 0xffff.
#[inline]
fn fold128(s: u128) -> u64 {
    let (v, c) = (s as u64).overflowing_add((s >> 64) as u64);
    v + u64::from(c)
}

/// Add two partial sums with end-around carry (so the result stays a valid
/// partial sum whatever their size).
#[inline]
pub fn add(a: u64, b: u64) -> u64 {
    let (v, c) = a.overflowing_add(b);
    v + u64::from(c)
}

/// Sum `data` as big-endian 16-bit words into `acc` (not yet folded; only
/// the value after [`finish`] is meaningful). An odd final byte is padded
/// with zero, as RFC 1071 says, so only the last slice of a sequence of
/// calls may have odd length.
pub fn sum(acc: u64, data: &[u8]) -> u64 {
    let mut wide: u128 = 0;
    let mut chunks = data.chunks_exact(32);
    for c in &mut chunks {
        // four independent loads per round: the adds pipeline
        let a = u64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        let b = u64::from_be_bytes([c[8], c[9], c[10], c[11], c[12], c[13], c[14], c[15]]);
        let d = u64::from_be_bytes([c[16], c[17], c[18], c[19], c[20], c[21], c[22], c[23]]);
        let e = u64::from_be_bytes([c[24], c[25], c[26], c[27], c[28], c[29], c[30], c[31]]);
        wide += u128::from(a) + u128::from(b) + u128::from(d) + u128::from(e);
    }
    let mut eights = chunks.remainder().chunks_exact(8);
    for c in &mut eights {
        wide += u128::from(u64::from_be_bytes([
            c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7],
        ]));
    }
    let mut twos = eights.remainder().chunks_exact(2);
    for c in &mut twos {
        wide += u128::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = twos.remainder() {
        wide += u128::from(*last) << 8;
    }
    add(acc, fold128(wide))
}

/// Fold a sum to 16 bits and complement it.
pub fn finish(mut acc: u64) -> u16 {
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// The checksum of `data`.
pub fn checksum(data: &[u8]) -> u16 {
    finish(sum(0, data))
}

/// The partial sum of the IPv4 pseudo-header for TCP/UDP (RFC 793 3.1):
/// addresses, protocol and the upper-layer length.
pub fn pseudo_header_v4(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, len: u16) -> u64 {
    let mut acc = sum(0, &src.octets());
    acc = sum(acc, &dst.octets());
    acc + u64::from(protocol) + u64::from(len)
}

/// The partial sum of the IPv6 pseudo-header (RFC 8200 8.1): addresses,
/// 32-bit upper-layer length and next header.
pub fn pseudo_header_v6(src: Ipv6Addr, dst: Ipv6Addr, next_header: u8, len: u32) -> u64 {
    let mut acc = sum(0, &src.octets());
    acc = sum(acc, &dst.octets());
    acc + u64::from(len >> 16) + u64::from(len & 0xffff) + u64::from(next_header)
}

/// The pseudo-header sum for either family; a mixed pair (a caller's bug)
/// is summed with the IPv4 address mapped into IPv6 rather than panicking.
pub fn pseudo_header(src: std::net::IpAddr, dst: std::net::IpAddr, protocol: u8, len: u32) -> u64 {
    use std::net::IpAddr::V4;
    match (src, dst) {
        (V4(s), V4(d)) => pseudo_header_v4(s, d, protocol, len as u16),
        (s, d) => pseudo_header_v6(to_v6(s), to_v6(d), protocol, len),
    }
}

fn to_v6(a: std::net::IpAddr) -> Ipv6Addr {
    match a {
        std::net::IpAddr::V4(a) => a.to_ipv6_mapped(),
        std::net::IpAddr::V6(a) => a,
    }
}

/// RFC 1624 eqn. 3: the new checksum after one 16-bit word of the covered
/// data changed from `old` to `new`, without touching the rest:
/// `HC' = ~(~HC + ~m + m')`. Correct also for the 0x0000/0xffff corner
/// that RFC 1141's formula got wrong.
pub fn update(check: u16, old: u16, new: u16) -> u16 {
    let acc = u64::from(!check) + u64::from(!old) + u64::from(new);
    finish(acc)
}

/// [`update`] for a 32-bit field (an IPv4 address, a sequence number).
pub fn update32(check: u16, old: u32, new: u32) -> u16 {
    let c = update(check, (old >> 16) as u16, (new >> 16) as u16);
    update(c, old as u16, new as u16)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The definition, word by word: slow and obviously right.
    fn reference(data: &[u8]) -> u16 {
        let mut acc: u32 = 0;
        for (i, b) in data.iter().enumerate() {
            acc += if i % 2 == 0 {
                u32::from(*b) << 8
            } else {
                u32::from(*b)
            };
            acc = (acc & 0xffff) + (acc >> 16);
        }
        !(acc as u16)
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3: 0001 f203 f4f5 f6f7 sums to ddf2 (before complement)
        let d = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(checksum(&d), !0xddf2);
    }

    #[test]
    fn a_valid_header_checks_to_zero() {
        // a real IPv4 header with its checksum in place
        let h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(checksum(&h), 0);
        assert_eq!(checksum(&[0xff]), !0xff00);
    }

    #[test]
    fn all_ones_does_not_overflow() {
        let d = vec![0xffu8; 70_001];
        assert_eq!(checksum(&d), reference(&d));
        assert_eq!(add(u64::MAX, 1), 1, "end-around carry");
    }

    #[test]
    fn incremental_update_matches_recompute() {
        let mut h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        // decrement the TTL (word 4: ttl|proto)
        let old = u16::from_be_bytes([h[8], h[9]]);
        h[8] -= 1;
        let new = u16::from_be_bytes([h[8], h[9]]);
        let c = update(0xb861, old, new);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        assert_eq!(checksum(&h), 0);
        // change the source address
        let old = u32::from_be_bytes([h[12], h[13], h[14], h[15]]);
        h[12..16].copy_from_slice(&[10, 1, 2, 3]);
        let c = update32(c, old, 0x0a01_0203);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        assert_eq!(checksum(&h), 0);
    }

    proptest! {
        #[test]
        fn fast_sum_equals_reference(data in proptest::collection::vec(any::<u8>(), 0..3000)) {
            prop_assert_eq!(checksum(&data), reference(&data));
        }

        #[test]
        fn split_sums_combine(data in proptest::collection::vec(any::<u8>(), 0..600), cut in 0usize..300) {
            let cut = (cut * 2).min(data.len() & !1);
            let acc = sum(sum(0, &data[..cut]), &data[cut..]);
            prop_assert_eq!(finish(acc), reference(&data));
        }

        #[test]
        fn update_equals_recompute(mut data in proptest::collection::vec(any::<u8>(), 2..64), at in 0usize..32, new in any::<u16>()) {
            let at = (at * 2) % (data.len() & !1);
            let before = checksum(&data);
            let old = u16::from_be_bytes([data[at], data[at + 1]]);
            data[at..at + 2].copy_from_slice(&new.to_be_bytes());
            // equal as one's-complement values: 0x0000 and 0xffff both mean zero
            let inc = update(before, old, new);
            let full = checksum(&data);
            prop_assert!(inc == full || (inc | full) == 0xffff && (inc & full) == 0, "{inc:#x} vs {full:#x}");
        }
    }
}
