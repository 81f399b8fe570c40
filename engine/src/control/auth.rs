//! Pre-shared-key challenge-response, in both directions.
//!
//! The agent sends a random nonce; the controller answers with its own
//! nonce and HMAC-SHA256(key, "controller" | agent nonce | controller nonce);
//! the agent checks it in constant time and proves itself the same way with
//! the label "agent". The key never crosses the wire, and a replayed proof
//! fails because the agent's nonce is fresh each time.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Length of each nonce in bytes.
pub const NONCE_LEN: usize = 32;

/// Which side a proof comes from; the label keeps one side's proof from
/// being reflected back as the other's.
#[derive(Clone, Copy, Debug)]
pub enum Role {
    Controller,
    Agent,
}

impl Role {
    fn label(self) -> &'static [u8] {
        match self {
            Role::Controller => b"wirespeed-v1 controller",
            Role::Agent => b"wirespeed-v1 agent",
        }
    }
}

fn mac(key: &[u8], role: Role, agent_nonce: &[u8], controller_nonce: &[u8]) -> HmacSha256 {
    let mut m = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    m.update(role.label());
    m.update(agent_nonce);
    m.update(controller_nonce);
    m
}

/// Compute a proof as hex.
pub fn prove(key: &[u8], role: Role, agent_nonce: &[u8], controller_nonce: &[u8]) -> String {
    to_hex(
        &mac(key, role, agent_nonce, controller_nonce)
            .finalize()
            .into_bytes(),
    )
}

/// Check a hex proof in constant time.
pub fn verify(
    key: &[u8],
    role: Role,
    agent_nonce: &[u8],
    controller_nonce: &[u8],
    proof_hex: &str,
) -> bool {
    match from_hex(proof_hex) {
        Some(p) => mac(key, role, agent_nonce, controller_nonce)
            .verify_slice(&p)
            .is_ok(),
        None => false,
    }
}

/// A fresh random nonce.
pub fn nonce() -> [u8; NONCE_LEN] {
    let mut n = [0u8; NONCE_LEN];
    getrandom::getrandom(&mut n).expect("the OS random source is available");
    n
}

/// Lower-case hex.
pub fn to_hex(b: &[u8]) -> String {
    use std::fmt::Write;
    b.iter()
        .fold(String::with_capacity(b.len() * 2), |mut s, x| {
            let _ = write!(s, "{x:02x}");
            s
        })
}

/// Parse hex; None for odd length or non-hex digits.
pub fn from_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || s.len() > 1024 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Read a key file: its bytes with surrounding whitespace trimmed; an empty
/// key is refused because HMAC with it proves nothing.
pub fn load_key(path: &std::path::Path) -> crate::Result<Vec<u8>> {
    let raw = std::fs::read(path)
        .map_err(|e| crate::Error::io(format!("reading key file {}", path.display()), e))?;
    let start = raw
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(raw.len());
    let end = raw
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    let key = raw[start..end].to_vec();
    if key.len() < 8 {
        return Err(crate::Error::Invalid(format!(
            "key file {} holds fewer than 8 bytes: use a long random key",
            path.display()
        )));
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proofs_verify_only_with_the_right_key_and_role() {
        let (a, c) = (nonce(), nonce());
        let p = prove(b"secret-key", Role::Controller, &a, &c);
        assert!(verify(b"secret-key", Role::Controller, &a, &c, &p));
        assert!(!verify(b"other-key!", Role::Controller, &a, &c, &p));
        assert!(!verify(b"secret-key", Role::Agent, &a, &c, &p));
        assert!(!verify(b"secret-key", Role::Controller, &nonce(), &c, &p));
        assert!(!verify(b"secret-key", Role::Controller, &a, &c, "zz"));
    }

    #[test]
    fn hex_round_trip() {
        assert_eq!(
            from_hex(&to_hex(&[0, 1, 254, 255])).unwrap(),
            vec![0, 1, 254, 255]
        );
        assert!(from_hex("abc").is_none());
        assert!(from_hex("gg").is_none());
    }
}
