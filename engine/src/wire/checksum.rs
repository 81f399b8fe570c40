//! The Internet checksum (RFC 1071): one's-complement sum of 16-bit words.
//!
//! The bulk sum adds native-endian 32-bit words into 64-bit lanes, which
//! the compiler vectorizes, and folds and byte-swaps once at the end:
//! because 2^16 ≡ 1 (mod 0xffff) and the one's-complement sum does not
//! depend on byte order (RFC 1071 2(B)), this is exact, not an approximation.
//! Pseudo-header sums (RFC 793 / RFC 8200) and the RFC 1624 incremental
//! update let callers fix a checksum without re-summing a whole packet.

use std::net::{Ipv4Addr, Ipv6Addr};

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
///
/// Native-endian words are summed (no byte swaps): one's-complement sums
/// do not depend on byte order (RFC 1071 2(B)), so the native sum is
/// folded to 16 bits and swapped once at the end. On x86-64 the bulk goes
/// through AVX2 (or SSE2) vector adds of 16-bit words widened to 32 bits.
#[inline]
pub fn sum(acc: u64, data: &[u8]) -> u64 {
    let (mut s, done) = bulk_sum(data);
    // the rest (all of a header) as 64-bit words with end-around carry
    let mut eights = data[done..].chunks_exact(8);
    for c in &mut eights {
        s = add(
            s,
            u64::from_ne_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]),
        );
    }
    let mut rest = eights.remainder();
    if let [a, b, c, d, tail @ ..] = rest {
        s = add(s, u64::from(u32::from_ne_bytes([*a, *b, *c, *d])));
        rest = tail;
    }
    if let [a, b, tail @ ..] = rest {
        s = add(s, u64::from(u16::from_ne_bytes([*a, *b])));
        rest = tail;
    }
    if let [a] = rest {
        // padded with a zero byte after it, as RFC 1071 says
        s = add(s, u64::from(u16::from_ne_bytes([*a, 0])));
    }
    add(acc, u64::from(u16::from_be(fold16(s))))
}

/// Copy `src` into `dst` (of the same length) and return [`sum`]`(acc,
/// src)`: one pass over the bytes instead of two, for a payload that is
/// copied into a frame and then summed. `src` is summed as if it started
/// at an even offset of the checksummed data; for a piece that starts at
/// an odd one, swap the bytes of its sum (see [`sum_at_odd`]).
#[inline]
pub fn copy_sum(acc: u64, dst: &mut [u8], src: &[u8]) -> u64 {
    assert_eq!(dst.len(), src.len(), "copy_sum needs equal lengths");
    copy_sum_run(acc, dst, src)
}

/// [`copy_sum`] without aligning the destination first.
#[inline]
fn copy_sum_run(acc: u64, dst: &mut [u8], src: &[u8]) -> u64 {
    let (s, done) = bulk_copy_sum(dst, src);
    dst[done..].copy_from_slice(&src[done..]);
    add(sum(acc, &src[done..]), u64::from(u16::from_be(fold16(s))))
}

/// The partial sum of a piece placed at an odd offset of the checksummed
/// data, from the sum [`sum`] or [`copy_sum`] gave for it alone (with
/// `acc` 0): its bytes swap roles (RFC 1071 2(B)).
#[inline]
pub fn sum_at_odd(piece: u64) -> u64 {
    u64::from(fold16(piece).swap_bytes())
}

#[cfg(target_arch = "x86_64")]
#[inline]
fn bulk_copy_sum(dst: &mut [u8], src: &[u8]) -> (u64, usize) {
    if src.len() < 64 || !std::arch::is_x86_feature_detected!("avx2") {
        return (0, 0);
    }
    // SAFETY: the CPU has AVX2; the lengths are equal (checked by the caller)
    unsafe { x86::copy_sum_avx2(dst, src) }
}

#[cfg(not(target_arch = "x86_64"))]
#[inline]
fn bulk_copy_sum(_dst: &mut [u8], _src: &[u8]) -> (u64, usize) {
    (0, 0)
}

/// The native-endian sum of a leading part of `data` (a multiple of 32
/// bytes) by vector adds, and its length; the caller sums the rest. The
/// sum stays below 2^63 for any slice that fits in memory.
#[cfg(target_arch = "x86_64")]
#[inline]
fn bulk_sum(data: &[u8]) -> (u64, usize) {
    if data.len() < 64 {
        return (0, 0);
    }
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2
        unsafe { x86::sum_avx2(data) }
    } else {
        // SAFETY: SSE2 is part of x86-64
        unsafe { x86::sum_sse2(data) }
    }
}

