//! The I/O side of a test: moving bytes. `socket` is the portable
//! kernel-TCP path; the AF_XDP path will sit beside it.

pub mod socket;
#[cfg(target_os = "linux")]
pub mod xdp;
