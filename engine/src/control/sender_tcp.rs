//! The agent's sending sockets' TCP state, sent to the controller while a
//! test runs. In a receive test the agent sends: its TCP_INFO (retransmits,
//! RTT, congestion window) is the one a user needs, while the controller's
//! receiving socket never retransmits and knows barely the handshake's RTT.

use super::messages::FlowTcp;
use crate::metrics::tcpinfo;
use crate::spec::FlowId;
use socket2::Socket;
use std::time::{Duration, Instant};

/// Reads the agent's sending sockets at the period the test asked for.
pub struct SenderFeed {
    socks: Vec<(FlowId, Socket)>,
    every: Option<Duration>,
    next: Instant,
}

impl SenderFeed {
    /// A feed that never sends (the test did not ask, or nothing to read).
    pub fn none() -> SenderFeed {
        SenderFeed {
            socks: Vec::new(),
            every: None,
            next: Instant::now(),
        }
    }

    /// Watch `socks` (duplicate handles of the sending sockets) from
    /// `start`, every `every_ms` when the test asked for it.
    pub fn new(every_ms: Option<u32>, socks: Vec<(FlowId, Socket)>, start: Instant) -> SenderFeed {
        let every = every_ms.map(|ms| Duration::from_millis(u64::from(ms)));
        SenderFeed {
            next: start + every.unwrap_or_default(),
            socks,
            every,
        }
    }

    /// The sockets' TCP state when a period has passed at `now`; None
    /// otherwise, or when no socket could be read (an OS without TCP_INFO
    /// sends nothing rather than zeros).
    pub fn due(&mut self, now: Instant) -> Option<Vec<FlowTcp>> {
        let every = self.every?;
        if self.socks.is_empty() || now < self.next {
            return None;
        }
        self.next = crate::metrics::interval::next_tick(self.next, every, now);
        let flows: Vec<FlowTcp> = self
            .socks
            .iter()
            .filter_map(|(id, s)| {
                Some(FlowTcp {
                    stream: id.stream,
                    direction: id.direction,
                    tcp: tcpinfo::read(s)?,
                })
            })
            .collect();
        (!flows.is_empty()).then_some(flows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Direction;

    #[test]
    #[cfg(target_os = "linux")]
    fn reads_a_connected_socket_once_per_period() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let _server = l.accept().unwrap();
        let id = FlowId {
            stream: 3,
            direction: Direction::Receive,
        };
        let t0 = Instant::now();
        let mut f = SenderFeed::new(Some(100), vec![(id, Socket::from(c))], t0);
        assert!(f.due(t0).is_none(), "not before the first period");
        let got = f.due(t0 + Duration::from_millis(150)).expect("a sample");
        assert_eq!((got[0].stream, got[0].direction), (3, Direction::Receive));
        assert!(got[0].tcp.mss > 0, "{:?}", got[0].tcp);
        assert!(
            f.due(t0 + Duration::from_millis(160)).is_none(),
            "once per period"
        );
        assert!(f.due(t0 + Duration::from_millis(210)).is_some());
        let mut never = SenderFeed::new(None, Vec::new(), t0);
        assert!(never.due(t0 + Duration::from_secs(5)).is_none());
    }
}
