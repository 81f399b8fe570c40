//! CPU utilization over a test: per core and host-wide from `/proc/stat`
//! (user, nice, system, irq, softirq, steal, iowait, idle), and the process's
//! own time from getrusage. On Windows: GetSystemTimes and GetProcessTimes
//! (host-wide only: Windows has no cheap per-core irq/softirq breakdown).

use crate::report::model::{CoreShare, CpuReport, CpuShare, ProcessCpu};
use std::time::Instant;

/// Cumulative CPU counters of one core (or the host), in ticks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuTimes {
    pub user: u64,
    pub nice: u64,
    pub system: u64,
    pub idle: u64,
    pub iowait: u64,
    pub irq: u64,
    pub softirq: u64,
    pub steal: u64,
}

impl CpuTimes {
    fn total(&self) -> u64 {
        self.user
            + self.nice
            + self.system
            + self.idle
            + self.iowait
            + self.irq
            + self.softirq
            + self.steal
    }

    fn delta(&self, before: &CpuTimes) -> CpuTimes {
        CpuTimes {
            user: self.user.saturating_sub(before.user),
            nice: self.nice.saturating_sub(before.nice),
            system: self.system.saturating_sub(before.system),
            idle: self.idle.saturating_sub(before.idle),
            iowait: self.iowait.saturating_sub(before.iowait),
            irq: self.irq.saturating_sub(before.irq),
            softirq: self.softirq.saturating_sub(before.softirq),
            steal: self.steal.saturating_sub(before.steal),
        }
    }

    /// Percent shares of this delta.
    fn share(&self, detailed: bool) -> CpuShare {
        let t = self.total().max(1) as f64;
        let p = |v: u64| v as f64 * 100.0 / t;
        let opt = |v: u64| detailed.then(|| p(v));
        CpuShare {
            user: p(self.user),
            nice: p(self.nice),
            system: p(self.system),
            irq: opt(self.irq),
            softirq: opt(self.softirq),
            steal: opt(self.steal),
            iowait: opt(self.iowait),
            idle: p(self.idle),
        }
    }
}

/// Parse `/proc/stat`: the host line first, then one entry per `cpuN`.
pub fn parse_proc_stat(text: &str) -> Option<(CpuTimes, Vec<(usize, CpuTimes)>)> {
    let mut host = None;
    let mut cores = Vec::new();
    for line in text.lines() {
        let mut it = line.split_ascii_whitespace();
        let Some(name) = it.next() else { continue };
        let Some(rest) = name.strip_prefix("cpu") else {
            continue;
        };
        let v: Vec<u64> = it.map_while(|x| x.parse().ok()).collect();
        if v.len() < 4 {
            continue;
        }
        let g = |i: usize| v.get(i).copied().unwrap_or(0);
        let t = CpuTimes {
            user: g(0),
            nice: g(1),
            system: g(2),
            idle: g(3),
            iowait: g(4),
            irq: g(5),
            softirq: g(6),
            steal: g(7),
        };
        if rest.is_empty() {
            host = Some(t);
        } else if let Ok(n) = rest.parse() {
            cores.push((n, t));
        }
    }
    host.map(|h| (h, cores))
}

/// A point-in-time reading of host and process CPU counters.
#[derive(Clone, Debug)]
pub struct CpuSnapshot {
    at: Instant,
    host: CpuTimes,
    cores: Vec<(usize, CpuTimes)>,
    /// Process user and system seconds.
    process: (f64, f64),
    ncores: usize,
    detailed: bool,
    source: &'static str,
}

impl CpuSnapshot {
    /// Read the counters now.
    pub fn take() -> CpuSnapshot {
        let at = Instant::now();
        let ncores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let (host, cores, detailed, source) = read_host();
        CpuSnapshot {
            at,
            host,
            cores,
            process: process_times(),
            ncores,
            detailed,
            source,
        }
    }

    /// Utilization between `self` (earlier) and `later`.
    pub fn report(&self, later: &CpuSnapshot) -> CpuReport {
        let seconds = later.at.duration_since(self.at).as_secs_f64();
        let per_core = later
            .cores
            .iter()
            .filter_map(|(n, t)| {
                let before = self.cores.iter().find(|(m, _)| m == n)?;
                Some(CoreShare {
                    cpu: *n,
                    share: t.delta(&before.1).share(self.detailed),
                })
            })
            .collect();
        let (u, s) = (
            later.process.0 - self.process.0,
            later.process.1 - self.process.1,
        );
        let pct = if seconds > 0.0 {
            (u + s) * 100.0 / seconds
        } else {
            0.0
        };
        CpuReport {
            source: self.source.to_string(),
            seconds,
            cores: self.ncores,
            host: later.host.delta(&self.host).share(self.detailed),
            per_core,
            process: ProcessCpu {
                user_seconds: u,
                system_seconds: s,
                percent_of_core: pct,
                percent_of_host: pct / self.ncores as f64,
            },
        }
    }
}

