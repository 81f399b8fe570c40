//! The Windows build of the agent, run under Wine, against the Linux
//! controller over loopback: socket mode, send and receive.
//!
//! Needs `scripts/build-windows` (wirespeed.exe plus the bcryptprimitives.dll
//! shim in target/windows, or in `WIRESPEED_WINDOWS_DIR`) and the Linux
//! binary (`cargo build -p wirespeed-cli`, or `WIRESPEED_BIN`). Missing
//! pieces fail the test with what to do; it never skips.
//!
//! Every run gets a fresh WINEPREFIX in a temporary directory; the first
//! start of wine in it builds the prefix, which takes several seconds. The
//! agent is killed by pid, `wineserver -k` ends Wine's server and its helper
//! processes, and the directory is removed, also when an assertion fails.

use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use wirespeed_tests::process::{run, terminate, wait_bounded};
use wirespeed_tests::{bin, workspace};

/// How long the first wine start (prefix creation included) may take.
const AGENT_START: Duration = Duration::from_secs(120);
/// How long one 2 s controller run may take.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

fn windows_dir() -> PathBuf {
    let dir = std::env::var_os("WIRESPEED_WINDOWS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/windows"));
    for f in ["wirespeed.exe", "bcryptprimitives.dll"] {
        let p = dir.join(f);
        assert!(
            p.is_file(),
            "{} is missing: run scripts/build-windows first (or set WIRESPEED_WINDOWS_DIR)",
            p.display()
        );
    }
    dir
}

fn in_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The 64-bit wine loader: `wine64` on PATH, Debian's /usr/lib/wine/wine64
/// (not on PATH in Debian 12), or the `wine` wrapper.
fn wine() -> PathBuf {
    in_path("wine64")
        .or_else(|| Some(PathBuf::from("/usr/lib/wine/wine64")).filter(|p| p.is_file()))
        .or_else(|| in_path("wine"))
        .expect("no wine64 or wine found: install wine64 and wine (scripts/build-windows does)")
}

fn wineserver() -> PathBuf {
    in_path("wineserver")
        .or_else(|| {
            ["/usr/lib/wine/wineserver64", "/usr/lib/wine/wineserver"]
                .into_iter()
                .map(PathBuf::from)
                .find(|p| p.is_file())
        })
        .expect("no wineserver found: install wine64 and wine (scripts/build-windows does)")
}

/// A fresh WINEPREFIX in a unique temporary directory. On drop: `wineserver
/// -k` for this prefix (bounded), then the directory is removed.
struct WinePrefix {
    dir: PathBuf,
    prefix: PathBuf,
}

impl WinePrefix {
    fn new() -> WinePrefix {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir =
            std::env::temp_dir().join(format!("wirespeed-wine-{}-{nanos}", std::process::id()));
        std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        // wine creates the prefix itself (and insists on owning it)
        let prefix = dir.join("prefix");
        WinePrefix { dir, prefix }
    }

    /// `program` with this prefix's environment.
    fn command(&self, program: &Path) -> Command {
        let mut c = Command::new(program);
        c.env("WINEPREFIX", &self.prefix)
            .env("WINEDEBUG", "-all")
            .env("WINEDLLOVERRIDES", "bcryptprimitives=n,b")
            .env_remove("DISPLAY")
            .env_remove("WAYLAND_DISPLAY")
            .current_dir(&self.dir);
        if program.file_name().is_some_and(|n| n == "wine64") {
            // what Debian's `wine` wrapper sets when it runs wine64 itself
            c.env("WINELOADER", program);
        }
        c
    }
}

impl Drop for WinePrefix {
    fn drop(&mut self) {
        let mut c = self.command(&wineserver());
        c.arg("-k")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        match c.spawn() {
            Ok(mut child) => {
                if wait_bounded(&mut child, Duration::from_secs(15)).is_none() {
                    eprintln!("wine: wineserver -k did not finish within 15 s; killed it");
                }
            }
            Err(e) => eprintln!("wine: could not run wineserver -k: {e}"),
        }
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            eprintln!("wine: could not remove {}: {e}", self.dir.display());
        }
    }
}

/// The Windows agent under wine; killed by pid on drop (SIGTERM, then
/// SIGKILL after 3 s).
struct WineAgent {
    child: Child,
    log: Arc<Mutex<String>>,
}

