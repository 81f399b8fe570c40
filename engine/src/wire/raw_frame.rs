//! The raw-mode test frame: Ethernet, IPv4, UDP, and a payload that starts
//! with `WSRW`, the test's 32-bit tag, the sending queue and a 64-bit
//! sequence number, padded with a fixed pattern to the frame size. The
//! receiver checks every layer and counts what does not parse.

use super::checksum;
use std::net::Ipv4Addr;

const ETH: usize = 14;
const IP: usize = 20;
const UDP: usize = 8;
/// Headers before the payload.
pub const HEADERS: usize = ETH + IP + UDP;
/// Magic, tag, queue, sequence.
pub const MARK: usize = 4 + 4 + 2 + 8;
/// Smallest frame: Ethernet's 60-byte minimum (64 with the FCS the NIC adds).
pub const MIN_FRAME: usize = 60;
const MAGIC: [u8; 4] = *b"WSRW";

/// Addresses and ports of one direction of a raw test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Endpoints {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub src_ip: Ipv4Addr,
    pub dst_ip: Ipv4Addr,
    pub src_port: u16,
    pub dst_port: u16,
}

/// Write a complete frame of `len` bytes (no FCS) into `buf[..len]`.
/// `len` must be at least [`MIN_FRAME`] and `buf` that long.
pub fn build(buf: &mut [u8], len: usize, ep: &Endpoints, tag: u32, queue: u16, seq: u64) {
    assert!(len >= MIN_FRAME && buf.len() >= len, "frame of {len} bytes");
    let f = &mut buf[..len];
    f[0..6].copy_from_slice(&ep.dst_mac);
    f[6..12].copy_from_slice(&ep.src_mac);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip_len = (len - ETH) as u16;
    let ip = &mut f[ETH..ETH + IP];
    ip.copy_from_slice(&[
        0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ]);
    ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
    ip[12..16].copy_from_slice(&ep.src_ip.octets());
    ip[16..20].copy_from_slice(&ep.dst_ip.octets());
    let c = checksum::checksum(ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let udp = &mut f[ETH + IP..];
    udp[0..2].copy_from_slice(&ep.src_port.to_be_bytes());
    udp[2..4].copy_from_slice(&ep.dst_port.to_be_bytes());
    udp[4..6].copy_from_slice(&(ip_len - IP as u16).to_be_bytes());
    udp[6..8].copy_from_slice(&[0, 0]); // no UDP checksum: optional on IPv4, and costly per frame
    let p = &mut udp[UDP..];
    p[0..4].copy_from_slice(&MAGIC);
    p[4..8].copy_from_slice(&tag.to_be_bytes());
    p[8..10].copy_from_slice(&queue.to_be_bytes());
    p[10..18].copy_from_slice(&seq.to_be_bytes());
    for (i, b) in p[MARK..].iter_mut().enumerate() {
        *b = (i % 251) as u8;
    }
}

/// Overwrite only the sequence number of a frame `build` made.
pub fn set_seq(frame: &mut [u8], seq: u64) {
    frame[HEADERS + 10..HEADERS + 18].copy_from_slice(&seq.to_be_bytes());
}

/// What a received frame says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mark {
    pub queue: u16,
    pub seq: u64,
}

/// Check a received frame: Ethernet type, IPv4 header and checksum,
/// UDP to `dst_port`, lengths, the magic and the test's tag. None for
/// anything else, truncated or malformed.
pub fn parse(f: &[u8], tag: u32, dst_port: u16) -> Option<Mark> {
    if f.len() < HEADERS + MARK || f[12..14] != [0x08, 0x00] {
        return None;
    }
    let ip = &f[ETH..ETH + IP];
    if ip[0] != 0x45 || ip[9] != 17 || checksum::checksum(ip) != 0 {
        return None;
    }
    let ip_len = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    if ip_len < IP + UDP + MARK || ETH + ip_len > f.len() {
        return None;
    }
    let udp = &f[ETH + IP..];
    if u16::from_be_bytes([udp[2], udp[3]]) != dst_port
        || usize::from(u16::from_be_bytes([udp[4], udp[5]])) != ip_len - IP
    {
        return None;
    }
    let p = &udp[UDP..];
    if p[0..4] != MAGIC || p[4..8] != tag.to_be_bytes() {
        return None;
    }
    Some(Mark {
        queue: u16::from_be_bytes([p[8], p[9]]),
        seq: u64::from_be_bytes(p[10..18].try_into().ok()?),
    })
}

/// Sequence accounting for one sender queue: frames that never came
/// (gaps) and frames that came after a later one (reorders).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SeqTracker {
    next: u64,
    pub received: u64,
    pub gaps: u64,
    pub reorders: u64,
}

/// A sequence number this far past the expected one is not loss but a
/// stray or forged frame: it is refused rather than counted as gaps.
pub const MAX_JUMP: u64 = 1 << 32;

impl SeqTracker {
    /// Account for `seq`; false (and nothing counted) for an implausible one.
    pub fn see(&mut self, seq: u64) -> bool {
        if seq >= self.next {
            let jump = seq - self.next;
            if jump > MAX_JUMP {
                return false;
            }
            self.gaps += jump;
            self.next = seq.saturating_add(1);
        } else {
            // a late frame fills a gap counted before
            self.reorders += 1;
            self.gaps = self.gaps.saturating_sub(1);
        }
        self.received += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep() -> Endpoints {
        Endpoints {
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: [2, 0, 0, 0, 0, 2],
            src_ip: Ipv4Addr::new(198, 18, 0, 1),
            dst_ip: Ipv4Addr::new(198, 18, 0, 2),
            src_port: 40000,
            dst_port: 9000,
        }
    }

    #[test]
    fn build_then_parse() {
        for len in [60, 64, 1514] {
            let mut b = vec![0u8; 2048];
            build(&mut b, len, &ep(), 0xabcd, 3, 41);
            set_seq(&mut b[..len], 42);
            assert_eq!(
                parse(&b[..len], 0xabcd, 9000),
                Some(Mark { queue: 3, seq: 42 })
            );
            assert_eq!(parse(&b[..len], 0xabce, 9000), None, "another test's frame");
            assert_eq!(parse(&b[..len], 0xabcd, 9001), None, "another port");
        }
    }

    #[test]
    fn damage_is_caught() {
        let mut b = vec![0u8; 128];
        build(&mut b, 128, &ep(), 1, 0, 0);
        for cut in [0, 13, 33, 41, 59] {
            assert_eq!(parse(&b[..cut], 1, 9000), None, "truncated to {cut}");
        }
        let mut bad = b.clone();
        bad[ETH + 8] ^= 1; // TTL: breaks the IP checksum
        assert_eq!(parse(&bad, 1, 9000), None);
        let mut bad = b.clone();
        bad[ETH + 2] = 0xff; // IP length beyond the frame
        assert_eq!(parse(&bad, 1, 9000), None);
    }

    #[test]
    fn gaps_and_reorders() {
        let mut t = SeqTracker::default();
        for s in [0, 1, 3, 2, 4, 7] {
            assert!(t.see(s));
        }
        assert!(!t.see(u64::MAX), "a forged sequence number is refused");
        assert_eq!(t.received, 6);
        assert_eq!(t.reorders, 1);
        assert_eq!(t.gaps, 2, "5 and 6 never came");
    }
}
