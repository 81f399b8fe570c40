//! Raw mode over AF_XDP: a sender that transmits test frames from one
//! queue at full speed or at a set pace, and a receiver that counts frames,
//! bytes, sequence gaps, reorderings and malformed frames. What xdpsock's
//! txonly/rxdrop and pktgen give, inside wirespeed's tests.
//!
//! Both loops busy-poll while there is work and back off to `poll()` when
//! idle, so two busy workers on a small machine leave the kernel's own
//! NAPI work room to run.

use super::xsk::XskQueue;
use crate::metrics::interval::Counter;
use crate::wire::raw_frame::{self, Endpoints, SeqTracker};
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Frames submitted or reaped per ring operation.
const BATCH: usize = 64;
/// Empty polls before a worker sleeps in `poll()`.
const SPINS: u32 = 256;
/// Batches between two zero-copy wakeups of the driver
/// ([`XskQueue::wake_zerocopy`]): often enough for the kernel's own packets
/// on the queue, rarely enough to cost little.
const WAKE_EVERY: u32 = 16;
/// A receiver sleeps only after this long without a frame.
const QUIET: Duration = Duration::from_millis(20);

pub use crate::report::model::RawCount;

/// A sender's parameters.
#[derive(Clone, Copy, Debug)]
pub struct SendSpec {
    pub ep: Endpoints,
    pub frame_size: usize,
    pub tag: u32,
    pub queue: u16,
    /// Frames per second; None = as fast as the ring takes them.
    pub rate_pps: Option<f64>,
    pub duration: Duration,
}

