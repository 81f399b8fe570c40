//! One TCP connection's state machine. See the module docs of `tcplite`
//! for the calling convention; RFC section numbers below are RFC 9293's
//! unless another RFC is named.

use super::buffer::{RecvBuffer, SendBuffer, Source};
use super::scoreboard::{Scoreboard, DUP_THRESH};
use super::{Config, Congestion, Instant, SEC};
use crate::wire::tcp::{
    self, DeferredChecksum, SackBlocks, SeqNum, TcpFlags, TcpRepr, SACK_BUF, SACK_MAX_BLOCKS,
};
use crate::wire::{checksum, ip_protocol};
use std::fmt;
use std::net::{IpAddr, SocketAddr};

/// RFC 9293 3.3.2 states (LISTEN is the caller's: see [`Connection::accept`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    SynSent,
    SynReceived,
    Established,
    FinWait1,
    FinWait2,
    CloseWait,
    Closing,
    LastAck,
    TimeWait,
    Closed,
}

/// Why a connection ended other than by an orderly close.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectionError {
    /// The peer answered our SYN with a RST: nothing listens there.
    Refused,
    /// The peer reset the connection.
    Reset,
    /// `max_retries` consecutive retransmission or probe timeouts: the
    /// peer or the path is gone.
    TimedOut,
}

impl fmt::Display for ConnectionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ConnectionError::Refused => "connection refused by the peer (RST to our SYN)",
            ConnectionError::Reset => "connection reset by the peer",
            ConnectionError::TimedOut => {
                "connection timed out: the peer stopped acknowledging (retry limit reached)"
            }
        })
    }
}

impl std::error::Error for ConnectionError {}

/// Counters; `srtt`, `rttvar`, `rto`, `cwnd` and `ssthresh` are the
/// current values when read through [`Connection::stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Payload bytes sent for the first time.
    pub bytes_sent: u64,
    /// Payload bytes sent again.
    pub bytes_retransmitted: u64,
    /// Payload bytes the peer acknowledged.
    pub bytes_acked: u64,
    /// Payload bytes received in order (delivered to the receive ring).
    pub bytes_received: u64,
    pub segments_sent: u64,
    pub segments_received: u64,
    /// Segments sent again (any cause).
    pub retransmits: u64,
    /// Loss recoveries entered on duplicate ACKs or SACK information.
    pub fast_retransmits: u64,
    /// Segments sent again during SACK loss recovery (RFC 6675): holes
    /// the peer's SACK blocks showed.
    pub sack_recovery_retransmits: u64,
    /// Retransmission timeouts.
    pub rto_count: u64,
    /// Duplicate ACKs received.
    pub dup_acks: u64,
    pub window_probes: u64,
    /// Out-of-order segments dropped because every range slot was taken.
    pub ooo_dropped: u64,
    pub challenge_acks: u64,
    /// Smoothed RTT and its variation, microseconds (0 before a sample).
    pub srtt: u64,
    pub rttvar: u64,
    pub rto: u64,
    pub cwnd: u64,
    pub ssthresh: u64,
}

/// What [`Connection::poll_transmit`] wrote: a TCP header and payload of
/// `size` bytes at the start of the buffer, checksum filled in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transmit {
    pub size: usize,
    pub seq: SeqNum,
    pub payload_len: usize,
    pub flags: TcpFlags,
}

/// The token bucket behind pacing: credit in byte-microseconds so that
/// integer arithmetic loses nothing between calls.
#[derive(Debug)]
struct Pacer {
    rate: u64,
    cap: u128,
    credit: u128,
    last: Instant,
}

impl Pacer {
    fn refill(&mut self, now: Instant) {
        if now > self.last {
            let add = u128::from(now - self.last) * u128::from(self.rate);
            self.credit = (self.credit + add).min(self.cap);
            self.last = now;
        }
    }

    /// When `bytes` may go (now if already).
    fn ready_at(&mut self, now: Instant, bytes: usize) -> Instant {
        self.refill(now);
        let need = (bytes as u128 * u128::from(SEC)).min(self.cap);
        if self.credit >= need {
            now
        } else {
            let wait = (need - self.credit).div_ceil(u128::from(self.rate.max(1)));
            now + wait.min(u128::from(u64::MAX / 2)) as u64
        }
    }

    fn take(&mut self, bytes: usize) {
        let need = (bytes as u128 * u128::from(SEC)).min(self.cap);
        self.credit = self.credit.saturating_sub(need);
    }
}

/// A pending RST: sequence number and, for a reply to a segment without
/// ACK, the acknowledgment (RFC 9293 3.10.7.1).
#[derive(Clone, Copy, Debug)]
struct Reset {
    seq: SeqNum,
    ack: Option<SeqNum>,
}

/// One TCP connection. Call `poll_transmit` until it returns None after
/// every `write`, `read`, `close` and `on_timeout`, and after each
/// `handle_segment` or each batch of them: the segments of one receive
/// batch are answered together, one ACK for all (as Linux's GRO does),
/// which spares both ends an ACK per two segments.
#[derive(Debug)]
pub struct Connection {
    cfg: Config,
    local: SocketAddr,
    remote: SocketAddr,
    state: State,
    error: Option<ConnectionError>,

    // send sequence space (3.3.1)
    iss: SeqNum,
    snd_una: SeqNum,
    snd_nxt: SeqNum,
    /// Highest sequence number sent so far, plus one (snd_nxt drops back
    /// to snd_una after a timeout; this does not).
    snd_max: SeqNum,
    snd_wnd: usize,
    snd_wl1: SeqNum,
    snd_wl2: SeqNum,
    max_snd_wnd: usize,
    snd_wscale: u8,
    send: SendBuffer,
    /// Sequence number of the send ring's first byte.
    send_seq: SeqNum,
    fin_queued: bool,
    /// Payload bytes per segment: the smaller MSS less the options we add.
    eff_mss: usize,

    // receive sequence space
    irs: SeqNum,
    rcv_nxt: SeqNum,
    rcv_wscale: u8,
    /// Right edge of the window last advertised.
    rcv_adv: SeqNum,
    recv: RecvBuffer,
    /// Sequence number of the peer's FIN once seen, even beyond a hole.
    peer_fin: Option<SeqNum>,
    fin_received: bool,
    /// Largest payload received: what a "full segment" is for delayed ACK.
    rcv_mss: usize,

    ts_enabled: bool,
    ts_recent: u32,
    /// The peer's SYN offered window scaling.
    ws_peer: bool,
    /// The peer's SYN offered SACK.
    sack_peer: bool,
    /// Both offered SACK: we send blocks and recover with the peer's.
    sack_ok: bool,
    /// Where the latest out-of-order segments started, newest first: the
    /// order SACK blocks report their ranges in (RFC 2018 4).
    sack_recent: [Option<SeqNum>; SACK_MAX_BLOCKS],

    // acknowledgments
    ack_now: bool,
    unacked_bytes: usize,
    delack_at: Option<Instant>,

    // retransmission (RFC 6298)
    rto: u64,
    srtt: Option<u64>,
    rttvar: u64,
    /// The one segment being timed (Karn: never a retransmitted one).
    rtt_seq: Option<(SeqNum, Instant)>,
    rexmit_at: Option<Instant>,
    retries: u32,
    syn_pending: bool,
    /// Retransmit one segment at snd_una (fast retransmit, partial ACK).
    rexmit_one: bool,

