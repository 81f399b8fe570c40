//! Packet formats on the wire, as pure code: checksums and the raw-mode
//! test frame (Ethernet / IPv4 / UDP with a sequence-numbered payload).
//! Parsers take untrusted bytes and return `None` rather than panic.

pub mod checksum;
pub mod raw_frame;
