//! What an interface can do for wirespeed (`wirespeed doctor`), and
//! removing what an older wirespeed left attached (`wirespeed cleanup`).
//!
//! Facts come from sysfs, procfs and the ethtool ioctl. XDP and AF_XDP
//! support are probed, not guessed: the steering program is attached in
//! native mode and an AF_XDP socket is bound zero-copy, then copy. Probing
//! reconfigures some NICs' rings (a short traffic blip), so it runs only
//! for an interface named with --iface.

use super::loader::{attached_program, Steering, PROGRAM_NAME};
use super::xsk::{self, XskMode};
use crate::metrics::irq::parse_interrupts;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// One interface's facts.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct IfaceReport {
    pub name: String,
    pub driver: Option<String>,
    pub speed_bps: Option<f64>,
    pub mtu: Option<u32>,
    pub rx_queues: u32,
    pub tx_queues: u32,
    /// ethtool channels (combined, or rx) where the driver reports them.
    pub channels: Option<u32>,
    /// An XDP program already on the interface: (name, id).
    pub xdp_program: Option<(String, u32)>,
    /// Probed: "native", "generic only", or why not; None = not probed.
    pub native_xdp: Option<String>,
    /// Probed: "zerocopy", "copy", or why not; None = not probed.
    pub af_xdp: Option<String>,
    pub busy_poll: BusyPoll,
    pub irqs: Vec<IrqInfo>,
    /// The data path `--mode auto` would use on this NIC, and why.
    pub auto_mode: String,
    pub auto_reason: String,
}

/// Busy-polling knobs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BusyPoll {
    /// net.core.busy_poll and busy_read (microseconds; 0 = off).
    pub busy_poll_us: Option<u64>,
    pub busy_read_us: Option<u64>,
    /// Per interface: napi_defer_hard_irqs and gro_flush_timeout (ns),
    /// which SO_PREFER_BUSY_POLL relies on.
    pub napi_defer_hard_irqs: Option<u64>,
    pub gro_flush_timeout_ns: Option<u64>,
}

/// An interrupt line of the interface.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct IrqInfo {
    pub irq: String,
    pub name: String,
    pub affinity: Option<String>,
}

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

fn count_dir(path: &str, prefix: &str) -> u32 {
    std::fs::read_dir(path)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
                .count() as u32
        })
        .unwrap_or(0)
}

/// Every interface on this host (in this namespace), by name.
pub fn interfaces() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir("/sys/class/net")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Facts about `name`; with `probe`, XDP and AF_XDP are tried for real.
pub fn inspect(name: &str, probe: bool) -> Result<IfaceReport> {
    crate::datapath::socket::check_iface(name)?;
    let base = format!("/sys/class/net/{name}");
    let (speed_bps, mtu) = crate::plan::wire::iface_facts(name);
    let (driver, channels) = ethtool(name);
    let irqs = irq_lines(name);
    let mut r = IfaceReport {
        name: name.to_string(),
        driver,
        speed_bps,
        mtu,
        rx_queues: count_dir(&format!("{base}/queues"), "rx-"),
        tx_queues: count_dir(&format!("{base}/queues"), "tx-"),
        channels,
        xdp_program: attached_program(name),
        busy_poll: BusyPoll {
            busy_poll_us: read("/proc/sys/net/core/busy_poll").and_then(|s| s.parse().ok()),
            busy_read_us: read("/proc/sys/net/core/busy_read").and_then(|s| s.parse().ok()),
            napi_defer_hard_irqs: read(&format!("{base}/napi_defer_hard_irqs"))
                .and_then(|s| s.parse().ok()),
            gro_flush_timeout_ns: read(&format!("{base}/gro_flush_timeout"))
                .and_then(|s| s.parse().ok()),
        },
        irqs,
        ..Default::default()
    };
    if probe && name != "lo" {
        match Steering::attach(name, &[], true) {
            Ok(s) => {
                r.native_xdp = Some("native".into());
                r.af_xdp = Some(probe_xsk(name));
                drop(s);
            }
            Err(Error::Privilege(m)) => return Err(Error::Privilege(m)),
            Err(e @ Error::Refused(_)) => r.native_xdp = Some(format!("not probed: {e}")),
            Err(e) => {
                r.native_xdp = Some(format!("no native XDP ({e}); generic (skb) mode only"));
                if let Ok(s) = Steering::attach(name, &[], false) {
                    r.af_xdp = Some(probe_xsk(name));
                    drop(s);
                }
            }
        }
    }
    let (mode, reason) = auto_choice(&r);
    r.auto_mode = mode;
    r.auto_reason = reason;
    Ok(r)
}

