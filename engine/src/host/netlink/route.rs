//! RTM_GETROUTE for one destination, as `ip route get` asks it: the
//! kernel's own lookup (policy rules, the local table, metrics), so the
//! answer is where the kernel itself would send.

use super::NlError;
use netlink_packet_core::{NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
    RouteVia,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use std::net::IpAddr;

/// Where the kernel sends a packet to one address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteInfo {
    /// Output interface index.
    pub oif: Option<u32>,
    /// Preferred source address (RTA_PREFSRC).
    pub src: Option<IpAddr>,
    /// The next hop when it is not the destination itself.
    pub gateway: Option<IpAddr>,
    /// To this host itself (RTN_LOCAL).
    pub local: bool,
}

/// The question: the route to `dst`, optionally as sent from `src` and out
/// of interface `oif` (as `ip route get DST from SRC oif DEV`).
pub fn request(dst: IpAddr, src: Option<IpAddr>, oif: Option<u32>) -> RouteNetlinkMessage {
    let bits = if dst.is_ipv4() { 32 } else { 128 };
    let mut m = RouteMessage::default();
    m.header = RouteHeader {
        address_family: family(dst),
        destination_prefix_length: bits,
        ..Default::default()
    };
    m.attributes.push(RouteAttribute::Destination(dst.into()));
    if let Some(s) = src.filter(|s| s.is_ipv4() == dst.is_ipv4() && !s.is_unspecified()) {
        m.header.source_prefix_length = bits;
        m.attributes.push(RouteAttribute::Source(s.into()));
    }
    if let Some(i) = oif {
        m.attributes.push(RouteAttribute::Oif(i));
    }
    RouteNetlinkMessage::GetRoute(m)
}

pub(crate) fn family(a: IpAddr) -> AddressFamily {
    if a.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    }
}

fn ip(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some((*v4).into()),
        RouteAddress::Inet6(v6) => Some((*v6).into()),
        _ => None,
    }
}

/// The gateway among a route's (or one multipath hop's) attributes:
/// RTA_GATEWAY, or RTA_VIA for an IPv4 route through an IPv6 neighbour.
fn gateway(attrs: &[RouteAttribute]) -> Option<IpAddr> {
    attrs.iter().find_map(|a| match a {
        RouteAttribute::Gateway(g) => ip(g),
        RouteAttribute::Via(RouteVia::Inet(v4)) => Some((*v4).into()),
        RouteAttribute::Via(RouteVia::Inet6(v6)) => Some((*v6).into()),
        _ => None,
    })
}

/// The answer: the first route in `replies`. A single lookup names one
/// next hop; a route with RTA_MULTIPATH instead (a fib-match answer)
/// gives its first hop, which is one the kernel may choose.
pub fn parse(replies: &[RouteNetlinkMessage]) -> Option<RouteInfo> {
    let m = replies.iter().find_map(|r| match r {
        RouteNetlinkMessage::NewRoute(m) => Some(m),
        _ => None,
    })?;
    let a = &m.attributes;
    let first_hop = a.iter().find_map(|x| match x {
        RouteAttribute::MultiPath(hops) => hops.first(),
        _ => None,
    });
    let oif = a
        .iter()
        .find_map(|x| match x {
            RouteAttribute::Oif(i) => Some(*i),
            _ => None,
        })
        .or(first_hop.map(|h| h.interface_index));
    Some(RouteInfo {
        oif,
        src: a.iter().find_map(|x| match x {
            RouteAttribute::PrefSource(s) => ip(s),
            _ => None,
        }),
        gateway: gateway(a).or(first_hop.and_then(|h| gateway(&h.attributes))),
        local: m.header.kind == RouteType::Local,
    })
}

/// The kernel's route to `dst` in the calling thread's namespace.
pub fn get(dst: IpAddr, src: Option<IpAddr>, oif: Option<u32>) -> Result<RouteInfo, NlError> {
    let replies = super::ask(request(dst, src, oif), 0)?;
    parse(&replies).ok_or_else(|| NlError::Malformed(format!("no route in the answer for {dst}")))
}

/// RTM_NEWROUTE, as `ip route add DST/LEN via GW`: a unicast route in
/// the main table through a next hop on a connected subnet; a prefix of
/// length 0 is the default route (sent, as `ip` sends it, without RTA_DST).
pub fn add_request(dst: IpAddr, prefix_len: u8, via: IpAddr) -> RouteNetlinkMessage {
    let mut m = RouteMessage::default();
    m.header = RouteHeader {
        address_family: family(via),
        destination_prefix_length: prefix_len,
        table: RouteHeader::RT_TABLE_MAIN,
        protocol: RouteProtocol::Boot,
        scope: RouteScope::Universe,
        kind: RouteType::Unicast,
        ..Default::default()
    };
    if prefix_len > 0 {
        m.attributes.push(RouteAttribute::Destination(dst.into()));
    }
    m.attributes.push(RouteAttribute::Gateway(via.into()));
    RouteNetlinkMessage::NewRoute(m)
}

/// RTM_NEWROUTE for a default route through `gateway`, as `ip route add
/// default via GW` sends it (main table, static, universe scope).
pub fn add_default_request(gateway: IpAddr) -> RouteNetlinkMessage {
    let any = match gateway {
        IpAddr::V4(_) => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
    };
    add_request(any, 0, gateway)
}

