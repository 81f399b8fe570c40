//! The control protocol's vocabulary.
//!
//! One connection carries one test:
//!
//! ```text
//! controller                         agent
//!   preamble  ─────────────────────►
//!             ◄───────────────────── preamble          (versions compared)
//!             ◄───────────────────── Challenge
//!   Hello     ─────────────────────►                   (proof checked)
//!             ◄───────────────────── Welcome | Error
//!   Test      ─────────────────────►                   (caps, iface, port)
//!             ◄───────────────────── Accepted | Error
//!   data connections ══════════════►
//!             ◄───────────────────── Ready | Error
//!   Ping      ─────────────────────►                   (clock offset, repeated)
//!             ◄───────────────────── Pong
//!   Start{at} ─────────────────────►                   (common start instant)
//!             ◄───────────────────── SenderTcp         (if asked: its senders' TCP_INFO, repeated)
//!   ...       (either side may send Abort)
//!             ◄───────────────────── Result | Error
//! ```
//!
//! A third-party pair (two agents; the controller only orchestrates) uses
//! one connection to each agent and the same Ping/Start/Result tail:
//!
//! ```text
//! controller → client agent    Originate        ← Originating {source}
//! controller → server agent    Serve {token}    ← Accepted {data_port}
//! controller → client agent    Connect {token}
//!   client agent → server agent's control port: Vouch ← Vouched (token proof)
//!   client agent ══ data connections ══► server agent
//!                                   ← Ready (from each)
//!   ... Start (to each)
//! client agent → controller    Interval         (if asked: one per period)
//! server agent → controller    SenderTcp        (if asked, as above)
//! ```

use crate::report::model::{HostInfo, Interval, SideReport, TcpStats};
use crate::spec::{Direction, TestSpec};
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, SocketAddr};

/// The server end of a third-party pair: run `spec` as an agent does for
/// a controller, but take data only from `client` with `token`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ServeOrder {
    pub spec: TestSpec,
    /// The pair's one-time token (hex); it becomes the data cookie.
    pub token: String,
    /// The only address data connections may come from.
    pub client: IpAddr,
    /// The server's data address; None = its control address.
    pub local: Option<IpAddr>,
}

/// The client end of a third-party pair: play the controller's data role
/// of `spec` towards `server`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OriginateOrder {
    pub spec: TestSpec,
    /// The server agent's data address: the only one data may go to.
    pub server: IpAddr,
    /// This end's data path.
    pub mode: crate::spec::Mode,
    /// This end's source address and interface.
    pub local: Option<IpAddr>,
    pub iface: Option<String>,
    #[serde(default)]
    pub workers: crate::spec::Workers,
    /// Send an [`Msg::Interval`] this often (milliseconds) while the test
    /// runs; None (and agents older than this field) send none.
    #[serde(default)]
    pub interval_ms: Option<u32>,
}

