//! TCP-lite against a plain TCP peer that runs no wirespeed
//! (`wirespeed run --mode xdp --plain HOST:PORT`).

use super::end::{Ports, StreamEnd};
use super::plan::{
    with_checksum_hint, Flow, Gate, Open, RunPlan, StreamPlan, StreamResult, WorkerReport,
};
use super::work::StreamWork;
use crate::metrics::interval::{Counter, Sampler};
use crate::wire::ethernet::MacAddr;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// A TCP-lite test against a plain TCP peer that runs no wirespeed
/// (`wirespeed run --mode xdp --plain HOST:PORT`).
#[derive(Clone, Debug)]
pub struct PlainOptions {
    pub iface: String,
    /// This end's address; None = the interface's first address of the
    /// peer's family.
    pub local: Option<IpAddr>,
    pub peer: SocketAddr,
    pub flow: Flow,
    pub streams: u16,
    pub duration: Option<Duration>,
    /// Bytes per stream.
    pub bytes: Option<u64>,
    pub verify: bool,
    pub window: Option<usize>,
    pub pacing_bps: Option<u64>,
    pub queues: Option<Vec<u16>>,
    /// CPUs to pin the workers to, in queue order; empty = unpinned.
    pub cpus: Vec<u16>,
    /// Zero-copy, copy, or either (zero-copy first).
    pub xdp_bind: crate::spec::XdpBind,
    /// TCP-lite's send and receive buffer per connection (`--sockbuf`);
    /// None = its default.
    pub buffer: Option<usize>,
    /// Interval between progress samples; None = no intervals.
    pub interval: Option<Duration>,
}

/// What a plain-peer test measured (`--json`: schema `wirespeed.plain/2`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlainReport {
    pub schema: String,
    pub mode: String,
    pub local: String,
    pub peer: String,
    pub flow: Flow,
    pub streams: Vec<StreamResult>,
    /// One per queue, and how the connections were placed on them.
    pub workers: Vec<WorkerReport>,
    pub placement: Option<String>,
    pub total: crate::report::model::Throughput,
    pub cpu: crate::report::model::CpuReport,
    /// One per `--interval`, bytes per stream (TCP state at the end only).
    #[serde(default)]
    pub intervals: Vec<crate::report::model::Interval>,
}

/// The first address of `iface` in the family of `like`: for IPv6 a
/// global one (a link-local address needs a scope no peer is given here).
pub fn address_of(iface: &str, like: IpAddr) -> Result<IpAddr> {
    let found = nix::ifaddrs::getifaddrs()
        .map_err(|e| Error::Invalid(format!("listing addresses: {e}")))?
        .filter(|a| a.interface_name == iface)
        .find_map(|a| {
            let a = a.address?;
            match like {
                IpAddr::V4(_) => a.as_sockaddr_in().map(|s| IpAddr::V4(s.ip())),
                IpAddr::V6(_) => a
                    .as_sockaddr_in6()
                    .map(|s| s.ip())
                    .filter(|ip| !ip.is_unicast_link_local())
                    .map(IpAddr::V6),
            }
        });
    found.ok_or_else(|| {
        let family = if like.is_ipv6() {
            "global IPv6"
        } else {
            "IPv4"
        };
        Error::Invalid(format!(
            "{iface} has no {family} address to reach {like} from: add one, or name it with --local"
        ))
    })
}

