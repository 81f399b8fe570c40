//! AF_XDP sockets (xsk-rs, with libxdp's own program inhibited: ours is
//! already attached). Zero-copy is tried first, copy mode after, and the
//! outcome is kept so every report can say which ran.

use crate::spec::XdpBind;
use crate::{Error, Result};
use std::num::NonZeroU32;
use xsk_rs::config::{BindFlags, LibxdpFlags, QueueSize, SocketConfig, UmemConfig};
use xsk_rs::{CompQueue, FillQueue, FrameDesc, RxQueue, Socket, TxQueue, Umem};

/// How the kernel moves frames for this socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XskMode {
    ZeroCopy,
    Copy,
}

impl XskMode {
    pub fn as_str(self) -> &'static str {
        match self {
            XskMode::ZeroCopy => "zerocopy",
            XskMode::Copy => "copy",
        }
    }
}

/// One AF_XDP socket with its UMEM and rings.
pub struct XskQueue {
    pub umem: Umem,
    pub descs: Vec<FrameDesc>,
    pub tx: TxQueue,
    pub rx: RxQueue,
    pub fill: FillQueue,
    pub comp: CompQueue,
    pub mode: XskMode,
    /// The queue this socket is bound to.
    pub queue: u32,
    /// SO_PREFER_BUSY_POLL and SO_BUSY_POLL_BUDGET took: the worker then
    /// drives the NIC's NAPI itself with each non-blocking recvfrom/sendto.
    pub busy_poll: bool,
    /// Bound with XDP_USE_SG: a frame longer than [`chunk_room`] comes and
    /// goes as a chain of descriptors (see `stream::chain`).
    pub multi_buffer: bool,
    /// Why zero-copy was refused when auto fell back to copy (errno and
    /// fix, [`super::bind_policy::zerocopy_refusal`]); None otherwise.
    pub zerocopy_refused: Option<String>,
}

/// Bytes of frame one UMEM chunk holds: the 4 KiB chunk less the XDP
/// headroom the kernel keeps in front of every frame (3840).
pub fn chunk_room() -> usize {
    UmemConfig::default().mtu() as usize
}

/// Busy-poll budget: frames the kernel's NAPI may handle per poll we drive.
const BUSY_POLL_BUDGET: i32 = 64;
/// How long one busy-poll call may spin in the kernel, in microseconds.
const BUSY_POLL_US: i32 = 20;

/// Ask the kernel to let this socket's own polls drive its queue's NAPI
/// (SO_PREFER_BUSY_POLL, Linux 5.11), with a budget per poll. True only
/// when the kernel reads back every value asked (getsockopt): false where
/// it lacks them, refuses (the budget needs CAP_NET_ADMIN), or keeps
/// another value.
fn prefer_busy_poll(fd: std::os::fd::RawFd) -> bool {
    use nix::libc;
    const SO_PREFER_BUSY_POLL: libc::c_int = 69;
    const SO_BUSY_POLL_BUDGET: libc::c_int = 70;
    [
        (SO_PREFER_BUSY_POLL, 1),
        (libc::SO_BUSY_POLL, BUSY_POLL_US),
        (SO_BUSY_POLL_BUDGET, BUSY_POLL_BUDGET),
    ]
    .into_iter()
    .all(|(opt, v)| {
        let int_len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: an int option on a socket this process owns.
        let set = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                (&v as *const libc::c_int).cast(),
                int_len,
            ) == 0
        };
        let (mut got, mut len): (libc::c_int, libc::socklen_t) = (0, int_len);
        // SAFETY: reads one int option into an int we own.
        let read = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                (&mut got as *mut libc::c_int).cast(),
                &mut len,
            ) == 0
        };
        set && read && got == v
    })
}

impl XskQueue {
    /// Frames the kernel dropped on their way to this socket, from
    /// XDP_STATISTICS: no fill-ring buffer or too long (rx_dropped), or the
    /// rx ring full. (The fill-ring-empty count is part of rx_dropped.)
    /// None where XDP_STATISTICS could not be read: absent, not zero.
    pub fn kernel_dropped(&self) -> Option<u64> {
        self.rx
            .fd()
            .xdp_statistics()
            .ok()
            .map(|s| s.rx_dropped() + s.rx_ring_full())
    }

    /// The kernel's drops before this socket by cause (XDP_STATISTICS):
    /// (rx ring full, fill ring empty, dropped for another reason such as
    /// no buffer or a frame too long); None where the kernel won't say.
    pub fn drops(&self) -> Option<(u64, u64, u64)> {
        self.rx.fd().xdp_statistics().ok().map(|s| {
            (
                s.rx_ring_full(),
                s.rx_fill_ring_empty_descs(),
                s.rx_dropped(),
            )
        })
    }

