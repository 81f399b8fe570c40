//! `--verify`: each flow's sender and receiver hash every payload byte
//! (SHA-256); a run is only good when, flow by flow, both digests exist and
//! agree. Pure: the controller feeds it the merged flows and adds what it
//! returns to the run's errors.

use super::model::FlowPair;
use crate::spec::Direction;

/// One error per flow whose digests are missing or differ, naming the flow
/// and the end; empty when every flow checks out.
pub fn digest_errors(flows: &[FlowPair]) -> Vec<String> {
    flows.iter().filter_map(check).collect()
}

/// The text summary's line for a `--verify` run.
pub fn summary_line(flows: &[FlowPair]) -> String {
    let good = flows
        .iter()
        .filter(|f| f.sender.is_some() && f.receiver.is_some() && check(f).is_none())
        .count();
    format!(
        "verify: {good} of {} flows hashed alike at both ends (SHA-256)",
        flows.len()
    )
}

fn check(f: &FlowPair) -> Option<String> {
    // The controller sends in a send flow, the agent in a receive flow.
    let (sender_end, receiver_end) = match f.direction {
        Direction::Receive => ("remote", "local"),
        _ => ("local", "remote"),
    };
    let name = format!("stream {} ({})", f.stream, f.direction);
    // An end that reported nothing is already an error of its own (the
    // merge names it); there is no digest to compare.
    let (Some(s), Some(r)) = (&f.sender, &f.receiver) else {
        return None;
    };
    let missing = |end: &str, role: &str| {
        format!(
            "{name}: --verify got no SHA-256 from the {end} end ({role}): an agent older than --verify does not hash"
        )
    };
    match (&s.sha256, &r.sha256) {
        (None, _) => Some(missing(sender_end, "sender")),
        (_, None) => Some(missing(receiver_end, "receiver")),
        (Some(a), Some(b)) if a != b => Some(format!(
            "{name}: content differs: the sender ({sender_end}) hashed {} bytes to {a}, the receiver ({receiver_end}) {} bytes to {b}",
            s.throughput.bytes, r.throughput.bytes
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::model::{FlowResult, Role, SockBufs, Throughput};

    fn end(role: Role, direction: Direction, sha: Option<&str>) -> FlowResult {
        FlowResult {
            stream: 1,
            direction,
            role,
            throughput: Throughput::new(1000, 1.0),
            sockbuf: SockBufs::default(),
            tcp: None,
            error: None,
            raw: None,
            rr: None,
            sha256: sha.map(String::from),
        }
    }

    fn pair(direction: Direction, s: Option<&str>, r: Option<&str>) -> FlowPair {
        FlowPair {
            stream: 1,
            direction,
            sender: Some(end(Role::Sender, direction, s)),
            receiver: Some(end(Role::Receiver, direction, r)),
        }
    }

    #[test]
    fn equal_digests_pass() {
        let flows = [
            pair(Direction::Send, Some("ab"), Some("ab")),
            pair(Direction::Receive, Some("cd"), Some("cd")),
        ];
        assert!(digest_errors(&flows).is_empty());
        assert_eq!(
            summary_line(&flows),
            "verify: 2 of 2 flows hashed alike at both ends (SHA-256)"
        );
    }

    #[test]
    fn a_mismatch_fails_naming_the_flow() {
        let e = digest_errors(&[pair(Direction::Send, Some("ab"), Some("ac"))]);
        assert_eq!(e.len(), 1);
        assert!(
            e[0].starts_with("stream 1 (send): content differs")
                && e[0].contains("sender (local)")
                && e[0].contains("receiver (remote)")
                && e[0].contains("ab")
                && e[0].contains("ac"),
            "{}",
            e[0]
        );
    }

    #[test]
    fn a_missing_digest_fails_naming_the_end() {
        let e = digest_errors(&[
            pair(Direction::Receive, None, Some("ab")),
            pair(Direction::Send, Some("ab"), None),
        ]);
        assert_eq!(e.len(), 2);
        assert!(
            e[0].starts_with("stream 1 (receive)") && e[0].contains("remote end (sender)"),
            "{}",
            e[0]
        );
        assert!(
            e[1].starts_with("stream 1 (send)") && e[1].contains("remote end (receiver)"),
            "{}",
            e[1]
        );
    }
}
