//! The plan file: agents, pairs, defaults, a sweep over how many pairs run,
//! repetitions, and named configurations to compare. Unknown keys, missing
//! agents, two pairs on one port, zero durations and unparsable speeds are
//! refused with the file, the line and the fix.

use super::test_kind::{self, SizeValue, TestName};
use super::wire::{parse_speed, Framing};
use crate::spec::{Direction, Limit, Mode, TestKind, TestSpec, XdpBind, XdpPoll};
use crate::units::{parse_duration, parse_size};
use crate::{Error, Result};
use serde::Deserialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

/// Test parameters shared by all pairs unless a configuration overrides them.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// A configuration's name (only in [[configurations]]).
    pub name: Option<String>,
    pub duration: Option<Spanned<String>>,
    /// Seconds at the start of each run that are left out of the result.
    pub warmup: Option<Spanned<String>>,
    pub msg_size: Option<Spanned<String>>,
    pub sockbuf: Option<Spanned<String>>,
    /// The controller's data path (default auto).
    pub mode: Option<Mode>,
    /// The agents' data path (default socket; auto lets each agent pick).
    pub remote_mode: Option<Mode>,
    /// Each end's AF_XDP bind where it runs AF_XDP (default auto:
    /// zero-copy, else copy), to compare copy and zero-copy on one NIC.
    pub xdp_bind: Option<XdpBind>,
    pub remote_xdp_bind: Option<XdpBind>,
    /// How every TCP-lite end's workers wait for work (default auto).
    pub xdp_poll: Option<XdpPoll>,
    pub directions: Option<Vec<Direction>>,
    pub streams: Option<u16>,
    pub link_speed: Option<Spanned<String>>,
    pub framing: Option<Framing>,
    pub mtu: Option<u32>,
    /// `stream` (default) or `rr`, with the rr sizes and burst below.
    pub test: Option<Spanned<TestName>>,
    pub request_size: Option<Spanned<SizeValue>>,
    pub response_size: Option<Spanned<SizeValue>>,
    pub burst: Option<Spanned<u32>>,
}

/// An agent the controller talks to.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentDef {
    pub name: Spanned<String>,
    /// HOST[:PORT] of its control port.
    pub address: String,
    pub psk_file: Option<PathBuf>,
}

/// One stream pair: the controller's end and an agent's end.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PairDef {
    pub name: Option<String>,
    /// The server end (`server` or `agent`).
    #[serde(alias = "server")]
    pub agent: Spanned<String>,
    /// The client end: an agent's name for a third-party pair, or
    /// "controller" (the default).
    pub client: Option<Spanned<String>>,
    /// The server agent's data address in a third-party pair.
    pub remote_local: Option<std::net::IpAddr>,
    /// Which configuration the pair belongs to (default: "default").
    pub configuration: Option<String>,
    /// Controller-side source address and interface.
    pub local: Option<std::net::IpAddr>,
    pub iface: Option<String>,
    /// Agent-side interface.
    pub remote_iface: Option<String>,
    pub data_port: Option<Spanned<u16>>,
    pub link_speed: Option<Spanned<String>>,
    pub direction: Option<Direction>,
}

/// How many pairs run, and how often each point repeats.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepDef {
    /// Pair counts to run; default 1..=pairs of the configuration.
    pub pairs: Option<Vec<usize>>,
    /// At least this many repetitions per point.
    pub repetitions: Option<u32>,
    /// At most this many; more than `repetitions` turns on early stopping
    /// once the confidence interval is narrow enough (netperf's -i/-I).
    pub max_repetitions: Option<u32>,
    /// Confidence level in percent (95 or 99).
    pub confidence: Option<u32>,
    /// Target interval width in percent of the mean (±width/2).
    pub interval_width: Option<f64>,
    /// A repetition whose ends started further apart than this is run
    /// again (a few times at most).
    pub max_start_skew: Option<Spanned<String>>,
    /// A repetition during which steal or co-tenant CPU reached this
    /// percent of a core the test ran on is noisy (default 10).
    pub noise_threshold: Option<f64>,
    /// A noisy repetition is measured again at most this often per point
    /// (default 2; 0 only marks).
    pub max_noisy_retries: Option<u32>,
}

