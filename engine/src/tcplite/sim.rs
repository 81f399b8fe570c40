//! A simulated network for two TCP-lite endpoints, after quinn-proto's
//! test `Pair`: a fake clock, one queue of in-flight frames per direction
//! with delivery times, and impairments (loss, duplication, corruption,
//! jitter that reorders, delay, bandwidth, MTU) drawn from a seeded xorshift, so any
//! run replays exactly from its seed, and fixed drop patterns. Frames cross as real Ethernet/IPv4
//! bytes (built and parsed with `wire`), so the checksums are exercised
//! too. Public, so that a benchmark can drive a lossless pair as well.

use super::frame::{self, LinkAddrs};
use super::{Config, Connection, ConnectionError, Instant, SEC};
use crate::wire::ethernet::MacAddr;
use crate::wire::tcp::DeferredChecksum;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// xorshift64*: tiny, fast and good enough to draw impairments.
#[derive(Clone, Debug)]
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> Self {
        // never zero: xorshift would stay at zero
        XorShift(seed ^ 0x9e37_79b9_7f4a_7c15 | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [0, n] (0 if n is 0).
    pub fn upto(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % (n + 1)
        }
    }
}

/// The impairments of one direction.
#[derive(Clone, Debug)]
pub struct LinkConfig {
    /// One-way propagation delay, microseconds.
    pub delay: u64,
    /// Extra delay drawn uniformly from [0, jitter] per frame: frames
    /// overtake each other when it exceeds their spacing.
    pub jitter: u64,
    /// Probability a frame is lost.
    pub loss: f64,
    /// Frames lost by their number on this link (0: the first sent),
    /// besides `loss`: a fixed pattern, such as a burst in one window.
    pub drop: Vec<u64>,
    /// Probability a frame arrives twice.
    pub duplicate: f64,
    /// Probability a frame arrives with one bit of its TCP segment
    /// flipped: the receiver's checksum must catch every one.
    pub corrupt: f64,
    /// Bytes per second on the wire (0: unlimited, no serialization delay).
    pub bandwidth: u64,
    /// Largest IP packet carried; longer ones are dropped (counted).
    pub mtu: usize,
    /// Bytes that may wait for the wire before tail drop (0: unlimited).
    pub queue: usize,
}

impl Default for LinkConfig {
    fn default() -> Self {
        LinkConfig {
            delay: 1_000,
            jitter: 0,
            loss: 0.0,
            drop: Vec::new(),
            duplicate: 0.0,
            corrupt: 0.0,
            bandwidth: 0,
            mtu: 1500,
            queue: 0,
        }
    }
}

/// What happened to frames on one link.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkStats {
    pub sent: u64,
    pub delivered: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub corrupted: u64,
    pub too_big: u64,
    pub queue_drops: u64,
    pub bytes_delivered: u64,
}

/// A frame on its way: (delivery time, order of sending, frame, whether
/// it was corrupted).
type InFlight = (Instant, u64, Vec<u8>, bool);

#[derive(Debug)]
struct Link {
    cfg: LinkConfig,
    /// (delivery time, order of sending) -> frame
    in_flight: BinaryHeap<Reverse<InFlight>>,
    busy_until: Instant,
    counter: u64,
    stats: LinkStats,
}

impl Link {
    fn new(cfg: LinkConfig) -> Self {
        Link {
            cfg,
            in_flight: BinaryHeap::new(),
            busy_until: 0,
            counter: 0,
            stats: LinkStats::default(),
        }
    }

    fn send(&mut self, now: Instant, frame: &[u8], rng: &mut XorShift) {
        self.stats.sent += 1;
        if frame.len().saturating_sub(14) > self.cfg.mtu {
            self.stats.too_big += 1;
            return;
        }
        // serialization: the frame occupies the wire after those before it
        let start = self.busy_until.max(now);
        if self.cfg.queue > 0 && self.cfg.bandwidth > 0 {
            let queued = (start - now).saturating_mul(self.cfg.bandwidth) / SEC;
            if queued as usize > self.cfg.queue {
                self.stats.queue_drops += 1;
                return;
            }
        }
        let tx = if self.cfg.bandwidth > 0 {
            (frame.len() as u64 * SEC).div_ceil(self.cfg.bandwidth)
        } else {
            0
        };
        self.busy_until = start + tx;
        if self.cfg.drop.contains(&(self.stats.sent - 1)) || rng.unit() < self.cfg.loss {
            self.stats.lost += 1;
            return;
        }
        let mut frame = frame.to_vec();
        let corrupted = rng.unit() < self.cfg.corrupt && frame.len() > frame::HEADROOM_V4;
        if corrupted {
            self.stats.corrupted += 1;
            let at = frame::HEADROOM_V4
                + rng.upto((frame.len() - frame::HEADROOM_V4 - 1) as u64) as usize;
            frame[at] ^= 1 << rng.upto(7);
        }
        let copies = if rng.unit() < self.cfg.duplicate {
            self.stats.duplicated += 1;
            2
        } else {
            1
        };
        for _ in 0..copies {
            let at = self.busy_until + self.cfg.delay + rng.upto(self.cfg.jitter);
            self.counter += 1;
            self.in_flight
                .push(Reverse((at, self.counter, frame.clone(), corrupted)));
        }
    }

