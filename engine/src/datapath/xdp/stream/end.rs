//! One end's AF_XDP side of a TCP-lite run: its TCP ports, reserved in the
//! kernel so no kernel socket takes them, steered by the XDP program to
//! one AF_XDP socket per queue.

use super::super::loader::{FlowMatch, Steering};
use super::super::neigh::Route;
use super::super::session::{check_frame_fits, mode_of, open_sockets, select_queues};
use super::super::xsk::{self, XskQueue};
use crate::wire::ethernet::MacAddr;
use crate::wire::ethernet::HEADER_LEN as ETH_HEADER;
use crate::{Error, Result};
use std::net::{IpAddr, SocketAddr};

/// Most connections one end runs (`--streams` up to 1024, both directions
/// on one end at most twice that).
pub const MAX_FLOWS: usize = 2 * crate::spec::MAX_STREAMS as usize;

/// UMEM frames per queue (32 MiB; three times that with multi-buffer):
/// half stock the fill ring, half are for transmitting. The fill ring
/// bounds what may arrive between two passes of the worker, so it also
/// bounds the windows it advertises ([`StreamEnd::window_cap`]).
const FRAMES: u32 = 8192;

/// The largest MTU TCP-lite follows: jumbo frames, at most three UMEM
/// chunks each.
pub const MAX_MTU: u32 = 9000;

/// Candidate blocks tried when reserving a run of free ports.
const BLOCK_TRIES: usize = 64;

/// An end's TCP ports and sockets. Dropping it detaches the program and
/// releases the ports.
pub struct StreamEnd {
    pub(super) queues: Vec<XskQueue>,
    pub(super) steering: Steering,
    pub(super) reserved: Vec<socket2::Socket>,
    pub mac: MacAddr,
    /// IPv4 or IPv6: TCP-lite runs either.
    pub ip: IpAddr,
    /// The reserved ports: one listening port, or a contiguous block
    /// (one per connection this end opens).
    pub ports: Vec<u16>,
    /// `xdp-zerocopy`, `xdp-copy` or `xdp-generic`.
    pub mode: &'static str,
    /// The interface it runs on.
    pub iface: String,
    mtu: u32,
    /// The NIC's RSS hash, or why it cannot be known (placement).
    rss: std::result::Result<crate::rss::Rss, String>,
}

/// Which ports an end takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ports {
    /// One port that accepts every connection (0 = any free port).
    Listen(u16),
    /// A contiguous block of free ports, one per connection it opens: the
    /// steering program matches the block as one range however many.
    Block(usize),
    /// A port this process's own kernel listener holds (so nothing is
    /// reserved), steered only for connections from `peer`, except the one
    /// from `peer`'s `kernel_port`: an iperf3 server's data streams come to
    /// the port of its control connection, which stays with the kernel.
    Shared {
        port: u16,
        peer: IpAddr,
        kernel_port: u16,
    },
}

/// Bind a TCP socket without listening: the port is ours, and the kernel
/// never sees its frames (the steering program takes them first).
fn reserve(ip: IpAddr, port: u16) -> Result<(socket2::Socket, u16)> {
    let s = socket2::Socket::new(
        socket2::Domain::for_address(SocketAddr::new(ip, 0)),
        socket2::Type::STREAM,
        None,
    )
    .map_err(|e| Error::io("reserving a TCP port", e))?;
    s.bind(&SocketAddr::new(ip, port).into())
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AddrInUse => Error::Refused(format!(
                "TCP port {port} on {ip} is in use: choose another port"
            )),
            _ => Error::io(
                format!("reserving a TCP port on {ip} (is it the interface's address?)"),
                e,
            ),
        })?;
    let got = s
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .map_or(port, |a| a.port());
    Ok((s, got))
}

