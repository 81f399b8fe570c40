//! `wirespeed demo`: the classic study on an embedded testbed. A controller
//! host and four "VM" hosts (network namespaces), each VM joined to the
//! controller by its own veth link on its own subnet, shaped to 1 Gbit/s
//! with `tc tbf` to stand for the study's dedicated 1 GbE NICs; an agent in
//! each VM; the study's sweep (1-4 pairs, TCP_STREAM, 8 KiB messages, 64 KiB
//! socket buffers, send and receive) run as a plan from the controller
//! host; results, CSV and figures written; everything torn down after,
//! also on Ctrl-C.
//!
//! With `--clients N` the VMs' peers are N client namespaces instead (the
//! study's second client machine): each VM's shaped link goes to a client,
//! round robin, and the controller only orchestrates, over a management
//! link to every agent; it routes between them, so a client agent can
//! reach the VM agent's control port to have it vouch for the pair.

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
    /// Client namespaces the VMs' peers are spread over; 0 = the
    /// controller is every VM's peer.
    pub clients: usize,
}

/// Where everything sits. Host 0 is the controller, hosts 1..=vms the
/// VMs, then the clients. Link k-1 is VM k's data link (its peer on side
/// a, at 198.18.(k-1).1, the VM at .2), so a plan names the same
/// addresses with or without clients; management links follow.
#[derive(Clone, Debug, PartialEq)]
pub struct Layout {
    pub vms: usize,
    pub clients: usize,
}

impl Layout {
    pub fn hosts(&self) -> usize {
        1 + self.vms + self.clients
    }

    /// VM k's (1-based) peer host: the controller, or client k mod N.
    pub fn peer_of(&self, vm: usize) -> usize {
        match self.clients {
            0 => 0,
            n => 1 + self.vms + (vm - 1) % n,
        }
    }

    /// The testbed's links: data links first, then with clients a
    /// management link from the controller to every agent host.
    pub fn links(&self) -> Vec<(usize, usize)> {
        let mut l: Vec<(usize, usize)> = (1..=self.vms).map(|v| (self.peer_of(v), v)).collect();
        if self.clients > 0 {
            l.extend((1..self.hosts()).map(|h| (0, h)));
        }
        l
    }

