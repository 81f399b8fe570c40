//! The verdict: which limit is visible in the CPU and interrupt figures of
//! the hosts that took part, how sure we are, and what to try. Rules are
//! checked from the most specific (one core pegged by interrupt work, the
//! study's driver-domain case) to the least (no CPU limit: NIC or link).
//!
//! Only the test's own path is judged: the cores its packet work could run
//! on and the interrupt lines of the NICs its flows used (see
//! [`crate::metrics::irq_path`]); other lines are context in `notes`, never
//! the verdict. At wire speed nothing is blamed: the verdict is `link`, and
//! a busy core is headroom to watch. A figure that could not be read is
//! never reasoned from; the verdict names it in `lacking`.

use super::model::{CpuReport, IrqReport};
use super::text::fmt_us;
use crate::metrics::irq::IrqDelta;
use crate::metrics::latency::Percentiles;
use serde::{Deserialize, Serialize};

mod host;
pub use host::{noise, Noise, STEAL};

/// One host's figures over a run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HostFigures {
    /// `controller`, or the agent's name.
    pub name: String,
    pub controller: bool,
    pub cpu: CpuReport,
    pub irq: IrqReport,
}

/// What limits the point.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// `cpu-funnel`, `interrupt-cpu`, `irq-concentration`, `steal`,
    /// `co-tenant`, `hypervisor-cpu`, `controller-cpu`, `agent-cpu`,
    /// `link`, or `none-visible`.
    pub limit: String,
    pub host: Option<String>,
    pub cpu: Option<usize>,
    /// `high`, `medium` or `low`.
    pub confidence: String,
    pub message: String,
    pub advice: String,
    /// What was seen but is not the limit: headroom at wire speed, and
    /// interrupt lines outside the test's path (context).
    #[serde(default)]
    pub notes: Vec<String>,
    /// Figures the verdict had to do without (unreadable counters, an
    /// unknown path or link speed).
    #[serde(default)]
    pub lacking: Vec<String>,
}

/// A core this busy with interrupt work is the limit.
const IRQ_CORE: f64 = 50.0;
/// A host this busy on average is saturated.
const HOST_BUSY: f64 = 90.0;
/// Goodput at or above this share of the best the links allow is wire
/// speed: the verdict is `link`, whatever else is seen.
pub const LINK_THRESHOLD: f64 = 97.0;
/// Above this share the stated link speed is no limit at all (veth's
/// nominal speed, say).
const ABOVE_LINK: f64 = 105.0;
/// A core this busy at wire speed has little headroom left.
const HEADROOM: f64 = 70.0;

fn verdict(
    limit: &str,
    host: Option<&str>,
    cpu: Option<usize>,
    confidence: &str,
    message: String,
    advice: &str,
) -> Verdict {
    Verdict {
        limit: limit.into(),
        host: host.map(Into::into),
        cpu,
        confidence: confidence.into(),
        message,
        advice: advice.into(),
        notes: Vec::new(),
        lacking: Vec::new(),
    }
}

/// Diagnose one run from its hosts' figures and how close the goodput
/// came to the best the links allow (None when no link speed is known).
/// Hosts that are the same machine (namespaces) report the same CPUs;
/// they are judged once, under the first name.
pub fn diagnose(hosts: &[HostFigures], percent_of_best: Option<f64>) -> Verdict {
    let found = cpu_limit(hosts);
    let mut v = match percent_of_best {
        Some(p) if (LINK_THRESHOLD..=ABOVE_LINK).contains(&p) => {
            let mut v = no_cpu_limit(Some(p));
            v.notes = headroom(hosts);
            if let Some(c) = found {
                // What the rule saw, without its claim to be the limit.
                let seen = c.message.split_once(": ").map_or(&*c.message, |(a, _)| a);
                v.notes.push(format!(
                    "not the limit at wire speed, but the first to watch ({}): {seen}",
                    c.limit
                ));
            }
            v
        }
        _ => found.unwrap_or_else(|| no_cpu_limit(percent_of_best)),
    };
    if v.limit != "steal" {
        v.notes.extend(host::steal_note(hosts));
    }
    v.notes.extend(context(hosts));
    v.lacking = lacking(hosts);
    if percent_of_best.is_none() {
        v.lacking
            .push("the link speed (declare link_speed in the plan)".into());
    }
    v
}

/// Diagnose an rr run: the same CPU and interrupt rules (a saturated core
/// or host queues transactions and shows in the tail), but no wire speed
/// to compare with, so without a CPU limit it speaks of the latency.
pub fn diagnose_latency(hosts: &[HostFigures], p: &Percentiles) -> Verdict {
    let mut v = cpu_limit(hosts).unwrap_or_else(|| {
        let tail = if p.p50_us > 0.0 { p.p99_us / p.p50_us } else { 0.0 };
        verdict(
            "none-visible",
            None,
            None,
            "low",
            format!(
                "no CPU or interrupt limit is visible: a transaction takes {} at the median and {} at p99 ({tail:.1}x), the round trip through both hosts' TCP stacks and the scheduling of both ends",
                fmt_us(p.p50_us),
                fmt_us(p.p99_us)
            ),
            "pin the ends to idle cores (taskset) to steady the tail; `wirespeed run --test rr --mode xdp --remote-mode xdp` (TCP-lite on both ends) takes the kernel stacks out",
        )
    });
    if v.limit != "steal" {
        v.notes.extend(host::steal_note(hosts));
    }
    v.notes.extend(context(hosts));
    v.lacking = lacking(hosts);
    v
}

