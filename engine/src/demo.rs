//! `wirespeed demo`: the classic study on an embedded testbed. A controller
//! host and four "VM" hosts (network namespaces), each VM joined to the
//! controller by its own veth link on its own subnet, shaped to 1 Gbit/s
//! with `tc tbf` to stand for the study's dedicated 1 GbE NICs; an agent in
//! each VM; the study's sweep (1-4 pairs, TCP_STREAM, 8 KiB messages, 64 KiB
//! socket buffers, send and receive) run as a plan from the controller
//! host; results, CSV and figures written; everything torn down after,
//! also on Ctrl-C.

use crate::testbed::Testbed;
use crate::{Error, Result};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::time::Duration;

/// How the demo runs.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// Short runs: the whole demo in under a minute.
    pub quick: bool,
    /// Where the plan, results and figures go.
    pub out: PathBuf,
    /// The wirespeed binary to run agents and the plan with.
    pub exe: PathBuf,
    /// How many VM hosts (1-4 in the study).
    pub vms: usize,
}

/// An agent process in a namespace, ended by its pid on drop.
struct AgentChild(Child);

impl Drop for AgentChild {
    fn drop(&mut self) {
        crate::testbed::terminate(&mut self.0);
    }
}

fn start_agent(tb: &Testbed, host: usize, exe: &Path, listen: &str) -> Result<AgentChild> {
    let mut c = tb.cmd(host, exe);
    c.args(["agent", "--listen", listen])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = AgentChild(c.spawn().map_err(|e| Error::io("starting an agent", e))?);
    let out = child.0.stdout.take().expect("piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut first = String::new();
        let _ = BufReader::new(out).read_line(&mut first);
        let _ = tx.send(first);
    });
    match rx.recv_timeout(Duration::from_secs(10)) {
        Ok(l) if l.contains("listening on") => Ok(child),
        _ => Err(Error::PeerLost(format!(
            "the agent in {} did not start listening on {listen}",
            tb.ns(host)
        ))),
    }
}

/// The plan the demo runs.
pub fn plan_text(tb: &Testbed, quick: bool) -> String {
    // The warm-up leaves slow start and the shaper's initial burst out.
    let (duration, warmup, reps) = if quick {
        ("2s", "1s", 1)
    } else {
        ("10s", "1s", 1)
    };
    let mut s = format!(
        "# Written by `wirespeed demo`: the classic scale-out study on namespaces.\n\
         name = \"study (demo)\"\n\n[defaults]\nduration = \"{duration}\"\nwarmup = \"{warmup}\"\n\
         msg_size = \"8K\"\nsockbuf = \"64K\"\nmode = \"socket\"\ndirections = [\"send\", \"receive\"]\n\
         # each veth is shaped with tc tbf: count L2 frames, no preamble or gap\n\
         link_speed = \"1G\"\nframing = \"shaper\"\nmtu = 1500\n\n[sweep]\nrepetitions = {reps}\n\
         # a repetition whose ends start further apart is run again\nmax_start_skew = \"1ms\"\n\n\
         [[configurations]]\nname = \"native\"\n"
    );
    for (k, l) in tb.links.iter().enumerate() {
        s += &format!(
            "\n[[agents]]\nname = \"vm{}\"\naddress = \"{}:5290\"\n",
            k + 1,
            l.v4[1]
        );
    }
    for (k, l) in tb.links.iter().enumerate() {
        s += &format!(
            "\n[[pairs]]\nname = \"nic{}\"\nagent = \"vm{}\"\nlocal = \"{}\"\niface = \"{}\"\n",
            k + 1,
            k + 1,
            l.v4[0],
            l.ifname[0]
        );
    }
    s
}

/// Build the testbed, run the study, tear down. Returns the plan's exit
/// status (non-zero when a point failed or it was interrupted).
pub fn run(opts: &DemoOptions) -> Result<ExitStatus> {
    if !(1..=8).contains(&opts.vms) {
        return Err(Error::Invalid("--vms must be between 1 and 8".into()));
    }
    std::fs::create_dir_all(&opts.out)
        .map_err(|e| Error::io(format!("creating {}", opts.out.display()), e))?;
    let links: Vec<(usize, usize)> = (1..=opts.vms).map(|v| (0, v)).collect();
    println!(
        "testbed: a controller and {} VM namespaces, one veth each (198.18.K.0/24), tbf 1 Gbit/s both ways",
        opts.vms
    );
    let tb = Testbed::new("wsdemo", opts.vms + 1, &links)?;
    for k in 0..tb.links.len() {
        for side in 0..2 {
            tb.qdisc(
                k,
                side,
                &["tbf", "rate", "1gbit", "burst", "256kb", "latency", "10ms"],
            )?;
        }
    }
    let mut agents = Vec::new();
    for (k, l) in tb.links.iter().enumerate() {
        agents.push(start_agent(
            &tb,
            k + 1,
            &opts.exe,
            &format!("{}:5290", l.v4[1]),
        )?);
    }
    let plan = opts.out.join("demo-plan.toml");
    std::fs::write(&plan, plan_text(&tb, opts.quick))
        .map_err(|e| Error::io(format!("writing {}", plan.display()), e))?;
    println!(
        "plan: {} (kernel sockets: on veth, auto keeps them against a kernel TCP peer, so no xdp series)",
        plan.display()
    );
    let mut c = tb.cmd(0, &opts.exe);
    c.arg("plan")
        .arg(&plan)
        .arg("--json")
        .arg(opts.out.join("results.json"))
        .arg("--csv")
        .arg(opts.out.join("results.csv"))
        .arg("--plot")
        .arg(opts.out.join("figures"));
    if !opts.quick {
        c.arg("--quiet");
    }
    let status = c.status().map_err(|e| Error::io("running the plan", e))?;
    drop(agents);
    drop(tb);
    println!("testbed torn down");
    Ok(status)
}
