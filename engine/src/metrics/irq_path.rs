//! The test's own path: which interfaces an end's flows used, the NIC under
//! each (through bridges, bonds, VLANs and macvlans, by sysfs `lower_*`
//! links), that NIC's interrupt lines, and the CPUs its packet work could
//! run on. The verdict judges only these: a host's disk or management NIC
//! interrupts are bystanders, however concentrated.
//!
//! A NIC's lines are matched by its device, not by substring: the IRQ
//! numbers the kernel lists under its PCI function (`msi_irqs/`, or the
//! legacy `irq`), then names the drivers give queue lines (`eth1-TxRx-0`,
//! `virtio2-input.0` for the virtio device behind the NIC,
//! `mlx5_comp0@pci:0000:01:00.0`). Virtual NICs (veth, tap, loopback) have
//! no interrupts of their own: their receive work is softirq work on the
//! CPUs that ran the flows, or the RPS CPUs of the interface.

use super::irq::IrqDelta;
use serde::{Deserialize, Serialize};

/// One interface the test's flows used, and the NIC that takes its interrupts.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PathNic {
    /// The interface the flows were bound to or routed through.
    pub iface: String,
    /// The NIC under it with a device of its own (the interface itself, or
    /// a port under a bridge, bond, VLAN or macvlan); None for a virtual
    /// NIC (veth, tap, loopback), which raises no interrupts.
    pub nic: Option<String>,
    /// The driver of `nic` (or of the virtual interface: `veth`, `tun`).
    pub driver: Option<String>,
    /// The NIC's PCI address.
    pub bus: Option<String>,
    /// Its interrupt lines (numbers) that fired during the test.
    pub lines: Vec<String>,
}

/// The path of one end's flows.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TestPath {
    pub nics: Vec<PathNic>,
    /// CPUs this end's threads ran on while the test ran (sampled from
    /// /proc/self/task); None when they were not sampled.
    pub flow_cpus: Option<Vec<usize>>,
    /// RPS CPUs set on the interfaces' receive queues.
    pub rps_cpus: Vec<usize>,
}

impl TestPath {
    /// Whether every interface is virtual: no line of its own to judge.
    pub fn virtual_only(&self) -> bool {
        self.nics.iter().all(|n| n.nic.is_none())
    }

    /// The interrupt lines of the path's NICs.
    pub fn lines(&self) -> impl Iterator<Item = &str> {
        self.nics
            .iter()
            .flat_map(|n| n.lines.iter().map(String::as_str))
    }

    /// CPUs where this path's packet work could run: the flows' threads,
    /// the RPS targets, and the CPUs its NICs' lines fired on. Empty when
    /// none of that is known.
    pub fn cpus(&self, lines: &[IrqDelta]) -> Vec<usize> {
        let mut v: Vec<usize> = self.flow_cpus.clone().unwrap_or_default();
        v.extend(&self.rps_cpus);
        let ours: Vec<&str> = self.lines().collect();
        for l in lines.iter().filter(|l| ours.contains(&l.irq.as_str())) {
            v.extend(
                l.per_cpu
                    .iter()
                    .enumerate()
                    .filter(|(_, &n)| n > 0)
                    .map(|(i, _)| i),
            );
        }
        v.sort_unstable();
        v.dedup();
        v
    }
}

/// What sysfs says about one interface.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LinkFacts {
    /// Interfaces below it (`lower_*`): a bridge's ports, a bond's slaves,
    /// a VLAN's or macvlan's parent.
    pub lowers: Vec<String>,
    pub driver: Option<String>,
    /// Its device, when it has one (a PCI function, a virtio device).
    pub device: Option<DeviceFacts>,
    pub rps_cpus: Vec<usize>,
}

/// The device behind a NIC.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DeviceFacts {
    /// PCI address of the function.
    pub bus: Option<String>,
    /// `virtioN` when the NIC is a virtio device.
    pub virtio: Option<String>,
    /// IRQ numbers the kernel lists for the function.
    pub irqs: Vec<String>,
}

/// A path NIC with what it takes to recognise its lines.
#[derive(Clone, Debug, PartialEq)]
pub struct NicMatch {
    pub nic: PathNic,
    device: Option<DeviceFacts>,
}