impl WineAgent {
    fn start(prefix: &WinePrefix, exe: &Path, listen: SocketAddr) -> WineAgent {
        let mut c = prefix.command(&wine());
        c.arg(exe)
            .args(["agent", "--listen", &listen.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().unwrap_or_else(|e| panic!("spawning {c:?}: {e}"));
        let log = Arc::new(Mutex::new(String::new()));
        // Wine's helper processes inherit these pipes and may hold them open
        // until wineserver -k: the readers are never joined.
        let out: Box<dyn Read + Send> = Box::new(child.stdout.take().unwrap());
        let err: Box<dyn Read + Send> = Box::new(child.stderr.take().unwrap());
        for (tag, stream) in [("", out), ("stderr: ", err)] {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let mut l = log.lock().unwrap();
                    l.push_str(tag);
                    l.push_str(&line);
                    l.push('\n');
                }
            });
        }
        WineAgent { child, log }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Wait, at most `timeout`, until the agent says it is listening or its
    /// port accepts a connection; panic if it exits or the time runs out.
    fn wait_listening(&mut self, addr: SocketAddr, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut next_probe = Instant::now();
        loop {
            if self.log().lines().any(|l| l.contains("listening on")) {
                return;
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!(
                    "the Windows agent exited ({st}) before listening{}; its output:\n{}",
                    if st.code() == Some(53) {
                        " (53 = a DLL failed to load: is bcryptprimitives.dll beside wirespeed.exe?)"
                    } else {
                        ""
                    },
                    self.log()
                );
            }
            if Instant::now() >= next_probe {
                if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                    return;
                }
                next_probe = Instant::now() + Duration::from_millis(500);
            }
            if Instant::now() >= deadline {
                panic!("the Windows agent did not listen on {addr} within {timeout:?}; its output:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for WineAgent {
    fn drop(&mut self) {
        terminate(&mut self.child);
    }
}

/// A free loopback port (bound, read, released).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Run the Linux controller against `addr`; bounded; its JSON on success.
fn run_controller(bin: &Path, addr: SocketAddr, direction: &str, agent: &WineAgent) -> Value {
    let mut c = Command::new(bin);
    c.args([
        "run",
        "--to",
        &addr.to_string(),
        "--mode",
        "socket",
        "--direction",
        direction,
    ])
    .args(["--duration", "2s", "--json"]);
    let o = run(c, RUN_TIMEOUT);
    assert!(
        o.status.success(),
        "{direction}: the controller failed ({})\nstderr:\n{}\nagent:\n{}",
        o.status,
        o.stderr,
        agent.log()
    );
    o.json()
}

fn check(direction: &str, j: &Value) {
    let end = &j["end"];
    let errors = end["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("{direction}: no end.errors array: {end}"));
    assert!(
        errors.is_empty(),
        "{direction}: errors reported: {errors:?}\n{end}"
    );
    let sent = end["sent"]["bytes"]
        .as_u64()
        .unwrap_or_else(|| panic!("{direction}: no end.sent.bytes: {end}"));
    let received = end["received"]["bytes"]
        .as_u64()
        .unwrap_or_else(|| panic!("{direction}: no end.received.bytes: {end}"));
    assert!(sent > 0, "{direction}: nothing was sent: {end}");
    assert_eq!(
        sent, received,
        "{direction}: sender and receiver disagree: {end}"
    );
    assert_eq!(
        end["remote_host"]["os"], "windows",
        "{direction}: the agent is not the Windows build: {end}"
    );
    let dirs = end["directions"]
        .as_array()
        .unwrap_or_else(|| panic!("{direction}: no end.directions: {end}"));
    assert_eq!(dirs.len(), 1, "{direction}: {end}");
    assert_eq!(dirs[0]["direction"], direction, "{direction}: {end}");
    // what the Windows agent measured of itself
    let cpu = &end["cpu"]["remote"];
    assert_eq!(
        cpu["source"], "GetSystemTimes",
        "{direction}: remote cpu: {cpu}"
    );
    assert!(
        cpu["process"]["percent_of_core"]
            .as_f64()
            .is_some_and(|p| p > 0.0),
        "{direction}: remote cpu: {cpu}"
    );
    eprintln!(
        "wine: {direction}: {sent} bytes, {:.0} Mb/s; windows agent cpu {:.1} % of a core, host {:.1} % busy",
        end["received"]["bits_per_second"].as_f64().unwrap_or(0.0) / 1e6,
        cpu["process"]["percent_of_core"].as_f64().unwrap_or(0.0),
        100.0 - cpu["host"]["idle"].as_f64().unwrap_or(100.0),
    );
}

#[test]
fn windows_agent_under_wine_send_and_receive() {
    let win = windows_dir();
    let bin = bin();
    let exe = win.join("wirespeed.exe");

    // Dropped last: wineserver -k, then the directory goes.
    let prefix = WinePrefix::new();
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let t0 = Instant::now();
    let mut agent = WineAgent::start(&prefix, &exe, addr);
    agent.wait_listening(addr, AGENT_START);
    eprintln!(
        "wine: agent listening on {addr} after {:.1} s (fresh prefix {})",
        t0.elapsed().as_secs_f64(),
        prefix.prefix.display()
    );

    for direction in ["send", "receive"] {
        let t = Instant::now();
        let j = run_controller(&bin, addr, direction, &agent);
        check(direction, &j);
        eprintln!(
            "wine: {direction} run took {:.1} s",
            t.elapsed().as_secs_f64()
        );
    }
    if let Ok(Some(st)) = agent.child.try_wait() {
        panic!(
            "the Windows agent exited ({st}) during the tests; its output:\n{}",
            agent.log()
        );
    }
    eprintln!("wine: agent output:\n{}", agent.log());
}
