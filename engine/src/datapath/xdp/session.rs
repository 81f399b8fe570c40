//! One end of a raw-mode test: the UDP port reserved in the kernel (so the
//! number is ours and nothing answers it with ICMP), the steering program
//! sending that port's frames to the AF_XDP socket of the queue they
//! arrive on, and one worker per queue, optionally pinned to a CPU, that
//! sends or receives. Dropping it detaches everything.

use super::loader::{AttachMode, FlowMatch, Steering};
use super::raw::{self, RecvSpec, SendSpec};
use super::xsk::{self, XskMode, XskQueue};
use crate::metrics::interval::Counter;
use crate::report::model::{FlowResult, QueueRaw, RawStats, Role, SockBufs, Throughput};
use crate::spec::{Direction, RawSpec, XdpBind};
use crate::wire::raw_frame::Endpoints;
use crate::{Error, Result};
use std::net::{Ipv4Addr, UdpSocket};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// UMEM frames per raw socket (16 MiB of UMEM): half stock the fill ring,
/// half are the sender's.
const FRAMES: u32 = 4096;

/// An attached, bound raw endpoint: one AF_XDP socket per queue.
pub struct RawEnd {
    pub queues: Vec<XskQueue>,
    _steering: Steering,
    _reserved: UdpSocket,
    pub mac: [u8; 6],
    pub ip: Ipv4Addr,
    pub port: u16,
    /// `xdp-zerocopy`, `xdp-copy` or `xdp-generic`: the slowest any queue got.
    pub mode: &'static str,
}

impl RawEnd {
    /// Reserve `port` (None = any) on `ip`, attach steering for it on
    /// `iface`, and open an AF_XDP socket on each of `queues` (None = all
    /// the NIC's queues), bound as `bind` asks. The frame size and the
    /// queue indexes are checked first, with the fix in the error.
    pub fn open(
        iface: &str,
        ip: Ipv4Addr,
        port: Option<u16>,
        frame_size: u16,
        (queues, bind): (Option<&[u16]>, XdpBind),
    ) -> Result<RawEnd> {
        check_frame_fits(iface, frame_size)?;
        let want = select_queues(iface, queues)?;
        let reserved = UdpSocket::bind((ip, port.unwrap_or(0))).map_err(|e| match e.kind() {
            std::io::ErrorKind::AddrInUse => Error::Refused(format!(
                "UDP port {} on {ip} is in use: choose another --data-port",
                port.unwrap_or(0)
            )),
            _ => Error::io(
                format!("reserving a UDP port on {ip} (is it {iface}'s address?)"),
                e,
            ),
        })?;
        let port = reserved
            .local_addr()
            .map_err(|e| Error::io("reading the reserved port", e))?
            .port();
        let mac = crate::host::iface::mac_of(iface)?;
        let flow = FlowMatch {
            proto: 17,
            addr: Some(ip.into()),
            ports: (port, port),
            ..Default::default()
        };
        let mut steering = Steering::attach(iface, &[flow], false)?;
        let socks = open_sockets(iface, &mut steering, &want, FRAMES, (false, bind))?;
        let mode = mode_of(&steering, &socks);
        Ok(RawEnd {
            queues: socks,
            _steering: steering,
            _reserved: reserved,
            mac,
            ip,
            port,
            mode,
        })
    }
}

/// Refuse a frame size the interface's MTU cannot carry, with the fix.
pub fn check_frame_fits(iface: &str, frame_size: u16) -> Result<()> {
    crate::datapath::socket::check_iface(iface)?;
    let mtu = crate::host::iface::facts(iface).1.unwrap_or(1500);
    if u32::from(frame_size) > mtu + 14 {
        return Err(Error::Invalid(format!(
            "a {frame_size}-byte frame needs an MTU of at least {} on {iface}, which has {mtu}: use a smaller --frame-size, or raise the MTU (ip link set {iface} mtu ...)",
            frame_size - 14
        )));
    }
    Ok(())
}

/// The queues to open on `iface`: those named (each checked against the
/// NIC's count, with the fix in the error), or all of them.
pub fn select_queues(iface: &str, queues: Option<&[u16]>) -> Result<Vec<u16>> {
    let have = crate::host::iface::queue_count(iface);
    let want: Vec<u16> = match queues {
        Some(q) => q.to_vec(),
        None => (0..have.min(crate::spec::MAX_QUEUES as u32) as u16).collect(),
    };
    if let Some(bad) = want.iter().find(|&&q| u32::from(q) >= have) {
        return Err(Error::Invalid(format!(
            "queue {bad} is out of range: {iface} has {have} queue(s), 0 to {}: choose with --queues",
            have - 1
        )));
    }
    Ok(want)
}

