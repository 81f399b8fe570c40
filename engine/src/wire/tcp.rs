//! TCP segments (RFC 9293) and the options TCP-lite negotiates, parsed
//! and emitted: MSS, window scale and timestamps (RFC 7323),
//! SACK-permitted and SACK blocks (RFC 2018).

use super::{be16, be32, checksum, ip_protocol, put16, put32, Error, Result};
use std::cmp::Ordering;
use std::fmt;
use std::net::IpAddr;
use std::ops::{Add, AddAssign, Sub};

/// The header without options.
pub const HEADER_LEN: usize = 20;
/// The longest header the data offset can express.
pub const MAX_HEADER_LEN: usize = 60;

/// A TCP sequence number: arithmetic wraps, and order is defined by the
/// signed 32-bit difference (RFC 1982), so comparisons stay correct across
/// the 2^32 wrap as long as the numbers are within 2^31 of each other.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct SeqNum(pub u32);

impl SeqNum {
    /// `self - other` as a signed distance.
    #[inline]
    pub fn diff(self, other: SeqNum) -> i32 {
        self.0.wrapping_sub(other.0) as i32
    }

    /// Distance from `other` up to `self`, which must not be before it.
    #[inline]
    pub fn since(self, other: SeqNum) -> usize {
        self.0.wrapping_sub(other.0) as usize
    }

    pub fn max(self, other: SeqNum) -> SeqNum {
        if self.diff(other) >= 0 {
            self
        } else {
            other
        }
    }

    pub fn min(self, other: SeqNum) -> SeqNum {
        if self.diff(other) <= 0 {
            self
        } else {
            other
        }
    }
}

impl PartialOrd for SeqNum {
    fn partial_cmp(&self, other: &SeqNum) -> Option<Ordering> {
        Some(self.diff(*other).cmp(&0))
    }
}

impl Add<usize> for SeqNum {
    type Output = SeqNum;
    #[inline]
    fn add(self, rhs: usize) -> SeqNum {
        SeqNum(self.0.wrapping_add(rhs as u32))
    }
}

impl AddAssign<usize> for SeqNum {
    #[inline]
    fn add_assign(&mut self, rhs: usize) {
        *self = *self + rhs;
    }
}

impl Sub<usize> for SeqNum {
    type Output = SeqNum;
    #[inline]
    fn sub(self, rhs: usize) -> SeqNum {
        SeqNum(self.0.wrapping_sub(rhs as u32))
    }
}

impl fmt::Debug for SeqNum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The control bits.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    pub const FIN: TcpFlags = TcpFlags(0x01);
    pub const SYN: TcpFlags = TcpFlags(0x02);
    pub const RST: TcpFlags = TcpFlags(0x04);
    pub const PSH: TcpFlags = TcpFlags(0x08);
    pub const ACK: TcpFlags = TcpFlags(0x10);
    pub const URG: TcpFlags = TcpFlags(0x20);
    pub const ECE: TcpFlags = TcpFlags(0x40);
    pub const CWR: TcpFlags = TcpFlags(0x80);

    pub const fn empty() -> Self {
        TcpFlags(0)
    }

    #[inline]
    pub const fn contains(self, other: TcpFlags) -> bool {
        self.0 & other.0 == other.0
    }

    pub fn fin(self) -> bool {
        self.contains(Self::FIN)
    }
    pub fn syn(self) -> bool {
        self.contains(Self::SYN)
    }
    pub fn rst(self) -> bool {
        self.contains(Self::RST)
    }
    pub fn ack(self) -> bool {
        self.contains(Self::ACK)
    }
    pub fn psh(self) -> bool {
        self.contains(Self::PSH)
    }
}

impl std::ops::BitOr for TcpFlags {
    type Output = TcpFlags;
    fn bitor(self, rhs: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 | rhs.0)
    }
}

impl std::ops::BitOrAssign for TcpFlags {
    fn bitor_assign(&mut self, rhs: TcpFlags) {
        self.0 |= rhs.0;
    }
}

impl fmt::Debug for TcpFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = ["FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR"];
        let mut first = true;
        for (i, n) in names.iter().enumerate() {
            if self.0 & (1 << i) != 0 {
                if !first {
                    f.write_str("|")?;
                }
                f.write_str(n)?;
                first = false;
            }
        }
        if first {
            f.write_str("-")?;
        }
        Ok(())
    }
}

