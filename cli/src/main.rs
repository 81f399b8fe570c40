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
use wirespeed::control::thirdparty;
use wirespeed::control::{auth, DEFAULT_PORT};
use wirespeed::report::{csv, text};
use wirespeed::spec::{Direction, Limit, Mode, TestKind, TestSpec, XdpBind, XdpPoll};
use wirespeed::units::{parse_duration, parse_size};

mod iperf3;

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
    Run(Box<RunArgs>),
    /// Run a multi-pair plan: sweeps, repetitions, synchronized starts.
    Plan(PlanArgs),
    /// Print and redraw the results of an earlier plan.
    Report(ReportArgs),
    /// The classic study on an embedded namespace testbed (needs root).
    Demo(DemoArgs),
    /// What this host's NICs can do, and the mode to use.
    Doctor(DoctorArgs),
    /// Detach XDP programs an older wirespeed left attached.
    Cleanup(CleanupArgs),
    /// Print a shell completion script (bash, zsh or fish) to stdout.
    Completions(CompletionsArgs),
    /// Write the man pages (wirespeed.1, wirespeed-SUBCOMMAND.1) into a
    /// directory; scripts/package builds the .deb's pages with it.
    #[command(hide = true)]
    Man(ManArgs),
}

#[derive(Args)]
struct CompletionsArgs {
    /// The shell to complete for.
    shell: ShellArg,
}

#[derive(Clone, Copy, ValueEnum)]
enum ShellArg {
    Bash,
    Zsh,
    Fish,
}

#[derive(Args)]
struct ManArgs {
    /// Where the pages go (created if missing).
    dir: PathBuf,
}

