//! Frames that arrive on one worker's queue for a connection another
//! worker owns. Where the NIC's hash can't be steered (veth and tap, whose
//! receive queue is the peer's transmit queue; a kernel peer's own port
//! choice), a frame may land on any queue: its worker copies it into the
//! owner's bounded single-producer ring, one ring per (from, to) pair, so
//! the per-packet path takes no lock. Rare by design, and counted.

/// Bytes a ring holds: room for a few hundred MTU-sized frames.
pub(super) const RING_BYTES: usize = 1 << 20;

/// Bytes of the length before each frame.
const LEN: usize = 2;

/// The sending half: one worker's frames for one other worker.
pub(super) struct Sender(rtrb::Producer<u8>);

/// The receiving half, polled by the owner.
pub(super) struct Receiver(rtrb::Consumer<u8>);

/// A ring of `bytes` bytes.
pub(super) fn channel(bytes: usize) -> (Sender, Receiver) {
    let (p, c) = rtrb::RingBuffer::new(bytes);
    (Sender(p), Receiver(c))
}

impl Sender {
    /// Queue a copy of `frame`; false (nothing queued) when the ring is
    /// full or the frame longer than 64 KiB.
    pub(super) fn push(&mut self, frame: &[u8]) -> bool {
        let Ok(len) = u16::try_from(frame.len()) else {
            return false;
        };
        let Ok(mut chunk) = self.0.write_chunk(LEN + frame.len()) else {
            return false;
        };
        let (a, b) = chunk.as_mut_slices();
        let bytes = len.to_ne_bytes().into_iter().chain(frame.iter().copied());
        for (slot, byte) in a.iter_mut().chain(b.iter_mut()).zip(bytes) {
            *slot = byte;
        }
        chunk.commit_all();
        true
    }
}

impl Receiver {
    /// Whether a frame waits.
    pub(super) fn pending(&self) -> bool {
        self.0.slots() > 0
    }

    /// The next frame, copied into `buf` (at least 64 KiB long); its length.
    pub(super) fn pop(&mut self, buf: &mut [u8]) -> Option<usize> {
        let len = {
            let head = self.0.read_chunk(LEN).ok()?;
            let (a, b) = head.as_slices();
            let mut l = [0u8; LEN];
            for (d, s) in l.iter_mut().zip(a.iter().chain(b)) {
                *d = *s;
            }
            usize::from(u16::from_ne_bytes(l))
        };
        // The sender commits length and frame together: both are here.
        let chunk = self.0.read_chunk(LEN + len).ok()?;
        let (a, b) = chunk.as_slices();
        for (d, s) in buf[..len].iter_mut().zip(a.iter().chain(b).skip(LEN)) {
            *d = *s;
        }
        chunk.commit_all();
        Some(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_cross_in_order_and_a_full_ring_refuses() {
        let (mut tx, mut rx) = channel(64);
        let mut buf = vec![0u8; 1 << 16];
        assert!(tx.push(&[1, 2, 3]));
        assert!(tx.push(&[4; 20]));
        assert!(!tx.push(&[5; 60]), "no room: refused whole");
        assert_eq!(rx.pop(&mut buf), Some(3));
        assert_eq!(&buf[..3], &[1, 2, 3]);
        // wraps around the ring's end
        assert!(tx.push(&[6; 30]));
        assert_eq!(rx.pop(&mut buf), Some(20));
        assert_eq!(&buf[..20], &[4; 20]);
        assert_eq!(rx.pop(&mut buf), Some(30));
        assert_eq!(&buf[..30], &[6; 30]);
        assert_eq!(rx.pop(&mut buf), None);
        assert!(!tx.push(&vec![0; 70_000]), "longer than a length holds");
    }
}
