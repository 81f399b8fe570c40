//! What an interface can do for wirespeed (`wirespeed doctor`), and
//! removing what an older wirespeed left attached (`wirespeed cleanup`).
//!
//! Facts come from sysfs, procfs and the ethtool ioctl. XDP and AF_XDP
//! support are probed, not guessed: the steering program is attached in
//! native mode and an AF_XDP socket is bound zero-copy, then copy. Probing
//! reconfigures some NICs' rings (a short traffic blip), so it runs only
//! for an interface named with --iface.

use super::attached::{self, Detach};
use super::loader::{Steering, PROGRAM_NAME};
use super::xsk::{self, XskMode};
use crate::host::iface::{self, driver_and_channels as ethtool, interfaces, read};
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
    /// That program's mode and whether a bpf_link holds it, for people.
    #[serde(default)]
    pub xdp_detail: Option<String>,
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

/// Facts about `name`; with `probe`, XDP and AF_XDP are tried for real.
pub fn inspect(name: &str, probe: bool) -> Result<IfaceReport> {
    crate::datapath::socket::check_iface(name)?;
    let base = format!("/sys/class/net/{name}");
    let (speed_bps, mtu) = iface::facts(name);
    let (driver, channels) = ethtool(name);
    let irqs = irq_lines(name);
    let xdp = attached::on(name)
        .ok()
        .and_then(|(_, p)| p.into_iter().next());
    let mut r = IfaceReport {
        name: name.to_string(),
        driver,
        speed_bps,
        mtu,
        rx_queues: iface::count_dir(&format!("{base}/queues"), "rx-"),
        tx_queues: iface::count_dir(&format!("{base}/queues"), "tx-"),
        channels,
        xdp_program: xdp
            .as_ref()
            .map(|p| (p.name.clone().unwrap_or_default(), p.id)),
        xdp_detail: xdp.as_ref().map(attached::Attached::describe),
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
    match xsk::open(name, 0, 64, crate::spec::XdpBind::Auto, false) {
        Ok(q) if q.mode == XskMode::ZeroCopy => "zerocopy".into(),
        Ok(q) => format!(
            "copy (zero-copy refused: {})",
            q.zerocopy_refused
                .as_deref()
                .unwrap_or("the bind failed without an errno")
        ),
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
    let facts = crate::auto::Facts {
        linux: true,
        flows: 1,
        max_flows: super::stream::MAX_FLOWS,
        peer_local: false,
        iface: Some(&r.name),
        driver: r.driver.as_deref(),
        privileged: crate::auto::xdp_privileged(),
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
/// (or program) looked at.
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
        let (index, progs) = match attached::on(&n) {
            Ok(x) => x,
            Err(e) => {
                out.push(format!("{n}: {e}"));
                continue;
            }
        };
        if progs.is_empty() && only.is_some() {
            out.push(format!("{n}: no XDP program"));
        }
        for p in progs {
            let what = p.describe();
            out.push(match (p.name.as_deref(), p.link) {
                (Some(PROGRAM_NAME), Some(true)) => format!(
                    "{n}: wirespeed's XDP program {what} is held by a running wirespeed: left alone"
                ),
                (Some(PROGRAM_NAME), _) => match attached::detach(index, &p)? {
                    Detach::Detached => format!("{n}: detached wirespeed's XDP program {what}"),
                    Detach::HeldByLink => format!(
                        "{n}: wirespeed's XDP program {what} is held by a bpf_link (the kernel refused with EBUSY): left alone"
                    ),
                },
                (Some(_), _) => format!("{n}: XDP program {what} is not wirespeed's: left alone"),
                (None, _) => format!(
                    "{n}: XDP program {what}: its name is unreadable without CAP_SYS_ADMIN: left alone"
                ),
            });
        }
    }
    Ok(out)
}