    // persist (zero window)
    persist_at: Option<Instant>,
    /// Probes since the window closed: the persist interval backs off.
    persist_backoff: u32,
    /// Probes in a row without any ACK: the connection fails past the limit.
    probes: u32,
    probe_pending: bool,

    time_wait_at: Option<Instant>,

    // congestion control
    cwnd: usize,
    ssthresh: usize,
    ca_acked: usize,
    dupacks: u32,
    in_recovery: bool,
    /// NewReno's `recover`, RFC 6675's RecoveryPoint.
    recover: SeqNum,

    // SACK loss recovery (RFC 6675)
    scoreboard: Scoreboard,
    /// Everything below was retransmitted in this recovery (HighRxt + 1).
    high_rxt: SeqNum,
    /// Bytes estimated in the network (SetPipe), while in recovery.
    pipe: usize,
    /// Unsacked bytes below this are lost (IsLost), as of the last ACK.
    lost_edge: SeqNum,

    pacer: Option<Pacer>,
    pace_at: Option<Instant>,

    rst_pending: Option<Reset>,
    stats: Stats,
}

/// Option bytes timestamps take on every segment (NOP, NOP, 10).
const TS_OPTION_LEN: usize = 12;

/// Window scale that lets `buf` bytes be advertised (RFC 7323 2.3: at most 14).
fn wscale_for(buf: usize) -> u8 {
    let mut s = 0;
    while s < 14 && (buf >> s) > 0xffff {
        s += 1;
    }
    s
}

impl Connection {
    fn new(cfg: Config, local: SocketAddr, remote: SocketAddr, iss: u32, now: Instant) -> Self {
        let iss = SeqNum(iss);
        let mss = usize::from(cfg.mss.max(64));
        let pacer = cfg.pacing_rate.map(|rate| {
            let burst = cfg.pacing_burst.max(mss) as u128 * u128::from(SEC);
            Pacer {
                rate: rate.max(1),
                cap: burst,
                credit: burst,
                last: now,
            }
        });
        Connection {
            local,
            remote,
            state: State::Closed,
            error: None,
            iss,
            snd_una: iss,
            snd_nxt: iss,
            snd_max: iss,
            snd_wnd: 0,
            snd_wl1: SeqNum(0),
            snd_wl2: iss,
            max_snd_wnd: 0,
            snd_wscale: 0,
            send: SendBuffer::new(cfg.send_buffer),
            send_seq: iss + 1,
            fin_queued: false,
            eff_mss: mss,
            irs: SeqNum(0),
            rcv_nxt: SeqNum(0),
            rcv_wscale: if cfg.window_scaling {
                wscale_for(cfg.recv_buffer)
            } else {
                0
            },
            rcv_adv: SeqNum(0),
            recv: RecvBuffer::new(cfg.recv_buffer, cfg.max_ooo_ranges),
            peer_fin: None,
            fin_received: false,
            rcv_mss: 0,
            ts_enabled: false,
            ts_recent: 0,
            ws_peer: false,
            sack_peer: false,
            sack_ok: false,
            sack_recent: [None; SACK_MAX_BLOCKS],
            ack_now: false,
            unacked_bytes: 0,
            delack_at: None,
            rto: cfg.initial_rto,
            srtt: None,
            rttvar: 0,
            rtt_seq: None,
            rexmit_at: None,
            retries: 0,
            syn_pending: true,
            rexmit_one: false,
            persist_at: None,
            persist_backoff: 0,
            probes: 0,
            probe_pending: false,
            time_wait_at: None,
            cwnd: mss,
            ssthresh: usize::MAX / 2,
            ca_acked: 0,
            dupacks: 0,
            in_recovery: false,
            recover: iss,
            scoreboard: Scoreboard::default(),
            high_rxt: iss,
            pipe: 0,
            lost_edge: iss,
            pacer,
            pace_at: None,
            rst_pending: None,
            stats: Stats::default(),
            cfg,
        }
    }

    /// Active open: the first `poll_transmit` sends the SYN.
    pub fn connect(
        cfg: Config,
        local: SocketAddr,
        remote: SocketAddr,
        iss: u32,
        now: Instant,
    ) -> Self {
        let mut c = Self::new(cfg, local, remote, iss, now);
        c.state = State::SynSent;
        c
    }

    /// Passive open from a SYN the caller's listener received from
    /// `remote_ip` (the SYN's source port completes the address). None if
    /// the segment is not an initial SYN (the listener should then answer
    /// with [`Connection::reset_for`] or drop it).
    pub fn accept(
        cfg: Config,
        local: SocketAddr,
        remote_ip: IpAddr,
        syn: &TcpRepr,
        iss: u32,
        now: Instant,
    ) -> Option<Self> {
        let f = syn.flags;
        if !f.syn() || f.ack() || f.rst() || syn.dst_port != local.port() {
            return None;
        }
        let remote = SocketAddr::new(remote_ip, syn.src_port);
        let mut c = Self::new(cfg, local, remote, iss, now);
        c.state = State::SynReceived;
        c.irs = syn.seq_number;
        c.rcv_nxt = syn.seq_number + 1;
        c.negotiate(syn);
        c.snd_wnd = usize::from(syn.window_len);
        c.max_snd_wnd = c.snd_wnd;
        c.snd_wl1 = syn.seq_number;
        c.ts_recent = syn.timestamp.map_or(0, |t| t.0);
        c.stats.segments_received = 1;
        Some(c)
    }

    /// The RST a listener sends for a segment no connection wants
    /// (RFC 9293 3.10.7.1): writes it into `buf` and returns its size, or
    /// None if the segment is itself a RST (never answered) or `buf` is
    /// shorter than a header.
    pub fn reset_for(
        local: SocketAddr,
        remote: SocketAddr,
        seg: &TcpRepr,
        buf: &mut [u8],
    ) -> Option<usize> {
        if seg.flags.rst() || buf.len() < tcp::HEADER_LEN {
            return None;
        }
        let r = if seg.flags.ack() {
            TcpRepr::new(
                local.port(),
                remote.port(),
                seg.ack_number,
                SeqNum(0),
                TcpFlags::RST,
            )
        } else {
            TcpRepr::new(
                local.port(),
                remote.port(),
                SeqNum(0),
                seg.seq_number + seg.segment_len(),
                TcpFlags::RST | TcpFlags::ACK,
            )
        };
        let n = r.buffer_len();
        r.emit(
            &mut tcp::Packet::new_unchecked(&mut buf[..n]),
            local.ip(),
            remote.ip(),
        );
        Some(n)
    }

    /// Options from the peer's SYN or SYN-ACK.
    fn negotiate(&mut self, syn: &TcpRepr) {
        let peer_mss = usize::from(syn.max_seg_size.unwrap_or(536).max(64));
        match (self.cfg.window_scaling, syn.window_scale) {
            (true, Some(s)) => {
                self.snd_wscale = s;
                self.ws_peer = true;
            }
            _ => {
                // both sides must offer it, or neither scales (RFC 7323 2.2)
                self.snd_wscale = 0;
                self.rcv_wscale = 0;
            }
        }
        self.ts_enabled = self.cfg.timestamps && syn.timestamp.is_some();
        self.sack_peer = syn.sack_permitted;
        self.sack_ok = self.cfg.sack && syn.sack_permitted;
        let opts = if self.ts_enabled { TS_OPTION_LEN } else { 0 };
        self.eff_mss = (peer_mss.min(usize::from(self.cfg.mss.max(64))) - opts).max(32);
        self.cwnd = match self.cfg.congestion {
            // RFC 6928: min(10*MSS, max(2*MSS, 14600))
            Congestion::NewReno => (10 * self.eff_mss).min((2 * self.eff_mss).max(14600)),
            Congestion::Fixed(w) => w.max(self.eff_mss),
        };
        self.rcv_adv = self.rcv_nxt;
    }