/// The file as written.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanFile {
    pub name: Option<String>,
    #[serde(default)]
    pub defaults: Settings,
    #[serde(default)]
    pub sweep: SweepDef,
    pub agents: Vec<AgentDef>,
    pub pairs: Vec<PairDef>,
    /// Named variants compared side by side: a name plus any setting
    /// of [defaults] to override.
    #[serde(default)]
    pub configurations: Vec<Settings>,
}

/// A third-party pair's client agent.
#[derive(Clone, Debug, PartialEq)]
pub struct ClientAgent {
    pub name: String,
    pub address: String,
    pub psk_file: Option<PathBuf>,
}

/// A resolved pair, ready to run.
#[derive(Clone, Debug, PartialEq)]
pub struct Pair {
    pub name: String,
    /// The client end when it is an agent; None = the controller.
    pub client: Option<ClientAgent>,
    /// The server agent's data address (third-party pairs).
    pub remote_local: Option<std::net::IpAddr>,
    pub agent: String,
    pub address: String,
    pub psk_file: Option<PathBuf>,
    pub local: Option<std::net::IpAddr>,
    pub iface: Option<String>,
    pub remote_iface: Option<String>,
    pub data_port: Option<u16>,
    /// Declared link speed in bits/s, if any.
    pub link_bps: Option<f64>,
    /// Fixed direction for this pair; None = the plan's directions.
    pub direction: Option<Direction>,
}

/// A resolved configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Configuration {
    pub name: String,
    pub mode: Mode,
    pub remote_mode: Mode,
    pub xdp_bind: XdpBind,
    pub remote_xdp_bind: XdpBind,
    pub xdp_poll: XdpPoll,
    pub duration: Duration,
    pub warmup: Duration,
    pub msg_size: u32,
    pub sockbuf: Option<u32>,
    pub streams: u16,
    pub directions: Vec<Direction>,
    pub framing: Framing,
    pub mtu: Option<u32>,
    pub pairs: Vec<Pair>,
    /// Bulk streams, or rr transactions.
    pub test: TestKind,
}

/// Repetition policy.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Repeat {
    pub min: u32,
    pub max: u32,
    pub confidence: u32,
    pub width_percent: f64,
    /// `max_start_skew` in microseconds; None = late starts are only marked.
    pub max_start_skew_us: Option<u64>,
    /// Steal or co-tenant percent of a core that makes a repetition noisy.
    pub noise_threshold: f64,
    /// Noisy repetitions measured again, at most, per point.
    pub max_noisy_retries: u32,
}

/// Defaults of `noise_threshold` and `max_noisy_retries`.
pub const NOISE_THRESHOLD: f64 = 10.0;
pub const NOISY_RETRIES: u32 = 2;

/// A checked plan.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub name: String,
    pub configurations: Vec<Configuration>,
    pub sweep: Vec<usize>,
    pub repeat: Repeat,
}

/// One sweep point: a configuration, a direction and how many pairs.
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    pub configuration: usize,
    pub direction: Direction,
    pub pairs: usize,
}

/// Where in the file a problem is, for error messages.
pub(super) struct Locator<'a> {
    path: &'a str,
    text: &'a str,
}

impl Locator<'_> {
    fn line(&self, offset: usize) -> usize {
        self.text[..offset.min(self.text.len())]
            .matches('\n')
            .count()
            + 1
    }

    pub(super) fn err<T>(
        &self,
        span: Option<std::ops::Range<usize>>,
        msg: impl std::fmt::Display,
    ) -> Result<T> {
        Err(Error::Invalid(match span {
            Some(s) => format!("{}:{}: {msg}", self.path, self.line(s.start)),
            None => format!("{}: {msg}", self.path),
        }))
    }
}

