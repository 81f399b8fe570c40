//! UDP (RFC 768), with the checksum over the IPv4 or IPv6 pseudo-header.

use super::{be16, checksum, ip_protocol, put16, Error, Result};
use std::net::IpAddr;

pub const HEADER_LEN: usize = 8;

/// A checked view of a UDP datagram.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    pub fn new_unchecked(buffer: T) -> Self {
        Packet { buffer }
    }

    /// The length field is at least 8 and within the buffer.
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
        let l = usize::from(self.len());
        if l < HEADER_LEN {
            return Err(Error::Malformed);
        }
        if l > len {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn src_port(&self) -> u16 {
        be16(self.buffer.as_ref(), 0)
    }

    pub fn dst_port(&self) -> u16 {
        be16(self.buffer.as_ref(), 2)
    }

    /// Header plus payload, as the length field says.
    pub fn len(&self) -> u16 {
        be16(self.buffer.as_ref(), 4)
    }

    pub fn is_empty(&self) -> bool {
        self.len() as usize == HEADER_LEN
    }

    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), 6)
    }

    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..usize::from(self.len())]
    }

    /// True if the checksum verifies, or is absent (zero) over IPv4, where
    /// it is optional.
    pub fn verify_checksum(&self, src: IpAddr, dst: IpAddr) -> bool {
        if self.checksum() == 0 && src.is_ipv4() {
            return true;
        }
        let l = usize::from(self.len());
        let acc = checksum::pseudo_header(src, dst, ip_protocol::UDP, l as u32);
        checksum::finish(checksum::sum(acc, &self.buffer.as_ref()[..l])) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let l = usize::from(self.len());
        &mut self.buffer.as_mut()[HEADER_LEN..l]
    }
}

/// A UDP datagram's ports and payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UdpRepr<'a> {
    pub src_port: u16,
    pub dst_port: u16,
    pub payload: &'a [u8],
}

impl<'a> UdpRepr<'a> {
    /// Parse and verify the checksum against the addresses the IP layer gave.
    pub fn parse(p: &Packet<&'a [u8]>, src: IpAddr, dst: IpAddr) -> Result<Self> {
        p.check_len()?;
        if p.src_port() == 0 && p.dst_port() == 0 {
            return Err(Error::Malformed);
        }
        if !p.verify_checksum(src, dst) {
            return Err(Error::Checksum);
        }
        let b: &'a [u8] = p.buffer;
        Ok(UdpRepr {
            src_port: p.src_port(),
            dst_port: p.dst_port(),
            payload: &b[HEADER_LEN..usize::from(p.len())],
        })
    }

    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.payload.len()
    }

    /// Write header, payload and checksum (0 is sent as 0xffff, RFC 768).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>, src: IpAddr, dst: IpAddr) {
        let l = self.buffer_len();
        let b = &mut p.buffer.as_mut()[..l];
        put16(b, 0, self.src_port);
        put16(b, 2, self.dst_port);
        put16(b, 4, l as u16);
        put16(b, 6, 0);
        b[HEADER_LEN..].copy_from_slice(self.payload);
        let acc = checksum::pseudo_header(src, dst, ip_protocol::UDP, l as u32);
        let c = match checksum::finish(checksum::sum(acc, b)) {
            0 => 0xffff,
            c => c,
        };
        put16(b, 6, c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::Ipv4Addr;

    #[test]
    fn parses_a_real_datagram() {
        // DNS query from 192.168.1.2:53001 to 192.168.1.1:53 (checksum computed by hand
        // from the pseudo-header: verified below against the slow reference)
        let src = IpAddr::V4(Ipv4Addr::new(192, 168, 1, 2));
        let dst = IpAddr::V4(Ipv4Addr::new(192, 168, 1, 1));
        let payload = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00";
        let r = UdpRepr {
            src_port: 53001,
            dst_port: 53,
            payload,
        };
        let mut b = vec![0u8; r.buffer_len()];
        r.emit(&mut Packet::new_unchecked(&mut b[..]), src, dst);
        assert_eq!(&b[..6], &[0xcf, 0x09, 0x00, 0x35, 0x00, 0x14]);
        // one's-complement sum by hand of pseudo-header + header + payload
        let words: u32 = [
            0xc0a8, 0x0102, 0xc0a8, 0x0101, 0x0011, 0x0014, // pseudo-header
            0xcf09, 0x0035, 0x0014, 0x0000, // header, checksum zero
            0x1234, 0x0100, 0x0001, 0, 0, 0,
        ]
        .iter()
        .sum();
        let folded = (words & 0xffff) + (words >> 16);
        assert_eq!(be16(&b, 6), !(folded as u16));
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(UdpRepr::parse(&p, src, dst).unwrap(), r);
        let mut bad = b.clone();
        bad[9] ^= 1;
        let p = Packet::new_checked(&bad[..]).unwrap();
        assert_eq!(UdpRepr::parse(&p, src, dst), Err(Error::Checksum));
        assert_eq!(Packet::new_checked(&b[..19]).unwrap_err(), Error::Truncated);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..64)) {
            let a = IpAddr::V4(Ipv4Addr::LOCALHOST);
            if let Ok(p) = Packet::new_checked(&b[..]) {
                let _ = UdpRepr::parse(&p, a, a);
            }
        }

        #[test]
        fn emit_parse_round_trip(sp in 1u16.., dp in any::<u16>(), payload in proptest::collection::vec(any::<u8>(), 0..100),
                                 v6 in any::<bool>(), s in any::<[u8; 16]>(), d in any::<[u8; 16]>()) {
            let (src, dst) = if v6 {
                (IpAddr::from(s), IpAddr::from(d))
            } else {
                (IpAddr::from([s[0], s[1], s[2], s[3]]), IpAddr::from([d[0], d[1], d[2], d[3]]))
            };
            let r = UdpRepr { src_port: sp, dst_port: dp, payload: &payload };
            let mut b = vec![0u8; r.buffer_len()];
            r.emit(&mut Packet::new_unchecked(&mut b[..]), src, dst);
            prop_assert_eq!(UdpRepr::parse(&Packet::new_checked(&b[..]).unwrap(), src, dst).unwrap(), r);
        }
    }
}
