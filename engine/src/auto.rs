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
    /// TCP-lite runs IPv4 only.
    pub ipv4: bool,
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
    if !f.ipv4 {
        return socket("TCP-lite runs IPv4 only and this test is IPv6".into());
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

/// Effective capabilities (`CapEff:` of /proc/self/status) hold
/// CAP_NET_ADMIN (12), CAP_NET_RAW (13, for the AF_XDP socket) and
/// CAP_BPF (39) or CAP_SYS_ADMIN (21).
pub fn caps_allow_xdp(status: &str) -> bool {
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
        .unwrap_or(0);
    let has = |bit: u32| eff & (1 << bit) != 0;
    has(12) && has(13) && (has(39) || has(21))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> Facts<'static> {
        Facts {
            linux: true,
            ipv4: true,
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
        let cases: [(Facts, &str); 6] = [
            (
                Facts {
                    linux: false,
                    ..facts()
                },
                "needs Linux",
            ),
            (
                Facts {
                    ipv4: false,
                    ..facts()
                },
                "IPv4 only",
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
        assert!(caps_allow_xdp("Name:\tx\nCapEff:\t000001ffffffffff\n"));
        // CAP_NET_ADMIN, CAP_NET_RAW and CAP_SYS_ADMIN, no CAP_BPF (older kernels).
        assert!(caps_allow_xdp("CapEff:\t0000000000203000\n"));
        // without CAP_NET_RAW, or with CAP_NET_ADMIN alone
        assert!(!caps_allow_xdp("CapEff:\t0000000000201000\n"));
        assert!(!caps_allow_xdp("CapEff:\t0000000000001000\n"));
        assert!(!caps_allow_xdp("CapEff:\t0000000000000000\n"));
        assert!(!caps_allow_xdp("garbage"));
    }
}