#[derive(Args)]
struct DoctorArgs {
    /// Look at this interface only, and probe XDP and AF_XDP on it for real
    /// (attaching briefly: some NICs blip while their rings are rebuilt).
    #[arg(long)]
    iface: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct CleanupArgs {
    /// Only this interface.
    #[arg(long)]
    iface: Option<String>,
}

#[derive(Args)]
struct DemoArgs {
    /// Short runs: every series in under 90 s.
    #[arg(long)]
    quick: bool,
    /// Where the plan, results and figures go.
    #[arg(long, default_value = "wirespeed-demo")]
    out: PathBuf,
    /// How many VM hosts per series (1-4), each with its own link (the study: 4).
    #[arg(long, default_value_t = 4)]
    vms: usize,
    /// Spread the VMs' peers over N client namespaces (the study's second
    /// client machine); the controller then only orchestrates.
    #[arg(long, default_value_t = 0)]
    clients: usize,
    /// Also boot N qemu guests (1-4) from vm-images/ and run the `vm` and
    /// `vm-bypass` series on them (TCG where KVM does not work: slow).
    #[arg(long, default_value_t = 0)]
    guests: usize,
    /// Only these series, comma-separated: native, bypass, dom0,
    /// dom0-spread, vm, vm-bypass (vm and vm-bypass need --guests).
    #[arg(long, value_delimiter = ',')]
    series: Option<Vec<String>>,
    /// The repository's vm-images/ directory (default: $WIRESPEED_VM_IMAGES,
    /// else found above the executable or in the source tree it was built from).
    #[arg(long)]
    vm_images: Option<PathBuf>,
}

#[derive(Args)]
struct PlanArgs {
    /// The plan (docs/plans.md).
    file: PathBuf,
    /// Write every result as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write a CSV row per pair per repetition here.
    #[arg(long)]
    csv: Option<PathBuf>,
    /// Draw SVG figures into this directory.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// No per-interval lines.
    #[arg(long)]
    quiet: bool,
}

#[derive(Args)]
struct ReportArgs {
    /// A JSON file written by `wirespeed plan --json`.
    results: PathBuf,
    /// Draw SVG figures into this directory.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Write the CSV here.
    #[arg(long)]
    csv: Option<PathBuf>,
    /// Write a self-contained HTML page here: table, verdicts, figures,
    /// each point's pairs, the machines and the run.
    #[arg(long)]
    html: Option<PathBuf>,
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
    /// Also serve stock `iperf3 -c` clients on ADDR[:PORT] (port 5201 by
    /// default), one test at a time, under the same limits.
    #[arg(long, value_parser = parse_iperf3_listen)]
    iperf3_listen: Option<SocketAddr>,
    /// The iperf3 tests' data path: kernel sockets, or TCP-lite (`xdp`)
    /// on the route's interface towards the client, one of --allow-iface.
    #[arg(long, value_enum, requires = "iperf3_listen")]
    iperf3_mode: Option<Iperf3ModeArg>,
    /// A flow that makes no progress this long ends with an error.
    #[arg(long, default_value = "10s", value_parser = duration)]
    idle_timeout: Duration,
    /// Never be the client end of a third-party pair (refuse `run --from`
    /// orders that would make this agent send to another).
    #[arg(long)]
    no_originate: bool,
    /// How this agent's TCP-lite workers wait for work when the controller
    /// leaves it to auto: busy, event, or auto.
    #[arg(long, value_enum, default_value_t = XdpPollArg::Auto)]
    xdp_poll: XdpPollArg,
}

#[derive(Clone, Copy, PartialEq, ValueEnum)]
enum Iperf3ModeArg {
    Socket,
    Xdp,
}

#[derive(Clone, Copy, ValueEnum)]
enum ModeArg {
    Auto,
    Xdp,
    Socket,
}

#[derive(Clone, Copy, PartialEq, ValueEnum)]
enum RemoteModeArg {
    Socket,
    Xdp,
    Auto,
}

/// `--xdp-bind` / `--remote-xdp-bind`: which AF_XDP bind an end asks for.
#[derive(Clone, Copy, PartialEq, ValueEnum)]
enum XdpBindArg {
    /// Zero-copy where the driver has it, else copy.
    Auto,
    /// Zero-copy only: fail with the errno and its fix where refused.
    Zerocopy,
    /// Copy mode only, even where zero-copy would run.
    Copy,
}

impl XdpBindArg {
    fn bind(self) -> XdpBind {
        match self {
            XdpBindArg::Auto => XdpBind::Auto,
            XdpBindArg::Zerocopy => XdpBind::Zerocopy,
            XdpBindArg::Copy => XdpBind::Copy,
        }
    }
}

/// `--xdp-poll`: how TCP-lite workers wait for work.
#[derive(Clone, Copy, PartialEq, ValueEnum)]
enum XdpPollArg {
    /// Busy only where the workers fit in cores nothing else needs.
    Auto,
    /// Spin on the rings (a core per worker; xdpsock -B).
    Busy,
    /// Sleep in the kernel until a frame or a timer is due.
    Event,
}

impl XdpPollArg {
    fn poll(self) -> XdpPoll {
        match self {
            XdpPollArg::Auto => XdpPoll::Auto,
            XdpPollArg::Busy => XdpPoll::Busy,
            XdpPollArg::Event => XdpPoll::Event,
        }
    }
}

#[derive(Clone, Copy, PartialEq, ValueEnum)]
enum TestArg {
    /// Bulk transfer (netperf TCP_STREAM/TCP_MAERTS).
    Stream,
    /// Request/response transactions with latency percentiles (TCP_RR).
    Rr,
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
    #[arg(long, required_unless_present_any = ["plain", "iperf3"])]
    to: Option<String>,
    /// A stock iperf3 server (`iperf3 -s`): HOST, HOST:PORT or [IPV6]:PORT
    /// (port 5201 by default); this end runs --mode socket, xdp or auto.
    #[arg(long, conflicts_with_all = ["to", "plain", "raw", "from"])]
    iperf3: Option<String>,
    /// TCP over AF_XDP (TCP-lite) to or from a plain TCP server that runs
    /// no wirespeed (a sink for --direction send, a source for receive);
    /// needs --mode xdp and --iface.
    #[arg(long, conflicts_with_all = ["to", "raw"])]
    plain: Option<SocketAddr>,
    /// A third-party pair: this agent is the client end (HOST[:PORT]) and
    /// --to the server; the data runs between them, never through here.
    /// --local/--iface/--mode/--queues/--cpus then apply to this agent.
    #[arg(long, requires = "to", conflicts_with_all = ["plain", "raw"])]
    from: Option<String>,
    /// With --from: the server agent's data address (default: its
    /// control address).
    #[arg(long, requires = "from")]
    remote_local: Option<IpAddr>,
    /// SHA-256 of every payload byte sent and received, per flow; with
    /// --to the controller compares both ends' digests and fails the run
    /// on a mismatch (TCP stream tests only: not --raw or --test rr).
    #[arg(long)]
    verify: bool,
    /// With --plain: a fixed congestion window in bytes (for a dedicated
    /// link) instead of NewReno.
    #[arg(long, value_parser = size, requires = "plain")]
    window: Option<u64>,
    /// Data path.
    #[arg(long, value_enum, default_value_t = ModeArg::Auto)]
    mode: ModeArg,
    /// stream: bulk transfer; rr: request/response latency.
    #[arg(long, value_enum, default_value_t = TestArg::Stream)]
    test: TestArg,
    /// send: we send, the agent receives; receive: the agent sends; both.
    /// For rr: send = we are the client, receive = the agent is.
    #[arg(long, value_enum, default_value_t = DirArg::Send)]
    direction: DirArg,
    /// rr: request size (netperf's default: 1 byte).
    #[arg(long, value_parser = size)]
    request_size: Option<u64>,
    /// rr: response size (default 1 byte).
    #[arg(long, value_parser = size)]
    response_size: Option<u64>,
    /// rr: transactions in flight per stream (default 1).
    #[arg(long)]
    burst: Option<u32>,
    /// How long to send (10s, 500ms).
    #[arg(long, default_value = "10s", value_parser = duration, conflicts_with = "bytes")]
    duration: Duration,
    /// Send this many bytes per direction instead (8M, 1G), split over streams.
    #[arg(long, value_parser = size)]
    bytes: Option<u64>,
    /// Bytes per send() call (default 8K).
    #[arg(long, value_parser = size)]
    msg_size: Option<u64>,
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
    /// The agent's data path: socket (kernel TCP), xdp (TCP-lite on
    /// AF_XDP on its --remote-iface) or auto (the agent probes its NIC and
    /// picks; the report says which ran and why).
    #[arg(long, value_enum)]
    remote_mode: Option<RemoteModeArg>,
    /// Ask the agent to bind its data sockets to this interface.
    #[arg(long)]
    remote_iface: Option<String>,
    /// This end's AF_XDP bind (raw, TCP-lite, --plain): auto (zero-copy
    /// first), zerocopy or copy, to compare both on one NIC.
    #[arg(long, value_enum, default_value_t = XdpBindArg::Auto)]
    xdp_bind: XdpBindArg,
    /// The agent's AF_XDP bind (raw, or --remote-mode xdp|auto).
    #[arg(long, value_enum, default_value_t = XdpBindArg::Auto)]
    remote_xdp_bind: XdpBindArg,
    /// How each end's TCP-lite workers wait for work: busy (spin), event
    /// (sleep until a frame or timer), or auto (busy only where they fit
    /// in otherwise free cores). The results say which ran.
    #[arg(long, value_enum, default_value_t = XdpPollArg::Auto)]
    xdp_poll: XdpPollArg,
    /// Data port on the agent (default: any free port).
    #[arg(long)]
    data_port: Option<u16>,
    /// Prove this pre-shared key to the agent and require its proof back.
    #[arg(long)]
    psk_file: Option<PathBuf>,
    /// Raw frames over AF_XDP (with --mode xdp): Ethernet/IPv4/UDP test
    /// frames counted for loss and order; needs --iface and --remote-iface.
    #[arg(long)]
    raw: bool,
    /// Raw frame size in bytes without the FCS (60 = 64 on the wire).
    #[arg(long, default_value_t = 60, requires = "raw")]
    frame_size: u16,
    /// Raw pace: frames per second (`500k`, `1Mpps`) or bits per second at
    /// L1 (`1G`, `100M`); with --plain, TCP-lite's pacing rate in bits per
    /// second of payload. Unset = as fast as it goes.
    #[arg(long)]
    rate: Option<String>,
    /// AF_XDP ends (TCP-lite, raw, --plain): this end's NIC queues, one
    /// socket and worker each (`0`, `0-3`, `0,2`, or `all`, the default:
    /// every queue, at most one per online CPU for TCP-lite).
    #[arg(long, default_value = "all")]
    queues: String,
    /// The agent's queues for its AF_XDP end (raw: default as --queues;
    /// TCP-lite: default all).
    #[arg(long)]
    remote_queues: Option<String>,
    /// AF_XDP ends: CPUs to pin this end's workers to, in queue order
    /// (`1`, `0-3`); default unpinned.
    #[arg(long)]
    cpus: Option<String>,
    /// CPUs for the agent's AF_XDP workers; default unpinned.
    #[arg(long)]
    remote_cpus: Option<String>,
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

/// `--rate`: frames per second with a `pps` unit (`500kpps`, `1Mpps`), or
/// an L1 bit rate (`1G`) turned into frames per second at this frame size.
fn parse_rate(s: &str, frame_size: u16) -> Result<f64> {
    let t = s.trim().to_ascii_lowercase();
    if let Some(n) = t.strip_suffix("pps") {
        let (num, unit) = wirespeed::units::split_number(n);
        let mult = match unit {
            "" => 1.0,
            "k" => 1e3,
            "m" => 1e6,
            _ => anyhow::bail!("--rate {s:?}: use e.g. 500kpps, 1Mpps or 1G"),
        };
        let v: f64 = num
            .parse()
            .with_context(|| format!("--rate {s:?} is not a number"))?;
        return Ok(v * mult);
    }
    let bps = wirespeed::plan::wire::parse_speed(s)?;
    Ok(bps / ((f64::from(frame_size) + 24.0) * 8.0))
}

/// `--queues`: `all` (None) or an index list.
fn parse_queues(s: &str) -> Result<Option<Vec<u16>>> {
    if s.trim().eq_ignore_ascii_case("all") {
        return Ok(None);
    }
    let mut q = wirespeed::units::parse_index_list(s, wirespeed::spec::MAX_QUEUES)
        .with_context(|| format!("--queues {s:?}"))?;
    q.sort_unstable();
    q.dedup();
    Ok(Some(q))
}

/// `--cpus`: an index list; unset = unpinned.
fn parse_cpus(s: Option<&str>) -> Result<Vec<u16>> {
    s.map_or(Ok(Vec::new()), |s| {
        wirespeed::units::parse_index_list(s, wirespeed::spec::MAX_QUEUES)
            .with_context(|| format!("--cpus {s:?}"))
    })
}

fn parse_iperf3_listen(s: &str) -> Result<SocketAddr, String> {
    parse_listen(s).map(|a| match s.parse::<SocketAddr>() {
        Ok(_) => a,
        Err(_) => SocketAddr::new(a.ip(), wirespeed::control::iperf3::DEFAULT_PORT),
    })
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
        Cmd::Run(r) => run(*r),
        Cmd::Plan(p) => plan_cmd(p),
        Cmd::Report(r) => report_cmd(r),
        Cmd::Demo(d) => demo_cmd(d),
        Cmd::Doctor(d) => doctor_cmd(d),
        Cmd::Cleanup(c) => cleanup_cmd(c),
        Cmd::Completions(c) => completions_cmd(c),
        Cmd::Man(m) => man_cmd(m),
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

/// Interval lines as they come, under one header (as `run` prints them);
/// nothing when `quiet`.
fn interval_printer<W: Write>(
    out: &mut W,
    quiet: bool,
) -> impl FnMut(&wirespeed::report::model::Interval) + '_ {
    let mut header = !quiet;
    move |iv| {
        if quiet {
            return;
        }
        if std::mem::take(&mut header) {
            let _ = writeln!(out, "{}", text::interval_header());
        }
        let _ = write!(out, "{}", text::interval_lines(iv));
        let _ = out.flush();
    }
}

fn agent(a: AgentArgs) -> Result<()> {
    let tcplite = match a.iperf3_mode {
        Some(Iperf3ModeArg::Xdp) if !cfg!(target_os = "linux") => {
            anyhow::bail!("--iperf3-mode xdp (TCP-lite) needs Linux: use --iperf3-mode socket")
        }
        Some(Iperf3ModeArg::Xdp) if a.allow_iface.is_empty() => anyhow::bail!(
            "--iperf3-mode xdp runs TCP-lite on an interface this agent allows: add --allow-iface IF"
        ),
        Some(Iperf3ModeArg::Xdp) => Some(a.allow_iface.clone()),
        _ => None,
    };
    let cfg = AgentConfig {
        psk: load_key(&a.psk_file)?,
        allow_iface: a.allow_iface,
        max_duration: a.max_duration,
        max_streams: a.max_streams,
        max_tests: a.max_tests,
        data_timeout: a.data_timeout,
        idle_timeout: a.idle_timeout,
        no_originate: a.no_originate,
        xdp_poll: a.xdp_poll.poll(),
        ..AgentConfig::new(a.listen)
    };
    let auth = if cfg.psk.is_some() {
        "pre-shared key required"
    } else {
        "no authentication"
    };
    let limits = wirespeed::control::iperf3::wire::Limits {
        max_streams: cfg.max_streams,
        max_seconds: cfg.max_duration.as_secs_f64(),
        max_len: wirespeed::spec::MAX_MSG_SIZE,
        max_window: wirespeed::spec::MAX_SOCKBUF,
    };
    let iperf3 = a
        .iperf3_listen
        .map(|listen| wirespeed::control::iperf3::server::ServeConfig {
            listen,
            limits,
            data_timeout: cfg.data_timeout,
            idle: cfg.idle_timeout,
            max_tests: cfg.max_tests,
            tcplite,
        });
    let agent = Agent::bind(cfg)?;
    let addr = agent.local_addr()?;
    println!(
        "wirespeed agent {} listening on {addr} ({auth})",
        wirespeed::VERSION
    );
    if let Some(c) = iperf3 {
        let path = match c.tcplite {
            Some(_) => "TCP-lite",
            None => "kernel sockets",
        };
        let server = wirespeed::control::iperf3::server::Server::bind(c, agent.tests())?;
        println!(
            "serving iperf3 clients on {} over {path} (no authentication)",
            server.local_addr()?
        );
        std::thread::Builder::new()
            .name("iperf3".into())
            .spawn(move || server.serve())
            .context("starting the iperf3 listener")?;
    }
    std::io::stdout().flush().context("writing to stdout")?;
    agent.serve()?;
    Ok(())
}

/// Each end's TCP-lite workers from --queues/--cpus and --remote-queues/
/// --remote-cpus (raw mode keeps its lists in RawOptions); refused where
/// no end runs AF_XDP.
fn tcplite_workers(r: &RunArgs) -> Result<(wirespeed::spec::Workers, wirespeed::spec::Workers)> {
    if !r.raw && r.rate.is_some() {
        anyhow::bail!("--rate applies to --raw and --plain tests");
    }
    if !r.raw && matches!(r.mode, ModeArg::Socket) && (r.cpus.is_some() || r.queues != "all") {
        anyhow::bail!("--queues and --cpus place AF_XDP workers: they need --mode xdp or auto");
    }
    let remote_xdp = matches!(
        r.remote_mode,
        Some(RemoteModeArg::Xdp | RemoteModeArg::Auto)
    );
    let local_xdp = !matches!(r.mode, ModeArg::Socket);
    if r.xdp_poll != XdpPollArg::Auto && (r.raw || !(local_xdp || remote_xdp)) {
        anyhow::bail!("--xdp-poll sets how TCP-lite workers wait: it needs --mode or --remote-mode xdp or auto, and not --raw (raw workers always spin)");
    }
    // TCP-lite's own workers; raw mode keeps its lists in RawOptions.
    let workers = |q: Option<&str>, c: Option<&str>| -> Result<wirespeed::spec::Workers> {
        Ok(match r.raw {
            true => Default::default(),
            false => wirespeed::spec::Workers {
                queues: parse_queues(q.unwrap_or("all"))?,
                cpus: parse_cpus(c)?,
                poll: Default::default(),
            },
        })
    };
    let (mut own, mut remote) = (
        workers(Some(&r.queues), r.cpus.as_deref())?,
        workers(r.remote_queues.as_deref(), r.remote_cpus.as_deref())?,
    );
    // each end that may run TCP-lite; an agent on sockets is sent none
    own.poll = r.xdp_poll.poll();
    if remote_xdp {
        remote.poll = r.xdp_poll.poll();
    }
    Ok((own, remote))
}

/// netperf's and the study's message size.
const DEFAULT_MSG_SIZE: u64 = 8 << 10;

/// Options that only a wirespeed agent can honour, and whether each is set.
fn agent_only(r: &RunArgs) -> [(&'static str, bool); 6] {
    [
        ("--remote-mode", r.remote_mode.is_some()),
        ("--remote-iface", r.remote_iface.is_some()),
        ("--remote-queues", r.remote_queues.is_some()),
        ("--remote-cpus", r.remote_cpus.is_some()),
        ("--data-port", r.data_port.is_some()),
        ("--psk-file", r.psk_file.is_some()),
    ]
}

/// Options that would be accepted and then ignored: refused, with why.
fn refuse_ignored(r: &RunArgs) -> Result<()> {
    let rr = r.test == TestArg::Rr;
    let rr_shape = r.request_size.is_some() || r.response_size.is_some() || r.burst.is_some();
    if !rr && rr_shape {
        anyhow::bail!(
            "--request-size, --response-size and --burst shape rr transactions: add --test rr"
        );
    }
    if rr && r.msg_size.is_some() {
        anyhow::bail!("--msg-size sizes a stream's send() calls; rr messages are --request-size and --response-size");
    }
    if r.raw {
        if r.sockbuf.is_some() || r.msg_size.is_some() {
            anyhow::bail!("--raw sends --frame-size frames with no socket buffers: drop --sockbuf and --msg-size");
        }
        if rr {
            anyhow::bail!("--raw sends frames, not transactions: --test rr needs TCP (drop --raw)");
        }
    }
    if r.plain.is_some() {
        if rr {
            anyhow::bail!("--plain runs a bulk stream against a server that runs no wirespeed; request/response needs a wirespeed agent: use --to");
        }
        if r.msg_size.is_some() {
            anyhow::bail!("--msg-size sizes send() calls on kernel sockets; TCP-lite against a plain peer sends full segments: drop --msg-size");
        }
        if let Some((flag, _)) = agent_only(r).iter().find(|(_, set)| *set) {
            anyhow::bail!("{flag} is for a wirespeed agent; a --plain peer runs none");
        }
    }
    Ok(())
}

fn run(r: RunArgs) -> Result<()> {
    if let Some(to) = r.iperf3.clone() {
        return iperf3::run(r, &to);
    }
    refuse_ignored(&r)?;
    if let Some(peer) = r.plain {
        return run_plain(r, peer);
    }
    let (own_workers, remote_workers) = tcplite_workers(&r)?;
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
        msg_size: u32::try_from(r.msg_size.unwrap_or(DEFAULT_MSG_SIZE))
            .context("--msg-size is too large")?,
        sockbuf: r
            .sockbuf
            .map(u32::try_from)
            .transpose()
            .context("--sockbuf is too large")?,
        streams: r.streams,
        remote_iface: r.remote_iface,
        data_port: r.data_port,
        raw: None, // filled in by the controller once its AF_XDP end is open
        // Unset: the agent runs kernel sockets.
        remote_mode: match r.remote_mode.unwrap_or(RemoteModeArg::Socket) {
            RemoteModeArg::Socket => Mode::Socket,
            RemoteModeArg::Xdp => Mode::Xdp,
            RemoteModeArg::Auto => Mode::Auto,
        },
        peer_xdp: false, // set by the controller once its end is open
        remote_workers,
        remote_xdp_bind: r.remote_xdp_bind.bind(),
        sender_tcp_ms: None, // asked by the controller, from --interval
        verify: r.verify,
        test: match r.test {
            TestArg::Stream => TestKind::Stream,
            TestArg::Rr => TestKind::Rr {
                request: u32::try_from(r.request_size.unwrap_or(1))
                    .context("--request-size is too large")?,
                response: u32::try_from(r.response_size.unwrap_or(1))
                    .context("--response-size is too large")?,
                burst: r.burst.unwrap_or(1),
            },
        },
    };
    let quiet = r.json || r.csv;
    let opts = RunOptions {
        to: r.to.clone().unwrap_or_default(),
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
        cancel: None,
        workers: own_workers,
        xdp_bind: r.xdp_bind.bind(),
        raw: match r.raw {
            true => Some(controller::RawOptions {
                frame_size: r.frame_size,
                rate_pps: r
                    .rate
                    .as_deref()
                    .map(|x| parse_rate(x, r.frame_size))
                    .transpose()?,
                queues: parse_queues(&r.queues)?,
                cpus: parse_cpus(r.cpus.as_deref())?,
                remote_queues: parse_queues(r.remote_queues.as_deref().unwrap_or(&r.queues))?,
                remote_cpus: parse_cpus(r.remote_cpus.as_deref())?,
            }),
            false => None,
        },
    };
    let mut out = std::io::stdout().lock();
    let mut on_event = |ev: Event<'_>| {
        if quiet {
            return;
        }
        match ev {
            Event::Accepted {
                agent,
                addr,
                data_port,
            } => {
                let what = match (&opts.raw, opts.spec.test) {
                    (Some(r), _) => format!("{} B raw frames", r.frame_size),
                    (None, TestKind::Rr { request, response, burst }) => format!(
                        "rr: {request} B requests, {response} B responses, {burst} in flight per stream"
                    ),
                    _ => format!("{} B messages", opts.spec.msg_size),
                };
                let _ = writeln!(
                    out,
                    "wirespeed {}: {} {} to {addr} (agent {} on {}, data port {data_port}), {} stream(s), {what}",
                    wirespeed::VERSION,
                    if matches!(opts.spec.test, TestKind::Rr { .. }) {
                        format!("{} (client: {})", opts.spec.direction, if opts.spec.direction == Direction::Send { "this end" } else { "the agent" })
                    } else {
                        opts.spec.direction.to_string()
                    },
                    match opts.spec.limit {
                        Limit::Duration { seconds } => format!("for {seconds} s"),
                        Limit::Bytes { bytes } => format!("{bytes} bytes"),
                    },
                    agent.version,
                    agent.hostname,
                    opts.spec.streams,
                );
                let rr = matches!(opts.spec.test, wirespeed::spec::TestKind::Rr { .. });
                let _ = match &opts.raw {
                    None if rr => writeln!(out, "{}", text::rr_interval_header()),
                    None => writeln!(out, "{}", text::interval_header()),
                    Some(_) => writeln!(out, "{}", text::raw_interval_header()),
                };
            }
            Event::Interval(iv) => {
                let _ = match &opts.raw {
                    None if iv.flows.iter().any(|f| f.rr.is_some()) => {
                        write!(out, "{}", text::rr_interval_lines(iv))
                    }
                    None => write!(out, "{}", text::interval_lines(iv)),
                    Some(r) => write!(
                        out,
                        "{}",
                        text::raw_interval_lines(iv, u32::from(r.frame_size))
                    ),
                };
                let _ = out.flush();
            }
        }
    };
    let report = match &r.from {
        Some(from) => thirdparty::run(
            &thirdparty::PairOptions {
                from: from.clone(),
                from_psk: opts.psk.clone(),
                run: opts.clone(),
                remote_local: r.remote_local,
            },
            &mut on_event,
        )?,
        None => controller::run(&opts, &mut on_event)?,
    };
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

/// `run --plain`: TCP-lite over AF_XDP with a plain TCP peer.
#[cfg(target_os = "linux")]
fn run_plain(r: RunArgs, peer: SocketAddr) -> Result<()> {
    use wirespeed::datapath::xdp::stream::{self, Flow, PlainOptions};
    if !matches!(r.mode, ModeArg::Xdp) {
        anyhow::bail!("--plain runs TCP over AF_XDP: add --mode xdp (a plain peer over kernel sockets is iperf3's job)");
    }
    let iface = r
        .iface
        .clone()
        .context("--plain needs the interface to run on: --iface IF")?;
    let flow = match r.direction {
        DirArg::Send => Flow::Send,
        DirArg::Receive => Flow::Receive,
        DirArg::Both => anyhow::bail!("--plain runs one direction: send or receive"),
    };
    let local = r.local;
    let streams = r.streams.max(1);
    if r.remote_xdp_bind != XdpBindArg::Auto {
        anyhow::bail!(
            "--remote-xdp-bind is for a wirespeed agent; a --plain peer has no AF_XDP end"
        );
    }
    let opts = PlainOptions {
        xdp_bind: r.xdp_bind.bind(),
        iface,
        local,
        peer,
        flow,
        streams,
        duration: r.bytes.is_none().then_some(r.duration),
        bytes: r.bytes.map(|b| b.div_ceil(u64::from(streams))),
        verify: r.verify,
        window: r.window.map(|w| w as usize),
        pacing_bps: r
            .rate
            .as_deref()
            .map(wirespeed::plan::wire::parse_speed)
            .transpose()?
            .map(|b| b as u64),
        // TCP-lite needs a socket on whichever queue RSS picks: all of them.
        queues: match parse_queues(&r.queues)? {
            None => None,
            Some(_) => anyhow::bail!(
                "--plain opens every queue (the NIC's RSS picks the flow's queue): drop --queues"
            ),
        },
        cpus: parse_cpus(r.cpus.as_deref())?,
        buffer: r.sockbuf.map(|b| b as usize),
        interval: (!r.interval.is_zero()).then_some(r.interval),
    };
    catch_interrupts();
    let quiet = r.json || r.csv;
    let mut out = std::io::stdout().lock();
    let rep = stream::run_plain(&opts, &cancel_flag(), interval_printer(&mut out, quiet))?;
    if r.json {
        serde_json::to_writer_pretty(&mut out, &rep).context("writing JSON")?;
        writeln!(out)?;
    } else if r.csv {
        write!(out, "{}", csv::render_plain(&rep))?;
    } else {
        write!(out, "{}", text::plain_summary(&rep))?;
    }
    if let Some(e) = rep.streams.iter().find_map(|s| s.error.as_deref()) {
        anyhow::bail!("a stream failed: {e}");
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn run_plain(_: RunArgs, _: SocketAddr) -> Result<()> {
    anyhow::bail!("--plain runs TCP over AF_XDP, which needs Linux")
}

/// Set by SIGINT/SIGTERM: the plan runner stops and saves what it has.
static CANCEL: std::sync::OnceLock<std::sync::Arc<std::sync::atomic::AtomicBool>> =
    std::sync::OnceLock::new();

fn cancel_flag() -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    CANCEL.get_or_init(Default::default).clone()
}

#[cfg(target_os = "linux")]
fn catch_interrupts() {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    extern "C" fn on_signal(_: nix::libc::c_int) {
        if let Some(c) = CANCEL.get() {
            c.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }
    let _ = cancel_flag();
    let act = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for sig in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only stores to an atomic.
        let _ = unsafe { sigaction(sig, &act) };
    }
}

#[cfg(not(target_os = "linux"))]
fn catch_interrupts() {
    let _ = cancel_flag();
}

fn plan_cmd(a: PlanArgs) -> Result<()> {
    use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
    use wirespeed::plan::runner::{run_plan, Progress};
    let plan = wirespeed::plan::Plan::load(&a.file)?;
    catch_interrupts();
    let total = plan.points().len() as u64;
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    if !std::io::stderr().is_terminal() {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} points {msg}").expect("valid template"),
    );
    let quiet = a.quiet;
    let say = |line: String| {
        if bar.is_hidden() {
            println!("{line}");
        } else {
            bar.println(line);
        }
    };
    let report = run_plan(&plan, &cancel_flag(), &|p| match p {
        Progress::Point {
            index,
            total,
            label,
        } => {
            bar.set_position(index as u64);
            bar.set_message(label.clone());
            say(format!("== point {}/{total}: {label}", index + 1));
        }
        Progress::Interval { pair, interval, rr } if !quiet => say(format!(
            "   {pair:<10} {:>6.2}-{:<6.2} s {:>14}",
            interval.start,
            interval.end,
            match (rr, text::rr_interval_sum(interval)) {
                (true, Some(line)) => line,
                (true, None) => "rr: the agent is the client; its latency comes at the end".into(),
                (false, _) => wirespeed::units::fmt_bps(interval.sum.bits_per_second),
            }
        )),
        Progress::Interval { .. } => {}
        Progress::Repetition {
            label,
            aggregate_bps,
            transactions_per_second,
            error,
        } => match (transactions_per_second, aggregate_bps, error) {
            (Some(t), _, _) => say(format!("   {label}: {t:.0} transactions/s")),
            (_, Some(b), _) => say(format!(
                "   {label}: aggregate {}",
                wirespeed::units::fmt_bps(b)
            )),
            (_, _, Some(e)) => say(format!("   {label}: failed: {e}")),
            _ => {}
        },
    });
    bar.finish_and_clear();
    print!("\n{}", wirespeed::report::plan::table(&report));
    print!("{}", wirespeed::report::plan::verdicts(&report));
    println!("{}", wirespeed::report::plan::quiet(&report));
    save(
        &report,
        a.json.as_deref(),
        a.csv.as_deref(),
        a.plot.as_deref(),
    )?;
    if report.interrupted {
        let done = report.points.iter().filter(|p| p.error.is_none()).count();
        anyhow::bail!("interrupted: {done} of {total} points measured and saved");
    }
    let failed: Vec<&str> = report
        .points
        .iter()
        .filter_map(|p| p.error.as_deref())
        .collect();
    if let Some(first) = failed.first() {
        anyhow::bail!("{} point(s) failed; the first: {first}", failed.len());
    }
    Ok(())
}

fn save(
    report: &wirespeed::report::plan::PlanReport,
    json: Option<&std::path::Path>,
    csv_path: Option<&std::path::Path>,
    plot: Option<&std::path::Path>,
) -> Result<()> {
    if let Some(f) = json {
        let body = serde_json::to_vec_pretty(report).context("encoding results")?;
        std::fs::write(f, body).with_context(|| format!("writing {}", f.display()))?;
        println!("results: {}", f.display());
    }
    if let Some(f) = csv_path {
        std::fs::write(f, wirespeed::report::plan::csv(report))
            .with_context(|| format!("writing {}", f.display()))?;
        println!("csv: {}", f.display());
    }
    if let Some(d) = plot {
        for f in wirespeed::report::plot::write_all(report, d)? {
            println!("figure: {}", f.display());
        }
    }
    Ok(())
}

fn report_cmd(a: ReportArgs) -> Result<()> {
    let report = read_results(&a.results)?;
    print!("{}", wirespeed::report::plan::table(&report));
    print!("{}", wirespeed::report::plan::verdicts(&report));
    println!("{}", wirespeed::report::plan::quiet(&report));
    save(&report, None, a.csv.as_deref(), a.plot.as_deref())?;
    if let Some(f) = &a.html {
        write_html(&report, f)?;
    }
    Ok(())
}

fn read_results(path: &std::path::Path) -> Result<wirespeed::report::plan::PlanReport> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not a wirespeed plan result (wirespeed plan --json)",
            path.display()
        )
    })
}

