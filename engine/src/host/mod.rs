//! What the host and its kernel say about interfaces, routes and
//! neighbours: read here, below the data path and the plans that both use
//! them, so neither reaches into the other.

#[cfg(target_os = "linux")]
pub mod cgroup;
pub mod iface;
#[cfg(target_os = "linux")]
pub mod netlink;
#[cfg(target_os = "linux")]
pub mod netns;
#[cfg(target_os = "linux")]
pub mod rss;
