//! Whole frames for a datapath: a connection's segment behind Ethernet and
//! IPv4 or IPv6 headers with every checksum right, and the way back from
//! a received frame to the parsed segment. The segment is written in
//! place after the headroom, so nothing is copied twice.

use super::{Connection, Instant, Transmit};
use crate::wire::ethernet::{self, EtherType, EthernetRepr, MacAddr};
use crate::wire::tcp::{self, DeferredChecksum, TcpRepr};
use crate::wire::{ip_protocol, ipv4, ipv6, Error, Result};
use std::net::IpAddr;

/// Bytes before the TCP header in an Ethernet/IPv4 frame.
pub const HEADROOM_V4: usize = ethernet::HEADER_LEN + ipv4::HEADER_LEN;
/// Bytes before the TCP header in an Ethernet/IPv6 frame.
pub const HEADROOM_V6: usize = ethernet::HEADER_LEN + ipv6::HEADER_LEN;

/// The Ethernet addresses of a connection's frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkAddrs {
    pub src: MacAddr,
    pub dst: MacAddr,
}

/// Hop limit / TTL of emitted packets.
pub const HOP_LIMIT: u8 = 64;

/// [`Connection::poll_transmit`] into a complete frame in `buf`: returns
/// the frame length and what was sent. IPv4 or IPv6 follows the
/// connection's addresses.
///
/// Inlined into the caller, with `poll_transmit`: returned through memory,
/// the `Transmit` is read back by a wide load from narrower stores, which
/// cannot be forwarded and so waits for the payload copy's stores to
/// drain (about 5 ns a segment in the bench).
#[inline]
pub fn poll_transmit_frame(
    conn: &mut Connection,
    now: Instant,
    link: &LinkAddrs,
    buf: &mut [u8],
) -> Option<(usize, Transmit)> {
    let v6 = conn.local().is_ipv6();
    let headroom = if v6 { HEADROOM_V6 } else { HEADROOM_V4 };
    let tcp_room = buf.len().checked_sub(headroom)?;
    // an IPv4 total length must fit in 16 bits
    let tcp_room = tcp_room.min(if v6 { 65535 } else { 65535 - ipv4::HEADER_LEN });
    let t = conn.poll_transmit(now, &mut buf[headroom..headroom + tcp_room])?;
    let eth = EthernetRepr {
        src_addr: link.src,
        dst_addr: link.dst,
        ethertype: if v6 { EtherType::Ipv6 } else { EtherType::Ipv4 },
    };
    eth.emit(&mut ethernet::Frame::new_unchecked(&mut buf[..]));
    let ip_buf = &mut buf[ethernet::HEADER_LEN..headroom + t.size];
    match (conn.local().ip(), conn.remote().ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => ipv4::Ipv4Repr {
            src_addr: s,
            dst_addr: d,
            protocol: ip_protocol::TCP,
            payload_len: t.size,
            hop_limit: HOP_LIMIT,
            dscp_ecn: 0,
            ident: 0,
        }
        .emit(&mut ipv4::Packet::new_unchecked(ip_buf)),
        (s, d) => ipv6::Ipv6Repr {
            src_addr: to_v6(s),
            dst_addr: to_v6(d),
            next_header: ip_protocol::TCP,
            payload_len: t.size,
            hop_limit: HOP_LIMIT,
            traffic_class: 0,
            flow_label: 0,
        }
        .emit(&mut ipv6::Packet::new_unchecked(ip_buf)),
    }
    Some((headroom + t.size, t))
}

fn to_v6(a: IpAddr) -> std::net::Ipv6Addr {
    match a {
        IpAddr::V4(a) => a.to_ipv6_mapped(),
        IpAddr::V6(a) => a,
    }
}

/// A received TCP frame, parsed and verified.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpFrame<'a> {
    pub src_mac: MacAddr,
    pub dst_mac: MacAddr,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub segment: TcpRepr<'a>,
}

/// Parse an Ethernet frame down to its TCP segment, verifying the IPv4
/// header checksum and the TCP checksum. Anything else (ARP, UDP, a
/// fragment, damage) is an error, never a panic.
pub fn parse_frame(frame: &[u8]) -> Result<TcpFrame<'_>> {
    let (f, check) = parse_frame_deferred(frame)?;
    if !check.verify(f.segment.payload) {
        return Err(Error::Checksum);
    }
    Ok(f)
}

/// [`parse_frame`] that leaves the TCP checksum to
/// [`Connection::handle_segment_deferred`], which verifies it while it
/// copies the payload into the receive ring (the IPv4 header checksum is
/// verified here).
pub fn parse_frame_deferred(frame: &[u8]) -> Result<(TcpFrame<'_>, DeferredChecksum)> {
    let eth = ethernet::Frame::new_checked(frame)?;
    let e = EthernetRepr::parse(&eth)?;
    let l3 = &frame[ethernet::HEADER_LEN..];
    let (src, dst, seg) = match e.ethertype {
        EtherType::Ipv4 => {
            let p = ipv4::Packet::new_checked(l3)?;
            let r = ipv4::Ipv4Repr::parse(&p)?;
            if r.protocol != ip_protocol::TCP {
                return Err(Error::Unsupported);
            }
            let start = p.header_len();
            let seg = &l3[start..start + r.payload_len];
            (IpAddr::V4(r.src_addr), IpAddr::V4(r.dst_addr), seg)
        }
        EtherType::Ipv6 => {
            let p = ipv6::Packet::new_checked(l3)?;
            let r = ipv6::Ipv6Repr::parse(&p)?;
            if r.next_header != ip_protocol::TCP {
                return Err(Error::Unsupported);
            }
            let seg = &l3[ipv6::HEADER_LEN..ipv6::HEADER_LEN + r.payload_len];
            (IpAddr::V6(r.src_addr), IpAddr::V6(r.dst_addr), seg)
        }
        _ => return Err(Error::Unsupported),
    };
    let p = tcp::Packet::new_checked(seg)?;
    let (segment, check) = TcpRepr::parse_deferred(&p, src, dst)?;
    let f = TcpFrame {
        src_mac: e.src_addr,
        dst_mac: e.dst_addr,
        src,
        dst,
        segment,
    };
    Ok((f, check))
}
