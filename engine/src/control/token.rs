//! One-time tokens for third-party pairs (agent to agent, the controller
//! only orchestrating).
//!
//! The controller draws a random token per pair and hands it to both
//! agents. The server agent keeps it in its [`TokenBook`]: bound to the
//! client's address and to the data address the server listens on, good
//! until it expires, and never accepted twice, so an order replayed from a
//! recording or a second controller cannot reuse it. Before sending any
//! data the client asks the server agent to vouch for the data address:
//! the server proves it holds the token (HMAC over a fresh nonce), so an
//! order that points the client at a third host is refused.

use super::auth;
use crate::{Error, Result};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// Bytes in a token; the same width as a data connection's cookie, which
/// it becomes on the server.
pub const TOKEN_LEN: usize = 16;

/// Spent tokens remembered for replay refusal; older ones have long expired.
const REMEMBERED: usize = 4096;

/// A pair's one-time token.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Token(pub [u8; TOKEN_LEN]);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never in logs: the first bytes of its hash are enough to match.
        write!(f, "Token({})", &auth::to_hex(&self.fingerprint())[..8])
    }
}

impl Token {
    /// A fresh random token.
    pub fn fresh() -> Token {
        Token(
            auth::nonce()[..TOKEN_LEN]
                .try_into()
                .expect("16 of 32 bytes"),
        )
    }

    pub fn hex(&self) -> String {
        auth::to_hex(&self.0)
    }

    /// Parse the hex form; anything else is a protocol error.
    pub fn parse(s: &str) -> Result<Token> {
        auth::from_hex(s)
            .and_then(|b| b.try_into().ok())
            .map(Token)
            .ok_or_else(|| Error::Protocol("a pair token must be 32 hex digits".into()))
    }

    fn fingerprint(&self) -> [u8; 32] {
        use sha2::Digest;
        Sha256::digest(self.0).into()
    }

    fn mac(&self, nonce: &[u8], data: SocketAddr) -> Hmac<Sha256> {
        let mut m = Hmac::<Sha256>::new_from_slice(&self.0).expect("any key length");
        m.update(b"wirespeed-v3 pair server");
        m.update(nonce);
        m.update(data.to_string().as_bytes());
        m
    }

    /// The server's proof that it holds this token and listens on `data`.
    pub fn vouch(&self, nonce: &[u8], data: SocketAddr) -> String {
        auth::to_hex(&self.mac(nonce, data).finalize().into_bytes())
    }

    /// Check a server's proof in constant time.
    pub fn verify(&self, nonce: &[u8], data: SocketAddr, proof: &str) -> bool {
        auth::from_hex(proof).is_some_and(|p| self.mac(nonce, data).verify_slice(&p).is_ok())
    }
}

/// A token granted to this agent as a pair's server.
#[derive(Clone, Debug)]
struct Grant {
    token: Token,
    /// Where the server listens for this pair's data; set once it does.
    data: Option<SocketAddr>,
    expires: Instant,
}

/// The server agent's tokens: live grants and the fingerprints of spent ones.
#[derive(Debug, Default)]
pub struct TokenBook {
    live: Vec<Grant>,
    spent: VecDeque<[u8; 32]>,
}

impl TokenBook {
    /// Take a token for a new test, valid for `ttl` from `now`; a token
    /// seen before (live or spent) is refused.
    pub fn grant(&mut self, token: Token, now: Instant, ttl: Duration) -> Result<()> {
        self.live.retain(|g| g.expires > now);
        let fp = token.fingerprint();
        if self.spent.contains(&fp) || self.live.iter().any(|g| g.token == token) {
            return Err(Error::Refused(
                "this pair token was already used: a token works once (replayed order?)".into(),
            ));
        }
        if self.spent.len() >= REMEMBERED {
            self.spent.pop_front();
        }
        self.spent.push_back(fp);
        self.live.push(Grant {
            token,
            data: None,
            expires: now + ttl,
        });
        Ok(())
    }

    /// Record where the server listens for `token`'s data.
    pub fn listening(&mut self, token: Token, data: SocketAddr) {
        if let Some(g) = self.live.iter_mut().find(|g| g.token == token) {
            g.data = Some(data);
        }
    }

    /// The proof for a client asking about `data`, if a live grant listens there.
    pub fn vouch(&self, data: SocketAddr, nonce: &[u8], now: Instant) -> Result<String> {
        self.live
            .iter()
            .find(|g| g.data == Some(data) && g.expires > now)
            .map(|g| g.token.vouch(nonce, data))
            .ok_or_else(|| {
                Error::Refused(format!(
                    "this agent holds no prepared pair test listening on {data}, or its token expired"
                ))
            })
    }

    /// The test ended: its token is spent for good.
    pub fn retire(&mut self, token: Token) {
        self.live.retain(|g| g.token != token);
    }
}

/// Whether `ip` is one this agent would use as a data address: not
/// unspecified, multicast or broadcast. The route check is the caller's.
pub fn plausible_peer(ip: IpAddr) -> bool {
    !(ip.is_unspecified() || ip.is_multicast() || matches!(ip, IpAddr::V4(a) if a.is_broadcast()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> SocketAddr {
        "198.18.5.2:4000".parse().unwrap()
    }

    #[test]
    fn a_token_works_once() {
        let mut b = TokenBook::default();
        let t = Token::fresh();
        let now = Instant::now();
        b.grant(t, now, Duration::from_secs(10)).unwrap();
        assert!(b.grant(t, now, Duration::from_secs(10)).is_err());
        b.retire(t);
        let e = b.grant(t, now, Duration::from_secs(10)).unwrap_err();
        assert!(e.to_string().contains("already used"), "{e}");
    }

    #[test]
    fn vouching_needs_a_live_grant_on_that_address() {
        let mut b = TokenBook::default();
        let t = Token::fresh();
        let now = Instant::now();
        b.grant(t, now, Duration::from_secs(10)).unwrap();
        let nonce = auth::nonce();
        // Not listening yet: nothing to vouch for.
        assert!(b.vouch(data(), &nonce, now).is_err());
        b.listening(t, data());
        let p = b.vouch(data(), &nonce, now).unwrap();
        assert!(t.verify(&nonce, data(), &p));
        // Another address, another nonce, another token: no.
        assert!(!t.verify(&nonce, "198.18.9.9:4000".parse().unwrap(), &p));
        assert!(!t.verify(&auth::nonce(), data(), &p));
        assert!(!Token::fresh().verify(&nonce, data(), &p));
        assert!(b
            .vouch("198.18.9.9:4000".parse().unwrap(), &nonce, now)
            .is_err());
        // Expired.
        assert!(b
            .vouch(data(), &nonce, now + Duration::from_secs(11))
            .is_err());
        b.retire(t);
        assert!(b.vouch(data(), &nonce, now).is_err());
    }

    #[test]
    fn tokens_parse_only_from_32_hex_digits() {
        let t = Token::fresh();
        assert!(Token::parse(&t.hex()).unwrap() == t);
        assert!(Token::parse("abcd").is_err());
        assert!(Token::parse(&"zz".repeat(16)).is_err());
        assert!(!format!("{t:?}").contains(&t.hex()));
    }

    #[test]
    fn peers_must_be_unicast() {
        assert!(plausible_peer("198.18.0.1".parse().unwrap()));
        assert!(!plausible_peer("0.0.0.0".parse().unwrap()));
        assert!(!plausible_peer("255.255.255.255".parse().unwrap()));
        assert!(!plausible_peer("ff02::1".parse().unwrap()));
    }
}
