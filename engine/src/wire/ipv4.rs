//! IPv4 (RFC 791). Options are skipped by the header length when parsing
//! and never emitted. [`Ipv4Repr::parse`] refuses fragments: TCP-lite
//! never sends them (it sets DF and sizes segments to the MTU), so a
//! fragment is someone else's traffic or an attack on reassembly.

use super::{be16, checksum, put16, Error, Result};
use std::net::Ipv4Addr;

/// The header without options.
pub const HEADER_LEN: usize = 20;

/// A checked view of an IPv4 packet.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    pub fn new_unchecked(buffer: T) -> Self {
        Packet { buffer }
    }

    /// A view whose accessors cannot panic: version 4, header length at
    /// least 20 and within the total length, total length within the
    /// buffer (which may be longer: Ethernet pads short frames).
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
        if self.version() != 4 {
            return Err(Error::Malformed);
        }
        let (h, t) = (self.header_len(), usize::from(self.total_len()));
        if h < HEADER_LEN || t < h {
            return Err(Error::Malformed);
        }
        if t > len {
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

    /// Header length in bytes (IHL * 4).
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[0] & 0x0f) * 4
    }

    pub fn dscp_ecn(&self) -> u8 {
        self.buffer.as_ref()[1]
    }

    pub fn total_len(&self) -> u16 {
        be16(self.buffer.as_ref(), 2)
    }

    pub fn ident(&self) -> u16 {
        be16(self.buffer.as_ref(), 4)
    }

    pub fn dont_frag(&self) -> bool {
        self.buffer.as_ref()[6] & 0x40 != 0
    }

    pub fn more_frags(&self) -> bool {
        self.buffer.as_ref()[6] & 0x20 != 0
    }

    /// Fragment offset in bytes.
    pub fn frag_offset(&self) -> u16 {
        (be16(self.buffer.as_ref(), 6) & 0x1fff) << 3
    }

    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[8]
    }

    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[9]
    }

    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), 10)
    }

    pub fn src_addr(&self) -> Ipv4Addr {
        let b = self.buffer.as_ref();
        Ipv4Addr::new(b[12], b[13], b[14], b[15])
    }

    pub fn dst_addr(&self) -> Ipv4Addr {
        let b = self.buffer.as_ref();
        Ipv4Addr::new(b[16], b[17], b[18], b[19])
    }

    /// The header checksum verifies (over the header with its options).
    pub fn verify_checksum(&self) -> bool {
        checksum::checksum(&self.buffer.as_ref()[..self.header_len()]) == 0
    }

    /// From the end of the header (options skipped) to the total length.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..usize::from(self.total_len())]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (h, t) = (self.header_len(), usize::from(self.total_len()));
        &mut self.buffer.as_mut()[h..t]
    }

    /// Recompute the header checksum in place.
    pub fn fill_checksum(&mut self) {
        let h = self.header_len();
        let b = self.buffer.as_mut();
        put16(b, 10, 0);
        let c = checksum::checksum(&b[..h]);
        put16(b, 10, c);
    }
}

/// The meaning of an IPv4 header, as TCP-lite and UDP use it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Repr {
    pub src_addr: Ipv4Addr,
    pub dst_addr: Ipv4Addr,
    pub protocol: u8,
    pub payload_len: usize,
    pub hop_limit: u8,
    /// DSCP and ECN bits, carried through.
    pub dscp_ecn: u8,
    pub ident: u16,
}

impl Ipv4Repr {
    /// Validate a checked packet: checksum, no fragment.
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Result<Self> {
        p.check_len()?;
        if !p.verify_checksum() {
            return Err(Error::Checksum);
        }
        if p.more_frags() || p.frag_offset() != 0 {
            return Err(Error::Unsupported);
        }
        Ok(Ipv4Repr {
            src_addr: p.src_addr(),
            dst_addr: p.dst_addr(),
            protocol: p.protocol(),
            payload_len: usize::from(p.total_len()) - p.header_len(),
            hop_limit: p.hop_limit(),
            dscp_ecn: p.dscp_ecn(),
            ident: p.ident(),
        })
    }

