//! One connection's application side: the prefix or data header it writes
//! or reads first, then bulk bytes or request/response messages, its
//! progress and its end. Pure bookkeeping over a [`Connection`]: the
//! worker owns the rings and calls [`FlowState::step`] once a pass.

use super::plan::{Flow, Open, RunPlan, StreamPlan, StreamResult, PATTERN_PERIOD};
use crate::datapath::socket::{FlowHeader, HEADER_LEN};
use crate::spec::FlowId;
use crate::tcplite::{Connection, Source, State};
use sha2::{Digest, Sha256};
use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::Instant;

/// What every worker of an end shares: looked at once per connection, not
/// per packet.
#[derive(Default)]
pub(super) struct Shared {
    /// Flows whose data header has arrived, each accepted once.
    pub seen_ids: Mutex<Vec<FlowId>>,
    /// Accept plans claimed so far, in plan order, by whichever worker
    /// owns the arriving connection.
    pub accepts_claimed: std::sync::atomic::AtomicUsize,
}

/// One pass's clock and limits, the same for every connection of a worker.
pub(super) struct Pass<'a> {
    pub plan: &'a RunPlan,
    /// Microseconds on the connections' clock, and the same instant.
    pub now: u64,
    pub now_i: Instant,
    /// The measurement's start, once the gate has opened.
    pub start: Option<Instant>,
    /// When senders stop (`--duration`).
    pub limit_at: Option<Instant>,
    /// The payload pattern: written from (rr) or queued by reference (bulk).
    pub source: &'a Source,
    pub shared: &'a Shared,
}

/// An rr flow's state.
#[derive(Default)]
struct RrState {
    /// Client: when each request in flight was written.
    inflight: std::collections::VecDeque<Instant>,
    /// Bytes of the message being read.
    partial: usize,
    /// Server: response bytes owed.
    owed: u64,
    transactions: u64,
    hist: Option<hdrhistogram::Histogram<u64>>,
}

/// A connection and what its application has done.
pub(super) struct FlowState {
    /// Its place in the plan.
    pub index: usize,
    pub plan: StreamPlan,
    pub conn: Option<Connection>,
    pub done: bool,
    rr: RrState,
    /// Header bytes still to read, and what was read.
    header_left: usize,
    header: Vec<u8>,
    /// What arrived of the plan's `expect` bytes.
    expected: Vec<u8>,
    id: Option<FlowId>,
    prefix_left: usize,
    /// Payload bytes handed to the connection (sender) or read (receiver).
    moved: u64,
    hash: Option<Sha256>,
    last_progress: Instant,
    last_byte: Instant,
    /// Bytes acknowledged when last looked at (senders).
    acked: u64,
    closed_write: bool,
    error: Option<String>,
}

impl FlowState {
    /// Plan `index`, with its connection if it is already open(ing).
    pub fn new(index: usize, run: &RunPlan, conn: Option<Connection>, t0: Instant) -> FlowState {
        let plan = run.streams[index].clone();
        FlowState {
            index,
            rr: RrState::default(),
            header_left: if plan.header.is_some() { HEADER_LEN } else { 0 },
            header: Vec::new(),
            expected: Vec::new(),
            id: None,
            prefix_left: plan.prefix.len(),
            plan,
            conn,
            moved: 0,
            hash: run.verify.then(Sha256::new),
            last_progress: t0,
            last_byte: t0,
            acked: 0,
            closed_write: false,
            error: None,
            done: false,
        }
    }

    /// Whether a SYN from `src` to our `port` is the one this accept plan waits for.
    pub fn accepts(plan: &StreamPlan, src: std::net::IpAddr, port: u16) -> bool {
        matches!(plan.open, Open::Accept { local, from } if local == port && from.is_none_or(|a| a == src))
    }

    /// The gate opened at `start`: times count from there.
    pub fn started(&mut self, start: Instant, now_i: Instant) {
        self.last_byte = start;
        self.last_progress = now_i.max(start);
    }

    /// A segment arrived for it.
    pub fn touched(&mut self, now_i: Instant) {
        self.last_progress = now_i;
    }

    /// Stop at once: the run was aborted.
    pub fn abort(&mut self, why: &str) {
        if !self.done {
            self.error.get_or_insert_with(|| why.into());
            if let Some(c) = &mut self.conn {
                c.abort();
            }
        }
    }