/// SACK blocks (RFC 2018) as they are on the wire: up to four pairs of
/// big-endian sequence numbers, a block's first byte and the one past its
/// last. A view, so that a segment carries them without copying and stays
/// small: a parsed one borrows the packet, one to send borrows the buffer
/// [`SackBlocks::encode`] filled.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct SackBlocks<'a>(&'a [u8]);

/// The most SACK blocks an option can carry (40 option bytes).
pub const SACK_MAX_BLOCKS: usize = 4;
/// Bytes that hold the most SACK blocks.
pub const SACK_BUF: usize = 8 * SACK_MAX_BLOCKS;

impl<'a> SackBlocks<'a> {
    /// Up to four `blocks`, written into `buf`.
    pub fn encode(
        blocks: impl IntoIterator<Item = (SeqNum, SeqNum)>,
        buf: &'a mut [u8; SACK_BUF],
    ) -> Self {
        let mut n = 0;
        for (left, right) in blocks.into_iter().take(SACK_MAX_BLOCKS) {
            put32(buf, n, left.0);
            put32(buf, n + 4, right.0);
            n += 8;
        }
        SackBlocks(&buf[..n])
    }

    pub fn len(&self) -> usize {
        self.0.len() / 8
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (SeqNum, SeqNum)> + 'a {
        let b: &'a [u8] = self.0;
        b.chunks_exact(8)
            .map(|c| (SeqNum(be32(c, 0)), SeqNum(be32(c, 4))))
    }

    /// Keep the first `n` blocks.
    pub fn truncate(&mut self, n: usize) {
        self.0 = &self.0[..n.min(self.len()) * 8];
    }

    /// The blocks as on the wire (8 bytes each).
    pub fn as_bytes(&self) -> &'a [u8] {
        self.0
    }
}

impl fmt::Debug for SackBlocks<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// One TCP option.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcpOption<'a> {
    EndOfList,
    NoOperation,
    MaxSegmentSize(u16),
    WindowScale(u8),
    SackPermitted,
    /// One to four blocks.
    Sack(SackBlocks<'a>),
    Timestamp {
        tsval: u32,
        tsecr: u32,
    },
    Unknown {
        kind: u8,
        data: &'a [u8],
    },
}

/// Iterate over an options area. Yields an error (once, then stops) for
/// an option whose length is missing, below 2, beyond the area, or wrong
/// for its kind.
pub struct OptionIter<'a> {
    rest: &'a [u8],
}

impl<'a> OptionIter<'a> {
    pub fn new(options: &'a [u8]) -> Self {
        OptionIter { rest: options }
    }
}

impl<'a> Iterator for OptionIter<'a> {
    type Item = Result<TcpOption<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        let b = self.rest;
        let kind = *b.first()?;
        match kind {
            0 => {
                self.rest = &[];
                return Some(Ok(TcpOption::EndOfList));
            }
            1 => {
                self.rest = &b[1..];
                return Some(Ok(TcpOption::NoOperation));
            }
            _ => {}
        }
        let bad = |s: &mut Self| {
            s.rest = &[];
            Some(Err(Error::Malformed))
        };
        let Some(&len) = b.get(1) else {
            return bad(self);
        };
        let len = usize::from(len);
        if len < 2 || len > b.len() {
            return bad(self);
        }
        let data = &b[2..len];
        self.rest = &b[len..];
        let opt = match (kind, len) {
            (2, 4) => TcpOption::MaxSegmentSize(be16(data, 0)),
            (3, 3) => TcpOption::WindowScale(data[0]),
            (4, 2) => TcpOption::SackPermitted,
            (5, l) if l >= 10 && (l - 2) % 8 == 0 && l <= 34 => TcpOption::Sack(SackBlocks(data)),
            (8, 10) => TcpOption::Timestamp {
                tsval: be32(data, 0),
                tsecr: be32(data, 4),
            },
            (2..=5 | 8, _) => return bad(self),
            (kind, _) => TcpOption::Unknown { kind, data },
        };
        Some(Ok(opt))
    }
}

