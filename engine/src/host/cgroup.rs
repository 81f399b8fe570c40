//! A CPU budget for a group of processes: the cgroup `cpu` controller's
//! quota (v1 `cpu.cfs_quota_us` under /sys/fs/cgroup/cpu, v2 `cpu.max`).
//! The demo's dom0 series gives its "driver domain" a fraction of one
//! core, as the study's uniprocessor dom0 had one slow CPU: a funnel onto
//! one modern core alone does not collapse (DESIGN.md, Facts).

use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// The quota's accounting period, in microseconds (the kernel's default).
const PERIOD_US: u64 = 100_000;

/// A cgroup with a CPU quota; removed on drop (once its processes ended).
pub struct CpuBudget {
    dir: PathBuf,
}

impl CpuBudget {
    /// A cgroup `name` allowed `share` of one core (0.15 = 15 %).
    pub fn new(name: &str, share: f64) -> Result<CpuBudget> {
        let quota = (share * PERIOD_US as f64).round() as u64;
        let (dir, files) = if Path::new("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").exists() {
            let d = Path::new("/sys/fs/cgroup/cpu").join(name);
            let f = vec![
                ("cpu.cfs_period_us", PERIOD_US.to_string()),
                ("cpu.cfs_quota_us", quota.to_string()),
            ];
            (d, f)
        } else if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
            let root = Path::new("/sys/fs/cgroup");
            // The cpu controller must be on in the parent for cpu.max to exist.
            let _ = std::fs::write(root.join("cgroup.subtree_control"), "+cpu");
            (
                root.join(name),
                vec![("cpu.max", format!("{quota} {PERIOD_US}"))],
            )
        } else {
            return Err(Error::Invalid(
                "no cgroup cpu controller (neither /sys/fs/cgroup/cpu nor cgroup v2): a CPU budget needs one".into(),
            ));
        };
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::io(format!("creating cgroup {}", dir.display()), e))?;
        let budget = CpuBudget { dir };
        for (file, value) in files {
            budget.write(file, &value)?;
        }
        Ok(budget)
    }

    /// The cgroup's name (its directory's).
    pub fn name(&self) -> &str {
        self.dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
    }

    /// Move process `pid` (all its threads) into the budget.
    pub fn add(&self, pid: u32) -> Result<()> {
        self.write("cgroup.procs", &pid.to_string())
    }

    fn write(&self, file: &str, value: &str) -> Result<()> {
        let p = self.dir.join(file);
        std::fs::write(&p, value)
            .map_err(|e| Error::io(format!("writing {value} to {}", p.display()), e))
    }
}

impl Drop for CpuBudget {
    fn drop(&mut self) {
        // Empty once its processes have exited; bounded wait for that.
        for _ in 0..50 {
            if std::fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

/// Remove budgets named `<prefix>-<pid>-...` whose owner process is gone.
pub fn sweep_stale(prefix: &str) {
    for root in ["/sys/fs/cgroup/cpu", "/sys/fs/cgroup"] {
        let Ok(d) = std::fs::read_dir(root) else {
            continue;
        };
        for e in d.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(rest) = name.strip_prefix(prefix).and_then(|r| r.strip_prefix('-')) else {
                continue;
            };
            let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
                continue;
            };
            if !Path::new(&format!("/proc/{pid}")).exists() {
                let _ = std::fs::remove_dir(e.path());
            }
        }
    }
}
