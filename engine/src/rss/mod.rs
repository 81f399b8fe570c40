//! Receive-side scaling as the NIC computes it: the Toeplitz hash of a
//! received segment's addresses (and ports), and the indirection table that
//! turns the hash into a receive queue.
//!
//! Why predict it: the NIC, not us, decides on which queue a segment
//! arrives, and a flow cannot be moved to another queue once it runs. A
//! TCP-lite worker owns the connections of one queue, so the end that opens
//! a connection picks its local port such that the peer's segments hash to
//! its own worker's queue (`place`). Where the hash cannot be known (veth,
//! tap, a driver that hides its key) frames are handed to their owner
//! instead; see `host::rss` for reading a NIC's configuration.
//!
//! Direction: the receiving NIC hashes the packet as it arrives, so the
//! input is (source = the peer, destination = us): peer address, local
//! address, peer port, local port, in network byte order ([`Flow`]).
//!
//! Low bits: the queue is `indir[hash % indir.len()]`; tables are powers of
//! two, so that is the hash's low bits, as drivers and the kernel's ethtool
//! define it. A table of another size is refused rather than guessed.
//!
//! Pure logic, no I/O: it builds and is tested on every platform.

pub mod place;

use crate::{Error, Result};
use std::fmt;
use std::net::SocketAddr;

/// The longest RSS input: two IPv6 addresses and two ports.
pub const MAX_INPUT: usize = 36;

/// The shortest key that covers [`MAX_INPUT`]: the hash slides a 32-bit
/// window over the key, one bit per input bit.
pub const MIN_KEY: usize = MAX_INPUT + 4;

/// The key of Microsoft's RSS specification, with which its verification
/// vectors are computed (and the default of several drivers).
pub const SPEC_KEY: [u8; 40] = [
    0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f, 0xb0,
    0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30, 0xf2, 0x0c,
    0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
];

/// The Toeplitz hash over a fixed key, as a table per input byte position:
/// `table[i][b]` is what byte value `b` at position `i` XORs into the hash
/// (the hash is linear in its input bits), so a 12- or 36-byte input costs
/// 12 or 36 table loads instead of 8 shifts per byte.
#[derive(Clone)]
pub struct Toeplitz {
    key: Vec<u8>,
    table: Vec<[u32; 256]>,
}

impl Toeplitz {
    /// The hash for `key`: at least [`MIN_KEY`] bytes (drivers use 40 or 52).
    pub fn new(key: &[u8]) -> Result<Toeplitz> {
        if key.len() < MIN_KEY {
            return Err(Error::Invalid(format!(
                "an RSS key of {} bytes is too short to hash an IPv6 flow (the NIC's Toeplitz needs {MIN_KEY}): treat the queue as unknown",
                key.len()
            )));
        }
        let table = (0..MAX_INPUT)
            .map(|i| {
                // The 40 key bits from bit 8*i: the 32-bit windows of the
                // eight bits of input byte i start at bits 8*i .. 8*i+7.
                let w = key[i..i + 5]
                    .iter()
                    .fold(0u64, |w, &b| (w << 8) | u64::from(b));
                let window = |bit: usize| (w >> (8 - bit)) as u32;
                let mut t = [0u32; 256];
                for (v, slot) in t.iter_mut().enumerate() {
                    *slot = (0..8)
                        .filter(|bit| v & (0x80 >> bit) != 0)
                        .fold(0, |h, bit| h ^ window(bit));
                }
                t
            })
            .collect();
        Ok(Toeplitz {
            key: key.to_vec(),
            table,
        })
    }

    /// The key this hash was built from.
    pub fn key(&self) -> &[u8] {
        &self.key
    }

    /// The hash of `input` (at most [`MAX_INPUT`] bytes).
    #[inline]
    pub fn hash(&self, input: &[u8]) -> u32 {
        self.hash_at(0, input)
    }

    /// What `bytes`, placed at input position `pos`, XOR into the hash: the
    /// hash of an input is the XOR of its parts, so a search over one field
    /// (a port) hashes the rest once.
    #[inline]
    pub fn hash_at(&self, pos: usize, bytes: &[u8]) -> u32 {
        assert!(
            pos + bytes.len() <= MAX_INPUT,
            "RSS input longer than {MAX_INPUT} bytes"
        );
        bytes
            .iter()
            .zip(&self.table[pos..])
            .fold(0, |h, (&b, t)| h ^ t[usize::from(b)])
    }
}

impl fmt::Debug for Toeplitz {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key: String = self.key.iter().map(|b| format!("{b:02x}")).collect();
        write!(f, "Toeplitz({key})")
    }
}

