//! Adding an address to an interface with RTM_NEWADDR, as `ip addr add
//! ADDR/LEN dev X` does (IPv6 with `nodad`, so it is usable at once rather
//! than tentative for a second of duplicate detection).

use super::route::family;
use super::NlError;
use netlink_packet_core::{NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage,
};
use netlink_packet_route::RouteNetlinkMessage;
use std::net::IpAddr;

/// The request: `addr/prefix_len` on interface `index`; IPv6 without
/// duplicate address detection (IFA_F_NODAD).
pub fn add_request(index: u32, addr: IpAddr, prefix_len: u8) -> RouteNetlinkMessage {
    let mut m = AddressMessage::default();
    m.header.family = family(addr);
    m.header.prefix_len = prefix_len;
    m.header.index = index;
    // As iproute2 sends it: the local address, and the same as the
    // address (no point-to-point peer).
    m.attributes.push(AddressAttribute::Local(addr));
    m.attributes.push(AddressAttribute::Address(addr));
    if addr.is_ipv6() {
        m.header.flags = AddressHeaderFlags::Nodad;
        m.attributes
            .push(AddressAttribute::Flags(AddressFlags::Nodad));
    }
    RouteNetlinkMessage::NewAddress(m)
}

/// Add `addr/prefix_len` to interface `index` in the calling thread's
/// namespace.
pub fn add(index: u32, addr: IpAddr, prefix_len: u8) -> Result<(), NlError> {
    super::ask(
        add_request(index, addr, prefix_len),
        NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
    )
    .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v6_without_dad_v4_plain() {
        let RouteNetlinkMessage::NewAddress(m) = add_request(4, "2001:2::1".parse().unwrap(), 64)
        else {
            panic!("a NewAddress");
        };
        assert_eq!((m.header.index, m.header.prefix_len), (4, 64));
        assert_eq!(m.header.flags, AddressHeaderFlags::Nodad);
        assert!(m
            .attributes
            .contains(&AddressAttribute::Flags(AddressFlags::Nodad)));
        let RouteNetlinkMessage::NewAddress(m) = add_request(4, "198.18.0.1".parse().unwrap(), 24)
        else {
            panic!("a NewAddress");
        };
        assert_eq!(m.header.flags, AddressHeaderFlags::empty());
        assert_eq!(m.attributes.len(), 2);
    }
}
