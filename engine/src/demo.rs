//! `wirespeed demo`: the classic study on an embedded testbed. A controller
//! host and "VM" hosts (network namespaces), each VM joined to the
//! controller by its own link on its own subnet, shaped to 1 Gbit/s with
//! `tc tbf` to stand for the study's dedicated 1 GbE NICs; an agent in each
//! VM; the study's sweep (1-4 pairs, TCP_STREAM, 8 KiB messages, 64 KiB
//! socket buffers, send and receive) run as one plan from the controller
//! host, one configuration per series of the study; results, CSV and
//! figures written; everything torn down after, also on Ctrl-C.
//!
//! The series, each on links and VMs of its own:
//! * `native`: kernel sockets on both ends.
//! * `bypass`: TCP-lite over AF_XDP on both ends. AF_XDP transmit skips
//!   the sender's qdisc, so each link runs through a router host whose
//!   egress carries the tbf, both ways: every frame passes one shaper.
//! * `dom0`: the study's uniprocessor driver domain (Xen on the XE320):
//!   every VM's packet work funnelled to CPU 0 (the RPS mask of the
//!   VM-side interfaces, agents pinned there) under a CPU budget of
//!   [`DOM0_SHARE`] of a core: one modern core alone carries 4 Gb/s.
//! * `dom0-spread`: the study's attempted fix, half the links' work moved
//!   to CPU 1 (with a budget of its own there).
//! * `vm`, `vm-bypass` (`--guests N`): real qemu guests, see [`guests`].
//!
//! With `--clients N` the host series' VMs' peers are N client namespaces
//! instead of the controller (the study's second client machine): pair k
//! of every host series goes to client k mod N, and the controller only
//! orchestrates, over a management link to every agent, routing between
//! them so a client agent reaches the VM agent that vouches for its pair.
//! The guests' peer stays the controller.

pub mod guests;

use crate::host::cgroup::{self, CpuBudget};
use crate::testbed::Testbed;
use crate::{Error, Result};
use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

/// The dom0 series' CPU budget, in cores: at 15 % of a core netperf's
/// send fell to 63 % of wire speed at 4 pairs here; at 30 % it held.
pub const DOM0_SHARE: f64 = 0.15;

/// The shaper on every link side that shapes: 1 Gbit/s.
const TBF: [&str; 7] = ["tbf", "rate", "1gbit", "burst", "256kb", "latency", "10ms"];

/// One series of the study: a configuration of the demo's plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Series {
    Native,
    Bypass,
    Dom0,
    Dom0Spread,
    /// Kernel sockets in qemu guests.
    Vm,
    /// TCP-lite over AF_XDP in qemu guests, on their virtio NICs.
    VmBypass,
}

impl Series {
    /// The series run on the host, in the order they run.
    pub const HOST: [Series; 4] = [
        Series::Native,
        Series::Bypass,
        Series::Dom0,
        Series::Dom0Spread,
    ];

    /// The series on qemu guests (`--guests N`), in the order they run.
    pub const GUEST: [Series; 2] = [Series::Vm, Series::VmBypass];

    pub fn name(self) -> &'static str {
        match self {
            Series::Native => "native",
            Series::Bypass => "bypass",
            Series::Dom0 => "dom0",
            Series::Dom0Spread => "dom0-spread",
            Series::Vm => "vm",
            Series::VmBypass => "vm-bypass",
        }
    }

    /// The series named `name` (as [`Series::name`] gives it).
    pub fn parse(name: &str) -> Result<Series> {
        Series::HOST
            .into_iter()
            .chain(Series::GUEST)
            .find(|s| s.name() == name)
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "--series {name}: use native, bypass, dom0, dom0-spread, vm or vm-bypass"
                ))
            })
    }

    /// Whether the series runs on qemu guests.
    pub fn is_guest(self) -> bool {
        Series::GUEST.contains(&self)
    }

    /// The configuration's settings beyond the plan's defaults.
    fn settings(self) -> &'static str {
        match self {
            Series::Bypass | Series::VmBypass => "mode = \"xdp\"\nremote_mode = \"xdp\"\n",
            _ => "",
        }
    }

    /// The CPU that does the VM side's packet work of pair `k` of `vms`;
    /// None: wherever the kernel puts it.
    pub fn funnel_cpu(self, k: usize, vms: usize) -> Option<usize> {
        match self {
            Series::Dom0 => Some(0),
            Series::Dom0Spread => Some(usize::from(k >= vms.div_ceil(2))),
            _ => None,
        }
    }
}

