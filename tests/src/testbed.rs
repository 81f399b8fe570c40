//! The engine's netns testbed (`wirespeed::testbed`), with the test-side
//! conveniences: a missing root is a failure with the reason, and any
//! setup error panics with the command that failed.

pub use wirespeed::testbed::{Link, Testbed};

/// `n` hosts and a link per pair, or a panic saying why not.
pub fn testbed(n: usize, links: &[(usize, usize)]) -> Testbed {
    crate::require_root();
    Testbed::new("wst", n, links).unwrap_or_else(|e| panic!("building the testbed: {e}"))
}

/// Two hosts and one link with `queues` queues on each end.
pub fn pair_with_queues(queues: u16) -> Testbed {
    crate::require_root();
    Testbed::with_queues("wst", 2, &[(0, 1)], queues)
        .unwrap_or_else(|e| panic!("building the testbed: {e}"))
}

/// Two hosts and one link: the common case.
pub fn pair() -> Testbed {
    testbed(2, &[(0, 1)])
}

/// Three pings from host `from` to `to`, bounded; the output says how it went.
pub fn ping(tb: &Testbed, from: usize, to: std::net::IpAddr) -> crate::process::Output {
    let mut c = std::process::Command::new("ip");
    c.args([
        "netns",
        "exec",
        tb.ns(from),
        "ping",
        "-c",
        "3",
        "-i",
        "0.2",
        "-W",
        "2",
    ])
    .arg(to.to_string());
    crate::process::run(c, std::time::Duration::from_secs(20))
}
