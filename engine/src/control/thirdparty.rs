//! Third-party pairs: two agents carry the data, the controller only
//! orchestrates (the study's second client machine, and the way past one
//! controller host).
//!
//! The controller opens a control connection to each agent, orders the
//! client end first (so it can say which source address and data path it
//! will use), grants the server end a fresh one-time token bound to that
//! address, hands the client the server's data port and the token, and
//! waits for both to be Ready. Then it matches both clocks, starts both at
//! one instant, and merges the two agents' results as it would its own and
//! one agent's: the client stands where the controller's end would. So
//! the client agent samples the intervals, and the server agent sends its
//! senders' TCP state for the flows the client only receives.

use super::clock::{self, Estimate};
use super::controller::{self, connect_control, handshake, parse_target, unexpected, Event};
use super::controller::{RunOptions, START_LEAD};
use super::messages::{FlowTcp, Msg, OriginateOrder, ServeOrder};
use super::token::Token;
use super::{expect_msg, frame, poll_msg};
use crate::datapath::socket::SocketOpts;
use crate::report::model::{HostInfo, Interval, RunConfig, RunReport, SideReport, TcpFrom, SCHEMA};
use crate::spec::Direction;
use crate::{Error, Result};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A third-party test: `run` describes it as for `wirespeed run`, its
/// local/iface/mode/workers being the client agent's end.
#[derive(Clone, Debug)]
pub struct PairOptions {
    /// The client agent: HOST[:PORT].
    pub from: String,
    /// Its key, if it has one (the server's is `run.psk`).
    pub from_psk: Option<Vec<u8>>,
    pub run: RunOptions,
    /// The server agent's data address; None = its control address.
    pub remote_local: Option<IpAddr>,
}

/// One agent's control connection.
struct Agent {
    conn: TcpStream,
    addr: SocketAddr,
    host: HostInfo,
    clock: Estimate,
}

impl Agent {
    fn open(target: &str, psk: Option<&[u8]>, timeout: Duration) -> Result<Agent> {
        let (host, port) = parse_target(target)?;
        let addr = (host.as_str(), port)
            .to_socket_addrs()
            .map_err(|e| Error::Invalid(format!("cannot resolve {host:?}: {e}")))?
            .next()
            .ok_or_else(|| Error::Invalid(format!("{host:?} has no address")))?;
        let mut conn = connect_control(addr, &SocketOpts::default(), timeout)?;
        let host = handshake(&mut conn, addr, psk)?;
        Ok(Agent {
            conn,
            addr,
            host,
            clock: Estimate::default(),
        })
    }

    /// The next message, which must be `want`; the agent's Error is ours.
    fn expect(&mut self, want: &str) -> Result<Msg> {
        let m = expect_msg(&mut self.conn)?;
        match &m {
            Msg::Error { .. } => Err(unexpected(want, m)),
            other if other.name() == want => Ok(m),
            _ => Err(unexpected(want, m)),
        }
    }

    fn abort(&mut self, reason: &str) {
        let _ = frame::write_msg(
            &mut self.conn,
            &Msg::Abort {
                reason: reason.into(),
            },
        );
    }
}

/// Both ends ready: data connections open, nothing measured yet.
pub struct PreparedPair {
    opts: PairOptions,
    client: Agent,
    server: Agent,
    data_port: u16,
    mode: (String, String),
    remote_mode: (String, String),
}

/// Name which end failed, so a plan's error says where to look.
fn at(end: &str, addr: &str) -> impl Fn(Error) -> Error {
    let (end, addr) = (end.to_string(), addr.to_string());
    move |e| match e {
        Error::Refused(m) => Error::Refused(format!("{end} agent {addr}: {m}")),
        Error::Invalid(m) => Error::Invalid(format!("{end} agent {addr}: {m}")),
        Error::PeerLost(m) => Error::PeerLost(format!("{end} agent {addr}: {m}")),
        other => other,
    }
}

