//! The two byte rings of a connection, allocated once at open so the
//! steady state does not allocate: the send ring keeps every byte from the
//! oldest unacknowledged one on (retransmission reads it again), and the
//! receive ring keeps in-order bytes for the application plus
//! out-of-order bytes already placed at their final position, tracked by a
//! fixed number of ranges.
//!
//! Bytes the application will never change can also be queued by
//! reference to a shared [`Source`] (as `sendfile` queues page-cache
//! pages): they count against the send buffer like copied bytes, but
//! are read straight from the source when a segment is built, so the
//! payload is touched once on its way out instead of three times.

use crate::wire::checksum;
use std::sync::Arc;

/// Copy each piece's source into its destination, and return `acc` plus
/// the checksum sum of the sources as one run of bytes (the run starting
/// at an even offset of the checksummed data): pieces around a ring's
/// wrap, or from the ring into a source, copied and summed in one pass.
fn copy_sum_pieces<const N: usize>(acc: u64, pieces: [(&mut [u8], &[u8]); N]) -> u64 {
    let mut acc = acc;
    let mut odd = false;
    for (k, (dst, src)) in pieces.into_iter().enumerate() {
        if dst.is_empty() {
            continue;
        }
        if k == 0 {
            acc = checksum::copy_sum(acc, dst, src);
        } else {
            let part = checksum::copy_sum(0, dst, src);
            acc = checksum::add(
                acc,
                if odd {
                    checksum::sum_at_odd(part)
                } else {
                    part
                },
            );
        }
        odd ^= dst.len() % 2 == 1;
    }
    acc
}

/// Immutable bytes by position, shared by every connection that sends
/// them: byte `pos` is `bytes[pos % period]`, and `bytes` runs on at
/// least [`Source::MAX_READ`] past one period so any read up to that
/// length is one slice.
#[derive(Clone, Debug)]
pub struct Source {
    bytes: Arc<[u8]>,
    period: usize,
}

impl Source {
    /// The longest slice [`Source::slice`] returns.
    pub const MAX_READ: usize = 64 * 1024;

    /// `bytes` must repeat with `period` (checked) and be at least
    /// `period + MAX_READ` long.
    pub fn new(bytes: Arc<[u8]>, period: usize) -> Source {
        assert!(
            period > 0 && bytes.len() >= period + Self::MAX_READ,
            "source too short"
        );
        assert!(
            bytes[period..]
                .iter()
                .zip(bytes.iter())
                .all(|(a, b)| a == b),
            "source does not repeat with its period"
        );
        Source { bytes, period }
    }

    /// All the bytes, from position 0.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// `len` (at most `MAX_READ`) bytes from position `pos`.
    pub fn slice(&self, pos: u64, len: usize) -> &[u8] {
        let at = (pos % self.period as u64) as usize;
        &self.bytes[at..at + len.min(Self::MAX_READ)]
    }
}

/// Bytes queued by reference: `len` bytes of `src` from position `pos`.
#[derive(Debug)]
struct Tail {
    src: Source,
    pos: u64,
    len: usize,
}

/// Bytes written by the application and not yet acknowledged by the peer:
/// `len` copied bytes in the ring from `head`, then the referenced tail.
#[derive(Debug)]
pub struct SendBuffer {
    buf: Box<[u8]>,
    head: usize,
    len: usize,
    tail: Option<Tail>,
}

impl SendBuffer {
    pub fn new(capacity: usize) -> Self {
        SendBuffer {
            buf: vec![0; capacity.max(1)].into_boxed_slice(),
            head: 0,
            len: 0,
            tail: None,
        }
    }

    fn tail_len(&self) -> usize {
        self.tail.as_ref().map_or(0, |t| t.len)
    }

