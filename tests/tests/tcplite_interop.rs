//! TCP-lite over AF_XDP against unmodified Linux TCP: a plain kernel
//! listener receives from a TCP-lite sender, and a plain kernel sender
//! sends to a TCP-lite receiver. Each side hashes what it saw (SHA-256)
//! and the hashes must match, on a clean link and through the link
//! emulator with loss, duplication and reordering, where a capture shows
//! SACK negotiated and used both ways.

use std::io::Read;
use std::path::PathBuf;
use std::process::Child;
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
    assert_eq!(j["streams"][0]["sack"], true, "Linux offers SACK: {j}");
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

/// tshark capturing on host `host`'s interface into a temporary file;
/// ended (and the file removed) on drop.
struct Capture {
    child: Child,
    file: PathBuf,
}

impl Capture {
    /// Start and wait until tshark says it captures. `snaplen` 0: whole
    /// frames.
    fn start(tb: &Testbed, host: usize, iface: &str, snaplen: u32, seconds: u32) -> Capture {
        let file = std::env::temp_dir().join(format!(
            "wirespeed-tcplite-{}-{iface}.pcapng",
            std::process::id()
        ));
        let mut cmd = std::process::Command::new("ip");
        cmd.args(["netns", "exec", tb.ns(host), "tshark", "-q", "-i", iface])
            .args(["-s", &snaplen.to_string()])
            .args(["-a", &format!("duration:{seconds}"), "-w"])
            .arg(&file)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd
            .spawn()
            .expect("tshark (apt-get install tshark; scripts/test installs it)");
        // tshark says "Capturing on ..." once it is.
        let mut err = child.stderr.take().unwrap();
        let mut seen = Vec::new();
        let mut b = [0u8; 256];
        while !String::from_utf8_lossy(&seen).contains("Capturing on") {
            let n = err.read(&mut b).expect("tshark's stderr");
            assert!(n > 0, "tshark ended: {}", String::from_utf8_lossy(&seen));
            seen.extend_from_slice(&b[..n]);
        }
        Capture { child, file }
    }

    /// Wait for the capture's duration to end.
    fn wait(&mut self) {
        let st = wirespeed::testbed::wait_bounded(&mut self.child, Duration::from_secs(120));
        assert!(st.is_some_and(|s| s.success()), "tshark capture failed");
    }

    /// End the capture now (tshark writes out what it has on SIGTERM).
    fn stop(&mut self) {
        wirespeed::testbed::terminate(&mut self.child);
        assert!(
            matches!(self.child.try_wait(), Ok(Some(_))),
            "tshark did not stop"
        );
    }

    /// Frames in the capture that match a display filter.
    fn count(&self, filter: &str) -> usize {
        let out = std::process::Command::new("tshark")
            .args(["-r"])
            .arg(&self.file)
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
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            wirespeed::testbed::terminate(&mut self.child);
        }
        let _ = std::fs::remove_file(&self.file);
    }
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
    // headers only: SACK is in the options
    let mut cap = Capture::start(&p.tb, 1, &p.ifname[1], 128, 300);
    both_ways(&p.tb, &p.ifname[0], 4 << 20);
    cap.stop();
    let (ours, theirs) = ("ip.src == 198.18.0.1", "ip.src == 198.18.0.2");
    let syn = "tcp.flags.syn == 1 && tcp.flags.ack == 0";
    let syn_ack = "tcp.flags.syn == 1 && tcp.flags.ack == 1";
    // TCP-lite opens both connections; Linux always offers SACK, and
    // answers SACK-permitted only to a SYN that offered it
    assert!(
        cap.count(&format!("{ours} && {syn}")) >= 2,
        "both SYNs captured"
    );
    assert_eq!(
        cap.count(&format!("{ours} && {syn} && !tcp.options.sack_perm")),
        0,
        "TCP-lite offers SACK on every SYN"
    );
    assert!(cap.count(&format!("{theirs} && {syn_ack} && tcp.options.sack_perm")) >= 2);
    assert_eq!(
        cap.count(&format!("{theirs} && {syn_ack} && !tcp.options.sack_perm")),
        0,
        "Linux agreed to SACK on both connections"
    );
    // the loss left holes each way, and each receiver reported them
    let theirs_sack = cap.count(&format!("{theirs} && tcp.options.sack_le"));
    let ours_sack = cap.count(&format!("{ours} && tcp.options.sack_le"));
    assert!(theirs_sack > 0, "Linux sent SACK blocks to TCP-lite");
    assert!(ours_sack > 0, "TCP-lite sent SACK blocks to Linux");
    assert_eq!(
        cap.count(&format!(
            "({ours}) && tcp && (_ws.malformed || tcp.checksum.status == 0)"
        )),
        0,
        "TCP-lite's SACK options decode cleanly"
    );
    eprintln!("SACK blocks on {theirs_sack} of Linux's ACKs, {ours_sack} of TCP-lite's");
}

#[test]
fn tshark_decodes_tcp_lite_without_complaint() {
    let p = ImpairedPair::new(Impairment::default());
    let mut cap = Capture::start(&p.tb, 1, &p.ifname[1], 0, 6);
    let sink = kernel_sink(&p.tb, "198.18.0.2:9000");
    plain(
        &p.tb,
        &p.ifname[0],
        &["--plain", "198.18.0.2:9000", "--bytes", "1M"],
    )
    .ok();
    assert_eq!(sink.join().unwrap().0, 1 << 20);
    cap.wait();
    let ours = "ip.src == 198.18.0.1 && tcp";
    let total = cap.count(ours);
    assert!(total > 700, "TCP-lite's segments were captured: {total}");
    assert_eq!(
        cap.count(&format!(
            "({ours}) && tcp.checksum.status == 1 && ip.checksum.status == 1"
        )),
        total,
        "tshark verified every checksum as good"
    );
    let bad = cap.count(&format!(
        "({ours}) && (_ws.malformed || tcp.checksum.status == 0 || ip.checksum.status == 0 || _ws.expert.severity >= error)"
    ));
    assert_eq!(
        bad, 0,
        "segments tshark finds malformed or with bad checksums"
    );
}