    // ---- application side ----

    pub fn state(&self) -> State {
        self.state
    }

    /// Why the connection failed, if it did.
    pub fn error(&self) -> Option<ConnectionError> {
        self.error
    }

    pub fn local(&self) -> SocketAddr {
        self.local
    }

    pub fn remote(&self) -> SocketAddr {
        self.remote
    }

    /// Closed, orderly or not; nothing more will happen.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// The handshake is done (data can flow).
    pub fn is_established(&self) -> bool {
        !matches!(
            self.state,
            State::SynSent | State::SynReceived | State::Closed
        )
    }

    pub fn stats(&self) -> Stats {
        let mut s = self.stats;
        s.srtt = self.srtt.unwrap_or(0);
        s.rttvar = self.rttvar;
        s.rto = self.rto;
        s.cwnd = self.cwnd as u64;
        s.ssthresh = self.ssthresh.min(u64::MAX as usize) as u64;
        s
    }

    /// Payload bytes the peer acknowledged: [`Stats::bytes_acked`] without
    /// copying every counter, for a caller that polls it each pass.
    pub fn bytes_acked(&self) -> u64 {
        self.stats.bytes_acked
    }

    /// The payload size of a full segment, once negotiated.
    pub fn mss(&self) -> usize {
        self.eff_mss
    }

    /// Both sides offered SACK in the handshake.
    pub fn sack(&self) -> bool {
        self.sack_ok
    }

    #[cfg(test)]
    pub(super) fn scoreboard(&self) -> &Scoreboard {
        &self.scoreboard
    }

    /// Room in the send ring.
    pub fn send_capacity(&self) -> usize {
        if self.may_write() {
            self.send.free()
        } else {
            0
        }
    }

    fn may_write(&self) -> bool {
        !self.fin_queued
            && matches!(
                self.state,
                State::SynSent | State::SynReceived | State::Established | State::CloseWait
            )
    }

    /// Queue bytes to send; returns how many fit (0 when the ring is full
    /// or the sending side is closed).
    pub fn write(&mut self, data: &[u8]) -> usize {
        if !self.may_write() {
            return 0;
        }
        self.send.write(data)
    }

    /// Queue up to `n` bytes of `src` from position `pos` by reference
    /// ([`SendBuffer::write_ref`]): no copy now, one when each segment
    /// is built. Returns how many fit.
    pub fn write_ref(&mut self, src: &Source, pos: u64, n: usize) -> usize {
        if !self.may_write() {
            return 0;
        }
        self.send.write_ref(src, pos, n)
    }

    /// Bytes sent and not yet acknowledged, plus bytes not yet sent.
    pub fn send_queue(&self) -> usize {
        self.send.len()
    }

    /// Bytes ready to read.
    pub fn recv_queue(&self) -> usize {
        self.recv.len()
    }

    /// Read in-order bytes; 0 when none are ready (see [`Self::read_finished`]).
    pub fn read(&mut self, dst: &mut [u8]) -> usize {
        let n = self.recv.read(dst);
        self.after_read(n);
        n
    }

    /// Hand up to `max` in-order bytes to `f` where they lie in the
    /// receive ring, without copying them out, and drop them; returns how
    /// many (0 when none are ready).
    pub fn read_in_place(&mut self, max: usize, f: impl FnMut(&[u8])) -> usize {
        let n = self.recv.read_in_place(max, f);
        self.after_read(n);
        n
    }

    fn after_read(&mut self, n: usize) {
        if n > 0 && self.is_established() {
            // A window update of its own only when the right edge moves
            // by a good amount (receiver-side silly window avoidance,
            // 3.8.6.2.2) and the window the peer holds has shrunk to half
            // the buffer or less, which this at least doubles (Linux's
            // tcp_cleanup_rbuf): an application that keeps up otherwise
            // sends an ACK per read, and the next ACK carries the edge.
            let window = self.advertised_window();
            let edge = self.rcv_nxt + window;
            let moved = edge.diff(self.rcv_adv).max(0) as usize;
            let offered = self.rcv_adv.diff(self.rcv_nxt).max(0) as usize;
            if moved >= self.window_step()
                && 2 * offered <= self.recv.capacity()
                && window >= 2 * offered
            {
                self.ack_now = true;
            }
        }
    }

    /// The peer closed its side and every byte has been read.
    pub fn read_finished(&self) -> bool {
        self.fin_received && self.recv.is_empty()
    }

    /// Orderly close of our sending side: a FIN follows the queued data.
    /// Before the handshake completes the FIN waits for it (RFC 9293
    /// 3.10.4); a SYN-SENT connection with nothing queued just closes.
    pub fn close(&mut self) {
        match self.state {
            State::SynSent if self.send.is_empty() => self.enter_closed(),
            State::SynSent | State::SynReceived => self.fin_queued = true,
            State::Established => {
                self.fin_queued = true;
                self.state = State::FinWait1;
            }
            State::CloseWait => {
                self.fin_queued = true;
                self.state = State::LastAck;
            }
            _ => {}
        }
    }

    /// Abort: send a RST and forget everything.
    pub fn abort(&mut self) {
        if self.is_established() || self.state == State::SynReceived {
            self.rst_pending = Some(Reset {
                seq: self.snd_nxt,
                ack: None,
            });
        }
        self.enter_closed();
    }

    fn enter_closed(&mut self) {
        self.state = State::Closed;
        self.rexmit_at = None;
        self.persist_at = None;
        self.delack_at = None;
        self.time_wait_at = None;
        self.pace_at = None;
        self.ack_now = false;
        self.syn_pending = false;
        self.rexmit_one = false;
        self.probe_pending = false;
    }

    fn fail(&mut self, e: ConnectionError) {
        self.error = Some(e);
        self.enter_closed();
    }

    // ---- timers ----

    /// The earliest time at which `on_timeout` has something to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.rexmit_at,
            self.persist_at,
            self.delack_at,
            self.time_wait_at,
            self.pace_at,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Run the timers that are due at `now`.
    pub fn on_timeout(&mut self, now: Instant) {
        let due = |t: Option<Instant>| t.is_some_and(|t| t <= now);
        if due(self.time_wait_at) {
            self.enter_closed();
            return;
        }
        if due(self.pace_at) {
            self.pace_at = None;
        }
        if due(self.delack_at) {
            self.delack_at = None;
            self.ack_now = true;
        }
        if due(self.rexmit_at) {
            self.on_rto(now);
        }
        if due(self.persist_at) {
            self.persist_at = None;
            self.probes += 1;
            if self.probes > self.cfg.max_retries {
                self.fail(ConnectionError::TimedOut);
                return;
            }
            self.probe_pending = true;
        }
    }