impl Plan {
    /// Read and check a plan file.
    pub fn load(path: &Path) -> Result<Plan> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::io(format!("reading plan {}", path.display()), e))?;
        let mut plan = Plan::parse(&text, &path.display().to_string())?;
        // Key files are relative to the plan.
        let dir = path.parent().unwrap_or(Path::new("."));
        for c in &mut plan.configurations {
            for p in &mut c.pairs {
                if let Some(k) = &p.psk_file {
                    if k.is_relative() {
                        p.psk_file = Some(dir.join(k));
                    }
                }
                if let Some(c) = &mut p.client {
                    if let Some(k) = c.psk_file.as_ref().filter(|k| k.is_relative()) {
                        c.psk_file = Some(dir.join(k));
                    }
                }
            }
        }
        Ok(plan)
    }

    /// Parse and check plan text; `path` names it in errors.
    pub fn parse(text: &str, path: &str) -> Result<Plan> {
        let loc = Locator { path, text };
        let f: PlanFile = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| loc.line(s.start));
            let msg = e.message().to_string();
            Error::Invalid(match line {
                Some(l) => format!("{path}:{l}: {msg}"),
                None => format!("{path}: {msg}"),
            })
        })?;
        let mut agents = HashMap::new();
        for a in &f.agents {
            if agents.insert(a.name.get_ref().clone(), a).is_some() {
                return loc.err(
                    Some(a.name.span()),
                    format!("agent {:?} is defined twice", a.name.get_ref()),
                );
            }
        }
        if f.pairs.is_empty() {
            return loc.err(None, "the plan has no [[pairs]]: add at least one");
        }
        if f.defaults.name.is_some() {
            return loc.err(
                None,
                "[defaults] has a name: names belong to [[configurations]]",
            );
        }
        let mut confs: Vec<Settings> = f.configurations.clone();
        if confs.is_empty() {
            confs.push(Settings {
                name: Some("default".into()),
                ..Settings::default()
            });
        }
        let mut names = Vec::new();
        for c in &confs {
            match &c.name {
                None => return loc.err(None, "every [[configurations]] entry needs a name"),
                Some(n) if names.contains(n) => {
                    return loc.err(None, format!("configuration {n:?} is defined twice"))
                }
                Some(n) => names.push(n.clone()),
            }
        }
        let mut ports = HashMap::new();
        let mut configurations = Vec::new();
        for (c, cname) in confs.iter().zip(&names) {
            let s = merge(&f.defaults, c);
            let duration = match &s.duration {
                Some(d) => parse_duration(d.get_ref()).or_else(|e| {
                    loc.err(Some(d.span()), format!("{e}: use e.g. duration = \"10s\""))
                })?,
                None => Duration::from_secs(10),
            };
            let warmup = match &s.warmup {
                Some(d) if d.get_ref().trim_end_matches('s') == "0" => Duration::ZERO,
                Some(d) => parse_duration(d.get_ref()).or_else(|e| {
                    loc.err(Some(d.span()), format!("{e}: use e.g. warmup = \"2s\""))
                })?,
                None => Duration::ZERO,
            };
            let size = |v: &Option<Spanned<String>>, what: &str| -> Result<Option<u32>> {
                match v {
                    None => Ok(None),
                    Some(x) => {
                        let n = parse_size(x.get_ref()).or_else(|e| loc.err(Some(x.span()), e))?;
                        u32::try_from(n)
                            .map(Some)
                            .or_else(|_| loc.err(Some(x.span()), format!("{what} is too large")))
                    }
                }
            };
            let msg_size = size(&s.msg_size, "msg_size")?.unwrap_or(8192);
            let sockbuf = size(&s.sockbuf, "sockbuf")?;
            let default_speed = match &s.link_speed {
                Some(x) => Some(parse_speed(x.get_ref()).or_else(|e| loc.err(Some(x.span()), e))?),
                None => None,
            };
            let mut pairs = Vec::new();
            for (i, p) in f.pairs.iter().enumerate() {
                if p.configuration.as_deref().unwrap_or(&names[0]) != cname {
                    continue;
                }
                let Some(a) = agents.get(p.agent.get_ref()) else {
                    let mut known: Vec<&String> = agents.keys().collect();
                    known.sort();
                    return loc.err(
                        Some(p.agent.span()),
                        format!("pair names agent {:?}, which no [[agents]] entry defines (defined: {known:?})", p.agent.get_ref()),
                    );
                };
                let client = match &p.client {
                    None => None,
                    Some(c) if c.get_ref() == "controller" => None,
                    Some(c) => match agents.get(c.get_ref()) {
                        Some(ca) if ca.name.get_ref() == a.name.get_ref() => {
                            return loc.err(Some(c.span()), "a pair's client and server must be two agents")
                        }
                        Some(ca) => Some(ClientAgent {
                            name: ca.name.get_ref().clone(),
                            address: ca.address.clone(),
                            psk_file: ca.psk_file.clone(),
                        }),
                        None => return loc.err(
                            Some(c.span()),
                            format!("pair's client {:?} is neither \"controller\" nor an [[agents]] entry", c.get_ref()),
                        ),
                    },
                };
                if p.remote_local.is_some() && client.is_none() {
                    return loc.err(Some(p.agent.span()), "remote_local names the server agent's data address of a third-party pair: set client to an agent, or drop it");
                }
                if let Some(port) = &p.data_port {
                    let key = (a.address.clone(), *port.get_ref(), cname.clone());
                    if let Some(prev) = ports.insert(key, i) {
                        return loc.err(
                            Some(port.span()),
                            format!(
                                "pairs {} and {} both use data port {} on agent {:?}: give each pair its own port",
                                prev + 1,
                                i + 1,
                                port.get_ref(),
                                a.name.get_ref()
                            ),
                        );
                    }
                }
                let link_bps = match &p.link_speed {
                    Some(x) => {
                        Some(parse_speed(x.get_ref()).or_else(|e| loc.err(Some(x.span()), e))?)
                    }
                    None => default_speed,
                };
                pairs.push(Pair {
                    name: p.name.clone().unwrap_or_else(|| format!("pair{}", i + 1)),
                    client,
                    remote_local: p.remote_local,
                    agent: a.name.get_ref().clone(),
                    address: a.address.clone(),
                    psk_file: a.psk_file.clone(),
                    local: p.local,
                    iface: p.iface.clone(),
                    remote_iface: p.remote_iface.clone(),
                    data_port: p.data_port.as_ref().map(|x| *x.get_ref()),
                    link_bps,
                    direction: p.direction,
                });
            }
            if pairs.is_empty() {
                return loc.err(None, format!("configuration {cname:?} has no pairs: set configuration = {cname:?} on some [[pairs]]"));
            }
            if s.mode == Some(Mode::Xdp) {
                // TCP-lite on every pair's controller interface, one end each.
                let mut seen: Vec<(&str, &str)> = Vec::new();
                for p in &pairs {
                    let Some(i) = p.iface.as_deref() else {
                        return loc.err(None, format!("configuration {cname:?}: mode = \"xdp\" runs TCP-lite on each pair's controller interface, and pair {:?} names none: set iface, or use mode = \"auto\"", p.name));
                    };
                    if let Some((other, _)) = seen.iter().find(|(_, j)| *j == i) {
                        return loc.err(None, format!("configuration {cname:?}: pairs {other:?} and {:?} both run TCP-lite on {i}, and one interface holds one TCP-lite end: give each pair its own iface, or use mode = \"auto\"", p.name));
                    }
                    seen.push((&p.name, i));
                }
            }
            if s.remote_mode == Some(Mode::Xdp) {
                if let Some(p) = pairs.iter().find(|p| p.remote_iface.is_none()) {
                    return loc.err(None, format!("configuration {cname:?}: remote_mode = \"xdp\" runs TCP-lite on each pair's agent interface, and pair {:?} names none: set remote_iface, or use remote_mode = \"auto\"", p.name));
                }
            }
            if s.mode == Some(Mode::Socket) && s.xdp_bind.is_some_and(|b| b != XdpBind::Auto) {
                return loc.err(None, format!("configuration {cname:?}: xdp_bind chooses the controller's AF_XDP bind, and mode = \"socket\" runs none: drop it, or use mode = \"xdp\" or \"auto\""));
            }
            if s.mode == Some(Mode::Socket)
                && s.remote_mode.unwrap_or(Mode::Socket) == Mode::Socket
                && s.xdp_poll.is_some_and(|p| p != XdpPoll::Auto)
            {
                return loc.err(None, format!("configuration {cname:?}: xdp_poll sets how TCP-lite workers wait, and with mode and remote_mode \"socket\" none runs: drop it, or use \"xdp\" or \"auto\""));
            }
            let conf = Configuration {
                name: cname.clone(),
                mode: s.mode.unwrap_or(Mode::Auto),
                remote_mode: s.remote_mode.unwrap_or(Mode::Socket),
                xdp_bind: s.xdp_bind.unwrap_or_default(),
                remote_xdp_bind: s.remote_xdp_bind.unwrap_or_default(),
                xdp_poll: s.xdp_poll.unwrap_or_default(),
                duration,
                warmup,
                msg_size,
                sockbuf,
                streams: s.streams.unwrap_or(1),
                directions: s
                    .directions
                    .clone()
                    .unwrap_or_else(|| vec![Direction::Send, Direction::Receive]),
                framing: s.framing.unwrap_or_default(),
                mtu: s.mtu,
                test: test_kind::resolve(&loc, cname, &s, &pairs, warmup)?,
                pairs,
            };
            // As each pair will run it: with its agent-side interface.
            for p in &conf.pairs {
                let mut spec = conf.spec(Direction::Send, 1);
                spec.remote_iface = p.remote_iface.clone();
                spec.validate().or_else(|e| {
                    loc.err(
                        None,
                        format!("configuration {cname:?}, pair {:?}: {e}", p.name),
                    )
                })?;
            }
            configurations.push(conf);
        }
        for p in &f.pairs {
            let cn = p.configuration.as_deref().unwrap_or(&names[0]);
            if !names.iter().any(|n| n == cn) {
                return loc.err(Some(p.agent.span()), format!("pair refers to configuration {cn:?}, which [[configurations]] does not define"));
            }
        }
        let most = configurations
            .iter()
            .map(|c| c.pairs.len())
            .max()
            .unwrap_or(1);
        let sweep = f
            .sweep
            .pairs
            .clone()
            .unwrap_or_else(|| (1..=most).collect());
        if sweep.is_empty() || sweep.iter().any(|&n| n == 0 || n > most) {
            return loc.err(None, format!("[sweep] pairs = {sweep:?}: each count must be between 1 and {most}, the pairs defined"));
        }
        let min = f.sweep.repetitions.unwrap_or(1).max(1);
        let max_start_skew_us = match &f.sweep.max_start_skew {
            // parse_duration refuses zero and negative durations.
            Some(d) => match parse_duration(d.get_ref()) {
                Ok(t) => Some(t.as_micros() as u64),
                Err(e) => {
                    return loc.err(
                        Some(d.span()),
                        format!("{e}: use e.g. max_start_skew = \"1ms\""),
                    )
                }
            },
            None => None,
        };
        let repeat = Repeat {
            max_start_skew_us,
            min,
            max: f.sweep.max_repetitions.unwrap_or(min).max(min),
            confidence: f.sweep.confidence.unwrap_or(99),
            width_percent: f.sweep.interval_width.unwrap_or(5.0),
            noise_threshold: f.sweep.noise_threshold.unwrap_or(NOISE_THRESHOLD),
            max_noisy_retries: f.sweep.max_noisy_retries.unwrap_or(NOISY_RETRIES),
        };
        if ![90, 95, 99].contains(&repeat.confidence) {
            return loc.err(None, "[sweep] confidence must be 90, 95 or 99");
        }
        if !(repeat.noise_threshold > 0.0 && repeat.noise_threshold <= 100.0) {
            return loc.err(
                None,
                format!(
                    "[sweep] noise_threshold = {}: a percent of a core, above 0 and at most 100 (e.g. 10)",
                    repeat.noise_threshold
                ),
            );
        }
        Ok(Plan {
            name: f.name.unwrap_or_else(|| "plan".into()),
            configurations,
            sweep,
            repeat,
        })
    }

    /// Every point in the order they run: per configuration, per
    /// direction, the sweep (as the study ran send, then receive).
    pub fn points(&self) -> Vec<Point> {
        let mut v = Vec::new();
        for (ci, c) in self.configurations.iter().enumerate() {
            for &direction in &c.directions {
                for &n in &self.sweep {
                    if n <= c.pairs.len() {
                        v.push(Point {
                            configuration: ci,
                            direction,
                            pairs: n,
                        });
                    }
                }
            }
        }
        v
    }
}

