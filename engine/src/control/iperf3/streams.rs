//! An iperf3 test's data connections on this project's data paths: kernel
//! sockets (one [`socket::Flow`] thread each) or TCP-lite workers
//! ([`crate::datapath::xdp::stream`]). Both count bytes as they go, so
//! the control side can tell when a sender is done and whether a
//! receiver has everything the other end reported.

use crate::datapath::socket::{self, Flow, FlowLimits, FlowSet};
use crate::metrics::interval::Counter;
use crate::report::model::{FlowResult, Role};
use crate::spec::{Direction, FlowId, TestKind};
use crate::Result;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A test's data connections, before and after the start.
pub struct Streams {
    counters: Vec<Counter>,
    stop: Arc<AtomicBool>,
    send: bool,
    path: Path,
}

enum Path {
    /// Connected sockets, their flows spawned at the start; `dups` read
    /// TCP_INFO while a flow thread owns the socket.
    Socket {
        ready: Vec<Flow>,
        dups: Vec<socket2::Socket>,
        set: Option<FlowSet>,
    },
    #[cfg(target_os = "linux")]
    Xdp {
        work: Option<crate::datapath::xdp::stream::StreamWork>,
        gate: crate::datapath::xdp::stream::Gate,
        mode: String,
    },
}

fn flow_id(k: usize, send: bool) -> FlowId {
    FlowId {
        stream: k as u16,
        direction: if send {
            Direction::Send
        } else {
            Direction::Receive
        },
    }
}

impl Streams {
    /// Kernel-socket streams over connected sockets (the cookie already
    /// exchanged); `bytes` per stream for senders.
    pub fn sockets(
        socks: Vec<socket2::Socket>,
        send: bool,
        limits: (Option<Duration>, Vec<u64>, Duration, Duration),
        msg_size: usize,
    ) -> Streams {
        let (duration, bytes, idle, hard) = limits;
        let counters: Vec<Counter> = socks.iter().map(|_| Counter::default()).collect();
        let dups = socks.iter().filter_map(|s| s.try_clone().ok()).collect();
        let ready = socks
            .into_iter()
            .enumerate()
            .map(|(k, sock)| Flow {
                id: flow_id(k, send),
                role: if send { Role::Sender } else { Role::Receiver },
                sock,
                msg_size,
                limits: FlowLimits {
                    duration,
                    bytes: bytes.get(k).copied(),
                    idle,
                    hard,
                },
                counter: counters[k].clone(),
                test: TestKind::Stream,
                interval_latency: None,
                verify: false,
            })
            .collect();
        Streams {
            counters,
            stop: Arc::default(),
            send,
            path: Path::Socket {
                ready,
                dups,
                set: None,
            },
        }
    }

    /// TCP-lite streams already spawned (their connections open and their
    /// prefixes sent); payload waits for [`Streams::start`].
    #[cfg(target_os = "linux")]
    pub fn xdp(
        work: crate::datapath::xdp::stream::StreamWork,
        (counters, gate, stop): (
            Vec<Counter>,
            crate::datapath::xdp::stream::Gate,
            Arc<AtomicBool>,
        ),
        send: bool,
        mode: &str,
    ) -> Streams {
        Streams {
            counters,
            stop,
            send,
            path: Path::Xdp {
                work: Some(work),
                gate,
                mode: mode.into(),
            },
        }
    }

    /// Start moving payload now.
    pub fn start(&mut self) -> Result<Instant> {
        let now = Instant::now();
        match &mut self.path {
            Path::Socket { ready, set, .. } => {
                *set = Some(FlowSet::spawn(std::mem::take(ready), now, &self.stop)?);
            }
            #[cfg(target_os = "linux")]
            Path::Xdp { gate, .. } => {
                let _ = gate.set(now);
            }
        }
        Ok(now)
    }

    /// Each stream's identity, live counter and, for a socket sender, a
    /// handle to read its TCP_INFO: what an interval sampler watches.
    pub fn probes(&self) -> Vec<(FlowId, Counter, Option<socket2::Socket>)> {
        let dups = match &self.path {
            Path::Socket { dups, .. } if self.send => Some(dups),
            _ => None,
        };
        self.counters
            .iter()
            .enumerate()
            .map(|(k, c)| {
                let sock = dups.and_then(|d| d.get(k)).and_then(|s| s.try_clone().ok());
                (flow_id(k, self.send), c.clone(), sock)
            })
            .collect()
    }

    /// Bytes each stream has moved so far (a TCP-lite sender's are
    /// acknowledged ones; a socket sender's written ones).
    pub fn moved(&self) -> Vec<u64> {
        self.counters.iter().map(|c| c.get()).collect()
    }

    pub fn total(&self) -> u64 {
        self.moved().iter().sum()
    }

    /// Senders: every stream has stopped writing and the peer's kernel
    /// acknowledged all of it. None = this path cannot tell (TCP-lite:
    /// the caller watches the acknowledged counts settle).
    pub fn drained(&self) -> Option<bool> {
        match &self.path {
            Path::Socket { dups, .. } => dups
                .iter()
                .map(crate::metrics::tcpinfo::drained)
                .try_fold(true, |all, d| d.map(|d| all && d)),
            #[cfg(target_os = "linux")]
            Path::Xdp { .. } => None,
        }
    }

    /// This end sends.
    pub fn sending(&self) -> bool {
        self.send
    }

    /// Stop every stream where it is.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Stop socket senders where they are (a receiver reads on). TCP-lite
    /// senders stop at their own time or byte count: stopping them would
    /// reset the connections under the client's last reads.
    pub fn stop_senders(&self) {
        if self.send && matches!(self.path, Path::Socket { .. }) {
            self.stop();
        }
    }

    /// Wait up to `wait`; true once every stream has ended.
    pub fn poll(&mut self, wait: Duration) -> bool {
        match &mut self.path {
            Path::Socket { set: Some(s), .. } => s.poll(wait),
            Path::Socket { set: None, .. } => true,
            #[cfg(target_os = "linux")]
            Path::Xdp { work, .. } => work.as_mut().is_none_or(|w| w.poll(wait)),
        }
    }

    /// Wait up to `within` for the streams to end by themselves, then stop
    /// them; the results in stream order, and the data path that ran.
    pub fn finish(mut self, within: Duration) -> (Vec<FlowResult>, String) {
        let until = Instant::now() + within;
        while !self.poll(Duration::from_millis(10)) && Instant::now() < until {}
        self.stop();
        match self.path {
            Path::Socket { set, .. } => {
                (set.map(|s| s.finish()).unwrap_or_default(), "socket".into())
            }
            #[cfg(target_os = "linux")]
            Path::Xdp { work, mode, .. } => {
                let Some(work) = work else {
                    return (Vec::new(), mode);
                };
                let (rs, end) = work.finish();
                let (bad, send) = (end.bad_checksum(), self.send);
                let role = if send { Role::Sender } else { Role::Receiver };
                let flows = rs
                    .into_iter()
                    .enumerate()
                    .map(|(k, r)| r.into_flow(flow_id(k, send), role, bad))
                    .collect();
                (flows, end.mode)
            }
        }
    }
}

/// Connect `n` kernel-socket streams to an iperf3 server, one after
/// another (iperf3 numbers them in the order it accepts them), each
/// sending the cookie first.
pub fn connect_sockets(
    to: std::net::SocketAddr,
    opts: &socket::SocketOpts,
    cookie: &[u8],
    n: usize,
) -> Result<Vec<socket2::Socket>> {
    (0..n)
        .map(|_| socket::connect_with(to, opts, cookie, crate::control::REPLY_TIMEOUT))
        .collect()
}