/// The NICs under `ifaces`, following `lower_*` links down to the
/// devices (at most 8 levels: links never nest deeper).
pub fn resolve(
    ifaces: &[String],
    facts: &dyn Fn(&str) -> LinkFacts,
) -> (Vec<NicMatch>, Vec<usize>) {
    let mut out: Vec<NicMatch> = Vec::new();
    let mut rps = Vec::new();
    for iface in ifaces {
        let mut leaves = Vec::new();
        let mut todo = vec![(iface.clone(), 0)];
        while let Some((name, depth)) = todo.pop() {
            let f = facts(&name);
            rps.extend(&f.rps_cpus);
            if f.lowers.is_empty() || depth >= 8 || f.device.is_some() {
                leaves.push((name, f));
            } else {
                todo.extend(f.lowers.iter().map(|l| (l.clone(), depth + 1)));
            }
        }
        // A bridge of taps and one physical port: the port is what interrupts.
        let physical = leaves.iter().any(|(_, f)| f.device.is_some());
        for (name, f) in leaves {
            if physical && f.device.is_none() {
                continue;
            }
            let nic = PathNic {
                iface: iface.clone(),
                nic: f.device.as_ref().map(|_| name.clone()),
                driver: f.driver.clone(),
                bus: f.device.as_ref().and_then(|d| d.bus.clone()),
                lines: Vec::new(),
            };
            if !out.iter().any(|m| m.nic == nic) {
                out.push(NicMatch {
                    nic,
                    device: f.device,
                });
            }
        }
    }
    rps.sort_unstable();
    rps.dedup();
    (out, rps)
}

/// Whether interrupt line `l` belongs to the NIC `m`.
pub fn belongs(m: &NicMatch, l: &IrqDelta) -> bool {
    let (Some(nic), Some(dev)) = (&m.nic.nic, &m.device) else {
        return false;
    };
    if dev.irqs.contains(&l.irq) {
        return true;
    }
    let queue_of = |prefix: &str| {
        l.name == prefix
            || l.name
                .strip_prefix(prefix)
                .is_some_and(|rest| rest.starts_with(['-', ':', '@']))
    };
    queue_of(nic)
        || dev.virtio.as_deref().is_some_and(queue_of)
        || dev
            .bus
            .as_deref()
            .is_some_and(|b| l.name.ends_with(&format!("@pci:{b}")))
}

/// The path NICs with the lines of `lines` that are theirs.
pub fn with_lines(matches: &[NicMatch], lines: &[IrqDelta]) -> Vec<PathNic> {
    matches
        .iter()
        .map(|m| PathNic {
            lines: lines
                .iter()
                .filter(|l| belongs(m, l))
                .map(|l| l.irq.clone())
                .collect(),
            ..m.nic.clone()
        })
        .collect()
}

/// Parse a CPU mask as sysfs prints it (`00000000,00000005`): the CPUs set.
pub fn parse_cpumask(s: &str) -> Vec<usize> {
    let mut cpus = Vec::new();
    for (word, hex) in s.trim().rsplit(',').enumerate() {
        let Ok(bits) = u32::from_str_radix(hex, 16) else {
            return Vec::new();
        };
        cpus.extend(
            (0..32)
                .filter(|b| bits >> b & 1 == 1)
                .map(|b| word * 32 + b),
        );
    }
    cpus
}

#[cfg(target_os = "linux")]
pub use live::{facts_of, route_ifaces, ThreadCpus};

/// One end's path, watched while its test runs: the interfaces are looked
/// up and the thread sampler started before the start instant; the lines
/// are matched once the interrupt report is made.
pub struct PathWatch {
    #[cfg(target_os = "linux")]
    ifaces: Result<Vec<String>, String>,
    #[cfg(target_os = "linux")]
    cpus: ThreadCpus,
}

impl PathWatch {
    /// The flows are bound to `bound`, or routed from `local` to `peer`.
    #[cfg(target_os = "linux")]
    pub fn start(bound: Option<&str>, local: std::net::IpAddr, peer: std::net::IpAddr) -> Self {
        PathWatch {
            ifaces: match bound {
                Some(b) => Ok(vec![b.to_string()]),
                None => route_ifaces(local, peer),
            },
            cpus: ThreadCpus::start(),
        }
    }

