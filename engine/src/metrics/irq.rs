//! Where interrupt work lands: hard interrupts per CPU per line
//! (/proc/interrupts) with each line's smp_affinity, NET_RX/NET_TX softirqs
//! per CPU (/proc/softirqs), and the softnet backlog's drops and squeezes
//! (/proc/net/softnet_stat). The study's worst case, one CPU taking every
//! NIC interrupt, shows up here before anywhere else. Linux only; other
//! systems report nothing rather than zeros, and a file that cannot be read
//! is named in the report's `unavailable` with the reason.
//!
//! Parsed by hand: the `procfs` crate (0.18, used for /proc/stat in
//! [`super::cpu`]) has no reader for any of these files nor for
//! /proc/irq/N/smp_affinity_list, and each is a table of counters per CPU
//! that a few lines split.

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

/// The CPU numbers of a header line (`CPU0 CPU2 CPU3`): an offline CPU
/// has no column, so a column's position is not its CPU's number.
fn header_cpus(header: &str) -> Vec<usize> {
    header
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("CPU")?.parse().ok())
        .collect()
}

/// Spread the counts of the online CPUs' columns over a vector indexed by
/// CPU number (offline CPUs' slots are 0).
fn by_number(cpus: &[usize], columns: &[u64]) -> Vec<u64> {
    let mut v = vec![0; cpus.iter().max().map_or(0, |m| m + 1)];
    for (&c, &x) in cpus.iter().zip(columns) {
        v[c] = x;
    }
    v
}

/// Parse /proc/interrupts: each line's counts indexed by CPU number.
pub fn parse_interrupts(text: &str) -> Vec<IrqLine> {
    let mut lines = text.lines();
    let cpus = lines.next().map(header_cpus).unwrap_or_default();
    let ncol = cpus.len();
    lines
        .filter_map(|l| {
            let (irq, rest) = l.split_once(':')?;
            let mut it = rest.split_whitespace().peekable();
            let mut cols = Vec::with_capacity(ncol);
            while cols.len() < ncol {
                match it.peek().and_then(|w| w.parse::<u64>().ok()) {
                    Some(v) => {
                        cols.push(v);
                        it.next();
                    }
                    None => break,
                }
            }
            let name = it.last().unwrap_or("").to_string();
            Some(IrqLine {
                irq: irq.trim().to_string(),
                name,
                per_cpu: by_number(&cpus, &cols),
            })
        })
        .collect()
}

/// Parse /proc/softirqs into (name, counts indexed by CPU number).
pub fn parse_softirqs(text: &str) -> Vec<(String, Vec<u64>)> {
    let mut lines = text.lines();
    let cpus = lines.next().map(header_cpus).unwrap_or_default();
    lines
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            let cols: Vec<u64> = rest
                .split_whitespace()
                .filter_map(|v| v.parse().ok())
                .collect();
            Some((name.trim().to_string(), by_number(&cpus, &cols)))
        })
        .collect()
}

/// The CPUs a /proc/interrupts or /proc/softirqs text has columns for.
pub fn online_columns(text: &str) -> Vec<usize> {
    text.lines().next().map(header_cpus).unwrap_or_default()
}

/// How far a counter moved. The kernel keeps per-CPU interrupt and
/// softirq counts in 32-bit `unsigned int`s, so a smaller later reading
/// of a value that fits 32 bits wrapped once; one above that cannot wrap
/// and a smaller reading means a reset (nothing to count).
pub fn counter_delta(after: u64, before: u64) -> u64 {
    if after >= before {
        after - before
    } else if before <= u64::from(u32::MAX) {
        after + (1u64 << 32) - before
    } else {
        0
    }
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

/// Parse /proc/net/softnet_stat (hex columns, one line per online CPU). The
/// CPU number is column 13 on kernels that print it (5.10 on: 13 columns,
/// 15 since 6.x); before that (11 columns) it is the line's position, which
/// is wrong only while a CPU below is offline.
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
    /// The CPUs /proc/interrupts had columns for (the online ones).
    online: Vec<usize>,
    /// And /proc/softirqs (every possible CPU).
    soft_online: Vec<usize>,
    /// The files that could not be read, with the reason.
    unavailable: Vec<String>,
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
    /// What could not be read (`/proc/interrupts: REASON`): the lists above
    /// are then empty for want of a reading, not because nothing happened.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unavailable: Vec<String>,
    /// The interfaces this end's flows used, their NICs' lines and the
    /// CPUs their work ran on: what the verdict judges. None when unknown
    /// (an older agent, another OS, a path that could not be resolved:
    /// `unavailable` says why).
    #[serde(default)]
    pub path: Option<super::irq_path::TestPath>,
}