    /// Timers, then application bytes; true if anything happened.
    pub fn step(&mut self, p: &Pass, scratch: &mut [u8]) -> bool {
        let Some(c) = &mut self.conn else {
            return false;
        };
        let mut busy = false;
        // Timers run for finished connections too: TIME-WAIT and LAST-ACK
        // still answer the peer while the worker lingers.
        if c.poll_timeout().is_some_and(|t| t <= p.now) {
            c.on_timeout(p.now);
            busy = true;
        }
        if self.done || !c.is_established() {
            return busy;
        }
        if self.prefix_left > 0 {
            let at = self.plan.prefix.len() - self.prefix_left;
            let k = c.write(&self.plan.prefix[at..]);
            self.prefix_left -= k;
            busy |= k > 0;
        }
        if self.expected.len() < self.plan.expect.len() {
            busy |= self.read_expected(p);
            if self.expected.len() < self.plan.expect.len() || self.done {
                return busy;
            }
        }
        if self.header_left > 0 {
            busy |= self.read_header(p);
            if self.header_left > 0 || self.done {
                return busy;
            }
        }
        if p.plan.rr.is_some() {
            return busy | self.step_rr(p, scratch);
        }
        busy |= self.step_bulk(p);
        let c = self.conn.as_mut().expect("checked");
        if self.plan.flow == Flow::Receive && c.read_finished() && !self.closed_write {
            c.close();
            self.closed_write = true;
        }
        busy
    }

    /// Read the bytes the peer must send first (an iperf3 cookie): others
    /// end the connection, the right ones count it ready.
    fn read_expected(&mut self, p: &Pass) -> bool {
        let c = self.conn.as_mut().expect("established");
        let mut b = [0u8; 64];
        let want = (self.plan.expect.len() - self.expected.len()).min(b.len());
        let k = c.read(&mut b[..want]);
        self.expected.extend_from_slice(&b[..k]);
        if !self.plan.expect.starts_with(&self.expected) {
            c.abort();
            self.error = Some("a data connection opened with another test's cookie".into());
            self.done = true;
            return true;
        }
        if self.expected.len() == self.plan.expect.len() {
            if let Some(r) = &p.plan.ready {
                r.fetch_add(1, Ordering::Relaxed);
            }
        }
        k > 0
    }

    /// Read the data header: it names the flow, and so which way the bytes
    /// go and how many; a bad one or another test's ends the connection.
    fn read_header(&mut self, p: &Pass) -> bool {
        let c = self.conn.as_mut().expect("established");
        let mut b = [0u8; HEADER_LEN];
        let k = c.read(&mut b[..self.header_left]);
        self.header.extend_from_slice(&b[..k]);
        self.header_left -= k;
        if self.header_left > 0 {
            return k > 0;
        }
        let h = <[u8; HEADER_LEN]>::try_from(&self.header[..])
            .ok()
            .and_then(|h| FlowHeader::decode(&h).ok())
            .filter(|h| Some(h.cookie) == self.plan.header)
            .filter(|h| {
                // a flow of this test, not named before
                let mut seen = p.shared.seen_ids.lock().expect("not poisoned");
                let fresh = (p.plan.expect_ids.is_empty() || p.plan.expect_ids.contains(&h.id))
                    && !seen.contains(&h.id);
                if fresh {
                    seen.push(h.id);
                }
                fresh
            });
        let Some(h) = h else {
            c.abort();
            self.error =
                Some("a data connection sent a bad header or another test's cookie".into());
            self.done = true;
            return true;
        };
        // The controller's send is our receive, and the reverse.
        self.plan.flow = match h.id.direction {
            crate::spec::Direction::Send => Flow::Receive,
            _ => Flow::Send,
        };
        self.plan.bytes = p
            .plan
            .stream_bytes
            .get(usize::from(h.id.stream))
            .copied()
            .flatten();
        self.id = Some(h.id);
        if let Some(r) = &p.plan.ready {
            r.fetch_add(1, Ordering::Relaxed);
        }
        true
    }