/// The host's share of time in irq and softirq on one core; None when
/// either is not broken out (Windows, old kernels): no rule reads it then.
fn interrupt_share(c: &super::model::CoreShare) -> Option<f64> {
    Some(c.share.irq? + c.share.softirq?)
}

/// The cores of `h` its test's packet work could run on; None when the
/// path is unknown (then every core is considered).
fn scope(h: &HostFigures) -> Option<Vec<usize>> {
    let cpus = h.irq.path.as_ref()?.cpus(&h.irq.lines);
    (!cpus.is_empty()).then_some(cpus)
}

/// The lines of `h`'s path NICs; None when the path is unknown.
fn path_lines(h: &HostFigures) -> Option<Vec<&IrqDelta>> {
    let path = h.irq.path.as_ref()?;
    let ours: Vec<&str> = path.lines().collect();
    Some(
        h.irq
            .lines
            .iter()
            .filter(|l| ours.contains(&l.irq.as_str()))
            .collect(),
    )
}

/// The CPU that took at least 95 % of `lines`' interrupts (more than
/// 1000 of them), on a host with more than one CPU.
fn one_cpu_takes_all(lines: &[&IrqDelta]) -> Option<usize> {
    let ncpu = lines.first()?.per_cpu.len();
    let per_cpu: Vec<u64> = (0..ncpu)
        .map(|i| {
            lines
                .iter()
                .map(|l| l.per_cpu.get(i).copied().unwrap_or(0))
                .sum()
        })
        .collect();
    let total: u64 = per_cpu.iter().sum();
    let (cpu, &n) = per_cpu.iter().enumerate().max_by_key(|(_, &n)| n)?;
    (ncpu > 1 && total > 1000 && n as f64 >= 0.95 * total as f64).then_some(cpu)
}