    /// In zero-copy mode, wake the driver for this queue both ways
    /// (sendto and recvfrom), whatever the rings' need-wakeup flags say;
    /// raw workers call it after each bind, every 16 batches and when idle.
    /// The queue is shared with the kernel's own packets (the control
    /// connection among them). On virtio_net the transmit wakeup is what
    /// runs the queue's send NAPI (`virtnet_xsk_wakeup` schedules it),
    /// which reaps the kernel's completions and restarts its transmit
    /// queue when the ring has room; a socket that only receives, or a
    /// sender whose ring stays full, otherwise leaves the kernel's packets
    /// waiting (measured: the agent's control messages stalled past the
    /// controller's 10 s timeout in every zero-copy raw test on a
    /// two-queue guest; with these wakeups, none did). A no-op in copy mode.
    pub fn wake_zerocopy(&self) {
        if self.mode == XskMode::ZeroCopy {
            use std::os::fd::AsRawFd;
            // SAFETY: a zero-length, non-blocking sendto on our own socket.
            unsafe {
                nix::libc::sendto(
                    self.tx.fd().as_raw_fd(),
                    std::ptr::null(),
                    0,
                    nix::libc::MSG_DONTWAIT,
                    std::ptr::null(),
                    0,
                );
            }
            self.kick_rx();
        }
    }

    /// One non-blocking receive call: with busy polling on it runs the
    /// queue's NAPI here, and in need_wakeup mode it wakes the kernel.
    pub fn kick_rx(&self) {
        use std::os::fd::AsRawFd;
        // SAFETY: a zero-length, non-blocking recvfrom on our own socket.
        unsafe {
            nix::libc::recvfrom(
                self.rx.fd().as_raw_fd(),
                std::ptr::null_mut(),
                0,
                nix::libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            );
        }
    }
}

/// The binds to try, in order: (mode, XDP_USE_SG). Zero-copy first unless
/// `bind` says copy; copy after unless it says zero-copy. Multi-buffer
/// goes before zero-copy: a jumbo link wants its frames whole; without the
/// flag (a kernel before 6.6) copy mode still runs, its frames one chunk long.
fn attempts(bind: XdpBind, multi_buffer: bool) -> Vec<(XskMode, bool)> {
    let mut v = Vec::new();
    if bind != XdpBind::Copy {
        v.push((XskMode::ZeroCopy, multi_buffer));
    }
    if bind != XdpBind::Zerocopy {
        v.push((XskMode::Copy, multi_buffer));
        if multi_buffer {
            v.push((XskMode::Copy, false));
        }
    }
    v
}

/// The errno under an xsk-rs error, and its text with the cause.
fn errno_of(e: &xsk_rs::socket::SocketCreateError) -> (Option<i32>, String) {
    use std::error::Error as _;
    let io = e.source().and_then(|s| s.downcast_ref::<std::io::Error>());
    (
        io.and_then(|i| i.raw_os_error()),
        match io {
            Some(i) => format!("{e}: {i}"),
            None => e.to_string(),
        },
    )
}

/// How much longer a multi-buffer socket's fill and receive rings are, and
/// (less one) its UMEM: a jumbo frame takes three chunks and three
/// descriptors, so this keeps room for as many frames in flight as a
/// one-chunk socket has (rings must be powers of two).
const CHAIN_RINGS: u32 = 4;
const CHAIN_UMEM: u32 = 3;

/// The receive and fill rings' length for `frames` one-chunk frames: half
/// of them stock the fill ring, and the receive ring holds as many; never
/// below libxdp's default (2048); longer for chains.
fn rx_ring(frames: u32, multi_buffer: bool) -> QueueSize {
    let n = (frames / 2).next_power_of_two().max(2048) * if multi_buffer { CHAIN_RINGS } else { 1 };
    QueueSize::new(n).expect("a power of two")
}

fn config(flags: BindFlags, rx: QueueSize) -> SocketConfig {
    SocketConfig::builder()
        .libxdp_flags(LibxdpFlags::XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD)
        .bind_flags(flags | BindFlags::XDP_USE_NEED_WAKEUP)
        .rx_queue_size(rx)
        .build()
}

/// Why a UMEM of `bytes` may not be registered: the kernel charges it to
/// RLIMIT_MEMLOCK unless the process has CAP_IPC_LOCK (root has). Empty
/// when the limit allows it.
fn memlock_hint(bytes: u64) -> String {
    use nix::sys::resource::{getrlimit, Resource};
    match getrlimit(Resource::RLIMIT_MEMLOCK) {
        Ok((soft, _)) if soft < bytes => format!(
            " (AF_XDP locks the UMEM's {} MiB in memory and the memlock limit is {} KiB: \
             raise it (`ulimit -l unlimited`, systemd LimitMEMLOCK=infinity) or run as root)",
            bytes >> 20,
            soft >> 10
        ),
        _ => String::new(),
    }
}

