//! Control-connection framing.
//!
//! Each side first sends a fixed preamble, `WIRESPD\0` and a big-endian u16
//! protocol version, and reads the other's before anything else. Because the
//! preamble never changes shape, two builds of any versions can always tell
//! each other apart and say so, instead of misparsing (netperf's "unknown
//! test number"). After it, messages are a big-endian u32 length and that
//! many bytes of JSON, capped at [`MAX_FRAME`].

use super::messages::Msg;
use crate::{Error, Result};
use std::io::{self, Read, Write};

/// Magic bytes that open every control connection.
pub const MAGIC: [u8; 8] = *b"WIRESPD\0";
/// Version of the control protocol spoken by this build.
pub const PROTOCOL_VERSION: u16 = 3;
/// Largest message an agent accepts from a controller.
pub const MAX_FRAME: usize = 64 * 1024;
/// Largest message a controller accepts from an agent: a result with many
/// flows, cores and interrupt lines is far bigger than any request.
pub const MAX_REPORT: usize = 16 * 1024 * 1024;

/// Send our preamble.
pub fn write_preamble(w: &mut impl Write, version: u16) -> Result<()> {
    let mut b = [0u8; 10];
    b[..8].copy_from_slice(&MAGIC);
    b[8..].copy_from_slice(&version.to_be_bytes());
    w.write_all(&b)
        .map_err(|e| lost("sending the preamble", e))?;
    w.flush().map_err(|e| lost("sending the preamble", e))
}

/// Read the peer's preamble and return its protocol version.
pub fn read_preamble(r: &mut impl Read) -> Result<u16> {
    let mut b = [0u8; 10];
    read_full(r, &mut b, "preamble")?;
    if b[..8] != MAGIC {
        return Err(Error::Protocol(format!(
            "peer is not a wirespeed endpoint (first bytes {:02x?})",
            &b[..8]
        )));
    }
    Ok(u16::from_be_bytes([b[8], b[9]]))
}

/// The check both sides make on the other's version, phrased for the user.
pub fn check_version(ours: u16, theirs: u16, peer: &str) -> Result<()> {
    if ours == theirs {
        Ok(())
    } else {
        Err(Error::Version(format!(
            "{peer} speaks control protocol v{theirs}, this build speaks v{ours}: run the same wirespeed release on both sides"
        )))
    }
}

/// Encode one message into a frame.
pub fn encode(msg: &Msg) -> Result<Vec<u8>> {
    let body = serde_json::to_vec(msg).map_err(|e| Error::Protocol(e.to_string()))?;
    if body.len() > MAX_REPORT {
        return Err(Error::Protocol(format!(
            "message of {} bytes exceeds the {MAX_REPORT}-byte cap",
            body.len()
        )));
    }
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// Write one message.
pub fn write_msg(w: &mut impl Write, msg: &Msg) -> Result<()> {
    let frame = encode(msg)?;
    w.write_all(&frame)
        .and_then(|_| w.flush())
        .map_err(|e| lost("sending a control message", e))
}

/// Read one message of at most [`MAX_FRAME`] bytes.
pub fn read_msg(r: &mut impl Read) -> Result<Msg> {
    read_msg_capped(r, MAX_FRAME)
}

/// Read one message; a length over `cap` is refused before reading it.
pub fn read_msg_capped(r: &mut impl Read, cap: usize) -> Result<Msg> {
    let mut len = [0u8; 4];
    read_full(r, &mut len, "message length")?;
    let len = u32::from_be_bytes(len) as usize;
    if len == 0 || len > cap {
        return Err(Error::Protocol(format!(
            "message length {len} is outside 1..={cap} bytes"
        )));
    }
    let mut body = vec![0u8; len];
    read_full(r, &mut body, "message body")?;
    decode(&body)
}

/// Decode a message body.
pub fn decode(body: &[u8]) -> Result<Msg> {
    serde_json::from_slice(body).map_err(|e| Error::Protocol(format!("undecodable message: {e}")))
}

/// `read_exact` that tells a clean close, a truncation and a timeout apart.
fn read_full(r: &mut impl Read, buf: &mut [u8], what: &str) -> Result<()> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) if got == 0 => {
                return Err(Error::PeerLost(format!(
                    "peer closed the control connection (waiting for {what})"
                )))
            }
            Ok(0) => {
                return Err(Error::Protocol(format!(
                    "truncated {what}: peer closed after {got} of {} bytes",
                    buf.len()
                )))
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(lost(&format!("reading {what}"), e)),
        }
    }
    Ok(())
}

fn lost(what: &str, e: io::Error) -> Error {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
            Error::PeerLost(format!("timed out {what}: the peer stopped responding"))
        }
        _ => Error::PeerLost(format!("{what}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::messages::Msg;

    #[test]
    fn round_trip() {
        let m = Msg::Abort { reason: "x".into() };
        let f = encode(&m).unwrap();
        let back = read_msg(&mut &f[..]).unwrap();
        assert!(matches!(back, Msg::Abort { reason } if reason == "x"));
    }

    #[test]
    fn preamble_round_trip_and_garbage() {
        let mut v = Vec::new();
        write_preamble(&mut v, 7).unwrap();
        assert_eq!(read_preamble(&mut &v[..]).unwrap(), 7);
        let e = read_preamble(&mut &b"GET / HTTP/1.1\r\n"[..]).unwrap_err();
        assert!(e.to_string().contains("not a wirespeed endpoint"), "{e}");
        assert!(check_version(1, 2, "agent")
            .unwrap_err()
            .to_string()
            .contains("v2"));
    }

    #[test]
    fn oversized_is_refused_before_reading() {
        let mut f = ((MAX_FRAME + 1) as u32).to_be_bytes().to_vec();
        f.extend_from_slice(b"{}");
        let e = read_msg(&mut &f[..]).unwrap_err();
        assert!(e.to_string().contains("outside"), "{e}");
    }

    #[test]
    fn truncated_and_closed_are_distinct() {
        let f = encode(&Msg::Start { at_us: None }).unwrap();
        let e = read_msg(&mut &f[..f.len() - 1]).unwrap_err();
        assert!(e.to_string().contains("truncated"), "{e}");
        let e = read_msg(&mut &b""[..]).unwrap_err();
        assert!(matches!(e, Error::PeerLost(_)), "{e}");
    }

    #[test]
    fn garbage_body_is_an_error() {
        let mut f = 5u32.to_be_bytes().to_vec();
        f.extend_from_slice(b"hello");
        assert!(matches!(read_msg(&mut &f[..]), Err(Error::Protocol(_))));
    }
}
