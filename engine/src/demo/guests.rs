//! `wirespeed demo --guests N`: the study's `vm` and `vm-bypass` series on
//! real qemu guests made by `vm-images/build` (KVM when a probe guest boots
//! under it, else TCG, which the demo says).
//!
//! Guest *i* has one vCPU, 256 MB and a virtio-net NIC on a tap that qemu
//! makes inside a router host of the testbed; the router is joined to the
//! controller by a link of its own. The router's egress carries the
//! 1 Gbit/s tbf both ways (toward the guest on the tap, toward the
//! controller on the link): a guest's own egress cannot be shaped from the
//! host, and AF_XDP transmit skips its qdisc anyway, as for `bypass`. Both
//! series run on the same guests: `vm` with kernel sockets on both ends,
//! `vm-bypass` with TCP-lite over AF_XDP on both ends (the guest's on its
//! virtio NIC, whose driver runs XDP natively).

use super::Series;
use crate::host::netns;
use crate::testbed::{terminate, wait_bounded, Testbed};
use crate::{Error, Result};
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The qemu binary the guests run under.
const QEMU: &str = "qemu-system-x86_64";

/// How long a guest may take from qemu's start to an agent that answers
/// (TCG on a busy 2-core machine: 15-30 s each; bounded well above).
const BOOT_LIMIT: Duration = Duration::from_secs(300);

/// The agents' control port in the guests.
const PORT: u16 = 5290;

/// Where guest `i` (1-based) runs: its router host and the link from the
/// controller to that router.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestPlace {
    pub i: usize,
    pub router: usize,
    pub link: usize,
}

impl GuestPlace {
    /// The guest's subnet behind its tap: 198.19.(100+i).0/24, apart from
    /// the testbed's links (198.18.K.0/24).
    pub fn net(&self) -> [u8; 3] {
        [198, 19, 100 + self.i as u8]
    }

    fn addr(&self, host: u8) -> Ipv4Addr {
        let [a, b, c] = self.net();
        Ipv4Addr::new(a, b, c, host)
    }

    /// The router's end of the tap.
    pub fn tap_addr(&self) -> Ipv4Addr {
        self.addr(1)
    }

    /// The guest's address, where its agent listens.
    pub fn guest_addr(&self) -> Ipv4Addr {
        self.addr(2)
    }

    /// The tap's name: unique on the machine, as qemu makes it.
    pub fn tap(&self) -> String {
        format!("wsg{:x}t{}", std::process::id(), self.i)
    }

    /// The agent's name in the plan and the guest's hostname.
    pub fn agent(&self) -> String {
        format!("guest{}", self.i)
    }
}

/// Add `n` guests' routers and links to a testbed layout.
pub fn layout(hosts: &mut usize, links: &mut Vec<(usize, usize)>, n: usize) -> Vec<GuestPlace> {
    (1..=n)
        .map(|i| {
            let router = *hosts;
            *hosts += 1;
            links.push((0, router));
            GuestPlace {
                i,
                router,
                link: links.len() - 1,
            }
        })
        .collect()
}

/// What the guests need, found and built before any namespace is made.
pub struct Prepared {
    pub image: PathBuf,
    pub accel: &'static str,
    pub accel_reason: String,
    pub logs: PathBuf,
}

/// The directory holding `build` and `init`: `given` (--vm-images or
/// WIRESPEED_VM_IMAGES), else `vm-images/` above the executable (a build
/// in the repository's target/), else the source tree it was built from.
pub fn scripts_dir(given: Option<&Path>, exe: &Path) -> Result<PathBuf> {
    let ok = |d: &Path| d.join("build").is_file() && d.join("init").is_file();
    if let Some(d) = given {
        return if ok(d) {
            Ok(d.to_path_buf())
        } else {
            Err(Error::Invalid(format!(
                "--guests: {} holds no vm-images/build and init: give the repository's vm-images/ directory",
                d.display()
            )))
        };
    }
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../vm-images");
    let candidates: Vec<PathBuf> = exe
        .ancestors()
        .skip(1)
        .map(|a| a.join("vm-images"))
        .chain([source])
        .collect();
    candidates.iter().find(|d| ok(d)).cloned().ok_or_else(|| {
        Error::Invalid(format!(
            "--guests: the guest image scripts (vm-images/build) are not above {} nor in the source tree it was built from: give --vm-images DIR",
            exe.display()
        ))
    })
}

/// Whether `program` is an executable file on PATH.
fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
}