/// Open a socket on `iface` queue `queue` with `frames` UMEM frames,
/// zero-copy if the driver can, else copy (`bind` may ask for one only).
/// A refused zero-copy bind keeps its errno, with the fix, in the error
/// (or, when copy ran instead, in [`XskQueue::zerocopy_refused`]).
///
/// `multi_buffer` binds with XDP_USE_SG (Linux 6.6), for frames longer
/// than one chunk: that, not larger chunks, is how jumbo frames are
/// carried. Chunks over the 4 KiB page need a UMEM in huge pages and,
/// where they landed (6.6), worked in copy mode only; zero-copy drivers
/// (ice, i40e, mlx5) instead chain their 4 KiB buffers, and copy mode
/// chains alike, so one receive and transmit path serves both. A driver
/// whose zero-copy cannot chain refuses the flag, and copy mode is tried.
pub fn open(
    iface: &str,
    queue: u32,
    frames: u32,
    bind: XdpBind,
    multi_buffer: bool,
) -> Result<XskQueue> {
    let ifname = iface
        .parse()
        .map_err(|_| Error::Invalid(format!("{iface:?} is not a valid interface name")))?;
    let rx = rx_ring(frames, multi_buffer);
    let frames = frames * if multi_buffer { CHAIN_UMEM } else { 1 };
    let umem_config = UmemConfig::builder()
        .fill_queue_size(rx)
        .build()
        .map_err(|e| Error::Invalid(format!("UMEM configuration: {e}")))?;
    let (umem, descs) = Umem::new(
        umem_config,
        NonZeroU32::new(frames.max(64)).expect("nonzero"),
        false,
    )
    .map_err(|e| {
        Error::Invalid(format!(
            "creating the UMEM: {e}{}",
            memlock_hint(u64::from(frames.max(64)) * 4096)
        ))
    })?;
    let driver = crate::host::iface::driver(iface);
    let mut last = None;
    let mut zerocopy_refused = None;
    for (mode, sg) in attempts(bind, multi_buffer) {
        let flags = match mode {
            XskMode::ZeroCopy => BindFlags::XDP_ZEROCOPY,
            XskMode::Copy => BindFlags::XDP_COPY,
        } | match sg {
            true => BindFlags::XDP_USE_SG,
            false => BindFlags::empty(),
        };
        // SAFETY: a fresh UMEM, not shared with any other socket.
        match unsafe { Socket::new(config(flags, rx), &umem, &ifname, queue) } {
            Ok((tx, rx, Some((fill, comp)))) => {
                use std::os::fd::AsRawFd;
                let busy_poll = super::bind_policy::busy_poll_helps(driver.as_deref(), mode)
                    && prefer_busy_poll(rx.fd().as_raw_fd());
                return Ok(XskQueue {
                    queue,
                    busy_poll,
                    umem,
                    descs,
                    tx,
                    rx,
                    fill,
                    comp,
                    mode,
                    multi_buffer: sg,
                    zerocopy_refused: zerocopy_refused.filter(|_| mode == XskMode::Copy),
                });
            }
            Ok(_) => {
                return Err(Error::Invalid(
                    "AF_XDP socket came without fill and completion rings".into(),
                ))
            }
            Err(e) => {
                let (errno, text) = errno_of(&e);
                if errno == Some(nix::libc::EPERM) {
                    return Err(Error::Privilege(
                        "AF_XDP needs CAP_NET_ADMIN and CAP_BPF: run as root, or use --mode socket"
                            .into(),
                    ));
                }
                if mode == XskMode::ZeroCopy && zerocopy_refused.is_none() {
                    zerocopy_refused = Some(super::bind_policy::zerocopy_refusal(
                        errno,
                        driver.as_deref(),
                    ));
                }
                last = Some(text);
            }
        }
    }
    let why = last.unwrap_or_default();
    Err(Error::Invalid(match (bind, zerocopy_refused) {
        (XdpBind::Zerocopy, Some(advice)) => format!(
            "no zero-copy AF_XDP socket on {iface} queue {queue} (asked with xdp bind zerocopy): {advice}"
        ),
        _ => format!("no AF_XDP socket on {iface} queue {queue}: {why}"),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_tried_follow_the_choice() {
        use XskMode::*;
        assert_eq!(
            attempts(XdpBind::Auto, false),
            [(ZeroCopy, false), (Copy, false)]
        );
        assert_eq!(attempts(XdpBind::Zerocopy, true), [(ZeroCopy, true)]);
        assert_eq!(attempts(XdpBind::Copy, true), [(Copy, true), (Copy, false)]);
    }
}