/// The checksum of a segment parsed by [`TcpRepr::parse_deferred`]: the
/// partial sum of its pseudo-header and header, awaiting the payload's.
/// The header is a whole number of 32-bit words, so the payload's sum is
/// that of a piece at an even offset, as [`checksum::sum`] and
/// [`checksum::copy_sum`] compute it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeferredChecksum(u64);

impl DeferredChecksum {
    /// The segment is intact, given the partial sum of its payload.
    #[inline]
    pub fn verify_sum(self, payload_sum: u64) -> bool {
        checksum::finish(checksum::add(self.0, payload_sum)) == 0
    }

    /// The segment is intact, summing `payload` here.
    #[inline]
    pub fn verify(self, payload: &[u8]) -> bool {
        self.verify_sum(checksum::sum(0, payload))
    }
}

/// A checked view of a TCP segment.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    pub fn new_unchecked(buffer: T) -> Self {
        Packet { buffer }
    }

    /// The data offset is at least 5 words and within the buffer. The
    /// whole buffer is the segment (the IP layer cut it to its length).
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
        let h = self.header_len();
        if h < HEADER_LEN {
            return Err(Error::Malformed);
        }
        if h > len {
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

    pub fn seq_number(&self) -> SeqNum {
        SeqNum(be32(self.buffer.as_ref(), 4))
    }

    pub fn ack_number(&self) -> SeqNum {
        SeqNum(be32(self.buffer.as_ref(), 8))
    }

    /// Header length in bytes (data offset * 4).
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[12] >> 4) * 4
    }

    pub fn flags(&self) -> TcpFlags {
        TcpFlags(self.buffer.as_ref()[13])
    }

    pub fn window_len(&self) -> u16 {
        be16(self.buffer.as_ref(), 14)
    }

    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), 16)
    }

    pub fn urgent_at(&self) -> u16 {
        be16(self.buffer.as_ref(), 18)
    }

    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.header_len()]
    }

    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }

    /// Sequence space the segment occupies: payload plus SYN and FIN.
    pub fn segment_len(&self) -> usize {
        let f = self.flags();
        self.payload().len() + usize::from(f.syn()) + usize::from(f.fin())
    }

    /// The checksum over the pseudo-header and the whole buffer verifies.
    pub fn verify_checksum(&self, src: IpAddr, dst: IpAddr) -> bool {
        let b = self.buffer.as_ref();
        let acc = checksum::pseudo_header(src, dst, ip_protocol::TCP, b.len() as u32);
        checksum::finish(checksum::sum(acc, b)) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Compute and store the checksum over the whole buffer.
    pub fn fill_checksum(&mut self, src: IpAddr, dst: IpAddr) {
        let b = self.buffer.as_mut();
        put16(b, 16, 0);
        let acc = checksum::pseudo_header(src, dst, ip_protocol::TCP, b.len() as u32);
        let c = checksum::finish(checksum::sum(acc, b));
        put16(b, 16, c);
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        let h = self.header_len();
        &mut self.buffer.as_mut()[h..]
    }
}

/// A TCP segment's meaning: the header fields TCP-lite uses, the options
/// it knows, and the payload (borrowed, not copied). This is also what
/// `tcplite` consumes: the datapath parses, the connection decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpRepr<'a> {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq_number: SeqNum,
    /// Meaningful only with the ACK flag.
    pub ack_number: SeqNum,
    pub flags: TcpFlags,
    /// As on the wire: not yet scaled.
    pub window_len: u16,
    pub max_seg_size: Option<u16>,
    pub window_scale: Option<u8>,
    pub sack_permitted: bool,
    /// (TSval, TSecr).
    pub timestamp: Option<(u32, u32)>,
    /// SACK blocks; emitted as many as fit beside the other options
    /// (see [`TcpRepr::sack_room`]).
    pub sack: SackBlocks<'a>,
    pub payload: &'a [u8],
}

impl<'a> TcpRepr<'a> {
    /// A bare segment with no options and no payload.
    pub fn new(src_port: u16, dst_port: u16, seq: SeqNum, ack: SeqNum, flags: TcpFlags) -> Self {
        TcpRepr {
            src_port,
            dst_port,
            seq_number: seq,
            ack_number: ack,
            flags,
            window_len: 0,
            max_seg_size: None,
            window_scale: None,
            sack_permitted: false,
            timestamp: None,
            sack: SackBlocks::default(),
            payload: &[],
        }
    }