    #[cfg(not(target_os = "linux"))]
    pub fn start(_: Option<&str>, _: std::net::IpAddr, _: std::net::IpAddr) -> Self {
        PathWatch {}
    }

    /// Fill in `irq.path`, or say in `irq.unavailable` why it is unknown.
    pub fn finish(self, irq: &mut super::irq::IrqReport) {
        #[cfg(target_os = "linux")]
        {
            let flow_cpus = self.cpus.finish();
            match self.ifaces {
                Ok(ifaces) => {
                    let (m, rps_cpus) = resolve(&ifaces, &facts_of);
                    irq.path = Some(TestPath {
                        nics: with_lines(&m, &irq.lines),
                        flow_cpus,
                        rps_cpus,
                    });
                }
                Err(e) => irq.unavailable.push(format!("the test's interfaces: {e}")),
            }
        }
        #[cfg(not(target_os = "linux"))]
        let _ = irq;
    }
}

#[cfg(target_os = "linux")]
mod live {
    use super::{parse_cpumask, DeviceFacts, LinkFacts};
    use crate::host::iface;
    use std::collections::HashMap;
    use std::net::IpAddr;
    use std::path::Path;
    use std::time::{Duration, Instant};

    fn names_in(dir: &Path, prefix: &str) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter_map(|e| {
                        e.file_name()
                            .to_string_lossy()
                            .strip_prefix(prefix)
                            .map(str::to_string)
                    })
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    /// What sysfs (of this network namespace) says about `name`.
    pub fn facts_of(name: &str) -> LinkFacts {
        let base = Path::new("/sys/class/net").join(name);
        let rps_cpus = names_in(&base.join("queues"), "rx-")
            .iter()
            .filter_map(|q| iface::read(&format!("{}/queues/rx-{q}/rps_cpus", base.display())))
            .flat_map(|m| parse_cpumask(&m))
            .collect();
        let device = std::fs::canonicalize(base.join("device")).ok().map(|dev| {
            let leaf = dev.file_name().map(|f| f.to_string_lossy().into_owned());
            let virtio = leaf.clone().filter(|l| l.starts_with("virtio"));
            // A virtio device sits on a PCI function; its lines are the function's.
            let pci = if virtio.is_some() {
                dev.parent().map(Path::to_path_buf)
            } else {
                Some(dev.clone())
            };
            let bus = pci
                .as_ref()
                .and_then(|p| p.file_name())
                .map(|f| f.to_string_lossy().into_owned())
                .filter(|b| b.matches(':').count() == 2 && b.contains('.'));
            let mut irqs = pci
                .as_ref()
                .map(|p| names_in(&p.join("msi_irqs"), ""))
                .unwrap_or_default();
            if irqs.is_empty() {
                irqs.extend(
                    pci.as_ref()
                        .and_then(|p| iface::read(&p.join("irq").to_string_lossy()))
                        .filter(|i| i != "0"),
                );
            }
            DeviceFacts { bus, virtio, irqs }
        });
        LinkFacts {
            lowers: names_in(&base, "lower_"),
            driver: iface::driver(name),
            device,
            rps_cpus,
        }
    }

    /// The interface the kernel routes `peer` through from `local`.
    pub fn route_ifaces(local: IpAddr, peer: IpAddr) -> Result<Vec<String>, String> {
        use crate::host::netlink::{link, route};
        let r = route::get(peer, Some(local), None).map_err(|e| format!("route to {peer}: {e}"))?;
        let oif = r
            .oif
            .ok_or_else(|| format!("the route to {peer} names no interface"))?;
        let l = link::by_index(oif).map_err(|e| format!("interface {oif}: {e}"))?;
        Ok(vec![l.name])
    }

    /// Samples, while a test runs, which CPUs this process's busy threads
    /// run on: each thread's run time (/proc/self/task/T/schedstat, in ns)
    /// and its last CPU (field 39 of its stat). A thread that ran at least
    /// 2 % of a sampling period there counts.
    ///
    /// One sampling thread serves every test of the process that runs at
    /// the time (each reads every task of the process anyway): one per
    /// test made an agent serving many pairs read /proc thousands of times
    /// per period, and 512 of them took both CPUs of a small host for
    /// seconds before a plan's start.
    pub struct ThreadCpus {
        /// The first sampling period that is this test's.
        from: u64,
    }