/// Check qemu and the tun device, build (or reuse) the image with `exe`
/// as the guests' agent, and pick the accelerator.
pub fn prepare(vm_images: Option<&Path>, exe: &Path, out: &Path) -> Result<Prepared> {
    if !on_path(QEMU) {
        return Err(Error::Invalid(format!(
            "--guests: {QEMU} is not installed (apt-get install qemu-system-x86)"
        )));
    }
    if !Path::new("/dev/net/tun").exists() {
        return Err(Error::Invalid(
            "--guests: /dev/net/tun is missing (modprobe tun)".into(),
        ));
    }
    let dir = scripts_dir(vm_images, exe)?;
    let logs = out.join("guests");
    std::fs::create_dir_all(&logs)
        .map_err(|e| Error::io(format!("creating {}", logs.display()), e))?;
    println!(
        "guests: building the image with {} (cached when its inputs are unchanged)",
        dir.join("build").display()
    );
    let image = build_image(&dir, exe)?;
    let (accel, accel_reason) = pick_accel(&image, &logs);
    println!(
        "guests: image {}; accelerator: {accel} ({accel_reason})",
        image.display()
    );
    Ok(Prepared {
        image,
        accel,
        accel_reason,
        logs,
    })
}

/// Run `vm-images/build --print-dir`: its progress goes to our stderr, the
/// image directory comes on its stdout.
fn build_image(dir: &Path, exe: &Path) -> Result<PathBuf> {
    let mut child = Command::new("bash")
        .arg(dir.join("build"))
        .arg("--agent")
        .arg(exe)
        .arg("--print-dir")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| Error::io("running vm-images/build", e))?;
    let mut out = child.stdout.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let status = wait_bounded(&mut child, Duration::from_secs(900));
    let printed = reader.join().unwrap_or_default();
    let image = PathBuf::from(printed.trim());
    match status {
        Some(s)
            if s.success()
                && image.join("vmlinuz").is_file()
                && image.join("initrd.img").is_file() =>
        {
            Ok(image)
        }
        Some(s) => Err(Error::Invalid(format!(
            "--guests: vm-images/build failed ({s}); its messages are above"
        ))),
        None => Err(Error::Invalid(
            "--guests: vm-images/build took over 900 s and was stopped".into(),
        )),
    }
}

/// KVM when a probe guest reaches its /init under it within 15 s (a few
/// seconds where KVM works; nested KVM often hangs), else TCG; with the
/// reason either way.
fn pick_accel(image: &Path, logs: &Path) -> (&'static str, String) {
    let kvm = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm");
    if kvm.is_err() {
        return ("tcg", "no usable /dev/kvm".into());
    }
    let serial = logs.join("kvm-probe.serial.log");
    let _ = std::fs::remove_file(&serial);
    let qemu_log = logs.join("kvm-probe.qemu.log");
    let mut c = Command::new(QEMU);
    c.args(["-accel", "kvm", "-cpu", "host", "-smp", "1", "-m", "256M"])
        .args(["-nodefaults", "-no-reboot", "-display", "none", "-serial"])
        .arg(format!("file:{}", serial.display()))
        .arg("-kernel")
        .arg(image.join("vmlinuz"))
        .arg("-initrd")
        .arg(image.join("initrd.img"))
        .args(["-append", "console=ttyS0 quiet panic=-1 wirespeed.probe=1"])
        .stdin(Stdio::null());
    if let Ok(f) = std::fs::File::create(&qemu_log) {
        if let Ok(g) = f.try_clone() {
            c.stdout(f).stderr(g);
        }
    }
    let booted = c
        .spawn()
        .ok()
        .and_then(|mut p| wait_bounded(&mut p, Duration::from_secs(15)));
    let said = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    if booted.is_some() && said(&serial).contains("wirespeed-guest: probe ok") {
        return ("kvm", "a probe guest booted under KVM".into());
    }
    let log = said(&qemu_log);
    let why = log
        .lines()
        .find(|l| {
            let l = l.to_lowercase();
            l.contains("error") || l.contains("assert") || l.contains("fail")
        })
        .map(|l| l.trim_start_matches("qemu-system-x86_64: ").to_string())
        .unwrap_or_else(|| "no answer within 15 s".into());
    ("tcg", format!("KVM did not boot a probe guest: {why}"))
}

/// The guests' qemu processes, each ended by its pid on drop (before the
/// testbed's namespaces go).
pub struct Guests {
    qemu: Vec<(GuestPlace, Child)>,
}

