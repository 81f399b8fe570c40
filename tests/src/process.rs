//! Running the real binary: an agent as a child process with its log
//! captured, killed by pid on drop; and bounded runs of the controller.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// A running `wirespeed agent`.
pub struct AgentProc {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
    /// The address it said it listens on.
    pub addr: String,
}

impl AgentProc {
    /// Spawn `cmd` (an `agent` invocation) and wait for its listening line.
    pub fn start(mut cmd: Command) -> AgentProc {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawning the agent");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().expect("piped");
        let stderr = child.stderr.take().expect("piped");
        for (stream, tx) in [
            (Box::new(stdout) as Box<dyn Read + Send>, tx.clone()),
            (Box::new(stderr), tx),
        ] {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if let Some(a) = line.split("listening on ").nth(1) {
                        let _ = tx.send(a.split(' ').next().unwrap_or("").to_string());
                    }
                    log.lock().unwrap().push(line);
                }
            });
        }
        let mut agent = AgentProc {
            child,
            log,
            addr: String::new(),
        };
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(addr) => agent.addr = addr,
            Err(_) => panic!(
                "agent did not start listening within 20 s; its output:\n{}",
                agent.log_text()
            ),
        }
        agent
    }

    /// Everything the agent printed so far.
    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// How many log lines contain `needle`.
    pub fn count(&self, needle: &str) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    /// Wait until `n` log lines contain `needle`, up to `timeout`.
    pub fn wait_count(&self, needle: &str, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.count(needle) >= n {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Wait until the agent's log contains `needle`, up to `timeout`.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> bool {
        self.wait_count(needle, 1, timeout)
    }

    /// Panic if the agent process has exited.
    pub fn assert_alive(&mut self) {
        if let Ok(Some(st)) = self.child.try_wait() {
            panic!("the agent exited ({st}); its output:\n{}", self.log_text());
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for AgentProc {
    fn drop(&mut self) {
        terminate(&mut self.child);
    }
}

pub use wirespeed::testbed::{terminate, wait_bounded};

/// What a bounded command run produced.
#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// The stdout parsed as JSON, or a panic showing both streams.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }

    /// Panic with the output unless the command succeeded.
    pub fn ok(self) -> Output {
        assert!(
            self.status.success(),
            "command failed ({}):\nstdout:\n{}\nstderr:\n{}",
            self.status,
            self.stdout,
            self.stderr
        );
        self
    }

    /// Panic unless the command failed with `needle` in its stderr.
    pub fn fails_with(self, needle: &str) -> Output {
        assert!(
            !self.status.success(),
            "command should have failed:\nstdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        assert!(
            self.stderr.contains(needle),
            "stderr should say {needle:?}:\n{}",
            self.stderr
        );
        self
    }
}

/// Run `cmd` to completion, killing it after `timeout`.
pub fn run(mut cmd: Command, timeout: Duration) -> Output {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawning a command");
    let read = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            if let Some(mut r) = r {
                let _ = r.read_to_string(&mut s);
            }
            s
        })
    };
    let out = read(child.stdout.take().map(|s| Box::new(s) as _));
    let err = read(child.stderr.take().map(|s| Box::new(s) as _));
    let Some(status) = wait_bounded(&mut child, timeout) else {
        panic!(
            "{cmd:?} did not finish within {timeout:?}; stderr:\n{}",
            err.join().unwrap_or_default()
        );
    };
    Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}
