//! wirespeed's engine: everything but argument parsing.
//!
//! Pure logic (the test spec, units, the control protocol's messages and
//! framing, reports, packet formats in `wire` and the sans-IO TCP-lite
//! state machine in `tcplite`) is kept apart from I/O (`datapath`, the agent and
//! controller drivers in `control`, and `metrics` readers) so it can be
//! unit-tested without sockets.

pub mod auto;
pub mod control;
pub mod datapath;
pub mod deadline;
#[cfg(target_os = "linux")]
pub mod demo;
pub mod error;
pub mod host;
pub mod metrics;
pub mod plan;
pub mod report;
pub mod rss;
pub mod spec;
pub mod tcplite;
#[cfg(target_os = "linux")]
pub mod testbed;
pub mod units;
pub mod wire;

pub use error::{Error, Result};

/// The version of this build, reported by agents and controllers.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
