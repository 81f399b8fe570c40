//! The Debian package: `scripts/package` builds the .deb from the binary
//! under test, dpkg installs it into a clean root (`dpkg --root`, running
//! its maintainer scripts there), and the test checks the files, verifies
//! the agent's unit with `systemd-analyze`, and runs the *installed*
//! binary's agent as the unit would: its ExecStart expanded with the
//! unit's and /etc/default/wirespeed's settings, as an unprivileged user
//! holding only the unit's capabilities, no new privileges. It serves a
//! kernel-socket test and a TCP-lite (AF_XDP) test, and without any one
//! of those capabilities TCP-lite is refused while the agent keeps serving.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;
use wirespeed::datapath::xdp::loader::attached_program;
use wirespeed_tests::process::{run, AgentProc, Output};
use wirespeed_tests::testbed::{pair, sh, Testbed};
use wirespeed_tests::{bin, in_netns, require_root, workspace};

const UNIT: &str = "lib/systemd/system/wirespeed-agent.service";

/// The package built once and installed into a fresh root.
struct Installed {
    deb: PathBuf,
    root: PathBuf,
}

fn installed() -> &'static Installed {
    static I: OnceLock<Installed> = OnceLock::new();
    I.get_or_init(|| {
        require_root();
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("package");
        let _ = std::fs::remove_dir_all(&dir);
        let root = dir.join("root");
        for d in ["var/lib/dpkg/info", "var/lib/dpkg/updates", "var/log"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::write(root.join("var/lib/dpkg/status"), "").unwrap();
        // The unprivileged agent must reach the installed binary.
        sh(
            "chmod",
            &["0755", dir.to_str().unwrap(), root.to_str().unwrap()],
        )
        .unwrap();
        let mut c = Command::new(workspace().join("scripts/package"));
        c.arg("--bin").arg(bin()).arg("--out").arg(&dir);
        let out = run(c, Duration::from_secs(180)).ok();
        let deb = PathBuf::from(out.stdout.trim());
        assert!(deb.is_file(), "scripts/package printed {:?}", out.stdout);
        // A clean root has no libc6 to satisfy Depends (checked below);
        // the maintainer scripts run with DPKG_ROOT set instead of chroot.
        sh(
            "dpkg",
            &[
                &format!("--root={}", root.display()),
                "--force-script-chrootless",
                "--force-depends",
                "--log=/dev/null",
                "-i",
                deb.to_str().unwrap(),
            ],
        )
        .unwrap_or_else(|e| panic!("installing {}: {e}", deb.display()));
        Installed { deb, root }
    })
}

/// Every value of `key=` in a unit or environment file, in order.
fn values(text: &str, key: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix(key)?.strip_prefix('='))
        .map(|v| v.trim().to_string())
        .collect()
}

/// The unit's one value of `key`, or a panic naming it.
fn one(unit: &str, key: &str) -> String {
    match values(unit, key).as_slice() {
        [v] => v.clone(),
        v => panic!("the unit should set {key} once, not {v:?}"),
    }
}

fn unit_text(i: &Installed) -> String {
    std::fs::read_to_string(i.root.join(UNIT)).expect("the unit is installed")
}