    /// The process's sampler: its tests, its period count, and per CPU the
    /// last period a busy thread ran there.
    struct Shared {
        users: usize,
        running: bool,
        period: u64,
        last_busy: Vec<u64>,
    }

    static SHARED: std::sync::Mutex<Shared> = std::sync::Mutex::new(Shared {
        users: 0,
        running: false,
        period: 0,
        last_busy: Vec::new(),
    });

    fn shared() -> std::sync::MutexGuard<'static, Shared> {
        // Every change under the lock is a few plain stores.
        SHARED.lock().unwrap_or_else(|p| p.into_inner())
    }

    const PERIOD: Duration = Duration::from_millis(50);
    /// A sampler outliving its test by this much stops on its own.
    const MAX_LIFE: Duration = Duration::from_secs(48 * 3600);

    fn read_tasks() -> HashMap<String, (u64, Option<usize>)> {
        let mut m = HashMap::new();
        for tid in super::live::names_in(Path::new("/proc/self/task"), "") {
            let dir = format!("/proc/self/task/{tid}");
            let run = iface::read(&format!("{dir}/schedstat"))
                .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok());
            let cpu = iface::read(&format!("{dir}/stat")).and_then(|s| {
                let after = &s[s.rfind(')')? + 1..];
                // Field 39 overall; fields after the name start at 3.
                after.split_whitespace().nth(39 - 3)?.parse().ok()
            });
            if let Some(run) = run {
                m.insert(tid, (run, cpu));
            }
        }
        m
    }

    impl ThreadCpus {
        pub fn start() -> ThreadCpus {
            let mut sh = shared();
            sh.users += 1;
            let from = sh.period + 1;
            if !sh.running {
                sh.running = std::thread::Builder::new()
                    .name("ws-cpus".into())
                    .spawn(sample)
                    .is_ok();
            }
            ThreadCpus { from }
        }

        /// Stop watching: the CPUs seen since the start (None if the
        /// sampler could not run).
        pub fn finish(self) -> Option<Vec<usize>> {
            let sh = shared();
            sh.running.then(|| {
                (0..sh.last_busy.len())
                    .filter(|&c| sh.last_busy[c] >= self.from)
                    .collect()
            })
        }
    }

    /// The sampling thread: runs while some test watches, and a while
    /// after the last one (so tests back to back keep one thread).
    fn sample() {
        let me = nix::unistd::gettid().to_string();
        let began = Instant::now();
        let mut last = read_tasks();
        let mut idle = 0;
        while began.elapsed() < MAX_LIFE {
            std::thread::sleep(PERIOD);
            let now = read_tasks();
            let mut sh = shared();
            sh.period += 1;
            let period = sh.period;
            for (tid, (run, cpu)) in &now {
                let before = last.get(tid).map_or(0, |b| b.0);
                let busy = run.saturating_sub(before) >= PERIOD.as_nanos() as u64 / 50;
                if let (true, false, Some(c)) = (busy, *tid == me, *cpu) {
                    if sh.last_busy.len() <= c {
                        sh.last_busy.resize(c + 1, 0);
                    }
                    sh.last_busy[c] = period;
                }
            }
            idle = if sh.users == 0 { idle + 1 } else { 0 };
            if idle > 2 {
                // Under the lock: a test starting now spawns a new sampler.
                sh.running = false;
                return;
            }
            drop(sh);
            last = now;
        }
        shared().running = false;
    }

    impl Drop for ThreadCpus {
        fn drop(&mut self) {
            let mut sh = shared();
            sh.users = sh.users.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(irq: &str, name: &str, per_cpu: Vec<u64>) -> IrqDelta {
        IrqDelta {
            irq: irq.into(),
            name: name.into(),
            per_cpu,
            affinity: None,
        }
    }

    /// A host whose eth1 (ixgbe, 0000:01:00.0, MSI-X 50-51) sits under
    /// VLAN eth1.100 under bridge br0 with a tap; veth and tap elsewhere.
    pub(crate) fn sysfs(name: &str) -> LinkFacts {
        let drv = |d: &str| Some(d.to_string());
        match name {
            "br0" => LinkFacts {
                lowers: vec!["eth1.100".into(), "tap0".into()],
                driver: drv("bridge"),
                ..Default::default()
            },
            "eth1.100" => LinkFacts {
                lowers: vec!["eth1".into()],
                driver: drv("802.1Q VLAN Support"),
                ..Default::default()
            },
            "eth1" => LinkFacts {
                driver: drv("ixgbe"),
                device: Some(DeviceFacts {
                    bus: Some("0000:01:00.0".into()),
                    virtio: None,
                    irqs: vec!["50".into(), "51".into()],
                }),
                ..Default::default()
            },
            "eth0" => LinkFacts {
                driver: drv("virtio_net"),
                device: Some(DeviceFacts {
                    bus: Some("0000:00:03.0".into()),
                    virtio: Some("virtio2".into()),
                    irqs: Vec::new(),
                }),
                ..Default::default()
            },
            "veth-a" => LinkFacts {
                driver: drv("veth"),
                rps_cpus: vec![0],
                ..Default::default()
            },
            _ => LinkFacts {
                driver: drv("tun"),
                ..Default::default()
            },
        }
    }

    #[test]
    fn through_bridge_and_vlan_to_the_physical_port() {
        let (m, rps) = resolve(&["br0".into()], &sysfs);
        assert_eq!(m.len(), 1, "{m:?}");
        assert_eq!(m[0].nic.nic.as_deref(), Some("eth1"));
        assert_eq!(m[0].nic.iface, "br0");
        assert_eq!(m[0].nic.bus.as_deref(), Some("0000:01:00.0"));
        assert!(rps.is_empty());
        let lines = [
            line("50", "eth1-TxRx-0", vec![9, 0]),
            line("51", "eth1-TxRx-1", vec![9, 0]),
            line("36", "virtio1-req.0", vec![0, 9]),
            line("60", "eth10-TxRx-0", vec![1, 0]),
        ];
        let nics = with_lines(&m, &lines);
        assert_eq!(
            nics[0].lines,
            vec!["50", "51"],
            "not eth10's, not the disk's"
        );
    }

    #[test]
    fn virtual_nics_have_no_lines_and_give_their_rps_cpus() {
        let (m, rps) = resolve(&["veth-a".into()], &sysfs);
        assert_eq!(rps, vec![0]);
        let p = TestPath {
            nics: with_lines(&m, &[line("36", "veth-a", vec![5, 0])]),
            flow_cpus: Some(vec![1]),
            rps_cpus: rps,
        };
        assert!(p.virtual_only());
        assert_eq!(p.nics[0].driver.as_deref(), Some("veth"));
        assert!(p.nics[0].lines.is_empty(), "a virtual NIC raises none");
        assert_eq!(p.cpus(&[]), vec![0, 1]);
    }

    #[test]
    fn virtio_queues_and_pci_named_lines() {
        let (m, _) = resolve(&["eth0".into()], &sysfs);
        let lines = [
            line("38", "virtio2-input.0", vec![0, 7]),
            line("39", "virtio2-output.0", vec![3, 0]),
            line("36", "virtio1-req.0", vec![0, 9]),
            line("41", "virtio20-input.0", vec![0, 9]),
            line("70", "mlx5_comp0@pci:0000:00:03.0", vec![1, 0]),
        ];
        let nics = with_lines(&m, &lines);
        assert_eq!(nics[0].lines, vec!["38", "39", "70"]);
        let p = TestPath {
            nics,
            flow_cpus: None,
            rps_cpus: Vec::new(),
        };
        assert_eq!(p.cpus(&lines), vec![0, 1]);
        assert!(!p.virtual_only());
    }

    #[test]
    fn cpumasks() {
        assert_eq!(parse_cpumask("5\n"), vec![0, 2]);
        assert_eq!(parse_cpumask("00000001,00000000"), vec![32]);
        assert_eq!(parse_cpumask("0"), Vec::<usize>::new());
        assert!(parse_cpumask("zz").is_empty());
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn live_sampler_sees_a_busy_thread() {
        let s = ThreadCpus::start();
        let t = std::time::Instant::now();
        let mut x = 0u64;
        while t.elapsed() < std::time::Duration::from_millis(300) {
            x = x.wrapping_add(1);
        }
        assert!(x > 0);
        let cpus = s.finish().expect("sampled");
        assert!(!cpus.is_empty(), "the spinning test thread ran somewhere");
        let lo = facts_of("lo");
        assert!(lo.device.is_none(), "{lo:?}");
    }
}