/// Transmit for the duration (or until `stop`); returns the frames the
/// kernel completed and the seconds spent sending. Completed bytes are
/// added to `live` as they complete, for per-interval figures.
pub fn send(
    q: &mut XskQueue,
    spec: &SendSpec,
    stop: &AtomicBool,
    live: &Counter,
) -> (RawCount, f64) {
    let len = spec.frame_size;
    let mut template = vec![0u8; len];
    raw_frame::build(&mut template, len, &spec.ep, spec.tag, spec.queue, 0);
    // Every frame holds the template once; per send only the sequence changes.
    let mut free = std::mem::take(&mut q.descs);
    for d in &mut free {
        // SAFETY: these frames are ours: none is on any ring yet.
        let mut data = unsafe { q.umem.data_mut(d) };
        let _ = data.cursor().write_all(&template);
    }
    let mut reaped = vec![xsk_rs::FrameDesc::default(); BATCH];
    let start = Instant::now();
    let deadline = start + spec.duration;
    let (mut seq, mut done, mut spins, mut passes) = (0u64, 0u64, 0u32, 0u32);
    loop {
        // SAFETY: the completion ring returns frames of this UMEM.
        let n = unsafe { q.comp.consume(&mut reaped) };
        done += n as u64;
        if n > 0 {
            live.add((n * len) as u64);
        }
        free.extend_from_slice(&reaped[..n]);
        passes = passes.wrapping_add(1);
        if passes % WAKE_EVERY == 0 {
            q.wake_zerocopy();
        }
        let now = Instant::now();
        if now >= deadline || stop.load(Ordering::Relaxed) {
            break;
        }
        let allowed = match spec.rate_pps {
            Some(r) => (((now - start).as_secs_f64() * r) as u64).saturating_sub(seq),
            None => u64::MAX,
        };
        let want = free
            .len()
            .min(BATCH)
            .min(allowed.min(BATCH as u64) as usize);
        let room = q.tx.nb_free(want as u32) as usize;
        let batch = want.min(room);
        if batch == 0 {
            spins += 1;
            if spins > SPINS {
                if q.tx.needs_wakeup() {
                    let _ = q.tx.wakeup();
                }
                std::thread::sleep(Duration::from_micros(50));
                spins = 0;
            }
            continue;
        }
        spins = 0;
        let at = free.len() - batch;
        for d in &mut free[at..] {
            // SAFETY: free frames are ours until produced.
            let mut data = unsafe { q.umem.data_mut(d) };
            data.cursor().set_pos(len);
            raw_frame::set_seq(data.contents_mut(), seq);
            seq += 1;
        }
        // SAFETY: these frames are on no other ring. produce's count is
        // the truth; a failed wakeup only delays them.
        let sent = unsafe { q.tx.produce(&free[at..]) };
        if sent > 0 && (q.busy_poll || q.tx.needs_wakeup()) {
            let _ = q.tx.wakeup();
        }
        // produce is all or nothing
        if sent == batch {
            free.truncate(at);
        } else {
            seq -= batch as u64;
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    // Let what is on the ring go out, bounded.
    let drain = Instant::now() + Duration::from_millis(500);
    while done < seq && Instant::now() < drain {
        q.wake_zerocopy();
        if q.tx.needs_wakeup() {
            let _ = q.tx.wakeup();
        }
        // SAFETY: as above.
        let n = unsafe { q.comp.consume(&mut reaped) };
        done += n as u64;
        live.add((n * len) as u64);
        free.extend_from_slice(&reaped[..n]);
        if n == 0 {
            std::thread::sleep(Duration::from_micros(100));
        }
    }
    q.descs = free;
    (
        RawCount {
            frames: done,
            bytes: done * len as u64,
            ..Default::default()
        },
        seconds,
    )
}

/// A receiver's parameters.
#[derive(Clone, Copy, Debug)]
pub struct RecvSpec {
    pub tag: u32,
    pub dst_port: u16,
    /// Stop this long after the start, or at `stop`.
    pub duration: Duration,
    /// When the sender stops; idleness counts only after it.
    pub sender_end: Duration,
    /// Once the sender's time is up, stop after this long with nothing
    /// received (a queue that got no frame at all stops then too).
    pub idle: Duration,
}

/// Count test frames until the duration, idle time, or `stop`; returns the
/// count and the seconds from `start` to the last frame. Received bytes
/// are added to `live` per batch.
pub fn receive(
    q: &mut XskQueue,
    spec: &RecvSpec,
    start: Instant,
    stop: &AtomicBool,
    live: &Counter,
) -> (RawCount, f64) {
    // The fill ring was stocked when the socket was set up (RawEnd::open).
    let mut rx = vec![xsk_rs::FrameDesc::default(); BATCH];
    let mut trackers: Vec<SeqTracker> = Vec::new();
    let mut c = RawCount::default();
    let mut last = None::<Instant>;
    let (mut spins, mut batches) = (0u32, 0u32);
    loop {
        // SAFETY: the receive ring returns frames of this UMEM.
        let n = unsafe { q.rx.consume(&mut rx) };
        let now = Instant::now();
        // Checked every pass: a stream of stray frames must not keep a
        // receiver past its time or an abort.
        if now - start >= spec.duration || stop.load(Ordering::Relaxed) {
            break;
        }
        if n == 0 {
            // Idle ends the test only once the sender's time is up.
            let quiet = now.saturating_duration_since(last.unwrap_or(start + spec.sender_end));
            if now - start >= spec.sender_end && quiet >= spec.idle {
                break;
            }
            // Spin while frames came recently: a sleep in poll() can take
            // milliseconds to end on a loaded machine, longer than the
            // fill ring lasts at line rate. Sleep only when quiet.
            spins += 1;
            let recent = last.is_some_and(|t| now - t < QUIET);
            if spins > SPINS && !recent {
                q.wake_zerocopy();
                let _ = q.rx.poll(1);
                spins = 0;
            } else if q.busy_poll || q.fill.needs_wakeup() {
                q.kick_rx();
            }
            continue;
        }
        spins = 0;
        last = Some(now);
        let before = c.bytes;
        for d in &rx[..n] {
            // SAFETY: a received frame, ours until we hand it back.
            let data = unsafe { q.umem.data(d) };
            let f = data.contents();
            match raw_frame::parse(f, spec.tag, spec.dst_port) {
                Some(m) if usize::from(m.queue) < 1024 => {
                    let i = usize::from(m.queue);
                    if trackers.len() <= i {
                        trackers.resize(i + 1, SeqTracker::default());
                    }
                    if trackers[i].see(m.seq) {
                        c.bytes += f.len() as u64;
                    } else {
                        c.malformed += 1;
                    }
                }
                _ => c.malformed += 1,
            }
        }
        live.add(c.bytes - before);
        // Hand the frames back; the kernel freed a fill slot for each
        // frame it delivered, so this fits (bounded all the same).
        for _ in 0..1000 {
            // SAFETY: handing consumed frames of this UMEM back to the kernel.
            if unsafe { q.fill.produce(&rx[..n]) } == n {
                break;
            }
            if q.fill.needs_wakeup() {
                let _ = q.fill.wakeup(q.rx.fd_mut(), 0);
            }
        }
        batches = batches.wrapping_add(1);
        if batches % WAKE_EVERY == 0 {
            q.wake_zerocopy();
        }
    }
    for t in &trackers {
        c.frames += t.received;
        c.gaps += t.gaps;
        c.reorders += t.reorders;
    }
    c.kernel_dropped = q.kernel_dropped();
    (
        c,
        last.map_or(0.0, |t| t.saturating_duration_since(start).as_secs_f64()),
    )
}