    /// Request/response: the `Send` end is the client, keeping `burst`
    /// requests in flight and timing each; the server answers each request.
    fn step_rr(&mut self, p: &Pass, scratch: &mut [u8]) -> bool {
        let (req, resp, burst) = p.plan.rr.expect("rr");
        let c = self.conn.as_mut().expect("established");
        let out_of_time = p.limit_at.is_some_and(|t| p.now_i >= t);
        let (req, resp) = (req as usize, resp as usize);
        let r = &mut self.rr;
        let client = self.plan.flow == Flow::Send;
        let (incoming, outgoing) = if client { (resp, req) } else { (req, resp) };
        let mut busy = false;
        loop {
            let k = c.read(scratch);
            if k == 0 {
                break;
            }
            busy = true;
            self.last_progress = p.now_i;
            r.partial += k;
            while r.partial >= incoming {
                r.partial -= incoming;
                r.transactions += 1;
                self.last_byte = p.now_i;
                if !client {
                    r.owed += outgoing as u64;
                    continue;
                }
                if let Some(c) = p.plan.counters.get(self.index) {
                    c.add(1);
                }
                let done_at = Instant::now();
                if let Some(t0) = r.inflight.pop_front() {
                    let ns = done_at.duration_since(t0).as_nanos() as u64;
                    let h = r
                        .hist
                        .get_or_insert_with(crate::metrics::latency::new_histogram);
                    crate::metrics::latency::record(h, ns);
                    if let Some(Some(sh)) = p.plan.interval_latency.get(self.index) {
                        if let Ok(mut sh) = sh.lock() {
                            crate::metrics::latency::record(&mut sh, ns);
                        }
                    }
                }
            }
        }
        if client && p.start.is_some() && self.prefix_left == 0 {
            if !out_of_time {
                while r.inflight.len() < burst as usize && c.send_capacity() >= outgoing {
                    // Stamped before the write: the answer may arrive
                    // within this same pass.
                    r.inflight.push_back(Instant::now());
                    c.write(&p.source.bytes()[..outgoing]);
                    busy = true;
                }
            } else if r.inflight.is_empty() && !self.closed_write {
                c.close();
                self.closed_write = true;
            }
        }
        while r.owed > 0 {
            let want = (r.owed.min(p.source.bytes().len() as u64) as usize).min(c.send_capacity());
            let k = if want > 0 {
                c.write(&p.source.bytes()[..want])
            } else {
                0
            };
            if k == 0 {
                break;
            }
            r.owed -= k as u64;
            busy = true;
        }
        if !client && c.read_finished() && r.owed == 0 && !self.closed_write {
            c.close();
            self.closed_write = true;
        }
        busy
    }

    /// A bulk stream: the sender writes the pattern up to its limit, then
    /// closes; the receiver reads (and hashes) everything.
    fn step_bulk(&mut self, p: &Pass) -> bool {
        let c = self.conn.as_mut().expect("established");
        let limit = self.plan.bytes.or(p.plan.bytes);
        match self.plan.flow {
            Flow::Send if p.start.is_none() => false,
            Flow::Send => {
                let out_of_time = p.limit_at.is_some_and(|t| p.now_i >= t);
                let left = limit.map_or(u64::MAX, |b| b.saturating_sub(self.moved));
                if self.prefix_left == 0 && !out_of_time && left > 0 {
                    let off = (self.moved % PATTERN_PERIOD as u64) as usize;
                    let want = c
                        .send_capacity()
                        .min(p.source.bytes().len() - off)
                        .min(left.min(usize::MAX as u64) as usize);
                    if want == 0 {
                        return false;
                    }
                    // the pattern never changes: queued by reference,
                    // copied once, into the frame
                    let k = c.write_ref(p.source, self.moved, want);
                    if let Some(h) = &mut self.hash {
                        h.update(&p.source.bytes()[off..off + k]);
                    }
                    self.moved += k as u64;
                    k > 0
                } else {
                    if self.prefix_left == 0 && !self.closed_write {
                        c.close();
                        self.closed_write = true;
                    }
                    false
                }
            }
            Flow::Receive
                if p.plan.receiver_limits
                    && (p.limit_at.is_some_and(|t| p.now_i >= t)
                        || limit.is_some_and(|b| self.moved >= b)) =>
            {
                // A receiver with its own limit (a plain source that would
                // send for ever) ends the connection itself.
                if !self.closed_write {
                    c.abort();
                    self.closed_write = true;
                    self.done = true;
                }
                false
            }
            Flow::Receive => {
                let mut busy = false;
                loop {
                    // hashed (or only counted) where they lie in the ring
                    let hash = &mut self.hash;
                    let k = c.read_in_place(usize::MAX, |b| {
                        if let Some(h) = hash {
                            h.update(b);
                        }
                    });
                    if k == 0 {
                        break busy;
                    }
                    busy = true;
                    self.moved += k as u64;
                    if let Some(c) = p.plan.counters.get(self.index) {
                        c.add(k as u64);
                    }
                    self.last_byte = p.now_i;
                    self.last_progress = p.now_i;
                }
            }
        }
    }

