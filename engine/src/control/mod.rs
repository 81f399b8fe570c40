//! Controller <-> agent control plane.
//!
//! `frame` is the wire format (preamble, length-prefixed JSON, size cap),
//! `messages` the vocabulary, `auth` the pre-shared-key handshake; `agent`
//! and `controller` drive them over real sockets.

pub mod agent;
pub mod auth;
mod began;
pub mod clock;
pub mod controller;
pub mod frame;
pub mod iperf3;
pub mod messages;
pub mod sender_tcp;
pub mod start;
pub mod thirdparty;
pub mod token;

/// Default control port of `wirespeed agent`.
pub const DEFAULT_PORT: u16 = 5290;

use crate::deadline::Deadline;
use crate::{Error, Result};
use messages::Msg;
use std::io;
use std::net::TcpStream;
use std::time::Duration;

/// The IPv4 address of `ip`, or why the AF_XDP paths (IPv4 only in this
/// build) cannot use it: `what` names the path and the fix.
pub fn ipv4_only(ip: std::net::IpAddr, what: &str) -> Result<std::net::Ipv4Addr> {
    match ip {
        std::net::IpAddr::V4(a) => Ok(a),
        std::net::IpAddr::V6(_) => Err(Error::Invalid(format!(
            "{what} runs over IPv4 only in this build: use an IPv4 address for the agent"
        ))),
    }
}

/// The local address of the control connection.
pub fn local_ip(conn: &TcpStream) -> Result<std::net::IpAddr> {
    conn.local_addr()
        .map(|a| a.ip())
        .map_err(|e| Error::io("reading local address", e))
}

/// How long either side waits for a control message it expects.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// Wait up to `wait` for a control message without losing a partial one:
/// peek first, then read the whole frame. `Ok(None)` means nothing came;
/// a closed connection is an error.
pub fn poll_msg(conn: &mut TcpStream, wait: Duration, cap: usize) -> Result<Option<Msg>> {
    conn.set_read_timeout(Some(wait))
        .map_err(|e| Error::io("setting a control read timeout", e))?;
    let mut b = [0u8; 1];
    match conn.peek(&mut b) {
        Ok(0) => Err(Error::PeerLost(
            "the peer closed the control connection".into(),
        )),
        Ok(_) => frame::read_msg_capped(&mut Deadline::new(&*conn, REPLY_TIMEOUT), cap).map(Some),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(Error::PeerLost(format!("control connection: {e}"))),
    }
}

/// Read the next message, which must arrive whole within [`REPLY_TIMEOUT`].
pub fn expect_msg(conn: &mut TcpStream) -> Result<Msg> {
    frame::read_msg(&mut Deadline::new(&*conn, REPLY_TIMEOUT))
}