fn probe_xsk(name: &str) -> String {
    match xsk::open(name, 0, 64, false) {
        Ok(q) if q.mode == XskMode::ZeroCopy => "zerocopy".into(),
        Ok(_) => "copy (the driver has no zero-copy AF_XDP)".into(),
        Err(e) => format!("unavailable: {e}"),
    }
}

/// What `--mode auto` picks for TCP on this NIC against a kernel TCP peer,
/// and why: the same rules as a test's own pick ([`crate::auto`]), with the
/// probe standing in for the real attach.
pub fn auto_choice(r: &IfaceReport) -> (String, String) {
    let nic = match (&r.native_xdp, &r.af_xdp) {
        (Some(n), Some(a)) if n == "native" && a == "zerocopy" => Ok("xdp-zerocopy"),
        (Some(n), Some(a)) if n == "native" && a.starts_with("copy") => Ok("xdp-copy"),
        (None, _) => {
            return (
                "unknown".into(),
                "not probed: name the interface with --iface to try XDP and AF_XDP".into(),
            )
        }
        (Some(n), a) if n == "native" => {
            Err(format!("AF_XDP {}", a.as_deref().unwrap_or("not tried")))
        }
        (Some(n), _) => Err(n.clone()),
    };
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let facts = crate::auto::Facts {
        linux: true,
        ipv4: true,
        flows: 1,
        max_flows: super::stream::MAX_PORTS,
        peer_local: false,
        iface: Some(&r.name),
        driver: r.driver.as_deref(),
        privileged: crate::auto::caps_allow_xdp(&status),
        peer: crate::auto::Peer::Kernel,
    };
    if let Err(why) = crate::auto::pre_check(&facts) {
        let why = match (&nic, facts.driver) {
            (Ok(m), Some(d))
                if crate::auto::PARTIAL_CHECKSUM_DRIVERS.contains(&d) && facts.privileged =>
            {
                format!("against a kernel TCP peer, kernel sockets: a {d} link hands its frames over with their TCP checksums unfilled, which TCP-lite drops; {m} (TCP-lite) against a peer that runs TCP-lite too")
            }
            _ => why,
        };
        return ("socket".into(), why);
    }
    let mode = nic.clone().unwrap_or("socket");
    (
        mode.into(),
        crate::auto::after_probe(&r.name, facts.driver, nic),
    )
}

/// The queues an AF_XDP socket can bind to on `name`: the kernel's live
/// receive queues (what bind checks), which is what `ethtool -l` reports
/// as combined plus rx channels on drivers that report channels.
pub fn queue_count(name: &str) -> u32 {
    let live = count_dir(&format!("/sys/class/net/{name}/queues"), "rx-");
    match ethtool(name).1 {
        Some(ch) if live > 0 => ch.min(live),
        Some(ch) => ch,
        None => live,
    }
    .max(1)
}

/// The interface's driver, from the ethtool ioctl.
pub fn driver(name: &str) -> Option<String> {
    ethtool(name).0
}

