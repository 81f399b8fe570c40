//! The destination MAC of raw frames: the next hop's link-layer address
//! from the kernel's neighbour table, as the kernel itself would address
//! them. The next hop comes from the IPv4 routing table (the gateway, or
//! the peer itself when on-link); an absent entry is resolved by sending
//! the kernel one datagram there, which makes it ARP.

use super::session::parse_mac;
use crate::{Error, Result};
use std::net::{Ipv4Addr, UdpSocket};
use std::time::{Duration, Instant};

/// The most specific route to `dst` in a `/proc/net/route` table, out of
/// `iface` or any interface: (its interface, its gateway; 0 = on-link).
fn best_route<'a>(
    route_table: &'a str,
    iface: Option<&str>,
    dst: Ipv4Addr,
) -> Option<(&'a str, u32)> {
    // Addresses and masks are little-endian hex of the network-order bytes.
    let hex = |s: &str| u32::from_str_radix(s, 16).ok().map(u32::from_be);
    let d = u32::from(dst);
    route_table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 8 && iface.is_none_or(|i| f[0] == i)).then_some(())?;
            Some((f[0], hex(f[1])?, hex(f[2])?, hex(f[7])?))
        })
        .filter(|&(_, net, _, mask)| d & mask == net & mask)
        .max_by_key(|&(_, _, _, mask)| mask.count_ones())
        .map(|(i, _, gw, _)| (i, gw))
}

/// The next hop towards `dst` out of `iface`, by longest prefix in a
/// `/proc/net/route` table; `dst` itself when no route names a gateway.
pub fn next_hop(route_table: &str, iface: &str, dst: Ipv4Addr) -> Ipv4Addr {
    match best_route(route_table, Some(iface), dst) {
        Some((_, gw)) if gw != 0 => Ipv4Addr::from(gw),
        _ => dst,
    }
}

/// The interface the kernel would send to `dst` by, by longest prefix.
pub fn route_device(route_table: &str, dst: Ipv4Addr) -> Option<String> {
    best_route(route_table, None, dst).map(|(i, _)| i.to_string())
}

/// [`route_device`] over this namespace's routing table.
pub fn device_towards(dst: Ipv4Addr) -> Option<String> {
    route_device(&std::fs::read_to_string("/proc/net/route").ok()?, dst)
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
    fn devices_by_longest_prefix() {
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
