//! The `wirespeed` command: argument parsing and output only; the engine
//! does the work.

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::io::{IsTerminal, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use wirespeed::control::agent::{Agent, AgentConfig};
use wirespeed::control::controller::{self, Event, RunOptions};
use wirespeed::control::{auth, DEFAULT_PORT};
use wirespeed::report::{csv, text};
use wirespeed::spec::{Direction, Limit, Mode, TestSpec};
use wirespeed::units::{parse_duration, parse_size};

#[derive(Parser)]
#[command(
    name = "wirespeed",
    version,
    about = "How fast is this network path really, and what limits it?"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve tests to controllers (the netserver of wirespeed).
    Agent(AgentArgs),
    /// Run one test against an agent (netperf TCP_STREAM / TCP_MAERTS).
    Run(RunArgs),
}

#[derive(Args)]
struct AgentArgs {
    /// Address and port to listen on; only this address is bound.
    #[arg(long, default_value_t = SocketAddr::from(([127, 0, 0, 1], DEFAULT_PORT)), value_parser = parse_listen)]
    listen: SocketAddr,
    /// Require controllers to prove this pre-shared key (HMAC challenge).
    #[arg(long)]
    psk_file: Option<PathBuf>,
    /// Interfaces a controller may bind the agent's data sockets to.
    #[arg(long, value_delimiter = ',')]
    allow_iface: Vec<String>,
    /// Longest test the agent accepts.
    #[arg(long, default_value = "1h", value_parser = duration)]
    max_duration: Duration,
    /// Most streams per test.
    #[arg(long, default_value_t = 128)]
    max_streams: u16,
    /// Most tests running at once.
    #[arg(long, default_value_t = 8)]
    max_tests: usize,
    /// How long to wait for a test's data connections.
    #[arg(long, default_value = "10s", value_parser = duration)]
    data_timeout: Duration,
    /// A flow that makes no progress this long ends with an error.
    #[arg(long, default_value = "10s", value_parser = duration)]
    idle_timeout: Duration,
}

#[derive(Clone, Copy, ValueEnum)]
enum ModeArg {
    Auto,
    Xdp,
    Socket,
}

#[derive(Clone, Copy, ValueEnum)]
enum DirArg {
    Send,
    Receive,
    Both,
}

#[derive(Args)]
struct RunArgs {
    /// The agent: HOST, HOST:PORT or [IPV6]:PORT.
    #[arg(long)]
    to: String,
    /// Data path.
    #[arg(long, value_enum, default_value_t = ModeArg::Auto)]
    mode: ModeArg,
    /// send: we send, the agent receives; receive: the agent sends; both.
    #[arg(long, value_enum, default_value_t = DirArg::Send)]
    direction: DirArg,
    /// How long to send (10s, 500ms).
    #[arg(long, default_value = "10s", value_parser = duration, conflicts_with = "bytes")]
    duration: Duration,
    /// Send this many bytes per direction instead (8M, 1G), split over streams.
    #[arg(long, value_parser = size)]
    bytes: Option<u64>,
    /// Bytes per send() call.
    #[arg(long, default_value = "8K", value_parser = size)]
    msg_size: u64,
    /// SO_SNDBUF and SO_RCVBUF on both sides; unset = OS autotuning.
    #[arg(long, value_parser = size)]
    sockbuf: Option<u64>,
    /// Parallel connections per direction, each on its own thread.
    #[arg(long, default_value_t = 1)]
    streams: u16,
    /// Source address for our sockets.
    #[arg(long)]
    local: Option<IpAddr>,
    /// Bind our sockets to this interface (Linux, SO_BINDTODEVICE).
    #[arg(long)]
    iface: Option<String>,
    /// Ask the agent to bind its data sockets to this interface.
    #[arg(long)]
    remote_iface: Option<String>,
    /// Data port on the agent (default: any free port).
    #[arg(long)]
    data_port: Option<u16>,
    /// Prove this pre-shared key to the agent and require its proof back.
    #[arg(long)]
    psk_file: Option<PathBuf>,
    /// Seconds between progress lines (0 = none).
    #[arg(long, default_value = "1s", value_parser = duration_or_zero)]
    interval: Duration,
    /// Print one JSON document (docs/json.md) instead of text.
    #[arg(long, conflicts_with = "csv")]
    json: bool,
    /// Print CSV instead of text.
    #[arg(long)]
    csv: bool,
}

fn duration(s: &str) -> Result<Duration, String> {
    parse_duration(s).map_err(|e| e.to_string())
}

