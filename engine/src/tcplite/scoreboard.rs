//! The sender's SACK scoreboard (RFC 6675): the ranges of the data in
//! flight that the receiver reported holding, and what follows from them:
//! which holes count as lost, how many bytes are still in the network
//! (the pipe) and which hole to retransmit next. Of fixed capacity,
//! allocated once with the connection: an ACK costs O(blocks) and nothing
//! allocates; the ranges live apart from the connection's hot fields.

use crate::wire::tcp::{SackBlocks, SeqNum};

/// SACKed ranges remembered. A peer reporting more holes than this loses
/// its highest ones here, which only makes recovery more cautious (fewer
/// holes count as lost; the RTO still covers them).
pub const CAPACITY: usize = 32;

/// RFC 6675's DupThresh: SACKed blocks above a hole that make it lost,
/// and duplicate ACKs that start recovery.
pub const DUP_THRESH: usize = 3;

#[derive(Debug)]
pub struct Scoreboard {
    /// SACKed [left, right) ranges, the first `len`: sorted, disjoint and
    /// not touching.
    blocks: Box<[(SeqNum, SeqNum); CAPACITY]>,
    len: usize,
}

impl Default for Scoreboard {
    fn default() -> Self {
        Scoreboard {
            blocks: Box::new([(SeqNum(0), SeqNum(0)); CAPACITY]),
            len: 0,
        }
    }
}

impl Scoreboard {
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn blocks(&self) -> &[(SeqNum, SeqNum)] {
        &self.blocks[..self.len]
    }

    /// Forget everything (RFC 6675 5.1: after a retransmission timeout).
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// The cumulative ACK moved to `una`: drop what lies below it.
    pub fn advance(&mut self, una: SeqNum) {
        let gone = self.blocks().iter().take_while(|b| b.1 <= una).count();
        if gone > 0 {
            self.blocks.copy_within(gone..self.len, 0);
            self.len -= gone;
        }
        if let Some(first) = self.blocks[..self.len].first_mut() {
            first.0 = first.0.max(una);
        }
    }

    /// Take in an ACK's blocks, each cut to [una, max): a block below the
    /// cumulative ACK (a D-SACK) or reaching beyond what was sent (bogus)
    /// is ignored. Returns the bytes newly SACKed.
    pub fn update(&mut self, una: SeqNum, max: SeqNum, sack: SackBlocks) -> usize {
        let mut newly = 0;
        for (left, right) in sack.iter() {
            let left = left.max(una);
            if left >= right || right > max {
                continue;
            }
            newly += self.insert(left, right);
        }
        newly
    }

    /// Merge [left, right) in; returns how many of its bytes are new.
    fn insert(&mut self, left: SeqNum, right: SeqNum) -> usize {
        let b = self.blocks();
        // the first block that touches or follows it, and the blocks it touches
        let first = b.iter().position(|r| r.1 >= left).unwrap_or(b.len());
        let touching = b[first..].iter().take_while(|r| r.0 <= right).count();
        if touching > 0 {
            let last = first + touching - 1;
            let had: usize = b[first..=last].iter().map(|r| r.1.since(r.0)).sum();
            let merged = (left.min(b[first].0), right.max(b[last].1));
            self.blocks[first] = merged;
            self.blocks.copy_within(last + 1..self.len, first + 1);
            self.len -= touching - 1;
            return merged.1.since(merged.0) - had;
        }
        if self.len == CAPACITY {
            if first == self.len {
                return 0; // the highest: forgotten at once
            }
            self.len -= 1; // make room by forgetting the highest
        }
        self.blocks.copy_within(first..self.len, first + 1);
        self.blocks[first] = (left, right);
        self.len += 1;
        right.since(left)
    }

    /// The end of the highest SACKed range.
    pub fn high_sacked(&self) -> Option<SeqNum> {
        self.blocks().last().map(|b| b.1)
    }

    /// RFC 6675 IsLost as an edge: every unSACKed byte below it is lost,
    /// because DupThresh SACKed blocks or more than (DupThresh - 1) * `mss`
    /// SACKed bytes lie above it; none is when it is `una`. (IsLost only
    /// grows towards lower sequence numbers, so one edge says it all.)
    pub fn lost_edge(&self, una: SeqNum, mss: usize) -> SeqNum {
        let mut bytes = 0;
        for (above, &(left, right)) in self.blocks().iter().rev().enumerate() {
            bytes += right.since(left);
            if above + 1 >= DUP_THRESH || bytes > (DUP_THRESH - 1) * mss {
                return left;
            }
        }
        una
    }