#[test]
fn package_installs_files_and_a_verified_hardened_unit() {
    let i = installed();
    let name = i.deb.file_name().unwrap().to_str().unwrap();
    assert_eq!(name, format!("wirespeed_{}_amd64.deb", wirespeed::VERSION));
    let info = sh("dpkg-deb", &["-f", i.deb.to_str().unwrap(), "Depends"]).unwrap();
    for lib in ["libc6", "libelf1", "zlib1g"] {
        assert!(info.contains(lib), "Depends lacks {lib}: {info}");
    }
    for f in [
        "usr/bin/wirespeed",
        "usr/share/man/man1/wirespeed.1.gz",
        "usr/share/man/man1/wirespeed-agent.1.gz",
        "usr/share/man/man1/wirespeed-run.1.gz",
        "usr/share/bash-completion/completions/wirespeed",
        "usr/share/zsh/vendor-completions/_wirespeed",
        "usr/share/fish/vendor_completions.d/wirespeed.fish",
        "usr/share/doc/wirespeed/copyright",
        "etc/default/wirespeed",
        UNIT,
    ] {
        let p = i.root.join(f);
        assert!(
            p.metadata().is_ok_and(|m| m.len() > 0),
            "{f} missing or empty"
        );
    }
    // postinst made the key, readable by root only.
    use std::os::unix::fs::PermissionsExt;
    let key = i
        .root
        .join("etc/wirespeed/psk")
        .metadata()
        .expect("the key");
    assert_eq!(key.permissions().mode() & 0o777, 0o600);
    let bash = std::fs::read_to_string(
        i.root
            .join("usr/share/bash-completion/completions/wirespeed"),
    )
    .unwrap();
    assert!(bash.contains("--max-streams") && bash.contains("completions"));
    let mut c = Command::new(i.root.join("usr/bin/wirespeed"));
    c.arg("--version");
    let version = run(c, Duration::from_secs(10)).ok();
    assert_eq!(
        version.stdout.trim(),
        format!("wirespeed {}", wirespeed::VERSION)
    );
    verify_unit(i);
    hardening(&unit_text(i));
}

