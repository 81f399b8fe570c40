//! The kernel's own answers about routes, neighbours and links, asked over
//! rtnetlink rather than through iproute2: no fork per question, the same
//! behaviour on every host (busybox guests included, whose `ip` may lack
//! `-j` or be absent) and IPv6 neighbours, which `/proc` does not list.
//!
//! Crates: rust-netlink's `netlink-packet-route` (typed RTM_GETROUTE,
//! RTM_GETNEIGH/NEWNEIGH and IFLA_XDP messages; actively maintained, the
//! base of the `rtnetlink` crate) over `netlink-sys`'s plain blocking
//! socket, so no async runtime is involved. Each submodule builds its
//! requests and decodes replies into small types of ours without I/O (unit
//! tested over replies recorded from a kernel); [`ask`] is the only socket
//! I/O, one fresh socket per question so it always speaks to the network
//! namespace of the calling thread.

pub mod addr;
pub mod link;
pub mod neigh;
pub mod qdisc;
pub mod route;

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NlasIterator, NLM_F_MULTIPART, NLM_F_REQUEST,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use std::time::{Duration, Instant};

/// How long one question may wait for all of its answer.
const REPLY_TIMEOUT: Duration = Duration::from_secs(2);
/// Datagrams one answer may take (a dump of a large table is several).
const MAX_DATAGRAMS: usize = 4096;

/// Why the kernel's answer is missing.
#[derive(Debug, thiserror::Error)]
pub enum NlError {
    /// The socket itself failed (or the kernel did not answer in time).
    #[error("netlink socket: {0}")]
    Io(#[from] std::io::Error),
    /// The kernel refused: errno, and its extended-ack reason if it gave one.
    #[error("{}{}", std::io::Error::from_raw_os_error(*.errno), .reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default())]
    Kernel { errno: i32, reason: Option<String> },
    /// The answer did not parse or said nothing about what was asked.
    #[error("unexpected netlink answer: {0}")]
    Malformed(String),
}

impl NlError {
    /// The kernel's errno (positive), if it refused.
    pub fn errno(&self) -> Option<i32> {
        match self {
            NlError::Kernel { errno, .. } => Some(*errno),
            _ => None,
        }
    }

    /// The engine's error, with what we were doing; a refusal for lack of
    /// privilege says so.
    pub fn into_error(self, context: String) -> crate::Error {
        match self {
            NlError::Io(e) => crate::Error::io(context, e),
            NlError::Kernel { errno, .. }
                if errno == nix::errno::Errno::EPERM as i32
                    || errno == nix::errno::Errno::EACCES as i32 =>
            {
                crate::Error::Privilege(format!("{context}: {self}: run as root (CAP_NET_ADMIN)"))
            }
            e => crate::Error::Invalid(format!("{context}: {e}")),
        }
    }
}

/// One answer datagram, decoded.
#[derive(Debug, Default)]
pub struct Decoded {
    pub messages: Vec<RouteNetlinkMessage>,
    /// The answer is complete: NLMSG_DONE, an ACK, or a single reply.
    pub done: bool,
}

/// The serialized request: `flags` beyond NLM_F_REQUEST (NLM_F_DUMP,
/// NLM_F_ACK, NLM_F_CREATE).
pub fn encode(msg: RouteNetlinkMessage, flags: u16) -> Vec<u8> {
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | flags;
    header.sequence_number = 1;
    let mut m = NetlinkMessage::new(header, NetlinkPayload::from(msg));
    m.finalize();
    let mut buf = vec![0; m.header.length as usize];
    m.serialize(&mut buf);
    buf
}

/// The messages of one answer datagram; a refusal (NLMSG_ERROR with an
/// errno) is an error.
pub fn decode(datagram: &[u8]) -> Result<Decoded, NlError> {
    let mut out = Decoded::default();
    let mut rest = datagram;
    while rest.len() >= 16 {
        let m = NetlinkMessage::<RouteNetlinkMessage>::deserialize(rest)
            .map_err(|e| NlError::Malformed(e.to_string()))?;
        let len = (m.header.length as usize + 3) & !3;
        let multi = m.header.flags & NLM_F_MULTIPART != 0;
        match m.payload {
            NetlinkPayload::Done(_) => out.done = true,
            NetlinkPayload::Error(e) => match e.code {
                None => out.done = true,
                Some(c) => {
                    return Err(NlError::Kernel {
                        errno: c.get().abs(),
                        reason: ext_ack_reason(&e.header),
                    })
                }
            },
            NetlinkPayload::InnerMessage(inner) => {
                out.messages.push(inner);
                out.done |= !multi;
            }
            _ => {}
        }
        if len == 0 || len > rest.len() {
            break;
        }
        rest = &rest[len..];
    }
    Ok(out)
}

/// NLMSGERR_ATTR_MSG of an error's payload (after the echoed request
/// header, which NETLINK_CAP_ACK keeps to its 16 bytes).
fn ext_ack_reason(after_code: &[u8]) -> Option<String> {
    const NLMSGERR_ATTR_MSG: u16 = 1;
    NlasIterator::new(after_code.get(16..)?)
        .filter_map(|n| n.ok())
        .find(|n| n.kind() == NLMSGERR_ATTR_MSG)
        .map(|n| {
            String::from_utf8_lossy(n.value())
                .trim_end_matches('\0')
                .to_string()
        })
}

/// Ask the kernel `msg` (with extra header `flags`) and collect its answer.
pub fn ask(msg: RouteNetlinkMessage, flags: u16) -> Result<Vec<RouteNetlinkMessage>, NlError> {
    let mut s = Socket::new(NETLINK_ROUTE)?;
    s.bind_auto()?;
    s.connect(&SocketAddr::new(0, 0))?;
    // Best effort: short errors with the kernel's reason attached.
    let _ = s.set_cap_ack(true);
    let _ = s.set_ext_ack(true);
    nix::sys::socket::setsockopt(
        &s,
        nix::sys::socket::sockopt::ReceiveTimeout,
        &nix::sys::time::TimeVal::new(0, 200_000),
    )
    .map_err(std::io::Error::from)?;
    s.send(&encode(msg, flags), 0)?;
    let deadline = Instant::now() + REPLY_TIMEOUT;
    let mut messages = Vec::new();
    for _ in 0..MAX_DATAGRAMS {
        let datagram = match s.recv_from_full() {
            Ok((d, _)) => d,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                continue
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                return Err(NlError::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no answer from the kernel within {REPLY_TIMEOUT:?}"),
                )))
            }
            Err(e) => return Err(e.into()),
        };
        let d = decode(&datagram)?;
        messages.extend(d.messages);
        if d.done {
            return Ok(messages);
        }
    }
    Err(NlError::Malformed(format!(
        "answer longer than {MAX_DATAGRAMS} datagrams"
    )))
}