    /// RFC 6675 SetPipe, in bytes: of every unSACKed byte in [una, max),
    /// one if it is not lost (below `lost`) and one more if it was
    /// retransmitted (below `high_rxt`).
    pub fn pipe(&self, una: SeqNum, max: SeqNum, lost: SeqNum, high_rxt: SeqNum) -> usize {
        let mut pipe = 0;
        let mut at = una;
        let end = [(max, max)];
        for &(left, right) in self.blocks().iter().chain(&end) {
            if left > at {
                let kept = at.max(lost);
                if left > kept {
                    pipe += left.since(kept);
                }
                let resent = left.min(high_rxt);
                if resent > at {
                    pipe += resent.since(at);
                }
            }
            at = at.max(right);
        }
        pipe
    }

    /// The first unSACKed range that starts at or above `from` and below
    /// `limit`, between `una` and the highest SACKed byte, cut at `limit`:
    /// NextSeg's candidates for a retransmission (RFC 6675 rules 1 and 3).
    pub fn next_hole(&self, una: SeqNum, from: SeqNum, limit: SeqNum) -> Option<(SeqNum, SeqNum)> {
        let mut at = una;
        for &(left, right) in self.blocks() {
            let start = at.max(from);
            if start >= limit {
                return None;
            }
            if start < left {
                return Some((start, left.min(limit)));
            }
            at = right;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::tcp::SACK_BUF;
    use proptest::prelude::*;

    /// `blocks` as an ACK's SACK blocks.
    fn sack<'a>(blocks: &[(u32, u32)], buf: &'a mut [u8; SACK_BUF]) -> SackBlocks<'a> {
        SackBlocks::encode(blocks.iter().map(|&(l, r)| (SeqNum(l), SeqNum(r))), buf)
    }

    fn seqs(b: &Scoreboard) -> Vec<(u32, u32)> {
        b.blocks().iter().map(|r| (r.0 .0, r.1 .0)).collect()
    }

    #[test]
    fn merges_cuts_and_ignores() {
        let mut buf = [0; SACK_BUF];
        let mut b = Scoreboard::default();
        let (una, max) = (SeqNum(1000), SeqNum(9000));
        assert_eq!(
            b.update(una, max, sack(&[(3000, 4000), (1000, 2000)], &mut buf)),
            2000
        );
        assert_eq!(seqs(&b), [(1000, 2000), (3000, 4000)]);
        // touching merges; a duplicate adds nothing
        assert_eq!(
            b.update(una, max, sack(&[(2000, 2500), (3000, 4000)], &mut buf)),
            500
        );
        assert_eq!(seqs(&b), [(1000, 2500), (3000, 4000)]);
        // one bridging both
        assert_eq!(b.update(una, max, sack(&[(2400, 3100)], &mut buf)), 500);
        assert_eq!(seqs(&b), [(1000, 4000)]);
        // below una (a D-SACK), beyond max, empty, inverted: ignored
        let junk = sack(
            &[(500, 900), (8000, 9500), (5000, 5000), (6000, 5000)],
            &mut buf,
        );
        assert_eq!(b.update(una, max, junk), 0);
        assert_eq!(seqs(&b), [(1000, 4000)]);
        // straddling una is cut to it
        b.advance(SeqNum(1500));
        assert_eq!(seqs(&b), [(1500, 4000)]);
        b.advance(SeqNum(4000));
        assert!(b.is_empty());
    }

    #[test]
    fn across_the_wrap() {
        let mut buf = [0; SACK_BUF];
        let mut b = Scoreboard::default();
        let una = SeqNum(u32::MAX - 1000);
        let max = una + 10_000;
        b.update(
            una,
            max,
            sack(&[(u32::MAX - 500, 200), (1000, 2000)], &mut buf),
        );
        assert_eq!(seqs(&b), [(u32::MAX - 500, 200), (1000, 2000)]);
        assert_eq!(b.pipe(una, max, una, una), 10_000 - 701 - 1000);
    }

    #[test]
    fn full_forgets_the_highest() {
        let mut buf = [0; SACK_BUF];
        let mut b = Scoreboard::default();
        let (una, max) = (SeqNum(0), SeqNum(1 << 20));
        for i in 0..CAPACITY as u32 {
            b.update(una, max, sack(&[(100 + i * 100, 150 + i * 100)], &mut buf));
        }
        assert_eq!(b.blocks().len(), CAPACITY);
        assert_eq!(b.update(una, max, sack(&[(90_000, 90_010)], &mut buf)), 0);
        assert_eq!(b.update(una, max, sack(&[(10, 20)], &mut buf)), 10);
        assert_eq!(b.blocks().len(), CAPACITY);
        assert_eq!(b.blocks()[0], (SeqNum(10), SeqNum(20)));
        assert_eq!(
            b.high_sacked(),
            Some(SeqNum(150 + (CAPACITY as u32 - 2) * 100))
        );
    }