/// Driver name and channel count from the ethtool ioctl.
fn ethtool(name: &str) -> (Option<String>, Option<u32>) {
    use nix::libc;
    const SIOCETHTOOL: libc::c_ulong = 0x8946;
    const ETHTOOL_GDRVINFO: u32 = 0x3;
    const ETHTOOL_GCHANNELS: u32 = 0x3c;
    #[repr(C)]
    struct Ifreq {
        name: [u8; 16],
        data: *mut libc::c_void,
        _pad: [u8; 16],
    }
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0) };
    if fd < 0 {
        return (None, None);
    }
    let mut ifr = Ifreq {
        name: [0; 16],
        data: std::ptr::null_mut(),
        _pad: [0; 16],
    };
    let n = name.len().min(15);
    ifr.name[..n].copy_from_slice(&name.as_bytes()[..n]);
    let mut drv = [0u8; 196];
    drv[..4].copy_from_slice(&ETHTOOL_GDRVINFO.to_ne_bytes());
    ifr.data = drv.as_mut_ptr().cast();
    // SAFETY: ifr points at a buffer as large as struct ethtool_drvinfo.
    let driver = (unsafe { libc::ioctl(fd, SIOCETHTOOL as _, &mut ifr) } == 0).then(|| {
        let d = &drv[4..36];
        String::from_utf8_lossy(&d[..d.iter().position(|&b| b == 0).unwrap_or(32)]).into_owned()
    });
    let mut ch = [0u32; 9];
    ch[0] = ETHTOOL_GCHANNELS;
    ifr.data = ch.as_mut_ptr().cast();
    // SAFETY: struct ethtool_channels is nine u32s.
    let channels =
        (unsafe { libc::ioctl(fd, SIOCETHTOOL as _, &mut ifr) } == 0).then(|| ch[8].max(ch[5]));
    unsafe { libc::close(fd) };
    (
        driver.filter(|d| !d.is_empty()),
        channels.filter(|&c| c > 0),
    )
}

/// Interrupt lines named for the interface (`eth0-TxRx-3`) or listed as
/// its device's MSI vectors.
fn irq_lines(name: &str) -> Vec<IrqInfo> {
    let msi: Vec<String> = std::fs::read_dir(format!("/sys/class/net/{name}/device/msi_irqs"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    let text = std::fs::read_to_string("/proc/interrupts").unwrap_or_default();
    parse_interrupts(&text)
        .into_iter()
        .filter(|l| l.name.contains(name) || msi.contains(&l.irq))
        .map(|l| IrqInfo {
            affinity: read(&format!("/proc/irq/{}/smp_affinity_list", l.irq)),
            irq: l.irq,
            name: l.name,
        })
        .collect()
}

/// Detach wirespeed's steering program where an older run left it attached
/// over netlink. Programs held by a live bpf_link (a running wirespeed) and
/// anyone else's programs are left alone. Returns one line per interface
/// looked at.
pub fn cleanup(only: Option<&str>) -> Result<Vec<String>> {
    let names = match only {
        Some(n) => {
            crate::datapath::socket::check_iface(n)?;
            vec![n.to_string()]
        }
        None => interfaces(),
    };
    let mut out = Vec::new();
    for n in names {
        match attached_program(&n) {
            None => {
                if only.is_some() {
                    out.push(format!("{n}: no XDP program"));
                }
            }
            Some((prog, id)) if prog != PROGRAM_NAME => out.push(format!(
                "{n}: XDP program {prog:?} (id {id}) is not wirespeed's: left alone"
            )),
            Some((_, id)) => {
                // Netlink detaches per mode; a program held by a bpf_link refuses all three.
                for mode in ["xdp", "xdpgeneric", "xdpdrv"] {
                    let _ = std::process::Command::new("ip")
                        .args(["link", "set", "dev", &n, mode, "off"])
                        .output();
                }
                let ok = attached_program(&n).is_none();
                out.push(if ok {
                    format!("{n}: detached wirespeed's XDP program (id {id})")
                } else {
                    format!("{n}: wirespeed's XDP program (id {id}) is held by a running wirespeed (bpf_link): left alone")
                });
            }
        }
    }
    Ok(out)
}