    pub fn len(&self) -> usize {
        self.len + self.tail_len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn capacity(&self) -> usize {
        self.buf.len()
    }

    pub fn free(&self) -> usize {
        self.capacity() - self.len()
    }

    /// Append as much of `data` as fits; returns how much. Copied bytes
    /// never follow referenced ones: while a tail is queued this takes
    /// nothing (the tail's bytes must be acknowledged first).
    pub fn write(&mut self, data: &[u8]) -> usize {
        if self.tail_len() > 0 {
            return 0;
        }
        let n = data.len().min(self.free());
        let cap = self.capacity();
        let start = (self.head + self.len) % cap;
        let first = n.min(cap - start);
        self.buf[start..start + first].copy_from_slice(&data[..first]);
        self.buf[..n - first].copy_from_slice(&data[first..n]);
        self.len += n;
        n
    }

    /// Append up to `n` bytes of `src` from position `pos` by reference;
    /// returns how many fit. Successive calls continue one run: `pos` is
    /// where the queued tail ends (checked), or any position when none is
    /// queued.
    pub fn write_ref(&mut self, src: &Source, pos: u64, n: usize) -> usize {
        let n = n.min(self.free());
        match &mut self.tail {
            Some(t) if t.len > 0 => {
                assert_eq!(pos, t.pos + t.len as u64, "a referenced run continues");
                t.len += n;
            }
            Some(t) if Arc::ptr_eq(&t.src.bytes, &src.bytes) => {
                t.pos = pos;
                t.len = n;
            }
            _ => {
                self.tail = Some(Tail {
                    src: src.clone(),
                    pos,
                    len: n,
                })
            }
        }
        n
    }

    /// Copy bytes from `offset` (from the oldest byte) into `dst`; returns
    /// how many there were.
    pub fn read_at(&self, offset: usize, dst: &mut [u8]) -> usize {
        let n = dst.len().min(self.len().saturating_sub(offset));
        self.read_at_sum(offset, &mut dst[..n], 0);
        n
    }

    /// [`Self::read_at`] of exactly `dst.len()` bytes (the caller checked
    /// they are there) that also returns the checksum sum of the copied
    /// bytes added to `acc` (which covers an even number of bytes before
    /// them): the payload of a segment copied and summed in one pass.
    pub fn read_at_sum(&self, offset: usize, dst: &mut [u8], acc: u64) -> u64 {
        debug_assert!(offset + dst.len() <= self.len());
        let n = dst.len();
        // the copied part: up to two pieces around the ring's wrap
        let in_ring = n.min(self.len.saturating_sub(offset));
        let cap = self.capacity();
        let start = (self.head + offset.min(self.len)) % cap;
        let first = in_ring.min(cap - start);
        let (a, rest) = dst.split_at_mut(first);
        let (b, c) = rest.split_at_mut(in_ring - first);
        // the referenced part, one slice of the source
        let from_tail = match &self.tail {
            Some(t) if !c.is_empty() => t
                .src
                .slice(t.pos + (offset + in_ring - self.len) as u64, c.len()),
            _ => &[],
        };
        copy_sum_pieces(
            acc,
            [
                (a, &self.buf[start..start + first]),
                (b, &self.buf[..in_ring - first]),
                (c, from_tail),
            ],
        )
    }

    /// Drop the `n` oldest bytes (acknowledged): copied ones first.
    pub fn consume(&mut self, n: usize) {
        let copied = n.min(self.len);
        self.head = (self.head + copied) % self.capacity();
        self.len -= copied;
        if let Some(t) = &mut self.tail {
            let k = (n - copied).min(t.len);
            t.pos += k as u64;
            t.len -= k;
        }
    }
}

/// Received bytes: `len` in-order bytes from `head`, then free space in
/// which out-of-order data sits at its offset from the in-order end.
#[derive(Debug)]
pub struct RecvBuffer {
    buf: Box<[u8]>,
    head: usize,
    len: usize,
    /// Out-of-order ranges as [start, end) offsets from the in-order end,
    /// sorted, disjoint and not touching; never longer than its capacity.
    ranges: Vec<(usize, usize)>,
    max_ranges: usize,
}

impl RecvBuffer {
    pub fn new(capacity: usize, max_ranges: usize) -> Self {
        RecvBuffer {
            buf: vec![0; capacity.max(1)].into_boxed_slice(),
            head: 0,
            len: 0,
            ranges: Vec::with_capacity(max_ranges),
            max_ranges,
        }
    }

    /// In-order bytes the application can read.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn capacity(&self) -> usize {
        self.buf.len()
    }

    /// The receive window: room after the in-order bytes.
    pub fn free(&self) -> usize {
        self.capacity() - self.len
    }

    /// Out-of-order data is held.
    pub fn has_gaps(&self) -> bool {
        !self.ranges.is_empty()
    }

