//! `wirespeed demo --guests N`: the `vm` and `vm-bypass` series on real
//! qemu guests (TCG here: nested KVM does not boot guests on these
//! machines), run as `demo --quick --guests 1 --series vm,vm-bypass` so the
//! host series (plans.rs runs them) do not double the time. Then nothing
//! may be left: no qemu, namespace or tap. Needs root, qemu-system-x86 and
//! the Debian archive (apt) for the guest kernel; fails with the reason,
//! never skips.

use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};
use wirespeed_tests::process::run;
use wirespeed_tests::vm::{processes_mentioning, scratch};
use wirespeed_tests::{bin, require_root};

fn demo(args: &[&str], out: &PathBuf, timeout: Duration) -> wirespeed_tests::process::Output {
    let mut c = Command::new(bin());
    c.arg("demo").args(args).arg("--out").arg(out);
    run(c, timeout)
}

#[test]
fn guest_series_run_on_qemu_guests_and_leave_nothing() {
    require_root();
    let dir = scratch("-demo");
    let t0 = Instant::now();
    let o = demo(
        &["--quick", "--guests", "1", "--series", "vm,vm-bypass"],
        &dir,
        Duration::from_secs(900),
    )
    .ok();
    println!(
        "demo --quick --guests 1 --series vm,vm-bypass took {:.0} s\n{}",
        t0.elapsed().as_secs_f64(),
        o.stdout
    );
    let accel = o
        .stdout
        .lines()
        .find_map(|l| l.split("accelerator: ").nth(1))
        .unwrap_or_else(|| panic!("the demo did not say which accelerator ran:\n{}", o.stdout));
    assert!(
        accel.starts_with("tcg (") || accel.starts_with("kvm ("),
        "{accel}"
    );
    assert!(
        o.stdout.contains("guest1 answers on 198.19.101.2:5290"),
        "{}",
        o.stdout
    );
    let serial = std::fs::read_to_string(dir.join("guests/guest1.serial.log")).unwrap();
    assert!(
        serial.contains("addr 198.19.101.2/24 via 198.19.101.1 up"),
        "the guest's NIC and its route through the router:\n{serial}"
    );

    let j: Value =
        serde_json::from_slice(&std::fs::read(dir.join("results.json")).unwrap()).unwrap();
    let pts = j["points"].as_array().unwrap();
    let shape: Vec<(&str, &str, u64)> = pts
        .iter()
        .map(|p| {
            (
                p["configuration"].as_str().unwrap(),
                p["direction"].as_str().unwrap(),
                p["pairs"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        shape,
        vec![
            ("vm", "send", 1),
            ("vm", "receive", 1),
            ("vm-bypass", "send", 1),
            ("vm-bypass", "receive", 1)
        ]
    );
    for p in pts {
        let conf = p["configuration"].as_str().unwrap();
        let what = format!("{conf} {}", p["direction"]);
        assert!(p["error"].is_null(), "{what}: {}", p["error"]);
        let best = p["percent_of_best"].as_f64().unwrap();
        assert!(best > 0.0 && best <= 101.0, "{what}: {best}% of best");
        println!(
            "{what}: {best:.1}% of best, verdict {}",
            p["verdict"]["limit"]
        );
        let pairs = p["repetitions"][0]["pairs"].as_array().unwrap();
        assert_eq!(pairs.len(), 1, "{what}");
        let pr = &pairs[0];
        assert!(pr["percent_of_best"].as_f64().is_some(), "{what}: {pr}");
        let end = &pr["run"]["end"];
        assert_eq!(end["remote_host"]["hostname"], "guest1", "{what}");
        for d in end["directions"].as_array().unwrap() {
            let sent = d["sent"]["bytes"].as_u64().unwrap();
            assert!(sent > 0, "{what}: {d}");
            assert_eq!(d["sent"]["bytes"], d["received"]["bytes"], "{what}: {d}");
        }
        // vm: both kernels' TCP; vm-bypass: TCP-lite on both ends, the
        // guest's on its virtio NIC.
        let (mode, remote) = (
            end["mode"].as_str().unwrap(),
            pr["run"]["config"]["remote_mode"]
                .as_str()
                .unwrap_or_default(),
        );
        if conf == "vm" {
            assert_eq!((mode, remote), ("socket", "socket"), "{what}");
        } else {
            assert!(
                mode.starts_with("xdp-") && remote.starts_with("xdp-"),
                "{what}: {mode}/{remote}"
            );
        }
    }
    for d in ["send", "receive"] {
        let texts = wirespeed_tests::svg_texts(&dir.join(format!("figures/throughput-{d}.svg")));
        for s in ["vm", "vm-bypass"] {
            assert!(
                texts.iter().any(|t| t == s),
                "no series {s} in the {d} figure: {texts:?}"
            );
        }
    }

    // Nothing left: the torn-down line, no qemu (its serial log is in the
    // output directory, so its command line names it), no namespace, no tap.
    assert!(o.stdout.contains(", guests stopped"), "{}", o.stdout);
    let pid = o
        .stdout
        .split("testbed torn down (wsdemo-")
        .nth(1)
        .and_then(|r| r.split('-').next())
        .expect("the torn-down line names the testbed")
        .to_string();
    let left = processes_mentioning(&dir.to_string_lossy());
    assert!(left.is_empty(), "processes left: {left:?}");
    let ns = wirespeed_tests::testbed::sh("ip", &["netns", "list"]).unwrap();
    assert!(!ns.contains(&format!("wsdemo-{pid}-")), "{ns}");
    let pid_hex = format!("wsg{:x}t", pid.parse::<u32>().unwrap());
    let links = wirespeed_tests::testbed::sh("ip", &["-o", "link"]).unwrap();
    assert!(!links.contains(&pid_hex), "{links}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Options that cannot apply are refused in one line, before anything is
/// built: guest series without guests, guests without a guest series, and
/// a vm-images directory that holds no scripts.
#[test]
fn guest_options_that_cannot_apply_are_refused() {
    require_root();
    let dir = scratch("-demo-refuse");
    for (args, why) in [
        (
            &["--series", "vm"][..],
            "--series vm and vm-bypass run on qemu guests: give --guests N",
        ),
        (
            &["--guests", "1", "--series", "native"][..],
            "--guests: the series chosen with --series run no guests",
        ),
        (&["--guests", "5"][..], "--guests must be between 1 and 4"),
        (&["--series", "vm,dom1"][..], "--series dom1: use native"),
        (
            &["--guests", "1", "--vm-images", "/nonexistent"][..],
            "--guests: /nonexistent holds no vm-images/build",
        ),
    ] {
        let o = demo(args, &dir, Duration::from_secs(30)).fails_with(why);
        assert_eq!(o.stderr.trim().lines().count(), 1, "{args:?}: {}", o.stderr);
        assert!(
            !o.stdout.contains("testbed"),
            "{args:?} built something: {}",
            o.stdout
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
