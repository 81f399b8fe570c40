//! Facts about this host that go into every report.

use crate::report::model::HostInfo;

/// Describe this host.
pub fn info() -> HostInfo {
    HostInfo {
        hostname: hostname(),
        os: std::env::consts::OS.to_string(),
        arch: std::env::consts::ARCH.to_string(),
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        version: crate::VERSION.to_string(),
    }
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
