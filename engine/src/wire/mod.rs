//! Packet formats on the wire, as pure code, in smoltcp's style: for each
//! protocol a checked zero-copy view over bytes (`Packet::new_checked`, so
//! accessors can index without panicking on untrusted input) and a `Repr`
//! (the parsed, validated meaning) that can `parse` a view and `emit` into
//! one. Plus checksums and the raw-mode test frame (Ethernet / IPv4 / UDP
//! with a sequence-numbered payload).
//!
//! Parsers take untrusted bytes and return an [`Error`] rather than panic.
//! Emitters trust their caller: they write into a buffer of at least
//! `Repr::buffer_len()` bytes.

pub mod arp;
pub mod checksum;
pub mod ethernet;
pub mod ipv4;
pub mod ipv6;
pub mod raw_frame;
pub mod tcp;
pub mod udp;

use std::fmt;

/// Why bytes did not parse. Deliberately coarse: a datapath counts these,
/// it does not explain them to a user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// Shorter than a header or than a length field says.
    Truncated,
    /// A field holds a value the format does not allow (version, header
    /// length, option length, ...).
    Malformed,
    /// The checksum does not verify.
    Checksum,
    /// Valid, but not something this code handles (an IPv4 fragment, ARP
    /// for another hardware type, ...).
    Unsupported,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Error::Truncated => "truncated packet",
            Error::Malformed => "malformed packet",
            Error::Checksum => "bad checksum",
            Error::Unsupported => "unsupported packet",
        })
    }
}

impl std::error::Error for Error {}

/// Result of parsing.
pub type Result<T> = std::result::Result<T, Error>;

/// IP protocol numbers this crate knows.
pub mod ip_protocol {
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
}

#[inline]
pub(crate) fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

#[inline]
pub(crate) fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

#[inline]
pub(crate) fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

#[inline]
pub(crate) fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}
