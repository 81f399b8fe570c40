//! CPU utilization over a test: per core and host-wide, and the process's
//! own time from getrusage. On Linux the counters are `/proc/stat` as the
//! `procfs` crate parses it (`KernelStats`: user, nice, system, idle,
//! iowait, irq, softirq, steal; guest time is already inside user and nice,
//! so it is not added again). The CPU numbers come from the `cpuN` labels,
//! which `KernelStats` drops: an offline CPU leaves a gap, so the position
//! in its list is not the number. On Windows: GetSystemTimes and
//! GetProcessTimes (host-wide only: Windows has no cheap per-core
//! irq/softirq breakdown). Counters that cannot be read give no host share
//! (`null`) and a source of "unavailable: REASON", never zeros.

use super::tenants::{PendingTenants, TenantSnapshot};
use crate::report::model::{CoreShare, CpuReport, CpuShare, ProcessCpu};
use std::sync::Arc;
use std::time::Instant;

/// Cumulative CPU counters of one core (or the host), in ticks. The
/// optional ones are None where the OS (or an old kernel) has no such column.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuTimes {
    pub user: u64,
    pub nice: u64,
    pub system: u64,
    pub idle: u64,
    pub iowait: Option<u64>,
    pub irq: Option<u64>,
    pub softirq: Option<u64>,
    pub steal: Option<u64>,
}

impl CpuTimes {
    pub fn total(&self) -> u64 {
        let opt = [self.iowait, self.irq, self.softirq, self.steal];
        self.user + self.nice + self.system + self.idle + opt.iter().flatten().sum::<u64>()
    }

    fn delta(&self, before: &CpuTimes) -> CpuTimes {
        let d = |a: Option<u64>, b: Option<u64>| Some(a?.saturating_sub(b?));
        CpuTimes {
            user: self.user.saturating_sub(before.user),
            nice: self.nice.saturating_sub(before.nice),
            system: self.system.saturating_sub(before.system),
            idle: self.idle.saturating_sub(before.idle),
            iowait: d(self.iowait, before.iowait),
            irq: d(self.irq, before.irq),
            softirq: d(self.softirq, before.softirq),
            steal: d(self.steal, before.steal),
        }
    }

    /// Percent shares of this delta.
    fn share(&self) -> CpuShare {
        let t = self.total().max(1) as f64;
        let p = |v: u64| v as f64 * 100.0 / t;
        CpuShare {
            user: p(self.user),
            nice: p(self.nice),
            system: p(self.system),
            irq: self.irq.map(p),
            softirq: self.softirq.map(p),
            steal: self.steal.map(p),
            iowait: self.iowait.map(p),
            idle: p(self.idle),
        }
    }
}

/// Host-wide counters and each CPU's by number.
type HostTimes = (CpuTimes, Vec<(usize, CpuTimes)>);