fn write_html(report: &wirespeed::report::plan::PlanReport, f: &std::path::Path) -> Result<()> {
    let page = wirespeed::report::html::render(report)?;
    std::fs::write(f, page).with_context(|| format!("writing {}", f.display()))?;
    println!("html: {}", f.display());
    Ok(())
}

fn completions_cmd(a: CompletionsArgs) -> Result<()> {
    use clap::CommandFactory;
    use clap_complete::Shell;
    let shell = match a.shell {
        ShellArg::Bash => Shell::Bash,
        ShellArg::Zsh => Shell::Zsh,
        ShellArg::Fish => Shell::Fish,
    };
    clap_complete::generate(
        shell,
        &mut Cli::command(),
        "wirespeed",
        &mut std::io::stdout(),
    );
    Ok(())
}

/// wirespeed.1 and a page per visible subcommand (`wirespeed-run.1`), as
/// `git` and `cargo` lay theirs out.
fn man_cmd(a: ManArgs) -> Result<()> {
    use clap::CommandFactory;
    std::fs::create_dir_all(&a.dir).with_context(|| format!("creating {}", a.dir.display()))?;
    let mut cmd = Cli::command();
    // Building names the subcommands `wirespeed-run` with usage `wirespeed run`.
    cmd.build();
    let mut pages = vec![("wirespeed".to_string(), cmd.clone())];
    for sub in cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        let name = sub.get_display_name().unwrap_or(sub.get_name()).to_string();
        pages.push((name, sub.clone().version(wirespeed::VERSION)));
    }
    for (name, page) in pages {
        let f = a.dir.join(format!("{name}.1"));
        let mut out = Vec::new();
        clap_mangen::Man::new(page)
            .render(&mut out)
            .with_context(|| format!("rendering {name}.1"))?;
        std::fs::write(&f, out).with_context(|| format!("writing {}", f.display()))?;
        println!("{}", f.display());
    }
    Ok(())
}

