//! A netns testbed: N hosts joined by veth links, addressed from the
//! benchmarking ranges (198.18.0.0/15, RFC 2544; 2001:2::/48, RFC 5180),
//! with optional `tc` qdiscs and ingress loss per link side. Dropping it
//! deletes the namespaces, which deletes their links and qdiscs with them.
//! Used by `wirespeed demo` and by the end-to-end tests. Linux only; root.

use crate::{Error, Result};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Run a command; its stderr becomes the error.
pub fn sh(cmd: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(cmd)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            Error::io(
                format!("running {cmd} (is iproute2/nftables installed?)"),
                e,
            )
        })?;
    if !out.status.success() {
        return Err(Error::Invalid(format!(
            "{cmd} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// One veth link between two hosts; side 0 is `a`, side 1 is `b`.
#[derive(Clone, Debug)]
pub struct Link {
    pub hosts: [usize; 2],
    pub ifname: [String; 2],
    pub v4: [Ipv4Addr; 2],
    pub v6: [Ipv6Addr; 2],
}

/// A set of namespaces and links that exists for the testbed's lifetime.
pub struct Testbed {
    pub hosts: Vec<String>,
    pub links: Vec<Link>,
}

impl Testbed {
    /// `n` hosts named `<prefix>-<pid>-<k>-h<i>` and a link per `(a, b)`;
    /// link k uses 198.18.k.0/24 and 2001:2:0:k::/64, `.1`/`::1` on side a
    /// and `.2`/`::2` on side b.
    pub fn new(prefix: &str, n: usize, links: &[(usize, usize)]) -> Result<Testbed> {
        Testbed::with_queues(prefix, n, links, 1)
    }

    /// As [`Testbed::new`], with `queues` receive and transmit queues on
    /// every veth (for multi-queue AF_XDP workers).
    pub fn with_queues(
        prefix: &str,
        n: usize,
        links: &[(usize, usize)],
        queues: u16,
    ) -> Result<Testbed> {
        if !is_root() {
            return Err(Error::Privilege(
                "a testbed builds network namespaces and needs root: run as root (sudo)".into(),
            ));
        }
        if links.len() > 256 || prefix.len() > 8 {
            return Err(Error::Invalid(
                "at most 256 links and an 8-character prefix".into(),
            ));
        }
        sweep_stale(prefix);
        let id = NEXT.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        // Dropped on an early return below: removes what was made so far.
        let mut tb = Testbed {
            hosts: Vec::new(),
            links: Vec::new(),
        };
        for h in 0..n {
            let name = format!("{prefix}-{pid}-{id}-h{h}");
            sh("ip", &["netns", "add", &name])?;
            tb.hosts.push(name.clone());
            sh("ip", &["-n", &name, "link", "set", "lo", "up"])?;
        }
        for (k, &(a, b)) in links.iter().enumerate() {
            let tag = &prefix[..prefix.len().min(2)];
            let ifname = [
                format!("{tag}{pid:x}{id}l{k}a"),
                format!("{tag}{pid:x}{id}l{k}b"),
            ];
            if ifname[0].len() > 15 {
                return Err(Error::Invalid(format!(
                    "interface name {} is over 15 characters",
                    ifname[0]
                )));
            }
            let q = queues.max(1).to_string();
            let qs = ["numtxqueues", q.as_str(), "numrxqueues", q.as_str()];
            let mut args = vec!["link", "add", &ifname[0]];
            args.extend(qs);
            args.extend([
                "netns",
                &tb.hosts[a],
                "type",
                "veth",
                "peer",
                "name",
                &ifname[1],
            ]);
            args.extend(qs);
            args.extend(["netns", &tb.hosts[b]]);
            sh("ip", &args)?;
            let v4 = [
                Ipv4Addr::new(198, 18, k as u8, 1),
                Ipv4Addr::new(198, 18, k as u8, 2),
            ];
            let v6 = [
                Ipv6Addr::new(0x2001, 2, 0, k as u16, 0, 0, 0, 1),
                Ipv6Addr::new(0x2001, 2, 0, k as u16, 0, 0, 0, 2),
            ];
            for (side, host) in [a, b].into_iter().enumerate() {
                let ns = &tb.hosts[host];
                let dev = &ifname[side];
                sh(
                    "ip",
                    &[
                        "-n",
                        ns,
                        "addr",
                        "add",
                        &format!("{}/24", v4[side]),
                        "dev",
                        dev,
                    ],
                )?;
                sh(
                    "ip",
                    &[
                        "-n",
                        ns,
                        "-6",
                        "addr",
                        "add",
                        &format!("{}/64", v6[side]),
                        "dev",
                        dev,
                        "nodad",
                    ],
                )?;
                sh("ip", &["-n", ns, "link", "set", dev, "up"])?;
            }
            tb.links.push(Link {
                hosts: [a, b],
                ifname,
                v4,
                v6,
            });
        }
        Ok(tb)
    }

    /// Namespace name of host `h`.
    pub fn ns(&self, h: usize) -> &str {
        &self.hosts[h]
    }

    /// Put a root qdisc on one side of a link, e.g.
    /// `["tbf", "rate", "1gbit", "burst", "256kb", "latency", "10ms"]`.
    pub fn qdisc(&self, link: usize, side: usize, spec: &[&str]) -> Result<()> {
        let l = &self.links[link];
        let ns = &self.hosts[l.hosts[side]];
        let mut args = vec!["-n", ns, "qdisc", "replace", "dev", &l.ifname[side], "root"];
        args.extend_from_slice(spec);
        sh("tc", &args).map(drop)
    }

    /// Drop `percent` of the packets arriving on one side of a link, at the
    /// device's ingress (nftables netdev hook, `numgen random`): the loss a
    /// bad wire makes, seen by the receiving stack. (netem is the usual
    /// tool, but kernels built without CONFIG_NET_SCH_NETEM lack it.)
    pub fn ingress_loss(&self, link: usize, side: usize, percent: f64) -> Result<()> {
        let l = &self.links[link];
        let ns = &self.hosts[l.hosts[side]];
        let per_10k = (percent * 100.0).round() as u32;
        let chain = format!(
            "{{ type filter hook ingress device \"{}\" priority 0; }}",
            l.ifname[side]
        );
        let rule = format!("numgen random mod 10000 < {per_10k} drop");
        sh(
            "ip",
            &["netns", "exec", ns, "nft", "add", "table", "netdev", "wst"],
        )?;
        sh(
            "ip",
            &[
                "netns", "exec", ns, "nft", "add", "chain", "netdev", "wst", "loss", &chain,
            ],
        )?;
        sh(
            "ip",
            &[
                "netns", "exec", ns, "nft", "add", "rule", "netdev", "wst", "loss", &rule,
            ],
        )
        .map(drop)
    }

    /// A command that runs inside host `h`.
    pub fn cmd(&self, h: usize, program: &std::path::Path) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.hosts[h]]).arg(program);
        c
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        for ns in &self.hosts {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
    }
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Delete testbeds left by processes that died without cleaning up
/// (kill -9): their names carry the owner's pid.
fn sweep_stale(prefix: &str) {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(rest) = name.strip_prefix(prefix).and_then(|r| r.strip_prefix('-')) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}

/// End a child we started, by its pid: SIGTERM, then SIGKILL after 3 s.
pub fn terminate(child: &mut Child) {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
    wait_bounded(child, Duration::from_secs(3));
}

/// Wait for `child` up to `timeout`, killing it after that; None if killed.
pub fn wait_bounded(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(st)) => return Some(st),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}
