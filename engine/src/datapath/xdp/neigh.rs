//! The destination MAC of raw frames: the next hop's link-layer address
//! from the kernel's neighbour table, as the kernel itself would address
//! them, for IPv4 and IPv6. Route and neighbour both come from rtnetlink
//! ([`crate::host::netlink`]); an absent neighbour is resolved by asking
//! the kernel to (NTF_USE), or where that is refused by one datagram
//! towards the peer, which makes it resolve the hop just the same.

use crate::host::netlink::neigh::{self, Entry};
use crate::host::netlink::{link, route};
use crate::{Error, Result};
use std::net::{IpAddr, SocketAddr, SocketAddrV6, UdpSocket};
use std::time::{Duration, Instant};

/// How long an absent neighbour may take to resolve (ARP and NDP answer
/// in well under this on a working link), and how often to look.
const RESOLVE_WITHIN: Duration = Duration::from_secs(1);
const POLL_EVERY: Duration = Duration::from_millis(15);

/// Where the kernel sends to an address (policy rules, metrics and local
/// addresses included).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// Out of this interface.
    Dev(String),
    /// To this host itself: loopback or one of its own addresses.
    Local,
    /// No route, or the kernel could not be asked.
    Unknown,
}

impl Route {
    /// The kernel's answer as a [`Route`]; `oif_name` names its interface.
    pub fn of(r: &route::RouteInfo, oif_name: Option<String>) -> Route {
        match oif_name {
            _ if r.local => Route::Local,
            Some(n) if n == "lo" => Route::Local,
            Some(n) => Route::Dev(n),
            None => Route::Unknown,
        }
    }
}

/// The kernel's route to `dst` in this namespace, as `ip route get` asks.
pub fn route_to(dst: IpAddr) -> Route {
    match route::get(dst, None, None) {
        Ok(r) => Route::of(
            &r,
            r.oif.and_then(|i| link::by_index(i).ok()).map(|l| l.name),
        ),
        Err(_) if dst.is_loopback() => Route::Local,
        Err(_) => Route::Unknown,
    }
}

/// The next hop towards `dst` out of `iface` sending from `local`, and
/// the interface's index: the route's gateway, or `dst` itself on-link.
pub fn next_hop(iface: &str, local: IpAddr, dst: IpAddr) -> Result<(IpAddr, u32)> {
    let index = link::by_name(iface)
        .map_err(|e| e.into_error(format!("looking up interface {iface}")))?
        .index;
    // With the source as the sockets would use it (policy rules by
    // source); without, where the kernel refuses that source.
    let r = route::get(dst, Some(local), Some(index))
        .or_else(|_| route::get(dst, None, Some(index)))
        .map_err(|e| e.into_error(format!("the route to {dst} out of {iface}")))?;
    if r.local {
        return Err(Error::Invalid(format!(
            "{dst} is an address of this host: frames to it never leave {iface}; test against another host or namespace"
        )));
    }
    Ok((r.gateway.unwrap_or(dst), index))
}

/// The MAC to send to `dst` with on `iface`, from `local`: the next hop's
/// neighbour entry, resolved within a second if absent.
pub fn resolve(iface: &str, local: impl Into<IpAddr>, dst: impl Into<IpAddr>) -> Result<[u8; 6]> {
    let (local, dst) = (local.into(), dst.into());
    let (hop, index) = next_hop(iface, local, dst)?;
    let lookup = || {
        neigh::lookup(hop, index)
            .map_err(|e| e.into_error(format!("reading the neighbour table for {hop} on {iface}")))
    };
    let mut entry = lookup()?;
    if let Entry::Usable(m) = entry {
        return Ok(m);
    }
    if neigh::solicit(hop, index).is_err() {
        poke(local, dst, index);
    }
    let deadline = Instant::now() + RESOLVE_WITHIN;
    while Instant::now() < deadline {
        std::thread::sleep(POLL_EVERY);
        entry = lookup()?;
        if let Entry::Usable(m) = entry {
            return Ok(m);
        }
    }
    let state = match entry {
        Entry::Unusable(s) => neigh::state_name(s),
        _ => "no entry".into(),
    };
    Err(Error::Invalid(format!(
        "next hop {hop} on {iface} (towards {dst}) did not resolve within {RESOLVE_WITHIN:?} ({state}): is {hop} up and reachable through {iface}?"
    )))
}

/// One datagram to `dst`'s discard port: the kernel resolves the next hop
/// to send it, as it does for any packet.
fn poke(local: IpAddr, dst: IpAddr, index: u32) {
    let to = match dst {
        IpAddr::V6(a) => SocketAddr::V6(SocketAddrV6::new(a, 9, 0, index)),
        IpAddr::V4(_) => SocketAddr::new(dst, 9),
    };
    if let Ok(s) = UdpSocket::bind((local, 0)) {
        let _ = s.send_to(&[], to);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_as_callers_see_them() {
        let r = |local, oif| route::RouteInfo {
            oif,
            src: None,
            gateway: None,
            local,
        };
        assert_eq!(
            Route::of(&r(false, Some(2)), Some("wa0".into())),
            Route::Dev("wa0".into())
        );
        assert_eq!(
            Route::of(&r(true, Some(1)), Some("lo".into())),
            Route::Local
        );
        assert_eq!(
            Route::of(&r(false, Some(1)), Some("lo".into())),
            Route::Local,
            "127.0.0.0/8"
        );
        assert_eq!(Route::of(&r(true, None), None), Route::Local);
        assert_eq!(Route::of(&r(false, Some(9)), None), Route::Unknown);
    }
}
