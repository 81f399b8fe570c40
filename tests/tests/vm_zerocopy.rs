//! Zero-copy AF_XDP where a real driver runs it: a guest with
//! trixie-backports' kernel (virtio_net has AF_XDP zero-copy from 6.13),
//! booted once by `vm-images/launch --zerocopy --smp 2 --queues 2` (a
//! virtio NIC with VIRTIO_F_ACCESS_PLATFORM and two queue pairs). From the
//! host side, in one boot: raw frames guest→host in zero-copy and in copy
//! mode (`--remote-xdp-bind`), raw frames host→guest, and TCP-lite in the
//! guest both ways against the host's kernel TCP. Then nothing may be left.
//!
//! Needs root, qemu-system-x86 and the Debian archive (apt) for the
//! kernel packages; fails with the reason, never skips.

use serde_json::Value;
use std::path::Path;
use std::time::Duration;
use wirespeed_tests::vm::{image, nothing_left, scratch, Launch};
use wirespeed_tests::{bin, require_root};

const BYTES: u64 = 16 << 20;

/// The commands the launcher runs in its namespace, one JSON file each
/// (stderr beside it); a failed command leaves its error, not a JSON.
fn script(dir: &Path) -> String {
    let w = bin().display().to_string();
    let raw = "--mode xdp --raw --iface tap1 --remote-iface eth0 --duration 2s --frame-size 1514";
    let tcp = format!(
        "--mode socket --remote-mode xdp --remote-iface eth0 --remote-xdp-bind zerocopy --bytes {BYTES} --streams 2 --verify"
    );
    let runs = [
        (
            "raw-rx-zc",
            format!("{raw} --direction receive --remote-xdp-bind zerocopy"),
        ),
        (
            "raw-rx-copy",
            format!("{raw} --direction receive --remote-xdp-bind copy"),
        ),
        (
            "raw-tx-zc",
            format!("{raw} --direction send --remote-xdp-bind zerocopy"),
        ),
        ("tcp-send", format!("{tcp} --direction send")),
        ("tcp-receive", format!("{tcp} --direction receive")),
    ];
    let mut s = String::from("#!/bin/bash\n");
    for (name, args) in runs {
        s += &format!(
            "timeout 120 {w} run --to 198.18.11.2 {args} --interval 0 --json >{d}/{name}.json 2>{d}/{name}.err || echo \"exit $?\" >>{d}/{name}.err\n",
            d = dir.display()
        );
    }
    s
}

fn load(dir: &Path, name: &str) -> Value {
    let err = std::fs::read_to_string(dir.join(format!("{name}.err"))).unwrap_or_default();
    let out = std::fs::read(dir.join(format!("{name}.json"))).unwrap_or_default();
    serde_json::from_slice(&out)
        .unwrap_or_else(|e| panic!("{name}: no JSON result ({e}); stderr:\n{err}"))
}

/// The raw figures of the sending and the receiving side.
fn raw_of(j: &Value) -> (&Value, &Value) {
    let f = &j["end"]["flows"][0];
    (&f["sender"]["raw"], &f["receiver"]["raw"])
}

/// Frames arrived, none malformed, and every one accounted for.
fn accounted(what: &str, s: &Value, r: &Value) {
    let got = r["frames"].as_u64().unwrap_or_default();
    assert!(got > 0, "{what}: nothing received: {r}");
    assert_eq!(r["malformed"], 0, "{what}");
    wirespeed_tests::raw_accounted(s, r);
}

/// Every flow's two digests exist and agree; a guest (TCP-lite) sender's
/// is that of exactly the pattern bytes its stream carried.
fn verified(name: &str, end: &Value) {
    use wirespeed::datapath::xdp::stream::pattern_sha256;
    let flows = end["flows"].as_array().unwrap();
    assert_eq!(flows.len(), 2, "{name}: {end}");
    for f in flows {
        let s = f["sender"]["sha256"].as_str();
        assert!(s.is_some_and(|h| h.len() == 64), "{name}: {f}");
        assert_eq!(s, f["receiver"]["sha256"].as_str(), "{name}: {f}");
        if f["direction"] == "receive" {
            assert_eq!(s, Some(pattern_sha256(BYTES / 2).as_str()), "{name}: {f}");
        }
    }
}

fn modes(j: &Value) -> (&str, &str) {
    (
        j["end"]["local_mode"].as_str().unwrap_or_default(),
        j["end"]["remote_mode"].as_str().unwrap_or_default(),
    )
}

