//! Flow placement: the local port that makes the NIC deliver a connection's
//! segments to the queue of the worker that owns it.
//!
//! Only the end that opens a connection chooses (its local port); the
//! listening end takes whatever queue the opener's choice lands on. The
//! search is bounded by the candidate range and deterministic: the same
//! inputs give the same ports.

use super::{Fields, Flow, Rss};
use crate::{Error, Result};
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;

/// A placed connection: its local port and the queue the NIC will deliver
/// the peer's segments to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placed {
    pub port: u16,
    pub queue: u32,
}

/// The first port of `ports` that is `available` and makes segments from
/// `peer` to `local` arrive on `queue`; an error saying why when none does.
pub fn local_port(
    rss: &Rss,
    peer: SocketAddr,
    local: IpAddr,
    queue: u32,
    ports: RangeInclusive<u16>,
    mut available: impl FnMut(u16) -> bool,
) -> Result<u16> {
    let search = Search::new(rss, peer, local, queue)?;
    search
        .from(*ports.start(), &ports, &mut available)
        .ok_or_else(|| Error::Invalid(search.none_in(&ports)))
}

/// Queue of flow `i` for `flows` flows dealt round-robin over `queues`
/// (the workers): an even share each, in order.
pub fn round_robin(flows: usize, queues: &[u32]) -> Vec<u32> {
    if queues.is_empty() {
        return Vec::new();
    }
    (0..flows).map(|i| queues[i % queues.len()]).collect()
}

/// Local ports for `flows` connections to `peer`, dealt round-robin over
/// `queues`: flow `i` gets a distinct `available` port of `ports` whose
/// segments arrive on `queues[i % queues.len()]`. Each queue's search
/// resumes where its last one stopped, so the whole costs one pass over
/// the range per queue at most.
pub fn flows(
    rss: &Rss,
    peer: SocketAddr,
    local: IpAddr,
    queues: &[u32],
    flows: usize,
    ports: RangeInclusive<u16>,
    mut available: impl FnMut(u16) -> bool,
) -> Result<Vec<Placed>> {
    if queues.is_empty() && flows > 0 {
        return Err(Error::Invalid(format!(
            "no queues to place {flows} flows on: give at least one"
        )));
    }
    let searches = queues
        .iter()
        .map(|&q| Search::new(rss, peer, local, q))
        .collect::<Result<Vec<_>>>()?;
    // Where each queue's next search starts (None: the range is spent).
    let mut next: Vec<Option<u16>> = vec![Some(*ports.start()); queues.len()];
    let mut placed = Vec::with_capacity(flows);
    for (i, &queue) in round_robin(flows, queues).iter().enumerate() {
        let k = i % queues.len();
        let found = next[k].and_then(|from| searches[k].from(from, &ports, &mut available));
        let port = found.ok_or_else(|| {
            Error::Invalid(format!(
                "after placing {i} of {flows} flows, {}",
                searches[k].none_in(&ports)
            ))
        })?;
        next[k] = port.checked_add(1).filter(|p| ports.contains(p));
        placed.push(Placed { port, queue });
    }
    Ok(placed)
}

/// One placement's fixed part: the hash of everything but the local port.
struct Search<'a> {
    rss: &'a Rss,
    flow: Flow,
    queue: u32,
    /// Hash of the input with the local port zero.
    base: u32,
    ports_hashed: bool,
}

impl<'a> Search<'a> {
    fn new(rss: &'a Rss, peer: SocketAddr, local: IpAddr, queue: u32) -> Result<Search<'a>> {
        let flow = Flow::new(peer, SocketAddr::new(local, 0))?;
        if !rss.indir().contains(&queue) {
            return Err(Error::Invalid(format!(
                "queue {queue} is not in the NIC's indirection table (it spreads over queues {:?}): use those queues, or spread the table with ethtool -X",
                rss.queues()
            )));
        }
        let fields = rss.fields(&flow);
        let base = rss.toeplitz().hash(flow.input(fields).as_bytes());
        let ports_hashed = fields == Fields::AddrsPorts;
        if !ports_hashed && rss.queue_of_hash(base) != queue {
            return Err(Error::Invalid(format!(
                "the NIC hashes only addresses for TCP over {}, so every connection from {peer} arrives on queue {}, not {queue}: hash ports too (ethtool -N IF rx-flow-hash tcp4|tcp6 sdfn)",
                if peer.is_ipv4() { "IPv4" } else { "IPv6" },
                rss.queue_of_hash(base)
            )));
        }
        Ok(Search {
            rss,
            flow,
            queue,
            base,
            ports_hashed,
        })
    }

    /// The queue segments arrive on with local port `port`.
    fn queue(&self, port: u16) -> u32 {
        if !self.ports_hashed {
            return self.rss.queue_of_hash(self.base);
        }
        let h = self.base
            ^ self
                .rss
                .toeplitz()
                .hash_at(self.flow.local_port_pos(), &port.to_be_bytes());
        self.rss.queue_of_hash(h)
    }

    /// The first port from `from` to the end of `ports` that is available
    /// and lands on the queue.
    fn from(
        &self,
        from: u16,
        ports: &RangeInclusive<u16>,
        available: &mut impl FnMut(u16) -> bool,
    ) -> Option<u16> {
        (from.max(*ports.start())..=*ports.end())
            .find(|&p| self.queue(p) == self.queue && available(p))
    }

    fn none_in(&self, ports: &RangeInclusive<u16>) -> String {
        format!(
            "no free local port in {}-{} brings {}'s segments to queue {}: widen the port range or use fewer flows",
            ports.start(),
            ports.end(),
            self.flow.peer(),
            self.queue
        )
    }
}