    /// The out-of-order ranges as [start, end) offsets from the in-order
    /// end, in order.
    pub fn ranges(&self) -> &[(usize, usize)] {
        &self.ranges
    }

    fn copy_in(&mut self, offset: usize, data: &[u8]) {
        let cap = self.capacity();
        let start = (self.head + self.len + offset) % cap;
        let first = data.len().min(cap - start);
        self.buf[start..start + first].copy_from_slice(&data[..first]);
        self.buf[..data.len() - first].copy_from_slice(&data[first..]);
    }

    /// Place `data` at `offset` past the in-order end; the caller has cut
    /// it to the window (`offset + data.len() <= free()`). Returns how far
    /// the in-order end advanced, or None if the data was out of order and
    /// every range slot was taken (dropped: the sender will retransmit).
    pub fn write_at(&mut self, offset: usize, data: &[u8]) -> Option<usize> {
        let end = offset + data.len();
        debug_assert!(end <= self.free());
        if data.is_empty() {
            return Some(0);
        }
        if offset > 0 {
            // merge with every range it overlaps or touches
            let first = self.ranges.iter().position(|r| r.1 >= offset);
            let last = self.ranges.iter().rposition(|r| r.0 <= end);
            match (first, last) {
                (Some(f), Some(l)) if f <= l => {
                    let s = self.ranges[f].0.min(offset);
                    let e = self.ranges[l].1.max(end);
                    self.ranges.drain(f + 1..=l);
                    self.ranges[f] = (s, e);
                }
                _ => {
                    if self.ranges.len() >= self.max_ranges {
                        return None;
                    }
                    let at = first.unwrap_or(self.ranges.len());
                    self.ranges.insert(at, (offset, end));
                }
            }
            self.copy_in(offset, data);
            return Some(0);
        }
        self.copy_in(0, data);
        Some(self.advance(end))
    }

    /// Copy `data` to the in-order end without taking it in yet, and
    /// return `acc` plus its checksum sum: the payload of a segment placed
    /// while its checksum is verified. Then [`Self::commit_placed`] takes
    /// it in, or nothing happened (the bytes sit in free space). The
    /// caller checked it fits (`data.len() <= free()`) and that no
    /// out-of-order data is held, which the copy could overwrite.
    pub fn place_sum(&mut self, data: &[u8], acc: u64) -> u64 {
        debug_assert!(data.len() <= self.free() && !self.has_gaps());
        let cap = self.capacity();
        let start = (self.head + self.len) % cap;
        let first = data.len().min(cap - start);
        let (before, from) = self.buf.split_at_mut(start);
        let (a, b) = data.split_at(first);
        let pieces = [(&mut from[..first], a), (&mut before[..b.len()], b)];
        copy_sum_pieces(acc, pieces)
    }

    /// Take in `n` bytes [`Self::place_sum`] placed; returns how far the
    /// in-order end advanced, as [`Self::write_at`] does.
    pub fn commit_placed(&mut self, n: usize) -> usize {
        debug_assert!(n <= self.free() && !self.has_gaps());
        self.advance(n)
    }

    /// In-order bytes up to `end` arrived: take them in with every
    /// out-of-order range they reach; returns the advance.
    fn advance(&mut self, end: usize) -> usize {
        let mut advance = end;
        let mut done = 0;
        for r in &self.ranges {
            if r.0 > advance {
                break;
            }
            advance = advance.max(r.1);
            done += 1;
        }
        self.ranges.drain(..done);
        for r in &mut self.ranges {
            r.0 -= advance;
            r.1 -= advance;
        }
        self.len += advance;
        advance
    }

    /// Hand up to `max` in-order bytes to `f` where they lie (one or two
    /// slices, around the wrap) and drop them: a reader that only hashes
    /// or counts them needs no copy. Returns how many.
    pub fn read_in_place(&mut self, max: usize, mut f: impl FnMut(&[u8])) -> usize {
        let n = max.min(self.len);
        let cap = self.capacity();
        let first = n.min(cap - self.head);
        if n > 0 {
            f(&self.buf[self.head..self.head + first]);
        }
        if n > first {
            f(&self.buf[..n - first]);
        }
        self.head = (self.head + n) % cap;
        self.len -= n;
        n
    }