    fn on_rto(&mut self, now: Instant) {
        self.retries += 1;
        self.stats.rto_count += 1;
        if self.retries > self.cfg.max_retries {
            self.fail(ConnectionError::TimedOut);
            return;
        }
        self.rto = (self.rto.saturating_mul(2)).min(self.cfg.max_rto);
        self.rexmit_at = Some(now + self.rto);
        self.rtt_seq = None;
        match self.state {
            State::SynSent | State::SynReceived => self.syn_pending = true,
            _ => {
                // RFC 5681 3.1 eqn. 4; go back to snd_una (RFC 6298 5.4)
                let flight = self.snd_max.since(self.snd_una);
                if let Congestion::NewReno = self.cfg.congestion {
                    self.ssthresh = (flight / 2).max(2 * self.eff_mss);
                    self.cwnd = self.eff_mss;
                }
                self.ca_acked = 0;
                self.snd_nxt = self.snd_una;
                self.in_recovery = false;
                self.dupacks = 0;
                // RFC 6675 5.1: what the peer held may have been reneged
                self.scoreboard.clear();
                self.lost_edge = self.snd_una;
                // RFC 6582 4.2: no fast retransmit on dup ACKs of the old flight
                self.recover = self.snd_max;
            }
        }
    }

    fn rtt_sample(&mut self, r: u64) {
        // RFC 6298 2.2, 2.3 (G, the clock granularity, is 1 us here)
        match self.srtt {
            None => {
                self.srtt = Some(r);
                self.rttvar = r / 2;
            }
            Some(s) => {
                self.rttvar = (3 * self.rttvar + s.abs_diff(r)) / 4;
                self.srtt = Some((7 * s + r) / 8);
            }
        }
        let s = self.srtt.unwrap_or(r);
        self.rto = (s + (4 * self.rttvar).max(1)).clamp(self.cfg.min_rto, self.cfg.max_rto);
    }

    // ---- receiving ----

    /// How far the right edge must be able to move before we move it.
    /// Unacknowledged bytes that make an ACK due at once: `ack_every`
    /// full segments, as many as fit a quarter of the receive buffer,
    /// never fewer than two.
    fn ack_threshold(&self) -> usize {
        let mss = self.rcv_mss.max(1);
        let quarter = self.recv.capacity() / 4 / mss;
        self.cfg.ack_every.min(quarter).max(2) * mss
    }

    fn window_step(&self) -> usize {
        (self.recv.capacity() / 2).min(usize::from(self.cfg.mss))
    }

    /// The window to advertise: receiver silly window avoidance
    /// (3.8.6.2.2) keeps the right edge where it was until it can move by
    /// min(buffer / 2, MSS); it never moves left.
    fn advertised_window(&self) -> usize {
        let free = self.recv.free();
        let cur = if self.rcv_adv > self.rcv_nxt {
            self.rcv_adv.since(self.rcv_nxt).min(free)
        } else {
            0
        };
        let w = if free >= cur + self.window_step() {
            free
        } else {
            cur
        };
        (w >> self.rcv_wscale).min(0xffff) << self.rcv_wscale
    }

    /// Process one segment addressed to this connection (the caller has
    /// verified the checksum and matched addresses and ports).
    pub fn handle_segment(&mut self, now: Instant, seg: &TcpRepr) {
        self.handle(now, seg, false);
    }

    /// [`Self::handle_segment`] for a segment whose TCP checksum is not
    /// verified yet ([`super::frame::parse_frame_deferred`]): in-order
    /// data for a receive ring that holds no out-of-order bytes (the bulk
    /// of a stream) is verified while it is copied into the ring, one pass
    /// over the payload instead of two; any other segment is verified
    /// first. False, with nothing changed, if the checksum fails.
    pub fn handle_segment_deferred(
        &mut self,
        now: Instant,
        seg: &TcpRepr,
        check: DeferredChecksum,
    ) -> bool {
        let n = seg.payload.len();
        let in_order = n > 0
            && seg.seq_number == self.rcv_nxt
            && n <= self.recv.free()
            && !self.recv.has_gaps()
            && matches!(
                self.state,
                State::Established | State::FinWait1 | State::FinWait2
            );
        if !in_order {
            if !check.verify(seg.payload) {
                return false;
            }
            self.handle(now, seg, false);
            return true;
        }
        // the copy lands in free space: nothing is taken in until verified
        if !check.verify_sum(self.recv.place_sum(seg.payload, 0)) {
            return false;
        }
        self.handle(now, seg, true);
        true
    }

    /// A segment; `placed`: its payload is already at the in-order end of
    /// the receive ring ([`RecvBuffer::place_sum`]).
    fn handle(&mut self, now: Instant, seg: &TcpRepr, placed: bool) {
        if seg.src_port != self.remote.port() || seg.dst_port != self.local.port() {
            return;
        }
        self.stats.segments_received += 1;
        match self.state {
            State::Closed => {
                if !seg.flags.rst() {
                    self.rst_pending = Some(if seg.flags.ack() {
                        Reset {
                            seq: seg.ack_number,
                            ack: None,
                        }
                    } else {
                        Reset {
                            seq: SeqNum(0),
                            ack: Some(seg.seq_number + seg.segment_len()),
                        }
                    });
                }
                return;
            }
            State::SynSent => return self.on_syn_sent(now, seg),
            _ => {}
        }
        let f = seg.flags;
        // our SYN-ACK was lost: the peer sends its SYN again
        if self.state == State::SynReceived && f.syn() && !f.ack() && seg.seq_number == self.irs {
            self.syn_pending = true;
            return;
        }

        // 3.10.7.4 first: sequence number acceptable?
        let seg_len = seg.segment_len();
        let wnd = self.recv.free();
        let seq = seg.seq_number;
        let in_wnd = |s: SeqNum| s >= self.rcv_nxt && s.since(self.rcv_nxt) < wnd;
        let acceptable = match (seg_len, wnd) {
            (0, 0) => seq == self.rcv_nxt,
            (0, _) => in_wnd(seq),
            (_, 0) => false,
            (l, _) => in_wnd(seq) || in_wnd(seq + (l - 1)),
        };
        // with a zero window, ACK and RST are still processed (3.10.7.4)
        let zero_window_ack = !acceptable && wnd == 0 && seq == self.rcv_nxt;
        if zero_window_ack && seg_len > 0 {
            // a window probe: the ACK we send tells the window
            self.ack_now = true;
        }
        if !acceptable && !zero_window_ack {
            if !f.rst() {
                self.ack_now = true;
                if self.state == State::TimeWait && f.fin() {
                    // the peer did not get our last ACK: restart 2 MSL
                    self.time_wait_at = Some(now + self.cfg.time_wait);
                }
            }
            return;
        }
        if let (Some((tsval, _)), false) = (seg.timestamp, f.rst()) {
            if seq <= self.rcv_nxt {
                self.ts_recent = tsval;
            }
        }

        // second: RST (RFC 5961 3.2: only an exact match resets)
        if f.rst() {
            if self.state == State::TimeWait {
                // RFC 1337: a RST does not end TIME-WAIT early with an error
                self.enter_closed();
            } else if seq == self.rcv_nxt {
                self.fail(ConnectionError::Reset);
            } else {
                self.stats.challenge_acks += 1;
                self.ack_now = true;
            }
            return;
        }
        // fourth: SYN in a synchronized state gets a challenge ACK (RFC 5961 4.2)
        if f.syn() {
            self.stats.challenge_acks += 1;
            self.ack_now = true;
            return;
        }
        // fifth: ACK
        if !f.ack() {
            return;
        }
        if self.state == State::SynReceived {
            if seg.ack_number > self.snd_una && seg.ack_number <= self.snd_max {
                self.state = self.established_state();
                self.snd_wnd = usize::from(seg.window_len) << self.snd_wscale;
                self.max_snd_wnd = self.max_snd_wnd.max(self.snd_wnd);
                self.snd_wl1 = seq;
                self.snd_wl2 = seg.ack_number;
            } else {
                self.rst_pending = Some(Reset {
                    seq: seg.ack_number,
                    ack: None,
                });
                return;
            }
        }
        if !self.process_ack(now, seg) {
            return;
        }
        if self.state == State::Closed {
            return;
        }
        if zero_window_ack {
            return;
        }

        // seventh: payload
        if !seg.payload.is_empty()
            && matches!(
                self.state,
                State::Established | State::FinWait1 | State::FinWait2
            )
        {
            self.on_data(now, seq, seg.payload, (placed, f.psh()));
        }
        // eighth: FIN (possibly beyond a hole: remembered until it fills)
        if f.fin() {
            let fin_seq = seq + seg.payload.len();
            if fin_seq >= self.rcv_nxt && fin_seq.since(self.rcv_nxt) <= self.recv.free() {
                self.peer_fin = Some(fin_seq);
            } else {
                self.ack_now = true;
            }
        }
        self.check_fin(now);
    }