/// An AF_XDP socket on each queue, registered with the steering program
/// (`multi_buffer`: asking for XDP_USE_SG; `bind`: zero-copy, copy or
/// either; see [`xsk::open`]).
/// Half of each socket's frames stock its fill ring before any frame can
/// arrive; the other half are the sender's.
pub fn open_sockets(
    iface: &str,
    steering: &mut Steering,
    want: &[u16],
    frames: u32,
    (multi_buffer, bind): (bool, XdpBind),
) -> Result<Vec<XskQueue>> {
    let mut socks = Vec::with_capacity(want.len());
    for &qi in want {
        let mut q = xsk::open(iface, u32::from(qi), frames, bind, multi_buffer)?;
        let rest = q.descs.split_off(q.descs.len() / 2);
        // SAFETY: these frames are ours and on no ring.
        let stocked = unsafe { q.fill.produce(&q.descs) };
        if stocked != q.descs.len() {
            return Err(Error::Invalid(format!(
                "queue {qi}: the fill ring took {stocked} of {} frames",
                q.descs.len()
            )));
        }
        q.descs = rest;
        steering.register(u32::from(qi), q.rx.fd())?;
        q.wake_zerocopy();
        socks.push(q);
    }
    Ok(socks)
}

/// `xdp-zerocopy`, `xdp-copy` or `xdp-generic`: the slowest any socket got.
pub fn mode_of(steering: &Steering, socks: &[XskQueue]) -> &'static str {
    match steering.mode {
        AttachMode::Generic => "xdp-generic",
        _ if socks.iter().all(|q| q.mode == XskMode::ZeroCopy) => "xdp-zerocopy",
        _ => "xdp-copy",
    }
}

/// What the other end of a raw test is.
#[derive(Clone, Copy, Debug)]
pub struct Peer {
    pub mac: [u8; 6],
    pub ip: Ipv4Addr,
    pub port: u16,
}

/// What a raw end's workers are to do.
#[derive(Clone, Debug)]
pub struct RawRun {
    pub role: Role,
    pub direction: Direction,
    pub peer: Peer,
    pub raw: RawSpec,
    pub duration: Duration,
    /// The test's common start (receivers count time to the last frame from it).
    pub start: Instant,
    /// CPUs to pin the workers to, in queue order (wrapping); empty = unpinned.
    pub cpus: Vec<u16>,
}

/// A worker's socket back, and what it did.
type Done = (XskQueue, QueueRaw);

/// One raw worker per queue, each on its own thread.
pub struct RawWork {
    handles: Vec<std::thread::JoinHandle<Done>>,
    _end: RawEndShell,
    frame_size: u32,
    direction: Direction,
    role: Role,
    /// Bytes every worker moved so far: what a worker that dies without
    /// its figures moved is this less the others'.
    live: Counter,
}

/// What of a [`RawEnd`] outlives its sockets' hand-off to the workers: the
/// steering program and the reserved port, detached and freed on drop.
struct RawEndShell {
    _steering: Steering,
    _reserved: UdpSocket,
}

/// Refuse CPUs this process may not run on, before anything starts.
pub fn check_cpus(cpus: &[u16]) -> Result<()> {
    let ours: Vec<usize> = core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.id)
        .collect();
    match cpus.iter().find(|&&c| !ours.contains(&usize::from(c))) {
        Some(c) => Err(Error::Invalid(format!(
            "CPU {c} is not one this process may run on (allowed: {ours:?}): choose with --cpus / --remote-cpus"
        ))),
        None => Ok(()),
    }
}

/// Pin the calling thread to `cpu`; false if the kernel refused.
fn pin(cpu: u16) -> bool {
    core_affinity::set_for_current(core_affinity::CoreId {
        id: usize::from(cpu),
    })
}

