//! AF_XDP sockets (xsk-rs, with libxdp's own program inhibited: ours is
//! already attached). Zero-copy is tried first, copy mode after, and the
//! outcome is kept so every report can say which ran.

use crate::{Error, Result};
use std::num::NonZeroU32;
use xsk_rs::config::{BindFlags, LibxdpFlags, SocketConfig, UmemConfig};
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
}

fn config(flags: BindFlags) -> SocketConfig {
    SocketConfig::builder()
        .libxdp_flags(LibxdpFlags::XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD)
        .bind_flags(flags | BindFlags::XDP_USE_NEED_WAKEUP)
        .build()
}

/// Open a socket on `iface` queue `queue` with `frames` UMEM frames,
/// zero-copy if the driver can, else copy (unless `zerocopy_only`).
pub fn open(iface: &str, queue: u32, frames: u32, zerocopy_only: bool) -> Result<XskQueue> {
    let ifname = iface
        .parse()
        .map_err(|_| Error::Invalid(format!("{iface:?} is not a valid interface name")))?;
    let (umem, descs) = Umem::new(
        UmemConfig::default(),
        NonZeroU32::new(frames.max(64)).expect("nonzero"),
        false,
    )
    .map_err(|e| Error::Invalid(format!("creating the UMEM: {e}")))?;
    let mut last = None;
    for (mode, flags) in [
        (XskMode::ZeroCopy, BindFlags::XDP_ZEROCOPY),
        (XskMode::Copy, BindFlags::XDP_COPY),
    ] {
        if mode == XskMode::Copy && zerocopy_only {
            break;
        }
        // SAFETY: a fresh UMEM, not shared with any other socket.
        match unsafe { Socket::new(config(flags), &umem, &ifname, queue) } {
            Ok((tx, rx, Some((fill, comp)))) => {
                return Ok(XskQueue {
                    umem,
                    descs,
                    tx,
                    rx,
                    fill,
                    comp,
                    mode,
                })
            }
            Ok(_) => {
                return Err(Error::Invalid(
                    "AF_XDP socket came without fill and completion rings".into(),
                ))
            }
            Err(e) => last = Some(e.to_string()),
        }
    }
    let why = last.unwrap_or_default();
    if why.contains("Operation not permitted") {
        return Err(Error::Privilege(
            "AF_XDP needs CAP_NET_ADMIN and CAP_BPF: run as root, or use --mode socket".into(),
        ));
    }
    Err(Error::Invalid(format!(
        "no AF_XDP socket on {iface} queue {queue}: {why}"
    )))
}
