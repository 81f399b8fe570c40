//! The verdict: which limit is visible in the CPU and interrupt figures of
//! the hosts that took part, how sure we are, and what to try. Rules are
//! checked from the most specific (one core pegged by interrupt work, the
//! study's driver-domain case) to the least (no CPU limit: NIC or link).

use super::model::{CpuReport, IrqReport};
use super::text::fmt_us;
use crate::metrics::latency::Percentiles;
use serde::{Deserialize, Serialize};

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
    /// `interrupt-cpu`, `irq-concentration`, `controller-cpu`, `agent-cpu`,
    /// `link`, or `none-visible`.
    pub limit: String,
    pub host: Option<String>,
    pub cpu: Option<usize>,
    /// `high`, `medium` or `low`.
    pub confidence: String,
    pub message: String,
    pub advice: String,
}

/// A core this busy with interrupt work is the limit.
const IRQ_CORE: f64 = 50.0;
/// A host this busy on average is saturated.
const HOST_BUSY: f64 = 90.0;

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
    }
}

/// Diagnose one run from its hosts' figures and how close the goodput
/// came to the best the links allow (None when no link speed is known).
/// Hosts that are the same machine (namespaces) report the same CPUs;
/// they are judged once, under the first name.
pub fn diagnose(hosts: &[HostFigures], percent_of_best: Option<f64>) -> Verdict {
    cpu_limit(hosts).unwrap_or_else(|| no_cpu_limit(percent_of_best))
}

/// Diagnose an rr run: the same CPU and interrupt rules (a saturated core
/// or host queues transactions and shows in the tail), but no wire speed
/// to compare with, so without a CPU limit it speaks of the latency.
pub fn diagnose_latency(hosts: &[HostFigures], p: &Percentiles) -> Verdict {
    cpu_limit(hosts).unwrap_or_else(|| {
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
    })
}

/// Rules 1-3: a CPU or interrupt limit, if one is visible.
fn cpu_limit(hosts: &[HostFigures]) -> Option<Verdict> {
    // 1. One core doing interrupt work while the others idle.
    for h in hosts {
        let cores = &h.cpu.per_core;
        for c in cores {
            let intr = c.share.irq.unwrap_or(0.0) + c.share.softirq.unwrap_or(0.0);
            if intr < IRQ_CORE || cores.len() < 2 {
                continue;
            }
            let others: Vec<f64> = cores
                .iter()
                .filter(|o| o.cpu != c.cpu)
                .map(|o| o.share.busy())
                .collect();
            let others_busy = others.iter().sum::<f64>() / others.len() as f64;
            let others_intr = cores
                .iter()
                .filter(|o| o.cpu != c.cpu)
                .map(|o| o.share.irq.unwrap_or(0.0) + o.share.softirq.unwrap_or(0.0))
                .fold(0.0, f64::max);
            if others_intr < intr / 2.0 {
                let conf = if intr >= 80.0 { "high" } else { "medium" };
                return Some(verdict(
                    "interrupt-cpu",
                    Some(&h.name),
                    Some(c.cpu),
                    conf,
                    format!(
                        "CPU{} on {} spends {intr:.0}% of its time in irq/softirq while the other cores are {others_busy:.0}% busy: this traffic's interrupt work is concentrated on one CPU (the study's driver-domain case)",
                        c.cpu, h.name
                    ),
                    "spread the NIC queues' interrupts over CPUs (/proc/irq/N/smp_affinity), or enable RPS/RFS",
                ));
            }
        }
    }
    // 2. Several NIC lines, all delivered to one CPU.
    for h in hosts {
        let lines: Vec<_> = h
            .irq
            .lines
            .iter()
            .filter(|l| l.per_cpu.iter().sum::<u64>() > 0)
            .collect();
        if lines.len() < 2 {
            continue;
        }
        let ncpu = lines[0].per_cpu.len();
        let per_cpu: Vec<u64> = (0..ncpu)
            .map(|i| {
                lines
                    .iter()
                    .map(|l| l.per_cpu.get(i).copied().unwrap_or(0))
                    .sum()
            })
            .collect();
        let total: u64 = per_cpu.iter().sum();
        if let Some((cpu, &n)) = per_cpu.iter().enumerate().max_by_key(|(_, &n)| n) {
            if ncpu > 1 && total > 1000 && n as f64 >= 0.95 * total as f64 {
                let names: Vec<&str> = lines.iter().map(|l| l.name.as_str()).collect();
                return Some(verdict(
                    "irq-concentration",
                    Some(&h.name),
                    Some(cpu),
                    "medium",
                    format!("every interrupt of {} on {} landed on CPU{cpu}", names.join(", "), h.name),
                    "give each NIC queue's IRQ its own CPU (smp_affinity_list), or check that irqbalance runs",
                ));
            }
        }
    }
    // 3. A saturated host: the controller first, as in the study at 4 NICs.
    let mut ordered: Vec<&HostFigures> = hosts.iter().filter(|h| h.controller).collect();
    ordered.extend(hosts.iter().filter(|h| !h.controller));
    for h in ordered {
        // No host figure, no verdict on it.
        let Some(busy) = h.cpu.host.map(|s| s.busy()) else {
            continue;
        };
        if busy >= HOST_BUSY {
            let (limit, advice) = if h.controller {
                ("controller-cpu", "move some pairs to a second controller host, or use fewer pairs per controller")
            } else {
                (
                    "agent-cpu",
                    "give the agent's host more CPUs, or fewer pairs per agent",
                )
            };
            let shared = hosts.len() > 1
                && hosts
                    .iter()
                    .all(|o| o.cpu.cores == h.cpu.cores && o.cpu.host == h.cpu.host);
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
    }
    None
}

/// Rules 4-5: no CPU limit; the share of wire speed decides.
fn no_cpu_limit(percent_of_best: Option<f64>) -> Verdict {
    // 4. No CPU limit: the link, or something below the stack.
    match percent_of_best {
        Some(p) if p > 105.0 => verdict(
            "none-visible",
            None,
            None,
            "low",
            format!("goodput is {p:.0}% of the best the stated link speed allows, so that speed is no limit here (virtual NICs such as veth report a nominal one), and no CPU or interrupt limit is visible"),
            "declare the real link_speed in the plan, or shape the link",
        ),
        Some(p) if p >= 95.0 => verdict(
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
    fn all_lines_on_one_cpu() {
        let mut h = host(
            "controller",
            true,
            vec![core(0, 10.0, 10.0), core(1, 10.0, 10.0)],
        );
        h.irq.lines = vec![
            crate::metrics::irq::IrqDelta {
                irq: "24".into(),
                name: "eth1-rx".into(),
                per_cpu: vec![5000, 0],
                affinity: Some("0".into()),
            },
            crate::metrics::irq::IrqDelta {
                irq: "25".into(),
                name: "eth2-rx".into(),
                per_cpu: vec![7000, 10],
                affinity: Some("0".into()),
            },
        ];
        let v = diagnose(&[h], Some(70.0));
        assert_eq!(v.limit, "irq-concentration");
        assert_eq!(v.cpu, Some(0));
        assert!(v.message.contains("eth1-rx, eth2-rx"));
    }
}
