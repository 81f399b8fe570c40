//! Rules about the host under and beside the test: CPU the hypervisor
//! took (steal), CPU other processes took (co-tenants), and qemu's
//! emulation (TCG) when the guests' CPUs are this host's threads. Also
//! the noise figure a plan uses to mark and re-measure a point.

use super::{scope, verdict, HostFigures, Verdict, HOST_BUSY};
use serde::{Deserialize, Serialize};

/// Steal at or above this share of a path core: the hypervisor under the
/// host took enough CPU to be the limit.
pub const STEAL: f64 = 10.0;
/// And at or above this, the confidence is high (the run: 38 %).
const STEAL_HIGH: f64 = 25.0;
/// Co-tenant or emulation share of a saturated path core that limits the test.
const TENANT: f64 = 20.0;

/// The cores of `h` that are judged: the path's, or all when unknown.
fn judged(h: &HostFigures) -> Vec<&super::super::model::CoreShare> {
    let s = scope(h);
    h.cpu
        .per_core
        .iter()
        .filter(|c| s.as_ref().is_none_or(|s| s.contains(&c.cpu)))
        .collect()
}

/// Steal per judged core of the first host that shows it, as
/// (host, [(cpu, share)]); hosts of one machine show the same.
fn stolen(hosts: &[HostFigures]) -> Option<(&HostFigures, Vec<(usize, f64)>)> {
    hosts.iter().find_map(|h| {
        let v: Vec<(usize, f64)> = judged(h)
            .iter()
            .filter_map(|c| Some((c.cpu, c.share.steal?)))
            .collect();
        v.iter().any(|&(_, s)| s >= STEAL).then_some((h, v))
    })
}

fn shares(v: &[(usize, f64)]) -> String {
    v.iter()
        .map(|(c, s)| format!("CPU{c} {s:.1}%"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The hypervisor under the host took a path core's time.
pub(super) fn steal(hosts: &[HostFigures]) -> Option<Verdict> {
    let (h, v) = stolen(hosts)?;
    let (cpu, most) = v.iter().copied().max_by(|a, b| a.1.total_cmp(&b.1))?;
    Some(verdict(
        "steal",
        Some(&h.name),
        Some(cpu),
        if most >= STEAL_HIGH { "high" } else { "medium" },
        format!(
            "the hypervisor under {} took the CPUs the test ran on (steal: {}): this host is a virtual machine whose host was busy, and no figure of this run says what the network can do",
            h.name,
            shares(&v)
        ),
        "run again when the host is quiet (a plan re-measures noisy points: max_noisy_retries), or on dedicated CPUs",
    ))
}

/// A note for a verdict that is not `steal` when steal was seen.
pub(super) fn steal_note(hosts: &[HostFigures]) -> Option<String> {
    let (h, v) = stolen(hosts)?;
    Some(format!(
        "the hypervisor under {} took CPU time during the run (steal: {}): the figures are noisy",
        h.name,
        shares(&v)
    ))
}

/// The saturated path cores of the first host where others' processes
/// took at least [`TENANT`] percent, busiest first: co-tenants, or qemu's
/// emulation when `hypervisor`.
fn crowded(hosts: &[HostFigures], hypervisor: bool) -> Option<(&HostFigures, Vec<(usize, f64)>)> {
    hosts.iter().find_map(|h| {
        let t = h.cpu.tenants.as_ref()?;
        let mut v: Vec<(usize, f64)> = judged(h)
            .into_iter()
            .filter(|c| c.share.busy() >= HOST_BUSY)
            .filter_map(|c| {
                let o = t.on(c.cpu)?;
                let pct = if hypervisor {
                    o.hypervisor_percent
                } else {
                    o.co_tenant_percent
                };
                (pct >= TENANT).then_some((c.cpu, pct))
            })
            .collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1));
        (!v.is_empty()).then_some((h, v))
    })
}

/// `CPU1 (99%: sh (pid 5000, 99%))` for each crowded CPU.
fn crowd_words(h: &HostFigures, cpus: &[(usize, f64)], hypervisor: bool) -> String {
    let Some(t) = h.cpu.tenants.as_ref() else {
        return String::new();
    };
    cpus.iter()
        .map(|&(cpu, pct)| {
            let names = t.names_on(cpu, hypervisor);
            let who = if names.is_empty() {
                "many small processes".to_string()
            } else {
                names.join(", ")
            };
            format!("CPU{cpu} {pct:.0}% to {who}")
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Processes other than wirespeed took saturated path cores.
pub(super) fn co_tenant(hosts: &[HostFigures]) -> Option<Verdict> {
    let (h, cpus) = crowded(hosts, false)?;
    let (cpu, pct) = cpus[0];
    Some(verdict(
        "co-tenant",
        Some(&h.name),
        Some(cpu),
        if pct >= 50.0 { "high" } else { "medium" },
        format!(
            "the CPUs the test ran on were saturated by processes other than wirespeed on {}: {}",
            h.name,
            crowd_words(h, &cpus, false)
        ),
        "stop or move those processes (taskset), or pin the test to other CPUs; a plan re-measures noisy points (max_noisy_retries)",
    ))
}

/// qemu's threads took a saturated path core: under TCG they are the
/// guests' CPUs, so the emulation, not the controller, is the limit.
pub(super) fn emulation(hosts: &[HostFigures]) -> Option<Verdict> {
    let (h, cpus) = crowded(hosts, true)?;
    Some(verdict(
        "hypervisor-cpu",
        Some(&h.name),
        Some(cpus[0].0),
        "medium",
        format!(
            "the CPUs the test ran on were saturated by qemu on {}: {}; the guests' CPUs are emulated on this host (TCG without KVM), so the emulation is the limit, not {}",
            h.name,
            crowd_words(h, &cpus, true),
            h.name
        ),
        "use KVM (/dev/kvm) so the guests' CPUs are real, or give qemu CPUs the test does not use",
    ))
}

/// How much of the test's CPUs others took: the most any judged core lost
/// to steal, and to co-tenants (processes other than wirespeed, the
/// kernel's interrupt threads and qemu); None where not measured.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Noise {
    pub steal_percent: Option<f64>,
    pub co_tenant_percent: Option<f64>,
}

impl Noise {
    /// Whether either share reached `threshold` percent.
    pub fn over(&self, threshold: f64) -> bool {
        [self.steal_percent, self.co_tenant_percent]
            .iter()
            .flatten()
            .any(|&p| p >= threshold)
    }
}

/// The noise over all hosts of a run.
pub fn noise(hosts: &[HostFigures]) -> Noise {
    let max = |a: Option<f64>, b: f64| Some(a.map_or(b, |a| a.max(b)));
    let mut n = Noise::default();
    for h in hosts {
        let cores = judged(h);
        for c in &cores {
            if let Some(s) = c.share.steal {
                n.steal_percent = max(n.steal_percent, s);
            }
        }
        if let Some(t) = h
            .cpu
            .tenants
            .as_ref()
            .filter(|t| !t.source.starts_with("unavailable"))
        {
            for c in &cores {
                let o = t.on(c.cpu).map_or(0.0, |o| o.co_tenant_percent);
                n.co_tenant_percent = max(n.co_tenant_percent, o);
            }
        }
    }
    n
}
