//! Frames that arrive on one worker's queue for a connection another
//! worker owns. Where the NIC's hash can't be steered (veth and tap, whose
//! receive queue is the peer's transmit queue; a kernel peer's own port
//! choice), a frame may land on any queue: its worker copies it into the
//! owner's bounded single-producer ring, one ring per (from, to) pair, so
//! the per-packet path takes no lock. Rare by design, and counted.

/// Bytes of each ring for an end of `workers` workers: together the rings
/// into one worker hold a full queue's worth of windows (about 4000
/// MTU-sized frames, the fill-ring budget) even when every frame of its
/// connections lands elsewhere, as a kernel peer's may; at least 512 KiB.
pub(super) fn ring_bytes(workers: usize) -> usize {
    ((6 << 20) / workers.saturating_sub(1).max(1)).max(512 << 10)
}

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
        copy_into((a, b), 0, &len.to_ne_bytes());
        copy_into((a, b), LEN, frame);
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
        // The frame starts LEN bytes in, possibly past the first slice.
        let (a, b) = match a.len() {
            n if n >= LEN => (&a[LEN..], b),
            n => (&b[LEN - n..], &[][..]),
        };
        buf[..a.len().min(len)].copy_from_slice(&a[..a.len().min(len)]);
        if a.len() < len {
            buf[a.len()..len].copy_from_slice(&b[..len - a.len()]);
        }
        chunk.commit_all();
        Some(len)
    }
}

/// Copy `src` to offset `at` of a ring chunk given as its two slices.
fn copy_into((a, b): (&mut [u8], &mut [u8]), at: usize, src: &[u8]) {
    let in_a = a.len().saturating_sub(at).min(src.len());
    if in_a > 0 {
        a[at..at + in_a].copy_from_slice(&src[..in_a]);
    }
    let rest = &src[in_a..];
    let b_at = at + in_a - a.len().min(at + in_a);
    b[b_at..b_at + rest.len()].copy_from_slice(rest);
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

    #[test]
    fn every_split_of_length_and_frame_round_trips() {
        // A 61-byte ring: over many frames every wrap position comes up,
        // inside the length and inside the frame.
        let (mut tx, mut rx) = channel(61);
        let mut buf = vec![0u8; 1 << 16];
        for k in 0..500usize {
            let frame: Vec<u8> = (0..1 + k % 50).map(|i| (i * 7 + k) as u8).collect();
            assert!(tx.push(&frame), "frame {k}");
            assert_eq!(rx.pop(&mut buf), Some(frame.len()), "frame {k}");
            assert_eq!(&buf[..frame.len()], &frame[..], "frame {k}");
        }
    }
}
