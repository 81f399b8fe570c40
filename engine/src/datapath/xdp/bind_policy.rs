//! What an AF_XDP bind should ask of the kernel, and what a refused
//! zero-copy bind means: pure rules, kept apart from the sockets so they
//! can be tested and read on their own (docs/guest-drivers.md says why).

use super::xsk::XskMode;

/// Drivers whose receive NAPI also transmits a zero-copy socket's frames
/// (one NAPI per queue pair): busy-polling that NAPI moves both
/// directions, so the kernel may skip the transmit wakeup
/// (`xsk_no_wakeup` in net/xdp/xsk.c) and lose nothing.
const COMBINED_NAPI_ZC: &[&str] = &["i40e", "ice", "ixgbe", "igc", "igb", "mlx5_core", "stmmac"];

/// Whether to set SO_PREFER_BUSY_POLL and SO_BUSY_POLL on a socket bound
/// in `mode` on a NIC driven by `driver`.
///
/// Copy mode: yes. Transmit is `sendto` → `xsk_generic_xmit`, which busy
/// polling does not bypass, and receive gains (veth: measured).
///
/// Zero-copy: only on [`COMBINED_NAPI_ZC`] drivers. With prefer-busy-poll
/// set, a zero-copy `sendto` busy-polls the *receive* queue's NAPI and
/// returns without calling `ndo_xsk_wakeup`. virtio_net (6.13+) transmits
/// AF_XDP frames from its separate send-queue NAPI (`virtnet_poll_tx` →
/// `virtnet_xsk_xmit`), which only the wakeup or a transmit interrupt
/// schedules: frames then leave at interrupt pace, or not at all once the
/// send queue is idle. A driver not known to poll both in one NAPI gets
/// the wakeup path, which is always correct.
pub fn busy_poll_helps(driver: Option<&str>, mode: XskMode) -> bool {
    match mode {
        XskMode::Copy => true,
        XskMode::ZeroCopy => driver.is_some_and(|d| COMBINED_NAPI_ZC.contains(&d)),
    }
}

/// What a failed zero-copy bind's errno means on `driver`, and the fix.
pub fn zerocopy_refusal(errno: Option<i32>, driver: Option<&str>) -> String {
    use nix::libc::{EBUSY, EINVAL, EOPNOTSUPP};
    let virtio = driver == Some("virtio_net");
    match errno {
        Some(EINVAL) if virtio => "EINVAL on virtio_net: the device needs VIRTIO_F_ACCESS_PLATFORM (qemu -device virtio-net-pci,iommu_platform=on,disable-legacy=on; vm-images/launch --zerocopy)".into(),
        Some(EOPNOTSUPP) if virtio => "EOPNOTSUPP: this kernel's virtio_net has no AF_XDP zero-copy (it needs Linux 6.13 or later)".into(),
        Some(EOPNOTSUPP) => format!(
            "EOPNOTSUPP: {} has no AF_XDP zero-copy in this kernel",
            driver.unwrap_or("this driver")
        ),
        Some(EINVAL) => "EINVAL: the driver refused the zero-copy bind (queue out of range, an MTU or frame size it cannot take, or a device feature it lacks)".into(),
        Some(EBUSY) => "EBUSY: another AF_XDP socket or program holds this queue".into(),
        Some(e) => format!("{}", nix::errno::Errno::from_raw(e)),
        None => "the bind failed without an errno".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::libc::{EBUSY, EINVAL, EOPNOTSUPP};

    #[test]
    fn busy_poll_in_copy_mode_and_on_combined_napi_drivers_only() {
        assert!(busy_poll_helps(Some("veth"), XskMode::Copy));
        assert!(busy_poll_helps(Some("virtio_net"), XskMode::Copy));
        assert!(busy_poll_helps(None, XskMode::Copy));
        assert!(!busy_poll_helps(Some("virtio_net"), XskMode::ZeroCopy));
        assert!(!busy_poll_helps(None, XskMode::ZeroCopy));
        assert!(busy_poll_helps(Some("ice"), XskMode::ZeroCopy));
        assert!(busy_poll_helps(Some("mlx5_core"), XskMode::ZeroCopy));
    }

    #[test]
    fn each_errno_says_its_fix() {
        let v = Some("virtio_net");
        assert!(zerocopy_refusal(Some(EINVAL), v).contains("iommu_platform=on"));
        assert!(zerocopy_refusal(Some(EOPNOTSUPP), v).contains("6.13"));
        let e = zerocopy_refusal(Some(EOPNOTSUPP), Some("e1000"));
        assert!(e.starts_with("EOPNOTSUPP") && e.contains("e1000"), "{e}");
        assert!(!zerocopy_refusal(Some(EINVAL), Some("veth")).contains("iommu"));
        assert!(zerocopy_refusal(Some(EBUSY), v).starts_with("EBUSY"));
        assert!(zerocopy_refusal(Some(nix::libc::ENOMEM), v).starts_with("ENOMEM"));
    }
}