    /// Copy out in-order bytes.
    pub fn read(&mut self, dst: &mut [u8]) -> usize {
        let n = dst.len().min(self.len);
        let cap = self.capacity();
        let first = n.min(cap - self.head);
        dst[..first].copy_from_slice(&self.buf[self.head..self.head + first]);
        dst[first..n].copy_from_slice(&self.buf[..n - first]);
        self.head = (self.head + n) % cap;
        self.len -= n;
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn send_ring_wraps() {
        let mut s = SendBuffer::new(8);
        assert_eq!(s.write(b"abcdef"), 6);
        s.consume(4);
        assert_eq!(s.write(b"ghijklmn"), 6);
        let mut d = [0; 8];
        assert_eq!(s.read_at(0, &mut d), 8);
        assert_eq!(&d, b"efghijkl");
        assert_eq!(s.read_at(5, &mut d), 3);
        assert_eq!(&d[..3], b"jkl");
        assert_eq!(s.read_at(8, &mut d), 0);
    }

    #[test]
    fn out_of_order_fills_in() {
        let mut r = RecvBuffer::new(16, 2);
        assert_eq!(r.write_at(4, b"efgh"), Some(0));
        assert_eq!(r.write_at(10, b"kl"), Some(0));
        assert_eq!(r.write_at(13, b"n"), None, "third range: no slot");
        assert_eq!(r.write_at(8, b"ij"), Some(0), "touches both: merges");
        assert_eq!(r.write_at(0, b"abcd"), Some(12));
        assert!(!r.has_gaps());
        let mut d = [0; 16];
        assert_eq!(r.read(&mut d), 12);
        assert_eq!(&d[..12], b"abcdefghijkl");
    }

    #[test]
    fn read_at_sum_across_the_wrap() {
        use crate::wire::checksum;
        for (cap, skip) in [(64, 0), (64, 7), (101, 50), (4096, 4001), (4096, 4000)] {
            let mut s = SendBuffer::new(cap);
            let data: Vec<u8> = (0..cap).map(|i| (i * 31 + 7) as u8).collect();
            s.write(&data[..skip]);
            s.consume(skip);
            s.write(&data);
            for (off, len) in [(0, cap), (1, cap - 1), (3, cap / 2), (cap / 3, cap / 3)] {
                let mut d = vec![0u8; len];
                let acc = s.read_at_sum(off, &mut d, 0x1234);
                assert_eq!(d, &data[off..off + len]);
                let want = checksum::sum(0x1234, &data[off..off + len]);
                assert_eq!(
                    checksum::finish(acc),
                    checksum::finish(want),
                    "{cap} {skip} {off} {len}"
                );
            }
        }
    }

    #[test]
    fn place_sum_across_the_wrap_then_commit() {
        use crate::wire::checksum;
        let data: Vec<u8> = (0..200).map(|i| (i * 13 + 5) as u8).collect();
        for (cap, skip, n) in [(64, 50, 40), (64, 51, 13), (101, 0, 101), (257, 200, 199)] {
            let mut r = RecvBuffer::new(cap, 4);
            let mut sink = vec![0; cap];
            r.write_at(0, &data[..skip]);
            r.read(&mut sink);
            let acc = r.place_sum(&data[..n], 0x4321);
            let want = checksum::sum(0x4321, &data[..n]);
            assert_eq!(
                checksum::finish(acc),
                checksum::finish(want),
                "{cap} {skip} {n}"
            );
            assert_eq!(r.len(), 0, "placed, not taken in");
            assert_eq!(r.commit_placed(n), n);
            assert_eq!(r.read(&mut sink), n);
            assert_eq!(&sink[..n], &data[..n], "{cap} {skip} {n}");
        }
    }

    fn pattern(period: usize) -> Source {
        let bytes: Vec<u8> = (0..period + Source::MAX_READ)
            .map(|i| (i % period) as u8)
            .collect();
        Source::new(bytes.into(), period)
    }

    #[test]
    fn copied_bytes_then_a_referenced_tail() {
        let src = pattern(7);
        let mut s = SendBuffer::new(16);
        assert_eq!(s.write(b"ab"), 2);
        assert_eq!(s.write_ref(&src, 5, 20), 14, "capped by the free room");
        assert_eq!(
            s.write(b"x"),
            0,
            "copied bytes never follow referenced ones"
        );
        let mut d = [0; 16];
        assert_eq!(s.read_at(0, &mut d), 16);
        assert_eq!(&d, &[b'a', b'b', 5, 6, 0, 1, 2, 3, 4, 5, 6, 0, 1, 2, 3, 4]);
        s.consume(5);
        assert_eq!(s.len(), 11);
        assert_eq!(s.write_ref(&src, 19, 3), 3, "the run continues at 5 + 14");
        assert_eq!(s.read_at(10, &mut d[..4]), 4);
        assert_eq!(&d[..4], &[4, 5, 6, 0]);
        s.consume(14);
        assert!(s.is_empty());
        assert_eq!(s.write(b"yz"), 2, "an empty tail lets copies in again");
    }

    #[test]
    fn in_place_reads_hand_over_both_pieces_of_a_wrap() {
        let mut r = RecvBuffer::new(8, 2);
        assert_eq!(r.write_at(0, b"abcdef"), Some(6));
        let mut d = [0; 5];
        assert_eq!(r.read(&mut d), 5);
        assert_eq!(r.write_at(1, b"hijkl"), Some(0));
        assert_eq!(r.write_at(0, b"g"), Some(6));
        let mut seen = Vec::new();
        assert_eq!(r.read_in_place(6, |b| seen.push(b.to_vec())), 6);
        assert_eq!(seen, vec![b"fgh".to_vec(), b"ijk".to_vec()]);
        assert_eq!(r.len(), 1);
        assert_eq!(r.read_in_place(9, |_| {}), 1);
        assert_eq!(r.read_in_place(9, |_| panic!("nothing to hand over")), 0);
    }

    proptest! {
        /// A segment read from copied and referenced bytes, at any offset
        /// and length, holds the right bytes and their checksum sum.
        #[test]
        fn reads_across_the_tail_copy_and_sum(head in 0usize..40, copied in 0usize..40,
                                              pos in any::<u32>(), off in 0usize..80, len in 0usize..80) {
            let src = pattern(13);
            let mut s = SendBuffer::new(64);
            let junk = vec![0xa5; head];
            s.write(&junk);
            s.consume(head); // the ring's head anywhere
            let real: Vec<u8> = (0..copied).map(|i| (200 + i) as u8).collect();
            let copied = s.write(&real);
            let referenced = s.write_ref(&src, u64::from(pos), 64);
            let mut want = real[..copied].to_vec();
            want.extend((0..referenced).map(|i| ((u64::from(pos) + i as u64) % 13) as u8));
            let off = off.min(want.len());
            let len = len.min(want.len() - off);
            let mut d = vec![0; len];
            let acc = s.read_at_sum(off, &mut d, 0);
            prop_assert_eq!(&d[..], &want[off..off + len]);
            prop_assert_eq!(checksum::finish(acc), checksum::finish(checksum::sum(0, &want[off..off + len])));
        }

        /// Any arrival order of any chunks of a stream yields the stream.
        #[test]
        fn reassembles_any_order(len in 1usize..200, cuts in proptest::collection::vec(any::<u16>(), 0..20),
                                 order in proptest::collection::vec(any::<u16>(), 0..40), cap in 1usize..64) {
            let data: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut bounds: Vec<usize> = cuts.iter().map(|c| usize::from(*c) % len).collect();
            bounds.extend([0, len]);
            bounds.sort();
            bounds.dedup();
            let chunks: Vec<(usize, usize)> = bounds.windows(2).map(|w| (w[0], w[1])).collect();
            let mut r = RecvBuffer::new(256, 4);
            let mut nxt = 0;
            let mut out = Vec::new();
            let mut sched: Vec<usize> = order.iter().map(|o| usize::from(*o) % chunks.len()).collect();
            sched.extend(0..chunks.len()); // in the end every chunk once in order
            for i in sched {
                let (s, e) = chunks[i];
                if e <= nxt { continue; }
                let s2 = s.max(nxt);
                if let Some(a) = r.write_at(s2 - nxt, &data[s2..e]) { nxt += a; }
                let mut d = vec![0; cap];
                let n = r.read(&mut d);
                out.extend_from_slice(&d[..n]);
            }
            let mut d = vec![0; 256];
            let n = r.read(&mut d);
            out.extend_from_slice(&d[..n]);
            prop_assert_eq!(out, data);
        }
    }
}
