//! What `--mode auto` picks for one end of a TCP test, and why. Pure: the
//! facts come from the caller (privileges, the route's interface, its
//! driver, what the peer runs), so every rule is tested without a NIC.
//! The last check is a real one: the caller then tries to attach the
//! steering program natively and bind AF_XDP, and a refusal there is the
//! reason for kernel sockets ([`after_probe`]).

/// What the other end of the flows runs, as far as this end knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    /// TCP-lite: it checksums every frame it sends.
    TcpLite,
    /// The kernel's TCP stack.
    Kernel,
    /// Not decided yet (the peer is on `auto` and decides after us).
    Unknown,
}

impl Peer {
    /// What a peer asked to run `mode` will run.
    pub fn of(mode: crate::spec::Mode) -> Peer {
        match mode {
            crate::spec::Mode::Xdp => Peer::TcpLite,
            crate::spec::Mode::Socket => Peer::Kernel,
            crate::spec::Mode::Auto => Peer::Unknown,
        }
    }
}

/// One end's facts, gathered before anything is attached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Facts<'a> {
    /// AF_XDP exists only on Linux.
    pub linux: bool,
    /// One-way flows this end runs.
    pub flows: usize,
    /// The most TCP-lite runs per end.
    pub max_flows: usize,
    /// The peer is this host itself (loopback or a local address): no NIC
    /// lies between, whatever interface is named.
    pub peer_local: bool,
    /// The interface the flows leave by (named, or the route's).
    pub iface: Option<&'a str>,
    /// Its driver, from the ethtool ioctl.
    pub driver: Option<&'a str>,
    /// CAP_NET_ADMIN and CAP_BPF (or root).
    pub privileged: bool,
    pub peer: Peer,
}

/// Drivers that hand a kernel sender's frames over with the TCP checksum
/// still to be filled in (CHECKSUM_PARTIAL passes through): TCP-lite must
/// drop such frames, so it runs there only when the peer is TCP-lite too.
pub const PARTIAL_CHECKSUM_DRIVERS: &[&str] = &["veth", "tun"];

/// Where the facts alone decide: `Err(reason)` runs kernel sockets with
/// that reason; `Ok(iface)` means try AF_XDP on `iface` for real.
pub fn pre_check<'a>(f: &Facts<'a>) -> Result<&'a str, String> {
    let socket = |why: String| Err(format!("auto: {why}; kernel sockets"));
    if !f.linux {
        return socket("AF_XDP needs Linux".into());
    }
    if f.flows > f.max_flows {
        return socket(format!(
            "{} flows exceed the {} TCP-lite runs per end",
            f.flows, f.max_flows
        ));
    }
    if f.peer_local {
        return socket(
            "the peer is this host itself (loopback or a local address): no NIC lies between"
                .into(),
        );
    }
    let Some(iface) = f.iface else {
        return socket("no interface found for the flows (name one with --iface)".into());
    };
    if !f.privileged {
        return socket("AF_XDP needs CAP_NET_ADMIN, CAP_NET_RAW and CAP_BPF (run as root)".into());
    }
    if let Some(d) = f.driver.filter(|d| PARTIAL_CHECKSUM_DRIVERS.contains(d)) {
        match f.peer {
            Peer::TcpLite => {}
            Peer::Kernel => return socket(format!(
                "{iface} is a {d} link and the peer runs kernel TCP, whose frames arrive with their checksums left to an offload that never happens (TCP-lite drops them; `ethtool -K PEER tx off` and --mode xdp force it)"
            )),
            Peer::Unknown => return socket(format!(
                "{iface} is a {d} link and the peer's mode is not known yet: a kernel TCP peer's frames would arrive with partial checksums (run the peer with xdp to use TCP-lite here)"
            )),
        }
    }
    Ok(iface)
}

/// The reason once the real attempt on `iface` is over: `Ok(mode)` is the
/// xdp variant that opened (`xdp-copy`, `xdp-zerocopy`), `Err` the refusal.
pub fn after_probe(iface: &str, driver: Option<&str>, got: Result<&str, String>) -> String {
    let drv = driver.unwrap_or("unknown driver");
    match got {
        Ok(mode) => format!(
            "auto: {iface} ({drv}) runs XDP natively and AF_XDP opened ({mode}): TCP-lite over AF_XDP"
        ),
        Err(e) => format!(
            "auto: TCP-lite could not open natively on {iface} ({drv}): {e}; kernel sockets"
        ),
    }
}

/// Effective capabilities (`CapEff` of /proc/self/status) hold
/// CAP_NET_ADMIN (12), CAP_NET_RAW (13, for the AF_XDP socket) and
/// CAP_BPF (39) or CAP_SYS_ADMIN (21).
pub fn caps_allow_xdp(eff: u64) -> bool {
    let has = |bit: u32| eff & (1 << bit) != 0;
    has(12) && has(13) && (has(39) || has(21))
}

/// `CapEff` of a /proc/PID/status text, by the procfs crate's parser.
#[cfg(target_os = "linux")]
pub fn effective_caps(status: &str) -> Option<u64> {
    use procfs::FromRead;
    procfs::process::Status::from_read(status.as_bytes())
        .ok()
        .map(|s| s.capeff)
}

