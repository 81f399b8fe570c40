//! Multi-pair test plans (`wirespeed plan FILE.toml`): what to run, parsed
//! and checked before anything starts. `file` is the TOML shape, `stats`
//! the repetition statistics, `test_kind` the stream or rr test of a
//! configuration, `wire` the wire-speed arithmetic, `runner`
//! the I/O that executes a plan.

pub mod file;
pub mod runner;
pub mod stats;
pub mod test_kind;
pub mod wire;

pub use file::{Plan, Point};
