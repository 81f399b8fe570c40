//! IPv6 fixed header (RFC 8200). Extension headers are not walked: the
//! next header is reported as is, so a datapath sees TCP/UDP directly
//! after the fixed header or treats the packet as not its own.

use super::{be16, be32, put16, put32, Error, Result};
use std::net::Ipv6Addr;

/// The fixed header.
pub const HEADER_LEN: usize = 40;

/// A checked view of an IPv6 packet.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    pub fn new_unchecked(buffer: T) -> Self {
        Packet { buffer }
    }

    /// Version 6 and the payload length within the buffer.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if self.version() != 6 {
            return Err(Error::Malformed);
        }
        if HEADER_LEN + usize::from(self.payload_len()) > len {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[0] >> 4
    }

    pub fn traffic_class(&self) -> u8 {
        (be16(self.buffer.as_ref(), 0) >> 4) as u8
    }

    pub fn flow_label(&self) -> u32 {
        be32(self.buffer.as_ref(), 0) & 0x000f_ffff
    }

    pub fn payload_len(&self) -> u16 {
        be16(self.buffer.as_ref(), 4)
    }

    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[6]
    }

    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[7]
    }

    pub fn src_addr(&self) -> Ipv6Addr {
        let a: [u8; 16] = self.buffer.as_ref()[8..24].try_into().unwrap_or_default();
        a.into()
    }

    pub fn dst_addr(&self) -> Ipv6Addr {
        let a: [u8; 16] = self.buffer.as_ref()[24..40].try_into().unwrap_or_default();
        a.into()
    }

    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..HEADER_LEN + usize::from(self.payload_len())]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = HEADER_LEN + usize::from(self.payload_len());
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }
}

/// The meaning of an IPv6 fixed header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv6Repr {
    pub src_addr: Ipv6Addr,
    pub dst_addr: Ipv6Addr,
    pub next_header: u8,
    pub payload_len: usize,
    pub hop_limit: u8,
    pub traffic_class: u8,
    pub flow_label: u32,
}

impl Ipv6Repr {
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Result<Self> {
        p.check_len()?;
        Ok(Ipv6Repr {
            src_addr: p.src_addr(),
            dst_addr: p.dst_addr(),
            next_header: p.next_header(),
            payload_len: usize::from(p.payload_len()),
            hop_limit: p.hop_limit(),
            traffic_class: p.traffic_class(),
            flow_label: p.flow_label(),
        })
    }

    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Write the fixed header (`flow_label` is cut to 20 bits).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>) {
        let b = p.buffer.as_mut();
        put32(
            b,
            0,
            (6 << 28) | (u32::from(self.traffic_class) << 20) | (self.flow_label & 0x000f_ffff),
        );
        put16(b, 4, self.payload_len as u16);
        b[6] = self.next_header;
        b[7] = self.hop_limit;
        b[8..24].copy_from_slice(&self.src_addr.octets());
        b[24..40].copy_from_slice(&self.dst_addr.octets());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // fe80::1 -> ff02::1, ICMPv6, 8 bytes of payload, hop limit 255, tc 0, flow 0x12345
    const HDR: [u8; 48] = [
        0x60, 0x01, 0x23, 0x45, 0x00, 0x08, 0x3a, 0xff, 0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 0x01, 0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x80, 0, 0, 0, 0,
        0, 0, 0,
    ];

    #[test]
    fn parses_a_real_header() {
        let p = Packet::new_checked(&HDR[..]).unwrap();
        let r = Ipv6Repr::parse(&p).unwrap();
        assert_eq!(r.src_addr, "fe80::1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(r.dst_addr, "ff02::1".parse::<Ipv6Addr>().unwrap());
        assert_eq!((r.next_header, r.payload_len, r.hop_limit), (58, 8, 255));
        assert_eq!(r.flow_label, 0x12345);
        let mut out = [0u8; 48];
        r.emit(&mut Packet::new_unchecked(&mut out[..]));
        assert_eq!(out[..40], HDR[..40]);
        assert_eq!(
            Packet::new_checked(&HDR[..47]).unwrap_err(),
            Error::Truncated
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..100)) {
            let mut b = b;
            if !b.is_empty() { b[0] = 0x60 | (b[0] & 0x0f); }
            if let Ok(p) = Packet::new_checked(&b[..]) {
                let _ = Ipv6Repr::parse(&p);
                let _ = p.payload();
            }
        }

        #[test]
        fn emit_parse_round_trip(s in any::<[u8; 16]>(), d in any::<[u8; 16]>(), nh in any::<u8>(),
                                 len in 0usize..100, hl in any::<u8>(), tc in any::<u8>(), fl in 0u32..(1 << 20)) {
            let r = Ipv6Repr { src_addr: s.into(), dst_addr: d.into(), next_header: nh, payload_len: len,
                               hop_limit: hl, traffic_class: tc, flow_label: fl };
            let mut b = vec![0u8; HEADER_LEN + len];
            r.emit(&mut Packet::new_unchecked(&mut b[..]));
            prop_assert_eq!(Ipv6Repr::parse(&Packet::new_checked(&b[..]).unwrap()).unwrap(), r);
        }
    }
}
