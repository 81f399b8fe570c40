//! A TCP-lite worker: one NIC queue, one thread (pinned if asked), and the
//! connections that live on that queue, owned end to end with no lock on
//! the per-packet path. Each pass, in the shape of smoltcp's
//! `Interface::poll`: take back completed transmit frames, receive a
//! batch, take frames other workers handed over, run timers and the
//! application, transmit a batch built in place in UMEM, check each
//! connection's progress. Busy polling sleeps in `poll()` only after a
//! long idle stretch; event polling sleeps in `ppoll()` after the first
//! idle pass, until a frame or the next timer ([`super::polling`]).

use super::super::xsk::XskQueue;
use super::chain::{self, Piece, Reassembly};
use super::flow::{FlowState, Pass, Shared};
use super::handoff;
use super::plan::{Open, RunPlan, StreamResult, WorkerReport};
use super::polling::{self, Polling, Wait};
use crate::tcplite::frame::{parse_frame_deferred, poll_transmit_frame, LinkAddrs, TcpFrame};
use crate::tcplite::{Connection, Source};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Frames taken from a ring per pass.
const BATCH: usize = 64;
/// Frames the queue may have on its way out (on the TX ring or in the
/// kernel, not yet completed). More only queues: every frame behind the
/// last adds its wait to the RTT, delaying the other connections' ACKs.
const TX_INFLIGHT: usize = 256;
/// Frames past [`TX_INFLIGHT`] the queue may still take, for ACKs.
const ACK_RESERVE: usize = 16;
/// How long a worker whose connections are all done keeps answering
/// their last frames (TIME-WAIT, a lost final ACK).
const LINGER: Duration = Duration::from_millis(500);
/// Idle passes before the worker sleeps in `poll()`.
const SPINS: u32 = 2000;
/// No slot: the port tables' empty entry.
const NONE: u16 = u16::MAX;

/// Which worker owns a frame's connection, decided alike by every worker
/// from the frame's ports alone: a connection we open belongs to the
/// worker its local port was placed on; one accepted on a listening port
/// to worker `remote port % workers` (the peer chose that port, and a
/// wirespeed peer places its flow `i` on its worker `port % workers`, so
/// on a link whose queues pair up one to one nothing needs handing over).
pub(super) struct Owners {
    workers: usize,
    /// Per local port: the owning worker, for the ports we open from.
    by_local: Vec<u16>,
    listen: Vec<u16>,
}

impl Owners {
    pub fn new(workers: usize, plan: &RunPlan) -> Owners {
        let mut by_local = vec![NONE; 1 << 16];
        let mut listen = Vec::new();
        for s in &plan.streams {
            match s.open {
                Open::Connect { local, .. } => {
                    let w = s.worker.unwrap_or_else(|| Owners::place(local, workers));
                    by_local[usize::from(local)] = (w % workers) as u16
                }
                Open::Accept { local, .. } => {
                    if !listen.contains(&local) {
                        listen.push(local)
                    }
                }
            }
        }
        Owners {
            workers,
            by_local,
            listen,
        }
    }

    /// The worker a connection from local `port` runs on.
    pub fn place(port: u16, workers: usize) -> usize {
        usize::from(port) % workers
    }

    /// The owner of a segment to our `dst` port from the peer's `src`.
    fn owner(&self, dst: u16, src: u16) -> Option<usize> {
        match self.by_local[usize::from(dst)] {
            NONE => self
                .listen
                .contains(&dst)
                .then(|| usize::from(src) % self.workers),
            w => Some(usize::from(w)),
        }
    }
}

/// Where a received frame went.
enum Delivered {
    Handled,
    /// To another worker's connection: hand it over.
    Owner(usize),
    Stray,
}

/// A worker's connections and the tables that find them, apart from its
/// queue so that a frame still in UMEM can be delivered.
struct Conns {
    id: usize,
    ip: IpAddr,
    flows: Vec<FlowState>,
    /// Slot of a connection by our port (those we open) and by the peer's
    /// port (those accepted on a listening port): O(1) per segment.
    by_local: Vec<u16>,
    by_remote: Vec<u16>,
    /// Accept plans, in the order workers claim them.
    accept_plans: std::sync::Arc<Vec<usize>>,
    owners: std::sync::Arc<Owners>,
    report: WorkerReport,
    t0: Instant,
}