impl IrqSnapshot {
    /// Read the counters now.
    #[cfg(target_os = "linux")]
    pub fn take() -> IrqSnapshot {
        let mut unavailable = Vec::new();
        let mut read = |p: &str| {
            std::fs::read_to_string(p).unwrap_or_else(|e| {
                unavailable.push(format!("{p}: {e}"));
                String::new()
            })
        };
        let interrupts = read("/proc/interrupts");
        let softirqs = read("/proc/softirqs");
        let softnet = parse_softnet(&read("/proc/net/softnet_stat"));
        IrqSnapshot {
            lines: parse_interrupts(&interrupts),
            softirqs: parse_softirqs(&softirqs),
            softnet,
            online: online_columns(&interrupts),
            soft_online: online_columns(&softirqs),
            unavailable,
        }
    }

    /// Nothing to read on other systems.
    #[cfg(not(target_os = "linux"))]
    pub fn take() -> IrqSnapshot {
        IrqSnapshot {
            unavailable: vec!["interrupt counters: Linux only".into()],
            ..Default::default()
        }
    }

    /// Counters as recorded from the three files' text (for tests and
    /// replays).
    pub fn from_text(interrupts: &str, softirqs: &str, softnet: &str) -> IrqSnapshot {
        IrqSnapshot {
            lines: parse_interrupts(interrupts),
            softirqs: parse_softirqs(softirqs),
            softnet: parse_softnet(softnet),
            online: online_columns(interrupts),
            soft_online: online_columns(softirqs),
            unavailable: Vec::new(),
        }
    }

