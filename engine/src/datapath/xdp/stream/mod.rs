//! TCP streams over AF_XDP: TCP-lite connections whose frames go straight
//! between a worker and the NIC's rings. The steering program hands this
//! end's TCP ports to its AF_XDP sockets; everything else (ARP, the
//! control connection) stays with the kernel. The peer may be another
//! wirespeed, a wirespeed agent on kernel sockets, or any plain TCP
//! server or client: it is real TCP on the wire.
//!
//! One worker per queue ([`worker`]), busy- or event-polling
//! ([`polling`]), each owning the
//! connections that live on its queue; a frame that lands on another
//! queue is handed to its owner ([`handoff`]). [`end`] reserves the ports
//! and opens the sockets, [`flow`] is one connection's application side,
//! [`work`] runs the workers, [`plain`] runs against a plain peer;
//! [`chain`] carries jumbo frames over several UMEM chunks.

mod chain;
mod end;
mod flow;
mod handoff;
mod placement;
mod plain;
mod plan;
mod polling;
mod work;
mod worker;

pub use end::{Ports, StreamEnd, MAX_FLOWS};
pub use placement::Placement;
pub use plain::{address_of, run_plain, PlainOptions, PlainReport};
pub use plan::{
    pattern_sha256, with_checksum_hint, EndReport, Flow, Gate, Open, RunPlan, StreamPlan,
    StreamResult, WorkerReport, PATTERN_PERIOD,
};
pub use work::StreamWork;
