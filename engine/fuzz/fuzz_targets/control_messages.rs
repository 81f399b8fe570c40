//! The agent's main untrusted input: what a controller sends on the
//! control connection. The first byte picks how the rest is used:
//!
//! * 0: a raw connection: the preamble, then length-prefixed frames read
//!   with the agent's cap until one fails (the framing);
//! * 1..: one message body of the type it names, the rest spliced in as
//!   its JSON fields, so every message type's fields are reached without
//!   the fuzzer first having to guess the type names.
//!
//! Each decoded message is checked as the agent would (a test spec's
//! validation, a nonce's hex, a flow header) and must re-encode and
//! decode to a message of the same type. No panic, no huge allocation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wirespeed::control::{auth, frame, messages::Msg};
use wirespeed::datapath::socket::{FlowHeader, HEADER_LEN};

/// Every message type's tag, as `Msg` serializes it.
const TYPES: [&str; 13] = [
    "challenge",
    "hello",
    "welcome",
    "test",
    "accepted",
    "ready",
    "ping",
    "pong",
    "start",
    "abort",
    "sender_tcp",
    "result",
    "error",
];

/// What the agent does with a message it decoded.
fn agent_checks(m: &Msg) {
    match m {
        Msg::Test(spec) => {
            let _ = spec.validate();
            let _ = spec.flows();
            let _ = spec.tcplite_buffer();
        }
        Msg::Hello { nonce, proof, .. } => {
            let _ = auth::from_hex(nonce);
            if let Some(p) = proof {
                let _ = auth::from_hex(p);
            }
        }
        Msg::Start { at_us: Some(at) } => {
            let _ = wirespeed::control::clock::instant_of(*at);
        }
        _ => {}
    }
    // Re-encoding what was decoded gives the same type back.
    let again = frame::encode(m).expect("a decoded message encodes");
    let back = frame::read_msg_capped(&mut again.as_slice(), usize::MAX).expect("and decodes");
    assert_eq!(back.name(), m.name());
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode == 0 {
        let mut r = rest;
        if frame::read_preamble(&mut r).is_err() {
            return;
        }
        // A data connection's header, as the agent reads it too.
        if let Some(h) = rest.get(..HEADER_LEN) {
            let _ = FlowHeader::decode(h.try_into().expect("HEADER_LEN bytes"));
        }
        for _ in 0..64 {
            match frame::read_msg_capped(&mut r, frame::MAX_FRAME) {
                Ok(m) => agent_checks(&m),
                Err(_) => break,
            }
        }
        return;
    }
    let kind = TYPES[usize::from(mode - 1) % TYPES.len()];
    let body = format!(
        "{{\"type\":\"{kind}\",{}",
        String::from_utf8_lossy(rest)
    );
    if let Ok(m) = frame::decode(body.as_bytes()) {
        agent_checks(&m);
    }
});
