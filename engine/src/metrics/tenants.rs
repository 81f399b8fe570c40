//! Who else used the CPUs during a test: every task's user+system ticks
//! from /proc/PID/task/TID/stat (through the `procfs` crate) at the start
//! and the end, each task's delta put on the CPU it last ran on (the
//! `processor` field: exact for a pinned task, the likeliest CPU for one
//! the scheduler moves). Three kinds are kept apart:
//!
//! * wirespeed's own processes (this one, and agents, by name) are the test;
//! * the kernel's interrupt threads (`ksoftirqd/N`, `irq/N-…`) are already
//!   in the CPU's irq/softirq share, so they are not counted twice;
//! * `qemu-system-*` processes are the hypervisor: under TCG their threads
//!   are the guests' CPUs, emulated on this host's cores;
//!
//! and everything else is a co-tenant: CPU the test could not have.
//! Linux only; elsewhere the report says it is unavailable.

use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::Instant;

/// One task's cumulative CPU ticks at one reading.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskTimes {
    /// The process (thread group) and the task.
    pub pid: i32,
    pub tid: i32,
    /// The process's name (`comm` of the thread group leader).
    pub name: String,
    pub kind: Kind,
    /// utime + stime, in clock ticks.
    pub ticks: u64,
    /// The CPU it last ran on.
    pub cpu: Option<usize>,
}

/// What a task is to the test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub enum Kind {
    Wirespeed,
    InterruptThread,
    Hypervisor,
    CoTenant,
}

/// This process, as the tasks are told apart: its pid, and its name (a
/// copy of the binary renamed, `/tmp/ws-test`, is still wirespeed, and so
/// are the agents it starts from that copy).
#[derive(Clone, Debug)]
pub struct Own {
    pub pid: i32,
    pub comm: String,
}

impl Own {
    /// A recording's own process: `pid`, by the binary's usual name.
    pub fn recorded(pid: i32) -> Own {
        Own {
            pid,
            comm: "wirespeed".into(),
        }
    }

    #[cfg(target_os = "linux")]
    fn this() -> Own {
        let comm = std::fs::read_to_string("/proc/self/comm").unwrap_or_default();
        Own {
            pid: std::process::id() as i32,
            comm: comm.trim_end().to_string(),
        }
    }
}

/// Name a process's kind.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub fn kind_of(pid: i32, own: &Own, name: &str, kernel_thread: bool) -> Kind {
    if pid == own.pid || name == "wirespeed" || (!kernel_thread && name == own.comm) {
        Kind::Wirespeed
    } else if kernel_thread && (name.starts_with("ksoftirqd/") || name.starts_with("irq/")) {
        Kind::InterruptThread
    } else if name.starts_with("qemu-system") {
        Kind::Hypervisor
    } else {
        Kind::CoTenant
    }
}

/// Parse one task's stat line (`pid (comm) state ppid …`) of process
/// `pid` named `name`; None if it is not in that format.
#[cfg(target_os = "linux")]
pub fn parse_task(pid: i32, name: &str, own: &Own, stat: &str) -> Option<TaskTimes> {
    use procfs::FromRead;
    let s = procfs::process::Stat::from_read(stat.as_bytes()).ok()?;
    const PF_KTHREAD: u32 = 0x0020_0000;
    let kthread = s.flags & PF_KTHREAD != 0;
    // A kernel thread is its own process: its own name decides.
    let name = if kthread { &s.comm } else { name };
    Some(TaskTimes {
        pid,
        tid: s.pid,
        name: name.to_string(),
        kind: kind_of(pid, own, name, kthread),
        ticks: s.utime + s.stime,
        cpu: s.processor.and_then(|c| usize::try_from(c).ok()),
    })
}

/// Every task's times at one instant, or why they could not be read.
#[derive(Clone, Debug)]
pub struct TenantSnapshot {
    at: Instant,
    tasks: Result<Vec<TaskTimes>, String>,
    ticks_per_second: u64,
}

/// A [`TenantSnapshot`] read on a thread of its own: walking every task's
/// stat takes ~20 ms on a busy host, and a reading taken just before a
/// test's start instant must not push the start late. [`Self::get`] waits.
#[derive(Debug)]
pub struct PendingTenants {
    thread: Mutex<Option<JoinHandle<TenantSnapshot>>>,
    done: OnceLock<Option<TenantSnapshot>>,
}

/// How recent a reading a new one may share: one walk of every task serves
/// all the ends of a process that start (or end) together. 256 pairs over
/// 64 agents in one host's namespaces walked /proc 512 times at the start,
/// seconds of CPU that delayed the start messages themselves.
const SHARE_WITHIN: std::time::Duration = std::time::Duration::from_millis(100);