    /// Parse and verify the checksum against the addresses the IP layer gave.
    pub fn parse(p: &Packet<&'a [u8]>, src: IpAddr, dst: IpAddr) -> Result<Self> {
        if !Self::deferred_checksum(p, src, dst)?.verify(p.payload()) {
            return Err(Error::Checksum);
        }
        Self::parse_unverified(p)
    }

    /// Parse, summing the pseudo-header and the header but not yet the
    /// payload: whoever reads the payload next (a copy into a receive
    /// ring) sums it on the way and completes the check, so the payload
    /// is read once, not twice. Nothing may act on the segment before
    /// [`DeferredChecksum`] says it is intact.
    pub fn parse_deferred(
        p: &Packet<&'a [u8]>,
        src: IpAddr,
        dst: IpAddr,
    ) -> Result<(Self, DeferredChecksum)> {
        let check = Self::deferred_checksum(p, src, dst)?;
        Ok((Self::parse_unverified(p)?, check))
    }

    /// The checksum over all but the payload, for a segment whose ports
    /// are not zero.
    fn deferred_checksum(
        p: &Packet<&'a [u8]>,
        src: IpAddr,
        dst: IpAddr,
    ) -> Result<DeferredChecksum> {
        p.check_len()?;
        if p.src_port() == 0 || p.dst_port() == 0 {
            return Err(Error::Malformed);
        }
        let b: &[u8] = p.buffer;
        let acc = checksum::pseudo_header(src, dst, ip_protocol::TCP, b.len() as u32);
        Ok(DeferredChecksum(checksum::sum(acc, &b[..p.header_len()])))
    }

    /// Parse without the checksum (a NIC verified it, or a test made it).
    pub fn parse_unverified(p: &Packet<&'a [u8]>) -> Result<Self> {
        p.check_len()?;
        let b: &'a [u8] = p.buffer;
        let h = p.header_len();
        let options = &b[HEADER_LEN..h];
        // the fast path: the options of every data segment as Linux and
        // TCP-lite send them (NOP, NOP, timestamps), built in place (a
        // repr built field by field and then moved costs a stalled copy)
        if let [1, 1, 8, 10, ts @ ..] = options {
            if ts.len() == 8 {
                return Ok(TcpRepr {
                    src_port: p.src_port(),
                    dst_port: p.dst_port(),
                    seq_number: p.seq_number(),
                    ack_number: p.ack_number(),
                    flags: p.flags(),
                    window_len: p.window_len(),
                    max_seg_size: None,
                    window_scale: None,
                    sack_permitted: false,
                    timestamp: Some((be32(ts, 0), be32(ts, 4))),
                    sack: SackBlocks::default(),
                    payload: &b[h..],
                });
            }
        }
        let mut r = TcpRepr::new(
            p.src_port(),
            p.dst_port(),
            p.seq_number(),
            p.ack_number(),
            p.flags(),
        );
        r.window_len = p.window_len();
        r.payload = &b[h..];
        for opt in OptionIter::new(options) {
            match opt? {
                TcpOption::EndOfList => break,
                TcpOption::MaxSegmentSize(m) => r.max_seg_size = Some(m),
                // RFC 7323 2.3: a shift above 14 is treated as 14
                TcpOption::WindowScale(s) => r.window_scale = Some(s.min(14)),
                TcpOption::SackPermitted => r.sack_permitted = true,
                TcpOption::Timestamp { tsval, tsecr } => r.timestamp = Some((tsval, tsecr)),
                TcpOption::Sack(blocks) => r.sack = blocks,
                _ => {}
            }
        }
        Ok(r)
    }

    /// Options bytes other than SACK blocks, as emitted.
    fn fixed_options_len(&self) -> usize {
        let mut n = 0;
        if self.max_seg_size.is_some() {
            n += 4;
        }
        if self.window_scale.is_some() {
            n += 4; // NOP + 3
        }
        if self.sack_permitted {
            n += 4; // NOP NOP + 2
        }
        if self.timestamp.is_some() {
            n += 12; // NOP NOP + 10
        }
        n
    }