#[cfg(not(target_arch = "x86_64"))]
#[inline]
fn bulk_sum(_data: &[u8]) -> (u64, usize) {
    (0, 0)
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// Iterations between flushes of the 32-bit lanes: each lane gains at
    /// most 0xffff per iteration, so 2^15 of them cannot overflow.
    const BLOCK: usize = 1 << 15;

    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn sum_avx2(data: &[u8]) -> (u64, usize) {
        // SAFETY: no copy: the destination is never written
        unsafe { sum_avx2_kernel::<false>(std::ptr::null_mut(), data) }
    }

    /// [`sum_avx2`] that also stores each 32 bytes into `dst`, in the same
    /// pass (each byte is loaded once).
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn copy_sum_avx2(dst: &mut [u8], src: &[u8]) -> (u64, usize) {
        let n = src.len().min(dst.len());
        // SAFETY: `dst` holds the first `n` bytes of `src` that are copied
        unsafe { sum_avx2_kernel::<true>(dst.as_mut_ptr(), &src[..n]) }
    }

    /// The native-endian sum of the leading multiple of 32 bytes of `src`
    /// and its length; with `COPY`, those bytes are also stored to `dst`
    /// (which must have room for them). The 16-bit words of each 32-bit
    /// lane are split by mask and shift rather than by unpacking (fewer
    /// shuffles, which have one port); two vectors per iteration give two
    /// chains of adds.
    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn sum_avx2_kernel<const COPY: bool>(dst: *mut u8, src: &[u8]) -> (u64, usize) {
        let n = src.len() / 32;
        let p = src.as_ptr();
        let zero = _mm256_setzero_si256();
        let mask = _mm256_set1_epi32(0xffff);
        // one vector at byte `at` into the accumulators (lo, hi)
        let step = |lo: &mut __m256i, hi: &mut __m256i, at: usize| {
            // SAFETY: the caller passes `at` with 32 bytes of `src` (and,
            // with COPY, of `dst`) from it
            let v = unsafe { _mm256_loadu_si256(p.add(at).cast()) };
            if COPY {
                // stored by asm: the compiler would otherwise split the
                // loop into a memcpy call and a sum, reading each byte twice
                // SAFETY: 32 bytes of `dst` at `at`, as above
                unsafe {
                    std::arch::asm!(
                        "vmovdqu ymmword ptr [{d}], {v}",
                        d = in(reg) dst.add(at),
                        v = in(ymm_reg) v,
                        options(nostack, preserves_flags)
                    );
                }
            }
            *lo = _mm256_add_epi32(*lo, _mm256_and_si256(v, mask));
            *hi = _mm256_add_epi32(*hi, _mm256_srli_epi32(v, 16));
        };
        let mut total = 0u64;
        let mut i = 0;
        while i < n {
            let end = (i + BLOCK).min(n);
            let [mut a, mut b, mut c, mut d] = [zero; 4];
            while i + 2 <= end {
                step(&mut a, &mut b, 32 * i);
                step(&mut c, &mut d, 32 * i + 32);
                i += 2;
            }
            if i < end {
                step(&mut a, &mut b, 32 * i);
                i += 1;
            }
            // lanes below 2^31 each (at most 0xffff per vector, 2^15
            // vectors per block), widened before the total
            let mut lanes = [0u32; 32];
            for (k, v) in [a, b, c, d].into_iter().enumerate() {
                // SAFETY: `lanes` holds 8 lanes per accumulator
                unsafe { _mm256_storeu_si256(lanes.as_mut_ptr().add(8 * k).cast(), v) };
            }
            total += lanes.iter().map(|&l| u64::from(l)).sum::<u64>();
        }
        (total, 32 * n)
    }

    #[target_feature(enable = "sse2")]
    pub(super) unsafe fn sum_sse2(data: &[u8]) -> (u64, usize) {
        let n = data.len() / 32;
        let p = data.as_ptr();
        let zero = _mm_setzero_si128();
        let mut total = 0u64;
        let mut i = 0;
        while i < n {
            let end = (i + BLOCK).min(n);
            let (mut a, mut b, mut c, mut d) = (zero, zero, zero, zero);
            while i < end {
                // SAFETY: i < n, so the 32 bytes at 32 * i are in `data`
                let (v, w) = unsafe {
                    (
                        _mm_loadu_si128(p.add(32 * i).cast()),
                        _mm_loadu_si128(p.add(32 * i + 16).cast()),
                    )
                };
                a = _mm_add_epi32(a, _mm_unpacklo_epi16(v, zero));
                b = _mm_add_epi32(b, _mm_unpackhi_epi16(v, zero));
                c = _mm_add_epi32(c, _mm_unpacklo_epi16(w, zero));
                d = _mm_add_epi32(d, _mm_unpackhi_epi16(w, zero));
                i += 1;
            }
            let mut lanes = [0u32; 16];
            // SAFETY: `lanes` holds 64 bytes
            unsafe {
                _mm_storeu_si128(lanes.as_mut_ptr().cast(), a);
                _mm_storeu_si128(lanes.as_mut_ptr().add(4).cast(), b);
                _mm_storeu_si128(lanes.as_mut_ptr().add(8).cast(), c);
                _mm_storeu_si128(lanes.as_mut_ptr().add(12).cast(), d);
            }
            total += lanes.iter().map(|&l| u64::from(l)).sum::<u64>();
        }
        (total, 32 * n)
    }
}