/// Which fields of a TCP segment the NIC hashes (`ethtool -n IF
/// rx-flow-hash tcp4`): only these two are predictable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fields {
    /// Source and destination address: every port of a peer lands on one
    /// queue, so ports cannot place flows.
    Addrs,
    /// Addresses and ports (`sdfn`), the usual setting for TCP.
    AddrsPorts,
}

/// A connection as its segments arrive here: source `peer`, destination
/// `local`. Both of one address family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Flow {
    peer: SocketAddr,
    local: SocketAddr,
}

impl Flow {
    /// The flow from `peer` to `local`, or why not (mixed families).
    pub fn new(peer: SocketAddr, local: SocketAddr) -> Result<Flow> {
        if peer.is_ipv4() != local.is_ipv4() {
            return Err(Error::Invalid(format!(
                "peer {peer} and local address {local} are of different address families"
            )));
        }
        Ok(Flow { peer, local })
    }

    /// The peer's address and port: the segment's source.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Our address and port: the segment's destination.
    pub fn local(&self) -> SocketAddr {
        self.local
    }

    /// The bytes the NIC hashes: source address, destination address, then
    /// (with ports) source port and destination port, network order.
    pub fn input(&self, fields: Fields) -> Input {
        let mut bytes = [0u8; MAX_INPUT];
        let mut len = 0;
        let mut put = |b: &[u8]| {
            bytes[len..len + b.len()].copy_from_slice(b);
            len += b.len();
        };
        for a in [self.peer.ip(), self.local.ip()] {
            match a {
                std::net::IpAddr::V4(a) => put(&a.octets()),
                std::net::IpAddr::V6(a) => put(&a.octets()),
            }
        }
        if fields == Fields::AddrsPorts {
            put(&self.peer.port().to_be_bytes());
            put(&self.local.port().to_be_bytes());
        }
        Input { bytes, len }
    }

    /// Where the local port sits in [`Flow::input`] with ports: after both
    /// addresses and the peer's port.
    pub fn local_port_pos(&self) -> usize {
        if self.peer.is_ipv4() {
            10
        } else {
            34
        }
    }
}

/// A hash input: 8 or 12 bytes for IPv4, 32 or 36 for IPv6.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Input {
    bytes: [u8; MAX_INPUT],
    len: usize,
}

impl Input {
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// A NIC's receive-side scaling: key, indirection table (entry → receive
/// queue) and the fields it hashes for TCP over IPv4 and IPv6.
#[derive(Clone, Debug)]
pub struct Rss {
    hash: Toeplitz,
    indir: Vec<u32>,
    tcp4: Fields,
    tcp6: Fields,
}

impl Rss {
    /// RSS with `key`, `indir` (a power-of-two number of queue indexes)
    /// and the hashed fields; or why it cannot be predicted.
    pub fn new(key: &[u8], indir: Vec<u32>, tcp4: Fields, tcp6: Fields) -> Result<Rss> {
        if !indir.len().is_power_of_two() {
            return Err(Error::Invalid(format!(
                "an RSS indirection table of {} entries is not a power of two: which hash bits pick the entry is unknown",
                indir.len()
            )));
        }
        Ok(Rss {
            hash: Toeplitz::new(key)?,
            indir,
            tcp4,
            tcp6,
        })
    }

    /// The hash function over this key.
    pub fn toeplitz(&self) -> &Toeplitz {
        &self.hash
    }

    /// The indirection table: entry `i` holds the queue of hashes `≡ i`.
    pub fn indir(&self) -> &[u32] {
        &self.indir
    }

    /// The fields hashed for TCP over this flow's family.
    pub fn fields(&self, flow: &Flow) -> Fields {
        if flow.peer.is_ipv4() {
            self.tcp4
        } else {
            self.tcp6
        }
    }

    /// The NIC's hash of a segment of `flow` arriving here.
    pub fn hash(&self, flow: &Flow) -> u32 {
        self.hash.hash(flow.input(self.fields(flow)).as_bytes())
    }

    /// The queue a hash is delivered to: the table entry its low bits pick.
    #[inline]
    pub fn queue_of_hash(&self, hash: u32) -> u32 {
        self.indir[hash as usize & (self.indir.len() - 1)]
    }

    /// The receive queue the NIC delivers `flow`'s segments to.
    pub fn queue_of(&self, flow: &Flow) -> u32 {
        self.queue_of_hash(self.hash(flow))
    }

    /// The queues the table spreads over, ascending.
    pub fn queues(&self) -> Vec<u32> {
        let mut q = self.indir.clone();
        q.sort_unstable();
        q.dedup();
        q
    }
}

#[cfg(test)]
mod tests;