/// Order both ends and wait until both are Ready.
pub fn prepare(opts: &PairOptions) -> Result<PreparedPair> {
    let r = &opts.run;
    if r.raw.is_some() {
        return Err(Error::Invalid(
            "--raw frames run between the controller and one agent: drop --from, or --raw".into(),
        ));
    }
    r.spec.validate()?;
    let timeout = r.connect_timeout;
    let mut client = Agent::open(&opts.from, opts.from_psk.as_deref(), timeout)
        .map_err(at("client", &opts.from))?;
    let mut server = Agent::open(&r.to, r.psk.as_deref(), timeout).map_err(at("server", &r.to))?;
    if client.addr == server.addr {
        return Err(Error::Invalid(
            "--from and --to name the same agent: a pair needs two ends".into(),
        ));
    }
    let server_ip = opts.remote_local.unwrap_or(server.addr.ip());
    let order = OriginateOrder {
        spec: r.spec.clone(),
        server: server_ip,
        mode: r.mode,
        local: r.local,
        iface: r.iface.clone(),
        workers: r.workers.clone(),
        interval_ms: r.interval.map(|i| {
            u32::try_from(i.as_millis())
                .unwrap_or(u32::MAX)
                .max(super::agent::MIN_INTERVAL_MS)
        }),
    };
    frame::write_msg(&mut client.conn, &Msg::Originate(Box::new(order)))?;
    let (source, mode) = match client
        .expect("originating")
        .map_err(at("client", &opts.from))?
    {
        Msg::Originating {
            source,
            mode,
            mode_reason,
        } => (source, (mode, mode_reason)),
        _ => unreachable!("expect checked the name"),
    };
    let token = Token::fresh();
    let mut spec = r.spec.clone();
    spec.peer_xdp = mode.0.starts_with("xdp");
    spec.sender_tcp_ms = controller::sender_tcp_ms(r.interval, &spec);
    let serve = ServeOrder {
        spec,
        token: token.hex(),
        client: source,
        local: opts.remote_local,
    };
    frame::write_msg(&mut server.conn, &Msg::Serve(Box::new(serve)))?;
    let (data_port, remote_mode) = match server.expect("accepted").map_err(at("server", &r.to))? {
        Msg::Accepted {
            data_port,
            mode,
            mode_reason,
            ..
        } => (data_port, (mode, mode_reason)),
        _ => unreachable!("expect checked the name"),
    };
    frame::write_msg(
        &mut client.conn,
        &Msg::Connect {
            server_agent: server.addr,
            data_port,
            token: token.hex(),
        },
    )?;
    let ready = client.expect("ready").map_err(at("client", &opts.from));
    if let Err(e) = ready {
        server.abort(&e.to_string());
        return Err(e);
    }
    server.expect("ready").map_err(at("server", &r.to))?;
    Ok(PreparedPair {
        opts: opts.clone(),
        client,
        server,
        data_port,
        mode,
        remote_mode,
    })
}