    fn next_delivery(&self) -> Option<Instant> {
        self.in_flight.peek().map(|r| r.0 .0)
    }

    fn pop_due(&mut self, now: Instant) -> Option<(Vec<u8>, bool)> {
        if self.next_delivery()? <= now {
            let Reverse((_, _, f, corrupted)) = self.in_flight.pop()?;
            self.stats.delivered += 1;
            self.stats.bytes_delivered += f.len() as u64;
            Some((f, corrupted))
        } else {
            None
        }
    }
}

/// How a [`Pair::run`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every byte was delivered and both sides closed (TIME-WAIT counts).
    Completed,
    /// A side failed (with its reason) and nothing more can happen.
    Failed {
        client: Option<ConnectionError>,
        server: Option<ConnectionError>,
    },
    /// No event pending and not done: a protocol bug (a hang).
    Stalled,
    /// The step or virtual-time bound was reached.
    Limit,
}

/// A client that sends `data` then closes, and a server that reads all of
/// it and closes when the client's FIN has been read, across two links.
pub struct Pair {
    pub now: Instant,
    pub client: Connection,
    /// Created when the client's SYN arrives.
    pub server: Option<Connection>,
    pub server_cfg: Config,
    pub server_iss: u32,
    pub client_addr: SocketAddr,
    pub server_addr: SocketAddr,
    /// client -> server, server -> client
    links: [Link; 2],
    pub rng: XorShift,
    /// What the client application sends.
    pub data: Vec<u8>,
    pub written: usize,
    /// What the server application read.
    pub received: Vec<u8>,
    /// While false the server application reads nothing (its window fills).
    pub server_reads: bool,
    /// Close the client once all data is written.
    pub client_closes: bool,
    pub steps: u64,
    /// Frames that did not parse at the receiver (must stay 0).
    pub bad_frames: u64,
    /// Corrupted frames the receiver rejected (parse or checksum).
    pub corrupt_dropped: u64,
    /// Corrupted frames the receiver took in (must stay 0).
    pub corrupt_accepted: u64,
    buf: Vec<u8>,
}

const CLIENT_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
const SERVER_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);

