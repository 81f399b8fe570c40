//! Targeted behaviour tests and the simulated-network properties.

use super::sim::{LinkConfig, Outcome, Pair};
use super::*;

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
}

#[test]
fn lossless_transfer_completes() {
    let data = pattern(300_000);
    let mut p = Pair::symmetric(LinkConfig::default(), data.clone(), 1);
    let o = p.run(1_000_000, 600 * SEC);
    assert_eq!(
        o,
        Outcome::Completed,
        "client {:?} server {:?}",
        p.client.state(),
        p.server.as_ref().map(|s| s.state())
    );
    assert!(p.received == data);
    assert_eq!(p.bad_frames, 0);
}

#[test]
fn debug_print() {
    let data = pattern(300_000);
    let mut p = Pair::symmetric(
        LinkConfig {
            loss: 0.05,
            jitter: 2000,
            duplicate: 0.02,
            ..LinkConfig::default()
        },
        data.clone(),
        7,
    );
    let o = p.run(1_000_000, 600 * SEC);
    eprintln!(
        "{o:?} now {} steps {} c {:?} s {:?}",
        p.now,
        p.steps,
        p.client.stats(),
        p.server.as_ref().map(|s| s.stats())
    );
    eprintln!("{:?}", p.link_stats());
    assert_eq!(o, Outcome::Completed);
    assert!(p.received == data);
}
