//! The client end of a third-party pair: this agent plays the controller's
//! data role towards another agent, on the controller's order.
//!
//! What the order may do is fenced: `--no-originate` refuses it outright;
//! the agent's own caps and `--allow-iface` apply to its end (the named
//! interface and the route's towards the server); data goes only to the
//! address the order names, and only after the server agent has proved it
//! holds the pair's token for that address (so an order pointing at a
//! third host fails before a byte of test data is sent).

#[cfg(target_os = "linux")]
use super::super::controller;
use super::super::controller::{LocalWork, RunOptions};
use super::super::messages::{Msg, OriginateOrder};
use super::super::token::{self, Token};
use super::super::{auth, expect_msg, frame, REPLY_TIMEOUT};
use super::intervals::{Feed, IntervalFeed, MIN_INTERVAL_MS};
use super::Session;
use crate::datapath::socket::{self as sockpath, FlowHeader, FlowSet, SocketOpts};
use crate::metrics::interval::Sampler;
use crate::report::model::Role;
use crate::spec::Mode;
use crate::{Error, Result};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// This end's TCP-lite worker when it runs one.
#[cfg(target_os = "linux")]
type XdpEnd = crate::datapath::xdp::stream::StreamEnd;
#[cfg(not(target_os = "linux"))]
type XdpEnd = std::convert::Infallible;

impl Session {
    /// Serve an Originate order to the end: Originating, Connect, vouch,
    /// data connections, Ready, then the usual start and result.
    pub(super) fn originate(&mut self, order: OriginateOrder) -> Result<()> {
        self.check_order(&order)?;
        let source = self.source_for(&order)?;
        let _guard = self.reserve()?;
        let opts = RunOptions {
            to: order.server.to_string(),
            spec: order.spec.clone(),
            mode: order.mode,
            local: Some(source),
            iface: order.iface.clone(),
            psk: None,
            interval: None,
            connect_timeout: Duration::from_secs(5),
            idle_timeout: self.cfg.idle_timeout,
            cancel: None,
            workers: order.workers.clone(),
            raw: None,
            xdp_bind: Default::default(),
        };
        let (end, mode, mode_reason) = open_end(&opts, order.server, source)?;
        tracing::info!(peer = %self.peer, server = %order.server, %mode, "pair test accepted (client end)");
        frame::write_msg(
            &mut self.conn,
            &Msg::Originating {
                source,
                mode: mode.clone(),
                mode_reason,
            },
        )?;
        let (server_agent, data_port, token) = match expect_msg(&mut self.conn)? {
            Msg::Connect {
                server_agent,
                data_port,
                token,
            } => (server_agent, data_port, Token::parse(&token)?),
            Msg::Abort { reason } => {
                return Err(Error::PeerLost(format!("controller aborted: {reason}")))
            }
            other => {
                return Err(Error::Protocol(format!(
                    "expected connect, got {}",
                    other.name()
                )))
            }
        };
        let data = SocketAddr::new(order.server, data_port);
        vouch(server_agent, data, &token)?;
        let work = connect_data(&opts, end, data, &token, self.cfg.data_timeout)?;
        let at = frame::write_msg(&mut self.conn, &Msg::Ready).and_then(|()| self.await_start());
        let at = match at {
            Ok(at) => at,
            Err(e) => {
                work.abandon();
                return Err(e);
            }
        };
        let began = self.begin(at, opts.iface.as_deref());
        let stop = work.stop.clone();
        let mut sampler = Sampler::new(began.start);
        let mut local = self.start_local(work, &order.spec, began.start, &mut sampler)?;
        let mut feed: Box<dyn Feed> = match order.interval_ms {
            Some(ms) => Box::new(IntervalFeed::new(
                sampler,
                began.start,
                Duration::from_millis(u64::from(ms)),
            )),
            None => Box::new(super::SenderFeed::none()),
        };
        let lost = self.watch(
            || local.poll(Duration::from_millis(20)),
            &stop,
            feed.as_mut(),
        );
        let (flows, workers, _) = local.finish();
        self.send_result(lost, (flows, workers), began)
    }

