//! Frames longer than one UMEM chunk: jumbo frames on a socket bound with
//! XDP_USE_SG arrive as a chain of descriptors, each but the last marked
//! XDP_PKT_CONTD, and leave the same way.
//!
//! Received, a chain is copied into one contiguous buffer for the parser (a
//! frame in one chunk is still parsed in place); transmitted, the segment is
//! built whole in a staging buffer and copied out chunk by chunk. That is
//! one extra copy per jumbo frame and none for the others, and the frame
//! code ([`crate::tcplite::frame`]) keeps its one contiguous buffer: the
//! simplest correct way, and in copy mode the kernel copies each frame
//! anyway. Emitting a segment straight into its chunks would save the copy
//! at the price of a TCP header and checksum written over scattered pieces.

use crate::tcplite::frame::{poll_transmit_frame, LinkAddrs};
use crate::tcplite::Connection;
use xsk_rs::FrameDesc;

/// Set on every descriptor of a chain but the last (`if_xdp.h`).
pub(super) const XDP_PKT_CONTD: u32 = 1;

/// Longest frame a chain may carry: past the largest MTU followed, with room.
pub(super) const MAX_FRAME: usize = 1 << 16;

/// What one received descriptor gave.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Piece<'a> {
    /// A whole frame: the descriptor's own bytes, or a finished chain.
    Whole(&'a [u8]),
    /// Part of a chain: more descriptors follow.
    Partial,
    /// The end of a chain longer than [`MAX_FRAME`]: dropped whole.
    Dropped,
}

/// A chain being put back together. It outlives a receive batch: a batch
/// may end inside a chain, whose rest comes with the next.
pub(super) struct Reassembly {
    buf: Vec<u8>,
    len: usize,
    /// Under way: a piece with XDP_PKT_CONTD came, and not yet the last.
    open: bool,
    overflow: bool,
}

impl Default for Reassembly {
    fn default() -> Self {
        Reassembly {
            buf: vec![0; MAX_FRAME],
            len: 0,
            open: false,
            overflow: false,
        }
    }
}

impl Reassembly {
    /// Take one descriptor's bytes and options.
    pub(super) fn take<'a>(&'a mut self, piece: &'a [u8], options: u32) -> Piece<'a> {
        let more = options & XDP_PKT_CONTD != 0;
        if !self.open && !more {
            return Piece::Whole(piece);
        }
        match self.buf.get_mut(self.len..self.len + piece.len()) {
            Some(dst) if !self.overflow => {
                dst.copy_from_slice(piece);
                self.len += piece.len();
            }
            _ => self.overflow = true,
        }
        self.open = more;
        if more {
            return Piece::Partial;
        }
        let len = std::mem::take(&mut self.len);
        match std::mem::take(&mut self.overflow) {
            true => Piece::Dropped,
            false => Piece::Whole(&self.buf[..len]),
        }
    }
}

/// Descriptors the longest frame of a connection with `mss` takes: its
/// payload behind Ethernet, IPv6 (the longer) and TCP headers with options.
pub(super) fn span_for_mss(mss: u16) -> usize {
    use crate::tcplite::frame::HEADROOM_V6;
    span(
        usize::from(mss) + HEADROOM_V6 + 60,
        crate::datapath::xdp::xsk::chunk_room(),
    )
}

/// Descriptors a frame of `len` bytes takes in chunks of `room` bytes.
pub(super) fn span(len: usize, room: usize) -> usize {
    len.div_ceil(room).max(1)
}

/// Frames (not descriptors) among `descs`: the chains' last pieces.
pub(super) fn frames(descs: &[FrameDesc]) -> usize {
    descs
        .iter()
        .filter(|d| d.options() & XDP_PKT_CONTD == 0)
        .count()
}

