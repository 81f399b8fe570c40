//! The agent's iperf3 data connections on TCP-lite (`--iperf3-mode xdp`).
//! iperf3 opens its data streams to the port of its control connection,
//! so the port cannot be steered whole: once the control connection is
//! accepted (by the kernel), the steering program takes only connections
//! from that client's address, and leaves the control connection's own
//! source port to the kernel. Other clients still reach the kernel
//! listener and are told the server is busy.

use super::streams::Streams;
use super::wire::{Accepted, Cookie};
use crate::datapath::xdp::neigh::{self, Route};
use crate::datapath::xdp::stream::{
    Flow, Gate, Open, Ports, RunPlan, StreamEnd, StreamPlan, StreamWork,
};
use crate::{Error, Result};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the data connections of one test are asked to do.
pub(super) struct DataPlan<'a> {
    pub a: &'a Accepted,
    pub cookie: &'a Cookie,
    /// Bytes per stream, for a sender with `-n`.
    pub per_stream: Vec<u64>,
    /// A sender's time (`-t`).
    pub duration: Option<Duration>,
    pub idle: Duration,
    pub hard: Duration,
    /// How long the client may take to open them all.
    pub within: Duration,
}

/// The interface TCP-lite serves `c`'s client on: the route's towards it,
/// which must be one of `allowed`.
fn iface_for(c: &TcpStream, allowed: &[String]) -> Result<String> {
    let peer = c
        .peer_addr()
        .map_err(|e| Error::io("reading the iperf3 client's address", e))?;
    match neigh::route_to(peer.ip()) {
        Route::Dev(i) if allowed.contains(&i) => Ok(i),
        Route::Dev(i) => Err(Error::Refused(format!(
            "iperf3 client {} is reached over {i}, not an --allow-iface interface ({})",
            peer.ip(),
            allowed.join(", ")
        ))),
        _ => Err(Error::Refused(format!(
            "no interface route to iperf3 client {}: TCP-lite serves peers over a NIC",
            peer.ip()
        ))),
    }
}

/// Steer the client's data connections to TCP-lite, call `announce`
/// (CREATE_STREAMS) and wait until every stream arrived with the cookie.
pub(super) fn accept(
    c: &TcpStream,
    allowed: &[String],
    d: DataPlan,
    announce: impl FnOnce() -> Result<()>,
) -> Result<Streams> {
    let (local, peer) = match (c.local_addr(), c.peer_addr()) {
        (Ok(l), Ok(p)) => (l, p),
        (Err(e), _) | (_, Err(e)) => return Err(Error::io("reading the control addresses", e)),
    };
    let iface = iface_for(c, allowed)?;
    let ports = Ports::Shared {
        port: local.port(),
        peer: peer.ip(),
        kernel_port: peer.port(),
    };
    let end = StreamEnd::open(&iface, local.ip(), ports, (None, Default::default()), false)?;
    let peer_mac = crate::wire::ethernet::MacAddr(neigh::resolve(&iface, local.ip(), peer.ip())?);
    let n = usize::from(d.a.streams);
    let send = d.a.reverse;
    let counters: Vec<_> = (0..n).map(|_| Default::default()).collect();
    let ready = Arc::new(AtomicUsize::new(0));
    let buffer =
        d.a.window
            .map_or(crate::spec::TCPLITE_DEFAULT_BUFFER, |w| w as usize);
    let plan = RunPlan {
        streams: (0..n)
            .map(|k| StreamPlan {
                open: Open::Accept {
                    local: local.port(),
                    from: Some(peer.ip()),
                },
                flow: if send { Flow::Send } else { Flow::Receive },
                prefix: Vec::new(),
                bytes: d.per_stream.get(k).copied(),
                worker: None,
                header: None,
                expect: d.cookie.to_vec(),
            })
            .collect(),
        peer_mac,
        duration: d.duration,
        bytes: None,
        verify: false,
        config: RunPlan::lan_config(end.mss(), None, buffer),
        idle: d.idle,
        hard: d.hard,
        cpus: Vec::new(),
        // iperf3 has no say in it: busy-poll where cores are free.
        poll: crate::spec::XdpPoll::Auto,
        counters: counters.clone(),
        stream_bytes: Vec::new(),
        ready: Some(ready.clone()),
        // The client ends its streams at its own time or byte count.
        receiver_limits: false,
        expect_ids: Vec::new(),
        placement: None,
        rr: None,
        interval_latency: Vec::new(),
    };
    let mode = end.mode;
    let gate = Gate::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut work = StreamWork::spawn(end, plan, gate.clone(), &stop)?;
    let halt = |work: StreamWork| {
        stop.store(true, Ordering::Relaxed);
        drop(work.finish());
    };
    if let Err(e) = announce() {
        halt(work);
        return Err(e);
    }
    let until = Instant::now() + d.within;
    while ready.load(Ordering::Relaxed) < n {
        if Instant::now() >= until || work.poll(Duration::from_millis(5)) {
            let got = ready.load(Ordering::Relaxed);
            halt(work);
            return Err(Error::PeerLost(format!(
                "only {got} of {n} iperf3 streams arrived over TCP-lite on {iface} within {:.0} s",
                d.within.as_secs_f64()
            )));
        }
    }
    Ok(Streams::xdp(work, (counters, gate, stop), send, mode))
}