/// `n` consecutive free ports on `ip`, each held by a bound socket; blocks
/// are tried from a random base above the well-known and registered ranges
/// most services use, a bounded number of times.
fn reserve_block(ip: IpAddr, n: usize) -> Result<(Vec<socket2::Socket>, u16)> {
    const LOW: usize = 20_000;
    const HIGH: usize = 60_000;
    let span = HIGH - LOW - n;
    let seed = u32::from_le_bytes(crate::control::auth::nonce()[..4].try_into().expect("4"));
    for k in 0..BLOCK_TRIES {
        // Aligned to 64 so that `port % workers` spreads a block evenly.
        let base = LOW + ((seed as usize + k * 7919 * 64) % span) / 64 * 64;
        let mut held = Vec::with_capacity(n);
        for p in base..base + n {
            match reserve(ip, p as u16) {
                Ok((s, _)) => held.push(s),
                Err(Error::Refused(_)) => break,
                Err(e) => return Err(e),
            }
        }
        if held.len() == n {
            return Ok((held, base as u16));
        }
    }
    Err(Error::Refused(format!(
        "no {n} consecutive free TCP ports on {ip} in {BLOCK_TRIES} tries: free some ports, or use fewer streams"
    )))
}

impl StreamEnd {
    /// Reserve `ports` on `ip`, steer them on `iface` and open a socket per
    /// queue (`queues`, None = every queue, at most one per online CPU).
    /// `native_only` refuses the generic (skb) hook instead of falling back;
    /// `bind` chooses zero-copy, copy, or either (zero-copy first).
    pub fn open(
        iface: &str,
        ip: IpAddr,
        ports: Ports,
        (queues, bind): (Option<&[u16]>, crate::spec::XdpBind),
        native_only: bool,
    ) -> Result<StreamEnd> {
        if let Ports::Block(n) = ports {
            if n == 0 || n > MAX_FLOWS {
                return Err(Error::Invalid(format!(
                    "TCP over AF_XDP runs 1 to {MAX_FLOWS} connections per end"
                )));
            }
        }
        check_frame_fits(iface, 60)?;
        let mtu = crate::host::iface::facts(iface).1.unwrap_or(1500);
        let want = match queues {
            Some(q) => select_queues(iface, Some(q))?,
            None => {
                let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
                let mut all = select_queues(iface, None)?;
                all.truncate(cpus);
                all
            }
        };
        let rss = crate::host::rss::read(iface).map_err(|e| e.0);
        let (reserved, first, count) = match ports {
            Ports::Listen(p) => {
                let (s, p) = reserve(ip, p)?;
                (vec![s], p, 1)
            }
            Ports::Block(n) => {
                let len = super::placement::block_len(n, rss.is_ok());
                let (held, base) = reserve_block(ip, len)?;
                (held, base, len)
            }
            Ports::Shared { port, .. } => (Vec::new(), port, 1),
        };
        let last = first + (count - 1) as u16;
        let flow = FlowMatch {
            proto: 6,
            addr: Some(ip),
            ports: (first, last),
            peer: match ports {
                Ports::Shared {
                    peer, kernel_port, ..
                } => Some((peer, Some(kernel_port))),
                _ => None,
            },
        };
        let mut steering = Steering::attach(iface, &[flow], native_only)?;
        // Frames longer than a chunk need chained descriptors.
        let multi_buffer = mtu as usize + ETH_HEADER > xsk::chunk_room();
        let queues = open_sockets(iface, &mut steering, &want, FRAMES, (multi_buffer, bind))?;
        let mode = mode_of(&steering, &queues);
        Ok(StreamEnd {
            queues,
            steering,
            reserved,
            mac: MacAddr(crate::host::iface::mac_of(iface)?),
            ip,
            ports: (first..=last).collect(),
            mode,
            iface: iface.to_string(),
            mtu,
            rss,
        })
    }

