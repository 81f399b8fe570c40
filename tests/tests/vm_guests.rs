//! Real guests end to end: `vm-images/build` makes the guest image (cached
//! by a hash of its inputs), `vm-images/launch` boots two of them under
//! qemu (TCG here: nested KVM does not boot guests on these machines), each
//! with its own tap and subnet in a namespace of the launcher's, and
//! `wirespeed plan` sweeps one and two guests, send and receive, from the
//! host side. Then nothing may be left: no qemu, no namespace, no tap.
//!
//! Needs root, qemu-system-x86 and the Debian archive (apt) for the kernel
//! package; scripts/test installs what is missing. Fails with the reason,
//! never skips.

use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;
use wirespeed_tests::vm::{image, is_qemu, nothing_left, qemu_pids, scratch, Launch};
use wirespeed_tests::{bin, require_root};

const GUESTS: usize = 2;

/// One launch at a time: both tests boot guests and build the image, which
/// a plain `cargo test` would otherwise run at once.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial_section() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

fn plan(dir: &Path) -> PathBuf {
    let mut s = String::from(
        "name = \"vm-e2e\"\n[defaults]\nduration = \"2s\"\nmsg_size = \"8K\"\nsockbuf = \"64K\"\n\
         mode = \"auto\"\ndirections = [\"send\", \"receive\"]\nlink_speed = \"1G\"\n\
         [sweep]\npairs = [1, 2]\n[[configurations]]\nname = \"vm-tcg\"\n\
         [[configurations]]\nname = \"vm-auto\"\nremote_mode = \"auto\"\n",
    );
    for k in 1..=GUESTS {
        s += &format!(
            "[[agents]]\nname = \"vm{k}\"\naddress = \"198.18.{}.2:5290\"\n",
            10 + k
        );
    }
    for conf in ["vm-tcg", "vm-auto"] {
        for k in 1..=GUESTS {
            s += &format!(
                "[[pairs]]\nname = \"tap{k}\"\nagent = \"vm{k}\"\nlocal = \"198.18.{}.1\"\niface = \"tap{k}\"\nconfiguration = \"{conf}\"\n",
                10 + k
            );
        }
    }
    let p = dir.join("plan.toml");
    std::fs::write(&p, s).unwrap();
    p
}