/// The process's latest reading and when it began.
static LATEST: Mutex<Option<(Instant, Arc<PendingTenants>)>> = Mutex::new(None);

impl PendingTenants {
    /// A reading begun now, or one this process began under
    /// [`SHARE_WITHIN`] ago.
    pub fn shared() -> Arc<PendingTenants> {
        let mut latest = LATEST.lock().unwrap_or_else(|p| p.into_inner());
        match &*latest {
            Some((at, p)) if at.elapsed() < SHARE_WITHIN => p.clone(),
            _ => {
                let p = Arc::new(PendingTenants::start());
                *latest = Some((Instant::now(), p.clone()));
                p
            }
        }
    }

    /// Start reading now (on this thread if no thread can be made).
    pub fn start() -> PendingTenants {
        let thread = std::thread::Builder::new()
            .name("tenants".into())
            .spawn(|| {
                yield_to_the_test();
                TenantSnapshot::take()
            });
        let (thread, done) = match thread {
            Ok(t) => (Some(t), OnceLock::new()),
            Err(_) => (None, OnceLock::from(Some(TenantSnapshot::take()))),
        };
        PendingTenants {
            thread: Mutex::new(thread),
            done,
        }
    }

    /// The snapshot, once read; None if its thread died.
    pub fn get(&self) -> Option<&TenantSnapshot> {
        self.done
            .get_or_init(|| {
                let t = self.thread.lock().ok()?.take()?;
                t.join().ok()
            })
            .as_ref()
    }
}

/// Lower this thread's priority (nice 10; Linux's nice is per thread): a
/// walk of every task must not take CPU from the ends about to start, nor
/// from the controller sending them the start, when many walk at once.
fn yield_to_the_test() {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority on the calling thread (who = 0), no pointers.
    unsafe {
        nix::libc::setpriority(nix::libc::PRIO_PROCESS, 0, 10);
    }
}

/// CPU used by others than the test on one CPU, in percent of that CPU.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TenantCpu {
    pub cpu: usize,
    pub co_tenant_percent: f64,
    /// qemu-system-* threads: the hypervisor under TCG.
    pub hypervisor_percent: f64,
}

/// One process other than the test's, by CPU used.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Tenant {
    pub pid: i32,
    pub name: String,
    /// Its threads' time in percent of one CPU.
    pub percent_of_core: f64,
    /// The CPUs its threads last ran on.
    pub cpus: Vec<usize>,
    pub hypervisor: bool,
}

/// Others' CPU use over a test on one host.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TenantReport {
    /// `/proc/PID/task/TID/stat`, or `unavailable: REASON`.
    pub source: String,
    /// Every CPU that others used, by number.
    pub per_cpu: Vec<TenantCpu>,
    /// The busiest few processes that are not the test's, busiest first.
    pub top: Vec<Tenant>,
}

/// Processes kept in a report's `top`.
const TOP: usize = 5;
/// A process under this share of a core is left out of `top`.
const TOP_FLOOR: f64 = 1.0;

impl TenantReport {
    /// The co-tenant share of `cpu`; None when not measured.
    pub fn on(&self, cpu: usize) -> Option<&TenantCpu> {
        self.per_cpu.iter().find(|c| c.cpu == cpu)
    }

    /// The top co-tenants (not the hypervisor) that ran on `cpu`, as
    /// `name (pid N, 98%)`.
    pub fn names_on(&self, cpu: usize, hypervisor: bool) -> Vec<String> {
        self.top
            .iter()
            .filter(|t| t.hypervisor == hypervisor && t.cpus.contains(&cpu))
            .map(|t| format!("{} (pid {}, {:.0}%)", t.name, t.pid, t.percent_of_core))
            .collect()
    }
}

impl TenantSnapshot {
    /// Read every task's times now.
    pub fn take() -> TenantSnapshot {
        TenantSnapshot {
            at: Instant::now(),
            tasks: read_tasks(),
            ticks_per_second: ticks_per_second(),
        }
    }

    /// Tasks as recorded: one `PID STATLINE` per line, PID the task's
    /// process (tests and replays). The process name is its leader's
    /// (the line whose task id is PID).
    #[cfg(target_os = "linux")]
    pub fn from_text(text: &str, at: Instant, ticks_per_second: u64, own: &Own) -> TenantSnapshot {
        let rows: Vec<(i32, &str)> = text
            .lines()
            .filter_map(|l| {
                let (pid, stat) = l.split_once(' ')?;
                Some((pid.parse().ok()?, stat))
            })
            .collect();
        let leader_name = |pid: i32| {
            rows.iter()
                .find(|(p, s)| *p == pid && s.split(' ').next() == Some(&pid.to_string()))
                .and_then(|(_, s)| Some(s[s.find('(')? + 1..s.rfind(')')?].to_string()))
                .unwrap_or_default()
        };
        let tasks = rows
            .iter()
            .filter_map(|&(pid, stat)| parse_task(pid, &leader_name(pid), own, stat))
            .collect();
        TenantSnapshot {
            at,
            tasks: Ok(tasks),
            ticks_per_second,
        }
    }

