//! Measurement readers: CPU time (per core, per process, and others' on
//! the same CPUs), TCP_INFO, host
//! facts, latency histograms, and the per-interval sampler. Parsers are pure functions over
//! text so they are tested without a live system.

pub mod cpu;
pub mod host;
pub mod interval;
pub mod irq;
pub mod irq_path;
pub mod latency;
pub mod tcpinfo;
pub mod tenants;
