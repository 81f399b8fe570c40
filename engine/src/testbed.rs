//! A netns testbed: N hosts joined by veth links, addressed from the
//! benchmarking ranges (198.18.0.0/15, RFC 2544; 2001:2::/48, RFC 5180),
//! with an optional tbf shaper per link side. Dropping it deletes the
//! namespaces, which deletes their links and qdiscs with them.
//! Used by `wirespeed demo` and by the end-to-end tests. Linux only; root.
//!
//! Everything is made through the kernel's own interfaces (named
//! namespaces as iproute2 makes them, see [`crate::host::netns`]; links,
//! addresses and qdiscs over rtnetlink), so the product runs no `ip` or
//! `tc`; the namespaces are still ordinary ones that `ip netns` lists and
//! `ip netns exec` enters.

use crate::host::netlink::{addr, link, qdisc, route, NlError};
use crate::host::netns;
use crate::{Error, Result};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

static NEXT: AtomicU32 = AtomicU32::new(0);

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
            netns::create(&name)?;
            tb.hosts.push(name.clone());
            in_ns(&name, "setting lo up", || link::set_up("lo"))?;
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
            let peer_ns = netns::open(&tb.hosts[b])?;
            in_ns(&tb.hosts[a], &format!("adding veth {}", ifname[0]), || {
                link::add_veth(&ifname[0], &ifname[1], u32::from(queues.max(1)), &peer_ns)
            })?;
            let v4 = [
                Ipv4Addr::new(198, 18, k as u8, 1),
                Ipv4Addr::new(198, 18, k as u8, 2),
            ];
            let v6 = [
                Ipv6Addr::new(0x2001, 2, 0, k as u16, 0, 0, 0, 1),
                Ipv6Addr::new(0x2001, 2, 0, k as u16, 0, 0, 0, 2),
            ];
            for (side, host) in [a, b].into_iter().enumerate() {
                let dev = &ifname[side];
                in_ns(&tb.hosts[host], &format!("addressing {dev}"), || {
                    let index = link::by_name(dev)?.index;
                    addr::add(index, IpAddr::V4(v4[side]), 24)?;
                    addr::add(index, IpAddr::V6(v6[side]), 64)?;
                    link::set_up(dev)
                })?;
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

    /// Put a root qdisc on one side of a link, in tc's words after `root`:
    /// `["tbf", "rate", "1gbit", "burst", "256kb", "latency", "10ms"]`.
    /// Only tbf is supported (see [`qdisc::Tbf::parse`]); other specs are
    /// refused.
    pub fn qdisc(&self, link: usize, side: usize, spec: &[&str]) -> Result<()> {
        let l = &self.links[link];
        self.dev_qdisc(l.hosts[side], &l.ifname[side], spec)
    }

    /// As [`Testbed::qdisc`], on device `dev` of host `h` by name (a
    /// device the testbed did not make, e.g. a guest's tap).
    pub fn dev_qdisc(&self, h: usize, dev: &str, spec: &[&str]) -> Result<()> {
        let tbf = qdisc::Tbf::parse(spec)?;
        in_ns(&self.hosts[h], &format!("tbf on {dev}"), || {
            qdisc::replace_root(link::by_name(dev)?.index, &tbf)
        })
    }

    /// Whether host `h` has a device named `dev`.
    pub fn has_dev(&self, h: usize, dev: &str) -> bool {
        in_ns(&self.hosts[h], "looking up a device", || {
            link::by_name(dev).map(|_| ())
        })
        .is_ok()
    }

    /// Address device `dev` of host `h` with `v4/24` and set it up: a
    /// device made there by another program (qemu makes its own tap).
    pub fn adopt(&self, h: usize, dev: &str, v4: Ipv4Addr) -> Result<()> {
        in_ns(&self.hosts[h], &format!("addressing {dev}"), || {
            addr::add(link::by_name(dev)?.index, IpAddr::V4(v4), 24)?;
            link::set_up(dev)
        })
    }

    /// Route `dst/prefix` through `via` on host `h` (a link through a
    /// router host).
    pub fn route(&self, h: usize, dst: Ipv4Addr, prefix: u8, via: Ipv4Addr) -> Result<()> {
        in_ns(
            &self.hosts[h],
            &format!("routing {dst}/{prefix} via {via}"),
            || route::add(IpAddr::V4(dst), prefix, IpAddr::V4(via)),
        )
    }

    /// Make host `h` forward IPv4 between its links (a router).
    pub fn forwarding(&self, h: usize) -> Result<()> {
        // Net sysctls are the opening thread's namespace's.
        netns::within(&self.hosts[h], || {
            std::fs::write("/proc/sys/net/ipv4/ip_forward", "1")
                .map_err(|e| Error::io(format!("enabling forwarding in {}", self.hosts[h]), e))
        })
    }

    /// Set the RPS CPU mask of every receive queue of one side of a link:
    /// where the kernel does that interface's receive work. (Transmit on
    /// a veth runs on the sending thread's CPU; XPS only picks among
    /// queues, and the kernel refuses it on a veth end made in another
    /// namespace.) sysfs shows the namespace of whoever mounted it, so
    /// this runs a shell inside the host, as `ip netns exec` would.
    pub fn rps_cpus(&self, link: usize, side: usize, cpus: &[usize]) -> Result<()> {
        let l = &self.links[link];
        let mask: u64 = cpus.iter().map(|c| 1u64 << c).sum();
        let q = format!("/sys/class/net/{}/queues", l.ifname[side]);
        let script = format!("for f in {q}/rx-*/rps_cpus; do echo {mask:x} > $f || exit 1; done");
        let st = self
            .cmd(l.hosts[side], std::path::Path::new("/bin/sh"))
            .args(["-c", &script])
            .status()
            .map_err(|e| Error::io("running /bin/sh for the RPS mask", e))?;
        if st.success() {
            Ok(())
        } else {
            Err(Error::Invalid(format!(
                "could not set the RPS mask of {} to {mask:x}",
                l.ifname[side]
            )))
        }
    }

    /// Send host `h`'s traffic for addresses it has no link to through
    /// `gateway` (a neighbour on one of its links).
    pub fn route_default(&self, h: usize, gateway: IpAddr) -> Result<()> {
        in_ns(
            &self.hosts[h],
            &format!("default route via {gateway}"),
            || crate::host::netlink::route::add_default(gateway),
        )
    }

    /// A command that runs inside host `h`, entered as `ip netns exec`
    /// enters it (its own mount namespace, with a /sys of host `h`).
    /// Spawning it fails if the namespace is gone.
    pub fn cmd(&self, h: usize, program: &std::path::Path) -> Command {
        let mut c = Command::new(program);
        let ns = netns::open(&self.hosts[h]);
        let label = self.hosts[h].clone();
        // SAFETY: the closure makes only system calls (setns, unshare,
        // mount) on values prepared before the fork; it allocates nothing.
        unsafe {
            c.pre_exec(move || match &ns {
                Ok(f) => netns::enter_for_exec(f, &label),
                Err(_) => Err(std::io::Error::from_raw_os_error(nix::libc::ENOENT)),
            });
        }
        c
    }
}

/// Run netlink work inside namespace `ns`; its failure says what we did.
fn in_ns(
    ns: &str,
    what: &str,
    f: impl FnOnce() -> std::result::Result<(), NlError> + Send,
) -> Result<()> {
    netns::within(ns, || {
        f().map_err(|e| e.into_error(format!("{what} in {ns}")))
    })
}

impl Drop for Testbed {
    fn drop(&mut self) {
        for ns in &self.hosts {
            let _ = netns::delete(ns);
        }
    }
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Delete testbeds left by processes that died without cleaning up
/// (kill -9): their names carry the owner's pid.
fn sweep_stale(prefix: &str) {
    for name in netns::list() {
        let Some(rest) = name.strip_prefix(prefix).and_then(|r| r.strip_prefix('-')) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = netns::delete(&name);
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