/// Whether this process may attach XDP and open AF_XDP sockets; an
/// unreadable /proc/self/status counts as no.
#[cfg(target_os = "linux")]
pub fn xdp_privileged() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| effective_caps(&s))
        .is_some_and(caps_allow_xdp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> Facts<'static> {
        Facts {
            linux: true,
            flows: 1,
            max_flows: 8,
            peer_local: false,
            iface: Some("eth0"),
            driver: Some("virtio_net"),
            privileged: true,
            peer: Peer::Kernel,
        }
    }

    #[test]
    fn a_native_nic_is_tried() {
        assert_eq!(pre_check(&facts()), Ok("eth0"));
    }

    #[test]
    fn each_missing_fact_says_why_sockets() {
        let cases: [(Facts, &str); 5] = [
            (
                Facts {
                    linux: false,
                    ..facts()
                },
                "needs Linux",
            ),
            (
                Facts {
                    flows: 9,
                    ..facts()
                },
                "9 flows exceed the 8",
            ),
            (
                Facts {
                    iface: None,
                    ..facts()
                },
                "--iface",
            ),
            (
                Facts {
                    peer_local: true,
                    ..facts()
                },
                "this host itself",
            ),
            (
                Facts {
                    privileged: false,
                    ..facts()
                },
                "CAP_NET_ADMIN",
            ),
        ];
        for (f, want) in cases {
            let r = pre_check(&f).unwrap_err();
            assert!(r.starts_with("auto: ") && r.contains(want), "{r}");
            assert!(r.ends_with("kernel sockets"), "{r}");
        }
    }

    #[test]
    fn partial_checksum_links_need_a_tcp_lite_peer() {
        for d in ["veth", "tun"] {
            let f = Facts {
                driver: Some(d),
                ..facts()
            };
            assert!(pre_check(&f).unwrap_err().contains("peer runs kernel TCP"));
            let f = Facts {
                peer: Peer::Unknown,
                ..f
            };
            assert!(pre_check(&f).unwrap_err().contains("not known yet"));
            let f = Facts {
                peer: Peer::TcpLite,
                ..f
            };
            assert_eq!(pre_check(&f), Ok("eth0"));
        }
    }

    #[test]
    fn probe_outcome_names_the_path() {
        let why = after_probe("eth0", Some("virtio_net"), Ok("xdp-copy"));
        assert!(
            why.contains("xdp-copy") && why.contains("virtio_net"),
            "{why}"
        );
        let why = after_probe("eth0", Some("e1000"), Err("no native mode".into()));
        assert!(why.contains("no native mode") && why.ends_with("kernel sockets"));
    }

    #[test]
    fn capabilities() {
        assert!(caps_allow_xdp(0x0000_01ff_ffff_ffff));
        // CAP_NET_ADMIN, CAP_NET_RAW and CAP_SYS_ADMIN, no CAP_BPF (older kernels).
        assert!(caps_allow_xdp(0x0020_3000));
        // without CAP_NET_RAW, or with CAP_NET_ADMIN alone
        assert!(!caps_allow_xdp(0x0020_1000));
        assert!(!caps_allow_xdp(0x1000));
        assert!(!caps_allow_xdp(0));
    }

    /// Recorded from root in a 6.18 guest (Mems_allowed cut short).
    #[cfg(target_os = "linux")]
    const STATUS: &str = "Name:\tcat\nUmask:\t0022\nState:\tR (running)\nTgid:\t21453\nNgid:\t0\nPid:\t21453\nPPid:\t21451\nTracerPid:\t0\nUid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nFDSize:\t256\nGroups:\t \nNStgid:\t21453\nNSpid:\t21453\nNSpgid:\t21451\nNSsid:\t14488\nKthread:\t0\nVmPeak:\t    3060 kB\nVmSize:\t    3060 kB\nVmLck:\t       0 kB\nVmPin:\t       0 kB\nVmHWM:\t    1752 kB\nVmRSS:\t    1752 kB\nRssAnon:\t     112 kB\nRssFile:\t    1640 kB\nRssShmem:\t       0 kB\nVmData:\t     360 kB\nVmStk:\t     132 kB\nVmExe:\t      20 kB\nVmLib:\t    1528 kB\nVmPTE:\t      48 kB\nVmSwap:\t       0 kB\nHugetlbPages:\t       0 kB\nCoreDumping:\t0\nTHP_enabled:\t1\nuntag_mask:\t0xffffffffffffffff\nThreads:\t1\nSigQ:\t1/96363\nSigPnd:\t0000000000000000\nShdPnd:\t0000000000000000\nSigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\nSigCgt:\t0000000000000000\nCapInh:\t0000000000000000\nCapPrm:\t000001fffeffffff\nCapEff:\t000001fffeffffff\nCapBnd:\t000001fffeffffff\nCapAmb:\t0000000000000000\nNoNewPrivs:\t0\nSeccomp:\t0\nSeccomp_filters:\t0\nSpeculation_Store_Bypass:\tvulnerable\nSpeculationIndirectBranch:\talways enabled\nCpus_allowed:\t3\nCpus_allowed_list:\t0-1\nMems_allowed:\t00000001\nMems_allowed_list:\t0\nvoluntary_ctxt_switches:\t0\nnonvoluntary_ctxt_switches:\t1\n";

    #[test]
    #[cfg(target_os = "linux")]
    fn capabilities_from_status() {
        assert_eq!(effective_caps(STATUS), Some(0x0000_01ff_feff_ffff));
        let dropped = STATUS.replace("CapEff:\t000001fffeffffff", "CapEff:\t0000000000001000");
        assert_eq!(effective_caps(&dropped), Some(0x1000));
        assert_eq!(effective_caps("garbage"), None);
        // The live file parses too (whatever this process may do).
        let live = std::fs::read_to_string("/proc/self/status").unwrap();
        assert!(effective_caps(&live).is_some(), "{live}");
    }
}