impl Pair {
    /// Two endpoints on 198.18.0.1:40000 and 198.18.0.2:5001; the client's
    /// SYN is sent on the first step.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        client_cfg: Config,
        server_cfg: Config,
        c2s: LinkConfig,
        s2c: LinkConfig,
        client_iss: u32,
        server_iss: u32,
        data: Vec<u8>,
        seed: u64,
    ) -> Self {
        let client_addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1)), 40000);
        let server_addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2)), 5001);
        let buf_len = 14 + 60 + 60 + usize::from(client_cfg.mss.max(server_cfg.mss));
        Pair {
            now: 0,
            client: Connection::connect(client_cfg, client_addr, server_addr, client_iss, 0),
            server: None,
            server_cfg,
            server_iss,
            client_addr,
            server_addr,
            links: [Link::new(c2s), Link::new(s2c)],
            rng: XorShift::new(seed),
            data,
            written: 0,
            received: Vec::new(),
            server_reads: true,
            client_closes: true,
            steps: 0,
            bad_frames: 0,
            corrupt_dropped: 0,
            corrupt_accepted: 0,
            buf: vec![0; buf_len],
        }
    }

    /// The same impairments both ways, default configs.
    pub fn symmetric(link: LinkConfig, data: Vec<u8>, seed: u64) -> Self {
        Self::new(
            Config::default(),
            Config::default(),
            link.clone(),
            link,
            1000,
            2000,
            data,
            seed,
        )
    }

    /// Change a direction's impairments mid-run (0: client to server,
    /// 1: server to client); frames already in flight keep their fate.
    pub fn link_config_mut(&mut self, direction: usize) -> &mut LinkConfig {
        &mut self.links[direction.min(1)].cfg
    }

    pub fn link_stats(&self) -> [LinkStats; 2] {
        [self.links[0].stats, self.links[1].stats]
    }

    fn done(c: &Connection) -> bool {
        use super::State::*;
        c.error().is_none() && matches!(c.state(), Closed | TimeWait)
    }

    /// Both closed in order and every byte arrived.
    pub fn is_completed(&self) -> bool {
        Self::done(&self.client)
            && self.server.as_ref().is_some_and(Self::done)
            && self.received.len() == self.data.len()
    }

    fn apps(&mut self) {
        if self.written < self.data.len() {
            self.written += self.client.write(&self.data[self.written..]);
        }
        if self.written == self.data.len() && self.client_closes {
            self.client.close();
        }
        if let Some(s) = &mut self.server {
            if self.server_reads {
                let mut chunk = [0u8; 16 * 1024];
                loop {
                    let n = s.read(&mut chunk);
                    if n == 0 {
                        break;
                    }
                    self.received.extend_from_slice(&chunk[..n]);
                }
                if s.read_finished() {
                    s.close();
                }
            }
        }
    }

    fn transmit(&mut self) {
        let now = self.now;
        let link = LinkAddrs {
            src: CLIENT_MAC,
            dst: SERVER_MAC,
        };
        // bounded: a connection that always has something to send is a bug
        for _ in 0..100_000 {
            match frame::poll_transmit_frame(&mut self.client, now, &link, &mut self.buf) {
                Some((n, _)) => self.links[0].send(now, &self.buf[..n], &mut self.rng),
                None => break,
            }
        }
        let link = LinkAddrs {
            src: SERVER_MAC,
            dst: CLIENT_MAC,
        };
        if let Some(s) = &mut self.server {
            for _ in 0..100_000 {
                match frame::poll_transmit_frame(s, now, &link, &mut self.buf) {
                    Some((n, _)) => self.links[1].send(now, &self.buf[..n], &mut self.rng),
                    None => break,
                }
            }
        }
    }

    /// A frame to its endpoint as a datapath hands it over: parsed with
    /// the TCP checksum left to the connection, which verifies it while
    /// copying the payload in.
    fn deliver(&mut self, to_server: bool, f: &[u8], corrupted: bool) {
        let taken = match frame::parse_frame_deferred(f) {
            Ok((tf, check)) => self.take(to_server, &tf, check),
            Err(_) => false,
        };
        match (taken, corrupted) {
            (true, false) => {}
            (false, false) => self.bad_frames += 1,
            (false, true) => self.corrupt_dropped += 1,
            (true, true) => self.corrupt_accepted += 1,
        }
    }

    /// The segment to the client or server (opened by a SYN); false if
    /// its checksum fails.
    fn take(&mut self, to_server: bool, tf: &frame::TcpFrame, check: DeferredChecksum) -> bool {
        let now = self.now;
        if !to_server {
            return self.client.handle_segment_deferred(now, &tf.segment, check);
        }
        if let Some(s) = &mut self.server {
            return s.handle_segment_deferred(now, &tf.segment, check);
        }
        if !check.verify(tf.segment.payload) {
            return false;
        }
        self.server = Connection::accept(
            self.server_cfg.clone(),
            self.server_addr,
            tf.src,
            &tf.segment,
            self.server_iss,
            now,
        );
        true
    }

    /// One event: run the applications, send what the endpoints have, move
    /// the clock to the next delivery or timer, deliver and fire. False if
    /// there is no next event.
    pub fn step(&mut self) -> bool {
        self.steps += 1;
        self.apps();
        self.transmit();
        let next = [
            self.links[0].next_delivery(),
            self.links[1].next_delivery(),
            self.client.poll_timeout(),
            self.server.as_ref().and_then(|s| s.poll_timeout()),
        ]
        .into_iter()
        .flatten()
        .min();
        let Some(t) = next else {
            return false;
        };
        self.now = self.now.max(t);
        let now = self.now;
        while let Some((f, corrupted)) = self.links[0].pop_due(now) {
            self.deliver(true, &f, corrupted);
        }
        while let Some((f, corrupted)) = self.links[1].pop_due(now) {
            self.deliver(false, &f, corrupted);
        }
        if self.client.poll_timeout().is_some_and(|t| t <= now) {
            self.client.on_timeout(now);
        }
        if let Some(s) = &mut self.server {
            if s.poll_timeout().is_some_and(|t| t <= now) {
                s.on_timeout(now);
            }
        }
        true
    }

    /// Step until completed, failed, stalled, or `max_steps` / `max_time`
    /// (virtual microseconds) is reached; always returns.
    pub fn run(&mut self, max_steps: u64, max_time: Instant) -> Outcome {
        loop {
            if self.is_completed() {
                return Outcome::Completed;
            }
            if self.steps >= max_steps || self.now >= max_time {
                return Outcome::Limit;
            }
            if !self.step() {
                // settle: apps may still read what arrived last
                self.apps();
                self.transmit();
                if self.is_completed() {
                    return Outcome::Completed;
                }
                let ce = self.client.error();
                let se = self.server.as_ref().and_then(|s| s.error());
                if ce.is_some() || se.is_some() {
                    return Outcome::Failed {
                        client: ce,
                        server: se,
                    };
                }
                if self.links[0].next_delivery().is_none()
                    && self.links[1].next_delivery().is_none()
                {
                    return Outcome::Stalled;
                }
            }
        }
    }

    /// Run until `pred` holds or a bound is reached; true if it held.
    pub fn run_until(
        &mut self,
        max_steps: u64,
        max_time: Instant,
        mut pred: impl FnMut(&Pair) -> bool,
    ) -> bool {
        loop {
            if pred(self) {
                return true;
            }
            if self.steps >= max_steps || self.now >= max_time || !self.step() {
                return pred(self);
            }
        }
    }
}