#[cfg(test)]
pub(crate) mod recorded {
    use super::{decode, RouteNetlinkMessage};

    /// Hex (whitespace and `#` lines ignored) to bytes, for replies recorded
    /// as text.
    pub fn unhex(s: &str) -> Vec<u8> {
        let h: Vec<u8> = s
            .lines()
            .filter(|l| !l.starts_with('#'))
            .flat_map(|l| l.bytes())
            .filter(|b| b.is_ascii_hexdigit())
            .collect();
        h.chunks(2)
            .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
            .collect()
    }

    /// The messages of a recorded answer (one datagram per file).
    pub fn replies(hex: &str) -> Vec<RouteNetlinkMessage> {
        let d = decode(&unhex(hex)).expect("a recorded answer decodes");
        assert!(d.done, "a recorded answer is complete");
        d.messages
    }
}

#[cfg(test)]
mod tests {
    use super::recorded::unhex;
    use super::*;

    #[test]
    fn refusals_carry_errno_and_reason() {
        // `ip route get 2001:2:0:9::1` with no route there.
        let e = decode(&unhex(include_str!("testdata/route_v6_unreachable.hex"))).unwrap_err();
        assert_eq!(e.errno(), Some(libc_enetunreach()), "{e}");
        // An ACK ends an answer without messages.
        let ack = [
            36, 0, 0, 0, 2, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 16, 0, 0, 0, 19, 0, 5, 0,
            1, 0, 0, 0, 0, 0, 0, 0,
        ];
        let d = decode(&ack).unwrap();
        assert!(d.done && d.messages.is_empty());
    }

    fn libc_enetunreach() -> i32 {
        nix::errno::Errno::ENETUNREACH as i32
    }

    #[test]
    fn kernel_reasons_from_extended_acks() {
        // NLMSGERR_ATTR_MSG after a 16-byte echoed header.
        let mut p = vec![0u8; 16];
        p.extend_from_slice(&[8 + 4, 0, 1, 0]);
        p.extend_from_slice(b"busy\0\0\0\0");
        assert_eq!(ext_ack_reason(&p).as_deref(), Some("busy"));
        assert_eq!(ext_ack_reason(&[0; 16]), None);
        assert_eq!(ext_ack_reason(&[0; 3]), None);
    }

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        assert!(decode(&[0xff; 40]).is_err());
        assert!(decode(&[]).unwrap().messages.is_empty());
    }
}