    /// Others' use between `self` (earlier) and `later`.
    pub fn report(&self, later: &TenantSnapshot) -> TenantReport {
        let (before, after) = match (&self.tasks, &later.tasks) {
            (Ok(b), Ok(a)) => (b, a),
            (Err(e), _) | (_, Err(e)) => {
                return TenantReport {
                    source: format!("unavailable: {e}"),
                    ..Default::default()
                }
            }
        };
        let seconds = later.at.duration_since(self.at).as_secs_f64();
        let tick_pct = 100.0 / (self.ticks_per_second.max(1) as f64 * seconds.max(1e-3));
        let mut per_cpu: Vec<TenantCpu> = Vec::new();
        let mut procs: Vec<Tenant> = Vec::new();
        for t in after
            .iter()
            .filter(|t| matches!(t.kind, Kind::CoTenant | Kind::Hypervisor))
        {
            // A task born during the test: all its time is the test's span.
            let was = before
                .iter()
                .find(|b| b.tid == t.tid && b.pid == t.pid)
                .map_or(0, |b| b.ticks);
            let pct = t.ticks.saturating_sub(was) as f64 * tick_pct;
            let (Some(cpu), true) = (t.cpu, pct > 0.0) else {
                continue;
            };
            let hyper = t.kind == Kind::Hypervisor;
            let i = per_cpu
                .iter()
                .position(|c| c.cpu == cpu)
                .unwrap_or_else(|| {
                    per_cpu.push(TenantCpu {
                        cpu,
                        ..Default::default()
                    });
                    per_cpu.len() - 1
                });
            let slot = &mut per_cpu[i];
            if hyper {
                slot.hypervisor_percent += pct;
            } else {
                slot.co_tenant_percent += pct;
            }
            let p = match procs.iter().position(|p| p.pid == t.pid) {
                Some(p) => p,
                None => {
                    procs.push(Tenant {
                        pid: t.pid,
                        name: t.name.clone(),
                        hypervisor: hyper,
                        ..Default::default()
                    });
                    procs.len() - 1
                }
            };
            procs[p].percent_of_core += pct;
            if !procs[p].cpus.contains(&cpu) {
                procs[p].cpus.push(cpu);
            }
        }
        // A tick is 10 ms: a CPU can read a little over 100 %.
        for c in &mut per_cpu {
            c.co_tenant_percent = c.co_tenant_percent.min(100.0);
            c.hypervisor_percent = c.hypervisor_percent.min(100.0);
        }
        per_cpu.sort_by_key(|c| c.cpu);
        procs.retain(|p| p.percent_of_core >= TOP_FLOOR);
        procs.sort_by(|a, b| b.percent_of_core.total_cmp(&a.percent_of_core));
        procs.truncate(TOP);
        for p in &mut procs {
            p.cpus.sort_unstable();
        }
        TenantReport {
            source: SOURCE.into(),
            per_cpu,
            top: procs,
        }
    }
}

const SOURCE: &str = "/proc/PID/task/TID/stat";

#[cfg(target_os = "linux")]
fn ticks_per_second() -> u64 {
    procfs::ticks_per_second()
}

#[cfg(not(target_os = "linux"))]
fn ticks_per_second() -> u64 {
    100
}

/// Every task of every process; processes and tasks that end while being
/// read are skipped (they are gone, not unreadable).
#[cfg(target_os = "linux")]
fn read_tasks() -> Result<Vec<TaskTimes>, String> {
    let own = Own::this();
    let all = procfs::process::all_processes().map_err(|e| format!("/proc: {e}"))?;
    let mut out = Vec::new();
    for p in all.flatten() {
        let Ok(stat) = p.stat() else { continue };
        let Ok(tasks) = p.tasks() else { continue };
        for t in tasks.flatten() {
            let Ok(s) = std::fs::read_to_string(format!("/proc/{}/task/{}/stat", p.pid, t.tid))
            else {
                continue;
            };
            out.extend(parse_task(p.pid, &stat.comm, &own, &s));
        }
    }
    Ok(out)
}