/// Lay `frame` over chunks: the descriptors' lengths and options, in order.
fn layout(len: usize, room: usize) -> impl Iterator<Item = (std::ops::Range<usize>, u32)> {
    let n = span(len, room);
    (0..n).map(move |i| {
        let end = ((i + 1) * room).min(len);
        let contd = if i + 1 < n { XDP_PKT_CONTD } else { 0 };
        (i * room..end, contd)
    })
}

/// The connection's next segment as one frame built in `stage`, then
/// copied over free chunks taken from `free` and appended to `out` as a
/// chain. False, with nothing taken, when the connection has nothing to
/// send or `free` is short of the `need` chunks a full frame may take.
pub(super) fn transmit(
    umem: &xsk_rs::Umem,
    free: &mut Vec<FrameDesc>,
    need: usize,
    (conn, now, link): (&mut Connection, u64, &LinkAddrs),
    stage: &mut [u8],
    out: &mut Vec<FrameDesc>,
) -> bool {
    if free.len() < need {
        return false;
    }
    let room = crate::datapath::xdp::xsk::chunk_room();
    let cap = (need * room).min(stage.len());
    let Some((len, _)) = poll_transmit_frame(conn, now, link, &mut stage[..cap]) else {
        return false;
    };
    for (range, contd) in layout(len, room) {
        let mut d = free.pop().expect("checked: enough free chunks");
        // SAFETY: a free frame of this UMEM, on no ring.
        let mut data = unsafe { umem.data_mut(&mut d) };
        data.cursor().set_pos(range.len());
        data.contents_mut().copy_from_slice(&stage[range]);
        d.set_options(contd);
        out.push(d);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_pieces_pass_through_and_chains_join() {
        let mut r = Reassembly::default();
        assert_eq!(r.take(b"abc", 0), Piece::Whole(b"abc"));
        assert_eq!(r.take(b"ab", XDP_PKT_CONTD), Piece::Partial);
        assert_eq!(r.take(b"cd", XDP_PKT_CONTD), Piece::Partial);
        assert_eq!(r.take(b"e", 0), Piece::Whole(b"abcde"));
        // the next frame starts afresh
        assert_eq!(r.take(b"xy", XDP_PKT_CONTD), Piece::Partial);
        assert_eq!(r.take(b"z", 0), Piece::Whole(b"xyz"));
        assert_eq!(r.take(b"q", 0), Piece::Whole(b"q"));
    }

    #[test]
    fn an_overlong_chain_is_dropped_whole_and_the_next_frame_is_clean() {
        let mut r = Reassembly::default();
        let big = vec![7u8; MAX_FRAME / 2 + 1];
        assert_eq!(r.take(&big, XDP_PKT_CONTD), Piece::Partial);
        assert_eq!(r.take(&big, XDP_PKT_CONTD), Piece::Partial);
        assert_eq!(r.take(b"tail", 0), Piece::Dropped);
        assert_eq!(r.take(b"ok", XDP_PKT_CONTD), Piece::Partial);
        assert_eq!(r.take(b"!", 0), Piece::Whole(b"ok!"));
    }

    #[test]
    fn a_jumbo_frame_spans_three_chunks_marked_but_the_last() {
        let room = 3840;
        assert_eq!(span(1514, room), 1);
        assert_eq!(span(3840, room), 1);
        assert_eq!(span(3841, room), 2);
        assert_eq!(span(9014, room), 3);
        let pieces: Vec<_> = layout(9014, room).collect();
        assert_eq!(
            pieces,
            vec![
                (0..3840, XDP_PKT_CONTD),
                (3840..7680, XDP_PKT_CONTD),
                (7680..9014, 0)
            ]
        );
        // laid out and received again, the frame is whole
        let frame: Vec<u8> = (0..9014).map(|i| (i % 251) as u8).collect();
        let mut r = Reassembly::default();
        let mut got = None;
        for (range, opt) in layout(frame.len(), room) {
            if let Piece::Whole(b) = r.take(&frame[range], opt) {
                got = Some(b.to_vec());
            }
        }
        assert_eq!(got.as_deref(), Some(&frame[..]));
    }
}