    /// Agent host `h`'s control link: its data link without clients, its
    /// management link with them (the agent on side b either way).
    pub fn control_link(&self, h: usize) -> usize {
        match self.clients {
            0 => h - 1,
            _ => self.vms + h - 1,
        }
    }
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
pub fn plan_text(tb: &Testbed, layout: &Layout, quick: bool) -> String {
    // The warm-up leaves slow start and the shaper's initial burst out.
    let (duration, warmup, reps) = if quick {
        ("2s", "1s", 1)
    } else {
        ("10s", "1s", 1)
    };
    let s = format!(
        "# Written by `wirespeed demo`: the classic scale-out study on namespaces.\n\
         name = \"study (demo)\"\n\n[defaults]\nduration = \"{duration}\"\nwarmup = \"{warmup}\"\n\
         msg_size = \"8K\"\nsockbuf = \"64K\"\nmode = \"socket\"\ndirections = [\"send\", \"receive\"]\n\
         # each veth is shaped with tc tbf: count L2 frames, no preamble or gap\n\
         link_speed = \"1G\"\nframing = \"shaper\"\nmtu = 1500\n\n[sweep]\nrepetitions = {reps}\n\
         # a repetition whose ends start further apart is run again\nmax_start_skew = \"1ms\"\n\n\
         [[configurations]]\nname = \"native\"\n"
    );
    s + &peers_text(tb, layout)
}

/// The plan's agents and pairs: an agent per VM (and per client), and
/// per VM a pair from its peer to it on its data link.
fn peers_text(tb: &Testbed, layout: &Layout) -> String {
    let agent = |name: String, h: usize| {
        let addr = tb.links[layout.control_link(h)].v4[1];
        format!("\n[[agents]]\nname = \"{name}\"\naddress = \"{addr}:5290\"\n")
    };
    let mut s: String = (1..=layout.vms)
        .map(|v| agent(format!("vm{v}"), v))
        .collect();
    for c in 1..=layout.clients {
        s += &agent(format!("client{c}"), layout.vms + c);
    }
    for v in 1..=layout.vms {
        let l = &tb.links[v - 1];
        s += &format!(
            "\n[[pairs]]\nname = \"nic{v}\"\nagent = \"vm{v}\"\nlocal = \"{}\"\niface = \"{}\"\n",
            l.v4[0], l.ifname[0]
        );
        if layout.clients > 0 {
            // The VM agent listens on its management address: its data
            // address is named for the client to connect to.
            s += &format!(
                "client = \"client{}\"\nremote_local = \"{}\"\n",
                layout.peer_of(v) - layout.vms,
                l.v4[1]
            );
        }
    }
    s
}

/// The namespaces and links of `layout`, the VMs' data links shaped to
/// 1 Gbit/s both ways; with clients, the controller routes between the
/// management links.
fn build(layout: &Layout) -> Result<Testbed> {
    match layout.clients {
        0 => println!(
            "testbed: a controller and {} VM namespaces, one veth each (198.18.K.0/24), tbf 1 Gbit/s both ways",
            layout.vms
        ),
        n => println!(
            "testbed: {} VM namespaces, each on one veth (198.18.K.0/24, tbf 1 Gbit/s both ways) to one of {n} client namespaces; a controller on a management veth to each",
            layout.vms
        ),
    }
    let tb = Testbed::new("wsdemo", layout.hosts(), &layout.links())?;
    for k in 0..layout.vms {
        for side in 0..2 {
            tb.qdisc(
                k,
                side,
                &["tbf", "rate", "1gbit", "burst", "256kb", "latency", "10ms"],
            )?;
        }
    }
    if layout.clients > 0 {
        tb.forward(0)?;
        for h in 1..layout.hosts() {
            let l = &tb.links[layout.control_link(h)];
            tb.route_default(h, std::net::IpAddr::V4(l.v4[0]))?;
        }
    }
    Ok(tb)
}

/// Build the testbed, run the study, tear down. Returns the plan's exit
/// status (non-zero when a point failed or it was interrupted).
pub fn run(opts: &DemoOptions) -> Result<ExitStatus> {
    if !(1..=8).contains(&opts.vms) {
        return Err(Error::Invalid("--vms must be between 1 and 8".into()));
    }
    if opts.clients > opts.vms {
        return Err(Error::Invalid(format!(
            "--clients {} is more than the {} VM(s) there are peers for",
            opts.clients, opts.vms
        )));
    }
    std::fs::create_dir_all(&opts.out)
        .map_err(|e| Error::io(format!("creating {}", opts.out.display()), e))?;
    let layout = Layout {
        vms: opts.vms,
        clients: opts.clients,
    };
    let tb = build(&layout)?;
    let mut agents = Vec::new();
    for h in 1..layout.hosts() {
        let listen = format!("{}:5290", tb.links[layout.control_link(h)].v4[1]);
        agents.push(start_agent(&tb, h, &opts.exe, &listen)?);
    }
    let plan = opts.out.join("demo-plan.toml");
    std::fs::write(&plan, plan_text(&tb, &layout, opts.quick))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_clients_the_controller_is_every_vms_peer() {
        let l = Layout { vms: 4, clients: 0 };
        assert_eq!(l.links(), vec![(0, 1), (0, 2), (0, 3), (0, 4)]);
        assert_eq!((l.control_link(1), l.control_link(4)), (0, 3));
    }

    #[test]
    fn clients_take_the_vms_round_robin_behind_a_management_network() {
        let l = Layout { vms: 4, clients: 2 };
        assert_eq!(l.hosts(), 7);
        assert_eq!(
            (1..=4).map(|v| l.peer_of(v)).collect::<Vec<_>>(),
            vec![5, 6, 5, 6]
        );
        // Data links first (peer on side a), then management from host 0.
        assert_eq!(
            l.links(),
            vec![
                (5, 1),
                (6, 2),
                (5, 3),
                (6, 4),
                (0, 1),
                (0, 2),
                (0, 3),
                (0, 4),
                (0, 5),
                (0, 6)
            ]
        );
        assert_eq!((l.control_link(1), l.control_link(6)), (4, 9));
    }
}