    /// Header bytes (no options are emitted).
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Write the 20-byte header, DF set, checksum filled. `payload_len`
    /// must leave the total within 65535.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>) {
        let b = p.buffer.as_mut();
        b[0] = 0x45;
        b[1] = self.dscp_ecn;
        put16(b, 2, (HEADER_LEN + self.payload_len) as u16);
        put16(b, 4, self.ident);
        put16(b, 6, 0x4000);
        b[8] = self.hop_limit;
        b[9] = self.protocol;
        b[12..16].copy_from_slice(&self.src_addr.octets());
        b[16..20].copy_from_slice(&self.dst_addr.octets());
        // summed from the fields: reading back what small stores just
        // wrote stalls on store forwarding
        let words = |a: Ipv4Addr| {
            let v = u32::from(a);
            u64::from(v >> 16) + u64::from(v & 0xffff)
        };
        let acc = words(self.src_addr)
            + words(self.dst_addr)
            + (HEADER_LEN + self.payload_len) as u64
            + u64::from(0x4500 | u16::from(self.dscp_ecn))
            + u64::from(self.ident)
            + 0x4000
            + u64::from(u16::from_be_bytes([self.hop_limit, self.protocol]));
        put16(b, 10, checksum::finish(acc));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // 192.168.0.1 -> 192.168.0.199, UDP, total 0x73, checksum 0xb861 (a capture)
    const HDR: [u8; 20] = [
        0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8, 0x00,
        0x01, 0xc0, 0xa8, 0x00, 0xc7,
    ];

    fn packet() -> Vec<u8> {
        let mut b = HDR.to_vec();
        b.resize(0x73, 0xaa);
        b
    }

    #[test]
    fn parses_a_real_header() {
        let b = packet();
        let p = Packet::new_checked(&b[..]).unwrap();
        let r = Ipv4Repr::parse(&p).unwrap();
        assert_eq!(r.src_addr, Ipv4Addr::new(192, 168, 0, 1));
        assert_eq!(r.dst_addr, Ipv4Addr::new(192, 168, 0, 199));
        assert_eq!(r.protocol, 17);
        assert_eq!(r.payload_len, 0x73 - 20);
        assert!(p.dont_frag());
        let mut out = [0u8; 0x73];
        r.emit(&mut Packet::new_unchecked(&mut out[..]));
        assert_eq!(out[..20], HDR);
    }

    #[test]
    fn refuses_bad_headers() {
        let b = packet();
        assert_eq!(
            Packet::new_checked(&b[..0x72]).unwrap_err(),
            Error::Truncated,
            "total length beyond the buffer"
        );
        let mut bad = b.clone();
        bad[0] = 0x44; // IHL 4
        assert_eq!(Packet::new_checked(&bad[..]).unwrap_err(), Error::Malformed);
        let mut bad = b.clone();
        bad[0] = 0x65; // version 6
        assert_eq!(Packet::new_checked(&bad[..]).unwrap_err(), Error::Malformed);
        let mut bad = b.clone();
        bad[3] = 19; // total length shorter than the header
        assert_eq!(Packet::new_checked(&bad[..]).unwrap_err(), Error::Malformed);
        let mut bad = b.clone();
        bad[8] = 1; // TTL changed, checksum not
        let p = Packet::new_checked(&bad[..]).unwrap();
        assert_eq!(Ipv4Repr::parse(&p), Err(Error::Checksum));
        let mut frag = b.clone();
        frag[6] = 0x20; // more fragments
        let mut p = Packet::new_unchecked(&mut frag[..]);
        p.fill_checksum();
        assert_eq!(Ipv4Repr::parse(&p), Err(Error::Unsupported));
    }

    #[test]
    fn skips_options() {
        let mut b = packet();
        // IHL 6 with a 4-byte NOP option: the payload starts 4 bytes later
        b.splice(20..20, [1, 1, 1, 0]);
        b[0] = 0x46;
        put16(&mut b, 2, 0x77);
        let mut p = Packet::new_unchecked(&mut b[..]);
        p.fill_checksum();
        let r = Ipv4Repr::parse(&p).unwrap();
        assert_eq!(r.payload_len, 0x73 - 20);
        assert_eq!(p.payload()[0], 0xaa);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..120), v in 0usize..2) {
            let mut b = b;
            if v == 1 && !b.is_empty() { b[0] = 0x40 | (b[0] & 0x0f); }
            if let Ok(p) = Packet::new_checked(&b[..]) {
                let _ = Ipv4Repr::parse(&p);
                let _ = (p.payload(), p.verify_checksum(), p.frag_offset());
            }
        }

        #[test]
        fn emit_parse_round_trip(s in any::<[u8; 4]>(), d in any::<[u8; 4]>(), proto in any::<u8>(),
                                 len in 0usize..200, ttl in any::<u8>(), tos in any::<u8>(), id in any::<u16>()) {
            let r = Ipv4Repr { src_addr: s.into(), dst_addr: d.into(), protocol: proto,
                               payload_len: len, hop_limit: ttl, dscp_ecn: tos, ident: id };
            let mut b = vec![0u8; HEADER_LEN + len];
            r.emit(&mut Packet::new_unchecked(&mut b[..]));
            prop_assert_eq!(Ipv4Repr::parse(&Packet::new_checked(&b[..]).unwrap()).unwrap(), r);
        }
    }
}