/// One queue's worker.
pub(super) struct Worker {
    queue: XskQueue,
    link: LinkAddrs,
    c: Conns,
    /// Rings from every other worker, and to each (None: ourselves).
    pub inbox: Vec<handoff::Receiver>,
    pub outbox: Vec<Option<handoff::Sender>>,
    cpu: Option<u16>,
    /// The UMEM frames kept for transmitting (the rest stock the fill ring).
    tx_frames: usize,
    /// The connection the next transmit batch serves first.
    turn: usize,
    /// UMEM chunks the longest frame takes: 1, or more for jumbo frames.
    span: usize,
    polling: Polling,
    /// Free entries of the empty TX ring: all frames put on it have left.
    tx_ring_len: u32,
}

/// Buffers a pass reuses, so the loop allocates nothing per frame.
struct Scratch {
    rx: Vec<xsk_rs::FrameDesc>,
    done: Vec<xsk_rs::FrameDesc>,
    batch: Vec<xsk_rs::FrameDesc>,
    mine: Vec<usize>,
    app: Vec<u8>,
    /// A frame handed over, or a jumbo frame being built.
    frame: Vec<u8>,
    chain: Reassembly,
}

impl Worker {
    /// Worker `id` of `workers` on `queue`, with its share of `plan`'s
    /// connections (those it opens start their handshake at once).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: usize,
        queue: XskQueue,
        link: LinkAddrs,
        ip: IpAddr,
        plan: &RunPlan,
        owners: std::sync::Arc<Owners>,
        accept_plans: std::sync::Arc<Vec<usize>>,
        t0: Instant,
        polling: Polling,
    ) -> Worker {
        let cpu = (!plan.cpus.is_empty()).then(|| plan.cpus[id % plan.cpus.len()]);
        let mut w = Worker {
            c: Conns {
                id,
                ip,
                flows: Vec::new(),
                by_local: vec![NONE; 1 << 16],
                by_remote: vec![NONE; 1 << 16],
                accept_plans,
                owners,
                report: WorkerReport {
                    queue: queue.queue,
                    multi_buffer: queue.multi_buffer,
                    poll_mode: Some(polling.as_str().into()),
                    ..Default::default()
                },
                t0,
            },
            queue,
            link,
            inbox: Vec::new(),
            outbox: Vec::new(),
            cpu,
            tx_frames: 0,
            turn: 0,
            span: chain::span_for_mss(plan.config.mss),
            polling,
            tx_ring_len: 0,
        };
        w.tx_frames = w.queue.descs.len();
        w.tx_ring_len = w.queue.tx.nb_free_exact();
        for (i, s) in plan.streams.iter().enumerate() {
            let Open::Connect { local, remote } = s.open else {
                continue;
            };
            if w.c.owners.owner(local, 0) != Some(id) {
                continue;
            }
            let conn = Connection::connect(
                plan.config.clone(),
                SocketAddr::new(ip, local),
                remote,
                initial_seq(),
                w.us(Instant::now()),
            );
            w.c.by_local[usize::from(local)] = w.c.flows.len() as u16;
            w.c.flows.push(FlowState::new(i, plan, Some(conn), t0));
        }
        w
    }

    /// This worker's index among its end's workers.
    pub fn id(&self) -> usize {
        self.c.id
    }

    fn us(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.c.t0).as_micros() as u64
    }

    /// Run to the end of every connection this end has (this worker keeps
    /// handing frames over until every worker is done); returns each of
    /// its connections' results with their plan index.
    pub fn run(
        mut self,
        plan: &RunPlan,
        gate: &OnceLock<Instant>,
        stop: &AtomicBool,
        shared: &Shared,
        running: &AtomicUsize,
    ) -> (Vec<(usize, StreamResult)>, WorkerReport) {
        self.c.report.cpu_pinned = self.cpu.filter(|&c| {
            core_affinity::set_for_current(core_affinity::CoreId { id: usize::from(c) })
        });
        let source = Source::new(
            super::plan::pattern_source(plan.rr.map_or(0, |(a, b, _)| a.max(b) as usize)).into(),
            super::plan::PATTERN_PERIOD,
        );
        let mut s = Scratch {
            rx: vec![xsk_rs::FrameDesc::default(); BATCH],
            done: vec![xsk_rs::FrameDesc::default(); BATCH],
            batch: Vec::with_capacity(BATCH),
            mine: Vec::new(),
            app: vec![0u8; 256 * 1024],
            frame: vec![0u8; 1 << 16],
            chain: Reassembly::default(),
        };
        let mut clock = Clock::default();
        let mut running = Running {
            count: running,
            out: false,
            done_at: None,
        };
        let mut spins = 0u32;
        loop {
            let now_i = Instant::now();
            if let Some(s0) = clock.opened(gate, plan) {
                self.c.flows.iter_mut().for_each(|f| f.started(s0, now_i));
            }
            let stopping = stop.load(Ordering::Relaxed);
            if stopping {
                self.c.flows.iter_mut().for_each(|f| f.abort("aborted"));
            }
            let pass = Pass {
                plan,
                now: self.us(now_i),
                now_i,
                start: clock.start,
                limit_at: clock.limit_at,
                source: &source,
                shared,
            };
            let busy = self.pass(&pass, &mut s, stopping);
            if self.finished(&pass, stopping, &mut running) {
                break;
            }
            self.c.report.polls += 1;
            self.c.report.busy_polls += u64::from(busy);
            if self.polling == Polling::Event {
                if !busy {
                    self.rest(pass.limit_at);
                }
                continue;
            }
            spins = if busy { 0 } else { spins + 1 };
            if spins > SPINS {
                spins = 0;
                self.sleep();
            } else if spins > 0 && spins.is_multiple_of(64) {
                let q = &self.queue;
                if q.busy_poll || q.fill.needs_wakeup() {
                    q.kick_rx();
                }
            }
        }
        self.drain();
        self.results(plan, clock.start)
    }

    /// One pass: completions, a receive batch, hand-overs, timers and the
    /// application, a transmit batch, then each connection's progress.
    /// True if anything happened.
    fn pass(&mut self, p: &Pass, s: &mut Scratch, stopping: bool) -> bool {
        self.take_completions(s);
        let mut busy = self.receive_batch(p, s);
        busy |= self.receive_handoffs(p, s);
        for f in &mut self.c.flows {
            busy |= f.step(p, &mut s.app);
        }
        busy |= self.transmit_batch(p.now, s);
        self.kick_tx();
        for f in &mut self.c.flows {
            f.check(p, self.c.t0, stopping);
        }
        busy
    }

    /// Whether the loop may end: this worker is done once its connections
    /// are (and, lingering, settled) and no accept can still come its way;
    /// it then keeps handing frames over until every worker is done.
    fn finished(&self, p: &Pass, stopping: bool, running: &mut Running) -> bool {
        let flows = &self.c.flows;
        if !running.out && flows.iter().all(|f| f.done) && self.accepts_over(p, stopping) {
            let since = *running.done_at.get_or_insert(p.now_i);
            if flows.iter().all(|f| f.settled()) || p.now_i.duration_since(since) >= LINGER {
                running.leave();
            }
        }
        running.out && running.count.load(Ordering::Acquire) == 0
    }

    /// Each connection's result with its plan index, and what the worker did.
    fn results(
        self,
        plan: &RunPlan,
        start: Option<Instant>,
    ) -> (Vec<(usize, StreamResult)>, WorkerReport) {
        let mut report = self.c.report;
        report.cpu = nix::sched::sched_getcpu().ok().map(|c| c as u16);
        report.kernel_dropped = self.queue.kernel_dropped();
        let drops = self.queue.drops();
        report.rx_ring_full = drops.map(|d| d.0);
        report.fill_ring_empty = drops.map(|d| d.1);
        report.flows = self.c.flows.len() as u32;
        let results = self
            .c
            .flows
            .into_iter()
            .map(|f| (f.index, f.result(plan, start)))
            .collect();
        (results, report)
    }

    /// No accept plan is left, or none can still arrive: the end is
    /// stopping, or the wait for connections has run out.
    fn accepts_over(&self, p: &Pass, stopping: bool) -> bool {
        stopping
            || p.shared.accepts_claimed.load(Ordering::Relaxed) >= self.c.accept_plans.len()
            || p.now_i
                .duration_since(p.start.unwrap_or(self.c.t0).max(self.c.t0))
                >= p.plan.idle
    }

    /// Completed transmit frames become free frames again.
    fn take_completions(&mut self, s: &mut Scratch) {
        let q = &mut self.queue;
        // SAFETY: the completion ring returns frames of this UMEM.
        let n = unsafe { q.comp.consume(&mut s.done) };
        q.descs.extend_from_slice(&s.done[..n]);
    }

    /// A batch from the queue's receive ring, each frame to its connection
    /// (or its owner's ring), then the frames back on the fill ring.
    fn receive_batch(&mut self, p: &Pass, s: &mut Scratch) -> bool {
        // SAFETY: the receive ring returns frames of this UMEM.
        let n = unsafe { self.queue.rx.consume(&mut s.rx) };
        if n == 0 {
            return false;
        }
        for d in &s.rx[..n] {
            // SAFETY: a received frame, ours until handed back below.
            let data = unsafe { self.queue.umem.data(d) };
            // A jumbo frame comes in pieces: deliver it once whole.
            let bytes = match s.chain.take(data.contents(), d.options()) {
                Piece::Whole(b) => b,
                Piece::Partial => continue,
                Piece::Dropped => {
                    self.c.report.stray_frames += 1;
                    continue;
                }
            };
            match self.c.deliver(p, bytes) {
                Delivered::Handled => {}
                Delivered::Stray => self.c.report.stray_frames += 1,
                Delivered::Owner(w) => {
                    self.c.report.misrouted += 1;
                    let sent = self.outbox[w].as_mut().is_some_and(|o| o.push(bytes));
                    self.c.report.handoff_dropped += u64::from(!sent);
                }
            }
        }
        let q = &mut self.queue;
        for _ in 0..1000 {
            // SAFETY: handing consumed frames of this UMEM back to the kernel.
            if unsafe { q.fill.produce(&s.rx[..n]) } == n {
                break;
            }
            q.kick_rx();
        }
        true
    }

    /// Frames other workers received for our connections.
    fn receive_handoffs(&mut self, p: &Pass, s: &mut Scratch) -> bool {
        let mut busy = false;
        for k in 0..self.inbox.len() {
            for _ in 0..BATCH {
                let Some(n) = self.inbox[k].pop(&mut s.frame) else {
                    break;
                };
                busy = true;
                if let Delivered::Stray | Delivered::Owner(_) = self.c.deliver(p, &s.frame[..n]) {
                    self.c.report.stray_frames += 1;
                }
            }
        }
        busy
    }

    /// Frames built in place from the connections' `poll_transmit`, as many
    /// as the ring and the in-flight cap allow, in fair shares from a
    /// rotating first connection: one bulk sender must not starve another
    /// connection's ACKs.
    fn transmit_batch(&mut self, now: u64, s: &mut Scratch) -> bool {
        let q = &mut self.queue;
        let in_flight = self.tx_frames.saturating_sub(q.descs.len());
        // A few frames past the cap, so ACKs leave even while data fills it.
        let room = (q.tx.nb_free(BATCH as u32) as usize)
            .min((TX_INFLIGHT + ACK_RESERVE).saturating_sub(in_flight));
        s.mine.clear();
        let flows = &mut self.c.flows;
        s.mine
            .extend((0..flows.len()).filter(|&i| flows[i].conn.is_some()));
        if s.mine.is_empty() || room == 0 {
            return false;
        }
        s.batch.clear();
        // The first connection served is the one after the last served
        // in the previous batch: with more connections than room, every
        // one gets its turn within a few batches, its ACKs included.
        let n = s.mine.len();
        let first = self.turn % n;
        let mut next = first;
        let share = (room / n).max(1);
        for pass in 0..2 {
            let quota = if pass == 0 { share } else { room };
            for k in 0..n {
                if s.batch.len() >= room {
                    break;
                }
                if pass == 0 {
                    next = (first + k + 1) % n;
                }
                let flow = &mut flows[s.mine[(first + k) % n]];
                let c = flow.conn.as_mut().expect("listed with a connection");
                let mut took = 0;
                while s.batch.len() + self.span <= room && took < quota {
                    if self.span > 1 {
                        let c = (&mut *c, now, &self.link);
                        let (free, need) = (&mut q.descs, self.span);
                        if !chain::transmit(&q.umem, free, need, c, &mut s.frame, &mut s.batch) {
                            break;
                        }
                        took += 1;
                        continue;
                    }
                    let Some(mut d) = q.descs.pop() else { break };
                    // SAFETY: a free frame of this UMEM, on no ring.
                    let mut data = unsafe { q.umem.data_mut(&mut d) };
                    data.cursor().set_pos(usize::MAX);
                    match poll_transmit_frame(c, now, &self.link, data.contents_mut()) {
                        Some((len, _)) => {
                            data.cursor().set_pos(len);
                            s.batch.push(d);
                            took += 1;
                        }
                        None => {
                            q.descs.push(d);
                            break;
                        }
                    }
                }
            }
        }
        self.turn = next;
        if s.batch.is_empty() {
            return false;
        }
        // SAFETY: these frames are on no other ring; room was checked.
        let sent = unsafe { q.tx.produce(&s.batch) };
        if sent == 0 {
            q.descs.extend_from_slice(&s.batch);
        } else {
            self.c.report.segments_out += chain::frames(&s.batch[..sent]) as u64;
        }
        true
    }

    /// Kick the queue while frames are outstanding, new or not: in copy
    /// mode one kick sends a few dozen frames, and frames left on the ring
    /// would otherwise wait for the next segment or a timeout.
    fn kick_tx(&mut self) {
        let q = &mut self.queue;
        if self.tx_frames > q.descs.len() && (q.busy_poll || q.tx.needs_wakeup()) {
            let _ = q.tx.wakeup();
        }
    }

    /// Busy mode after a long idle stretch: sleep on the receive ring for a
    /// millisecond, unless a timer or a hand-over is due sooner (spin on).
    fn sleep(&mut self) {
        let now = self.us(Instant::now());
        let next = self.next_timer(now).unwrap_or(1000);
        let handoffs = self.inbox.iter().any(|r| r.pending());
        if next < 1000 || handoffs {
            return;
        }
        self.wait_rx(1000);
    }

    /// Microseconds from `now` to the earliest connection timer, if any.
    fn next_timer(&self, now: u64) -> Option<u64> {
        self.c
            .flows
            .iter()
            .filter_map(|f| f.conn.as_ref()?.poll_timeout())
            .min()
            .map(|t| t.saturating_sub(now))
    }

    /// Sleep on the receive ring until a frame comes or `us` pass (ppoll:
    /// poll() would round the timeout to milliseconds).
    fn wait_rx(&self, us: u64) {
        use std::os::fd::AsRawFd;
        let mut fd = nix::libc::pollfd {
            fd: self.queue.rx.fd().as_raw_fd(),
            events: nix::libc::POLLIN,
            revents: 0,
        };
        let ts = nix::libc::timespec {
            tv_sec: (us / 1_000_000) as nix::libc::time_t,
            tv_nsec: ((us % 1_000_000) * 1000) as nix::libc::c_long,
        };
        // SAFETY: one pollfd for a socket we own, a valid timespec, no mask.
        unsafe { nix::libc::ppoll(&mut fd, 1, &ts, std::ptr::null()) };
    }

    /// Event mode, after a pass that found nothing: send what is still on
    /// the TX ring, then sleep on the receive ring until a frame comes or
    /// the next timer (or the senders' stop) is due, spinning instead when
    /// it is only microseconds away or another worker handed frames over.
    /// A window-bound sender sleeps too: what it waits for is an ACK.
    fn rest(&mut self, limit_at: Option<Instant>) {
        self.flush_tx();
        let now_i = Instant::now();
        let timer = self.next_timer(self.us(now_i));
        let limit = limit_at
            .filter(|&t| t > now_i)
            .map(|t| t.duration_since(now_i).as_micros() as u64);
        let next = timer.into_iter().chain(limit).min();
        let handoffs = self.inbox.iter().any(|r| r.pending());
        let Wait::Sleep(us) = polling::wait(next, handoffs) else {
            return;
        };
        self.c.report.sleeps += 1;
        self.wait_rx(us);
    }

    /// Kick until the TX ring is empty (bounded): in copy mode each kick
    /// sends at most 32 frames (the kernel's TX_BATCH_SIZE), and with
    /// need_wakeup nothing else sends the rest while the worker sleeps.
    fn flush_tx(&mut self) {
        let q = &mut self.queue;
        for _ in 0..TX_INFLIGHT / 16 {
            if q.tx.nb_free_exact() >= self.tx_ring_len || !(q.busy_poll || q.tx.needs_wakeup()) {
                return;
            }
            let _ = q.tx.wakeup();
        }
    }

    /// Let the last frames (final ACKs, FINs) leave, bounded.
    fn drain(&mut self) {
        let until = Instant::now() + Duration::from_millis(50);
        while Instant::now() < until {
            if self.queue.tx.needs_wakeup() {
                let _ = self.queue.tx.wakeup();
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Conns {
    /// Parse a frame and hand its segment to the connection it belongs to,
    /// accepting a new one for a SYN on a listening port. The TCP checksum
    /// is verified by the connection as it copies the payload in.
    fn deliver(&mut self, p: &Pass, bytes: &[u8]) -> Delivered {
        let (f, check) = match parse_frame_deferred(bytes) {
            Ok(f) => f,
            Err(e) => {
                self.report.bad_checksum += u64::from(e == crate::wire::Error::Checksum);
                return Delivered::Stray;
            }
        };
        let seg = &f.segment;
        match self.owners.owner(seg.dst_port, seg.src_port) {
            None => return Delivered::Stray,
            Some(w) if w != self.id => return Delivered::Owner(w),
            Some(_) => {}
        }
        let slot = match self.by_local[usize::from(seg.dst_port)] {
            NONE => self.by_remote[usize::from(seg.src_port)],
            s => s,
        };
        if slot == NONE {
            if !check.verify(seg.payload) {
                self.report.bad_checksum += 1;
                return Delivered::Stray;
            }
            return match self.accept(p, &f) {
                true => Delivered::Handled,
                false => Delivered::Stray,
            };
        }
        let flow = &mut self.flows[usize::from(slot)];
        let Some(c) = &mut flow.conn else {
            return Delivered::Stray;
        };
        if c.remote() != SocketAddr::new(f.src, seg.src_port) || c.local().port() != seg.dst_port {
            return Delivered::Stray;
        }
        if !c.handle_segment_deferred(p.now, seg, check) {
            self.report.bad_checksum += 1;
            return Delivered::Stray;
        }
        flow.touched(p.now_i);
        self.report.segments_in += 1;
        Delivered::Handled
    }

    /// A SYN on a listening port: claim the next accept plan and open its
    /// connection here; false when it is no SYN for us or none is left.
    fn accept(&mut self, p: &Pass, f: &TcpFrame) -> bool {
        let seg = &f.segment;
        if !seg.flags.syn() || seg.flags.ack() || seg.flags.rst() {
            return false;
        }
        let claimed = &p.shared.accepts_claimed;
        // Every accept plan of an end takes the same port and peer (the
        // agent's), so the next unclaimed one serves whichever SYN comes.
        let fits = self
            .accept_plans
            .first()
            .is_some_and(|&i| FlowState::accepts(&p.plan.streams[i], f.src, seg.dst_port));
        if !fits {
            return false;
        }
        let Ok(k) = claimed.fetch_update(Ordering::AcqRel, Ordering::Acquire, |k| {
            (k < self.accept_plans.len()).then_some(k + 1)
        }) else {
            return false;
        };
        let index = self.accept_plans[k];
        let Some(conn) = Connection::accept(
            p.plan.config.clone(),
            SocketAddr::new(self.ip, seg.dst_port),
            f.src,
            seg,
            initial_seq(),
            p.now,
        ) else {
            return false;
        };
        let slot = self.flows.len();
        let mut flow = FlowState::new(index, p.plan, Some(conn), self.t0);
        if let Some(s0) = p.start {
            flow.started(s0, p.now_i);
        }
        self.by_remote[usize::from(seg.src_port)] = slot as u16;
        self.flows.push(flow);
        self.report.segments_in += 1;
        true
    }
}

/// This worker's place in the count of workers still running: it leaves
/// once, when done or when it unwinds, so the others never wait for a
/// worker that panicked.
struct Running<'a> {
    count: &'a AtomicUsize,
    out: bool,
    /// When its connections were first all done (it lingers from there).
    done_at: Option<Instant>,
}

/// The measurement's clock: unset until the gate opens.
#[derive(Default)]
struct Clock {
    start: Option<Instant>,
    /// When senders stop (`--duration`).
    limit_at: Option<Instant>,
}

impl Clock {
    /// The start, the first time it is seen set: times count from there.
    fn opened(&mut self, gate: &OnceLock<Instant>, plan: &RunPlan) -> Option<Instant> {
        if self.start.is_some() {
            return None;
        }
        let s0 = *gate.get()?;
        self.start = Some(s0);
        self.limit_at = plan.duration.map(|d| s0 + d);
        Some(s0)
    }
}

impl Running<'_> {
    fn leave(&mut self) {
        if !self.out {
            self.count.fetch_sub(1, Ordering::AcqRel);
            self.out = true;
        }
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.leave();
    }
}

/// A random initial sequence number.
fn initial_seq() -> u32 {
    u32::from_be_bytes(crate::control::auth::nonce()[..4].try_into().expect("4"))
}
