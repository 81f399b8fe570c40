//! iperf3 interoperability: `wirespeed run --iperf3 HOST` drives an
//! unmodified `iperf3 -s` ([`client`]), and `wirespeed agent
//! --iperf3-listen ADDR` serves stock `iperf3 -c` ([`server`]). [`wire`]
//! is the protocol without I/O, [`conn`] its reads and writes on the
//! control connection (bounded in time and size), [`streams`] the data
//! connections on this project's own data paths (kernel sockets or
//! TCP-lite), so a test against iperf3 measures what a test between two
//! wirespeed ends would.

pub mod client;
pub mod conn;
pub mod server;
pub mod streams;
#[cfg(target_os = "linux")]
mod tcplite_serve;
mod ticks;
pub mod wire;

/// iperf3's default port.
pub const DEFAULT_PORT: u16 = 5201;
