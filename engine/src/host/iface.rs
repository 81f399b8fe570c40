//! An interface's facts from sysfs and the ethtool ioctl: MAC, MTU, speed,
//! driver, queues. Both the data path (frame sizes, queues) and the plans
//! (wire speed) need them, so they sit below both.

use crate::{Error, Result};

/// A Linux interface's speed (sysfs, Mb/s) and MTU; None where unknown
/// (veth and many virtual NICs report no speed).
pub fn facts(iface: &str) -> (Option<f64>, Option<u32>) {
    let read = |f: &str| std::fs::read_to_string(format!("/sys/class/net/{iface}/{f}")).ok();
    let speed = read("speed")
        .and_then(|s| s.trim().parse::<i64>().ok())
        .filter(|&m| m > 0)
        .map(|m| m as f64 * 1e6);
    let mtu = read("mtu").and_then(|s| s.trim().parse().ok());
    (speed, mtu)
}

/// The MAC address of `iface`.
pub fn mac_of(iface: &str) -> Result<[u8; 6]> {
    let s = std::fs::read_to_string(format!("/sys/class/net/{iface}/address"))
        .map_err(|e| Error::io(format!("reading {iface}'s MAC address"), e))?;
    parse_mac(s.trim())
        .ok_or_else(|| Error::Invalid(format!("{iface} has no Ethernet address ({s:?})")))
}

/// `aa:bb:cc:dd:ee:ff` to bytes.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let v: Vec<u8> = s
        .split(':')
        .map(|x| u8::from_str_radix(x, 16))
        .collect::<std::result::Result<_, _>>()
        .ok()?;
    v.try_into().ok()
}

/// Bytes to `aa:bb:cc:dd:ee:ff`.
pub fn fmt_mac(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// A sysfs or procfs file's trimmed text.
pub fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

/// Entries of `path` whose names start with `prefix`.
pub fn count_dir(path: &str, prefix: &str) -> u32 {
    std::fs::read_dir(path)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
                .count() as u32
        })
        .unwrap_or(0)
}

/// Every interface on this host (in this namespace), by name.
pub fn interfaces() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir("/sys/class/net")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// The queues an AF_XDP socket can bind to on `name`: the kernel's live
/// receive queues (what bind checks), which is what `ethtool -l` reports
/// as combined plus rx channels on drivers that report channels.
#[cfg(target_os = "linux")]
pub fn queue_count(name: &str) -> u32 {
    let live = count_dir(&format!("/sys/class/net/{name}/queues"), "rx-");
    match driver_and_channels(name).1 {
        Some(ch) if live > 0 => ch.min(live),
        Some(ch) => ch,
        None => live,
    }
    .max(1)
}

/// The interface's driver, from the ethtool ioctl.
#[cfg(target_os = "linux")]
pub fn driver(name: &str) -> Option<String> {
    driver_and_channels(name).0
}

/// Driver name and channel count from the ethtool ioctl.
#[cfg(target_os = "linux")]
pub fn driver_and_channels(name: &str) -> (Option<String>, Option<u32>) {
    const ETHTOOL_GDRVINFO: u32 = 0x3;
    const ETHTOOL_GCHANNELS: u32 = 0x3c;
    let Ok(eth) = Ethtool::open(name) else {
        return (None, None);
    };
    // struct ethtool_drvinfo: cmd, then driver[32], ...; 196 bytes.
    let mut drv = [0u32; 49];
    drv[0] = ETHTOOL_GDRVINFO;
    // SAFETY: the buffer is as large as struct ethtool_drvinfo.
    let driver = unsafe { eth.call(drv.as_mut_ptr().cast()) }.ok().map(|()| {
        let d: Vec<u8> = drv[1..9].iter().flat_map(|w| w.to_ne_bytes()).collect();
        String::from_utf8_lossy(&d[..d.iter().position(|&b| b == 0).unwrap_or(32)]).into_owned()
    });
    let mut ch = [0u32; 9];
    ch[0] = ETHTOOL_GCHANNELS;
    // SAFETY: struct ethtool_channels is nine u32s.
    let channels = unsafe { eth.call(ch.as_mut_ptr().cast()) }
        .ok()
        .map(|()| ch[8].max(ch[5]));
    (
        driver.filter(|d| !d.is_empty()),
        channels.filter(|&c| c > 0),
    )
}

/// A socket to ask the kernel's ethtool ioctl (SIOCETHTOOL) about one
/// interface: the `struct ifreq` plumbing every ethtool command shares.
#[cfg(target_os = "linux")]
pub(crate) struct Ethtool {
    fd: std::os::fd::OwnedFd,
    name: [u8; 16],
}

#[cfg(target_os = "linux")]
impl Ethtool {
    /// A datagram socket for ioctls about `iface` (names are at most 15 bytes).
    pub(crate) fn open(iface: &str) -> std::io::Result<Ethtool> {
        use nix::libc;
        use std::os::fd::FromRawFd;
        if iface.len() > 15 || iface.contains('\0') {
            return Err(std::io::Error::from_raw_os_error(libc::ENODEV));
        }
        // SAFETY: plain socket(2); the fd is owned from here on.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut name = [0; 16];
        name[..iface.len()].copy_from_slice(iface.as_bytes());
        Ok(Ethtool {
            // SAFETY: fd is a socket we just opened and nothing else owns.
            fd: unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) },
            name,
        })
    }

    /// Run the ethtool command whose `u32` code opens `data`.
    ///
    /// # Safety
    /// `data` must point at a writable buffer at least as large as the
    /// kernel's structure for that command (with its trailing array, as
    /// sized by the counts the buffer holds).
    pub(crate) unsafe fn call(&self, data: *mut std::ffi::c_void) -> std::io::Result<()> {
        use nix::libc;
        use std::os::fd::AsRawFd;
        const SIOCETHTOOL: libc::c_ulong = 0x8946;
        #[repr(C)]
        struct Ifreq {
            name: [u8; 16],
            data: *mut libc::c_void,
            _pad: [u8; 16],
        }
        let mut ifr = Ifreq {
            name: self.name,
            data,
            _pad: [0; 16],
        };
        // SAFETY: ifr is a valid struct ifreq; the caller vouches for data.
        if unsafe { libc::ioctl(self.fd.as_raw_fd(), SIOCETHTOOL as _, &mut ifr) } == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }
}
