//! `run --iperf3`: a test against a stock iperf3 server; parsing the
//! options that apply and refusing those that cannot.

use crate::{
    cancel_flag, catch_interrupts, parse_cpus, parse_queues, DirArg, ModeArg, RunArgs, TestArg,
};
use anyhow::{Context, Result};
use std::io::Write;
use wirespeed::control::iperf3::{client, DEFAULT_PORT};
use wirespeed::report::text;
use wirespeed::spec::{Direction, Mode};

/// HOST, HOST:PORT or [IPV6]:PORT, resolved; iperf3's port by default.
fn resolve(to: &str) -> Result<std::net::SocketAddr> {
    use std::net::ToSocketAddrs;
    let with_port = match to.parse::<std::net::IpAddr>() {
        Ok(ip) => std::net::SocketAddr::new(ip, DEFAULT_PORT).to_string(),
        Err(_)
            if to
                .rsplit_once(':')
                .is_some_and(|(_, p)| p.parse::<u16>().is_ok()) =>
        {
            to.into()
        }
        Err(_) => format!("{to}:{DEFAULT_PORT}"),
    };
    with_port
        .to_socket_addrs()
        .with_context(|| format!("resolving --iperf3 {to}"))?
        .next()
        .with_context(|| format!("--iperf3 {to} resolves to no address"))
}

/// Options that mean something only against a wirespeed agent.
fn refuse(r: &RunArgs) -> Result<()> {
    let other = [
        ("--test rr", r.test == TestArg::Rr),
        ("--verify", r.verify),
        ("--window", r.window.is_some()),
        ("--rate", r.rate.is_some()),
        ("--csv", r.csv),
    ];
    if let Some((flag, _)) = crate::agent_only(r)
        .iter()
        .chain(&other)
        .find(|(_, set)| *set)
    {
        anyhow::bail!("{flag} is not part of an iperf3 test: drop it (see docs/iperf3.md)");
    }
    Ok(())
}

pub fn run(r: RunArgs, to: &str) -> Result<()> {
    refuse(&r)?;
    let o = client::ClientOptions {
        server: resolve(to)?,
        direction: match r.direction {
            DirArg::Send => Direction::Send,
            DirArg::Receive => Direction::Receive,
            DirArg::Both => anyhow::bail!(
                "--iperf3 runs one direction (iperf3's --bidir is not supported): send or receive"
            ),
        },
        streams: r.streams,
        duration: r.duration,
        bytes: r.bytes,
        len: u32::try_from(r.msg_size.unwrap_or(u64::from(client::IPERF3_LEN)))
            .ok()
            .filter(|l| (1..=wirespeed::spec::MAX_MSG_SIZE).contains(l))
            .context("--msg-size must be 1 B to 16 MiB")?,
        sockbuf: r
            .sockbuf
            .map(u32::try_from)
            .transpose()
            .context("--sockbuf is too large")?,
        mode: match r.mode {
            ModeArg::Auto => Mode::Auto,
            ModeArg::Xdp => Mode::Xdp,
            ModeArg::Socket => Mode::Socket,
        },
        iface: r.iface.clone(),
        local: r.local,
        xdp_bind: r.xdp_bind.bind(),
        queues: parse_queues(&r.queues)?,
        cpus: parse_cpus(r.cpus.as_deref())?,
        interval: (!r.interval.is_zero()).then_some(r.interval),
    };
    catch_interrupts();
    let mut out = std::io::stdout().lock();
    let rep = client::run(
        &o,
        &cancel_flag(),
        &mut crate::interval_printer(&mut out, r.json),
    )?;
    if r.json {
        serde_json::to_writer_pretty(&mut out, &rep).context("writing JSON")?;
        writeln!(out)?;
    } else {
        write!(out, "{}", text::iperf3_summary(&rep))?;
    }
    if let Some(e) = rep.streams.iter().find_map(|f| f.error.as_deref()) {
        anyhow::bail!("a stream ended with an error: {e}");
    }
    Ok(())
}
