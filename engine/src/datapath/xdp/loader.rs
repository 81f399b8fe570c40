//! Loads xdp-programs/steer.bpf.c (embedded at build time), fills its flow
//! table, and attaches it through a bpf_link: in driver mode where the NIC
//! has native XDP, else in generic (skb) mode, and says which. A killed
//! process's link goes with it, so nothing stays attached. An interface
//! that already has someone else's XDP program is refused, never replaced.

use crate::{Error, Result};
use aya::maps::{Array, PerCpuArray, XskMap};
use aya::programs::{Xdp, XdpFlags};
use aya::{include_bytes_aligned, Ebpf};
use std::net::IpAddr;
use std::os::fd::AsRawFd;

/// The compiled steering program.
static PROGRAM: &[u8] = include_bytes_aligned!(concat!(env!("OUT_DIR"), "/steer.bpf.o"));

/// The compiled object, for tools that attach it by other means.
pub fn program_object() -> &'static [u8] {
    PROGRAM
}

/// The program's name, also how `cleanup` recognizes ours.
pub const PROGRAM_NAME: &str = "steer";

/// Mirrors `struct ws_flow` in xdp-programs/steer.h.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WsFlow {
    pub used: u8,
    pub family: u8,
    pub proto: u8,
    pub pad: u8,
    pub port_lo: u16,
    pub port_hi: u16,
    pub addr: [u8; 16],
    pub kernel_sport: u16,
    pub pad2: u16,
    pub peer: [u8; 16],
}

// SAFETY: plain old data with no padding bytes beyond the explicit `pad`s.
unsafe impl aya::Pod for WsFlow {}

/// Flow slots in the program (WS_MAX_FLOWS).
pub const MAX_FLOWS: usize = 8;

/// Which packets go to AF_XDP: the rest pass to the kernel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowMatch {
    /// IPPROTO_UDP (17) or IPPROTO_TCP (6).
    pub proto: u8,
    /// Local address; None = any.
    pub addr: Option<IpAddr>,
    pub ports: (u16, u16),
    /// Only from this peer address (None = any), and this one of its
    /// source ports left to the kernel: an iperf3 server's control
    /// connection shares the port its data streams arrive on.
    pub peer: Option<(IpAddr, Option<u16>)>,
}

/// An address in the map's 16 bytes (IPv4 in the first 4), and its family.
fn addr_bytes(a: Option<IpAddr>) -> ([u8; 16], u8) {
    let mut b = [0u8; 16];
    match a {
        Some(IpAddr::V4(a)) => {
            b[..4].copy_from_slice(&a.octets());
            (b, 4)
        }
        Some(IpAddr::V6(a)) => (a.octets(), 6),
        None => (b, 4),
    }
}

impl FlowMatch {
    fn to_map(self) -> WsFlow {
        let (addr, family) = addr_bytes(self.addr);
        let (peer, _) = addr_bytes(self.peer.map(|p| p.0));
        WsFlow {
            used: 1,
            family,
            proto: self.proto,
            pad: 0,
            port_lo: self.ports.0,
            port_hi: self.ports.1,
            addr,
            kernel_sport: self.peer.and_then(|p| p.1).unwrap_or(0),
            pad2: 0,
            peer,
        }
    }
}

/// How the program is attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachMode {
    /// In the driver, before any skb exists.
    Native,
    /// After the kernel built an skb: works everywhere, costs more.
    Generic,
}

impl AttachMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AttachMode::Native => "native",
            AttachMode::Generic => "generic",
        }
    }
}

/// The program's counters, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SteerCounters {
    pub seen: u64,
    pub redirected: u64,
    pub passed: u64,
    /// Matched a test flow, but no AF_XDP socket was on that queue.
    pub no_socket: u64,
}

/// The attached program; detached when dropped.
pub struct Steering {
    ebpf: Ebpf,
    pub mode: AttachMode,
    pub iface: String,
}

fn privilege_or(e: impl std::fmt::Display, what: &str) -> Error {
    let s = e.to_string();
    if s.contains("Operation not permitted") || s.contains("EPERM") || s.contains("permission") {
        Error::Privilege(format!(
            "{what}: XDP needs CAP_NET_ADMIN and CAP_BPF: run as root, or use --mode socket"
        ))
    } else {
        Error::Invalid(format!("{what}: {s}"))
    }
}

