//! The destination MAC of raw frames: the next hop's link-layer address
//! from the kernel's neighbour table, as the kernel itself would address
//! them. The next hop comes from the IPv4 routing table (the gateway, or
//! the peer itself when on-link); an absent entry is resolved by sending
//! the kernel one datagram there, which makes it ARP.

use crate::host::iface::parse_mac;
use crate::{Error, Result};
use std::net::{Ipv4Addr, UdpSocket};
use std::time::{Duration, Instant};

/// One `/proc/net/route` line.
struct RouteLine<'a> {
    iface: &'a str,
    gateway: u32,
    metric: u32,
    mask: u32,
}

/// The routes of a `/proc/net/route` table that cover `dst`.
fn covering(route_table: &str, dst: Ipv4Addr) -> impl Iterator<Item = RouteLine<'_>> {
    // Addresses and masks are little-endian hex of the network-order bytes.
    let hex = |s: &str| u32::from_str_radix(s, 16).ok().map(u32::from_be);
    let d = u32::from(dst);
    route_table.lines().skip(1).filter_map(move |l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() < 8 {
            return None;
        }
        let (net, mask) = (hex(f[1])?, hex(f[7])?);
        (d & mask == net & mask).then_some(RouteLine {
            iface: f[0],
            gateway: hex(f[2])?,
            metric: f[6].parse().ok()?,
            mask,
        })
    })
}

/// The most specific route, the lowest metric among equals.
fn best<'a>(routes: impl Iterator<Item = RouteLine<'a>>) -> Option<RouteLine<'a>> {
    routes.max_by_key(|r| (r.mask.count_ones(), std::cmp::Reverse(r.metric)))
}

/// The next hop towards `dst` out of `iface`, by longest prefix in a
/// `/proc/net/route` table; `dst` itself when no route names a gateway.
pub fn next_hop(route_table: &str, iface: &str, dst: Ipv4Addr) -> Ipv4Addr {
    match best(covering(route_table, dst).filter(|r| r.iface == iface)) {
        Some(r) if r.gateway != 0 => Ipv4Addr::from(r.gateway),
        _ => dst,
    }
}

/// Where the kernel sends to an address, as `ip route get` says (policy
/// rules, metrics and local addresses included).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// Out of this interface.
    Dev(String),
    /// To this host itself: loopback or one of its own addresses.
    Local,
    /// No route, or `ip` could not tell.
    Unknown,
}

/// `ip -j route get` output as a [`Route`].
pub fn parse_route_get(json: &str) -> Route {
    let v: serde_json::Value = match serde_json::from_str(json) {
        Ok(v) => v,
        Err(_) => return Route::Unknown,
    };
    let r = &v[0];
    match (r["type"].as_str(), r["dev"].as_str()) {
        (Some("local"), _) | (_, Some("lo")) => Route::Local,
        (_, Some(dev)) => Route::Dev(dev.to_string()),
        _ => Route::Unknown,
    }
}

/// The kernel's route to `dst` in this namespace: `ip route get`, or where
/// iproute2 is missing (a busybox guest) this host's own addresses and the
/// main table's longest prefix.
pub fn route_to(dst: std::net::IpAddr) -> Route {
    let asked = std::process::Command::new("ip")
        .args(["-j", "route", "get", &dst.to_string()])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map_or(Route::Unknown, |o| {
            parse_route_get(&String::from_utf8_lossy(&o.stdout))
        });
    if asked != Route::Unknown {
        return asked;
    }
    let own = nix::ifaddrs::getifaddrs()
        .map(|mut a| {
            a.any(|a| {
                a.address.is_some_and(|s| {
                    s.as_sockaddr_in().map(|s| std::net::IpAddr::V4(s.ip())) == Some(dst)
                        || s.as_sockaddr_in6().map(|s| std::net::IpAddr::V6(s.ip())) == Some(dst)
                })
            })
        })
        .unwrap_or(false);
    match dst {
        _ if own || dst.is_loopback() => Route::Local,
        std::net::IpAddr::V4(d) => std::fs::read_to_string("/proc/net/route")
            .ok()
            .and_then(|t| route_device(&t, d))
            .map_or(Route::Unknown, Route::Dev),
        _ => Route::Unknown,
    }
}

/// The interface of the most specific route to `dst` in a
/// `/proc/net/route` table, the lowest metric among equals.
pub fn route_device(route_table: &str, dst: Ipv4Addr) -> Option<String> {
    best(covering(route_table, dst)).map(|r| r.iface.to_string())
}

/// The complete entry for `ip` on `iface` in a `/proc/net/arp` table.
pub fn arp_entry(arp_table: &str, iface: &str, ip: Ipv4Addr) -> Option<[u8; 6]> {
    const COMPLETE: u32 = 0x2;
    arp_table.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        let flags = u32::from_str_radix(f.get(2)?.trim_start_matches("0x"), 16).ok()?;
        (f.len() >= 6
            && f[5] == iface
            && f[0].parse::<Ipv4Addr>().ok()? == ip
            && flags & COMPLETE != 0)
            .then(|| parse_mac(f[3]))
            .flatten()
            .filter(|m| m != &[0; 6])
    })
}

