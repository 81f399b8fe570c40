//! A link emulator for kernels built without netem: a process in a middle
//! namespace bridges two veth ends at layer 2 and delays, drops,
//! duplicates and reorders the frames in between, as `tc qdisc netem`
//! would on a link. This module holds its decisions (pure, seeded, tested
//! here); `src/bin/linkem.rs` does the packet I/O; [`ImpairedPair`] builds
//! the three namespaces and runs it.

use crate::testbed::sh;
use std::collections::BinaryHeap;
use std::process::Child;
use std::time::Duration;
use wirespeed::testbed::{terminate, Testbed};

/// What the link does to each frame, in each direction.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Impairment {
    pub delay: Duration,
    /// Percentages, 0 to 100.
    pub loss: f64,
    pub duplicate: f64,
    pub reorder: f64,
    /// How much later than its turn a reordered frame leaves.
    pub reorder_by: Duration,
    pub seed: u64,
}

impl Impairment {
    /// The arguments `linkem` takes for this impairment.
    pub fn args(&self) -> Vec<String> {
        vec![
            format!("--delay-us={}", self.delay.as_micros()),
            format!("--loss={}", self.loss),
            format!("--duplicate={}", self.duplicate),
            format!("--reorder={}", self.reorder),
            format!("--reorder-by-us={}", self.reorder_by.as_micros()),
            format!("--seed={}", self.seed),
        ]
    }

    /// Parse what [`Impairment::args`] wrote.
    pub fn parse(args: &[String]) -> Result<Impairment, String> {
        let mut i = Impairment::default();
        for a in args {
            let (k, v) = a
                .strip_prefix("--")
                .and_then(|a| a.split_once('='))
                .ok_or_else(|| format!("{a:?}: expected --key=value"))?;
            let num = |v: &str| v.parse::<f64>().map_err(|_| format!("{k}={v:?}"));
            let us = |v: &str| {
                v.parse::<u64>()
                    .map(Duration::from_micros)
                    .map_err(|_| format!("{k}={v:?}"))
            };
            match k {
                "delay-us" => i.delay = us(v)?,
                "loss" => i.loss = num(v)?,
                "duplicate" => i.duplicate = num(v)?,
                "reorder" => i.reorder = num(v)?,
                "reorder-by-us" => i.reorder_by = us(v)?,
                "seed" => i.seed = v.parse().map_err(|_| format!("seed={v:?}"))?,
                _ => return Err(format!("unknown option --{k}")),
            }
        }
        for (name, p) in [
            ("loss", i.loss),
            ("duplicate", i.duplicate),
            ("reorder", i.reorder),
        ] {
            if !(0.0..=100.0).contains(&p) {
                return Err(format!("--{name}={p} is not a percentage"));
            }
        }
        Ok(i)
    }
}

/// xorshift64*: small, seeded, good enough to pick frames.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: f64) -> bool {
        percent > 0.0 && (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * 100.0 < percent
    }
}

/// What happened to the frames so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub seen: u64,
    pub dropped: u64,
    pub duplicated: u64,
    pub reordered: u64,
    /// Dropped because too many frames were in flight.
    pub overflow: u64,
}

/// A frame waiting for its time.
#[derive(Debug, PartialEq, Eq)]
struct Held {
    due_us: u64,
    seq: u64,
    out: usize,
    frame: Vec<u8>,
}

impl Ord for Held {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        // earliest first from a max-heap
        (o.due_us, o.seq).cmp(&(self.due_us, self.seq))
    }
}
impl PartialOrd for Held {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}

/// The delay line: frames in, frames out when due.
pub struct Line {
    imp: Impairment,
    rng: Rng,
    heap: BinaryHeap<Held>,
    seq: u64,
    cap: usize,
    pub counts: Counts,
}

impl Line {
    /// At most `cap` frames in flight; more are dropped and counted.
    pub fn new(imp: Impairment, cap: usize) -> Line {
        Line {
            rng: Rng::new(imp.seed),
            imp,
            heap: BinaryHeap::new(),
            seq: 0,
            cap,
            counts: Counts::default(),
        }
    }

    /// A frame arrived at `now_us`, to leave on port `out`.
    pub fn push(&mut self, now_us: u64, out: usize, frame: &[u8]) {
        self.counts.seen += 1;
        if self.rng.chance(self.imp.loss) {
            self.counts.dropped += 1;
            return;
        }
        let copies = if self.rng.chance(self.imp.duplicate) {
            self.counts.duplicated += 1;
            2
        } else {
            1
        };
        let mut due = now_us + self.imp.delay.as_micros() as u64;
        if self.rng.chance(self.imp.reorder) {
            self.counts.reordered += 1;
            due += self.imp.reorder_by.as_micros() as u64;
        }
        for _ in 0..copies {
            if self.heap.len() >= self.cap {
                self.counts.overflow += 1;
                return;
            }
            self.seq += 1;
            self.heap.push(Held {
                due_us: due,
                seq: self.seq,
                out,
                frame: frame.to_vec(),
            });
        }
    }

    /// The next frame due by `now_us`, with its port.
    pub fn pop_due(&mut self, now_us: u64) -> Option<(usize, Vec<u8>)> {
        if self.heap.peek()?.due_us > now_us {
            return None;
        }
        self.heap.pop().map(|h| (h.out, h.frame))
    }

    /// When the next frame is due.
    pub fn next_due(&self) -> Option<u64> {
        self.heap.peek().map(|h| h.due_us)
    }
}