/// Prepare, match clocks and run one pair, starting as soon as it is ready.
pub fn run(opts: &PairOptions, mut on_event: impl FnMut(Event<'_>)) -> Result<RunReport> {
    let mut p = prepare(opts)?;
    p.sync_clock(controller::CLOCK_SAMPLES)?;
    on_event(Event::Accepted {
        agent: &p.server.host,
        addr: p.server.addr,
        data_port: p.data_port,
    });
    let lead = Duration::from_micros(p.rtt_us() * 4) + START_LEAD;
    p.run_at(Instant::now() + lead, on_event)
}

/// What arrives while a pair runs: the client's intervals, and the
/// server's TCP state of the flows it sends, put into those intervals
/// where the client has no sending socket to read (as the controller fills
/// its own lines from an agent's SenderTcp).
#[derive(Default)]
struct Live {
    intervals: Vec<Interval>,
    server_tcp: Vec<FlowTcp>,
    /// Retransmits already counted, per (stream, direction).
    counted: Vec<(u16, Direction, u32)>,
}

impl Live {
    fn server_tcp(&mut self, flows: Vec<FlowTcp>) {
        for f in flows {
            self.server_tcp
                .retain(|x| (x.stream, x.direction) != (f.stream, f.direction));
            self.server_tcp.push(f);
        }
    }

    fn interval(&mut self, mut iv: Interval) -> &Interval {
        for f in iv.flows.iter_mut().filter(|f| f.tcp_from.is_none()) {
            let key = (f.stream, f.direction);
            let Some(t) = self
                .server_tcp
                .iter()
                .find(|x| (x.stream, x.direction) == key)
            else {
                continue;
            };
            let before = match self.counted.iter_mut().find(|c| (c.0, c.1) == key) {
                Some(c) => std::mem::replace(&mut c.2, t.tcp.retransmits),
                None => {
                    self.counted.push((key.0, key.1, t.tcp.retransmits));
                    0
                }
            };
            f.retransmits = Some(t.tcp.retransmits.saturating_sub(before));
            f.rtt_us = Some(t.tcp.rtt_us);
            f.snd_cwnd = Some(t.tcp.snd_cwnd);
            f.tcp_from = Some(TcpFrom::Agent);
        }
        self.intervals.push(iv);
        self.intervals.last().expect("just pushed")
    }
}

impl PreparedPair {
    /// Both agents' clock offsets from `n` probes each.
    pub fn sync_clock(&mut self, n: usize) -> Result<()> {
        self.client.clock = controller::probe_clock(&mut self.client.conn, n)?;
        self.server.clock = controller::probe_clock(&mut self.server.conn, n)?;
        Ok(())
    }

    /// The worse of the two best probes' round trips.
    pub fn rtt_us(&self) -> u64 {
        self.client.clock.rtt_us.max(self.server.clock.rtt_us)
    }

    /// Start both ends at `at` (our clock), pass on the intervals as they
    /// come, wait for both results, merge.
    pub fn run_at(mut self, at: Instant, mut on_event: impl FnMut(Event<'_>)) -> Result<RunReport> {
        let at_us = clock::us_of(at);
        let started_unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        for a in [&mut self.client, &mut self.server] {
            let at_us = Some(a.clock.to_agent(at_us));
            frame::write_msg(&mut a.conn, &Msg::Start { at_us })?;
        }
        let r = &self.opts.run;
        let deadline = at
            + Duration::from_secs_f64(r.spec.nominal_seconds())
            + r.idle_timeout * 2
            + super::REPLY_TIMEOUT;
        let mut results: [Option<SideReport>; 2] = [None, None];
        let mut live = Live::default();
        while results.iter().any(Option::is_none) {
            let failure = self.poll_results(&mut results, deadline, &mut live, &mut on_event);
            if let Some(e) = failure {
                self.client.abort(&e.to_string());
                self.server.abort(&e.to_string());
                return Err(e);
            }
        }
        let [Some(local), Some(remote)] = results else {
            unreachable!("the loop ends with both")
        };
        Ok(self.report(local, remote, started_unix, live.intervals))
    }

    /// One round of waiting on both agents: a failure, if any.
    fn poll_results(
        &mut self,
        results: &mut [Option<SideReport>; 2],
        deadline: Instant,
        live: &mut Live,
        on_event: &mut dyn FnMut(Event<'_>),
    ) -> Option<Error> {
        if Instant::now() > deadline {
            return Some(Error::PeerLost(
                "an agent sent no result within the test's time and its grace".into(),
            ));
        }
        if let Some(c) = &self.opts.run.cancel {
            if c.load(Ordering::Relaxed) {
                return Some(Error::PeerLost("interrupted".into()));
            }
        }
        let names = [
            ("client", self.opts.from.clone()),
            ("server", self.opts.run.to.clone()),
        ];
        for (k, ((slot, a), (end, addr))) in results
            .iter_mut()
            .zip([&mut self.client, &mut self.server])
            .zip(&names)
            .enumerate()
        {
            if slot.is_some() {
                continue;
            }
            match poll_msg(&mut a.conn, Duration::from_millis(10), frame::MAX_REPORT) {
                Ok(None) => {}
                Ok(Some(Msg::Result(rep))) => *slot = Some(*rep),
                Ok(Some(Msg::Interval(iv))) if k == 0 => {
                    on_event(Event::Interval(live.interval(*iv)));
                }
                Ok(Some(Msg::SenderTcp { flows })) if k == 1 => live.server_tcp(flows),
                Ok(Some(other)) => return Some(at(end, addr)(unexpected("result", other))),
                Err(e) => {
                    return Some(at(end, addr)(Error::PeerLost(format!(
                        "went away mid-test ({e})"
                    ))))
                }
            }
        }
        None
    }

    fn report(
        self,
        local: SideReport,
        remote: SideReport,
        started_unix: f64,
        intervals: Vec<Interval>,
    ) -> RunReport {
        let end = controller::join_ends(
            (&self.mode.0, &self.remote_mode.0),
            (local, self.client.clock),
            (remote, self.server.clock),
            self.opts.run.spec.verify,
        );
        let r = &self.opts.run;
        RunReport {
            schema: SCHEMA.into(),
            config: RunConfig {
                to: self.server.addr.to_string(),
                from: Some(self.client.addr.to_string()),
                agent_data_port: self.data_port,
                mode: self.mode.0.clone(),
                mode_reason: self.mode.1,
                remote_mode: self.remote_mode.0,
                remote_mode_reason: self.remote_mode.1,
                test: r.spec.clone(),
                local: r.local.map(|l| l.to_string()),
                iface: r.iface.clone(),
                started_unix,
            },
            intervals,
            end,
        }
    }
}