/// The MAC to send to `dst` with on `iface`, from `local`: the next hop's
/// neighbour entry, resolved within a second if absent.
pub fn resolve(iface: &str, local: Ipv4Addr, dst: Ipv4Addr) -> Result<[u8; 6]> {
    let routes = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    let hop = next_hop(&routes, iface, dst);
    let lookup = || {
        std::fs::read_to_string("/proc/net/arp")
            .ok()
            .and_then(|t| arp_entry(&t, iface, hop))
    };
    if let Some(m) = lookup() {
        return Ok(m);
    }
    // One datagram to the discard port makes the kernel resolve the hop.
    if let Ok(s) = UdpSocket::bind((local, 0)) {
        let _ = s.send_to(&[], (hop, 9));
    }
    let deadline = Instant::now() + Duration::from_secs(1);
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        if let Some(m) = lookup() {
            return Ok(m);
        }
    }
    Err(Error::Invalid(format!(
        "no neighbour entry for {hop} on {iface} (next hop to {dst}) after trying to resolve it: is {dst} reachable through {iface}?"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTES: &str =
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0
eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
eth1\t000012C6\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
eth1\t000013C6\t010012C6\t0003\t0\t0\t0\t0000FFFF\t0\t0\t0
";

    #[test]
    fn next_hops_by_longest_prefix() {
        let a = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        // on-link: the peer itself
        assert_eq!(next_hop(ROUTES, "eth1", a("198.18.0.7")), a("198.18.0.7"));
        // through a gateway
        assert_eq!(next_hop(ROUTES, "eth1", a("198.19.4.4")), a("198.18.0.1"));
        // default route
        assert_eq!(next_hop(ROUTES, "eth0", a("203.0.113.9")), a("192.0.2.1"));
        // no route on that interface: assume on-link
        assert_eq!(next_hop(ROUTES, "eth9", a("198.18.0.7")), a("198.18.0.7"));
        assert_eq!(next_hop("garbage\nx y", "eth1", a("1.2.3.4")), a("1.2.3.4"));
    }

    #[test]
    fn routes_as_ip_route_get_gives_them() {
        let via = r#"[{"dst":"198.18.0.2","dev":"wa0","prefsrc":"198.18.0.1","flags":[],"uid":0,"cache":[]}]"#;
        assert_eq!(parse_route_get(via), Route::Dev("wa0".into()));
        let local = r#"[{"type":"local","dst":"198.18.0.1","dev":"lo","prefsrc":"198.18.0.1"}]"#;
        assert_eq!(parse_route_get(local), Route::Local);
        let lo = r#"[{"dst":"127.0.0.1","dev":"lo"}]"#;
        assert_eq!(parse_route_get(lo), Route::Local);
        assert_eq!(parse_route_get("[]"), Route::Unknown);
        assert_eq!(
            parse_route_get("RTNETLINK answers: Network is unreachable"),
            Route::Unknown
        );
    }

    #[test]
    fn devices_by_longest_prefix_then_metric() {
        let a = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        assert_eq!(
            route_device(ROUTES, a("198.18.0.7")).as_deref(),
            Some("eth1")
        );
        assert_eq!(
            route_device(ROUTES, a("198.19.4.4")).as_deref(),
            Some("eth1")
        );
        assert_eq!(
            route_device(ROUTES, a("192.0.2.9")).as_deref(),
            Some("eth0")
        );
        assert_eq!(
            route_device(ROUTES, a("203.0.113.9")).as_deref(),
            Some("eth0")
        );
        let two = format!("{ROUTES}eth2\t000012C6\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0\n");
        assert_eq!(
            route_device(&two, a("198.18.0.7")).as_deref(),
            Some("eth1"),
            "metric 0 beats 100"
        );
        assert_eq!(route_device("garbage\nx y", a("1.2.3.4")), None);
    }

    #[test]
    fn arp_entries_complete_only() {
        let t = "IP address       HW type     Flags       HW address            Mask     Device
198.18.0.2       0x1         0x2         02:fc:00:00:00:05     *        veth0
198.18.0.3       0x1         0x0         00:00:00:00:00:00     *        veth0
198.18.0.2       0x1         0x2         02:fc:00:00:00:09     *        veth1
";
        let a = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        assert_eq!(
            arp_entry(t, "veth0", a("198.18.0.2")),
            Some([2, 0xfc, 0, 0, 0, 5])
        );
        assert_eq!(
            arp_entry(t, "veth1", a("198.18.0.2")),
            Some([2, 0xfc, 0, 0, 0, 9])
        );
        assert_eq!(arp_entry(t, "veth0", a("198.18.0.3")), None, "incomplete");
        assert_eq!(arp_entry("short\n1 2", "veth0", a("198.18.0.2")), None);
    }
}