#[test]
fn two_guests_sweep_send_and_receive_then_nothing_left() {
    require_root();
    let _one = serial_section();
    let dir = scratch("");
    let agent = bin();
    let image = image(&[]);

    // Boot two guests and run the sweep from the host side.
    let netns = format!("wsvm-t{}", std::process::id());
    let logs = dir.join("logs");
    let json = dir.join("results.json");
    let plan = plan(&dir);
    let mut launch = Launch::start(
        &image,
        (&netns, &logs),
        &[
            "-n",
            &GUESTS.to_string(),
            "--mem",
            "256M",
            "--timeout",
            "300",
        ],
        &[
            agent.as_os_str(),
            "plan".as_ref(),
            plan.as_os_str(),
            "--json".as_ref(),
            json.as_os_str(),
            "--quiet".as_ref(),
        ],
    );
    let (ok, stdout, stderr) = launch.wait(Duration::from_secs(600));
    let serial = |k: usize| {
        std::fs::read_to_string(logs.join(format!("vm{k}.serial.log"))).unwrap_or_default()
    };
    assert!(
        ok,
        "the launch or the plan failed:\n{stderr}\n{stdout}\nvm1 serial:\n{}",
        serial(1)
    );
    eprintln!("{stderr}\n{stdout}");
    let accel = stderr
        .lines()
        .find_map(|l| l.split("accelerator: ").nth(1))
        .unwrap_or_else(|| panic!("the launcher did not say which accelerator ran:\n{stderr}"));
    assert!(
        accel.starts_with("tcg") || accel.starts_with("kvm"),
        "{accel}"
    );
    for k in 1..=GUESTS {
        let s = serial(k);
        assert!(
            s.contains(&format!("addr 198.18.{}.2/24 up", 10 + k)),
            "vm{k} serial log does not show its NIC up:\n{s}"
        );
        assert!(s.contains("driver virtio_net"), "vm{k}: {s}");
        assert!(s.contains("listening on"), "vm{k}: {s}");
        // The agent (routes, neighbours, XDP) runs with no `ip` in the guest.
        assert!(s.contains("no ip in the guest"), "vm{k}: {s}");
    }

    // The results: every guest present, bytes equal on both sides, both
    // ends' modes reported: kernel sockets in the guests when asked, and
    // TCP-lite when the guests pick (virtio_net runs XDP natively).
    let j: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(j["schema"], "wirespeed.plan/1");
    let points = j["points"].as_array().unwrap();
    let shape: Vec<(String, String, u64)> = points
        .iter()
        .map(|p| {
            (
                p["configuration"].as_str().unwrap().to_string(),
                p["direction"].as_str().unwrap().to_string(),
                p["pairs"].as_u64().unwrap(),
            )
        })
        .collect();
    let want: Vec<(String, String, u64)> = ["vm-tcg", "vm-auto"]
        .iter()
        .flat_map(|c| {
            [("send", 1), ("send", 2), ("receive", 1), ("receive", 2)]
                .map(|(d, n)| (c.to_string(), d.to_string(), n))
        })
        .collect();
    assert_eq!(shape, want);
    for p in points {
        let n = p["pairs"].as_u64().unwrap() as usize;
        assert!(p["error"].is_null(), "{}", p["error"]);
        let auto = p["configuration"] == "vm-auto";
        let rep = &p["repetitions"][0];
        let pairs = rep["pairs"].as_array().unwrap();
        assert_eq!(pairs.len(), n, "every pair present: {rep}");
        let mut guests = BTreeSet::new();
        for x in pairs {
            let run = &x["run"];
            let end = &run["end"];
            assert_eq!(end["mode"], "socket", "{end}");
            let (remote, why) = (
                run["config"]["remote_mode"].as_str().unwrap_or_default(),
                run["config"]["remote_mode_reason"]
                    .as_str()
                    .unwrap_or_default(),
            );
            if auto {
                assert!(
                    remote.starts_with("xdp-") && why.starts_with("auto: eth0 (virtio_net)"),
                    "the guest's auto pick: {remote} ({why})"
                );
            } else {
                assert_eq!(remote, "socket", "{why}");
            }
            assert!(
                run["config"]["mode_reason"]
                    .as_str()
                    .is_some_and(|r| r.starts_with("auto")),
                "{}",
                run["config"]
            );
            let sent = end["sent"]["bytes"].as_u64().unwrap();
            assert!(sent > 0, "{end}");
            assert_eq!(end["sent"]["bytes"], end["received"]["bytes"], "{end}");
            assert!(end["errors"].as_array().unwrap().is_empty(), "{end}");
            guests.insert(end["remote_host"]["hostname"].as_str().unwrap().to_string());
        }
        let want: BTreeSet<String> = (1..=n).map(|k| format!("vm{k}")).collect();
        assert_eq!(guests, want, "each pair ran against its own guest");
        assert_eq!(rep["hosts"].as_array().unwrap().len(), n + 1);
    }

    // Nothing left: the launcher stopped its qemu processes and removed its
    // namespace, and with it the taps.
    let pids = qemu_pids(&logs);
    assert_eq!(pids.len(), GUESTS, "guests.txt lists every guest's qemu");
    for pid in pids {
        assert!(!is_qemu(pid), "qemu pid {pid} is still running");
    }
    nothing_left(&netns, &logs);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A guest whose agent does not answer in time: the launcher names the
/// guest, the address and the wait, shows the end of its serial log and
/// keeps it, exits non-zero without running the command, and leaves
/// nothing running.
#[test]
fn a_guest_that_never_answers_is_named_and_torn_down() {
    require_root();
    let _one = serial_section();
    let dir = scratch("-late");
    let image = image(&[]);
    let netns = format!("wsvm-l{}", std::process::id());
    let logs = dir.join("logs");
    let ran = dir.join("command-ran");
    // Under TCG the guest needs several seconds to boot: 2 s is too short.
    let mut launch = Launch::start(
        &image,
        (&netns, &logs),
        &["-n", "1", "--accel", "tcg", "--timeout", "2"],
        &["touch".as_ref(), ran.as_os_str()],
    );
    let (ok, _, stderr) = launch.wait(Duration::from_secs(120));
    assert!(!ok, "the launch succeeded with a 2 s timeout:\n{stderr}");
    assert!(
        stderr.contains("guest vm1: no agent answered on 198.18.11.2:5290 within 2s (--timeout)"),
        "{stderr}"
    );
    assert!(stderr.contains("serial log"), "{stderr}");
    assert!(
        logs.join("vm1.serial.log").is_file(),
        "the serial log is kept"
    );
    assert!(!ran.exists(), "the command ran although no guest answered");
    nothing_left(&netns, &logs);
    let _ = std::fs::remove_dir_all(&dir);
}