    /// Progress, ends and failures: idle and hard limits, the connection's
    /// own error, a sender's acknowledged bytes.
    pub fn check(&mut self, p: &Pass, t0: Instant, stopping: bool) {
        if self.done {
            return;
        }
        let plan = p.plan;
        let now_i = p.now_i;
        // Before the start an established connection waits by design;
        // only one still opening can stall.
        let waiting = p.start.is_none() && self.conn.as_ref().is_some_and(|c| c.is_established());
        let idle = !waiting && now_i.duration_since(self.last_progress) >= plan.idle;
        if idle
            && self
                .conn
                .as_ref()
                .is_some_and(|c| !matches!(c.state(), State::Closed | State::TimeWait))
        {
            self.fail(format!(
                "no progress for {:.0} s: the peer stalled or vanished",
                plan.idle.as_secs_f64()
            ));
            return;
        }
        if let Some(c) = &self.conn {
            if let Some(e) = c.error() {
                self.error.get_or_insert_with(|| e.to_string());
                self.done = true;
            } else if matches!(c.state(), State::Closed | State::TimeWait) {
                self.done = true;
            }
            let acked = c.bytes_acked();
            if self.plan.flow == Flow::Send && plan.rr.is_none() && acked > self.acked {
                if let Some(c) = plan.counters.get(self.index) {
                    // payload only: the prefix is acknowledged first
                    let pre = self.plan.prefix.len() as u64;
                    c.add(acked.saturating_sub(pre) - self.acked.saturating_sub(pre));
                }
                self.acked = acked;
                self.last_byte = now_i;
                self.last_progress = now_i;
            }
        } else if idle {
            self.error = Some(format!(
                "no connection arrived in {:.0} s",
                plan.idle.as_secs_f64()
            ));
            self.done = true;
        }
        if !self.done && now_i.duration_since(p.start.unwrap_or(t0)) >= plan.hard {
            self.fail("the test ran past its time limit".into());
        }
        if self.error.is_some() && stopping {
            self.fail("aborted".into());
        }
    }

    fn fail(&mut self, why: String) {
        self.error.get_or_insert(why);
        if let Some(c) = &mut self.conn {
            c.abort();
        }
        self.done = true;
    }

    /// Fully closed (or never opened): nothing more will leave for it.
    pub fn settled(&self) -> bool {
        self.conn.as_ref().is_none_or(|c| c.is_closed())
    }

    /// Its outcome, times counted from `start`.
    pub fn result(self, run: &RunPlan, start: Option<Instant>) -> StreamResult {
        let st = self.conn.as_ref().map(|c| c.stats()).unwrap_or_default();
        let bytes = match self.plan.flow {
            // what the peer acknowledged, less the prefix
            Flow::Send => st
                .bytes_acked
                .saturating_sub(self.plan.prefix.len() as u64)
                .min(self.moved),
            Flow::Receive => self.moved,
        };
        let seconds = start.map_or(0.0, |s0| {
            self.last_byte.saturating_duration_since(s0).as_secs_f64()
        });
        let client = self.plan.flow == Flow::Send;
        let rr = &self.rr;
        StreamResult {
            id: self.id,
            local_port: self.conn.as_ref().map_or(0, |c| c.local().port()),
            remote: self
                .conn
                .as_ref()
                .map_or(String::new(), |c| c.remote().to_string()),
            flow: Some(self.plan.flow),
            bytes,
            seconds,
            bits_per_second: crate::units::bps(bytes, seconds),
            sha256: self.hash.map(|h| super::plan::hex(&h.finalize())),
            retransmitted_bytes: st.bytes_retransmitted,
            retransmits: st.retransmits,
            timeouts: st.rto_count,
            fast_retransmits: st.fast_retransmits,
            srtt_us: st.srtt,
            sack: self.conn.as_ref().is_some_and(|c| c.sack()),
            sack_retransmits: st.sack_recovery_retransmits,
            rttvar_us: st.rttvar,
            mss: self.conn.as_ref().map_or(0, |c| c.mss() as u32),
            cwnd_segments: self
                .conn
                .as_ref()
                .map_or(0, |c| (st.cwnd / c.mss().max(1) as u64) as u32),
            error: self.error,
            buffers: crate::report::model::SockBufs {
                snd: u32::try_from(run.config.send_buffer).ok(),
                rcv: u32::try_from(run.config.recv_buffer).ok(),
            },
            rr: run.rr.map(|_| crate::report::model::RrStats {
                transactions: rr.transactions,
                transactions_per_second: if seconds > 0.0 {
                    rr.transactions as f64 / seconds
                } else {
                    0.0
                },
                latency: client.then(|| {
                    rr.hist
                        .as_ref()
                        .map(crate::metrics::latency::percentiles)
                        .unwrap_or_default()
                }),
                histogram: client.then(|| {
                    crate::metrics::latency::encode(
                        rr.hist
                            .as_ref()
                            .unwrap_or(&crate::metrics::latency::new_histogram()),
                    )
                }),
            }),
        }
    }
}