impl RawWork {
    /// Start one worker per queue, sending to or receiving from the peer.
    /// Bytes moved are added to `live` as they go, for intervals. A sender
    /// splits `--rate` evenly over its queues.
    pub fn spawn(
        end: RawEnd,
        run: RawRun,
        stop: &Arc<AtomicBool>,
        live: &Counter,
    ) -> Result<RawWork> {
        let RawEnd {
            queues,
            _steering,
            _reserved,
            mac,
            ip,
            port,
            ..
        } = end;
        let n = queues.len().max(1);
        let mut handles = Vec::with_capacity(queues.len());
        for (i, mut q) in queues.into_iter().enumerate() {
            let stop = stop.clone();
            let live = live.clone();
            let run = run.clone();
            let cpu = (!run.cpus.is_empty()).then(|| run.cpus[i % run.cpus.len()]);
            let h = std::thread::Builder::new()
                .name(format!("raw-q{}", q.queue))
                .spawn(move || {
                    let pinned = cpu.filter(|&c| pin(c));
                    let qi = q.queue as u16;
                    let (count, seconds) = match run.role {
                        Role::Sender => {
                            let spec = SendSpec {
                                ep: Endpoints {
                                    src_mac: mac,
                                    dst_mac: run.peer.mac,
                                    src_ip: ip,
                                    dst_ip: run.peer.ip,
                                    // A source port per queue, so a receiving
                                    // NIC's RSS can spread the queues' flows.
                                    src_port: port.wrapping_add(i as u16).max(1),
                                    dst_port: run.peer.port,
                                },
                                frame_size: usize::from(run.raw.frame_size),
                                tag: run.raw.tag,
                                queue: qi,
                                rate_pps: run.raw.rate_pps.map(|r| r / n as f64),
                                duration: run.duration,
                            };
                            raw::send(&mut q, &spec, &stop, &live)
                        }
                        Role::Receiver => {
                            // A little past the sender's end, for frames in flight.
                            let spec = RecvSpec {
                                tag: run.raw.tag,
                                dst_port: port,
                                duration: run.duration + Duration::from_secs(2),
                                sender_end: run.duration,
                                idle: Duration::from_millis(500),
                            };
                            raw::receive(&mut q, &spec, run.start, &stop, &live)
                        }
                    };
                    let stats = QueueRaw {
                        queue: qi,
                        cpu_pinned: pinned,
                        cpu: nix::sched::sched_getcpu().ok().map(|c| c as u16),
                        busy_poll: q.busy_poll,
                        count,
                        seconds,
                        frames_per_second: 0.0,
                    };
                    (q, stats)
                })
                .map_err(|e| Error::io("starting a raw worker", e))?;
            handles.push(h);
        }
        Ok(RawWork {
            handles,
            _end: RawEndShell {
                _steering,
                _reserved,
            },
            frame_size: u32::from(run.raw.frame_size),
            direction: run.direction,
            role: run.role,
            live: live.clone(),
        })
    }

    /// Wait up to `wait`; true once every worker is done.
    pub fn poll(&mut self, wait: Duration) -> bool {
        let done = |w: &RawWork| w.handles.iter().all(|h| h.is_finished());
        if !done(self) {
            std::thread::sleep(wait);
        }
        done(self)
    }

    /// The workers' results as one flow with per-queue figures (waits for
    /// them); the sockets close and the steering program detaches here.
    pub fn finish(self) -> Vec<FlowResult> {
        let mut queues = Vec::new();
        let mut panicked = 0;
        for h in self.handles {
            match h.join() {
                Ok((_sock, q)) => queues.push(q),
                Err(_) => panicked += 1,
            }
        }
        queues.sort_by_key(|q| q.queue);
        let mut stats = RawStats::from_queues(self.frame_size, queues);
        // A dead worker's queue has no figures, but its bytes count.
        let lost = self.live.get().saturating_sub(stats.count.bytes);
        let error = (panicked > 0).then(|| {
            format!("{panicked} raw worker(s) panicked after moving {lost} B (in the totals; their queues' figures are lost)")
        });
        if self.role == Role::Receiver {
            // Only this test's flow matches, so these count its frames.
            if let Ok(c) = self._end._steering.counters() {
                stats.steered = Some(c.redirected);
                stats.no_socket = Some(c.no_socket);
            }
        }
        vec![FlowResult {
            stream: 0,
            direction: self.direction,
            role: self.role,
            throughput: Throughput::new(
                stats.count.bytes + if panicked > 0 { lost } else { 0 },
                stats.queues.iter().map(|q| q.seconds).fold(0.0, f64::max),
            ),
            sockbuf: SockBufs::default(),
            tcp: None,
            error,
            raw: Some(stats),
            rr: None,
            sha256: None,
        }]
    }
}