impl Configuration {
    /// The test spec one pair of this configuration runs.
    pub fn spec(&self, direction: Direction, _pairs: usize) -> TestSpec {
        TestSpec {
            direction,
            limit: Limit::Duration {
                seconds: (self.duration + self.warmup).as_secs_f64(),
            },
            msg_size: self.msg_size,
            sockbuf: self.sockbuf,
            streams: self.streams,
            remote_iface: None,
            data_port: None,
            raw: None,
            test: self.test,
            remote_mode: self.remote_mode,
            peer_xdp: false,
            // an agent on kernel sockets is sent no TCP-lite settings
            remote_workers: crate::spec::Workers {
                poll: match self.remote_mode {
                    Mode::Socket => XdpPoll::Auto,
                    _ => self.xdp_poll,
                },
                ..Default::default()
            },
            remote_xdp_bind: self.remote_xdp_bind,
            sender_tcp_ms: None,
            verify: false,
        }
    }
}

fn merge(base: &Settings, over: &Settings) -> Settings {
    Settings {
        name: over.name.clone(),
        duration: over.duration.clone().or_else(|| base.duration.clone()),
        warmup: over.warmup.clone().or_else(|| base.warmup.clone()),
        msg_size: over.msg_size.clone().or_else(|| base.msg_size.clone()),
        sockbuf: over.sockbuf.clone().or_else(|| base.sockbuf.clone()),
        mode: over.mode.or(base.mode),
        remote_mode: over.remote_mode.or(base.remote_mode),
        xdp_bind: over.xdp_bind.or(base.xdp_bind),
        remote_xdp_bind: over.remote_xdp_bind.or(base.remote_xdp_bind),
        xdp_poll: over.xdp_poll.or(base.xdp_poll),
        directions: over.directions.clone().or_else(|| base.directions.clone()),
        streams: over.streams.or(base.streams),
        link_speed: over.link_speed.clone().or_else(|| base.link_speed.clone()),
        framing: over.framing.or(base.framing),
        mtu: over.mtu.or(base.mtu),
        test: over.test.clone().or_else(|| base.test.clone()),
        request_size: over
            .request_size
            .clone()
            .or_else(|| base.request_size.clone()),
        response_size: over
            .response_size
            .clone()
            .or_else(|| base.response_size.clone()),
        burst: over.burst.clone().or_else(|| base.burst.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name = "study"
[defaults]
duration = "5s"
msg_size = "8K"
sockbuf = "64K"
link_speed = "1G"
framing = "shaper"
[sweep]
pairs = [1, 2]
repetitions = 2
max_repetitions = 5
[[agents]]
name = "vm1"
address = "198.18.1.2:5290"
[[agents]]
name = "vm2"
address = "198.18.2.2"
[[pairs]]
agent = "vm1"
local = "198.18.1.1"
data_port = 7001
[[pairs]]
agent = "vm2"
data_port = 7001
"#;

    #[test]
    fn parses_and_expands() {
        let p = Plan::parse(GOOD, "good.toml").unwrap();
        assert_eq!(p.name, "study");
        let c = &p.configurations[0];
        assert_eq!(c.name, "default");
        assert_eq!(c.duration, Duration::from_secs(5));
        assert_eq!(c.sockbuf, Some(65536));
        assert_eq!(c.pairs.len(), 2);
        assert_eq!(c.pairs[0].link_bps, Some(1e9));
        assert_eq!(c.framing, Framing::Shaper);
        assert_eq!(
            p.repeat,
            Repeat {
                min: 2,
                max: 5,
                confidence: 99,
                width_percent: 5.0,
                max_start_skew_us: None,
                noise_threshold: 10.0,
                max_noisy_retries: 2,
            }
        );
        let pts = p.points();
        assert_eq!(pts.len(), 4);
        assert_eq!(
            pts[0],
            Point {
                configuration: 0,
                direction: Direction::Send,
                pairs: 1
            }
        );
        assert_eq!(
            pts[3],
            Point {
                configuration: 0,
                direction: Direction::Receive,
                pairs: 2
            }
        );
    }

    fn err(text: &str) -> String {
        Plan::parse(text, "p.toml").unwrap_err().to_string()
    }

    #[test]
    fn bad_plans_name_file_line_and_fix() {
        let e = err(&GOOD.replace("msg_size = \"8K\"", "msg_size = \"8K\"\ncolour = \"blue\""));
        assert!(e.contains("p.toml:6") && e.contains("colour"), "{e}");
        let e = err(&GOOD.replace("agent = \"vm2\"", "agent = \"vm9\""));
        assert!(
            e.contains("p.toml:24") && e.contains("vm9") && e.contains("no [[agents]]"),
            "{e}"
        );
        let e = err(&GOOD.replace("address = \"198.18.2.2\"", "address = \"198.18.1.2:5290\""));
        assert!(
            e.contains("p.toml:25") && e.contains("both use data port 7001"),
            "{e}"
        );
        let e = err(&GOOD.replace("duration = \"5s\"", "duration = \"0s\""));
        assert!(e.contains("p.toml:4") && e.contains("positive"), "{e}");
        let e = err(&GOOD.replace("link_speed = \"1G\"", "link_speed = \"fast\""));
        assert!(e.contains("p.toml:7") && e.contains("fast"), "{e}");
        let e = err(&GOOD.replace("pairs = [1, 2]", "pairs = [1, 3]"));
        assert!(e.contains("between 1 and 2"), "{e}");
        let e = err("agents = []\npairs = []\n");
        assert!(e.contains("no [[pairs]]"), "{e}");
        let e = err(&GOOD.replace("sockbuf = \"64K\"", "sockbuf = \"64K\"\nmode = \"xdp\""));
        assert!(
            e.contains("TCP-lite") && e.contains("\"pair1\" names none: set iface"),
            "{e}"
        );
        let e = err(&GOOD.replace(
            "sockbuf = \"64K\"",
            "sockbuf = \"64K\"\nremote_mode = \"xdp\"",
        ));
        assert!(
            e.contains("remote_mode") && e.contains("set remote_iface"),
            "{e}"
        );
        let e = err("this is not toml");
        assert!(e.starts_with("invalid parameter: p.toml:1"), "{e}");
        let skew = |v: &str| {
            GOOD.replace(
                "repetitions = 2\n",
                &format!("repetitions = 2\nmax_start_skew = \"{v}\"\n"),
            )
        };
        let e = err(&skew("0ms"));
        assert!(
            e.contains("p.toml:12") && e.contains("must be positive"),
            "{e}"
        );
        let e = err(&skew("soon"));
        assert!(
            e.contains("p.toml:12") && e.contains("max_start_skew = \"1ms\""),
            "{e}"
        );
        let p = Plan::parse(&skew("0.5ms"), "p.toml").unwrap();
        assert_eq!(p.repeat.max_start_skew_us, Some(500));
    }

    #[test]
    fn noise_threshold_and_retries() {
        let with = |v: &str| GOOD.replace("repetitions = 2\n", &format!("repetitions = 2\n{v}\n"));
        let p = Plan::parse(
            &with("noise_threshold = 5.5\nmax_noisy_retries = 0"),
            "p.toml",
        )
        .unwrap();
        assert_eq!(
            (p.repeat.noise_threshold, p.repeat.max_noisy_retries),
            (5.5, 0)
        );
        for bad in ["0", "-1", "101"] {
            let e = err(&with(&format!("noise_threshold = {bad}")));
            assert!(
                e.contains("noise_threshold") && e.contains("above 0"),
                "{e}"
            );
        }
    }

    #[test]
    fn xdp_binds_per_side_refused_where_no_af_xdp_runs() {
        let with =
            |extra: &str| GOOD.replace("sockbuf = \"64K\"", &format!("sockbuf = \"64K\"\n{extra}"));
        let p = Plan::parse(
            &with("remote_mode = \"auto\"\nxdp_bind = \"copy\"\nremote_xdp_bind = \"zerocopy\""),
            "p.toml",
        )
        .unwrap();
        let c = &p.configurations[0];
        assert_eq!(
            (c.xdp_bind, c.remote_xdp_bind),
            (XdpBind::Copy, XdpBind::Zerocopy)
        );
        assert_eq!(
            c.spec(Direction::Send, 1).remote_xdp_bind,
            XdpBind::Zerocopy
        );
        let e = Plan::parse(
            &with("mode = \"socket\"\nxdp_bind = \"zerocopy\""),
            "p.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("xdp_bind") && e.contains("mode = \"socket\""),
            "{e}"
        );
        // The agents run kernel sockets unless told otherwise.
        let e = Plan::parse(&with("remote_xdp_bind = \"copy\""), "p.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("--remote-xdp-bind copy"), "{e}");
    }

    #[test]
    fn xdp_poll_reaches_the_ends_that_run_tcplite_and_is_refused_where_none_does() {
        let with =
            |extra: &str| GOOD.replace("sockbuf = \"64K\"", &format!("sockbuf = \"64K\"\n{extra}"));
        let p = Plan::parse(
            &with("remote_mode = \"xdp\"\nxdp_poll = \"event\""),
            "p.toml",
        );
        // remote_mode xdp needs remote_iface in GOOD's pairs: auto instead
        let p = p.or_else(|_| {
            Plan::parse(
                &with("remote_mode = \"auto\"\nxdp_poll = \"event\""),
                "p.toml",
            )
        });
        let c = &p.unwrap().configurations[0];
        assert_eq!(c.xdp_poll, XdpPoll::Event);
        assert_eq!(
            c.spec(Direction::Send, 1).remote_workers.poll,
            XdpPoll::Event
        );
        // an agent on sockets is sent none
        let c = &Plan::parse(&with("xdp_poll = \"busy\""), "p.toml")
            .unwrap()
            .configurations[0];
        assert_eq!(
            c.spec(Direction::Send, 1).remote_workers.poll,
            XdpPoll::Auto
        );
        let e = Plan::parse(&with("mode = \"socket\"\nxdp_poll = \"busy\""), "p.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("xdp_poll") && e.contains("socket"), "{e}");
        assert!(Plan::parse(&with("xdp_poll = \"sometimes\""), "p.toml").is_err());
    }

    #[test]
    fn data_paths_per_side() {
        let p = Plan::parse(GOOD, "p.toml").unwrap();
        let c = &p.configurations[0];
        assert_eq!((c.mode, c.remote_mode), (Mode::Auto, Mode::Socket));
        let text = GOOD.replace(
            "sockbuf = \"64K\"",
            "sockbuf = \"64K\"\nremote_mode = \"auto\"",
        );
        let p = Plan::parse(&text, "p.toml").unwrap();
        let c = &p.configurations[0];
        assert_eq!(c.remote_mode, Mode::Auto);
        assert_eq!(c.spec(Direction::Send, 1).remote_mode, Mode::Auto);
        // Both ends on TCP-lite, each pair on interfaces of its own.
        let both = GOOD
            .replace(
                "sockbuf = \"64K\"",
                "sockbuf = \"64K\"\nmode = \"xdp\"\nremote_mode = \"xdp\"",
            )
            .replace(
                "agent = \"vm1\"\n",
                "agent = \"vm1\"\niface = \"v1\"\nremote_iface = \"r1\"\n",
            );
        let text = both.replace(
            "agent = \"vm2\"\n",
            "agent = \"vm2\"\niface = \"v2\"\nremote_iface = \"r2\"\n",
        );
        let p = Plan::parse(&text, "p.toml").unwrap();
        let c = &p.configurations[0];
        assert_eq!((c.mode, c.remote_mode), (Mode::Xdp, Mode::Xdp));
        // Two TCP-lite pairs cannot share one controller interface.
        let text = both.replace(
            "agent = \"vm2\"\n",
            "agent = \"vm2\"\niface = \"v1\"\nremote_iface = \"r2\"\n",
        );
        let e = err(&text);
        assert!(
            e.contains("pairs \"pair1\" and \"pair2\" both run TCP-lite on v1"),
            "{e}"
        );
    }

    #[test]
    fn configurations_split_pairs() {
        let good = GOOD.replace("pairs = [1, 2]\n", "");
        let text = format!(
            "{good}\nconfiguration = \"vm\"\n[[configurations]]\nname = \"native\"\n[[configurations]]\nname = \"vm\"\nmode = \"socket\"\n"
        );
        let p = Plan::parse(&text, "p.toml").unwrap();
        assert_eq!(p.configurations.len(), 2);
        assert_eq!(p.configurations[0].pairs.len(), 1);
        assert_eq!(p.configurations[1].pairs[0].agent, "vm2");
        assert_eq!(p.configurations[1].mode, Mode::Socket);
        // a 2-pair sweep point exists for no configuration with one pair
        assert!(p.points().iter().all(|pt| pt.pairs == 1));
    }

    #[test]
    fn shipped_examples_parse() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
        let mut n = 0;
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "toml") {
                Plan::load(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
                n += 1;
            }
        }
        assert!(n >= 2, "examples/ holds {n} plans");
    }
}