/// Add a route to `dst/prefix_len` through `via` in the calling thread's
/// namespace (the demo's routed links).
pub fn add(dst: IpAddr, prefix_len: u8, via: IpAddr) -> Result<(), NlError> {
    super::ask(
        add_request(dst, prefix_len, via),
        NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
    )
    .map(drop)
}

/// Add a default route through `gateway` in the calling thread's namespace.
pub fn add_default(gateway: IpAddr) -> Result<(), NlError> {
    super::ask(
        add_default_request(gateway),
        NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
    )
    .map(drop)
}

#[cfg(test)]
mod tests {
    use super::super::recorded::replies;
    use super::*;

    // Recorded in a namespace: a0 (ifindex 2) 198.18.1.1/24 and
    // 2001:2:0:1::1/64, router 198.18.1.2 / fe80::b:1 beyond it.
    fn route(hex: &str) -> RouteInfo {
        parse(&replies(hex)).expect("a route")
    }
    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn add_is_a_main_table_unicast_route_via_the_gateway() {
        let RouteNetlinkMessage::NewRoute(m) = add_request(ip("198.18.5.0"), 24, ip("198.18.4.2"))
        else {
            panic!("a NewRoute");
        };
        assert_eq!(m.header.destination_prefix_length, 24);
        assert_eq!(m.header.table, RouteHeader::RT_TABLE_MAIN);
        assert_eq!(m.header.kind, RouteType::Unicast);
        assert!(m
            .attributes
            .contains(&RouteAttribute::Gateway(ip("198.18.4.2").into())));
        assert!(m
            .attributes
            .contains(&RouteAttribute::Destination(ip("198.18.5.0").into())));
    }

    #[test]
    fn through_a_gateway() {
        // ip route get 198.18.2.5: via 198.18.1.2 dev a0 src 198.18.1.1
        let r = route(include_str!("testdata/route_v4_gateway.hex"));
        assert_eq!(
            r,
            RouteInfo {
                oif: Some(2),
                src: Some(ip("198.18.1.1")),
                gateway: Some(ip("198.18.1.2")),
                local: false
            }
        );
    }

    #[test]
    fn on_link_has_no_gateway() {
        let r = route(include_str!("testdata/route_v4_on_link.hex"));
        assert_eq!((r.oif, r.gateway, r.local), (Some(2), None, false));
    }

    #[test]
    fn ipv6_through_a_link_local_gateway() {
        // ip -6 route get 2001:2:0:2::5: via fe80::b:1 dev a0 src 2001:2:0:1::1
        let r = route(include_str!("testdata/route_v6_link_local_gateway.hex"));
        assert_eq!(r.oif, Some(2));
        assert_eq!(r.gateway, Some(ip("fe80::b:1")));
        assert_eq!(r.src, Some(ip("2001:2:0:1::1")));
        assert!(!r.local);
    }

    #[test]
    fn multipath_gives_its_first_hop() {
        // ip route get fibmatch 198.18.3.5: nexthop via 198.18.1.2, nexthop via 198.18.1.3
        let r = route(include_str!("testdata/route_v4_multipath_fib.hex"));
        assert_eq!((r.oif, r.gateway), (Some(2), Some(ip("198.18.1.2"))));
    }

    #[test]
    fn own_addresses_are_local() {
        for hex in [
            include_str!("testdata/route_v4_local.hex"),
            include_str!("testdata/route_v6_local.hex"),
        ] {
            let r = route(hex);
            assert!(r.local, "{r:?}");
            assert_eq!(r.oif, Some(1), "the local table answers with lo");
        }
    }

    #[test]
    fn requests_ask_one_address() {
        let RouteNetlinkMessage::GetRoute(m) =
            request(ip("2001:2::5"), Some(ip("198.18.0.1")), Some(7))
        else {
            panic!("a GetRoute");
        };
        assert_eq!(m.header.address_family, AddressFamily::Inet6);
        assert_eq!(m.header.destination_prefix_length, 128);
        assert_eq!(
            m.header.source_prefix_length, 0,
            "a v4 source is not asked for v6"
        );
        assert_eq!(
            m.attributes,
            vec![
                RouteAttribute::Destination(ip("2001:2::5").into()),
                RouteAttribute::Oif(7)
            ]
        );
        let RouteNetlinkMessage::GetRoute(m) =
            request(ip("198.18.0.9"), Some(ip("198.18.0.1")), None)
        else {
            panic!("a GetRoute");
        };
        assert_eq!(m.header.source_prefix_length, 32);
        assert_eq!(parse(&[]), None);
    }

    #[test]
    fn default_route_names_only_its_gateway() {
        let RouteNetlinkMessage::NewRoute(m) = add_default_request(ip("198.18.3.1")) else {
            panic!("a NewRoute");
        };
        assert_eq!(m.header.destination_prefix_length, 0, "default: 0.0.0.0/0");
        assert_eq!(m.header.table, RouteHeader::RT_TABLE_MAIN);
        assert_eq!(m.header.kind, RouteType::Unicast);
        assert_eq!(
            m.attributes,
            vec![RouteAttribute::Gateway(ip("198.18.3.1").into())]
        );
    }
}