/// Run TCP-lite streams to or from a plain TCP peer; `on_interval` sees
/// each interval as it is sampled.
pub fn run_plain(
    o: &PlainOptions,
    stop: &AtomicBool,
    mut on_interval: impl FnMut(&crate::report::model::Interval),
) -> Result<PlainReport> {
    let peer_ip = o.peer.ip();
    crate::datapath::socket::check_iface(&o.iface)?;
    let local = match o.local {
        Some(l) if l.is_ipv6() != peer_ip.is_ipv6() => {
            return Err(Error::Invalid(format!(
                "--local {l} and the peer {peer_ip} are of different address families"
            )))
        }
        Some(l) => l,
        None => address_of(&o.iface, peer_ip)?,
    };
    if o.duration.is_none() && o.bytes.is_none() && o.flow == Flow::Send {
        return Err(Error::Invalid(
            "a sender needs --duration or --bytes".into(),
        ));
    }
    let end = StreamEnd::open(
        &o.iface,
        local,
        Ports::Block(usize::from(o.streams.max(1))),
        (o.queues.as_deref(), o.xdp_bind),
        false,
    )?;
    let peer_mac = MacAddr(super::super::neigh::resolve(&o.iface, local, peer_ip)?);
    let mut config = RunPlan::lan_config(
        end.mss(),
        o.window,
        o.buffer.unwrap_or(crate::spec::TCPLITE_DEFAULT_BUFFER),
    );
    config.pacing_rate = o.pacing_bps.map(|b| b / 8 / u64::from(o.streams.max(1)));
    let placed = end.place(usize::from(o.streams.max(1)), o.peer);
    let counters: Vec<Counter> = placed.flows.iter().map(|_| Counter::default()).collect();
    let plan = RunPlan {
        streams: placed
            .flows
            .iter()
            .map(|&(p, worker)| StreamPlan {
                open: Open::Connect {
                    local: p,
                    remote: o.peer,
                },
                worker: Some(worker),
                flow: o.flow,
                prefix: Vec::new(),
                bytes: None,
                header: None,
                expect: Vec::new(),
            })
            .collect(),
        peer_mac,
        duration: o.duration,
        bytes: o.bytes,
        verify: o.verify,
        config,
        idle: Duration::from_secs(10),
        hard: o.duration.unwrap_or(Duration::from_secs(3600)) + Duration::from_secs(30),
        cpus: o.cpus.clone(),
        poll: Default::default(),
        counters: counters.clone(),
        stream_bytes: Vec::new(),
        ready: None,
        receiver_limits: true,
        expect_ids: Vec::new(),
        rr: None,
        interval_latency: Vec::new(),
        placement: Some(placed.how),
    };
    let mode = end.mode.to_string();
    let cpu0 = crate::metrics::cpu::CpuSnapshot::take();
    let gate = Gate::default();
    let start = Instant::now();
    let _ = gate.set(start);
    let halt = std::sync::Arc::new(AtomicBool::new(false));
    let mut work = StreamWork::spawn(end, plan, gate, &halt)?;
    let mut sampler = Sampler::new(start);
    let direction = match o.flow {
        Flow::Send => crate::spec::Direction::Send,
        Flow::Receive => crate::spec::Direction::Receive,
    };
    for (stream, c) in (0u16..).zip(&counters) {
        sampler.watch(crate::spec::FlowId { stream, direction }, c.clone(), None);
    }
    let mut intervals = Vec::new();
    let mut next = o.interval.map(|i| start + i);
    loop {
        let done = work.poll(Duration::from_millis(20));
        let now = Instant::now();
        if let (Some(every), Some(tick)) = (o.interval, next) {
            // Full intervals, and the last partial one.
            if now >= tick || (done && sampler.has_partial(now, every)) {
                let iv = sampler.sample(now);
                on_interval(&iv);
                intervals.push(iv);
                next = Some(crate::metrics::interval::next_tick(tick, every, now));
            }
        }
        if done {
            break;
        }
        if stop.load(Ordering::Relaxed) {
            halt.store(true, Ordering::Relaxed);
        }
    }
    let (mut streams, end) = work.finish();
    for st in &mut streams {
        st.error = st
            .error
            .take()
            .map(|e| with_checksum_hint(e, end.bad_checksum()));
    }
    let cpu = cpu0.report(&crate::metrics::cpu::CpuSnapshot::take());
    let total = crate::report::model::Throughput::sum(
        streams
            .iter()
            .map(|s| crate::report::model::Throughput::new(s.bytes, s.seconds))
            .collect::<Vec<_>>()
            .iter(),
    );
    Ok(PlainReport {
        schema: "wirespeed.plain/2".into(),
        mode,
        local: local.to_string(),
        peer: o.peer.to_string(),
        flow: o.flow,
        streams,
        workers: end.workers,
        placement: end.placement,
        total,
        cpu,
        intervals,
    })
}