    /// Release the data at `start`: TCP-lite's gate opens, or the socket
    /// flows start in the controller's role; either way `sampler` watches
    /// them as the controller's would.
    fn start_local(
        &self,
        work: Connected,
        spec: &crate::spec::TestSpec,
        start: std::time::Instant,
        sampler: &mut Sampler,
    ) -> Result<LocalWork> {
        #[cfg(target_os = "linux")]
        if let Some(x) = work.xdp {
            let _ = x.gate.set(start);
            for ((&id, c), l) in x.ids.iter().zip(&x.counters).zip(&x.latency) {
                sampler.watch_rr(id, c.clone(), None, l.clone());
            }
            return Ok(LocalWork::Stream(x.work, x.ids));
        }
        let mut flows = self.socket_flows(spec, work.socks, true);
        for f in &mut flows {
            // rr clients report interval percentiles, as the controller's do.
            if f.role == Role::Sender && matches!(spec.test, crate::spec::TestKind::Rr { .. }) {
                f.interval_latency = Some(crate::metrics::latency::shared());
            }
            let sending = (f.role == Role::Sender)
                .then(|| f.sock.try_clone().ok())
                .flatten();
            sampler.watch_rr(f.id, f.counter.clone(), sending, f.interval_latency.clone());
        }
        Ok(LocalWork::Flows(FlowSet::spawn(flows, start, &work.stop)?))
    }

    /// Refusals before anything is opened: the agent's own policy.
    fn check_order(&self, order: &OriginateOrder) -> Result<()> {
        if self.cfg.no_originate {
            return Err(Error::Refused(
                "this agent does not originate tests (--no-originate): make it the pair's server, or restart it without --no-originate".into(),
            ));
        }
        if order.spec.raw.is_some() {
            return Err(Error::Refused(
                "raw frames run only between a controller and an agent, not in third-party pairs"
                    .into(),
            ));
        }
        if order.interval_ms.is_some_and(|ms| ms < MIN_INTERVAL_MS) {
            return Err(Error::Invalid(format!(
                "intervals more often than every {MIN_INTERVAL_MS} ms flood the control connection"
            )));
        }
        if !token::plausible_peer(order.server) {
            return Err(Error::Invalid(format!(
                "{} cannot be a pair's server address",
                order.server
            )));
        }
        // The agent's caps and allow-list, with this end standing where
        // the agent's end of a controller's test would.
        let mut as_served = order.spec.clone();
        as_served.remote_iface = order.iface.clone();
        as_served.remote_mode = order.mode;
        self.check(&as_served)
    }

    /// This end's source address towards `order.server`: the named one,
    /// else the kernel's pick; the route must leave through an allowed
    /// interface.
    fn source_for(&self, order: &OriginateOrder) -> Result<IpAddr> {
        let allow = &self.cfg.allow_iface;
        if !allow.is_empty() && order.iface.is_none() {
            let dev = route_dev(order.server);
            if !dev.as_ref().is_some_and(|d| allow.contains(d)) {
                return Err(Error::Refused(format!(
                    "the route to {} leaves through {}, not an interface this agent allows (allowed: {})",
                    order.server,
                    dev.as_deref().unwrap_or("an unknown interface"),
                    allow.join(", ")
                )));
            }
        }
        if let Some(l) = order.local {
            return Ok(l);
        }
        let probe = std::net::UdpSocket::bind(match order.server {
            IpAddr::V4(_) => SocketAddr::from(([0u8; 4], 0)),
            IpAddr::V6(_) => SocketAddr::from(([0u16; 8], 0)),
        })
        .map_err(|e| Error::io("finding the source address", e))?;
        probe
            .connect(SocketAddr::new(order.server, 9))
            .and_then(|()| probe.local_addr())
            .map(|a| a.ip())
            .map_err(|e| {
                Error::Refused(format!("this agent has no route to {}: {e}", order.server))
            })
    }
}