/// `systemd-analyze verify` against the installed root: directives,
/// address families, the ExecStart binary and the man page it names.
fn verify_unit(i: &Installed) {
    let root = format!("--root={}", i.root.display());
    let man = i.root.join("usr/share/man");
    let mut c = Command::new("systemd-analyze");
    c.args([
        "verify",
        &root,
        "--recursive-errors=no",
        "wirespeed-agent.service",
    ])
    .env("MANPATH", &man);
    let out = run(c, Duration::from_secs(60));
    assert!(
        out.status.success() && out.stderr.trim().is_empty(),
        "systemd-analyze verify: {}\n{}",
        out.stdout,
        out.stderr
    );
    let mut c = Command::new("systemd-analyze");
    c.args([
        "security",
        "--offline=true",
        &root,
        "wirespeed-agent.service",
    ]);
    let out = run(c, Duration::from_secs(60));
    let text = format!("{}{}", out.stdout, out.stderr);
    let level: f64 = text
        .split("Overall exposure level for wirespeed-agent.service: ")
        .nth(1)
        .and_then(|t| t.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{text}"));
    println!("systemd-analyze security: exposure {level}");
    assert!(level <= 3.0, "exposure {level} is above 3.0 (OK):\n{text}");
}

/// What the unit promises, checked directive by directive.
fn hardening(unit: &str) {
    for (k, v) in [
        ("DynamicUser", "yes"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("LimitMEMLOCK", "infinity"),
        ("EnvironmentFile", "-/etc/default/wirespeed"),
    ] {
        assert_eq!(one(unit, k), v, "{k}");
    }
    assert_eq!(
        one(unit, "AmbientCapabilities"),
        one(unit, "CapabilityBoundingSet")
    );
    let families = one(unit, "RestrictAddressFamilies");
    for af in ["AF_XDP", "AF_NETLINK", "AF_INET", "AF_INET6", "AF_UNIX"] {
        assert!(
            families.split(' ').any(|f| f == af),
            "{af} not in {families}"
        );
    }
    assert!(
        values(unit, "PrivateNetwork").is_empty(),
        "XDP needs the host's NICs"
    );
    assert!(
        values(unit, "User").is_empty(),
        "DynamicUser, not a fixed user"
    );
}

/// The unit's capabilities, as setpriv names them (`net_admin`).
fn unit_caps(unit: &str) -> Vec<String> {
    one(unit, "AmbientCapabilities")
        .split_whitespace()
        .map(|c| c.trim_start_matches("CAP_").to_ascii_lowercase())
        .collect()
}

/// ExecStart with `$VAR`, `${VAR}` and `%d` expanded as systemd does:
/// the unit's Environment=, then /etc/default/wirespeed, then `set`.
fn exec_start(i: &Installed, set: &[(&str, &str)], creds: &Path) -> Vec<String> {
    let unit = unit_text(i);
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    let assign = |env: &mut BTreeMap<String, String>, kv: &str| {
        if let Some((k, v)) = kv.split_once('=') {
            env.insert(k.into(), v.trim_matches('"').into());
        }
    };
    for line in values(&unit, "Environment") {
        line.split_whitespace().for_each(|kv| assign(&mut env, kv));
    }
    let defaults = std::fs::read_to_string(i.root.join("etc/default/wirespeed")).unwrap();
    defaults
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .for_each(|l| assign(&mut env, l.trim()));
    for (k, v) in set {
        env.insert((*k).into(), (*v).into());
    }
    let mut argv = Vec::new();
    for word in one(&unit, "ExecStart").split_whitespace() {
        if let Some(var) = word.strip_prefix('$').filter(|w| !w.starts_with('{')) {
            argv.extend(env[var].split_whitespace().map(String::from));
            continue;
        }
        let mut w = word.replace("%d", creds.to_str().unwrap());
        for (k, v) in &env {
            w = w.replace(&format!("${{{k}}}"), v);
        }
        assert!(!w.contains('$'), "{word}: unset variable");
        argv.push(w);
    }
    argv[0] = i
        .root
        .join(argv[0].trim_start_matches('/'))
        .display()
        .to_string();
    argv
}

/// LoadCredential's stand-in: the key copied into a directory the
/// service's user owns, as systemd hands it over.
struct Creds(PathBuf);

impl Creds {
    fn new(i: &Installed) -> Creds {
        let d = std::env::temp_dir().join(format!("wirespeed-pkg-creds-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::copy(i.root.join("etc/wirespeed/psk"), d.join("psk")).unwrap();
        let p = d.to_str().unwrap();
        sh("chown", &["-R", "nobody:nogroup", p]).unwrap();
        sh("chmod", &["0500", p]).unwrap();
        Creds(d)
    }
}

impl Drop for Creds {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The installed agent as the unit runs it, with capabilities `caps`:
/// `nobody` with those ambient and bounding, no new privileges, and
/// LimitMEMLOCK=infinity where this host lets root raise the limit. Where
/// it cannot (a container without CAP_SYS_RESOURCE, as on this project's
/// CI machines), CAP_IPC_LOCK stands in for the unlimited memlock: the
/// kernel then does not charge AF_XDP's UMEM to the limit.
fn agent(i: &Installed, tb: &Testbed, caps: &[String], creds: &Creds) -> AgentProc {
    let mut probe = Command::new("prlimit");
    probe.args(["--memlock=unlimited:unlimited", "true"]);
    let unlimited = run(probe, Duration::from_secs(10)).status.success();
    let mut caps = caps.to_vec();
    if !unlimited {
        println!(
            "memlock limit cannot be raised here: CAP_IPC_LOCK stands in for LimitMEMLOCK=infinity"
        );
        caps.push("ipc_lock".into());
    }
    let set = format!("-all,+{}", caps.join(",+"));
    let listen = format!("{}:5290", tb.links[0].v4[1]);
    let opts = format!("--allow-iface {}", tb.links[0].ifname[1]);
    let argv = exec_start(
        i,
        &[("WIRESPEED_LISTEN", &listen), ("WIRESPEED_OPTS", &opts)],
        &creds.0,
    );
    let mut c = tb.cmd(1, Path::new("prlimit"));
    if unlimited {
        c.arg("--memlock=unlimited:unlimited");
    }
    c.args([
        "--",
        "setpriv",
        "--reuid=nobody",
        "--regid=nogroup",
        "--clear-groups",
    ])
    .arg(format!("--inh-caps={set}"))
    .arg(format!("--ambient-caps={set}"))
    .arg(format!("--bounding-set={set}"))
    .arg("--no-new-privs")
    .args(&argv);
    AgentProc::start(c)
}

/// The capability mask /proc/PID/status shows for these names.
fn mask(caps: &[String]) -> u64 {
    let bit = |c: &str| match c {
        "net_admin" => 12,
        "net_raw" => 13,
        "ipc_lock" => 14,
        "sys_nice" => 23,
        "perfmon" => 38,
        "bpf" => 39,
        c => panic!("unexpected capability {c}"),
    };
    caps.iter().fold(0, |m, c| m | 1u64 << bit(c))
}

/// The agent runs as nobody with exactly `caps` and no new privileges.
fn check_process(a: &AgentProc, caps: &[String]) {
    let status = std::fs::read_to_string(format!("/proc/{}/status", a.pid())).unwrap();
    let field = |k: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .unwrap_or_else(|| panic!("{k} not in status"))
            .trim()
            .to_string()
    };
    assert_eq!(field("Uid:").split_whitespace().next(), Some("65534"));
    assert_eq!(field("NoNewPrivs:"), "1");
    let want = mask(caps);
    let have_ipc = u64::from_str_radix(&field("CapEff:"), 16).unwrap() & (1 << 14);
    for k in ["CapEff:", "CapAmb:", "CapBnd:"] {
        let got = u64::from_str_radix(&field(k), 16).unwrap();
        assert_eq!(got & !(1 << 14), want, "{k} {got:x}");
        assert_eq!(got & (1 << 14), have_ipc, "{k}");
    }
}

fn client(i: &Installed, tb: &Testbed, a: &AgentProc, args: &[&str]) -> Output {
    let mut c = tb.cmd(0, &i.root.join("usr/bin/wirespeed"));
    c.args(["run", "--to", &a.addr, "--psk-file"])
        .arg(i.root.join("etc/wirespeed/psk"))
        .args(["--bytes", "8M", "--interval", "0", "--json"])
        .args(["--remote-iface", &tb.links[0].ifname[1]])
        .args(args);
    run(c, Duration::from_secs(60))
}

fn exact(j: &serde_json::Value, what: &str) {
    let end = &j["end"];
    assert_eq!(
        end["errors"].as_array().map(Vec::len),
        Some(0),
        "{what}: {end}"
    );
    for d in end["directions"].as_array().unwrap() {
        assert_eq!(d["sent"]["bytes"], 8 << 20, "{what}: {d}");
        assert_eq!(d["received"]["bytes"], 8 << 20, "{what}: {d}");
    }
}

#[test]
fn installed_agent_serves_sockets_and_tcplite_with_the_units_capabilities_only() {
    let i = installed();
    let tb = pair();
    // The controller runs kernel TCP against TCP-lite: its veth must fill
    // in its own checksums.
    let dev = &tb.links[0].ifname[0];
    sh(
        "ip",
        &["netns", "exec", tb.ns(0), "ethtool", "-K", dev, "tx", "off"],
    )
    .unwrap();
    let caps = unit_caps(&unit_text(i));
    let creds = Creds::new(i);
    let mut a = agent(i, &tb, &caps, &creds);
    check_process(&a, &caps);
    let j = client(i, &tb, &a, &["--mode", "socket", "--remote-mode", "socket"])
        .ok()
        .json();
    exact(&j, "sockets");
    assert_eq!(j["end"]["remote_mode"], "socket");
    for dir in ["send", "receive"] {
        let args = [
            "--mode",
            "socket",
            "--remote-mode",
            "xdp",
            "--direction",
            dir,
        ];
        let j = client(i, &tb, &a, &args).ok().json();
        exact(&j, &format!("TCP-lite {dir}"));
        assert_eq!(j["end"]["remote_mode"], "xdp-copy", "{dir}");
    }
    a.assert_alive();
    drop(a);
    let iface = &tb.links[0].ifname[1];
    let left = in_netns(tb.ns(1), || attached_program(iface));
    assert!(left.is_none(), "XDP left attached on {iface}");
    // Each capability is needed: without it TCP-lite is refused in one
    // line and the agent serves on.
    for drop_cap in &caps {
        let fewer: Vec<String> = caps.iter().filter(|c| *c != drop_cap).cloned().collect();
        let mut a = agent(i, &tb, &fewer, &creds);
        client(i, &tb, &a, &["--mode", "socket", "--remote-mode", "xdp"])
            .fails_with("agent refused the test");
        a.assert_alive();
        if drop_cap != "net_raw" {
            // SO_BINDTODEVICE needs only CAP_NET_RAW.
            exact(
                &client(i, &tb, &a, &["--remote-mode", "socket"]).ok().json(),
                drop_cap,
            );
        }
    }
}
