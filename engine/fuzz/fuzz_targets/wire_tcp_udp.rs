//! TCP and UDP with their checksums: the first byte picks the addresses
//! (IPv4 or IPv6) of the pseudo-header, the rest is the segment. Any
//! bytes parse or fail without panicking; a segment that fails only its
//! checksum parses once the checksum is filled; what parses emits back to
//! the same meaning (less what TCP-lite never emits: an ACK number without
//! ACK, SACK blocks beyond the option space its layout leaves).
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::net::IpAddr;
use wirespeed::wire::tcp::{self, OptionIter, TcpRepr};
use wirespeed::wire::{checksum, ip_protocol, udp, Error};

fn tcp(b: &[u8], src: IpAddr, dst: IpAddr) {
    let Ok(p) = tcp::Packet::new_checked(b) else {
        return;
    };
    let _ = (p.payload(), p.segment_len());
    for o in OptionIter::new(p.options()) {
        let _ = o;
    }
    let unverified = TcpRepr::parse_unverified(&p);
    let r = match TcpRepr::parse(&p, src, dst) {
        Ok(r) => r,
        Err(Error::Checksum) => {
            let mut fixed = b.to_vec();
            tcp::Packet::new_unchecked(&mut fixed[..]).fill_checksum(src, dst);
            let q = tcp::Packet::new_checked(&fixed[..]).unwrap();
            assert_eq!(TcpRepr::parse(&q, src, dst).ok(), unverified.ok());
            return;
        }
        Err(_) => return,
    };
    assert_eq!(Ok(r), unverified);
    // SACK blocks arrive with hostile lengths; what parsed holds at most
    // four, and emit writes those that fit beside the other options
    assert!(r.sack.len() <= tcp::SACK_MAX_BLOCKS);
    let mut r = r;
    r.sack.truncate(r.sack_room());
    if !r.flags.ack() {
        r.ack_number = tcp::SeqNum(0);
    }
    assert!(r.header_len() <= tcp::MAX_HEADER_LEN);
    let mut out = vec![0u8; r.buffer_len()];
    r.emit(&mut tcp::Packet::new_unchecked(&mut out[..]), src, dst);
    let back = TcpRepr::parse(&tcp::Packet::new_checked(&out[..]).unwrap(), src, dst).unwrap();
    assert_eq!(back, r);
}

fn udp(b: &[u8], src: IpAddr, dst: IpAddr) {
    let Ok(p) = udp::Packet::new_checked(b) else {
        return;
    };
    let _ = p.payload();
    let r = match udp::UdpRepr::parse(&p, src, dst) {
        Ok(r) => r,
        Err(Error::Checksum) => {
            let mut fixed = b.to_vec();
            let l = usize::from(p.len());
            fixed[6..8].copy_from_slice(&[0, 0]);
            let acc = checksum::pseudo_header(src, dst, ip_protocol::UDP, l as u32);
            let c = match checksum::finish(checksum::sum(acc, &fixed[..l])) {
                0 => 0xffff,
                c => c,
            };
            fixed[6..8].copy_from_slice(&c.to_be_bytes());
            let q = udp::Packet::new_checked(&fixed[..]).unwrap();
            assert!(udp::UdpRepr::parse(&q, src, dst).is_ok());
            return;
        }
        Err(_) => return,
    };
    let mut out = vec![0u8; r.buffer_len()];
    r.emit(&mut udp::Packet::new_unchecked(&mut out[..]), src, dst);
    let back = udp::UdpRepr::parse(&udp::Packet::new_checked(&out[..]).unwrap(), src, dst).unwrap();
    assert_eq!(back, r);
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, seg)) = data.split_first() else {
        return;
    };
    let (src, dst): (IpAddr, IpAddr) = if pick & 1 == 0 {
        ([198, 18, 0, 1].into(), [198, 18, 0, 2].into())
    } else {
        (
            [0x2001, 2, 0, 0, 0, 0, 0, 1u16].into(),
            [0x2001, 2, 0, 0, 0, 0, 0, 2u16].into(),
        )
    };
    tcp(seg, src, dst);
    udp(seg, src, dst);
});