    fn on_syn_sent(&mut self, now: Instant, seg: &TcpRepr) {
        let f = seg.flags;
        let mut ack_ok = false;
        if f.ack() {
            if seg.ack_number <= self.iss || seg.ack_number > self.snd_max {
                if !f.rst() {
                    self.rst_pending = Some(Reset {
                        seq: seg.ack_number,
                        ack: None,
                    });
                }
                return;
            }
            ack_ok = true;
        }
        if f.rst() {
            if ack_ok {
                self.fail(ConnectionError::Refused);
            }
            return;
        }
        if !f.syn() {
            return;
        }
        self.irs = seg.seq_number;
        self.rcv_nxt = seg.seq_number + 1;
        self.negotiate(seg);
        self.ts_recent = seg.timestamp.map_or(0, |t| t.0);
        // the window of a SYN is never scaled (RFC 7323 2.2)
        self.snd_wnd = usize::from(seg.window_len);
        self.max_snd_wnd = self.snd_wnd;
        self.snd_wl1 = seg.seq_number;
        self.snd_wl2 = seg.ack_number;
        if ack_ok {
            if let Some((s, t)) = self.rtt_seq.take() {
                if seg.ack_number > s {
                    self.rtt_sample(now.saturating_sub(t));
                }
            }
            if self.srtt.is_none() {
                // the SYN was retransmitted: no sample, drop the back-off
                self.rto = self.cfg.initial_rto;
            }
            self.snd_una = seg.ack_number;
            self.snd_nxt = self.snd_nxt.max(self.snd_una);
            self.rexmit_at = None;
            self.retries = 0;
            self.state = self.established_state();
            self.syn_pending = false;
            self.ack_now = true;
        } else {
            // simultaneous open
            self.state = State::SynReceived;
            self.syn_pending = true;
        }
    }

    /// The ACK field and window of a segment in a synchronized state.
    /// False if the segment must be dropped.
    #[inline(always)]
    fn process_ack(&mut self, now: Instant, seg: &TcpRepr) -> bool {
        let ack = seg.ack_number;
        if ack > self.snd_max {
            // acks something not yet sent
            self.ack_now = true;
            return false;
        }
        // RFC 5961 5.2: an ACK too far behind is not ours
        if ack < self.snd_una - self.max_snd_wnd.max(1) {
            self.ack_now = true;
            return false;
        }
        let seg_wnd = usize::from(seg.window_len) << self.snd_wscale;
        let flight = self.snd_nxt.since(self.snd_una);
        let advanced = ack > self.snd_una;
        if advanced {
            self.on_new_ack(now, ack);
        }
        if !seg.sack.is_empty() && self.sack_ok {
            // RFC 6675 2: with SACK, a duplicate ACK is one that SACKs
            // bytes not SACKed before, whatever else it changes
            if self.scoreboard.update(self.snd_una, self.snd_max, seg.sack) > 0 {
                self.on_dup_ack();
            }
        } else if !advanced
            && ack == self.snd_una
            && seg.payload.is_empty()
            && !seg.flags.syn()
            && !seg.flags.fin()
            && seg_wnd == self.snd_wnd
            && seg_wnd > 0
            && flight > 0
        {
            self.on_dup_ack();
        }
        if (self.dupacks > 0 || self.in_recovery || !self.scoreboard.is_empty()) && self.sack_ok {
            self.sack_recovery_on_ack();
        }
        // 3.10.7.4 window update, guarded against old segments
        if self.snd_wl1 < seg.seq_number || (self.snd_wl1 == seg.seq_number && self.snd_wl2 <= ack)
        {
            self.snd_wnd = seg_wnd;
            self.max_snd_wnd = self.max_snd_wnd.max(seg_wnd);
            self.snd_wl1 = seg.seq_number;
            self.snd_wl2 = ack;
            if seg_wnd > 0 {
                self.persist_at = None;
                self.probes = 0;
                self.persist_backoff = 0;
            }
        }
        // any ACK shows the peer alive while we probe
        if self.persist_at.is_some() || self.probe_pending {
            self.probes = 0;
        }
        true
    }

    /// The state a completed handshake leads to: FIN-WAIT-1 if the
    /// application closed meanwhile.
    fn established_state(&self) -> State {
        if self.fin_queued {
            State::FinWait1
        } else {
            State::Established
        }
    }

    fn fin_seq(&self) -> Option<SeqNum> {
        self.fin_queued.then(|| self.send_seq + self.send.len())
    }