/// Fold to 16 bits with end-around carry (a non-zero sum stays non-zero).
#[inline]
fn fold16(mut s: u64) -> u16 {
    s = (s & 0xffff_ffff) + (s >> 32);
    s = (s & 0xffff_ffff) + (s >> 32);
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    s as u16
}

/// Fold a sum to 16 bits and complement it.
#[inline]
pub fn finish(mut acc: u64) -> u16 {
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// The checksum of `data`.
#[inline]
pub fn checksum(data: &[u8]) -> u16 {
    finish(sum(0, data))
}

/// The partial sum of the IPv4 pseudo-header for TCP/UDP (RFC 793 3.1):
/// addresses, protocol and the upper-layer length.
#[inline]
pub fn pseudo_header_v4(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, len: u16) -> u64 {
    let (s, d) = (u32::from(src), u32::from(dst));
    u64::from(s >> 16)
        + u64::from(s & 0xffff)
        + u64::from(d >> 16)
        + u64::from(d & 0xffff)
        + u64::from(protocol)
        + u64::from(len)
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
#[inline]
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

    #[test]
    fn long_and_unaligned_inputs_match_the_reference() {
        // past the vector loop's flush block (32 KiB words * 32 bytes)
        let d: Vec<u8> = (0..2_200_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for (from, to) in [(0, d.len()), (1, 1_048_641), (3, 64), (5, 100), (7, 1_455)] {
            assert_eq!(
                checksum(&d[from..to]),
                reference(&d[from..to]),
                "{from}..{to}"
            );
        }
        let ones = vec![0xffu8; 1 << 21];
        assert_eq!(checksum(&ones), reference(&ones));
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn both_vector_paths_agree() {
        let d: Vec<u8> = (0..5000u32)
            .map(|i| (i.wrapping_mul(40_503) >> 7) as u8)
            .collect();
        for len in [64, 96, 1448, 1500, 4999] {
            // SAFETY: SSE2 is part of x86-64
            let sse = unsafe { x86::sum_sse2(&d[..len]) };
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU has AVX2
                assert_eq!(unsafe { x86::sum_avx2(&d[..len]) }, sse);
            }
            assert_eq!(sse.1, len / 32 * 32);
        }
    }

    #[test]
    fn copy_sum_copies_and_sums_pieces_at_any_offset() {
        let d: Vec<u8> = (0..3000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
            .collect();
        for (len, cut) in [
            (0, 0),
            (1, 0),
            (63, 31),
            (64, 33),
            (1448, 700),
            (1448, 701),
            (2999, 1001),
        ] {
            let src = &d[..len];
            let mut dst = vec![0u8; len];
            let (a, b) = dst.split_at_mut(cut);
            let first = copy_sum(0, a, &src[..cut]);
            let second = copy_sum(0, b, &src[cut..]);
            let second = if cut % 2 == 1 {
                sum_at_odd(second)
            } else {
                second
            };
            assert_eq!(dst, src, "{len}/{cut}");
            assert_eq!(finish(add(first, second)), reference(src), "{len}/{cut}");
        }
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