/// Parse `/proc/stat` with procfs: the host line, then each `cpuN` line
/// under its number.
#[cfg(target_os = "linux")]
pub fn parse_proc_stat(text: &str) -> Result<HostTimes, String> {
    use procfs::FromBufReadSI;
    // The shares are ratios of ticks, so the tick rate (used only by
    // procfs's millisecond helpers) never enters.
    let info = procfs::ExplicitSystemInfo {
        boot_time_secs: 0,
        ticks_per_second: 100,
        page_size: 4096,
        is_little_endian: cfg!(target_endian = "little"),
    };
    // procfs's parse errors are multi-line "please report this bug" notes.
    let stats = procfs::KernelStats::from_buf_read(text.as_bytes(), &info).map_err(|_| {
        "not in /proc/stat's format (a cpu, ctxt, btime or processes line is missing or malformed)"
            .to_string()
    })?;
    // The same lines KernelStats takes as per-CPU ones, in the same order.
    let numbers = text
        .lines()
        .filter(|l| l.starts_with("cpu") && !l.starts_with("cpu "))
        .map(|l| {
            let label = l.split_whitespace().next().unwrap_or(l);
            label[3..]
                .parse::<usize>()
                .map_err(|_| format!("{label:?} is not a cpuN line"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let times = |c: &procfs::CpuTime| CpuTimes {
        user: c.user,
        nice: c.nice,
        system: c.system,
        idle: c.idle,
        iowait: c.iowait,
        irq: c.irq,
        softirq: c.softirq,
        steal: c.steal,
    };
    let cores = numbers.into_iter().zip(stats.cpu_time.iter().map(times));
    Ok((times(&stats.total), cores.collect()))
}

/// A point-in-time reading of host and process CPU counters.
#[derive(Debug)]
pub struct CpuSnapshot {
    at: Instant,
    /// The counters, or why they could not be read.
    host: Result<HostTimes, String>,
    /// Process user and system seconds, or why they could not be read.
    process: Result<(f64, f64), String>,
    ncores: usize,
    /// Every process's tasks' times (others' use of the CPUs), read on a
    /// thread of their own; None in replays of /proc/stat alone.
    tenants: Option<Arc<PendingTenants>>,
}

impl CpuSnapshot {
    /// Read the counters now.
    pub fn take() -> CpuSnapshot {
        let at = Instant::now();
        let ncores = crate::metrics::host::online_cpus();
        CpuSnapshot {
            at,
            host: read_host(),
            process: process_times(),
            ncores,
            tenants: Some(PendingTenants::shared()),
        }
    }

    /// Counters as recorded from /proc/stat's text, read at `at` (for
    /// tests and replays of recorded runs).
    #[cfg(target_os = "linux")]
    pub fn from_proc_stat(text: &str, at: Instant) -> CpuSnapshot {
        let host = parse_proc_stat(text);
        let ncores = host.as_ref().map_or(1, |(_, c)| c.len().max(1));
        CpuSnapshot {
            at,
            host,
            // a recording of /proc/stat holds no process times
            process: Err("not recorded (a replay of /proc/stat)".into()),
            ncores,
            tenants: None,
        }
    }

    /// Utilization between `self` (earlier) and `later`; no host share
    /// unless both readings succeeded.
    pub fn report(&self, later: &CpuSnapshot) -> CpuReport {
        let seconds = later.at.duration_since(self.at).as_secs_f64();
        let (source, host, per_core) = match (&self.host, &later.host) {
            (Ok((hb, cb)), Ok((ha, ca))) => {
                let per_core = ca
                    .iter()
                    .filter_map(|(n, t)| {
                        let before = cb.iter().find(|(m, _)| m == n)?;
                        Some(CoreShare {
                            cpu: *n,
                            share: t.delta(&before.1).share(),
                        })
                    })
                    .collect();
                (SOURCE.to_string(), Some(ha.delta(hb).share()), per_core)
            }
            (Err(e), _) | (_, Err(e)) => (format!("unavailable: {e}"), None, Vec::new()),
        };
        let process = match (&self.process, &later.process) {
            (Ok((u0, s0)), Ok((u1, s1))) if seconds > 0.0 => {
                let (u, s) = (u1 - u0, s1 - s0);
                let pct = (u + s) * 100.0 / seconds;
                Ok(ProcessCpu {
                    user_seconds: u,
                    system_seconds: s,
                    percent_of_core: pct,
                    percent_of_host: pct / self.ncores as f64,
                })
            }
            (Ok(_), Ok(_)) => Err("unavailable: no time passed between the readings".into()),
            (Err(e), _) | (_, Err(e)) => Err(format!("unavailable: {e}")),
        };
        let (process, process_source) = match process {
            Ok(p) => (Some(p), PROCESS_SOURCE.to_string()),
            Err(e) => (None, e),
        };
        fn get(t: &Option<Arc<PendingTenants>>) -> Option<&TenantSnapshot> {
            t.as_ref()?.get()
        }
        // Readings so close that they are one shared walk measure nothing.
        let one =
            matches!((&self.tenants, &later.tenants), (Some(a), Some(b)) if Arc::ptr_eq(a, b));
        let tenants = match (get(&self.tenants), get(&later.tenants)) {
            (Some(a), Some(b)) if !one => Some(a.report(b)),
            _ => None,
        };
        CpuReport {
            source,
            seconds,
            cores: self.ncores,
            host,
            per_core,
            process,
            process_source,
            tenants,
        }
    }
}

#[cfg(target_os = "linux")]
const SOURCE: &str = "/proc/stat";

#[cfg(target_os = "linux")]
fn read_host() -> Result<HostTimes, String> {
    std::fs::read_to_string("/proc/stat")
        .map_err(|e| e.to_string())
        .and_then(|t| parse_proc_stat(&t))
        .map_err(|e| format!("/proc/stat: {e}"))
}

#[cfg(target_os = "linux")]
const PROCESS_SOURCE: &str = "getrusage";

#[cfg(target_os = "linux")]
fn process_times() -> Result<(f64, f64), String> {
    use nix::sys::resource::{getrusage, UsageWho};
    let r = getrusage(UsageWho::RUSAGE_SELF).map_err(|e| format!("getrusage: {e}"))?;
    let tv = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    Ok((tv(r.user_time()), tv(r.system_time())))
}

#[cfg(windows)]
fn filetime(ft: &windows_sys::Win32::Foundation::FILETIME) -> u64 {
    (u64::from(ft.dwHighDateTime) << 32) | u64::from(ft.dwLowDateTime)
}

#[cfg(windows)]
const SOURCE: &str = "GetSystemTimes";

#[cfg(windows)]
fn read_host() -> Result<HostTimes, String> {
    use windows_sys::Win32::Foundation::FILETIME;
    use windows_sys::Win32::System::Threading::GetSystemTimes;
    let z = || FILETIME {
        dwLowDateTime: 0,
        dwHighDateTime: 0,
    };
    let (mut idle, mut kernel, mut user) = (z(), z(), z());
    // SAFETY: three valid out-pointers to FILETIMEs we own.
    let ok = unsafe { GetSystemTimes(&mut idle, &mut kernel, &mut user) } != 0;
    if !ok {
        return Err(format!(
            "GetSystemTimes: {}",
            std::io::Error::last_os_error()
        ));
    }
    // Kernel time includes idle time on Windows.
    let (i, k, u) = (filetime(&idle), filetime(&kernel), filetime(&user));
    let t = CpuTimes {
        user: u,
        system: k.saturating_sub(i),
        idle: i,
        ..Default::default()
    };
    Ok((t, Vec::new()))
}

#[cfg(windows)]
const PROCESS_SOURCE: &str = "GetProcessTimes";

#[cfg(windows)]
fn process_times() -> Result<(f64, f64), String> {
    use windows_sys::Win32::Foundation::FILETIME;
    use windows_sys::Win32::System::Threading::{GetCurrentProcess, GetProcessTimes};
    let z = || FILETIME {
        dwLowDateTime: 0,
        dwHighDateTime: 0,
    };
    let (mut c, mut e, mut k, mut u) = (z(), z(), z(), z());
    // SAFETY: the pseudo-handle is always valid; out-pointers are ours.
    let ok = unsafe { GetProcessTimes(GetCurrentProcess(), &mut c, &mut e, &mut k, &mut u) } != 0;
    if ok {
        Ok((filetime(&u) as f64 / 1e7, filetime(&k) as f64 / 1e7))
    } else {
        Err(format!(
            "GetProcessTimes: {}",
            std::io::Error::last_os_error()
        ))
    }
}

#[cfg(not(any(target_os = "linux", windows)))]
const SOURCE: &str = "none";

#[cfg(not(any(target_os = "linux", windows)))]
fn read_host() -> Result<HostTimes, String> {
    Err("no CPU counters on this OS".into())
}

#[cfg(not(any(target_os = "linux", windows)))]
const PROCESS_SOURCE: &str = "none";

#[cfg(not(any(target_os = "linux", windows)))]
fn process_times() -> Result<(f64, f64), String> {
    Err("no process CPU times on this OS".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Recorded on a 2-CPU Firecracker guest (kernel 6.18; `intr` cut short),
    // one second apart: steal is counted, guest columns present and zero.
    #[cfg(target_os = "linux")]
    const GUEST_BEFORE: &str = "cpu  50843 0 7948 60485 644 0 104 67 0 0\ncpu0 24349 0 3543 31907 158 0 13 29 0 0\ncpu1 26493 0 4405 28577 485 0 90 38 0 0\nintr 505897 0 0 0 0 0 0\nctxt 751040\nbtime 1796194451\nprocesses 20313\nprocs_running 2\nprocs_blocked 0\nsoftirq 241772 0 29983 4 14768 73925 0 280 39947 8 82857\n";
    #[cfg(target_os = "linux")]
    const GUEST_AFTER: &str = "cpu  50943 0 7949 60585 644 0 104 77 0 0\ncpu0 24349 0 3543 32007 158 0 13 29 0 0\ncpu1 26593 0 4405 28577 485 0 90 48 0 0\nintr 506897 0 0 0 0 0 0\nctxt 752040\nbtime 1796194451\nprocesses 20320\nprocs_running 1\nprocs_blocked 0\nsoftirq 242772 0 29983 4 14768 73925 0 280 39947 8 82857\n";

    /// A KVM host's layout (values made up): guest and guest_nice are
    /// already inside user and nice, CPU 1 is offline.
    #[cfg(target_os = "linux")]
    const HOST_BEFORE: &str = "cpu  100 0 50 800 10 5 5 0 40 0\ncpu0 50 0 25 400 5 5 5 0 40 0\ncpu2 50 0 25 400 5 0 0 0 0 0\nintr 1 2 3\nctxt 10\nbtime 1\nprocesses 5\n";
    #[cfg(target_os = "linux")]
    const HOST_AFTER: &str = "cpu  200 0 100 900 10 25 25 0 90 0\ncpu0 50 0 25 400 5 25 25 0 90 0\ncpu2 150 0 75 500 5 0 0 0 0 0\nintr 1 2 3\nctxt 20\nbtime 1\nprocesses 6\n";

    #[cfg(target_os = "linux")]
    fn snapshot(text: &str, secs: u64) -> CpuSnapshot {
        CpuSnapshot {
            at: Instant::now() + std::time::Duration::from_secs(secs),
            host: parse_proc_stat(text),
            process: Ok((0.0, 0.0)),
            ncores: 2,
            tenants: None,
        }
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn parses_host_and_cores_by_number() {
        let (h, c) = parse_proc_stat(HOST_BEFORE).unwrap();
        assert_eq!(h.user, 100);
        assert_eq!(h.softirq, Some(5));
        let numbers: Vec<usize> = c.iter().map(|(n, _)| *n).collect();
        assert_eq!(numbers, vec![0, 2], "an offline CPU leaves a gap");
        let (g, gc) = parse_proc_stat(GUEST_BEFORE).unwrap();
        assert_eq!((g.steal, gc[1].1.steal), (Some(67), Some(38)));
        let bad = parse_proc_stat("garbage\n").unwrap_err();
        assert!(bad.starts_with("not in /proc/stat's format") && !bad.contains('\n'));
        assert!(parse_proc_stat("").is_err());
        // A kernel older than 2.5.41 prints four columns: no iowait, no irq.
        let old =
            parse_proc_stat("cpu  1 2 3 4\ncpu0 1 2 3 4\nctxt 1\nbtime 1\nprocesses 1\n").unwrap();
        assert_eq!((old.0.iowait, old.0.irq, old.0.steal), (None, None, None));
        assert_eq!(old.0.total(), 10);
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn shares_from_deltas() {
        let r = snapshot(HOST_BEFORE, 0).report(&snapshot(HOST_AFTER, 1));
        assert_eq!(r.source, "/proc/stat");
        let host = r.host.unwrap();
        // delta: user 100, system 50, idle 100, irq 20, softirq 20 => 290;
        // the 50 guest ticks are inside user, not added again
        assert!((host.user - 100.0 * 100.0 / 290.0).abs() < 1e-9);
        assert!((host.busy() - 190.0 * 100.0 / 290.0).abs() < 1e-9);
        // core 0 spent its whole delta in interrupts: the study's driver-domain picture
        assert_eq!(r.per_core[0].cpu, 0);
        assert_eq!(r.per_core[0].share.irq, Some(50.0));
        assert_eq!(r.per_core[0].share.softirq, Some(50.0));
        assert_eq!(r.per_core[1].cpu, 2);
        // steal is its own share: 10 of 212 ticks on the guest
        let g = snapshot(GUEST_BEFORE, 0).report(&snapshot(GUEST_AFTER, 1));
        let gh = g.host.unwrap();
        assert!(
            (gh.steal.unwrap() - 10.0 * 100.0 / 211.0).abs() < 1e-9,
            "{gh:?}"
        );
        assert!((gh.idle - 100.0 * 100.0 / 211.0).abs() < 1e-9, "{gh:?}");
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn unreadable_counters_are_absent_not_zero() {
        let bad = CpuSnapshot {
            host: Err("/proc/stat: Permission denied (os error 13)".into()),
            ..snapshot(HOST_BEFORE, 0)
        };
        for r in [
            bad.report(&snapshot(HOST_AFTER, 1)),
            snapshot(HOST_BEFORE, 0).report(&bad),
        ] {
            assert_eq!(r.host, None);
            assert!(r.per_core.is_empty());
            assert_eq!(
                r.source,
                "unavailable: /proc/stat: Permission denied (os error 13)"
            );
        }
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn unreadable_process_times_are_absent_not_zero() {
        let bad = CpuSnapshot {
            process: Err("getrusage: EINVAL".into()),
            ..snapshot(HOST_BEFORE, 0)
        };
        let r = bad.report(&snapshot(HOST_AFTER, 1));
        assert_eq!(r.process, None);
        assert_eq!(r.process_source, "unavailable: getrusage: EINVAL");
        assert!(r.host.is_some(), "the host counters were read");
    }

    #[test]
    fn live_snapshot_is_sane() {
        let a = CpuSnapshot::take();
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let r = a.report(&CpuSnapshot::take());
        assert!(r.seconds > 0.0);
        assert_eq!(r.process_source, PROCESS_SOURCE, "{r:?}");
        let p = r.process.expect("process times");
        // The loop above burnt CPU in this process: its time cannot be zero
        // (a failed read that became 0 would show here).
        assert!(p.user_seconds + p.system_seconds > 0.0, "{p:?}");
        assert!(p.percent_of_core > 0.0 && p.percent_of_core <= 100.0 * r.cores as f64 + 1.0);
        assert_eq!(r.source, SOURCE, "{r:?}");
        let host = r.host.expect("host counters");
        assert!((0.0..=100.0).contains(&host.idle), "{host:?}");
        #[cfg(target_os = "linux")]
        assert!(!r.per_core.is_empty(), "{r:?}");
    }
}