/// How the demo runs.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// Short runs: the whole demo in under 90 s.
    pub quick: bool,
    /// Where the plan, results and figures go.
    pub out: PathBuf,
    /// The wirespeed binary to run agents and the plan with.
    pub exe: PathBuf,
    /// How many VM hosts per series (1-4 in the study).
    pub vms: usize,
    /// Client hosts the VMs' peers are spread over; 0: the controller is
    /// every VM's peer.
    pub clients: usize,
    /// How many qemu guests for the `vm` and `vm-bypass` series; 0: none.
    pub guests: usize,
    /// The series to run; None: the host's, and the guests' with `guests`.
    pub series: Option<Vec<Series>>,
    /// Where `vm-images/` is (None: found from the executable).
    pub vm_images: Option<PathBuf>,
    /// Set on Ctrl-C: ends a wait for booting guests.
    pub cancel: Option<Arc<AtomicBool>>,
}

impl DemoOptions {
    /// The series to run, in order, after checking they fit `guests`.
    pub fn selected(&self) -> Result<Vec<Series>> {
        let mut v = match &self.series {
            Some(v) if v.is_empty() => {
                return Err(Error::Invalid("--series: name at least one series".into()))
            }
            Some(v) => v.clone(),
            None => Series::HOST.to_vec(),
        };
        if self.series.is_none() && self.guests > 0 {
            v.extend(Series::GUEST);
        }
        let any_guest = v.iter().any(|s| s.is_guest());
        if any_guest && self.guests == 0 {
            return Err(Error::Invalid(
                "--series vm and vm-bypass run on qemu guests: give --guests N (1-4)".into(),
            ));
        }
        if !any_guest && self.guests > 0 {
            return Err(Error::Invalid(
                "--guests: the series chosen with --series run no guests (add vm or vm-bypass)"
                    .into(),
            ));
        }
        if self.guests > 4 {
            return Err(Error::Invalid("--guests must be between 1 and 4".into()));
        }
        if self.vm_images.is_some() && self.guests == 0 {
            return Err(Error::Invalid("--vm-images is for --guests N".into()));
        }
        let mut seen = Vec::new();
        v.retain(|s| {
            let first = !seen.contains(s);
            seen.push(*s);
            first
        });
        Ok(v)
    }
}

/// Where one pair of a series runs: its peer host (the controller or a
/// client), its VM host, the router host between (bypass), and the
/// testbed links at the peer's and the VM's end (the same link when there
/// is no router).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PairPlace {
    pub series: Series,
    /// 0-based pair index within its series.
    pub k: usize,
    pub peer: usize,
    pub vm: usize,
    pub router: Option<usize>,
    pub peer_link: usize,
    pub vm_link: usize,
    /// The VM's management link to the controller (with clients).
    pub mgmt_link: Option<usize>,
}

/// The whole testbed: host 0 is the controller; links as (host a, host b).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    pub hosts: usize,
    pub links: Vec<(usize, usize)>,
    pub places: Vec<PairPlace>,
    /// Each client host with its management link.
    pub clients: Vec<(usize, usize)>,
}

/// The testbed for `series` with `vms` pairs each and their peers spread
/// over `clients` client hosts (none: the controller). Data links come
/// first, so without clients the layout is the same; the management
/// links, one per agent host, follow.
pub fn layout(series: &[Series], vms: usize, clients: usize) -> Layout {
    let routed = |s: Series| usize::from(s == Series::Bypass);
    let first_client = 1 + series.iter().map(|&s| (1 + routed(s)) * vms).sum::<usize>();
    let (mut hosts, mut links, mut places) = (1, Vec::new(), Vec::new());
    for &s in series {
        for k in 0..vms {
            let peer = match clients {
                0 => 0,
                n => first_client + k % n,
            };
            let router = (s == Series::Bypass).then(|| {
                hosts += 1;
                links.push((peer, hosts - 1));
                hosts - 1
            });
            let vm = hosts;
            hosts += 1;
            links.push((router.unwrap_or(peer), vm));
            let vm_link = links.len() - 1;
            places.push(PairPlace {
                series: s,
                k,
                peer,
                vm,
                router,
                peer_link: vm_link - routed(s),
                vm_link,
                mgmt_link: None,
            });
        }
    }
    let mut clients: Vec<(usize, usize)> = (first_client..first_client + clients)
        .map(|c| (c, 0))
        .collect();
    if !clients.is_empty() {
        for p in &mut places {
            links.push((0, p.vm));
            p.mgmt_link = Some(links.len() - 1);
        }
        for c in &mut clients {
            links.push((0, c.0));
            c.1 = links.len() - 1;
        }
    }
    Layout {
        hosts: first_client + clients.len(),
        links,
        places,
        clients,
    }
}