#[test]
fn zero_copy_guest_raw_and_tcplite_both_ways_then_nothing_left() {
    require_root();
    let dir = scratch("-zc");
    let image = image(&["--suite", "trixie-backports", "--flavour", "cloud-amd64"]);
    let manifest = std::fs::read_to_string(image.join("manifest.txt")).unwrap();
    assert!(manifest.contains("from trixie-backports"), "{manifest}");
    let netns = format!("wsvm-z{}", std::process::id());
    let logs = dir.join("logs");
    let out = dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    let run = dir.join("run.sh");
    std::fs::write(&run, script(&out)).unwrap();
    let mut launch = Launch::start(
        &image,
        (&netns, &logs),
        &[
            "-n",
            "1",
            "--smp",
            "2",
            "--queues",
            "2",
            "--zerocopy",
            "--mem",
            "384M",
        ],
        &["bash".as_ref(), run.as_os_str()],
    );
    let (ok, stdout, stderr) = launch.wait(Duration::from_secs(900));
    let serial = std::fs::read_to_string(logs.join("vm1.serial.log")).unwrap_or_default();
    assert!(
        ok,
        "the launch failed:\n{stderr}\n{stdout}\nserial:\n{serial}"
    );
    eprintln!("{stderr}");
    // The launcher says what it set on the NIC.
    assert!(
        stderr.contains("iommu_platform=on,disable-legacy=on")
            && stderr.contains("mq=on,vectors=6"),
        "{stderr}"
    );
    assert!(serial.contains("driver virtio_net"), "{serial}");

    // Raw guest→host: the guest's end is zero-copy, both its queues send,
    // and every frame is accounted for at the host.
    let zc = load(&out, "raw-rx-zc");
    assert_eq!(
        zc["config"]["remote_mode"], "xdp-zerocopy",
        "{}",
        zc["config"]
    );
    assert_eq!(modes(&zc), ("xdp-copy", "xdp-zerocopy"), "{}", zc["end"]);
    let (s, r) = raw_of(&zc);
    accounted("guest→host zero-copy", s, r);
    let queues = s["queues"].as_array().expect("per-queue figures");
    assert_eq!(queues.len(), 2, "{s}");
    for q in queues {
        assert!(
            q["frames"].as_u64().unwrap() > 0,
            "a queue sent nothing: {q}"
        );
        assert_eq!(
            q["busy_poll"], false,
            "zero-copy virtio_net: no busy-poll {q}"
        );
    }
    // The same NIC in copy mode, same boot: zero-copy is not slower.
    let copy = load(&out, "raw-rx-copy");
    assert_eq!(modes(&copy), ("xdp-copy", "xdp-copy"), "{}", copy["end"]);
    let (cs, cr) = raw_of(&copy);
    accounted("guest→host copy", cs, cr);
    // The guest's send rate: what its driver took (the host's copy-mode
    // receiver on the tap, sharing two cores with the guest, caps what it
    // counts at about the same rate either way; its loss is accounted).
    let rate = |j: &Value| j["end"]["sent"]["bits_per_second"].as_f64().unwrap();
    assert!(
        rate(&zc) >= rate(&copy),
        "zero-copy {} b/s against copy {} b/s",
        rate(&zc),
        rate(&copy)
    );

    // Raw host→guest: the guest receives in zero-copy, frames accounted.
    let tx = load(&out, "raw-tx-zc");
    assert_eq!(modes(&tx), ("xdp-copy", "xdp-zerocopy"), "{}", tx["end"]);
    let (s, r) = raw_of(&tx);
    accounted("host→guest zero-copy", s, r);

    // TCP-lite in the guest (zero-copy, a worker per queue) against the
    // host's kernel TCP, both ways: every byte, on both sides, and the
    // same bytes (--verify: SHA-256 at each end of every flow).
    for name in ["tcp-send", "tcp-receive"] {
        let j = load(&out, name);
        let end = &j["end"];
        assert_eq!(modes(&j), ("socket", "xdp-zerocopy"), "{name}: {end}");
        assert_eq!(end["sent"]["bytes"], BYTES, "{name}: {end}");
        assert_eq!(end["received"]["bytes"], BYTES, "{name}: {end}");
        assert!(
            end["errors"].as_array().unwrap().is_empty(),
            "{name}: {end}"
        );
        let workers = end["workers"]["remote"].as_array().unwrap();
        assert_eq!(workers.len(), 2, "{name}: one worker per queue: {end}");
        verified(name, end);
    }

    nothing_left(&netns, &logs);
    let _ = std::fs::remove_dir_all(&dir);
}