fn duration_or_zero(s: &str) -> Result<Duration, String> {
    if s.trim_end_matches('s').trim() == "0" {
        return Ok(Duration::ZERO);
    }
    duration(s)
}

fn size(s: &str) -> Result<u64, String> {
    parse_size(s).map_err(|e| e.to_string())
}

fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse() {
        return Ok(a);
    }
    let ip = s.trim_start_matches('[').trim_end_matches(']');
    ip.parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, DEFAULT_PORT))
        .map_err(|_| format!("{s:?} is not ADDR or ADDR:PORT"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = match cli.cmd {
        Cmd::Agent(_) => "info",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WIRESPEED_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let r = match cli.cmd {
        Cmd::Agent(a) => agent(a),
        Cmd::Run(r) => run(r),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wirespeed: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load_key(p: &Option<PathBuf>) -> Result<Option<Vec<u8>>> {
    p.as_deref()
        .map(auth::load_key)
        .transpose()
        .map_err(Into::into)
}

fn agent(a: AgentArgs) -> Result<()> {
    let cfg = AgentConfig {
        psk: load_key(&a.psk_file)?,
        allow_iface: a.allow_iface,
        max_duration: a.max_duration,
        max_streams: a.max_streams,
        max_tests: a.max_tests,
        data_timeout: a.data_timeout,
        idle_timeout: a.idle_timeout,
        ..AgentConfig::new(a.listen)
    };
    let auth = if cfg.psk.is_some() {
        "pre-shared key required"
    } else {
        "no authentication"
    };
    let agent = Agent::bind(cfg)?;
    let addr = agent.local_addr()?;
    println!(
        "wirespeed agent {} listening on {addr} ({auth})",
        wirespeed::VERSION
    );
    std::io::stdout().flush().context("writing to stdout")?;
    agent.serve()?;
    Ok(())
}

fn run(r: RunArgs) -> Result<()> {
    let spec = TestSpec {
        direction: match r.direction {
            DirArg::Send => Direction::Send,
            DirArg::Receive => Direction::Receive,
            DirArg::Both => Direction::Both,
        },
        limit: match r.bytes {
            Some(bytes) => Limit::Bytes { bytes },
            None => Limit::Duration {
                seconds: r.duration.as_secs_f64(),
            },
        },
        msg_size: u32::try_from(r.msg_size).context("--msg-size is too large")?,
        sockbuf: r
            .sockbuf
            .map(u32::try_from)
            .transpose()
            .context("--sockbuf is too large")?,
        streams: r.streams,
        remote_iface: r.remote_iface,
        data_port: r.data_port,
    };
    let quiet = r.json || r.csv;
    let opts = RunOptions {
        to: r.to,
        spec,
        mode: match r.mode {
            ModeArg::Auto => Mode::Auto,
            ModeArg::Xdp => Mode::Xdp,
            ModeArg::Socket => Mode::Socket,
        },
        local: r.local,
        iface: r.iface,
        psk: load_key(&r.psk_file)?,
        interval: (!r.interval.is_zero()).then_some(r.interval),
        connect_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(10),
    };
    let mut out = std::io::stdout().lock();
    let report = controller::run(&opts, |ev| {
        if quiet {
            return;
        }
        match ev {
            Event::Accepted {
                agent,
                addr,
                data_port,
            } => {
                let _ = writeln!(
                    out,
                    "wirespeed {}: {} {} to {addr} (agent {} on {}, data port {data_port}), {} stream(s), {} B messages",
                    wirespeed::VERSION,
                    opts.spec.direction,
                    match opts.spec.limit {
                        Limit::Duration { seconds } => format!("for {seconds} s"),
                        Limit::Bytes { bytes } => format!("{bytes} bytes"),
                    },
                    agent.version,
                    agent.hostname,
                    opts.spec.streams,
                    opts.spec.msg_size
                );
                let _ = writeln!(out, "{}", text::interval_header());
            }
            Event::Interval(iv) => {
                let _ = write!(out, "{}", text::interval_lines(iv));
                let _ = out.flush();
            }
        }
    })?;
    if r.json {
        serde_json::to_writer_pretty(&mut out, &report).context("writing JSON")?;
        writeln!(out)?;
    } else if r.csv {
        write!(out, "{}", csv::render(&report))?;
    } else {
        write!(out, "{}", text::summary(&report))?;
    }
    if !report.end.errors.is_empty() {
        anyhow::bail!(
            "the test finished with {} flow error(s): {}",
            report.end.errors.len(),
            report.end.errors[0]
        );
    }
    Ok(())
}
