//! Where interrupt work lands: hard interrupts per CPU per line
//! (/proc/interrupts) with each line's smp_affinity, NET_RX/NET_TX softirqs
//! per CPU (/proc/softirqs), and the softnet backlog's drops and squeezes
//! (/proc/net/softnet_stat). The study's worst case, one CPU taking every
//! NIC interrupt, shows up here before anywhere else. Linux only; other
//! systems report nothing rather than zeros.

use serde::{Deserialize, Serialize};

/// One interrupt line's counts per CPU.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IrqLine {
    /// The number (`24`) or name (`NMI`) in the first column.
    pub irq: String,
    /// The device/handler name: the description's last word (`eth0-TxRx-0`).
    pub name: String,
    pub per_cpu: Vec<u64>,
}

/// Parse /proc/interrupts.
pub fn parse_interrupts(text: &str) -> Vec<IrqLine> {
    let mut lines = text.lines();
    let ncpu = lines.next().map_or(0, |h| h.split_whitespace().count());
    lines
        .filter_map(|l| {
            let (irq, rest) = l.split_once(':')?;
            let mut it = rest.split_whitespace().peekable();
            let mut per_cpu = Vec::with_capacity(ncpu);
            while per_cpu.len() < ncpu {
                match it.peek().and_then(|w| w.parse::<u64>().ok()) {
                    Some(v) => {
                        per_cpu.push(v);
                        it.next();
                    }
                    None => break,
                }
            }
            per_cpu.resize(ncpu, 0);
            let name = it.last().unwrap_or("").to_string();
            Some(IrqLine {
                irq: irq.trim().to_string(),
                name,
                per_cpu,
            })
        })
        .collect()
}

/// Parse /proc/softirqs into (name, per-CPU counts).
pub fn parse_softirqs(text: &str) -> Vec<(String, Vec<u64>)> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            Some((
                name.trim().to_string(),
                rest.split_whitespace()
                    .filter_map(|v| v.parse().ok())
                    .collect(),
            ))
        })
        .collect()
}

/// One CPU's softnet counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Softnet {
    pub cpu: usize,
    pub processed: u64,
    /// Packets dropped because the backlog queue was full.
    pub dropped: u64,
    /// Times NAPI ran out of budget or time with work left.
    pub time_squeeze: u64,
}

/// Parse /proc/net/softnet_stat (hex columns, one line per CPU; the CPU
/// number is column 13 on kernels that print it).
pub fn parse_softnet(text: &str) -> Vec<Softnet> {
    text.lines()
        .enumerate()
        .filter_map(|(i, l)| {
            let v: Vec<u64> = l
                .split_whitespace()
                .filter_map(|x| u64::from_str_radix(x, 16).ok())
                .collect();
            (v.len() >= 3).then(|| Softnet {
                cpu: v.get(12).map_or(i, |&c| c as usize),
                processed: v[0],
                dropped: v[1],
                time_squeeze: v[2],
            })
        })
        .collect()
}

/// Interrupt counters at one instant.
#[derive(Clone, Debug, Default)]
pub struct IrqSnapshot {
    lines: Vec<IrqLine>,
    softirqs: Vec<(String, Vec<u64>)>,
    softnet: Vec<Softnet>,
}

/// A line that fired during the test.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct IrqDelta {
    pub irq: String,
    pub name: String,
    pub per_cpu: Vec<u64>,
    /// /proc/irq/N/smp_affinity_list: the CPUs it may be delivered to.
    pub affinity: Option<String>,
}

/// Interrupt work over a test, on one host.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct IrqReport {
    /// Device interrupt lines that fired (numbered lines only; timers and
    /// IPIs are left out), busiest first.
    pub lines: Vec<IrqDelta>,
    /// NET_RX and NET_TX softirqs per CPU: on veth and with RPS this is
    /// where receive work runs, even with no hardware interrupt at all.
    pub net_rx_softirqs: Vec<u64>,
    pub net_tx_softirqs: Vec<u64>,
    pub softnet: Vec<Softnet>,
}

