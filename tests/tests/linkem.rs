//! The link emulator (netem's stand-in here): delay shows in ping's round
//! trip, and kernel TCP gets every byte across a link that loses,
//! duplicates and reorders frames, with the retransmits to show for it.

use std::time::Duration;
use wirespeed_tests::bin;
use wirespeed_tests::linkem::{ImpairedPair, Impairment};
use wirespeed_tests::process::{run, AgentProc};
use wirespeed_tests::testbed::ping;

#[test]
fn delay_shows_in_the_round_trip() {
    let p = ImpairedPair::new(Impairment {
        delay: Duration::from_millis(5),
        ..Default::default()
    });
    let o = ping(&p.tb, 0, "198.18.0.2".parse().unwrap());
    assert!(
        o.status.success(),
        "ping through the emulator: {}",
        o.stdout
    );
    // rtt min/avg/max/mdev = 10.123/...
    let min: f64 = o
        .stdout
        .lines()
        .find_map(|l| l.split(" = ").nth(1))
        .and_then(|v| v.split('/').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no rtt line in {}", o.stdout));
    assert!(
        min >= 10.0,
        "5 ms each way, yet the round trip took {min} ms"
    );
}

#[test]
fn tcp_crosses_loss_duplication_and_reordering() {
    let p = ImpairedPair::new(Impairment {
        delay: Duration::from_millis(1),
        loss: 1.0,
        duplicate: 1.0,
        reorder: 2.0,
        reorder_by: Duration::from_millis(2),
        seed: 42,
    });
    let mut c = p.tb.cmd(1, &bin());
    c.args(["agent", "--listen", "198.18.0.2:5290"]);
    let a = AgentProc::start(c);
    let mut c = p.tb.cmd(0, &bin());
    c.args([
        "run", "--to", &a.addr, "--mode", "socket", "--bytes", "4M", "--json",
    ]);
    let j = run(c, Duration::from_secs(60)).ok().json();
    let end = &j["end"];
    assert_eq!(end["sent"]["bytes"], 4 << 20);
    assert_eq!(end["received"]["bytes"], 4 << 20, "every byte arrives");
    assert!(
        end["directions"][0]["retransmits"].as_u64().unwrap() > 0,
        "1% loss makes the sender retransmit: {end}"
    );
}
