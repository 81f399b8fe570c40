//! One end of a raw-mode test: the UDP port reserved in the kernel (so the
//! number is ours and nothing answers it with ICMP), the steering program
//! sending that port's frames to an AF_XDP socket on queue 0, and the
//! worker that sends or receives. Dropping it detaches everything.

use super::loader::{AttachMode, FlowMatch, Steering};
use super::raw::{self, RecvSpec, SendSpec};
use super::xsk::{self, XskMode, XskQueue};
use crate::report::model::{FlowResult, RawStats, Role, SockBufs, Throughput};
use crate::spec::{Direction, RawSpec};
use crate::wire::raw_frame::Endpoints;
use crate::{Error, Result};
use std::net::{Ipv4Addr, UdpSocket};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// UMEM frames per socket: half stock the fill ring, half the rest.
const FRAMES: u32 = 4096;

/// An attached, bound raw endpoint.
pub struct RawEnd {
    pub q: XskQueue,
    _steering: Steering,
    _reserved: UdpSocket,
    pub mac: [u8; 6],
    pub ip: Ipv4Addr,
    pub port: u16,
    /// `xdp-zerocopy`, `xdp-copy` or `xdp-generic`.
    pub mode: &'static str,
}

/// The MAC address of `iface`.
pub fn mac_of(iface: &str) -> Result<[u8; 6]> {
    let s = std::fs::read_to_string(format!("/sys/class/net/{iface}/address"))
        .map_err(|e| Error::io(format!("reading {iface}'s MAC address"), e))?;
    parse_mac(s.trim())
        .ok_or_else(|| Error::Invalid(format!("{iface} has no Ethernet address ({s:?})")))
}

/// `aa:bb:cc:dd:ee:ff` to bytes.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let v: Vec<u8> = s
        .split(':')
        .map(|x| u8::from_str_radix(x, 16))
        .collect::<std::result::Result<_, _>>()
        .ok()?;
    v.try_into().ok()
}

/// Bytes to `aa:bb:cc:dd:ee:ff`.
pub fn fmt_mac(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

impl RawEnd {
    /// Reserve `port` (None = any) on `ip`, attach steering for it on
    /// `iface`, open the AF_XDP socket; the frame size is checked against
    /// the MTU first, with the fix in the error.
    pub fn open(iface: &str, ip: Ipv4Addr, port: Option<u16>, frame_size: u16) -> Result<RawEnd> {
        crate::datapath::socket::check_iface(iface)?;
        let mtu = crate::plan::wire::iface_facts(iface).1.unwrap_or(1500);
        if u32::from(frame_size) > mtu + 14 {
            return Err(Error::Invalid(format!(
                "a {frame_size}-byte frame needs an MTU of at least {} on {iface}, which has {mtu}: use a smaller --frame-size, or raise the MTU (ip link set {iface} mtu ...)",
                frame_size - 14
            )));
        }
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
        let mac = mac_of(iface)?;
        let flow = FlowMatch {
            proto: 17,
            addr: Some(ip.into()),
            ports: (port, port),
        };
        let mut steering = Steering::attach(iface, &[flow], false)?;
        let mut q = xsk::open(iface, 0, FRAMES, false)?;
        // Stock the fill ring before any frame can arrive: half the frames
        // wait there; the sender (if this end sends) uses the other half.
        let rest = q.descs.split_off(q.descs.len() / 2);
        // SAFETY: these frames are ours and on no ring.
        let stocked = unsafe { q.fill.produce(&q.descs) };
        if stocked != q.descs.len() {
            return Err(Error::Invalid(format!(
                "the fill ring took {stocked} of {} frames",
                q.descs.len()
            )));
        }
        q.descs = rest;
        steering.register(0, q.rx.fd())?;
        let mode = match (steering.mode, q.mode) {
            (AttachMode::Generic, _) => "xdp-generic",
            (_, XskMode::ZeroCopy) => "xdp-zerocopy",
            _ => "xdp-copy",
        };
        Ok(RawEnd {
            q,
            _steering: steering,
            _reserved: reserved,
            mac,
            ip,
            port,
            mode,
        })
    }
}

/// What the other end of a raw test is.
#[derive(Clone, Copy, Debug)]
pub struct Peer {
    pub mac: [u8; 6],
    pub ip: Ipv4Addr,
    pub port: u16,
}

/// What a raw worker is to do.
#[derive(Clone, Copy, Debug)]
pub struct RawRun {
    pub role: Role,
    pub direction: Direction,
    pub peer: Peer,
    pub raw: RawSpec,
    pub duration: Duration,
    /// The test's common start (receivers count time to the last frame from it).
    pub start: Instant,
}

/// A raw worker running on its own thread.
pub struct RawWork {
    handle: std::thread::JoinHandle<(RawEnd, FlowResult)>,
}

impl RawWork {
    /// Start sending to, or receiving from, the peer.
    pub fn spawn(mut end: RawEnd, run: RawRun, stop: &Arc<AtomicBool>) -> Result<RawWork> {
        let RawRun {
            role,
            direction,
            peer,
            raw,
            duration,
            start,
        } = run;
        let stop = stop.clone();
        let handle = std::thread::Builder::new()
            .name(format!("raw-{}", direction))
            .spawn(move || {
                let (count, seconds) = match role {
                    Role::Sender => {
                        let spec = SendSpec {
                            ep: Endpoints {
                                src_mac: end.mac,
                                dst_mac: peer.mac,
                                src_ip: end.ip,
                                dst_ip: peer.ip,
                                src_port: end.port,
                                dst_port: peer.port,
                            },
                            frame_size: usize::from(raw.frame_size),
                            tag: raw.tag,
                            queue: 0,
                            rate_pps: raw.rate_pps,
                            duration,
                        };
                        raw::send(&mut end.q, &spec, &stop)
                    }
                    Role::Receiver => {
                        // A little past the sender's end, for frames in flight.
                        let spec = RecvSpec {
                            tag: raw.tag,
                            dst_port: end.port,
                            duration: duration + Duration::from_secs(2),
                            sender_end: duration,
                            idle: Duration::from_millis(500),
                        };
                        raw::receive(&mut end.q, &spec, start, &stop)
                    }
                };
                let result = FlowResult {
                    stream: 0,
                    direction,
                    role,
                    throughput: Throughput::new(count.bytes, seconds),
                    sockbuf: SockBufs::default(),
                    tcp: None,
                    error: None,
                    raw: Some(RawStats::new(count, u32::from(raw.frame_size), seconds)),
                };
                (end, result)
            })
            .map_err(|e| Error::io("starting the raw worker", e))?;
        Ok(RawWork { handle })
    }

    /// Wait up to `wait`; true once the worker is done.
    pub fn poll(&mut self, wait: Duration) -> bool {
        if !self.handle.is_finished() {
            std::thread::sleep(wait);
        }
        self.handle.is_finished()
    }

    /// The worker's result (waits for it); its endpoint is dropped here,
    /// which detaches the steering program.
    pub fn finish(self) -> Vec<FlowResult> {
        match self.handle.join() {
            Ok((_end, r)) => vec![r],
            Err(_) => Vec::new(),
        }
    }
}
