//! TCP-lite: a small, correct subset of TCP as a deterministic sans-IO
//! state machine, in the shape of quinn-proto. It owns no socket, clock or
//! thread: the caller feeds parsed segments with [`Connection::handle_segment`],
//! pulls segments to send with [`Connection::poll_transmit`], and drives
//! timers with [`Connection::poll_timeout`] / [`Connection::on_timeout`],
//! passing the current time in each call. The same code therefore runs
//! over AF_XDP, over an in-memory link in a benchmark, and over the
//! simulated lossy network in [`sim`], where every run is reproducible
//! from its seed.
//!
//! What "lite" covers: active and passive open with MSS, window scale and
//! timestamps; cumulative ACKs with delayed ACK (at least every second
//! full segment, or one for a whole receive batch when the caller polls
//! after the batch); bounded out-of-order reassembly, reported in SACK blocks
//! (RFC 2018); fast retransmit with SACK-based loss recovery (RFC 6675,
//! over a bounded scoreboard) or, when the peer does not offer SACK,
//! NewReno recovery; RFC 6298 RTO with back-off and a retry limit; zero
//! window probes; FIN and RST (RFC 9293, with RFC 5961's challenge ACK);
//! NewReno or fixed-window congestion control; optional pacing.
//! Not covered: D-SACK, rescue retransmission (RFC 6675 NextSeg rule 4),
//! PAWS, urgent data, keep-alive, ECN, MTU probing.

mod buffer;
mod connection;
pub mod frame;
#[cfg(test)]
mod sack_tests;
mod scoreboard;
pub mod sim;
#[cfg(test)]
mod tests;

pub use buffer::{RecvBuffer, SendBuffer, Source};
pub use connection::{Connection, ConnectionError, State, Stats, Transmit};

pub use crate::wire::tcp::{SeqNum, TcpFlags, TcpRepr as TcpSegment};

/// Time as the caller's clock gives it: microseconds since any fixed
/// origin. Only differences matter.
pub type Instant = u64;

/// Microseconds in a millisecond and a second, for readable configs.
pub const MS: u64 = 1_000;
pub const SEC: u64 = 1_000_000;

/// How the congestion window is chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Congestion {
    /// RFC 5681 slow start and congestion avoidance from an initial window
    /// of 10 segments (RFC 6928), RFC 6582 NewReno fast recovery.
    NewReno,
    /// A constant window in bytes, whatever the losses: for a dedicated
    /// link whose bandwidth-delay product is known.
    Fixed(usize),
}

/// A connection's parameters. Durations are microseconds.
#[derive(Clone, Debug)]
pub struct Config {
    /// The MSS we announce (largest TCP payload we accept, MTU - 40 for
    /// IPv4) and the most we send per segment.
    pub mss: u16,
    /// Send ring: bytes the application may queue, acknowledged or not.
    pub send_buffer: usize,
    /// Receive ring: the largest window we can advertise.
    pub recv_buffer: usize,
    /// Offer window scaling (needed for windows above 64 KiB).
    pub window_scaling: bool,
    /// Offer timestamps (RFC 7323); echoed, not used for PAWS.
    pub timestamps: bool,
    /// Offer SACK (RFC 2018): used when both sides offer it, for SACK
    /// blocks on our ACKs and RFC 6675 loss recovery from the peer's;
    /// otherwise recovery is NewReno's.
    pub sack: bool,
    pub initial_rto: u64,
    /// RFC 6298 says 1 s; 200 ms is what Linux uses and suits LANs.
    pub min_rto: u64,
    pub max_rto: u64,
    /// Consecutive timeouts (retransmissions or unanswered window probes)
    /// after which the connection fails with [`ConnectionError::TimedOut`].
    pub max_retries: u32,
    /// Delayed-ACK timeout; 0 acks every segment at once.
    pub delayed_ack: u64,
    /// Full-sized segments received before an ACK is due at once: 2 is
    /// RFC 5681's "at least every second"; more are stretch ACKs, which
    /// save both ends a frame per ACK not sent (what GRO gives a Linux
    /// receiver). Capped at a quarter of the receive buffer, so a small
    /// window still sees four ACKs per window and never waits for the
    /// delayed-ACK timer.
    pub ack_every: usize,
    /// Out-of-order ranges held; a segment that would need more is dropped.
    pub max_ooo_ranges: usize,
    pub congestion: Congestion,
    /// Pacing rate in bytes per second (payload), None for none.
    pub pacing_rate: Option<u64>,
    /// Bytes the pacer may release at once; at least one segment.
    pub pacing_burst: usize,
    /// How long TIME-WAIT lasts (2 MSL).
    pub time_wait: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            mss: 1460,
            send_buffer: 256 * 1024,
            recv_buffer: 256 * 1024,
            window_scaling: true,
            timestamps: true,
            sack: true,
            initial_rto: SEC,
            min_rto: 200 * MS,
            max_rto: 60 * SEC,
            max_retries: 12,
            delayed_ack: 40 * MS,
            ack_every: 2,
            max_ooo_ranges: 32,
            congestion: Congestion::NewReno,
            pacing_rate: None,
            pacing_burst: 0,
            time_wait: 60 * SEC,
        }
    }
}
