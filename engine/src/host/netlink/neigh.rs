//! The neighbour table (ARP for IPv4, NDP for IPv6) over RTM_GETNEIGH, and
//! asking the kernel to resolve an entry with RTM_NEWNEIGH + NTF_USE, the
//! same trigger as a packet waiting for that neighbour.

use super::route::family;
use super::NlError;
use netlink_packet_core::{NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::RouteNetlinkMessage;
use std::net::IpAddr;

/// What the table says about one neighbour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry {
    /// A link-layer address frames can go to now.
    Usable([u8; 6]),
    /// An entry without a usable address (incomplete, failed, none).
    Unusable(u16),
    /// No entry at all.
    Absent,
}

/// NUD states whose address the kernel itself sends to: reachable,
/// stale, delay, probe, permanent.
const USABLE: u16 = 0x02 | 0x04 | 0x08 | 0x10 | 0x80;

/// The question: the neighbour table of `hop`'s family on interface
/// `ifindex` (a dump the kernel filters by NDA_IFINDEX; [`find`] filters
/// again for kernels that do not).
pub fn dump_request(hop: IpAddr, ifindex: u32) -> RouteNetlinkMessage {
    let mut m = NeighbourMessage::default();
    m.header.family = family(hop);
    m.attributes.push(NeighbourAttribute::IfIndex(ifindex));
    RouteNetlinkMessage::GetNeighbour(m)
}

/// The request that makes the kernel resolve `hop` on `ifindex` (create
/// the entry if absent, then send ARP or a neighbour solicitation).
pub fn use_request(hop: IpAddr, ifindex: u32) -> RouteNetlinkMessage {
    let mut m = NeighbourMessage::default();
    m.header.family = family(hop);
    m.header.ifindex = ifindex;
    m.header.flags = NeighbourFlags::Use;
    m.attributes
        .push(NeighbourAttribute::Destination(match hop {
            IpAddr::V4(a) => NeighbourAddress::Inet(a),
            IpAddr::V6(a) => NeighbourAddress::Inet6(a),
        }));
    RouteNetlinkMessage::NewNeighbour(m)
}

/// `hop`'s entry on `ifindex` among `replies`.
pub fn find(replies: &[RouteNetlinkMessage], hop: IpAddr, ifindex: u32) -> Entry {
    let mut found = Entry::Absent;
    for r in replies {
        let RouteNetlinkMessage::NewNeighbour(m) = r else {
            continue;
        };
        let dst = m.attributes.iter().find_map(|a| match a {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(v4)) => Some(IpAddr::from(*v4)),
            NeighbourAttribute::Destination(NeighbourAddress::Inet6(v6)) => Some(IpAddr::from(*v6)),
            _ => None,
        });
        if m.header.ifindex != ifindex || dst != Some(hop) {
            continue;
        }
        let state = u16::from(m.header.state);
        let mac = m.attributes.iter().find_map(|a| match a {
            NeighbourAttribute::LinkLayerAddress(l) => <[u8; 6]>::try_from(l.as_slice())
                .ok()
                .filter(|m| m != &[0; 6]),
            _ => None,
        });
        found = match mac {
            Some(mac) if state & USABLE != 0 => return Entry::Usable(mac),
            _ => Entry::Unusable(state),
        };
    }
    found
}

/// The NUD state's name, for messages.
pub fn state_name(state: u16) -> String {
    NeighbourState::from(state).to_string()
}

/// `hop`'s entry on `ifindex` now.
pub fn lookup(hop: IpAddr, ifindex: u32) -> Result<Entry, NlError> {
    let replies = super::ask(dump_request(hop, ifindex), NLM_F_DUMP)?;
    Ok(find(&replies, hop, ifindex))
}

/// Ask the kernel to resolve `hop` on `ifindex` (needs CAP_NET_ADMIN).
pub fn solicit(hop: IpAddr, ifindex: u32) -> Result<(), NlError> {
    super::ask(use_request(hop, ifindex), NLM_F_ACK | NLM_F_CREATE).map(drop)
}

#[cfg(test)]
mod tests {
    use super::super::recorded::replies;
    use super::*;

    const ROUTER_MAC: [u8; 6] = [2, 0, 0, 0, 0xb, 1];
    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ipv4_entries_usable_only_when_resolved() {
        // a0 (ifindex 2): 198.18.1.2 STALE (still sent to), 198.18.1.8
        // INCOMPLETE (being resolved), 198.18.1.9 FAILED.
        let r = replies(include_str!("testdata/neigh_v4.hex"));
        assert_eq!(find(&r, ip("198.18.1.2"), 2), Entry::Usable(ROUTER_MAC));
        assert_eq!(find(&r, ip("198.18.1.8"), 2), Entry::Unusable(0x01));
        assert_eq!(find(&r, ip("198.18.1.9"), 2), Entry::Unusable(0x20));
        assert_eq!(state_name(0x01), "incomplete");
        assert_eq!(state_name(0x20), "failed");
        assert_eq!(
            find(&r, ip("198.18.1.2"), 3),
            Entry::Absent,
            "other interface"
        );
        assert_eq!(find(&r, ip("198.18.1.7"), 2), Entry::Absent);
    }

    #[test]
    fn ipv6_entries_global_and_link_local() {
        let r = replies(include_str!("testdata/neigh_v6.hex"));
        assert_eq!(find(&r, ip("2001:2:0:1::2"), 2), Entry::Usable(ROUTER_MAC));
        assert_eq!(find(&r, ip("fe80::b:1"), 2), Entry::Usable(ROUTER_MAC));
        assert_eq!(
            find(&r, ip("198.18.1.2"), 2),
            Entry::Absent,
            "v4 is not in a v6 dump"
        );
    }

    #[test]
    fn requests() {
        let RouteNetlinkMessage::NewNeighbour(m) = use_request(ip("fe80::b:1"), 4) else {
            panic!("a NewNeighbour");
        };
        assert_eq!((m.header.ifindex, m.header.flags), (4, NeighbourFlags::Use));
        assert_eq!(m.header.family, netlink_packet_route::AddressFamily::Inet6);
        let RouteNetlinkMessage::GetNeighbour(m) = dump_request(ip("198.18.0.1"), 4) else {
            panic!("a GetNeighbour");
        };
        assert_eq!(m.attributes, vec![NeighbourAttribute::IfIndex(4)]);
    }
}