#[cfg(not(target_os = "linux"))]
fn read_tasks() -> Result<Vec<TaskTimes>, String> {
    Err("per-process CPU times: Linux only".into())
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::time::Duration;

    // Stat lines recorded on this project's 2-CPU guest (a user process's
    // and ksoftirqd/1's), times and CPUs set for the case, 2 s apart at
    // 100 ticks/s: a `sh` busy loop pinned to CPU1 (pid 5000), wirespeed
    // (pid 4000) sending, ksoftirqd/1 at work, a TCG qemu (pid 6000, two
    // vCPU threads) and an idle sshd.
    const BEFORE: &str = include_str!("testdata/tenants.before");
    const AFTER: &str = include_str!("testdata/tenants.after");

    fn report() -> TenantReport {
        let t = Instant::now();
        let own = Own::recorded(1);
        TenantSnapshot::from_text(BEFORE, t, 100, &own).report(&TenantSnapshot::from_text(
            AFTER,
            t + Duration::from_secs(2),
            100,
            &own,
        ))
    }

    #[test]
    fn a_pinned_hog_is_named_on_its_cpu() {
        let r = report();
        assert_eq!(r.source, SOURCE);
        let c1 = r.on(1).unwrap();
        assert!((c1.co_tenant_percent - 99.0).abs() < 1e-9, "{r:?}");
        assert_eq!(r.top[0].name, "sh");
        assert_eq!((r.top[0].pid, r.top[0].cpus.clone()), (5000, vec![1]));
        assert_eq!(r.names_on(1, false), vec!["sh (pid 5000, 99%)"]);
        // wirespeed's own time and ksoftirqd's are not co-tenants
        assert!(r
            .top
            .iter()
            .all(|t| t.name != "wirespeed" && !t.name.starts_with("ksoftirqd")));
    }

    #[test]
    fn qemu_threads_are_the_hypervisor() {
        let r = report();
        let q = r.top.iter().find(|t| t.name == "qemu-system-x86").unwrap();
        assert!(q.hypervisor, "{q:?}");
        // two vCPU threads, 60 and 40 ticks over 2 s, on CPU0 and CPU1
        assert!((q.percent_of_core - 50.0).abs() < 1e-9, "{q:?}");
        assert_eq!(q.cpus, vec![0, 1]);
        assert!((r.on(0).unwrap().hypervisor_percent - 30.0).abs() < 1e-9);
        assert_eq!(r.names_on(0, true), vec!["qemu-system-x86 (pid 6000, 50%)"]);
    }

    #[test]
    fn kinds() {
        let own = Own {
            pid: 7,
            comm: "ws-copy".into(),
        };
        assert_eq!(kind_of(7, &own, "e2e", false), Kind::Wirespeed);
        assert_eq!(kind_of(8, &own, "wirespeed", false), Kind::Wirespeed);
        // agents started from the same renamed copy
        assert_eq!(kind_of(8, &own, "ws-copy", false), Kind::Wirespeed);
        assert_eq!(kind_of(8, &own, "ws-copy", true), Kind::CoTenant);
        assert_eq!(kind_of(9, &own, "ksoftirqd/0", true), Kind::InterruptThread);
        assert_eq!(kind_of(9, &own, "ksoftirqd/0", false), Kind::CoTenant);
        assert_eq!(kind_of(9, &own, "qemu-system-x86", false), Kind::Hypervisor);
        assert_eq!(kind_of(9, &own, "kworker/1:0", true), Kind::CoTenant);
    }

    #[test]
    fn unreadable_is_named_not_zero() {
        let bad = TenantSnapshot {
            at: Instant::now(),
            tasks: Err("/proc: Permission denied".into()),
            ticks_per_second: 100,
        };
        let r = bad.report(&TenantSnapshot::take());
        assert_eq!(r.source, "unavailable: /proc: Permission denied");
        assert!(r.per_cpu.is_empty() && r.top.is_empty());
    }

    /// The live read finds this process's tasks, and counts them as the
    /// test's own.
    #[test]
    #[cfg(target_os = "linux")]
    fn live_read_sees_tasks() {
        let a = TenantSnapshot::take();
        let n = a.tasks.as_ref().map(Vec::len).unwrap_or(0);
        assert!(n > 1, "{:?}", a.tasks.as_ref().err());
        let own = std::process::id() as i32;
        let mine = a.tasks.as_ref().unwrap().iter().filter(|t| t.pid == own);
        assert!(mine.clone().count() >= 1);
        assert!(mine.into_iter().all(|t| t.kind == Kind::Wirespeed));
        let r = a.report(&TenantSnapshot::take());
        assert_eq!(r.source, SOURCE);
    }
}
