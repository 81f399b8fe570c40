//! Which worker each connection an end opens runs on, and so which local
//! port it takes. Where the NIC's RSS hash can be read (host::rss), ports
//! are chosen from the end's reserved block so that the NIC delivers the
//! peer's segments to the owning worker's queue (Toeplitz over the NIC's
//! own key and indirection table); where it can't (veth, tap, a driver
//! that hides its key), flow `i` takes port `base + i` and worker
//! `port % workers`, the rule the other end's workers share, and a frame
//! that lands elsewhere is handed over. Pure: the NIC's facts come in.

use crate::rss::{place, Rss};
use std::net::{IpAddr, SocketAddr};

/// Connections placed: `(local port, worker)` in flow order, and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    pub flows: Vec<(u16, usize)>,
    /// For the report: "rss" with the NIC's hash, or why not.
    pub how: String,
}

/// Place `n` connections from `local` to `peer` on workers polling
/// `queues` (worker `k` polls `queues[k]`), with ports from the reserved
/// block `block`.
pub fn assign(
    rss: Result<&Rss, &str>,
    block: std::ops::RangeInclusive<u16>,
    (local, peer): (IpAddr, SocketAddr),
    queues: &[u32],
    n: usize,
) -> Placement {
    let fallback = |why: String| Placement {
        flows: block
            .clone()
            .take(n)
            .map(|p| (p, usize::from(p) % queues.len().max(1)))
            .collect(),
        how: format!("port % workers ({why}): frames on another queue are handed over"),
    };
    let rss = match rss {
        Ok(r) => r,
        Err(why) => return fallback(why.to_string()),
    };
    match place::flows(rss, peer, local, queues, n, block.clone(), |_| true) {
        Ok(placed) => Placement {
            flows: placed
                .iter()
                .map(|p| {
                    let worker = queues.iter().position(|&q| q == p.queue).expect("placed on one");
                    (p.port, worker)
                })
                .collect(),
            how: "rss: each port chosen so the NIC's Toeplitz hash delivers the flow to its worker's queue".into(),
        },
        Err(e) => fallback(format!("RSS placement failed: {e}")),
    }
}

/// Ports to reserve for `n` connections over `workers` workers: with a
/// readable hash a port lands on a given queue about once in `workers`
/// tries, so twice the flows and some slack cover an uneven table; else
/// one each.
pub fn block_len(n: usize, rss_known: bool) -> usize {
    if rss_known {
        (2 * n + 256).min(16_384)
    } else {
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rss::{Fields, SPEC_KEY};

    fn rss(queues: u32) -> Rss {
        let indir = (0..128).map(|i| i % queues).collect();
        Rss::new(&SPEC_KEY, indir, Fields::AddrsPorts, Fields::AddrsPorts).unwrap()
    }

    #[test]
    fn with_rss_every_flow_lands_on_its_workers_queue() {
        let r = rss(4);
        let queues = [2u32, 3];
        let peer: SocketAddr = "198.18.0.2:5290".parse().unwrap();
        let local: IpAddr = "198.18.0.1".parse().unwrap();
        let p = assign(Ok(&r), 20_000..=20_300, (local, peer), &queues, 16);
        assert!(p.how.starts_with("rss"), "{}", p.how);
        assert_eq!(p.flows.len(), 16);
        let mut seen = std::collections::HashSet::new();
        for (i, &(port, worker)) in p.flows.iter().enumerate() {
            assert!(seen.insert(port), "distinct ports");
            assert_eq!(worker, i % 2, "round robin over the workers");
            let flow = crate::rss::Flow::new(peer, SocketAddr::new(local, port)).unwrap();
            assert_eq!(r.queue_of(&flow), queues[worker], "port {port}");
        }
    }

    #[test]
    fn without_rss_ports_in_order_and_the_shared_rule() {
        let peer: SocketAddr = "[2001:2::2]:5290".parse().unwrap();
        let local: IpAddr = "2001:2::1".parse().unwrap();
        let p = assign(
            Err("veth: no RSS"),
            20_480..=20_487,
            (local, peer),
            &[0, 1],
            8,
        );
        assert_eq!(
            p.flows,
            (20_480..=20_487)
                .map(|p| (p, usize::from(p) % 2))
                .collect::<Vec<_>>()
        );
        assert!(p.how.contains("veth: no RSS"), "{}", p.how);
    }

    #[test]
    fn a_block_too_small_falls_back_and_says_why() {
        let r = rss(8);
        let peer: SocketAddr = "198.18.0.2:5290".parse().unwrap();
        let local: IpAddr = "198.18.0.1".parse().unwrap();
        let p = assign(Ok(&r), 30_000..=30_003, (local, peer), &[5, 6, 7], 4);
        assert_eq!(p.flows.len(), 4);
        assert!(p.how.contains("RSS placement failed"), "{}", p.how);
    }
}
