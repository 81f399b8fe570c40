//! TCP-lite over AF_XDP against unmodified Linux TCP: a plain kernel
//! listener receives from a TCP-lite sender, and a plain kernel sender
//! sends to a TCP-lite receiver. Each side hashes what it saw (SHA-256)
//! and the hashes must match, on a clean link and through the link
//! emulator with loss, duplication and reordering.

use std::io::Read;
use std::time::Duration;
use wirespeed::datapath::xdp::stream::pattern_sha256;
use wirespeed_tests::bin;
use wirespeed_tests::kernel_peer::{kernel_sink, kernel_source};
use wirespeed_tests::linkem::{ImpairedPair, Impairment};
use wirespeed_tests::process::{run, Output};
use wirespeed_tests::testbed::Testbed;

fn plain(tb: &Testbed, iface: &str, args: &[&str]) -> Output {
    let mut c = tb.cmd(0, &bin());
    c.args([
        "run", "--mode", "xdp", "--iface", iface, "--verify", "--json",
    ]);
    c.args(args);
    run(c, Duration::from_secs(120))
}

fn both_ways(tb: &Testbed, iface: &str, bytes: usize) {
    // TCP-lite sends, the kernel receives.
    let sink = kernel_sink(tb, "198.18.0.2:9000");
    let j = plain(
        tb,
        iface,
        &["--plain", "198.18.0.2:9000", "--bytes", &bytes.to_string()],
    )
    .ok()
    .json();
    let (n, hash) = sink.join().expect("sink");
    assert_eq!(n, bytes as u64, "the kernel got every byte");
    assert_eq!(j["streams"][0]["bytes"], bytes, "{j}");
    assert_eq!(
        j["streams"][0]["sha256"],
        hash.as_str(),
        "what TCP-lite sent"
    );
    assert_eq!(hash, pattern_sha256(bytes as u64), "the documented pattern");
    // The kernel sends, TCP-lite receives.
    let source = kernel_source(tb, "198.18.0.2:9001", bytes);
    let j = plain(
        tb,
        iface,
        &["--plain", "198.18.0.2:9001", "--direction", "receive"],
    )
    .ok()
    .json();
    let want = source.join().expect("source");
    assert_eq!(j["streams"][0]["bytes"], bytes, "{j}");
    assert_eq!(j["streams"][0]["sha256"], want.as_str());
    assert_eq!(j["mode"], "xdp-copy");
}

#[test]
fn kernel_tcp_peer_on_a_clean_link() {
    let p = ImpairedPair::new(Impairment::default());
    both_ways(&p.tb, &p.ifname[0], 8 << 20);
}

#[test]
fn kernel_tcp_peer_through_loss_duplication_and_reordering() {
    let p = ImpairedPair::new(Impairment {
        delay: Duration::from_millis(1),
        loss: 1.0,
        duplicate: 1.0,
        reorder: 1.0,
        reorder_by: Duration::from_millis(2),
        seed: 9,
    });
    both_ways(&p.tb, &p.ifname[0], 4 << 20);
}

#[test]
fn tshark_decodes_tcp_lite_without_complaint() {
    let p = ImpairedPair::new(Impairment::default());
    let pcap =
        std::env::temp_dir().join(format!("wirespeed-tcplite-{}.pcapng", std::process::id()));
    let mut cap = std::process::Command::new("ip");
    cap.args([
        "netns",
        "exec",
        p.tb.ns(1),
        "tshark",
        "-q",
        "-i",
        &p.ifname[1],
        "-a",
        "duration:6",
        "-w",
    ])
    .arg(&pcap)
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::piped());
    let mut cap = cap
        .spawn()
        .expect("tshark (apt-get install tshark; scripts/test installs it)");
    // tshark says "Capturing on ..." once it is.
    let mut err = cap.stderr.take().unwrap();
    let mut seen = Vec::new();
    let mut b = [0u8; 256];
    while !String::from_utf8_lossy(&seen).contains("Capturing on") {
        let n = err.read(&mut b).expect("tshark's stderr");
        assert!(n > 0, "tshark ended: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&b[..n]);
    }
    let sink = kernel_sink(&p.tb, "198.18.0.2:9000");
    plain(
        &p.tb,
        &p.ifname[0],
        &["--plain", "198.18.0.2:9000", "--bytes", "1M"],
    )
    .ok();
    assert_eq!(sink.join().unwrap().0, 1 << 20);
    let st = wirespeed::testbed::wait_bounded(&mut cap, Duration::from_secs(20));
    assert!(st.is_some_and(|s| s.success()), "tshark capture failed");
    let count = |filter: &str| -> usize {
        let out = std::process::Command::new("tshark")
            .args(["-r"])
            .arg(&pcap)
            .args([
                "-o",
                "tcp.check_checksum:TRUE",
                "-o",
                "ip.check_checksum:TRUE",
                "-Y",
                filter,
            ])
            .output()
            .expect("tshark reads the capture");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).lines().count()
    };
    let ours = "ip.src == 198.18.0.1 && tcp";
    let total = count(ours);
    assert!(total > 700, "TCP-lite's segments were captured: {total}");
    assert_eq!(
        count(&format!(
            "({ours}) && tcp.checksum.status == 1 && ip.checksum.status == 1"
        )),
        total,
        "tshark verified every checksum as good"
    );
    let bad = count(&format!(
        "({ours}) && (_ws.malformed || tcp.checksum.status == 0 || ip.checksum.status == 0 || _ws.expert.severity >= error)"
    ));
    let _ = std::fs::remove_file(&pcap);
    assert_eq!(
        bad, 0,
        "segments tshark finds malformed or with bad checksums"
    );
}