impl Drop for Guests {
    fn drop(&mut self) {
        for (_, c) in &mut self.qemu {
            terminate(c);
        }
    }
}

/// The kernel command line of guest `g`: its address, the router as its
/// gateway, its name; no doctor at boot (it takes seconds under TCG).
pub fn cmdline(g: &GuestPlace) -> String {
    format!(
        "console=ttyS0 quiet panic=-1 wirespeed.addr={}/24 wirespeed.gw={} wirespeed.port={PORT} wirespeed.name={} wirespeed.doctor=0",
        g.guest_addr(),
        g.tap_addr(),
        g.agent()
    )
}

/// Start every guest's qemu in its router host, then address and shape
/// its tap and route to it; the guests boot meanwhile (see [`Guests::wait`]).
pub fn boot(tb: &Testbed, places: &[GuestPlace], p: &Prepared, tbf: &[&str]) -> Result<Guests> {
    let mut guests = Guests { qemu: Vec::new() };
    let cpu = if p.accel == "kvm" { "host" } else { "qemu64" };
    for g in places {
        let log = |ext: &str| p.logs.join(format!("{}.{ext}.log", g.agent()));
        let qlog = std::fs::File::create(log("qemu"))
            .map_err(|e| Error::io(format!("creating {}", log("qemu").display()), e))?;
        let qlog2 = qlog
            .try_clone()
            .map_err(|e| Error::io("duplicating the qemu log", e))?;
        let [_, _, c] = g.net();
        let mut cmd = tb.cmd(g.router, Path::new(QEMU));
        cmd.args(["-name", &format!("wirespeed-demo-{}", g.agent())])
            .args(["-accel", p.accel, "-cpu", cpu, "-smp", "1", "-m", "256M"])
            .args(["-nodefaults", "-no-reboot", "-display", "none", "-serial"])
            .arg(format!("file:{}", log("serial").display()))
            .arg("-kernel")
            .arg(p.image.join("vmlinuz"))
            .arg("-initrd")
            .arg(p.image.join("initrd.img"))
            .args(["-append", &cmdline(g)])
            .arg("-netdev")
            .arg(format!(
                "tap,id=n0,ifname={},script=no,downscript=no",
                g.tap()
            ))
            .arg("-device")
            .arg(format!(
                "virtio-net-pci,netdev=n0,mac=52:54:00:19:{c:02x}:02,romfile="
            ))
            .stdin(Stdio::null())
            .stdout(qlog)
            .stderr(qlog2);
        // A group of its own: a terminal's Ctrl-C reaches the plan, which
        // ends its point against a live guest; the demo then stops qemu.
        // And qemu dies with the demo, even when the demo is killed outright.
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
        // SAFETY: one system call, no allocation, in the forked child.
        unsafe {
            cmd.pre_exec(|| {
                if nix::libc::prctl(nix::libc::PR_SET_PDEATHSIG, nix::libc::SIGKILL) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
        let child = cmd
            .spawn()
            .map_err(|e| Error::io(format!("starting {QEMU} for {}", g.agent()), e))?;
        guests.qemu.push((g.clone(), child));
    }
    for g in places {
        guests.tap_up(tb, g)?;
        let l = &tb.links[g.link];
        let [a, b, c] = g.net();
        tb.forwarding(g.router)?;
        tb.route(0, Ipv4Addr::new(a, b, c, 0), 24, l.v4[1])?;
        tb.dev_qdisc(g.router, &g.tap(), tbf)?;
        tb.qdisc(g.link, 1, tbf)?;
    }
    Ok(guests)
}

impl Guests {
    /// An error if guest `g`'s qemu has exited, with the end of its logs.
    fn alive(&mut self, g: &GuestPlace, logs: &Path) -> Result<()> {
        let (_, c) = self
            .qemu
            .iter_mut()
            .find(|(p, _)| p == g)
            .expect("every place has a qemu");
        match c.try_wait() {
            Ok(None) => Ok(()),
            _ => Err(Error::PeerLost(format!(
                "the qemu of {} exited: {}",
                g.agent(),
                tail(&logs.join(format!("{}.qemu.log", g.agent())))
            ))),
        }
    }

    /// Wait (10 s at most) for qemu to make the tap, then address it.
    fn tap_up(&mut self, tb: &Testbed, g: &GuestPlace) -> Result<()> {
        let end = Instant::now() + Duration::from_secs(10);
        while !tb.has_dev(g.router, &g.tap()) {
            if Instant::now() > end {
                return Err(Error::PeerLost(format!(
                    "qemu made no tap {} for {} within 10 s",
                    g.tap(),
                    g.agent()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        tb.adopt(g.router, &g.tap(), g.tap_addr())
    }

    /// Wait until every guest's agent accepts a connection from the
    /// controller (bounded by [`BOOT_LIMIT`]); a guest whose qemu exits,
    /// or `cancel`, ends the wait with the reason.
    pub fn wait(&mut self, tb: &Testbed, logs: &Path, cancel: Option<&AtomicBool>) -> Result<()> {
        let start = Instant::now();
        let places: Vec<GuestPlace> = self.qemu.iter().map(|(g, _)| g.clone()).collect();
        for g in &places {
            let to = SocketAddr::from((g.guest_addr(), PORT));
            loop {
                if cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
                    return Err(Error::PeerLost(
                        "interrupted while the guests booted".into(),
                    ));
                }
                self.alive(g, logs)?;
                let up = netns::within(tb.ns(0), || {
                    Ok(TcpStream::connect_timeout(&to, Duration::from_secs(1)).is_ok())
                })?;
                if up {
                    println!(
                        "guests: {} answers on {to} {:.1} s after qemu started",
                        g.agent(),
                        start.elapsed().as_secs_f64()
                    );
                    break;
                }
                if start.elapsed() > BOOT_LIMIT {
                    return Err(Error::PeerLost(format!(
                        "{}: no agent answered on {to} within {} s; its serial log ends: {}",
                        g.agent(),
                        BOOT_LIMIT.as_secs(),
                        tail(&logs.join(format!("{}.serial.log", g.agent())))
                    )));
                }
                std::thread::sleep(Duration::from_millis(300));
            }
        }
        Ok(())
    }
}

/// The last lines of a log, on one line.
fn tail(p: &Path) -> String {
    let s = std::fs::read_to_string(p).unwrap_or_default();
    let lines: Vec<&str> = s.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let t = lines[lines.len().saturating_sub(4)..].join(" | ");
    if t.is_empty() {
        format!("(nothing in {})", p.display())
    } else {
        t
    }
}

/// The plan's agents and pairs for the guest series in `series`: one
/// agent per guest, one pair per guest per series.
pub fn plan_text(tb: &Testbed, places: &[GuestPlace], series: &[Series]) -> String {
    let mut s = String::new();
    for g in places {
        s += &format!(
            "\n[[agents]]\nname = \"{}\"\naddress = \"{}:{PORT}\"\n",
            g.agent(),
            g.guest_addr()
        );
    }
    for &x in series.iter().filter(|x| x.is_guest()) {
        for g in places {
            let l = &tb.links[g.link];
            s += &format!(
                "\n[[pairs]]\nname = \"nic{}\"\nagent = \"{}\"\nconfiguration = \"{}\"\nlocal = \"{}\"\niface = \"{}\"\n",
                g.i,
                g.agent(),
                x.name(),
                l.v4[0],
                l.ifname[0]
            );
            if x == Series::VmBypass {
                s += "remote_iface = \"eth0\"\n";
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_guest_gets_a_router_a_link_and_a_subnet_apart_from_the_links() {
        let (mut hosts, mut links) = (3, vec![(0, 1), (0, 2)]);
        let g = layout(&mut hosts, &mut links, 2);
        assert_eq!(hosts, 5);
        assert_eq!(links, vec![(0, 1), (0, 2), (0, 3), (0, 4)]);
        assert_eq!((g[0].router, g[0].link), (3, 2));
        assert_eq!((g[1].router, g[1].link), (4, 3));
        assert_eq!(g[1].guest_addr(), Ipv4Addr::new(198, 19, 102, 2));
        assert_eq!(g[1].tap_addr(), Ipv4Addr::new(198, 19, 102, 1));
        assert!(g[0].tap().len() <= 15, "{}", g[0].tap());
        let c = cmdline(&g[0]);
        assert!(
            c.contains("wirespeed.addr=198.19.101.2/24 wirespeed.gw=198.19.101.1"),
            "{c}"
        );
    }

    #[test]
    fn scripts_are_found_in_the_source_tree_and_a_wrong_dir_is_refused() {
        let d = scripts_dir(None, Path::new("/nonexistent/bin/wirespeed")).unwrap();
        assert!(d.join("build").is_file());
        let e = scripts_dir(Some(Path::new("/nonexistent")), Path::new("/x")).unwrap_err();
        assert!(
            e.to_string().contains("--guests: /nonexistent holds no"),
            "{e}"
        );
    }
}
