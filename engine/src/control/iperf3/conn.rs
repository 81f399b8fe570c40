//! Reads and writes on an iperf3 control connection. Every read has a
//! deadline and every document a size cap, so a peer that stalls or lies
//! about a length costs a bounded wait, never a hung thread.

use super::wire::{self, Cookie, State, COOKIE_LEN, MAX_JSON};
use crate::deadline::Deadline;
use crate::{Error, Result};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

fn lost(what: &str, e: std::io::Error) -> Error {
    Error::PeerLost(format!("iperf3 control connection, {what}: {e}"))
}

/// Read exactly `buf.len()` bytes within `within`.
fn read_all(conn: &TcpStream, buf: &mut [u8], within: Duration, what: &str) -> Result<()> {
    Deadline::new(conn, within)
        .read_exact(buf)
        .map_err(|e| lost(what, e))
}

pub fn write_all(conn: &TcpStream, b: &[u8], what: &str) -> Result<()> {
    let mut c = conn;
    c.write_all(b).map_err(|e| lost(what, e))
}

/// The next state byte. A byte that names no state is a protocol error.
pub fn read_state(conn: &TcpStream, within: Duration) -> Result<State> {
    let mut b = [0u8; 1];
    read_all(conn, &mut b, within, "waiting for a state")?;
    State::from_byte(b[0]).ok_or_else(|| {
        Error::Protocol(format!(
            "iperf3 peer sent state byte {}, which names no state",
            b[0] as i8
        ))
    })
}

/// A state byte if one arrives within `wait`; None otherwise. A closed
/// connection is an error.
pub fn poll_state(conn: &TcpStream, wait: Duration) -> Result<Option<State>> {
    conn.set_read_timeout(Some(wait.max(Duration::from_millis(1))))
        .map_err(|e| lost("setting a timeout", e))?;
    let mut b = [0u8; 1];
    match conn.peek(&mut b) {
        Ok(0) => Err(Error::PeerLost(
            "the iperf3 peer closed the control connection".into(),
        )),
        Ok(_) => read_state(conn, wait.max(Duration::from_secs(1))).map(Some),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock
                    | std::io::ErrorKind::TimedOut
                    | std::io::ErrorKind::Interrupted
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(lost("waiting for a state", e)),
    }
}

pub fn write_state(conn: &TcpStream, s: State) -> Result<()> {
    write_all(conn, &[s.byte()], "sending a state")
}

/// A SERVER_ERROR state, then iperf3's error code and errno (none).
pub fn write_error(conn: &TcpStream, code: i32) -> Result<()> {
    let mut b = vec![State::ServerError.byte()];
    b.extend_from_slice(&code.to_be_bytes());
    b.extend_from_slice(&0i32.to_be_bytes());
    write_all(conn, &b, "sending an error")
}

/// After a SERVER_ERROR state: the error code and errno that follow.
pub fn read_error(conn: &TcpStream, within: Duration) -> Result<(i32, i32)> {
    let mut b = [0u8; 8];
    read_all(conn, &mut b, within, "reading an error code")?;
    Ok((
        i32::from_be_bytes(b[..4].try_into().expect("4")),
        i32::from_be_bytes(b[4..].try_into().expect("4")),
    ))
}

pub fn read_cookie(conn: &TcpStream, within: Duration) -> Result<Cookie> {
    let mut c = [0u8; COOKIE_LEN];
    read_all(conn, &mut c, within, "reading the cookie")?;
    if !wire::cookie_ok(&c) {
        return Err(Error::Protocol(
            "the iperf3 cookie is not a NUL-terminated string".into(),
        ));
    }
    Ok(c)
}

/// A length-prefixed JSON document, at most [`MAX_JSON`] bytes, whole
/// within `within`.
pub fn read_json<T: serde::de::DeserializeOwned>(conn: &TcpStream, within: Duration) -> Result<T> {
    let mut r = Deadline::new(conn, within);
    let mut p = [0u8; 4];
    r.read_exact(&mut p)
        .map_err(|e| lost("reading a JSON length", e))?;
    let n = wire::json_len(p, MAX_JSON).map_err(Error::Protocol)?;
    let mut doc = vec![0u8; n];
    r.read_exact(&mut doc)
        .map_err(|e| lost("reading a JSON document", e))?;
    serde_json::from_slice(&doc).map_err(|e| Error::Protocol(format!("iperf3 JSON: {e}")))
}

pub fn write_json<T: serde::Serialize>(conn: &TcpStream, doc: &T) -> Result<()> {
    let body =
        serde_json::to_vec(doc).map_err(|e| Error::Protocol(format!("encoding JSON: {e}")))?;
    write_all(conn, &wire::frame_json(&body), "sending a JSON document")
}