    /// `--mode auto` for one end's TCP flows from `ip` to `peer_ip`: the
    /// facts first ([`crate::auto::pre_check`]: privileges, address
    /// family, flow count, the link's driver and what the peer runs), then
    /// a real native attach on `iface` (or the interface of `route`, the
    /// kernel's route to the peer). `Some` runs TCP-lite; `None` kernel
    /// sockets. The reason says which and why, for the report.
    pub fn open_auto(
        iface: Option<&str>,
        route: &Route,
        (ip, peer_ip): (IpAddr, IpAddr),
        (ports, queues, bind): (Ports, Option<&[u16]>, crate::spec::XdpBind),
        flows: usize,
        peer: crate::auto::Peer,
    ) -> (Option<StreamEnd>, String) {
        let iface = iface.or(match route {
            Route::Dev(d) => Some(d.as_str()),
            _ => None,
        });
        let driver = iface.and_then(crate::host::iface::driver);
        let facts = crate::auto::Facts {
            linux: true,
            flows,
            max_flows: MAX_FLOWS,
            peer_local: *route == Route::Local || peer_ip.is_loopback(),
            iface,
            driver: driver.as_deref(),
            privileged: crate::auto::xdp_privileged(),
            peer,
        };
        let iface = match crate::auto::pre_check(&facts) {
            Ok(i) => i,
            Err(why) => return (None, why),
        };
        match StreamEnd::open(iface, ip, ports, (queues, bind), true) {
            Ok(end) => {
                let why = crate::auto::after_probe(iface, facts.driver, Ok(end.mode));
                (Some(end), why)
            }
            Err(e) => (
                None,
                crate::auto::after_probe(iface, facts.driver, Err(e.to_string())),
            ),
        }
    }

    /// The MSS this end announces: the MTU (at most [`MAX_MTU`]) less the
    /// IP and TCP headers (40 bytes for IPv4, 60 for IPv6); without
    /// multi-buffer on every socket, no more than one UMEM chunk holds.
    pub fn mss(&self) -> u16 {
        let chained = self.queues.iter().all(|q| q.multi_buffer);
        mss_for(self.mtu, self.ip.is_ipv6(), chained, xsk::chunk_room())
    }

    /// The most each of `flows` connections may advertise as its receive
    /// window so that, all windows full at once, every segment still finds
    /// a fill-ring buffer on its queue: three quarters of the fill ring per
    /// queue (the rest for ACKs and frames of the other direction), split
    /// over the connections one queue carries, at least four segments. A
    /// window past it is not faster, only lost in the kernel when the
    /// worker is off its CPU for a moment (counted as `fill_ring_empty`).
    pub fn window_cap(&self, flows: usize) -> usize {
        let per_queue = FRAMES as usize / 2 * 3 / 4;
        let flows_per_queue = flows.div_ceil(self.queues.len().max(1)).max(1);
        (per_queue / flows_per_queue).max(4) * usize::from(self.mss())
    }

    /// Place `n` connections to `peer` on the workers: a port of the
    /// reserved block and a worker each ([`super::placement`]).
    pub fn place(&self, n: usize, peer: SocketAddr) -> super::placement::Placement {
        let queues: Vec<u32> = self.queues.iter().map(|q| q.queue).collect();
        let block = self.ports[0]..=*self.ports.last().expect("at least one port");
        super::placement::assign(
            self.rss.as_ref().map_err(|e| e.as_str()),
            block,
            (self.ip, peer),
            &queues,
            n,
        )
    }

    /// Workers this end runs: one per opened queue.
    pub fn workers(&self) -> usize {
        self.queues.len()
    }
}

/// The MSS for `mtu`, IPv4 or IPv6: capped at [`MAX_MTU`] when frames may
/// span chunks (`chained`), else at what one chunk of `chunk_room` bytes holds.
fn mss_for(mtu: u32, ipv6: bool, chained: bool, chunk_room: usize) -> u16 {
    let cap = match chained {
        true => MAX_MTU,
        false => (chunk_room - ETH_HEADER) as u32,
    };
    let headers = if ipv6 { 60 } else { 40 };
    (mtu.min(cap) - headers) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mss_follows_the_mtu_up_to_jumbo() {
        assert_eq!(mss_for(1500, false, false, 3840), 1460);
        assert_eq!(mss_for(1500, false, true, 3840), 1460);
        // one chunk: 3840 less the Ethernet header
        assert_eq!(mss_for(9000, false, false, 3840), 3786);
        assert_eq!(mss_for(9000, false, true, 3840), 8960);
        assert_eq!(mss_for(65535, false, true, 3840), 8960);
        assert_eq!(mss_for(1500, true, false, 3840), 1440, "IPv6");
        assert_eq!(mss_for(9000, true, true, 3840), 8940, "IPv6");
    }
}
