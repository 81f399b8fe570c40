//! The two byte rings of a connection, allocated once at open so the
//! steady state does not allocate: the send ring keeps every byte from the
//! oldest unacknowledged one on (retransmission reads it again), and the
//! receive ring keeps in-order bytes for the application plus
//! out-of-order bytes already placed at their final position, tracked by a
//! fixed number of ranges.

use crate::wire::checksum;

/// Copy each piece's source into its destination, and return `acc` plus
/// the checksum sum of the sources as one run of bytes (the run starting
/// at an even offset of the checksummed data): a ring's two pieces
/// around its wrap copied and summed in one pass.
fn copy_sum_pieces(acc: u64, pieces: [(&mut [u8], &[u8]); 2]) -> u64 {
    let [(a, a_src), (b, b_src)] = pieces;
    let acc = checksum::copy_sum(acc, a, a_src);
    if b.is_empty() {
        return acc;
    }
    let rest = checksum::copy_sum(0, b, b_src);
    let rest = if a.len() % 2 == 1 {
        checksum::sum_at_odd(rest)
    } else {
        rest
    };
    checksum::add(acc, rest)
}

/// Bytes written by the application and not yet acknowledged by the peer.
#[derive(Debug)]
pub struct SendBuffer {
    buf: Box<[u8]>,
    head: usize,
    len: usize,
}

impl SendBuffer {
    pub fn new(capacity: usize) -> Self {
        SendBuffer {
            buf: vec![0; capacity.max(1)].into_boxed_slice(),
            head: 0,
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn capacity(&self) -> usize {
        self.buf.len()
    }

    pub fn free(&self) -> usize {
        self.capacity() - self.len
    }

    /// Append as much of `data` as fits; returns how much.
    pub fn write(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(self.free());
        let cap = self.capacity();
        let start = (self.head + self.len) % cap;
        let first = n.min(cap - start);
        self.buf[start..start + first].copy_from_slice(&data[..first]);
        self.buf[..n - first].copy_from_slice(&data[first..n]);
        self.len += n;
        n
    }

    /// Copy bytes from `offset` (from the oldest byte) into `dst`; returns
    /// how many there were.
    pub fn read_at(&self, offset: usize, dst: &mut [u8]) -> usize {
        if offset >= self.len {
            return 0;
        }
        let n = dst.len().min(self.len - offset);
        let cap = self.capacity();
        let start = (self.head + offset) % cap;
        let first = n.min(cap - start);
        dst[..first].copy_from_slice(&self.buf[start..start + first]);
        dst[first..n].copy_from_slice(&self.buf[..n - first]);
        n
    }

    /// [`Self::read_at`] of exactly `dst.len()` bytes (the caller checked
    /// they are there) that also returns the checksum sum of the copied
    /// bytes added to `acc` (which covers an even number of bytes before
    /// them): the payload of a segment copied and summed in one pass.
    pub fn read_at_sum(&self, offset: usize, dst: &mut [u8], acc: u64) -> u64 {
        debug_assert!(offset + dst.len() <= self.len);
        let n = dst.len();
        let cap = self.capacity();
        let start = (self.head + offset) % cap;
        let first = n.min(cap - start);
        let (a, b) = dst.split_at_mut(first);
        copy_sum_pieces(
            acc,
            [
                (a, &self.buf[start..start + first]),
                (b, &self.buf[..n - first]),
            ],
        )
    }

    /// Drop the `n` oldest bytes (acknowledged).
    pub fn consume(&mut self, n: usize) {
        let n = n.min(self.len);
        self.head = (self.head + n) % self.capacity();
        self.len -= n;
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

    proptest! {
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