/// The interface the kernel routes `dst` through, where it can be asked.
fn route_dev(dst: IpAddr) -> Option<String> {
    #[cfg(target_os = "linux")]
    {
        match crate::datapath::xdp::neigh::route_to(dst) {
            crate::datapath::xdp::neigh::Route::Dev(d) => Some(d),
            _ => None,
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = dst;
        None
    }
}

/// This end's data path as the order asks: TCP-lite reserved now (so a
/// refusal costs the server nothing), sockets opened on Connect.
fn open_end(
    opts: &RunOptions,
    server: IpAddr,
    source: IpAddr,
) -> Result<(Option<XdpEnd>, String, String)> {
    let socket = |why: String| Ok((None, "socket".to_string(), why));
    match opts.mode {
        Mode::Socket => socket("requested: sockets on the pair's client end".into()),
        #[cfg(target_os = "linux")]
        Mode::Xdp => {
            let end = controller::open_stream_end(opts, source)?;
            let mode = end.mode.to_string();
            Ok((
                Some(end),
                mode,
                "TCP-lite over AF_XDP on the pair's client end, as requested".into(),
            ))
        }
        #[cfg(target_os = "linux")]
        Mode::Auto => {
            use crate::datapath::xdp::stream::{Ports, StreamEnd};
            let n = opts.spec.flows().len();
            let (end, why) = StreamEnd::open_auto(
                opts.iface.as_deref(),
                &crate::datapath::xdp::neigh::route_to(server),
                (source, server),
                (
                    Ports::Block(n),
                    opts.workers.queues.as_deref(),
                    opts.xdp_bind,
                ),
                n,
                crate::auto::Peer::of(opts.spec.remote_mode),
            );
            match end {
                Some(end) => {
                    let mode = end.mode.to_string();
                    Ok((Some(end), mode, why))
                }
                None => socket(why),
            }
        }
        #[cfg(not(target_os = "linux"))]
        Mode::Xdp => Err(Error::Refused(
            "TCP over AF_XDP needs Linux; this agent runs on another system: use mode socket"
                .into(),
        )),
        #[cfg(not(target_os = "linux"))]
        Mode::Auto => {
            let _ = (server, source);
            socket("auto: AF_XDP needs Linux; kernel sockets".into())
        }
    }
}

/// Ask the server agent, on its control port, to prove it holds `token`
/// for `data`: the guard against an order naming a third host.
fn vouch(server_agent: SocketAddr, data: SocketAddr, token: &Token) -> Result<()> {
    let refused = |why: String| {
        Error::Refused(format!(
            "the server agent at {server_agent} did not vouch for {data}: {why}; is {data} really a host in this test?"
        ))
    };
    let mut conn = TcpStream::connect_timeout(&server_agent, Duration::from_secs(5))
        .map_err(|e| refused(format!("cannot reach it ({e})")))?;
    let _ = conn.set_write_timeout(Some(REPLY_TIMEOUT));
    frame::write_preamble(&mut conn, frame::PROTOCOL_VERSION)?;
    let theirs = frame::read_preamble(&mut crate::deadline::Deadline::new(&conn, REPLY_TIMEOUT))
        .map_err(|e| refused(e.to_string()))?;
    frame::check_version(frame::PROTOCOL_VERSION, theirs, "the server agent")?;
    match expect_msg(&mut conn)? {
        Msg::Challenge { .. } => {}
        other => return Err(refused(format!("it sent {}", other.name()))),
    }
    let nonce = auth::nonce();
    frame::write_msg(
        &mut conn,
        &Msg::Vouch {
            nonce: auth::to_hex(&nonce),
            data,
        },
    )?;
    match expect_msg(&mut conn)? {
        Msg::Vouched { proof } if token.verify(&nonce, data, &proof) => Ok(()),
        Msg::Vouched { .. } => Err(refused("its proof does not match the token".into())),
        Msg::Error { message, .. } => Err(refused(message)),
        other => Err(refused(format!("it sent {}", other.name()))),
    }
}

/// The data connections, open and waiting for the start.
struct Connected {
    socks: Vec<(crate::spec::FlowId, socket2::Socket)>,
    #[cfg(target_os = "linux")]
    xdp: Option<controller::XdpPrep>,
    stop: Arc<AtomicBool>,
}

/// Open every flow to `data` with the token as its cookie.
fn connect_data(
    opts: &RunOptions,
    end: Option<XdpEnd>,
    data: SocketAddr,
    token: &Token,
    timeout: Duration,
) -> Result<Connected> {
    #[cfg(target_os = "linux")]
    if let Some(end) = end {
        let x = controller::start_streams(opts, end, data, data.port(), &token.hex())?;
        let stop = x.stop.clone();
        return Ok(Connected {
            socks: Vec::new(),
            xdp: Some(x),
            stop,
        });
    }
    #[cfg(not(target_os = "linux"))]
    if let Some(never) = end {
        match never {}
    }
    let sopts = SocketOpts {
        sockbuf: opts.spec.sockbuf,
        iface: opts.iface.clone(),
        local: opts.local,
    };
    let socks = opts
        .spec
        .flows()
        .into_iter()
        .map(|id| {
            let h = FlowHeader {
                cookie: token.0,
                id,
            };
            Ok((id, sockpath::connect_flow(data, &sopts, &h, timeout)?))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Connected {
        socks,
        #[cfg(target_os = "linux")]
        xdp: None,
        stop: Arc::new(AtomicBool::new(false)),
    })
}

impl Connected {
    /// Stop before the start: the TCP-lite worker ends, sockets close.
    fn abandon(self) {
        self.stop.store(true, Ordering::Relaxed);
        #[cfg(target_os = "linux")]
        if let Some(x) = self.xdp {
            let _ = x.work.finish();
        }
    }
}