    /// Ten 1000-byte segments from 0; 1, 2 and 5 lost, the others SACKed.
    #[test]
    fn lost_pipe_and_next_segment() {
        let mss = 1000;
        let mut buf = [0; SACK_BUF];
        let mut b = Scoreboard::default();
        let (una, max) = (SeqNum(0), SeqNum(10_000));
        // 0 not yet acked cumulatively; 3, 4 then 6..10 SACKed
        b.update(una, max, sack(&[(3000, 5000)], &mut buf));
        assert_eq!(b.lost_edge(una, mss), una, "2000 bytes above: not yet");
        b.update(una, max, sack(&[(6000, 7000), (3000, 5000)], &mut buf));
        assert_eq!(b.lost_edge(una, mss), SeqNum(3000), "3000 bytes above");
        b.update(una, max, sack(&[(6000, 10_000)], &mut buf));
        assert_eq!(b.lost_edge(una, mss), SeqNum(6000));
        let lost = b.lost_edge(una, mss);
        // holes [0, 3000) and [5000, 6000), all lost, none resent: none in the pipe
        assert_eq!(b.pipe(una, max, lost, una), 0);
        assert_eq!(b.pipe(una, max, una, una), 4000, "nothing lost: every hole");
        assert_eq!(b.pipe(una, max, lost, SeqNum(1000)), 1000, "one resent");
        assert_eq!(b.next_hole(una, una, lost), Some((SeqNum(0), SeqNum(3000))));
        assert_eq!(
            b.next_hole(una, SeqNum(3000), lost),
            Some((SeqNum(5000), SeqNum(6000)))
        );
        assert_eq!(
            b.next_hole(una, SeqNum(5500), lost),
            Some((SeqNum(5500), SeqNum(6000)))
        );
        assert_eq!(b.next_hole(una, SeqNum(6000), lost), None);
        assert_eq!(
            b.next_hole(una, SeqNum(2000), SeqNum(2500)),
            Some((SeqNum(2000), SeqNum(2500)))
        );
        assert_eq!(b.high_sacked(), Some(max));
    }

    proptest! {
        /// Against a byte map: the scoreboard holds exactly the union of the
        /// valid blocks, and the pipe counts bytes as SetPipe does.
        #[test]
        fn agrees_with_a_byte_map(acks in proptest::collection::vec(
            (0u32..40, proptest::collection::vec((0u32..100, 1u32..20), 0..4)), 1..30),
            base in any::<u32>(), lost_at in 0u32..100, rxt in 0u32..100) {
            let mut b = Scoreboard::default();
            let mut map = [false; 100];
            let max = SeqNum(base) + 100;
            let mut una = 0u32;
            for (adv, blocks) in acks {
                una = (una + adv / 8).min(100);
                b.advance(SeqNum(base) + una as usize);
                let mut edges = Vec::new();
                for (l, n) in blocks {
                    let r = (l + n).min(110);
                    edges.push((SeqNum(base) + l as usize, SeqNum(base) + r as usize));
                    if r <= 100 {
                        for m in map.iter_mut().take(r as usize).skip(l.max(una) as usize) {
                            *m = true;
                        }
                    }
                }
                let mut buf = [0; SACK_BUF];
                b.update(SeqNum(base) + una as usize, max, SackBlocks::encode(edges, &mut buf));
                let want: Vec<bool> = (0..100).map(|i| i >= una as usize && map[i]).collect();
                let mut got = [false; 100];
                for &(l, r) in b.blocks() {
                    prop_assert!(l < r);
                    for g in got.iter_mut().take(r.since(SeqNum(base))).skip(l.since(SeqNum(base))) {
                        *g = true;
                    }
                }
                prop_assert_eq!(&got[..], &want[..]);
                let (lost, high) = (una.max(lost_at), una.max(rxt));
                let pipe = (una as usize..100)
                    .filter(|&i| !want[i])
                    .map(|i| usize::from(i >= lost as usize) + usize::from(i < high as usize))
                    .sum::<usize>();
                let s = |x: u32| SeqNum(base) + x as usize;
                prop_assert_eq!(b.pipe(s(una), max, s(lost), s(high)), pipe);
            }
        }
    }
}