    /// What changed between `self` (earlier) and `later`.
    pub fn report(&self, later: &IrqSnapshot) -> IrqReport {
        // Only CPUs online at both readings have a delta: one that came
        // online has totals since boot, one that went offline reads 0.
        let sub = |a: &[u64], b: &[u64], on: (&[usize], &[usize])| -> Vec<u64> {
            a.iter()
                .enumerate()
                .map(|(i, &x)| match b.get(i) {
                    Some(&y) if on.0.contains(&i) && on.1.contains(&i) => counter_delta(x, y),
                    _ => 0,
                })
                .collect()
        };
        let mut lines: Vec<IrqDelta> = later
            .lines
            .iter()
            .filter(|l| l.irq.chars().all(|c| c.is_ascii_digit()))
            .filter_map(|l| {
                let before = self.lines.iter().find(|b| b.irq == l.irq)?;
                let per_cpu = sub(&l.per_cpu, &before.per_cpu, (&self.online, &later.online));
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
                (Some(a), Some(b)) => sub(&a, &b, (&self.soft_online, &later.soft_online)),
                _ => Vec::new(),
            }
        };
        // A CPU without an earlier reading has no delta (its totals since
        // boot are not this test's).
        let softnet = later
            .softnet
            .iter()
            .filter_map(|a| {
                let b = self.softnet.iter().find(|b| b.cpu == a.cpu)?;
                Some(Softnet {
                    cpu: a.cpu,
                    processed: a.processed.saturating_sub(b.processed),
                    dropped: a.dropped.saturating_sub(b.dropped),
                    time_squeeze: a.time_squeeze.saturating_sub(b.time_squeeze),
                })
            })
            .collect();
        let mut unavailable = self.unavailable.clone();
        unavailable.extend(
            later
                .unavailable
                .iter()
                .filter(|u| !self.unavailable.contains(u))
                .cloned(),
        );
        IrqReport {
            lines,
            net_rx_softirqs: soft("NET_RX"),
            net_tx_softirqs: soft("NET_TX"),
            softnet,
            unavailable,
            path: None,
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

    /// One line per CPU in three layouts: 11 columns (before 5.10: the CPU
    /// is the line's position), 13 (5.10 on: column 13 is the CPU; CPU 1 is
    /// offline here) and 15 (6.x, recorded on this project's 6.18 guest).
    #[test]
    fn softnet_layouts() {
        let old = "0003ba2b 00000000 0000000f 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000\n00000010 00000002 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000\n";
        let v5 = "0000c53f 00000004 00000002 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000\n000000ff 00000000 00000001 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000002\n";
        let v6 = "00000052 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000\n0000383d 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000001 00000000 00000000\n";
        let pick = |t: &str| -> Vec<(usize, u64, u64, u64)> {
            parse_softnet(t)
                .iter()
                .map(|s| (s.cpu, s.processed, s.dropped, s.time_squeeze))
                .collect()
        };
        assert_eq!(pick(old), vec![(0, 0x3ba2b, 0, 15), (1, 16, 2, 0)]);
        assert_eq!(pick(v5), vec![(0, 0xc53f, 4, 2), (2, 255, 0, 1)]);
        assert_eq!(pick(v6), vec![(0, 0x52, 0, 0), (1, 0x383d, 0, 0)]);
    }

    #[test]
    fn unread_files_are_named_and_give_no_deltas() {
        let softnet = parse_softnet("00000010 00000001 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000\n");
        let unread = IrqSnapshot {
            unavailable: vec!["/proc/net/softnet_stat: Permission denied (os error 13)".into()],
            ..Default::default()
        };
        let read = IrqSnapshot {
            softnet,
            ..Default::default()
        };
        // Totals since boot are no test's delta.
        let r = unread.report(&read);
        assert!(r.softnet.is_empty(), "{r:?}");
        assert_eq!(
            r.unavailable,
            vec!["/proc/net/softnet_stat: Permission denied (os error 13)"]
        );
        assert_eq!(read.report(&unread).unavailable, r.unavailable);
        assert!(read.report(&read).unavailable.is_empty());
        assert_eq!(read.report(&read).softnet.len(), 1);
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn live_counters_are_read() {
        let a = IrqSnapshot::take();
        assert!(a.unavailable.is_empty(), "{:?}", a.unavailable);
        assert!(!a.softnet.is_empty() && !a.lines.is_empty());
        let r = a.report(&IrqSnapshot::take());
        assert!(!r.net_rx_softirqs.is_empty(), "{r:?}");
        assert_eq!(r.softnet.len(), a.softnet.len(), "{r:?}");
        assert!(r.unavailable.is_empty());
    }

    #[test]
    fn deltas_keep_lines_that_fired() {
        let a = IrqSnapshot::from_text(INTR, "", "");
        let b = IrqSnapshot::from_text(&INTR.replace("12345", "22345"), "", "");
        let r = a.report(&b);
        assert_eq!(r.lines.len(), 1);
        assert_eq!(r.lines[0].per_cpu, vec![10000, 0]);
        assert!(r.net_rx_softirqs.is_empty());
    }

    /// The kernel's per-CPU counts are 32-bit: 4294967290 then 10 is 16
    /// interrupts, not none (saturating) and not 2^64 of them.
    #[test]
    fn wrapped_32_bit_counters_count_across_the_wrap() {
        assert_eq!(counter_delta(10, 4_294_967_290), 16);
        assert_eq!(counter_delta(5, 3), 2);
        // Beyond 32 bits it cannot have wrapped: a reset, no count.
        assert_eq!(counter_delta(10, 1 << 40), 0);
        let before = "           CPU0       CPU1\n 24: 4294967000 7 PCI-MSI eth0-rx\n";
        let after = "           CPU0       CPU1\n 24: 704 7 PCI-MSI eth0-rx\n";
        let soft_b = "     CPU0       CPU1\n     NET_RX: 4294967295 1\n";
        let soft_a = "     CPU0       CPU1\n     NET_RX: 99 1\n";
        let r = IrqSnapshot::from_text(before, soft_b, "")
            .report(&IrqSnapshot::from_text(after, soft_a, ""));
        assert_eq!(r.lines[0].per_cpu, vec![1000, 0]);
        assert_eq!(r.net_rx_softirqs, vec![100, 0]);
    }

    /// With CPU1 offline /proc/interrupts has no CPU1 column: CPU2's
    /// counts stay CPU2's (slot 2), not CPU1's.
    #[test]
    fn offline_cpus_shift_no_columns() {
        let text = "           CPU0       CPU2       CPU3\n 24:  5  6  7  PCI-MSI 1-edge  eth0-rx\nNMI:  0  0  0  Non-maskable interrupts\n";
        let l = parse_interrupts(text);
        assert_eq!(l[0].per_cpu, vec![5, 0, 6, 7]);
        assert_eq!(l[0].name, "eth0-rx");
        assert_eq!(online_columns(text), vec![0, 2, 3]);
        // CPU2 went offline between the readings: no delta for it.
        let later = "           CPU0       CPU3\n 24:  9  8  PCI-MSI 1-edge  eth0-rx\n";
        let r = IrqSnapshot::from_text(text, "", "").report(&IrqSnapshot::from_text(later, "", ""));
        assert_eq!(r.lines[0].per_cpu, vec![4, 0, 0, 1]);
    }
}