impl IrqSnapshot {
    /// Read the counters now (empty where unsupported).
    pub fn take() -> IrqSnapshot {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        IrqSnapshot {
            lines: parse_interrupts(&read("/proc/interrupts")),
            softirqs: parse_softirqs(&read("/proc/softirqs")),
            softnet: parse_softnet(&read("/proc/net/softnet_stat")),
        }
    }

    /// What changed between `self` (earlier) and `later`.
    pub fn report(&self, later: &IrqSnapshot) -> IrqReport {
        let sub = |a: &[u64], b: &[u64]| -> Vec<u64> {
            a.iter()
                .enumerate()
                .map(|(i, x)| x.saturating_sub(b.get(i).copied().unwrap_or(0)))
                .collect()
        };
        let mut lines: Vec<IrqDelta> = later
            .lines
            .iter()
            .filter(|l| l.irq.chars().all(|c| c.is_ascii_digit()))
            .filter_map(|l| {
                let before = self.lines.iter().find(|b| b.irq == l.irq)?;
                let per_cpu = sub(&l.per_cpu, &before.per_cpu);
                (per_cpu.iter().sum::<u64>() > 0).then(|| IrqDelta {
                    affinity: std::fs::read_to_string(format!(
                        "/proc/irq/{}/smp_affinity_list",
                        l.irq
                    ))
                    .ok()
                    .map(|s| s.trim().to_string()),
                    irq: l.irq.clone(),
                    name: l.name.clone(),
                    per_cpu,
                })
            })
            .collect();
        lines.sort_by_key(|l| std::cmp::Reverse(l.per_cpu.iter().sum::<u64>()));
        let soft = |name: &str| {
            let find = |s: &IrqSnapshot| {
                s.softirqs
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.clone())
            };
            match (find(later), find(self)) {
                (Some(a), Some(b)) => sub(&a, &b),
                _ => Vec::new(),
            }
        };
        let softnet = later
            .softnet
            .iter()
            .map(|a| {
                let b = self
                    .softnet
                    .iter()
                    .find(|b| b.cpu == a.cpu)
                    .copied()
                    .unwrap_or_default();
                Softnet {
                    cpu: a.cpu,
                    processed: a.processed.saturating_sub(b.processed),
                    dropped: a.dropped.saturating_sub(b.dropped),
                    time_squeeze: a.time_squeeze.saturating_sub(b.time_squeeze),
                }
            })
            .collect();
        IrqReport {
            lines,
            net_rx_softirqs: soft("NET_RX"),
            net_tx_softirqs: soft("NET_TX"),
            softnet,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTR: &str = "           CPU0       CPU1       \n  0:         26          0   IO-APIC   2-edge      timer\n 24:      12345        678   PCI-MSI 524288-edge      eth0-TxRx-0\nNMI:          0          0   Non-maskable interrupts\n";

    #[test]
    fn interrupts() {
        let l = parse_interrupts(INTR);
        assert_eq!(l.len(), 3);
        assert_eq!(l[1].irq, "24");
        assert_eq!(l[1].name, "eth0-TxRx-0");
        assert_eq!(l[1].per_cpu, vec![12345, 678]);
        assert_eq!(l[2].irq, "NMI");
    }

    #[test]
    fn softirqs_and_softnet() {
        let s = parse_softirqs(
            "                    CPU0       CPU1\n      NET_RX:        10         20\n",
        );
        assert_eq!(s, vec![("NET_RX".to_string(), vec![10, 20])]);
        let n = parse_softnet("0000000a 00000001 00000002 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000001 00000000\n");
        assert_eq!(
            n,
            vec![Softnet {
                cpu: 1,
                processed: 10,
                dropped: 1,
                time_squeeze: 2
            }]
        );
    }

    #[test]
    fn deltas_keep_lines_that_fired() {
        let a = IrqSnapshot {
            lines: parse_interrupts(INTR),
            ..Default::default()
        };
        let b = IrqSnapshot {
            lines: parse_interrupts(&INTR.replace("12345", "22345")),
            softirqs: vec![],
            softnet: vec![],
        };
        let r = a.report(&b);
        assert_eq!(r.lines.len(), 1);
        assert_eq!(r.lines[0].per_cpu, vec![10000, 0]);
        assert!(r.net_rx_softirqs.is_empty());
    }
}