#[cfg(target_os = "linux")]
fn read_host() -> (CpuTimes, Vec<(usize, CpuTimes)>, bool, &'static str) {
    let parsed = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|t| parse_proc_stat(&t));
    match parsed {
        Some((h, c)) => (h, c, true, "/proc/stat"),
        None => (CpuTimes::default(), Vec::new(), true, "unavailable"),
    }
}

#[cfg(target_os = "linux")]
fn process_times() -> (f64, f64) {
    use nix::sys::resource::{getrusage, UsageWho};
    match getrusage(UsageWho::RUSAGE_SELF) {
        Ok(r) => {
            let tv = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
            (tv(r.user_time()), tv(r.system_time()))
        }
        Err(_) => (0.0, 0.0),
    }
}

#[cfg(windows)]
fn filetime(ft: &windows_sys::Win32::Foundation::FILETIME) -> u64 {
    (u64::from(ft.dwHighDateTime) << 32) | u64::from(ft.dwLowDateTime)
}

#[cfg(windows)]
fn read_host() -> (CpuTimes, Vec<(usize, CpuTimes)>, bool, &'static str) {
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
        return (CpuTimes::default(), Vec::new(), false, "unavailable");
    }
    // Kernel time includes idle time on Windows.
    let (i, k, u) = (filetime(&idle), filetime(&kernel), filetime(&user));
    let t = CpuTimes {
        user: u,
        system: k.saturating_sub(i),
        idle: i,
        ..Default::default()
    };
    (t, Vec::new(), false, "GetSystemTimes")
}

#[cfg(windows)]
fn process_times() -> (f64, f64) {
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
        (filetime(&u) as f64 / 1e7, filetime(&k) as f64 / 1e7)
    } else {
        (0.0, 0.0)
    }
}

#[cfg(not(any(target_os = "linux", windows)))]
fn read_host() -> (CpuTimes, Vec<(usize, CpuTimes)>, bool, &'static str) {
    (CpuTimes::default(), Vec::new(), false, "unavailable")
}

#[cfg(not(any(target_os = "linux", windows)))]
fn process_times() -> (f64, f64) {
    (0.0, 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = "cpu  100 0 50 800 10 5 5 0 0 0\ncpu0 50 0 25 400 5 5 5 0 0 0\ncpu1 50 0 25 400 5 0 0 0 0 0\nintr 1 2 3\n";
    const AFTER: &str = "cpu  200 0 100 900 10 25 25 0 0 0\ncpu0 50 0 25 400 5 25 25 0 0 0\ncpu1 150 0 75 500 5 0 0 0 0 0\nintr 1 2 3\n";

    #[test]
    fn parses_host_and_cores() {
        let (h, c) = parse_proc_stat(BEFORE).unwrap();
        assert_eq!(h.user, 100);
        assert_eq!(h.softirq, 5);
        assert_eq!(c.len(), 2);
        assert_eq!(c[1].0, 1);
        assert!(parse_proc_stat("garbage\n").is_none());
    }

    #[test]
    fn shares_from_deltas() {
        let (hb, cb) = parse_proc_stat(BEFORE).unwrap();
        let (ha, ca) = parse_proc_stat(AFTER).unwrap();
        let host = ha.delta(&hb).share(true);
        // delta: user 100, system 50, idle 100, irq 20, softirq 20 => 290
        assert!((host.user - 100.0 * 100.0 / 290.0).abs() < 1e-9);
        assert!((host.busy() - 190.0 * 100.0 / 290.0).abs() < 1e-9);
        // core 0 spent its whole delta in interrupts: the study's driver-domain picture
        let c0 = ca[0].1.delta(&cb[0].1).share(true);
        assert_eq!(c0.irq, Some(50.0));
        assert_eq!(c0.softirq, Some(50.0));
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
        assert!(r.process.user_seconds >= 0.0);
        assert!(r.host.idle <= 100.0);
    }
}