fn names(lines: &[&IrqDelta]) -> String {
    lines
        .iter()
        .map(|l| l.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The path's NICs as words: `eth1 (ixgbe, 0000:01:00.0)`, or
/// `veth-a (veth: a virtual NIC, no interrupts of its own)`.
fn nic_words(h: &HostFigures) -> Option<String> {
    let path = h.irq.path.as_ref()?;
    let words: Vec<String> = path
        .nics
        .iter()
        .map(|n| match &n.nic {
            Some(nic) => {
                let facts: Vec<&str> = [n.driver.as_deref(), n.bus.as_deref()]
                    .into_iter()
                    .flatten()
                    .collect();
                let under = if *nic == n.iface {
                    String::new()
                } else {
                    format!(" under {}", n.iface)
                };
                format!("{nic}{under} ({})", facts.join(", "))
            }
            None => format!(
                "{} ({}: no interrupts of its own, virtual NIC)",
                n.iface,
                n.driver.as_deref().unwrap_or("virtual")
            ),
        })
        .collect();
    (!words.is_empty()).then(|| words.join(", "))
}

/// Rules 0-3: a CPU or interrupt limit on the test's path, if one is
/// visible. The host's own (steal, co-tenants, qemu's emulation) come
/// after the funnel and interrupt rules, which find a structure that
/// stays when the host is quiet, and before a busy host, which they
/// explain.
fn cpu_limit(hosts: &[HostFigures]) -> Option<Verdict> {
    funnel(hosts)
        .or_else(|| hosts.iter().find_map(interrupt_core))
        .or_else(|| hosts.iter().find_map(concentrated_lines))
        .or_else(|| host::steal(hosts))
        .or_else(|| host::co_tenant(hosts))
        .or_else(|| host::emulation(hosts))
        .or_else(|| busy_host(hosts))
}

/// The one CPU all of an agent's packet work was confined to: its
/// interfaces' RPS mask and the CPUs its threads ran on, both that CPU,
/// on a host with more.
fn funnelled_to(h: &HostFigures) -> Option<usize> {
    let p = h.irq.path.as_ref()?;
    let mut all = p.flow_cpus.clone()?;
    if p.rps_cpus.is_empty() || h.cpu.cores < 2 {
        return None;
    }
    all.extend(&p.rps_cpus);
    all.sort_unstable();
    all.dedup();
    (all.len() == 1).then(|| all[0])
}

/// Rule 0, the study's uniprocessor driver domain: the VMs' packet work
/// funnelled to one CPU by their RPS masks and CPU affinity. Named with
/// what that CPU did and the masks read, whether the CPU is pegged or
/// held back by a budget (a cgroup quota, a hypervisor's cap).
fn funnel(hosts: &[HostFigures]) -> Option<Verdict> {
    let on: Vec<(&HostFigures, usize)> = hosts
        .iter()
        .filter(|h| !h.controller)
        .filter_map(|h| Some((h, funnelled_to(h)?)))
        .collect();
    // The CPU the most agents were funnelled to (the lowest on a tie).
    let cpu = (0..=on.iter().map(|x| x.1).max()?)
        .max_by_key(|c| (on.iter().filter(|x| x.1 == *c).count(), usize::MAX - c))?;
    let (mine, elsewhere): (Vec<&(&HostFigures, usize)>, Vec<_>) =
        on.iter().partition(|x| x.1 == cpu);
    let names: Vec<&str> = mine.iter().map(|x| x.0.name.as_str()).collect();
    let core = on[0].0.cpu.per_core.iter().find(|c| c.cpu == cpu)?;
    let soft = core
        .share
        .softirq
        .map_or("-".into(), |s| format!("{s:.0}%"));
    let others = elsewhere
        .iter()
        .map(|x| format!("{} on CPU{}", x.0.name, x.1))
        .collect::<Vec<_>>();
    let also = if others.is_empty() {
        String::new()
    } else {
        format!("; {} apart", others.join(", "))
    };
    Some(verdict(
        "cpu-funnel",
        Some(names[0]),
        Some(cpu),
        if names.len() > 1 { "medium" } else { "low" },
        format!(
            "CPU{cpu} carries all packet work of {}: their interfaces' RPS mask (rps_cpus) is CPU{cpu} alone and their threads ran only on CPU{cpu}; CPU{cpu} was {:.0}% busy, {soft} in softirq{also}: one CPU funnels every VM's network work (the study's uniprocessor driver domain); a CPU that is not busy is held back by a budget (a cgroup CPU quota, a hypervisor's cap)",
            names.join(", "),
            core.share.busy(),
        ),
        "spread the VM-side interfaces' receive work over CPUs (rps_cpus, /proc/irq/N/smp_affinity), and let the VMs' and the driver domain's work run on more than one CPU with the budget to use them",
    ))
}

/// 1. One core of the path doing interrupt work while the others idle.
fn interrupt_core(h: &HostFigures) -> Option<Verdict> {
    let cores = &h.cpu.per_core;
    if cores.len() < 2 {
        return None;
    }
    let scope = scope(h);
    for c in cores {
        let Some(intr) = interrupt_share(c) else {
            continue;
        };
        if intr < IRQ_CORE || scope.as_ref().is_some_and(|s| !s.contains(&c.cpu)) {
            continue;
        }
        let others: Vec<_> = cores.iter().filter(|o| o.cpu != c.cpu).collect();
        let others_busy = others.iter().map(|o| o.share.busy()).sum::<f64>() / others.len() as f64;
        let others_intr = others
            .iter()
            .filter_map(|o| interrupt_share(o))
            .fold(0.0, f64::max);
        if others_intr >= intr / 2.0 {
            continue;
        }
        let conf = if intr >= 80.0 { "high" } else { "medium" };
        let lines: Vec<&IrqDelta> = path_lines(h)
            .unwrap_or_default()
            .into_iter()
            .filter(|l| one_cpu_takes_all(&[l]) == Some(c.cpu))
            .collect();
        let how = match (nic_words(h), lines.is_empty()) {
            (Some(nics), false) => format!("; the lines of {nics} landed on it: {}", names(&lines)),
            (Some(nics), true) => format!(" ({nics}: the flows' softirq work)"),
            (None, _) => String::new(),
        };
        return Some(verdict(
            "interrupt-cpu",
            Some(&h.name),
            Some(c.cpu),
            conf,
            format!(
                "CPU{} on {} spends {intr:.0}% of its time in irq/softirq while the other cores are {others_busy:.0}% busy: this traffic's interrupt work is concentrated on one CPU (the study's driver-domain case){how}",
                c.cpu, h.name
            ),
            "spread the NIC queues' interrupts over CPUs (/proc/irq/N/smp_affinity), or enable RPS/RFS",
        ));
    }
    None
}

/// 2. Several lines of the path's NICs, all delivered to one CPU.
fn concentrated_lines(h: &HostFigures) -> Option<Verdict> {
    let lines = path_lines(h)?;
    if lines.len() < 2 {
        return None;
    }
    let cpu = one_cpu_takes_all(&lines)?;
    let nics = nic_words(h).unwrap_or_default();
    Some(verdict(
        "irq-concentration",
        Some(&h.name),
        Some(cpu),
        "medium",
        format!(
            "every interrupt of {nics} on {} landed on CPU{cpu}: {}",
            h.name,
            names(&lines)
        ),
        "give each NIC queue's IRQ its own CPU (smp_affinity_list), or check that irqbalance runs",
    ))
}

/// 3. A saturated host: the controller first, as in the study at 4 NICs.
fn busy_host(hosts: &[HostFigures]) -> Option<Verdict> {
    let mut ordered: Vec<&HostFigures> = hosts.iter().filter(|h| h.controller).collect();
    ordered.extend(hosts.iter().filter(|h| !h.controller));
    for h in ordered {
        // No host figure, no verdict on it.
        let Some(busy) = h.cpu.host.map(|s| s.busy()) else {
            continue;
        };
        if busy < HOST_BUSY {
            continue;
        }
        let (limit, advice) = if h.controller {
            (
                "controller-cpu",
                "move some pairs' client end to an agent on another host (a plan pair's `client`, as `demo --clients`), or use fewer pairs per controller",
            )
        } else {
            (
                "agent-cpu",
                "give the agent's host more CPUs, or fewer pairs per agent",
            )
        };
        let shared = hosts.len() > 1 && hosts.iter().all(|o| same_machine(o, h));
        let note = if shared {
            " (the hosts share these CPUs: namespaces on one machine)"
        } else {
            ""
        };
        return Some(verdict(
            limit,
            Some(&h.name),
            None,
            if shared { "low" } else { "medium" },
            format!(
                "{} is {busy:.0}% busy over all its cores: it is the bottleneck{note}",
                h.name
            ),
            advice,
        ));
    }
    None
}

/// Whether two hosts' figures are one machine's, read from two network
/// namespaces over the same time: as many cores, host-wide busy within 3
/// points (read milliseconds apart), and the same interrupt lines fired.
fn same_machine(a: &HostFigures, b: &HostFigures) -> bool {
    let close = match (a.cpu.host, b.cpu.host) {
        (Some(x), Some(y)) => (x.busy() - y.busy()).abs() < 3.0,
        _ => false,
    };
    fn lines(h: &HostFigures) -> Vec<&str> {
        let mut v: Vec<&str> = h.irq.lines.iter().map(|l| l.irq.as_str()).collect();
        v.sort_unstable();
        v
    }
    a.cpu.cores == b.cpu.cores && close && !a.irq.lines.is_empty() && lines(a) == lines(b)
}

/// At wire speed: the path's cores that are busy enough to watch, once
/// per CPU even when namespaces of one machine report it several times.
fn headroom(hosts: &[HostFigures]) -> Vec<String> {
    let mut seen: Vec<usize> = Vec::new();
    let mut notes = Vec::new();
    for h in hosts {
        let scope = scope(h);
        for c in &h.cpu.per_core {
            let busy = c.share.busy();
            if busy < HEADROOM
                || seen.contains(&c.cpu)
                || scope.as_ref().is_some_and(|s| !s.contains(&c.cpu))
            {
                continue;
            }
            seen.push(c.cpu);
            let intr = interrupt_share(c)
                .map(|i| format!(", {i:.0}% in irq/softirq"))
                .unwrap_or_default();
            notes.push(format!(
                "CPU{} on {} at {busy:.0}%{intr} — little headroom left",
                c.cpu, h.name
            ));
        }
    }
    notes
}

/// Interrupt lines outside the test's path that all landed on one CPU:
/// context for the reader, never the verdict.
fn context(hosts: &[HostFigures]) -> Vec<String> {
    let mut notes: Vec<String> = Vec::new();
    for h in hosts {
        let ours: Vec<&str> = h.irq.path.iter().flat_map(|p| p.lines()).collect();
        let others: Vec<&IrqDelta> = h
            .irq
            .lines
            .iter()
            .filter(|l| !ours.contains(&l.irq.as_str()))
            .collect();
        if others.len() < 2 {
            continue;
        }
        if let Some(cpu) = one_cpu_takes_all(&others) {
            let n = format!(
                "not this test's path (context only): every interrupt of {} landed on CPU{cpu}",
                names(&others)
            );
            if !notes.iter().any(|m| m.ends_with(&n)) {
                notes.push(format!("{}: {n}", h.name));
            }
        }
    }
    notes
}

/// The figures each host could not give.
fn lacking(hosts: &[HostFigures]) -> Vec<String> {
    let mut v = Vec::new();
    for h in hosts {
        if h.cpu.host.is_none() {
            v.push(format!("{}'s CPU figures ({})", h.name, h.cpu.source));
        } else if h.cpu.per_core.iter().any(|c| interrupt_share(c).is_none()) {
            v.push(format!("{}'s per-core irq/softirq shares", h.name));
        }
        v.extend(h.irq.unavailable.iter().map(|u| format!("{}: {u}", h.name)));
        if h.irq.path.is_none() && !h.irq.unavailable.iter().any(|u| u.contains("interfaces")) {
            v.push(format!(
                "the interfaces {}'s flows used (an older agent, or not Linux)",
                h.name
            ));
        }
    }
    v
}

/// Rules 4-5: no CPU limit; the share of wire speed decides.
fn no_cpu_limit(percent_of_best: Option<f64>) -> Verdict {
    // 4. No CPU limit: the link, or something below the stack.
    match percent_of_best {
        Some(p) if p > ABOVE_LINK => verdict(
            "none-visible",
            None,
            None,
            "low",
            format!("goodput is {p:.0}% of the best the stated link speed allows, so that speed is no limit here (virtual NICs such as veth report a nominal one), and no CPU or interrupt limit is visible"),
            "declare the real link_speed in the plan, or shape the link",
        ),
        Some(p) if p >= LINK_THRESHOLD => verdict(
            "link",
            None,
            None,
            "high",
            format!("goodput is {p:.1}% of the best the links allow: the links are the limit"),
            "nothing to fix: this is wire speed",
        ),
        Some(p) => verdict(
            "none-visible",
            None,
            None,
            "low",
            format!("goodput is {p:.1}% of the best the links allow, and no CPU or interrupt limit is visible: look at the NIC, its driver, or the path"),
            "try --streams N, bigger socket buffers, or the xdp mode to take the kernel stack out",
        ),
        None => verdict(
            "none-visible",
            None,
            None,
            "low",
            "no CPU or interrupt limit is visible, and the link speed is unknown (declare link_speed in the plan)".into(),
            "declare link_speed to compare against wire speed",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::model::{CoreShare, CpuShare};

    fn core(cpu: usize, user: f64, softirq: f64) -> CoreShare {
        CoreShare {
            cpu,
            share: CpuShare {
                user,
                softirq: Some(softirq),
                irq: Some(0.0),
                idle: 100.0 - user - softirq,
                ..Default::default()
            },
        }
    }

    fn host(name: &str, controller: bool, cores: Vec<CoreShare>) -> HostFigures {
        let n = cores.len() as f64;
        let idle = cores.iter().map(|c| c.share.idle).sum::<f64>() / n;
        HostFigures {
            name: name.into(),
            controller,
            cpu: CpuReport {
                cores: cores.len(),
                host: Some(CpuShare {
                    idle,
                    ..Default::default()
                }),
                per_core: cores,
                ..Default::default()
            },
            irq: IrqReport::default(),
        }
    }

    #[test]
    fn pegged_interrupt_core_is_named() {
        let h = host("vm1", false, vec![core(0, 5.0, 90.0), core(1, 20.0, 2.0)]);
        let v = diagnose(
            &[
                host(
                    "controller",
                    true,
                    vec![core(0, 10.0, 0.0), core(1, 10.0, 0.0)],
                ),
                h,
            ],
            Some(60.0),
        );
        assert_eq!(v.limit, "interrupt-cpu");
        assert_eq!(v.cpu, Some(0));
        assert_eq!(v.host.as_deref(), Some("vm1"));
        assert_eq!(v.confidence, "high");
        assert!(v.message.contains("CPU0 on vm1"), "{}", v.message);
    }

    #[test]
    fn busy_controller_then_link_then_nothing() {
        let busy = host(
            "controller",
            true,
            vec![core(0, 95.0, 0.0), core(1, 95.0, 0.0)],
        );
        let idle = host("vm1", false, vec![core(0, 10.0, 0.0), core(1, 10.0, 0.0)]);
        assert_eq!(
            diagnose(&[busy, idle.clone()], Some(80.0)).limit,
            "controller-cpu"
        );
        let ctl = host(
            "controller",
            true,
            vec![core(0, 10.0, 0.0), core(1, 10.0, 0.0)],
        );
        assert_eq!(
            diagnose(&[ctl.clone(), idle.clone()], Some(99.0)).limit,
            "link"
        );
        let v = diagnose(&[ctl, idle], Some(50.0));
        assert_eq!(
            (v.limit.as_str(), v.confidence.as_str()),
            ("none-visible", "low")
        );
    }

    #[test]
    fn namespaces_of_one_machine_are_said_to_share_its_cpus() {
        let line = crate::metrics::irq::IrqDelta {
            irq: "36".into(),
            name: "virtio1-req.0".into(),
            per_cpu: vec![0, 90],
            affinity: None,
        };
        let mut ctl = host(
            "controller",
            true,
            vec![core(0, 95.0, 0.0), core(1, 95.0, 0.0)],
        );
        let mut vm = host("vm1", false, vec![core(0, 94.0, 0.0), core(1, 95.0, 0.0)]);
        ctl.irq.lines = vec![line.clone()];
        vm.irq.lines = vec![line];
        let v = diagnose(&[ctl.clone(), vm.clone()], Some(50.0));
        assert_eq!(
            (v.limit.as_str(), v.confidence.as_str()),
            ("controller-cpu", "low")
        );
        assert!(
            v.message.contains("namespaces on one machine"),
            "{}",
            v.message
        );
        vm.irq.lines.clear();
        let v = diagnose(&[ctl, vm], Some(50.0));
        assert_eq!(v.confidence, "medium", "other lines: another machine");
    }

    #[test]
    fn unread_cpu_counters_give_no_cpu_verdict() {
        // All-zero shares read as 100 % busy; an unread host has none.
        let unread = HostFigures {
            name: "controller".into(),
            controller: true,
            cpu: CpuReport {
                source: "unavailable: /proc/stat: Permission denied (os error 13)".into(),
                cores: 2,
                ..Default::default()
            },
            irq: IrqReport::default(),
        };
        assert_eq!(unread.cpu.host, None);
        assert_eq!(diagnose(&[unread], Some(99.0)).limit, "link");
    }

    #[test]
    fn latency_verdict_names_cpu_limits_or_speaks_of_latency() {
        let p = Percentiles {
            count: 100,
            p50_us: 20.0,
            p99_us: 80.0,
            ..Default::default()
        };
        let idle = host(
            "controller",
            true,
            vec![core(0, 10.0, 0.0), core(1, 10.0, 0.0)],
        );
        let v = diagnose_latency(&[idle], &p);
        assert_eq!(v.limit, "none-visible");
        assert!(
            v.message.contains("20.0 us at the median") && v.message.contains("(4.0x)"),
            "{}",
            v.message
        );
        assert!(
            !v.message.contains("goodput") && !v.message.contains("link"),
            "{}",
            v.message
        );
        let pegged = host("vm1", false, vec![core(0, 5.0, 90.0), core(1, 20.0, 2.0)]);
        assert_eq!(diagnose_latency(&[pegged], &p).limit, "interrupt-cpu");
    }

    #[test]
    fn all_lines_of_the_path_on_one_cpu() {
        use crate::metrics::irq_path::{PathNic, TestPath};
        let mut h = host(
            "controller",
            true,
            vec![core(0, 10.0, 10.0), core(1, 10.0, 10.0)],
        );
        let line = |irq: &str, name: &str, per_cpu| crate::metrics::irq::IrqDelta {
            irq: irq.into(),
            name: name.into(),
            per_cpu,
            affinity: Some("0".into()),
        };
        h.irq.lines = vec![
            line("24", "eth1-rx", vec![5000, 0]),
            line("25", "eth1-tx", vec![7000, 10]),
        ];
        // Without the path, lines are context, not a verdict.
        let v = diagnose(std::slice::from_ref(&h), Some(70.0));
        assert_eq!(v.limit, "none-visible", "{v:?}");
        assert!(
            v.notes[0].contains("context only") && v.notes[0].contains("eth1-rx"),
            "{v:?}"
        );
        assert!(
            v.lacking
                .iter()
                .any(|l| l.contains("interfaces controller's flows")),
            "{v:?}"
        );
        h.irq.path = Some(TestPath {
            nics: vec![PathNic {
                iface: "eth1".into(),
                nic: Some("eth1".into()),
                driver: Some("e1000e".into()),
                bus: Some("0000:02:00.0".into()),
                lines: vec!["24".into(), "25".into()],
            }],
            flow_cpus: Some(vec![1]),
            rps_cpus: Vec::new(),
        });
        let v = diagnose(&[h], Some(70.0));
        assert_eq!(v.limit, "irq-concentration");
        assert_eq!(v.cpu, Some(0));
        assert!(
            v.message.contains("eth1 (e1000e, 0000:02:00.0)"),
            "{}",
            v.message
        );
        assert!(v.message.contains("eth1-rx, eth1-tx"), "{}", v.message);
        assert!(v.notes.is_empty() && v.lacking.is_empty(), "{v:?}");
    }

    #[test]
    fn vms_funnelled_to_cpu0_below_wire_speed_name_cpu0_its_softirq_and_the_masks() {
        use crate::metrics::irq_path::TestPath;
        let funnelled = |name: &str, cpu: usize| {
            let mut h = host(name, false, vec![core(0, 20.0, 35.0), core(1, 30.0, 5.0)]);
            h.irq.path = Some(TestPath {
                nics: Vec::new(),
                flow_cpus: Some(vec![cpu]),
                rps_cpus: vec![cpu],
            });
            h
        };
        let ctrl = host(
            "controller",
            true,
            vec![core(0, 20.0, 35.0), core(1, 30.0, 5.0)],
        );
        let mut hosts = vec![ctrl.clone()];
        hosts.extend((1..=4).map(|k| funnelled(&format!("dom0-vm{k}"), 0)));
        let v = diagnose(&hosts, Some(63.0));
        assert_eq!((v.limit.as_str(), v.cpu), ("cpu-funnel", Some(0)), "{v:?}");
        assert_eq!(v.confidence, "medium");
        for want in [
            "CPU0 carries all packet work of dom0-vm1, dom0-vm2, dom0-vm3, dom0-vm4",
            "rps_cpus",
            "55% busy, 35% in softirq",
        ] {
            assert!(v.message.contains(want), "{want}: {}", v.message);
        }
        // Half moved to CPU1: still a funnel of two, the others named apart.
        let mut spread = vec![ctrl.clone(), funnelled("vm1", 0), funnelled("vm2", 0)];
        spread.extend([funnelled("vm3", 1), funnelled("vm4", 1)]);
        let v = diagnose(&spread, Some(80.0));
        assert_eq!(v.cpu, Some(0), "{v:?}");
        assert!(
            v.message.contains("vm3 on CPU1, vm4 on CPU1 apart"),
            "{}",
            v.message
        );
        // At wire speed the funnel is a note, not the verdict.
        let v = diagnose(&hosts, Some(99.0));
        assert_eq!(v.limit, "link");
        assert!(v.notes.iter().any(|n| n.contains("(cpu-funnel)")), "{v:?}");
        // Threads that also ran elsewhere, or no RPS mask: no funnel.
        let mut loose = funnelled("vm1", 0);
        loose.irq.path.as_mut().unwrap().flow_cpus = Some(vec![0, 1]);
        assert_ne!(
            diagnose(&[ctrl.clone(), loose], Some(63.0)).limit,
            "cpu-funnel"
        );
        let mut unmasked = funnelled("vm1", 0);
        unmasked.irq.path.as_mut().unwrap().rps_cpus.clear();
        assert_ne!(diagnose(&[ctrl, unmasked], Some(63.0)).limit, "cpu-funnel");
    }

    /// Figures from recorded /proc/interrupts, /proc/softirqs and
    /// /proc/stat pairs (testdata/NAME.FILE.{before,after}, 2 s apart),
    /// with the path an end would have found in sysfs.
    #[cfg(target_os = "linux")]
    mod recorded {
        use super::super::*;
        use crate::metrics::cpu::CpuSnapshot;
        use crate::metrics::irq::IrqSnapshot;
        use crate::metrics::irq_path::{resolve, with_lines, DeviceFacts, LinkFacts, TestPath};
        use std::time::{Duration, Instant};

        macro_rules! recorded {
            ($name:literal, $file:literal) => {
                (
                    include_str!(concat!("testdata/", $name, ".", $file, ".before")),
                    include_str!(concat!("testdata/", $name, ".", $file, ".after")),
                )
            };
        }

        /// One file's text before and after the test.
        type Recorded = (&'static str, &'static str);

        /// veth-a: a veth; eth1: ixgbe at 0000:01:00.0 with MSI-X lines 50-54.
        fn sysfs(name: &str) -> LinkFacts {
            match name {
                "eth1" => LinkFacts {
                    driver: Some("ixgbe".into()),
                    device: Some(DeviceFacts {
                        bus: Some("0000:01:00.0".into()),
                        virtio: None,
                        irqs: (50..=54).map(|i| i.to_string()).collect(),
                    }),
                    ..Default::default()
                },
                _ => LinkFacts {
                    driver: Some("veth".into()),
                    ..Default::default()
                },
            }
        }

        fn figures(
            name: &str,
            controller: bool,
            (intr, soft, stat): (Recorded, Recorded, Recorded),
            iface: &str,
            flow_cpus: Vec<usize>,
        ) -> HostFigures {
            let t = Instant::now();
            let cpu = CpuSnapshot::from_proc_stat(stat.0, t).report(&CpuSnapshot::from_proc_stat(
                stat.1,
                t + Duration::from_secs(2),
            ));
            let mut irq = IrqSnapshot::from_text(intr.0, soft.0, "")
                .report(&IrqSnapshot::from_text(intr.1, soft.1, ""));
            let (m, rps_cpus) = resolve(&[iface.to_string()], &sysfs);
            irq.path = Some(TestPath {
                nics: with_lines(&m, &irq.lines),
                flow_cpus: Some(flow_cpus),
                rps_cpus,
            });
            HostFigures {
                name: name.into(),
                controller,
                cpu,
                irq,
            }
        }

        fn veth_host() -> Vec<HostFigures> {
            let snaps = (
                recorded!("veth", "interrupts"),
                recorded!("veth", "softirqs"),
                recorded!("veth", "stat"),
            );
            vec![
                figures("controller", true, snaps, "veth-a", vec![0, 1]),
                figures("vm1", false, snaps, "veth-b", vec![1]),
            ]
        }

        /// The veth test's host with its /proc/stat replaced: `steal`
        /// (39 % and 38.5 % of the CPUs taken, the demo run) or
        /// `hog` (CPU1 saturated while a busy loop ran on it).
        fn veth_with(stat: Recorded) -> Vec<HostFigures> {
            let snaps = (
                recorded!("veth", "interrupts"),
                recorded!("veth", "softirqs"),
                stat,
            );
            vec![
                figures("controller", true, snaps, "veth-a", vec![0, 1]),
                figures("vm1", false, snaps, "veth-b", vec![1]),
            ]
        }

        /// Others' use as recorded beside the hog (metrics/testdata).
        fn tenants() -> crate::metrics::tenants::TenantReport {
            use crate::metrics::tenants::{Own, TenantSnapshot};
            let t = Instant::now();
            let before = include_str!("../metrics/testdata/tenants.before");
            let after = include_str!("../metrics/testdata/tenants.after");
            let own = Own::recorded(1);
            TenantSnapshot::from_text(before, t, 100, &own).report(&TenantSnapshot::from_text(
                after,
                t + Duration::from_secs(2),
                100,
                &own,
            ))
        }

        #[test]
        fn steal_of_38_percent_is_the_verdict_not_none_visible() {
            let hosts = veth_with(recorded!("steal", "stat"));
            let v = diagnose(&hosts, Some(58.0));
            assert_eq!(v.limit, "steal", "{v:?}");
            assert_eq!(v.confidence, "high");
            assert_eq!((v.host.as_deref(), v.cpu), (Some("controller"), Some(0)));
            assert!(
                v.message.contains("steal: CPU0 39.0%, CPU1 38.5%"),
                "{}",
                v.message
            );
            // A point's noise is the worst core's steal.
            let n = noise(&hosts);
            assert_eq!(n.steal_percent, Some(39.0));
            assert!(n.over(10.0) && !n.over(40.0));
            // At wire speed the link is still the verdict; the steal is a note.
            let v = diagnose(&hosts, Some(99.0));
            assert_eq!(v.limit, "link");
            assert!(
                v.notes
                    .iter()
                    .any(|n| n.contains("took CPU time during the run (steal: CPU0 39.0%")),
                "{v:?}"
            );
            // The quiet recording has none.
            let quiet = noise(&veth_host());
            assert_eq!(quiet.steal_percent, Some(0.0));
            assert!(!quiet.over(10.0));
        }

        #[test]
        fn a_busy_loop_on_the_path_cpu_is_named_as_co_tenant() {
            let mut hosts = veth_with(recorded!("hog", "stat"));
            // Without the processes' figures (an older agent) the saturated
            // CPU is not blamed on anyone.
            assert_ne!(diagnose(&hosts, Some(60.0)).limit, "co-tenant");
            for h in &mut hosts {
                h.cpu.tenants = Some(tenants());
            }
            let v = diagnose(&hosts, Some(60.0));
            assert_eq!(v.limit, "co-tenant", "{v:?}");
            assert_eq!((v.cpu, v.confidence.as_str()), (Some(1), "high"));
            assert!(v.message.contains("sh (pid 5000, 99%)"), "{}", v.message);
            assert!(!v.message.contains("wirespeed (pid"), "{}", v.message);
            let n = noise(&hosts);
            assert_eq!(n.co_tenant_percent, Some(99.0));
            assert!(n.over(10.0));
        }

        #[test]
        fn qemu_under_tcg_is_the_hypervisor_not_the_controller() {
            use crate::metrics::tenants::{Tenant, TenantCpu, TenantReport};
            let mut hosts = veth_with(recorded!("hog", "stat"));
            let qemu = TenantReport {
                source: "/proc/PID/task/TID/stat".into(),
                per_cpu: vec![TenantCpu {
                    cpu: 1,
                    co_tenant_percent: 0.0,
                    hypervisor_percent: 85.0,
                }],
                top: vec![Tenant {
                    pid: 6000,
                    name: "qemu-system-x86".into(),
                    percent_of_core: 85.0,
                    cpus: vec![1],
                    hypervisor: true,
                }],
            };
            for h in &mut hosts {
                h.cpu.tenants = Some(qemu.clone());
            }
            let v = diagnose(&hosts, Some(60.0));
            assert_eq!(v.limit, "hypervisor-cpu", "{v:?}");
            assert!(
                v.message.contains("qemu-system-x86 (pid 6000, 85%)") && v.message.contains("TCG"),
                "{}",
                v.message
            );
            // qemu is the test's hypervisor, no co-tenant: not noise.
            assert_eq!(noise(&hosts).co_tenant_percent, Some(0.0));
        }

        fn ixgbe_host() -> Vec<HostFigures> {
            let snaps = (
                recorded!("ixgbe", "interrupts"),
                recorded!("ixgbe", "softirqs"),
                recorded!("ixgbe", "stat"),
            );
            vec![figures("vm1", false, snaps, "eth1", vec![2])]
        }

        #[test]
        fn veth_test_does_not_blame_the_hosts_disk_interrupts() {
            let hosts = veth_host();
            let p = hosts[0].irq.path.as_ref().unwrap();
            assert!(p.virtual_only() && p.nics[0].lines.is_empty(), "{p:?}");
            let v = diagnose(&hosts, Some(80.0));
            assert_eq!(v.limit, "none-visible", "{v:?}");
            assert!(!v.message.contains("virtio"), "{}", v.message);
            // The disk's and vsock's lines on CPU1 are context, said once.
            assert_eq!(v.notes.len(), 1, "{v:?}");
            assert!(
                v.notes[0].contains("context only") && v.notes[0].contains("virtio1-req.0"),
                "{v:?}"
            );
            assert!(v.lacking.is_empty(), "{v:?}");
            // At 99.7 % of best (the first demo point): the link.
            let v = diagnose(&hosts, Some(99.7));
            assert_eq!((v.limit.as_str(), v.confidence.as_str()), ("link", "high"));
        }

        #[test]
        fn nic_queues_all_on_cpu0_below_wire_speed_name_the_lines_and_cpu0() {
            let v = diagnose(&ixgbe_host(), Some(60.0));
            assert_eq!(v.limit, "interrupt-cpu", "{v:?}");
            assert_eq!((v.cpu, v.host.as_deref()), (Some(0), Some("vm1")));
            assert!(
                v.message.contains("CPU0 on vm1 spends 67%"),
                "{}",
                v.message
            );
            assert!(
                v.message.contains("eth1 (ixgbe, 0000:01:00.0)"),
                "{}",
                v.message
            );
            assert!(
                v.message
                    .contains("eth1-TxRx-3, eth1-TxRx-2, eth1-TxRx-1, eth1-TxRx-0"),
                "{}",
                v.message
            );
            assert!(!v.message.contains("virtio1"), "{}", v.message);
        }

        #[test]
        fn the_same_at_wire_speed_is_the_link_with_a_headroom_note() {
            let v = diagnose(&ixgbe_host(), Some(99.0));
            assert_eq!(v.limit, "link", "{v:?}");
            assert_eq!(v.cpu, None);
            assert!(
                v.notes
                    .iter()
                    .any(|n| n == "CPU0 on vm1 at 90%, 67% in irq/softirq — little headroom left"),
                "{v:?}"
            );
            assert!(
                v.notes
                    .iter()
                    .any(|n| n.starts_with("not the limit at wire speed, but the first to watch (interrupt-cpu): CPU0 on vm1 spends 67%")),
                "{v:?}"
            );
        }
    }
}
