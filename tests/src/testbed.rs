//! The engine's netns testbed (`wirespeed::testbed`), with the test-side
//! conveniences: a missing root is a failure with the reason, and any
//! setup error panics with the command that failed. Tests may run `ip`,
//! `tc` and `nft` (the product does not): [`sh`] and [`ingress_loss`].

use std::process::{Command, Stdio};
pub use wirespeed::testbed::{Link, Testbed};

/// Run a command; its stderr becomes the error.
pub fn sh(cmd: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(cmd)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running {cmd} (is iproute2/nftables installed?): {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Drop `percent` of the packets arriving on one side of a link, at the
/// device's ingress (nftables netdev hook, `numgen random`): the loss a
/// bad wire makes, seen by the receiving stack. (netem is the usual tool,
/// but kernels built without CONFIG_NET_SCH_NETEM lack it.)
pub fn ingress_loss(tb: &Testbed, link: usize, side: usize, percent: f64) -> Result<(), String> {
    let l = &tb.links[link];
    let ns = tb.ns(l.hosts[side]);
    let per_10k = (percent * 100.0).round() as u32;
    let chain = format!(
        "{{ type filter hook ingress device \"{}\" priority 0; }}",
        l.ifname[side]
    );
    let rule = format!("numgen random mod 10000 < {per_10k} drop");
    let nft = |args: &[&str]| {
        let mut v = vec!["netns", "exec", ns, "nft", "add"];
        v.extend_from_slice(args);
        sh("ip", &v).map(drop)
    };
    nft(&["table", "netdev", "wst"])?;
    nft(&["chain", "netdev", "wst", "loss", &chain])?;
    nft(&["rule", "netdev", "wst", "loss", &rule])
}

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

/// Fill in TCP checksums in software on one side of link 0: a kernel TCP
/// sender on veth leaves them to an offload that never happens, and an
/// AF_XDP receiver sees them unfilled.
pub fn kernel_checksums(tb: &Testbed, side: usize) {
    let dev = &tb.links[0].ifname[side];
    sh(
        "ip",
        &[
            "netns",
            "exec",
            tb.ns(side),
            "ethtool",
            "-K",
            dev,
            "tx",
            "off",
        ],
    )
    .unwrap_or_else(|e| panic!("ethtool -K {dev} tx off: {e}"));
}