/// The agent's plan name of a place: `vm1` in native (as the study named
/// them), `dom0-vm1` in the others.
fn agent_name(p: &PairPlace) -> String {
    match p.series {
        Series::Native => format!("vm{}", p.k + 1),
        s => format!("{}-vm{}", s.name(), p.k + 1),
    }
}

/// An agent process in a namespace, ended by its pid on drop.
struct AgentChild(Child);

impl Drop for AgentChild {
    fn drop(&mut self) {
        crate::testbed::terminate(&mut self.0);
    }
}

/// Start an agent in host `host`, confined to CPU `cpu` when given (set
/// before exec, so every thread it ever makes inherits it).
fn start_agent(
    tb: &Testbed,
    host: usize,
    exe: &Path,
    listen: &str,
    cpu: Option<usize>,
) -> Result<AgentChild> {
    use nix::sched::{sched_setaffinity, CpuSet};
    use std::os::unix::process::CommandExt;
    let mut c = tb.cmd(host, exe);
    c.args(["agent", "--listen", listen])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let Some(cpu) = cpu {
        let mut set = CpuSet::new();
        set.set(cpu)
            .map_err(|e| Error::Invalid(format!("CPU {cpu}: {e}")))?;
        // SAFETY: one system call on a value made before the fork.
        unsafe {
            c.pre_exec(move || {
                sched_setaffinity(nix::unistd::Pid::from_raw(0), &set).map_err(Into::into)
            });
        }
    }
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

/// The plan name of the client agent on host `h`.
fn client_name(layout_clients: &[(usize, usize)], h: usize) -> Option<String> {
    let i = layout_clients.iter().position(|c| c.0 == h)?;
    Some(format!("client{}", i + 1))
}

/// The /24 a link address is on.
fn subnet(a: Ipv4Addr) -> Ipv4Addr {
    let [x, y, z, _] = a.octets();
    Ipv4Addr::new(x, y, z, 0)
}

/// The built testbed with its agents and budgets; dropped in field order:
/// agents, then budgets (empty once the agents are gone), then namespaces.
struct Bed {
    agents: Vec<AgentChild>,
    guests: Option<guests::Guests>,
    budgets: Vec<CpuBudget>,
    tb: Testbed,
    layout: Layout,
    guest_places: Vec<guests::GuestPlace>,
}

impl Bed {
    /// The host series' namespaces and agents, and with `guests` the
    /// guests (booting while the host's agents start).
    fn build(
        opts: &DemoOptions,
        series: &[Series],
        guests: Option<&guests::Prepared>,
    ) -> Result<Bed> {
        let host: Vec<Series> = series.iter().copied().filter(|s| !s.is_guest()).collect();
        let mut layout = layout(&host, opts.vms, opts.clients);
        let n = if guests.is_some() { opts.guests } else { 0 };
        let guest_places = guests::layout(&mut layout.hosts, &mut layout.links, n);
        cgroup::sweep_stale("wsdemo");
        let tb = Testbed::new("wsdemo", layout.hosts, &layout.links)?;
        let mut bed = Bed {
            agents: Vec::new(),
            guests: None,
            budgets: Vec::new(),
            tb,
            layout,
            guest_places,
        };
        if let Some(p) = guests {
            bed.guests = Some(guests::boot(&bed.tb, &bed.guest_places, p, &TBF)?);
        }
        if !bed.layout.clients.is_empty() {
            bed.tb.forwarding(0)?;
        }
        for &(c, mgmt) in &bed.layout.clients.clone() {
            bed.manage(c, mgmt)?;
            let listen = format!("{}:5290", bed.tb.links[mgmt].v4[1]);
            let agent = start_agent(&bed.tb, c, &opts.exe, &listen, None)?;
            bed.agents.push(agent);
        }
        for p in bed.layout.places.clone() {
            bed.link(&p)?;
            let cpu = p.series.funnel_cpu(p.k, opts.vms);
            if let Some(c) = cpu {
                bed.tb.rps_cpus(p.vm_link, 1, &[c])?;
            }
            if let Some(m) = p.mgmt_link {
                bed.manage(p.vm, m)?;
            }
            let listen = format!("{}:5290", bed.tb.links[p.control_link()].v4[1]);
            let agent = start_agent(&bed.tb, p.vm, &opts.exe, &listen, cpu)?;
            if let Some(c) = cpu {
                bed.budget(p.series, c)?.add(agent.0.id())?;
            }
            bed.agents.push(agent);
        }
        if let (Some(g), Some(p)) = (bed.guests.as_mut(), guests) {
            g.wait(&bed.tb, &p.logs, opts.cancel.as_deref())?;
        }
        Ok(bed)
    }

    /// Host `h` reaches every other agent through the controller, at its
    /// end of management link `mgmt`.
    fn manage(&self, h: usize, mgmt: usize) -> Result<()> {
        let gw = self.tb.links[mgmt].v4[0];
        self.tb.route_default(h, std::net::IpAddr::V4(gw))
    }

    /// Shape pair `p`'s link; through its router for bypass, whose
    /// AF_XDP ends transmit past their own qdiscs.
    fn link(&self, p: &PairPlace) -> Result<()> {
        let tb = &self.tb;
        let Some(r) = p.router else {
            tb.qdisc(p.vm_link, 0, &TBF)?;
            return tb.qdisc(p.vm_link, 1, &TBF);
        };
        let (c, v) = (&tb.links[p.peer_link], &tb.links[p.vm_link]);
        tb.forwarding(r)?;
        tb.route(p.peer, subnet(v.v4[1]), 24, c.v4[1])?;
        tb.route(p.vm, subnet(c.v4[0]), 24, v.v4[0])?;
        tb.qdisc(p.peer_link, 1, &TBF)?;
        tb.qdisc(p.vm_link, 0, &TBF)
    }

    /// The CPU budget of `series` on `cpu`, made on first use.
    fn budget(&mut self, series: Series, cpu: usize) -> Result<&CpuBudget> {
        let name = format!("wsdemo-{}-{}-cpu{cpu}", std::process::id(), series.name());
        if let Some(i) = self.budgets.iter().position(|b| b.name() == name) {
            return Ok(&self.budgets[i]);
        }
        self.budgets.push(CpuBudget::new(&name, DOM0_SHARE)?);
        Ok(self.budgets.last().expect("just pushed"))
    }
}

impl PairPlace {
    /// The link the VM's agent listens on: its management link, else its
    /// data link.
    fn control_link(&self) -> usize {
        self.mgmt_link.unwrap_or(self.vm_link)
    }
}

/// The plan the demo runs: one configuration per series, each with its
/// own agents and pairs (and the client agents, shared by every series).
pub fn plan_text(tb: &Testbed, layout: &Layout, series: &[Series], quick: bool) -> String {
    // The warm-up leaves slow start and the shaper's initial burst out.
    let (duration, warmup) = if quick {
        ("1s", "500ms")
    } else {
        ("10s", "1s")
    };
    // A dom0 agent on its budgeted CPU wakes late by nature; a quick run
    // marks late starts rather than running them again.
    let skew = if quick {
        "# late starts are marked, not run again (--quick)\n"
    } else {
        "# a repetition whose ends start further apart is run again\nmax_start_skew = \"1ms\"\n"
    };
    let mut s = format!(
        "# Written by `wirespeed demo`: the classic scale-out study on namespaces.\n\
         name = \"study (demo)\"\n\n[defaults]\nduration = \"{duration}\"\nwarmup = \"{warmup}\"\n\
         msg_size = \"8K\"\nsockbuf = \"64K\"\nmode = \"socket\"\ndirections = [\"send\", \"receive\"]\n\
         # each link is shaped with tc tbf: count L2 frames, no preamble or gap\n\
         link_speed = \"1G\"\nframing = \"shaper\"\nmtu = 1500\n\n[sweep]\nrepetitions = 1\n{skew}"
    );
    for x in series {
        s += &format!(
            "\n[[configurations]]\nname = \"{}\"\n{}",
            x.name(),
            x.settings()
        );
    }
    let agent = |name: String, link: usize| {
        let addr = tb.links[link].v4[1];
        format!("\n[[agents]]\nname = \"{name}\"\naddress = \"{addr}:5290\"\n")
    };
    for &(c, mgmt) in &layout.clients {
        s += &agent(client_name(&layout.clients, c).expect("a client"), mgmt);
    }
    for p in &layout.places {
        s += &agent(agent_name(p), p.control_link());
    }
    for p in &layout.places {
        let c = &tb.links[p.peer_link];
        s += &format!(
            "\n[[pairs]]\nname = \"nic{}\"\nagent = \"{}\"\nconfiguration = \"{}\"\nlocal = \"{}\"\niface = \"{}\"\n",
            p.k + 1,
            agent_name(p),
            p.series.name(),
            c.v4[0],
            c.ifname[0]
        );
        if let Some(name) = client_name(&layout.clients, p.peer) {
            // The VM's agent listens on its management address: the
            // client is told its data address.
            s += &format!(
                "client = \"{name}\"\nremote_local = \"{}\"\n",
                tb.links[p.vm_link].v4[1]
            );
        }
        if p.series == Series::Bypass {
            s += &format!("remote_iface = \"{}\"\n", tb.links[p.vm_link].ifname[1]);
        }
    }
    s
}

/// Build the testbed, run the study, tear down. Returns the plan's exit
/// status (non-zero when a point failed or it was interrupted).
pub fn run(opts: &DemoOptions) -> Result<ExitStatus> {
    if !(1..=4).contains(&opts.vms) {
        return Err(Error::Invalid("--vms must be between 1 and 4".into()));
    }
    if opts.clients > opts.vms {
        return Err(Error::Invalid(format!(
            "--clients {} is more than the {} VM(s) per series there are peers for",
            opts.clients, opts.vms
        )));
    }
    let series = opts.selected()?;
    if opts.clients > 0 && series.iter().all(|s| s.is_guest()) {
        return Err(Error::Invalid(
            "--clients spreads the host series' peers; the guests' peer is the controller".into(),
        ));
    }
    std::fs::create_dir_all(&opts.out)
        .map_err(|e| Error::io(format!("creating {}", opts.out.display()), e))?;
    // Guests' prerequisites and image first: a missing qemu fails before
    // any namespace is made.
    let prepared = if opts.guests > 0 {
        Some(guests::prepare(
            opts.vm_images.as_deref(),
            &opts.exe,
            &opts.out,
        )?)
    } else {
        None
    };
    if series.iter().any(|s| !s.is_guest()) {
        println!(
        "testbed: a controller and {} VM namespaces per series, one veth link each (198.18.K.0/24), tbf 1 Gbit/s both ways\n\
         series: native (kernel sockets), bypass (TCP-lite over AF_XDP, each link through a router namespace whose egress carries the tbf),\n\
         \x20       dom0 (every VM's packet work on CPU 0: RPS masks, agents pinned, a budget of {:.0}% of a core),\n\
         \x20       dom0-spread (half the links' work moved to CPU 1, a budget of its own there)",
        opts.vms,
        DOM0_SHARE * 100.0
    );
        if opts.clients > 0 {
            println!(
            "clients: the VMs' peers are {} client namespace(s), pair k on client k mod {}; the controller only orchestrates, over a management veth to every agent",
            opts.clients, opts.clients
        );
        }
    }
    if let Some(p) = &prepared {
        println!(
            "guests: {} qemu guest(s) ({}), 1 vCPU and 256 MB each, a virtio-net NIC on a tap in a router namespace\n\
             \x20       whose egress carries the tbf both ways (198.19.10I.0/24); vm (kernel sockets), vm-bypass (TCP-lite over AF_XDP on both ends)",
            opts.guests, p.accel
        );
    }
    let started = std::time::Instant::now();
    let bed = Bed::build(opts, &series, prepared.as_ref())?;
    if prepared.is_some() {
        println!(
            "testbed and guests ready in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
    let plan = opts.out.join("demo-plan.toml");
    let text = plan_text(&bed.tb, &bed.layout, &series, opts.quick)
        + &guests::plan_text(&bed.tb, &bed.guest_places, &series);
    std::fs::write(&plan, text).map_err(|e| Error::io(format!("writing {}", plan.display()), e))?;
    println!("plan: {}", plan.display());
    let mut c = bed.tb.cmd(0, &opts.exe);
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
    let had_guests = bed.guests.is_some();
    drop(bed);
    println!(
        "testbed torn down (wsdemo-{}-*){}",
        std::process::id(),
        if had_guests { ", guests stopped" } else { "" }
    );
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bypass_pairs_go_through_a_router_and_the_rest_are_direct() {
        let Layout {
            hosts,
            links,
            places,
            clients,
        } = layout(&Series::HOST, 2, 0);
        // controller, 2 native VMs, 2 (router, VM), 2 dom0 VMs, 2 spread VMs
        assert_eq!(hosts, 1 + 2 + 4 + 2 + 2);
        assert_eq!(links.len(), 2 + 4 + 2 + 2);
        assert!(clients.is_empty());
        for p in &places {
            assert_eq!((links[p.vm_link].1, p.peer, p.mgmt_link), (p.vm, 0, None));
            match p.router {
                Some(r) => {
                    assert_eq!(p.series, Series::Bypass);
                    assert_eq!(links[p.peer_link], (0, r));
                    assert_eq!(links[p.vm_link].0, r);
                }
                None => {
                    assert_eq!(p.peer_link, p.vm_link);
                    assert_eq!(links[p.vm_link].0, 0);
                }
            }
        }
        let mut vms: Vec<usize> = places.iter().map(|p| p.vm).collect();
        vms.dedup();
        assert_eq!(vms.len(), places.len(), "one VM per pair");
    }

    #[test]
    fn clients_take_the_pairs_round_robin_behind_a_management_network() {
        let l = layout(&[Series::Native, Series::Bypass], 4, 2);
        // controller, 4 native VMs, 4 (router, VM), 2 clients
        assert_eq!(l.hosts, 1 + 4 + 8 + 2);
        assert_eq!(l.clients.iter().map(|c| c.0).collect::<Vec<_>>(), [13, 14]);
        let peers: Vec<usize> = l.places.iter().map(|p| p.peer).collect();
        assert_eq!(peers, [13, 14, 13, 14, 13, 14, 13, 14]);
        for p in &l.places {
            // the data path starts at the client, never at the controller
            assert_eq!(l.links[p.peer_link].0, p.peer);
            assert_eq!(l.links[p.vm_link].1, p.vm);
            assert_eq!(l.links[p.mgmt_link.unwrap()], (0, p.vm));
        }
        for &(c, m) in &l.clients {
            assert_eq!(l.links[m], (0, c));
        }
        // 4 + 8 data links, then 8 VMs' and 2 clients' management links
        assert_eq!(l.links.len(), 12 + 8 + 2);
    }

    #[test]
    fn guests_add_their_series_and_guest_series_need_guests() {
        let opts = |guests, series: Option<&[Series]>| DemoOptions {
            quick: true,
            out: PathBuf::new(),
            exe: PathBuf::new(),
            vms: 4,
            clients: 0,
            guests,
            series: series.map(<[Series]>::to_vec),
            vm_images: None,
            cancel: None,
        };
        assert_eq!(opts(0, None).selected().unwrap(), Series::HOST.to_vec());
        let all = opts(2, None).selected().unwrap();
        assert_eq!(&all[4..], &Series::GUEST[..]);
        let some = [Series::Vm, Series::Native, Series::Vm];
        assert_eq!(
            opts(1, Some(&some)).selected().unwrap(),
            vec![Series::Vm, Series::Native],
            "named once each, in the order given"
        );
        assert!(opts(0, Some(&[Series::VmBypass])).selected().is_err());
        assert!(opts(1, Some(&[Series::Dom0])).selected().is_err());
        assert!(opts(5, None).selected().is_err());
        assert_eq!(Series::parse("vm-bypass").unwrap(), Series::VmBypass);
        assert!(Series::parse("vm2").is_err());
    }

    #[test]
    fn dom0_funnels_everything_to_cpu0_and_spread_moves_half() {
        assert_eq!(
            (0..4)
                .map(|k| Series::Dom0.funnel_cpu(k, 4))
                .collect::<Vec<_>>(),
            vec![Some(0); 4]
        );
        assert_eq!(
            (0..4)
                .map(|k| Series::Dom0Spread.funnel_cpu(k, 4))
                .collect::<Vec<_>>(),
            vec![Some(0), Some(0), Some(1), Some(1)]
        );
        assert_eq!(Series::Native.funnel_cpu(0, 4), None);
        assert_eq!(Series::Bypass.funnel_cpu(3, 4), None);
    }
}