#[cfg(target_os = "linux")]
fn demo_cmd(a: DemoArgs) -> Result<()> {
    // The plan child gets Ctrl-C too, saves what it measured and exits; we
    // only have to outlive it to tear the testbed down.
    catch_interrupts();
    let opts = wirespeed::demo::DemoOptions {
        quick: a.quick,
        out: a.out,
        exe: std::env::current_exe().context("finding the wirespeed binary")?,
        vms: a.vms,
        clients: a.clients,
        guests: a.guests,
        series: a
            .series
            .map(|v| {
                v.iter()
                    .map(|s| wirespeed::demo::Series::parse(s))
                    .collect()
            })
            .transpose()?,
        vm_images: a.vm_images.or_else(|| {
            let env = std::env::var_os("WIRESPEED_VM_IMAGES").filter(|_| a.guests > 0);
            env.map(PathBuf::from)
        }),
        cancel: Some(cancel_flag()),
    };
    let status = wirespeed::demo::run(&opts)?;
    // The page beside results.json, partial results too.
    let results = opts.out.join("results.json");
    if results.exists() {
        write_html(&read_results(&results)?, &opts.out.join("report.html"))?;
    }
    if !status.success() {
        anyhow::bail!(
            "the study did not complete ({status}); partial results are in {}",
            opts.out.display()
        );
    }
    println!("results, CSV and figures: {}", opts.out.display());
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn demo_cmd(_: DemoArgs) -> Result<()> {
    anyhow::bail!("the demo builds Linux network namespaces: run it on Linux")
}

#[cfg(target_os = "linux")]
fn doctor_cmd(a: DoctorArgs) -> Result<()> {
    use wirespeed::datapath::xdp::probe;
    let names = match &a.iface {
        Some(i) => vec![i.clone()],
        None => wirespeed::host::iface::interfaces(),
    };
    let reports = names
        .iter()
        .map(|n| probe::inspect(n, a.iface.is_some()))
        .collect::<Result<Vec<_>, _>>()?;
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&reports).context("encoding JSON")?
        );
        return Ok(());
    }
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    for r in &reports {
        println!("{}", r.name);
        println!("  driver        {}", opt(&r.driver));
        println!(
            "  link          {}, MTU {}",
            r.speed_bps
                .map_or("speed unknown".into(), wirespeed::units::fmt_bps),
            r.mtu.map_or("-".into(), |m| m.to_string())
        );
        println!(
            "  queues        rx {} tx {}{}",
            r.rx_queues,
            r.tx_queues,
            r.channels
                .map_or(String::new(), |c| format!(" (ethtool channels {c})"))
        );
        if let Some((name, id)) = &r.xdp_program {
            let detail = r.xdp_detail.clone();
            println!(
                "  xdp program   {} attached",
                detail.unwrap_or_else(|| format!("{name:?} id {id}"))
            );
        }
        println!(
            "  native XDP    {}",
            r.native_xdp
                .clone()
                .unwrap_or_else(|| "not probed (use --iface)".into())
        );
        println!(
            "  AF_XDP        {}",
            r.af_xdp
                .clone()
                .unwrap_or_else(|| "not probed (use --iface)".into())
        );
        let b = &r.busy_poll;
        let n = |v: Option<u64>| v.map_or("-".into(), |v| v.to_string());
        println!(
            "  busy poll     busy_poll {} us, busy_read {} us, napi_defer_hard_irqs {}, gro_flush_timeout {} ns",
            n(b.busy_poll_us),
            n(b.busy_read_us),
            n(b.napi_defer_hard_irqs),
            n(b.gro_flush_timeout_ns)
        );
        if r.irqs.is_empty() {
            println!(
                "  irqs          none of its own (virtual NIC, or its IRQs are not named for it)"
            );
        }
        for q in &r.irqs {
            println!("  irq {:<9} {} -> CPUs {}", q.irq, q.name, opt(&q.affinity));
        }
        println!("  auto mode     {}: {}", r.auto_mode, r.auto_reason);
    }
    Ok(())
}

#[cfg(target_os = "linux")]
fn cleanup_cmd(a: CleanupArgs) -> Result<()> {
    let lines = wirespeed::datapath::xdp::probe::cleanup(a.iface.as_deref())?;
    if lines.is_empty() {
        println!("nothing attached by wirespeed");
    }
    for l in lines {
        println!("{l}");
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn doctor_cmd(_: DoctorArgs) -> Result<()> {
    anyhow::bail!(
        "doctor inspects Linux NICs (XDP, AF_XDP): on this system only --mode socket runs"
    )
}

#[cfg(not(target_os = "linux"))]
fn cleanup_cmd(_: CleanupArgs) -> Result<()> {
    anyhow::bail!("there is no XDP on this system, so nothing to clean up")
}