impl Steering {
    /// Attach to `iface`, steering `flows`; `native_only` refuses the
    /// generic fallback (used to probe).
    pub fn attach(iface: &str, flows: &[FlowMatch], native_only: bool) -> Result<Steering> {
        crate::datapath::socket::check_iface(iface)?;
        if flows.len() > MAX_FLOWS {
            return Err(Error::Invalid(format!(
                "at most {MAX_FLOWS} test flows per interface"
            )));
        }
        if let Some(other) = foreign_program(iface) {
            return Err(Error::Refused(format!(
                "{iface} already has an XDP program ({other}): wirespeed will not replace it; detach it \
                 (`ip link set dev {iface} xdp off`, or `wirespeed cleanup --iface {iface}` if it is an old wirespeed one) or use --mode socket"
            )));
        }
        let mut ebpf =
            Ebpf::load(PROGRAM).map_err(|e| privilege_or(e, "loading the XDP program"))?;
        {
            let mut table: Array<_, WsFlow> =
                Array::try_from(ebpf.map_mut("flows").expect("flows map"))
                    .map_err(|e| Error::Invalid(format!("flow table: {e}")))?;
            for (i, f) in flows.iter().enumerate() {
                table
                    .set(i as u32, f.to_map(), 0)
                    .map_err(|e| Error::Invalid(format!("flow table: {e}")))?;
            }
        }
        let prog: &mut Xdp = ebpf
            .program_mut(PROGRAM_NAME)
            .expect("steer program")
            .try_into()
            .map_err(|e| Error::Invalid(format!("XDP program: {e}")))?;
        prog.load()
            .map_err(|e| privilege_or(e, "loading the XDP program"))?;
        let mode = match prog.attach(iface, XdpFlags::DRV_MODE) {
            Ok(_) => AttachMode::Native,
            Err(e) if native_only => {
                return Err(privilege_or(
                    e,
                    &format!("attaching in native mode to {iface}"),
                ))
            }
            Err(_) => {
                prog.attach(iface, XdpFlags::SKB_MODE)
                    .map_err(|e| privilege_or(e, &format!("attaching XDP to {iface}")))?;
                AttachMode::Generic
            }
        };
        Ok(Steering {
            ebpf,
            mode,
            iface: iface.to_string(),
        })
    }

    /// Send queue `queue`'s matching packets to this AF_XDP socket.
    pub fn register(&mut self, queue: u32, socket: &impl AsRawFd) -> Result<()> {
        let mut m: XskMap<_> = XskMap::try_from(self.ebpf.map_mut("xsks").expect("xsks map"))
            .map_err(|e| Error::Invalid(format!("xsk map: {e}")))?;
        m.set(queue, socket.as_raw_fd(), 0).map_err(|e| {
            Error::Invalid(format!(
                "queue {queue} is out of range for the xsk map: {e}"
            ))
        })
    }

    /// The program's counters now; a slot that cannot be read fails the
    /// whole reading (its caller reports the counters as absent, not 0).
    pub fn counters(&self) -> Result<SteerCounters> {
        let m: PerCpuArray<_, u64> =
            PerCpuArray::try_from(self.ebpf.map("counters").expect("counters map"))
                .map_err(|e| Error::Invalid(format!("counters: {e}")))?;
        let get = |i: u32| -> Result<u64> {
            m.get(&i, 0)
                .map(|v| v.iter().sum())
                .map_err(|e| Error::Invalid(format!("reading XDP counter {i}: {e}")))
        };
        Ok(SteerCounters {
            seen: get(0)?,
            redirected: get(1)?,
            passed: get(2)?,
            no_socket: get(3)?,
        })
    }
}

/// The XDP program on `iface`, if any: (name, id); the name is empty
/// where the bpf syscall may not read it.
pub fn attached_program(iface: &str) -> Option<(String, u32)> {
    let (_, progs) = super::attached::on(iface).ok()?;
    progs
        .into_iter()
        .next()
        .map(|p| (p.name.unwrap_or_default(), p.id))
}

fn foreign_program(iface: &str) -> Option<String> {
    let (_, progs) = super::attached::on(iface).ok()?;
    progs.first().map(|p| p.describe())
}