/// A control message.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Msg {
    /// Agent's opening: a nonce to prove the key against.
    Challenge { nonce: String, auth_required: bool },
    /// Controller's answer; `proof` is present when it holds a key.
    Hello {
        nonce: String,
        proof: Option<String>,
        version: String,
    },
    /// The agent accepted the controller; `proof` when the agent holds a key.
    Welcome {
        proof: Option<String>,
        agent: HostInfo,
    },
    /// The test to run.
    Test(Box<TestSpec>),
    /// The agent is listening for the data connections.
    Accepted {
        data_port: u16,
        cookie: String,
        mode: String,
        /// Why the agent runs that data path (its `auto` pick, or the request).
        #[serde(default)]
        mode_reason: String,
        /// The agent NIC's MAC, for raw tests.
        #[serde(default)]
        mac: Option<String>,
    },
    /// All data connections arrived.
    Ready,
    /// Clock probe (controller's clock, microseconds).
    Ping { t0: u64 },
    /// Clock probe answer: t1 on receipt, t2 on reply (agent's clock).
    Pong { t0: u64, t1: u64, t2: u64 },
    /// Begin measuring at `at_us` in the agent's clock, or now.
    Start { at_us: Option<u64> },
    /// Stop the test early.
    Abort { reason: String },
    /// Mid-test, when the test asked for it (`sender_tcp_ms`): TCP_INFO of
    /// the agent's sending sockets, for the controller's interval lines.
    SenderTcp { flows: Vec<FlowTcp> },
    /// Mid-test, from a third-party pair's client agent asked for it
    /// (`interval_ms`): one reporting interval of its flows.
    Interval(Box<Interval>),
    /// The agent's own measurements.
    Result(Box<SideReport>),
    /// A refusal or failure, with a one-line reason.
    Error { kind: ErrorKind, message: String },
    /// Third-party pair, to its server agent (answered with Accepted).
    Serve(Box<ServeOrder>),
    /// Third-party pair, to its client agent.
    Originate(Box<OriginateOrder>),
    /// The client agent took the order; its data source address and path.
    Originating {
        source: IpAddr,
        mode: String,
        mode_reason: String,
    },
    /// The client agent may connect: the server agent's control address
    /// (to vouch), its data port and the pair's token.
    Connect {
        server_agent: SocketAddr,
        data_port: u16,
        token: String,
    },
    /// Client agent to server agent, instead of Hello: prove you hold the
    /// token of the test listening on `data`.
    Vouch { nonce: String, data: SocketAddr },
    /// The server agent's proof.
    Vouched { proof: String },
}

/// One sending socket's TCP state.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct FlowTcp {
    pub stream: u16,
    pub direction: Direction,
    pub tcp: TcpStats,
}

/// Why an agent said no; lets a controller react without parsing prose.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    Version,
    Protocol,
    Auth,
    Refused,
    Invalid,
    Failed,
}

impl Msg {
    /// The message's name, for errors such as "expected Ready, got Start".
    pub fn name(&self) -> &'static str {
        match self {
            Msg::Challenge { .. } => "challenge",
            Msg::Hello { .. } => "hello",
            Msg::Welcome { .. } => "welcome",
            Msg::Test(_) => "test",
            Msg::Accepted { .. } => "accepted",
            Msg::Ready => "ready",
            Msg::Ping { .. } => "ping",
            Msg::Pong { .. } => "pong",
            Msg::Start { .. } => "start",
            Msg::Abort { .. } => "abort",
            Msg::SenderTcp { .. } => "sender_tcp",
            Msg::Interval(_) => "interval",
            Msg::Result(_) => "result",
            Msg::Error { .. } => "error",
            Msg::Serve(_) => "serve",
            Msg::Originate(_) => "originate",
            Msg::Originating { .. } => "originating",
            Msg::Connect { .. } => "connect",
            Msg::Vouch { .. } => "vouch",
            Msg::Vouched { .. } => "vouched",
        }
    }

    /// The message an agent sends for an engine error.
    pub fn from_error(e: &crate::Error) -> Msg {
        use crate::Error as E;
        let kind = match e {
            E::Version(_) => ErrorKind::Version,
            E::Protocol(_) => ErrorKind::Protocol,
            E::Auth(_) => ErrorKind::Auth,
            E::Refused(_) | E::Privilege(_) => ErrorKind::Refused,
            E::Invalid(_) => ErrorKind::Invalid,
            E::PeerLost(_) | E::Io { .. } => ErrorKind::Failed,
        };
        let message = match e {
            E::Refused(m) | E::Invalid(m) | E::Auth(m) | E::Protocol(m) | E::Version(m) => {
                m.clone()
            }
            other => other.to_string(),
        };
        Msg::Error { kind, message }
    }

    /// The engine error a controller raises for an agent's Error message.
    pub fn into_error(kind: ErrorKind, message: String) -> crate::Error {
        use crate::Error as E;
        match kind {
            ErrorKind::Version => E::Version(message),
            ErrorKind::Protocol => E::Protocol(format!("agent says: {message}")),
            ErrorKind::Auth => E::Auth(message),
            ErrorKind::Refused | ErrorKind::Invalid => E::Refused(message),
            ErrorKind::Failed => E::PeerLost(format!("agent failed: {message}")),
        }
    }
}