    /// How many of the SACK blocks are emitted: as many as fit in the 40
    /// option bytes beside the others (3 with timestamps, 4 without).
    pub fn sack_room(&self) -> usize {
        let room = (MAX_HEADER_LEN - HEADER_LEN).saturating_sub(self.fixed_options_len());
        (room.saturating_sub(4) / 8).min(self.sack.len())
    }

    /// Options bytes as emitted, padded to a multiple of 4.
    pub fn options_len(&self) -> usize {
        let n = self.fixed_options_len();
        if self.sack.is_empty() {
            return n;
        }
        match self.sack_room() {
            0 => n,
            b => n + 4 + 8 * b, // NOP NOP + 2 + 8 per block
        }
    }

    pub fn header_len(&self) -> usize {
        HEADER_LEN + self.options_len()
    }

    pub fn buffer_len(&self) -> usize {
        self.header_len() + self.payload.len()
    }

    /// Sequence space the segment occupies.
    pub fn segment_len(&self) -> usize {
        self.payload.len() + usize::from(self.flags.syn()) + usize::from(self.flags.fin())
    }

    /// Write the header and options into `buf` (at least `header_len()`
    /// bytes), without payload or checksum; returns the header length.
    /// Lets a caller place the payload itself (zero-copy from a ring).
    pub fn emit_header(&self, buf: &mut [u8]) -> usize {
        let h = self.header_len();
        let b = &mut buf[..h];
        put16(b, 0, self.src_port);
        put16(b, 2, self.dst_port);
        put32(b, 4, self.seq_number.0);
        put32(
            b,
            8,
            if self.flags.ack() {
                self.ack_number.0
            } else {
                0
            },
        );
        b[12] = ((h / 4) as u8) << 4;
        b[13] = self.flags.0;
        put16(b, 14, self.window_len);
        put16(b, 16, 0);
        put16(b, 18, 0);
        let mut at = HEADER_LEN;
        if let Some(m) = self.max_seg_size {
            b[at..at + 2].copy_from_slice(&[2, 4]);
            put16(b, at + 2, m);
            at += 4;
        }
        if let Some(s) = self.window_scale {
            b[at..at + 4].copy_from_slice(&[1, 3, 3, s]);
            at += 4;
        }
        if self.sack_permitted {
            b[at..at + 4].copy_from_slice(&[1, 1, 4, 2]);
            at += 4;
        }
        if let Some((v, e)) = self.timestamp {
            b[at..at + 4].copy_from_slice(&[1, 1, 8, 10]);
            put32(b, at + 4, v);
            put32(b, at + 8, e);
            at += 12;
        }
        if !self.sack.is_empty() {
            let n = self.sack_room();
            if n > 0 {
                b[at..at + 4].copy_from_slice(&[1, 1, 5, (2 + 8 * n) as u8]);
                at += 4;
                b[at..at + 8 * n].copy_from_slice(&self.sack.as_bytes()[..8 * n]);
                at += 8 * n;
            }
        }
        debug_assert_eq!(at, h);
        h
    }

    /// The checksum sum of the header [`Self::emit_header`] writes, taken
    /// from the fields rather than read back from the buffer: loading
    /// 8-byte words just written by 2- and 4-byte stores stalls on store
    /// forwarding, once per segment sent.
    pub fn header_sum(&self) -> u64 {
        let words = |v: u32| u64::from(v >> 16) + u64::from(v & 0xffff);
        let h = self.header_len();
        let ack = if self.flags.ack() {
            self.ack_number.0
        } else {
            0
        };
        let mut s = u64::from(self.src_port)
            + u64::from(self.dst_port)
            + words(self.seq_number.0)
            + words(ack)
            + (((h / 4) as u64) << 12 | u64::from(self.flags.0))
            + u64::from(self.window_len);
        if let Some(m) = self.max_seg_size {
            s += 0x0204 + u64::from(m);
        }
        if let Some(w) = self.window_scale {
            s += 0x0103 + 0x0300 + u64::from(w);
        }
        if self.sack_permitted {
            s += 0x0101 + 0x0402;
        }
        if let Some((v, e)) = self.timestamp {
            s += 0x0101 + 0x080a + words(v) + words(e);
        }
        let n = if self.sack.is_empty() {
            0
        } else {
            self.sack_room()
        };
        if n > 0 {
            s += 0x0101 + 0x0500 + (2 + 8 * n) as u64;
            s = checksum::sum(s, &self.sack.as_bytes()[..8 * n]);
        }
        s
    }