    fn on_new_ack(&mut self, now: Instant, ack: SeqNum) {
        let mut acked = ack.since(self.snd_una);
        // SYN and FIN occupy sequence space but not the ring
        if self.snd_una == self.iss {
            acked = acked.saturating_sub(1);
        }
        let fin_acked = self.fin_seq().is_some_and(|f| ack > f);
        if fin_acked {
            acked = acked.saturating_sub(1);
        }
        let data_acked = acked.min(self.send.len());
        if !self.scoreboard.is_empty() {
            self.scoreboard.advance(ack);
        }
        self.send.consume(data_acked);
        self.send_seq += data_acked;
        self.stats.bytes_acked += data_acked as u64;
        if let Some((s, t)) = self.rtt_seq {
            if ack > s {
                self.rtt_seq = None;
                self.rtt_sample(now.saturating_sub(t));
            }
        }
        let mss = self.eff_mss;
        let reno = matches!(self.cfg.congestion, Congestion::NewReno);
        if self.in_recovery {
            if ack >= self.recover {
                // full ACK (RFC 6582 3.2 step 3, option 1); after SACK
                // recovery cwnd is already ssthresh (RFC 6675 5)
                self.in_recovery = false;
                self.dupacks = 0;
                if reno && !self.sack_ok {
                    let flight = self.snd_max.since(ack);
                    self.cwnd = self.ssthresh.min(flight.max(mss) + mss);
                }
            } else if self.sack_ok {
                // a partial ACK: the scoreboard says what to send next
                self.dupacks = 0;
            } else {
                // partial ACK: the next hole was lost too
                self.rexmit_one = true;
                if reno {
                    self.cwnd = self.cwnd.saturating_sub(acked).max(mss) + mss.min(acked);
                }
            }
        } else {
            self.dupacks = 0;
            if reno {
                if self.cwnd < self.ssthresh {
                    // slow start, RFC 3465 with L = 2 segments, or the
                    // stretch our own `ack_every` asks of a receiver: each
                    // stretch ACK then grows cwnd by all it covers
                    self.cwnd += acked.min(self.cfg.ack_every.max(2) * mss);
                } else {
                    self.ca_acked += acked;
                    if self.ca_acked >= self.cwnd {
                        self.ca_acked -= self.cwnd;
                        self.cwnd += mss;
                    }
                }
                self.cwnd = self.cwnd.min(1 << 30);
            }
        }
        self.snd_una = ack;
        if self.snd_nxt < self.snd_una {
            self.snd_nxt = self.snd_una;
        }
        self.retries = 0;
        if self.srtt.is_some() {
            // drop the back-off once the path answers (RFC 6298 5.7 recomputes it)
            let s = self.srtt.unwrap_or(0);
            self.rto = (s + (4 * self.rttvar).max(1)).clamp(self.cfg.min_rto, self.cfg.max_rto);
        }
        self.rexmit_at = if self.snd_una == self.snd_max {
            None
        } else {
            Some(now + self.rto)
        };
        if fin_acked {
            match self.state {
                State::FinWait1 => self.state = State::FinWait2,
                State::Closing => self.enter_time_wait(now),
                State::LastAck => self.enter_closed(),
                _ => {}
            }
        }
    }

    fn on_dup_ack(&mut self) {
        self.stats.dup_acks += 1;
        self.dupacks += 1;
        if self.sack_ok {
            // the pipe, not cwnd inflation, counts what left the network
            return;
        }
        let mss = self.eff_mss;
        let reno = matches!(self.cfg.congestion, Congestion::NewReno);
        if self.in_recovery {
            if reno {
                // each dup ACK means a segment left the network
                self.cwnd += mss;
            }
        } else if self.dupacks as usize == DUP_THRESH && self.snd_una >= self.recover {
            // RFC 6582 3.2 step 2: enter fast recovery
            self.enter_recovery();
            if reno {
                self.cwnd = self.ssthresh + 3 * mss;
            }
        }
    }

    /// Fast retransmit: the segment at snd_una goes again at once, the
    /// window halves (RFC 5681 3.2 steps 2-3; RFC 6675 5 step 4).
    #[cold]
    fn enter_recovery(&mut self) {
        let mss = self.eff_mss;
        let flight = self.snd_max.since(self.snd_una);
        self.stats.fast_retransmits += 1;
        self.in_recovery = true;
        self.recover = self.snd_max;
        self.rexmit_one = true;
        self.rtt_seq = None;
        if let Congestion::NewReno = self.cfg.congestion {
            self.ssthresh = (flight / 2).max(2 * mss);
            self.cwnd = self.ssthresh;
        }
    }

    /// RFC 6675 5 after each ACK (the scoreboard updated): enter recovery
    /// on DupThresh duplicate ACKs or a lost hole at snd_una; in recovery,
    /// recompute what is lost and the pipe.
    #[cold]
    fn sack_recovery_on_ack(&mut self) {
        let una = self.snd_una;
        self.lost_edge = self.scoreboard.lost_edge(una, self.eff_mss);
        if !self.in_recovery {
            let dup = self.dupacks as usize >= DUP_THRESH;
            if una >= self.recover && una < self.snd_max && (dup || self.lost_edge > una) {
                self.enter_recovery();
                self.high_rxt = una;
            } else {
                return;
            }
        }
        self.high_rxt = self.high_rxt.max(una);
        self.pipe = self
            .scoreboard
            .pipe(una, self.snd_max, self.lost_edge, self.high_rxt);
    }

    /// `placed`: the payload is already in the ring ([`Self::handle_segment_deferred`]);
    /// `pushed`: the segment carries PSH, the end of what the sender had.
    fn on_data(
        &mut self,
        now: Instant,
        seq: SeqNum,
        payload: &[u8],
        (placed, pushed): (bool, bool),
    ) {
        // cut to what lies in [rcv_nxt, rcv_nxt + free)
        let (offset, skip) = if seq >= self.rcv_nxt {
            (seq.since(self.rcv_nxt), 0)
        } else {
            (0, self.rcv_nxt.since(seq))
        };
        if skip >= payload.len() {
            self.ack_now = true; // all old: a duplicate, ack it at once
            return;
        }
        let room = self.recv.free().saturating_sub(offset);
        let data = &payload[skip..];
        let data = &data[..data.len().min(room)];
        if data.is_empty() {
            self.ack_now = true;
            return;
        }
        let had_gaps = self.recv.has_gaps();
        let taken = if placed {
            // what handle_segment_deferred copied: all of it, in order
            debug_assert!(offset == 0 && data.len() == payload.len());
            Some(self.recv.commit_placed(data.len()))
        } else {
            self.recv.write_at(offset, data)
        };
        match taken {
            None => {
                self.stats.ooo_dropped += 1;
                self.ack_now = true;
            }
            Some(0) => {
                // out of order: a duplicate ACK at once tells the sender (RFC 5681 4.2)
                self.ack_now = true;
                if self.sack_ok {
                    self.note_out_of_order(offset);
                }
            }
            Some(adv) => {
                self.rcv_nxt += adv;
                self.stats.bytes_received += adv as u64;
                self.rcv_mss = self.rcv_mss.max(data.len());
                self.unacked_bytes += adv;
                // at once: a hole filled, `ack_every` full segments (every
                // second one once the sender has pushed all it had: no
                // more are coming to share the ACK), or the window (nearly)
                // closed, so the sender learns it now
                if had_gaps
                    || self.cfg.delayed_ack == 0
                    || self.unacked_bytes >= self.ack_threshold()
                    || (pushed && self.unacked_bytes >= 2 * self.rcv_mss)
                    || skip > 0
                    || self.recv.free() < self.window_step()
                {
                    self.ack_now = true;
                } else if self.delack_at.is_none() {
                    self.delack_at = Some(now + self.cfg.delayed_ack);
                }
            }
        }
    }

    /// Out-of-order data arrived at `offset` past rcv_nxt: its range goes
    /// first in the next SACK blocks, ahead of the ones reported before
    /// (which another arrival in the same range no longer stands for).
    #[cold]
    fn note_out_of_order(&mut self, offset: usize) {
        let Some(&(start, end)) = self
            .recv
            .ranges()
            .iter()
            .find(|r| r.0 <= offset && offset < r.1)
        else {
            return;
        };
        let (start, end) = (self.rcv_nxt + start, self.rcv_nxt + end);
        let mut recent = [None; SACK_MAX_BLOCKS];
        recent[0] = Some(self.rcv_nxt + offset);
        let older = self.sack_recent.iter().flatten();
        let others = older.filter(|&&s| s < start || s >= end);
        for (slot, &s) in recent[1..].iter_mut().zip(others) {
            *slot = Some(s);
        }
        self.sack_recent = recent;
    }

