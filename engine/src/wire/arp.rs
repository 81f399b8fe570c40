//! ARP for IPv4 over Ethernet (RFC 826): the only kind a datapath on an
//! Ethernet NIC needs to answer or resolve its peer's MAC address.

use super::ethernet::MacAddr;
use super::{be16, put16, Error, Result};
use std::net::Ipv4Addr;

/// Hardware type, protocol type, lengths, operation, two (MAC, IPv4) pairs.
pub const PACKET_LEN: usize = 28;

/// The ARP operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    Request,
    Reply,
    Unknown(u16),
}

impl From<u16> for Operation {
    fn from(v: u16) -> Self {
        match v {
            1 => Operation::Request,
            2 => Operation::Reply,
            v => Operation::Unknown(v),
        }
    }
}

impl From<Operation> for u16 {
    fn from(v: Operation) -> u16 {
        match v {
            Operation::Request => 1,
            Operation::Reply => 2,
            Operation::Unknown(v) => v,
        }
    }
}

/// A checked view of an ARP packet (any hardware/protocol type: the
/// lengths fields say where the addresses are).
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    pub fn new_unchecked(buffer: T) -> Self {
        Packet { buffer }
    }

    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// The fixed part and both address pairs, as the length fields say, fit.
    pub fn check_len(&self) -> Result<()> {
        let b = self.buffer.as_ref();
        if b.len() < 8 {
            return Err(Error::Truncated);
        }
        if b.len() < 8 + 2 * (usize::from(b[4]) + usize::from(b[5])) {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn hardware_type(&self) -> u16 {
        be16(self.buffer.as_ref(), 0)
    }

    pub fn protocol_type(&self) -> u16 {
        be16(self.buffer.as_ref(), 2)
    }

    pub fn hardware_len(&self) -> u8 {
        self.buffer.as_ref()[4]
    }

    pub fn protocol_len(&self) -> u8 {
        self.buffer.as_ref()[5]
    }

    pub fn operation(&self) -> Operation {
        be16(self.buffer.as_ref(), 6).into()
    }

    fn field(&self, index: usize) -> &[u8] {
        let (h, p) = (
            usize::from(self.hardware_len()),
            usize::from(self.protocol_len()),
        );
        let starts = [8, 8 + h, 8 + h + p, 8 + 2 * h + p];
        let lens = [h, p, h, p];
        &self.buffer.as_ref()[starts[index]..starts[index] + lens[index]]
    }

    pub fn source_hardware_addr(&self) -> &[u8] {
        self.field(0)
    }

    pub fn source_protocol_addr(&self) -> &[u8] {
        self.field(1)
    }

    pub fn target_hardware_addr(&self) -> &[u8] {
        self.field(2)
    }

    pub fn target_protocol_addr(&self) -> &[u8] {
        self.field(3)
    }
}

/// An ARP packet for IPv4 over Ethernet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArpRepr {
    pub operation: Operation,
    pub source_hardware_addr: MacAddr,
    pub source_protocol_addr: Ipv4Addr,
    pub target_hardware_addr: MacAddr,
    pub target_protocol_addr: Ipv4Addr,
}

impl ArpRepr {
    /// Only Ethernet (1) / IPv4 (0x0800) with 6/4-byte addresses.
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Result<Self> {
        p.check_len()?;
        if p.hardware_type() != 1
            || p.protocol_type() != 0x0800
            || p.hardware_len() != 6
            || p.protocol_len() != 4
        {
            return Err(Error::Unsupported);
        }
        let mac = |b: &[u8]| MacAddr(b.try_into().unwrap_or_default());
        let ip = |b: &[u8]| Ipv4Addr::from(<[u8; 4]>::try_from(b).unwrap_or_default());
        Ok(ArpRepr {
            operation: p.operation(),
            source_hardware_addr: mac(p.source_hardware_addr()),
            source_protocol_addr: ip(p.source_protocol_addr()),
            target_hardware_addr: mac(p.target_hardware_addr()),
            target_protocol_addr: ip(p.target_protocol_addr()),
        })
    }

    pub const fn buffer_len(&self) -> usize {
        PACKET_LEN
    }

    /// Write into the first [`PACKET_LEN`] bytes of `p`.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>) {
        let b = &mut p.buffer.as_mut()[..PACKET_LEN];
        put16(b, 0, 1);
        put16(b, 2, 0x0800);
        b[4] = 6;
        b[5] = 4;
        put16(b, 6, self.operation.into());
        b[8..14].copy_from_slice(&self.source_hardware_addr.0);
        b[14..18].copy_from_slice(&self.source_protocol_addr.octets());
        b[18..24].copy_from_slice(&self.target_hardware_addr.0);
        b[24..28].copy_from_slice(&self.target_protocol_addr.octets());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // "who has 10.0.2.2? tell 10.0.2.15", as captured (after the Ethernet header)
    const REQUEST: [u8; 28] = [
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x0a,
        0x00, 0x02, 0x0f, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0a, 0x00, 0x02, 0x02,
    ];

    #[test]
    fn parses_a_real_request() {
        let r = ArpRepr::parse(&Packet::new_checked(&REQUEST[..]).unwrap()).unwrap();
        assert_eq!(r.operation, Operation::Request);
        assert_eq!(r.source_protocol_addr, Ipv4Addr::new(10, 0, 2, 15));
        assert_eq!(r.target_protocol_addr, Ipv4Addr::new(10, 0, 2, 2));
        assert_eq!(r.source_hardware_addr.to_string(), "52:54:00:12:34:56");
        let mut b = [0u8; PACKET_LEN];
        r.emit(&mut Packet::new_unchecked(&mut b[..]));
        assert_eq!(b, REQUEST);
        for cut in 0..PACKET_LEN {
            assert!(Packet::new_checked(&REQUEST[..cut]).is_err(), "cut {cut}");
        }
        let mut other = REQUEST;
        other[1] = 6; // IEEE 802 hardware type
        assert_eq!(
            ArpRepr::parse(&Packet::new_checked(&other[..]).unwrap()),
            Err(Error::Unsupported)
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..1100)) {
            if let Ok(p) = Packet::new_checked(&b[..]) {
                let _ = ArpRepr::parse(&p);
                let _ = (p.source_hardware_addr(), p.source_protocol_addr());
                let _ = (p.target_hardware_addr(), p.target_protocol_addr());
            }
        }

        #[test]
        fn emit_parse_round_trip(op in any::<u16>(), sh in any::<[u8; 6]>(), sp in any::<[u8; 4]>(),
                                 th in any::<[u8; 6]>(), tp in any::<[u8; 4]>()) {
            let r = ArpRepr {
                operation: op.into(),
                source_hardware_addr: MacAddr(sh),
                source_protocol_addr: sp.into(),
                target_hardware_addr: MacAddr(th),
                target_protocol_addr: tp.into(),
            };
            let mut b = [0u8; PACKET_LEN];
            r.emit(&mut Packet::new_unchecked(&mut b[..]));
            prop_assert_eq!(ArpRepr::parse(&Packet::new_checked(&b[..]).unwrap()).unwrap(), r);
        }
    }
}