    /// Write the whole segment into the first `buffer_len()` bytes of
    /// `p` and fill the checksum.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>, src: IpAddr, dst: IpAddr) {
        let l = self.buffer_len();
        let b = &mut p.buffer.as_mut()[..l];
        let h = self.emit_header(b);
        b[h..].copy_from_slice(self.payload);
        Packet::new_unchecked(b).fill_checksum(src, dst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::Ipv4Addr;

    /// A SYN laid out byte for byte as Linux sends one (options in its
    /// order: MSS, SACK-permitted, timestamps, NOP, window scale):
    /// 10.0.0.1:45346 -> 10.0.0.2:80, seq 0x9d2c5b3a, window 64240,
    /// MSS 1460, TS val 0x8d2f1e40 ecr 0, window scale 7. Its checksum,
    /// 0xe3c3, was computed by hand-written Python over the pseudo-header,
    /// independently of this crate.
    const SYN: [u8; 40] = [
        0xb1, 0x22, 0x00, 0x50, 0x9d, 0x2c, 0x5b, 0x3a, 0x00, 0x00, 0x00, 0x00, 0xa0, 0x02, 0xfa,
        0xf0, 0xe3, 0xc3, 0x00, 0x00, 0x02, 0x04, 0x05, 0xb4, 0x04, 0x02, 0x08, 0x0a, 0x8d, 0x2f,
        0x1e, 0x40, 0x00, 0x00, 0x00, 0x00, 0x01, 0x03, 0x03, 0x07,
    ];

    fn addrs() -> (IpAddr, IpAddr) {
        (
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
        )
    }

    #[test]
    fn parses_a_linux_syn() {
        let (s, d) = addrs();
        let p = Packet::new_checked(&SYN[..]).unwrap();
        assert!(p.verify_checksum(s, d), "checksum {:#06x}", p.checksum());
        let r = TcpRepr::parse(&p, s, d).unwrap();
        assert_eq!((r.src_port, r.dst_port), (45346, 80));
        assert_eq!(r.seq_number, SeqNum(0x9d2c5b3a));
        assert_eq!(r.flags, TcpFlags::SYN);
        assert_eq!(r.window_len, 64240);
        assert_eq!(r.max_seg_size, Some(1460));
        assert_eq!(r.window_scale, Some(7));
        assert!(r.sack_permitted);
        assert_eq!(r.timestamp, Some((0x8d2f1e40, 0)));
        assert!(r.payload.is_empty());
        assert_eq!(p.segment_len(), 1);
        // another address changes the pseudo-header (swapping them does not:
        // the sum commutes)
        let other = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 3));
        assert_eq!(TcpRepr::parse(&p, s, other), Err(Error::Checksum));
    }

    #[test]
    fn header_sum_is_the_sum_of_the_emitted_header() {
        let blocks = [
            (SeqNum(7), SeqNum(0x1_0000)),
            (SeqNum(u32::MAX), SeqNum(3)),
            (SeqNum(0xdead_beef), SeqNum(0xfeed_f00d)),
            (SeqNum(1), SeqNum(2)),
        ];
        for case in 0..32u32 {
            let mut sack = [0; SACK_BUF];
            let mut r = TcpRepr::new(
                1,
                65535,
                SeqNum(0xfffe_0001),
                SeqNum(0x8000_ffff),
                TcpFlags(0xff),
            );
            r.window_len = 0xabcd;
            r.max_seg_size = (case & 1 != 0).then_some(0xffff);
            r.window_scale = (case & 2 != 0).then_some(14);
            r.sack_permitted = case & 4 != 0;
            r.timestamp = (case & 8 != 0).then_some((u32::MAX, 0x0001_fffe));
            if case & 16 != 0 {
                r.sack = SackBlocks::encode(blocks, &mut sack);
            }
            let mut buf = [0u8; MAX_HEADER_LEN];
            let h = r.emit_header(&mut buf);
            assert_eq!(
                checksum::finish(r.header_sum()),
                checksum::finish(checksum::sum(0, &buf[..h])),
                "case {case}"
            );
        }
    }

    #[test]
    fn bad_offsets_and_options_are_errors() {
        let mut b = SYN;
        b[12] = 0x40; // data offset 4 words
        assert_eq!(Packet::new_checked(&b[..]).unwrap_err(), Error::Malformed);
        b[12] = 0xf0; // 60 bytes of header in a 40-byte buffer
        assert_eq!(Packet::new_checked(&b[..]).unwrap_err(), Error::Truncated);
        let mut b = SYN;
        b[21] = 40; // MSS option claims 40 bytes
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(TcpRepr::parse_unverified(&p), Err(Error::Malformed));
        let mut b = SYN;
        b[21] = 3; // MSS with the wrong length
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(TcpRepr::parse_unverified(&p), Err(Error::Malformed));
        let mut b = SYN;
        b[39] = 20; // window scale 20 is clamped to 14
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(
            TcpRepr::parse_unverified(&p).unwrap().window_scale,
            Some(14)
        );
    }

    /// An ACK as Linux sends one while it holds out-of-order data: NOP,
    /// NOP, timestamps, NOP, NOP, SACK with two blocks.
    #[test]
    fn parses_linux_sack_blocks_and_emits_them_back() {
        let (s, d) = addrs();
        let mut b = SYN[..20].to_vec();
        b[12] = 0xd0; // 52 bytes of header
        b[13] = 0x10; // ACK
        b.extend_from_slice(&[1, 1, 8, 10, 0, 0, 0, 9, 0, 0, 0, 7, 1, 1, 5, 18]);
        for edge in [3000u32, 4000, 1000, 2000] {
            b.extend_from_slice(&edge.to_be_bytes());
        }
        Packet::new_unchecked(&mut b[..]).fill_checksum(s, d);
        let r = TcpRepr::parse(&Packet::new_checked(&b[..]).unwrap(), s, d).unwrap();
        assert_eq!(r.timestamp, Some((9, 7)));
        assert_eq!(
            r.sack.iter().collect::<Vec<_>>(),
            [(SeqNum(3000), SeqNum(4000)), (SeqNum(1000), SeqNum(2000))]
        );
        assert_eq!(r.header_len(), 52, "our layout is Linux's");
        let mut out = vec![0u8; r.buffer_len()];
        r.emit(&mut Packet::new_unchecked(&mut out[..]), s, d);
        assert_eq!(out, b, "emitted byte for byte as parsed");
        // timestamps leave room for three blocks, none for a fourth
        let mut r = r;
        let mut buf = [0; SACK_BUF];
        let four = r
            .sack
            .iter()
            .chain((0..2).map(|i| (SeqNum(i), SeqNum(i + 1))));
        r.sack = SackBlocks::encode(four, &mut buf);
        assert_eq!((r.sack.len(), r.sack_room()), (4, 3));
        assert_eq!(r.header_len(), MAX_HEADER_LEN);
        r.timestamp = None;
        assert_eq!(r.sack_room(), 4);
        // a SACK option whose length is not 2 + 8n is refused
        let mut bad = b.clone();
        bad[35] = 17;
        let p = Packet::new_checked(&bad[..]).unwrap();
        assert_eq!(TcpRepr::parse_unverified(&p), Err(Error::Malformed));
    }

    #[test]
    fn sequence_numbers_wrap() {
        let a = SeqNum(u32::MAX - 10);
        let b = a + 20;
        assert_eq!(b, SeqNum(9));
        assert!(a < b);
        assert!(b > a);
        assert_eq!(b.since(a), 20);
        assert_eq!(b.diff(a), 20);
        assert_eq!(a.diff(b), -20);
        assert_eq!(a.max(b), b);
        assert_eq!(b - 20, a);
    }

    #[test]
    fn emits_what_tshark_reads() {
        let (s, d) = addrs();
        let mut r = TcpRepr::new(45346, 80, SeqNum(0x9d2c5b3a), SeqNum(0), TcpFlags::SYN);
        r.window_len = 64240;
        r.max_seg_size = Some(1460);
        r.window_scale = Some(7);
        r.timestamp = Some((0x8d2f1e40, 0));
        let mut b = vec![0u8; r.buffer_len()];
        r.emit(&mut Packet::new_unchecked(&mut b[..]), s, d);
        assert_eq!(b.len(), 40);
        let back = TcpRepr::parse(&Packet::new_checked(&b[..]).unwrap(), s, d).unwrap();
        assert_eq!(back, r);
    }

    fn repr_strategy() -> impl Strategy<Value = (TcpRepr<'static>, Vec<u8>)> {
        (
            (
                1u16..,
                1u16..,
                any::<u32>(),
                any::<u32>(),
                any::<u8>(),
                any::<u16>(),
            ),
            (
                proptest::option::of(any::<u16>()),
                proptest::option::of(0u8..=14),
                proptest::option::of(any::<(u32, u32)>()),
                any::<bool>(),
            ),
            proptest::collection::vec(any::<u8>(), 0..64),
        )
            .prop_map(
                |((sp, dp, seq, ack, fl, win), (mss, ws, ts, sp_ok), payload)| {
                    let mut r = TcpRepr::new(sp, dp, SeqNum(seq), SeqNum(ack), TcpFlags(fl));
                    if !r.flags.ack() {
                        r.ack_number = SeqNum(0);
                    }
                    r.window_len = win;
                    r.max_seg_size = mss;
                    r.window_scale = ws;
                    r.timestamp = ts;
                    r.sack_permitted = sp_ok;
                    (r, payload)
                },
            )
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..100), off in 5u8..16) {
            let (s, d) = addrs();
            let mut b = b;
            if b.len() > 12 { b[12] = off << 4; }
            if let Ok(p) = Packet::new_checked(&b[..]) {
                let _ = TcpRepr::parse(&p, s, d);
                let _ = TcpRepr::parse_unverified(&p);
                let _ = (p.options(), p.payload(), p.segment_len());
                for o in OptionIter::new(p.options()) { let _ = o; }
            }
        }

        #[test]
        fn arbitrary_options_never_panic(b in proptest::collection::vec(any::<u8>(), 0..40)) {
            let n = OptionIter::new(&b).count();
            prop_assert!(n <= b.len());
        }

        #[test]
        fn emit_parse_round_trip((r, payload) in repr_strategy(), v6 in any::<bool>(),
                                 blocks in proptest::collection::vec(any::<(u32, u32)>(), 0..=4)) {
            let (s, d) = if v6 {
                (IpAddr::from([0xfe80, 0, 0, 0, 0, 0, 0, 1u16]), IpAddr::from([0xfe80, 0, 0, 0, 0, 0, 0, 2u16]))
            } else {
                addrs()
            };
            let mut r = r;
            r.payload = &payload;
            let mut sack = [0; SACK_BUF];
            r.sack = SackBlocks::encode(blocks.iter().map(|&(a, b)| (SeqNum(a), SeqNum(b))), &mut sack);
            let mut b = vec![0u8; r.buffer_len()];
            r.emit(&mut Packet::new_unchecked(&mut b[..]), s, d);
            let back = TcpRepr::parse(&Packet::new_checked(&b[..]).unwrap(), s, d).unwrap();
            prop_assert!(b.len() - payload.len() <= MAX_HEADER_LEN);
            // the blocks beyond the option space are left out
            r.sack.truncate(r.sack_room());
            prop_assert_eq!(back, r);
        }

        /// A SACK option of any length at any place in the option area
        /// parses or is refused, never panics, never yields more than four
        /// blocks.
        #[test]
        fn hostile_sack_options_never_panic(pre in proptest::collection::vec(any::<u8>(), 0..36),
                                            len in any::<u8>(), at in 0usize..40) {
            let mut opts = pre;
            let at = at.min(opts.len());
            opts.insert(at, len);
            opts.insert(at, 5);
            opts.resize(opts.len().div_ceil(4) * 4, 0);
            opts.truncate(40);
            let mut b = SYN[..20].to_vec();
            b[12] = (((20 + opts.len()) / 4) as u8) << 4;
            b.extend_from_slice(&opts);
            let p = Packet::new_checked(&b[..]).unwrap();
            if let Ok(r) = TcpRepr::parse_unverified(&p) {
                prop_assert!(r.sack.len() <= SACK_MAX_BLOCKS);
            }
        }
    }
}