/// Two hosts on one subnet (198.18.0.1 and .2, 2001:2::1 and ::2) whose
/// link runs through `linkem` in a third namespace. Offloads that would
/// hand the emulator frames larger than the MTU, or with checksums left
/// for hardware to fill in, are turned off on the hosts' ends.
pub struct ImpairedPair {
    pub tb: Testbed,
    /// The hosts' interface names: host 0's and host 1's.
    pub ifname: [String; 2],
    linkem: Child,
}

impl ImpairedPair {
    pub fn new(imp: Impairment) -> ImpairedPair {
        crate::require_root();
        // host 0 -- link 0 -- host 2 (middle) -- link 1 -- host 1
        let tb = Testbed::new("wsl", 3, &[(0, 2), (2, 1)])
            .unwrap_or_else(|e| panic!("building the testbed: {e}"));
        let h0 = tb.links[0].ifname[0].clone();
        let h1 = tb.links[1].ifname[1].clone();
        let m = [tb.links[0].ifname[1].clone(), tb.links[1].ifname[0].clone()];
        let run = |args: &[&str]| sh("ip", args).unwrap_or_else(|e| panic!("{e}"));
        let ethtool = |ns: &str, dev: &str, what: &[&str]| {
            let mut a = vec!["netns", "exec", ns, "ethtool", "-K", dev];
            a.extend_from_slice(what);
            run(&a);
        };
        for (h, dev, v4, v6) in [
            (0, &h0, "198.18.0.1/24", "2001:2::1/64"),
            (1, &h1, "198.18.0.2/24", "2001:2::2/64"),
        ] {
            let ns = tb.ns(h).to_string();
            run(&["-n", &ns, "addr", "flush", "dev", dev]);
            run(&["-n", &ns, "addr", "add", v4, "dev", dev]);
            run(&["-n", &ns, "-6", "addr", "add", v6, "dev", dev, "nodad"]);
            ethtool(&ns, dev, &["tx", "off", "tso", "off", "gso", "off"]);
        }
        let mid = tb.ns(2).to_string();
        for dev in &m {
            run(&["-n", &mid, "addr", "flush", "dev", dev]);
            ethtool(&mid, dev, &["gro", "off", "tx", "off"]);
        }
        let mut c = tb.cmd(2, &crate::workspace().join("target/debug/linkem"));
        c.args([&m[0], &m[1]]).args(imp.args());
        c.stdout(std::process::Stdio::null());
        let linkem = c.spawn().unwrap_or_else(|e| {
            panic!("starting linkem (build it: cargo build -p wirespeed-tests): {e}")
        });
        ImpairedPair {
            tb,
            ifname: [h0, h1],
            linkem,
        }
    }
}

impl Drop for ImpairedPair {
    fn drop(&mut self) {
        terminate(&mut self.linkem);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn imp(loss: f64, dup: f64, reorder: f64) -> Impairment {
        Impairment {
            delay: Duration::from_millis(5),
            loss,
            duplicate: dup,
            reorder,
            reorder_by: Duration::from_millis(1),
            seed: 7,
        }
    }

    #[test]
    fn args_round_trip() {
        let i = imp(1.0, 0.5, 2.0);
        assert_eq!(Impairment::parse(&i.args()), Ok(i));
        assert!(Impairment::parse(&["--loss=101".into()]).is_err());
        assert!(Impairment::parse(&["--nope=1".into()]).is_err());
        assert!(Impairment::parse(&["loss".into()]).is_err());
    }

    #[test]
    fn delay_holds_frames_until_due() {
        let mut l = Line::new(imp(0.0, 0.0, 0.0), 10);
        l.push(1000, 1, b"a");
        assert_eq!(l.pop_due(5999), None);
        assert_eq!(l.next_due(), Some(6000));
        assert_eq!(l.pop_due(6000), Some((1, b"a".to_vec())));
        assert_eq!(l.pop_due(10_000), None);
    }

    #[test]
    fn rates_are_near_what_was_asked() {
        let mut l = Line::new(imp(10.0, 5.0, 20.0), 1 << 20);
        for t in 0..100_000u64 {
            l.push(t, 0, b"x");
        }
        let c = l.counts;
        let near = |n: u64, pct: f64| (n as f64 - 1000.0 * pct).abs() < 1000.0 * pct * 0.1;
        assert!(near(c.dropped, 10.0), "{c:?}");
        assert!(near(c.duplicated, 5.0 * 0.9), "{c:?}");
        assert!(near(c.reordered, 20.0 * 0.9), "{c:?}");
        assert_eq!(c.overflow, 0);
    }

    #[test]
    fn reordered_frames_are_overtaken() {
        let mut l = Line::new(imp(0.0, 0.0, 50.0), 1000);
        for t in 0..100u64 {
            l.push(t * 10, 0, &t.to_be_bytes());
        }
        let mut out = Vec::new();
        while let Some((_, f)) = l.pop_due(u64::MAX) {
            out.push(u64::from_be_bytes(f.try_into().unwrap()));
        }
        assert_eq!(out.len(), 100);
        assert!(out.windows(2).any(|w| w[0] > w[1]), "some order changed");
        let mut sorted = out.clone();
        sorted.sort();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>());
    }

    #[test]
    fn overflow_is_counted_not_unbounded() {
        let mut l = Line::new(imp(0.0, 0.0, 0.0), 3);
        for t in 0..5 {
            l.push(t, 0, b"x");
        }
        assert_eq!(l.counts.overflow, 2);
    }
}
