//! Guests under `vm-images/launch` for the VM tests: the launcher as a
//! child that is always stopped, the image build (cached), and the checks
//! that nothing of a launch is left.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{bin, workspace};

/// The launcher as a child; on drop (a panic included) it is asked to stop
/// (SIGTERM: its trap stops its guests and removes its namespace), and
/// anything it listed that is still there is removed by pid and by name.
pub struct Launch {
    pub child: Option<Child>,
    pub netns: String,
    pub logs: PathBuf,
}

impl Launch {
    /// Start `vm-images/launch` with `args` (the guests' options) on
    /// `image`, in namespace `netns` with its logs in `logs`, running
    /// `command` once the guests answer.
    pub fn start<S: AsRef<std::ffi::OsStr>>(
        image: &Path,
        (netns, logs): (&str, &Path),
        args: &[&str],
        command: &[S],
    ) -> Launch {
        let mut c = Command::new("bash");
        c.arg(workspace().join("vm-images/launch"))
            .args(args)
            .arg("--image")
            .arg(image)
            .args(["--netns", netns])
            .arg("--logs")
            .arg(logs)
            .arg("--")
            .args(command)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        Launch {
            child: Some(c.spawn().expect("running vm-images/launch")),
            netns: netns.to_string(),
            logs: logs.to_path_buf(),
        }
    }

    /// Wait for the launcher (bounded): (success, stdout, stderr).
    pub fn wait(&mut self, timeout: Duration) -> (bool, String, String) {
        let mut child = self.child.take().expect("running");
        let mut out = child.stdout.take().unwrap();
        let mut err = child.stderr.take().unwrap();
        let o = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = out.read_to_string(&mut s);
            s
        });
        let e = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        });
        let start = Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break Some(s);
            }
            if start.elapsed() > timeout {
                stop(&mut child);
                break None;
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        let (o, e) = (o.join().unwrap(), e.join().unwrap());
        match status {
            None => panic!(
                "vm-images/launch did not finish within {timeout:?}; stderr:\n{e}\nguest logs: {}",
                self.logs.display()
            ),
            Some(s) => (s.success(), o, e),
        }
    }
}

/// SIGTERM, 30 s to clean up, then SIGKILL.
pub fn stop(child: &mut Child) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(30) {
        if child.try_wait().ok().flatten().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
}

impl Drop for Launch {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            stop(&mut c);
        }
        for pid in qemu_pids(&self.logs) {
            if is_qemu(pid) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        if netns_exists(&self.netns) {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.netns])
                .status();
        }
    }
}

/// The qemu pids the launcher recorded in LOGS/guests.txt.
pub fn qemu_pids(logs: &Path) -> Vec<i32> {
    std::fs::read_to_string(logs.join("guests.txt"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(" pid ").nth(1))
        .filter_map(|p| p.trim().parse().ok())
        .collect()
}

pub fn is_qemu(pid: i32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| String::from_utf8_lossy(&c).contains("qemu-system"))
        .unwrap_or(false)
}

pub fn netns_exists(name: &str) -> bool {
    Path::new("/var/run/netns").join(name).exists()
}

/// Processes whose command line mentions `needle` (our namespace or logs).
pub fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut v = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if !e
            .file_name()
            .to_string_lossy()
            .chars()
            .all(|c| c.is_ascii_digit())
        {
            continue;
        }
        if let Ok(c) = std::fs::read(e.path().join("cmdline")) {
            let c = String::from_utf8_lossy(&c).replace('\0', " ");
            if c.contains(needle) {
                v.push(format!("{}: {c}", e.file_name().to_string_lossy()));
            }
        }
    }
    v
}

/// The guest image: built once per set of inputs, then cached;
/// `args` go to vm-images/build (e.g. `--suite trixie-backports`).
pub fn image(args: &[&str]) -> PathBuf {
    let t = Instant::now();
    let o = crate::process::run(
        {
            let mut c = Command::new("bash");
            c.arg(workspace().join("vm-images/build"))
                .arg("--agent")
                .arg(bin())
                .arg("--print-dir")
                .args(args);
            c
        },
        Duration::from_secs(900),
    );
    assert!(
        o.status.success(),
        "vm-images/build failed (it needs root, apt for busybox-static, kmod, cpio, e2fsprogs, qemu-utils, and the Debian archive for the kernel package):\n{}",
        o.stderr
    );
    let image = PathBuf::from(o.stdout.trim());
    for f in ["vmlinuz", "initrd.img", "disk.qcow2", "manifest.txt"] {
        assert!(image.join(f).is_file(), "{} has no {f}", image.display());
    }
    eprintln!("image {} ready in {:?}", image.display(), t.elapsed());
    image
}

/// No qemu, namespace or tap of this launch is left, nor any process that
/// names its namespace or its logs.
pub fn nothing_left(netns: &str, logs: &Path) {
    assert!(!netns_exists(netns), "namespace {netns} is left behind");
    let left = processes_mentioning(netns);
    assert!(left.is_empty(), "processes left: {left:?}");
    let left = processes_mentioning(&logs.to_string_lossy());
    assert!(left.is_empty(), "processes left: {left:?}");
    let taps: Vec<String> = std::fs::read_dir("/sys/class/net")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with("tap") && n[3..].parse::<u32>().is_ok())
        .collect();
    assert!(taps.is_empty(), "taps left in the root namespace: {taps:?}");
}

/// A fresh scratch directory for one test.
pub fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ws-vm{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
