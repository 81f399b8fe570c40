//! Facts about this host that go into every report.

use crate::report::model::HostInfo;

/// Describe this host.
pub fn info() -> HostInfo {
    HostInfo {
        hostname: hostname(),
        os: std::env::consts::OS.to_string(),
        arch: std::env::consts::ARCH.to_string(),
        cores: online_cpus(),
        version: crate::VERSION.to_string(),
        kernel: kernel(),
    }
}

/// The kernel release, as `uname -r` prints it.
#[cfg(target_os = "linux")]
fn kernel() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

#[cfg(not(target_os = "linux"))]
fn kernel() -> Option<String> {
    None
}

/// Logical CPUs online on the host. Not `available_parallelism`: that is
/// this process's affinity mask, so under `taskset -c 0` a 4-core host
/// would read as 1 and "% of N cores" would use the wrong N.
#[cfg(target_os = "linux")]
pub fn online_cpus() -> usize {
    // SAFETY: sysconf only reads a system constant.
    let n = unsafe { nix::libc::sysconf(nix::libc::_SC_NPROCESSORS_ONLN) };
    usize::try_from(n)
        .ok()
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Logical CPUs of the host (Windows' count is the machine's, not the
/// process's affinity).
#[cfg(not(target_os = "linux"))]
pub fn online_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[cfg(target_os = "linux")]
fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default()
}

#[cfg(not(target_os = "linux"))]
fn hostname() -> String {
    std::env::var("COMPUTERNAME").unwrap_or_default()
}

#[cfg(test)]
mod tests {
    /// Under a one-CPU affinity mask the host still counts every online CPU.
    #[test]
    #[cfg(target_os = "linux")]
    fn cores_are_online_cpus_not_the_affinity_mask() {
        use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
        use nix::unistd::Pid;
        let online = std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap();
        // "0-3" or "0,2-3": count the CPUs the ranges name.
        let expect: usize = online
            .trim()
            .split(',')
            .map(|r| match r.split_once('-') {
                Some((a, b)) => b.parse::<usize>().unwrap() - a.parse::<usize>().unwrap() + 1,
                None => 1,
            })
            .sum();
        let got = std::thread::spawn(move || {
            let mut one = CpuSet::new();
            let first = (0..CpuSet::count())
                .find(|&c| {
                    sched_getaffinity(Pid::from_raw(0))
                        .unwrap()
                        .is_set(c)
                        .unwrap()
                })
                .unwrap();
            one.set(first).unwrap();
            // This thread only: pid 0 is the calling thread.
            sched_setaffinity(Pid::from_raw(0), &one).unwrap();
            assert_eq!(std::thread::available_parallelism().unwrap().get(), 1);
            super::info().cores
        })
        .join()
        .unwrap();
        assert_eq!(got, expect);
    }
}