    /// SACK blocks for what the receive ring holds beyond a hole (RFC 2018
    /// 4), encoded into `buf`: the range of the latest arrival first, then
    /// those of the arrivals before it, newest first, then the others in
    /// order.
    #[cold]
    fn sack_blocks<'b>(&self, buf: &'b mut [u8; SACK_BUF]) -> SackBlocks<'b> {
        let ranges = self.recv.ranges();
        let mut used = [usize::MAX; SACK_MAX_BLOCKS];
        let mut n = 0;
        let recent = self.sack_recent.iter().flatten().filter_map(|&s| {
            let off = usize::try_from(s.diff(self.rcv_nxt)).ok()?;
            ranges.iter().position(|r| r.0 <= off && off < r.1)
        });
        for i in recent.chain(0..ranges.len()) {
            if n == SACK_MAX_BLOCKS {
                break;
            }
            if !used.contains(&i) {
                used[n] = i;
                n += 1;
            }
        }
        let blocks = used[..n].iter().map(|&i| {
            let (start, end) = ranges[i];
            (self.rcv_nxt + start, self.rcv_nxt + end)
        });
        SackBlocks::encode(blocks, buf)
    }

    fn check_fin(&mut self, now: Instant) {
        if self.fin_received || self.peer_fin != Some(self.rcv_nxt) {
            return;
        }
        match self.state {
            State::Established | State::FinWait1 | State::FinWait2 => {}
            _ => return,
        }
        self.fin_received = true;
        self.rcv_nxt += 1;
        self.ack_now = true;
        self.state = match self.state {
            State::Established => State::CloseWait,
            State::FinWait1 => {
                if self.fin_seq().is_some_and(|f| self.snd_una > f) {
                    self.enter_time_wait(now);
                    State::TimeWait
                } else {
                    State::Closing
                }
            }
            State::FinWait2 => {
                self.enter_time_wait(now);
                State::TimeWait
            }
            s => s,
        };
    }

    fn enter_time_wait(&mut self, now: Instant) {
        self.state = State::TimeWait;
        self.rexmit_at = None;
        self.persist_at = None;
        self.time_wait_at = Some(now + self.cfg.time_wait);
    }

    // ---- sending ----

    /// Write the next segment to send into `buf` (TCP header and payload,
    /// checksum over the connection's addresses filled), or None if there
    /// is nothing to send now. `buf` should hold an MSS plus 60 bytes;
    /// a shorter one gets shorter segments. Inlined, see
    /// [`super::frame::poll_transmit_frame`].
    #[inline]
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<Transmit> {
        if buf.len() < tcp::MAX_HEADER_LEN {
            return None;
        }
        if let Some(r) = self.rst_pending.take() {
            let mut flags = TcpFlags::RST;
            let ack = match r.ack {
                Some(a) => {
                    flags |= TcpFlags::ACK;
                    a
                }
                None => SeqNum(0),
            };
            let repr = TcpRepr::new(self.local.port(), self.remote.port(), r.seq, ack, flags);
            return Some(self.emit(buf, &repr, 0));
        }
        match self.state {
            State::Closed => return None,
            State::SynSent | State::SynReceived => {
                if self.syn_pending {
                    return Some(self.send_syn(now, buf));
                }
                return None;
            }
            _ => {}
        }
        if self.state != State::TimeWait {
            if self.in_recovery && self.sack_ok {
                if let Some(t) = self.send_sack_recovery(now, buf) {
                    return Some(t);
                }
            } else {
                if self.rexmit_one {
                    self.rexmit_one = false;
                    if let Some(t) = self.send_data(now, buf, self.snd_una, usize::MAX, false) {
                        return Some(t);
                    }
                }
                if let Some(t) = self.send_new(now, buf, false) {
                    return Some(t);
                }
            }
            if self.probe_pending {
                self.probe_pending = false;
                self.stats.window_probes += 1;
                self.persist_backoff += 1;
                // one byte beyond the closed window; snd_nxt stays (3.8.6.1)
                if let Some(t) = self.send_data(now, buf, self.snd_nxt, 1, true) {
                    self.persist_at = Some(now + self.persist_interval());
                    return Some(t);
                }
            }
            self.arm_persist(now);
        }
        if self.ack_now {
            let mut sack = [0; SACK_BUF];
            let repr = self.header(self.snd_nxt, TcpFlags::ACK, now, &mut sack);
            return Some(self.emit(buf, &repr, 0));
        }
        None
    }

    fn persist_interval(&self) -> u64 {
        let base = self.rto.max(self.cfg.min_rto);
        (base << self.persist_backoff.min(16)).min(self.cfg.max_rto)
    }

    fn arm_persist(&mut self, now: Instant) {
        let unsent = self.data_end() > self.snd_nxt;
        if unsent
            && self.snd_wnd == 0
            && self.snd_nxt == self.snd_una
            && self.rexmit_at.is_none()
            && self.persist_at.is_none()
            && !self.probe_pending
        {
            self.persist_at = Some(now + self.persist_interval());
        }
    }

    fn data_end(&self) -> SeqNum {
        self.send_seq + self.send.len()
    }

    /// RFC 6675 5 (C) with NextSeg: while cwnd - pipe allows a segment,
    /// a lost hole, else new data, else a hole below the highest SACKed
    /// byte; the first retransmission of a recovery goes regardless.
    #[cold]
    fn send_sack_recovery(&mut self, now: Instant, buf: &mut [u8]) -> Option<Transmit> {
        let una = self.snd_una;
        if self.rexmit_one {
            self.rexmit_one = false;
            let end = self
                .scoreboard
                .blocks()
                .first()
                .map_or(self.snd_max, |b| b.0);
            if let Some(t) = self.retransmit_hole(now, buf, una, end) {
                return Some(t);
            }
        }
        if self.cwnd.saturating_sub(self.pipe) < self.eff_mss {
            return None;
        }
        if let Some((s, e)) = self
            .scoreboard
            .next_hole(una, self.high_rxt, self.lost_edge)
        {
            return self.retransmit_hole(now, buf, s, e);
        }
        if let Some(t) = self.send_new(now, buf, true) {
            self.pipe += t.payload_len.max(1);
            return Some(t);
        }
        let high = self.scoreboard.high_sacked()?;
        let (s, e) = self.scoreboard.next_hole(una, self.high_rxt, high)?;
        self.retransmit_hole(now, buf, s, e)
    }

    /// One segment of the hole [seq, end) again, counted in the pipe.
    fn retransmit_hole(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        seq: SeqNum,
        end: SeqNum,
    ) -> Option<Transmit> {
        let t = self.send_data(now, buf, seq, end.since(seq), false)?;
        let sent = t.payload_len + usize::from(t.flags.fin());
        self.high_rxt = self.high_rxt.max(seq + sent);
        self.pipe += sent;
        self.stats.sack_recovery_retransmits += 1;
        Some(t)
    }

    /// New data (or data again after a timeout) within the windows; in
    /// SACK `recovery` the caller checked cwnd against the pipe, and only
    /// the peer's window limits here.
    #[inline(always)]
    fn send_new(&mut self, now: Instant, buf: &mut [u8], recovery: bool) -> Option<Transmit> {
        let end = self.data_end();
        let avail = if end > self.snd_nxt {
            end.since(self.snd_nxt)
        } else {
            0
        };
        let fin_unsent = self.fin_seq().is_some_and(|f| self.snd_nxt <= f);
        if avail == 0 && !fin_unsent {
            return None;
        }
        let flight = self.snd_nxt.since(self.snd_una);
        let usable = if recovery {
            self.snd_wnd
                .saturating_sub(flight)
                .min(self.cwnd.saturating_sub(self.pipe))
        } else {
            self.cwnd.min(self.snd_wnd).saturating_sub(flight)
        };
        let len = avail.min(self.eff_mss).min(usable);
        if len == 0 && avail > 0 {
            return None;
        }
        // sender silly window avoidance (3.8.6.2.1), no Nagle: a short
        // segment goes only if it is the end of the queued data, at least
        // half the largest window the peer has offered, or nothing is in
        // flight (no ACK would come to release it)
        if len < self.eff_mss && len < avail && len * 2 < self.max_snd_wnd && flight > 0 {
            return None;
        }
        if len > 0 {
            if let Some(p) = &mut self.pacer {
                let at = p.ready_at(now, len);
                if at > now {
                    self.pace_at = Some(at);
                    return None;
                }
            }
        }
        self.send_data(now, buf, self.snd_nxt, len, false)
    }

    /// A segment from `seq` with up to `max` payload bytes (and the FIN if
    /// it ends the stream). `probe`: leave snd_nxt where it is.
    fn send_data(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        seq: SeqNum,
        max: usize,
        probe: bool,
    ) -> Option<Transmit> {
        if seq < self.send_seq {
            // only a FIN-only segment sits before the ring's start
            return None;
        }
        let offset = seq.since(self.send_seq);
        let mut sack = [0; SACK_BUF];
        let mut repr = self.header(seq, TcpFlags::ACK, now, &mut sack);
        let h = repr.header_len();
        let room = buf.len() - h;
        let avail = self.send.len().saturating_sub(offset);
        // eff_mss allows for timestamps only: SACK blocks take payload room
        let mss = if repr.sack.is_empty() {
            self.eff_mss
        } else {
            let ts = if repr.timestamp.is_some() {
                TS_OPTION_LEN
            } else {
                0
            };
            let sack = h - tcp::HEADER_LEN - ts;
            self.eff_mss - sack.min(self.eff_mss - 1)
        };
        let len = avail.min(max).min(mss).min(room);
        let fin = self.fin_seq().is_some_and(|f| seq + len == f) && !probe;
        if fin {
            repr.flags |= TcpFlags::FIN;
        }
        if len == 0 && !fin {
            return None;
        }
        // PUSH on the segment that empties what the application queued
        // (RFC 9293 3.9.1): its receiver need not wait for more to ACK
        if len > 0 && seq + len == self.data_end() {
            repr.flags |= TcpFlags::PSH;
        }
        let end = seq + len + usize::from(fin);
        let retransmit = seq < self.snd_max;
        if retransmit {
            self.stats.retransmits += 1;
            let new_bytes = if end > self.snd_max {
                end.since(self.snd_max)
            } else {
                0
            };
            self.stats.bytes_retransmitted += (len - new_bytes.min(len)) as u64;
            self.stats.bytes_sent += new_bytes.min(len) as u64;
        } else {
            self.stats.bytes_sent += len as u64;
            if self.rtt_seq.is_none() && !probe {
                self.rtt_seq = Some((seq, now));
            }
        }
        if !probe {
            if end > self.snd_nxt {
                self.snd_nxt = end;
            }
            if self.rexmit_at.is_none() {
                self.rexmit_at = Some(now + self.rto);
            }
            if let Some(p) = &mut self.pacer {
                p.take(len);
            }
        }
        if end > self.snd_max {
            self.snd_max = end;
        }
        Some(self.emit(buf, &repr, len))
    }

    fn send_syn(&mut self, now: Instant, buf: &mut [u8]) -> Transmit {
        self.syn_pending = false;
        let passive = self.state == State::SynReceived;
        let mut flags = TcpFlags::SYN;
        if passive {
            flags |= TcpFlags::ACK;
        }
        let mut r = TcpRepr::new(
            self.local.port(),
            self.remote.port(),
            self.iss,
            self.rcv_nxt,
            flags,
        );
        r.window_len = self.recv.free().min(0xffff) as u16;
        r.max_seg_size = Some(self.cfg.mss);
        // a passive side only answers the options the SYN carried
        if self.cfg.window_scaling && (!passive || self.ws_peer) {
            r.window_scale = Some(self.rcv_wscale);
        }
        if self.cfg.timestamps && (!passive || self.ts_enabled) {
            r.timestamp = Some((self.ts_now(now), self.ts_recent));
        }
        r.sack_permitted = self.cfg.sack && (!passive || self.sack_peer);
        if self.snd_max == self.iss {
            self.rtt_seq = Some((self.iss, now));
        } else {
            self.stats.retransmits += 1;
            self.rtt_seq = None;
        }
        self.snd_nxt = self.iss + 1;
        self.snd_max = self.snd_max.max(self.snd_nxt);
        if self.rexmit_at.is_none() {
            self.rexmit_at = Some(now + self.rto);
        }
        self.emit(buf, &r, 0)
    }

    fn ts_now(&self, now: Instant) -> u32 {
        // a millisecond clock, as RFC 7323 5.4 suggests
        (now / 1000) as u32
    }

    /// A header for a segment at `seq` carrying our ACK, window and
    /// timestamps.
    #[inline(always)]
    fn header<'b>(
        &self,
        seq: SeqNum,
        flags: TcpFlags,
        now: Instant,
        sack: &'b mut [u8; SACK_BUF],
    ) -> TcpRepr<'b> {
        let mut r = TcpRepr::new(
            self.local.port(),
            self.remote.port(),
            seq,
            self.rcv_nxt,
            flags,
        );
        r.window_len = (self.advertised_window() >> self.rcv_wscale) as u16;
        if self.ts_enabled {
            r.timestamp = Some((self.ts_now(now), self.ts_recent));
        }
        if self.sack_ok && self.recv.has_gaps() {
            r.sack = self.sack_blocks(sack);
        }
        r
    }

    /// Write `repr` and `len` payload bytes from the send ring at the
    /// segment's sequence number into `buf`; bookkeeping common to every
    /// segment (an ACK goes out with it).
    fn emit(&mut self, buf: &mut [u8], repr: &TcpRepr, len: usize) -> Transmit {
        let h = repr.emit_header(buf);
        let size = h + len;
        // the payload is copied from the ring and summed in one pass
        let (src, dst) = (self.local.ip(), self.remote.ip());
        let acc = checksum::pseudo_header(src, dst, ip_protocol::TCP, size as u32);
        let mut acc = checksum::add(acc, repr.header_sum());
        if len > 0 {
            let offset = repr.seq_number.since(self.send_seq);
            acc = self.send.read_at_sum(offset, &mut buf[h..size], acc);
        }
        buf[16..18].copy_from_slice(&checksum::finish(acc).to_be_bytes());
        if repr.flags.ack() {
            self.ack_now = false;
            self.delack_at = None;
            self.unacked_bytes = 0;
            // a SYN's window is not scaled (RFC 7323 2.2)
            let shift = if repr.flags.syn() { 0 } else { self.rcv_wscale };
            let edge = self.rcv_nxt + (usize::from(repr.window_len) << shift);
            if edge > self.rcv_adv {
                self.rcv_adv = edge;
            }
        }
        self.stats.segments_sent += 1;
        Transmit {
            size,
            seq: repr.seq_number,
            payload_len: len,
            flags: repr.flags,
        }
    }
}
