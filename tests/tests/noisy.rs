//! A real co-tenant: a busy loop pinned to CPU 1, started and killed by
//! the test by pid, beside a one-pair plan on a 1 Gbit/s shaped link. The
//! point must be marked noisy and measured again, the loop named by pid
//! in the figures, and (unless the host's hypervisor stole more than the
//! loop took) in the verdict. Steal cannot be made on demand here: it is
//! tested from recorded /proc/stat in the engine's unit tests.

use serde_json::Value;
use std::process::{Child, Command};
use std::time::Duration;
use wirespeed_tests::bin;
use wirespeed_tests::process::{run, AgentProc};
use wirespeed_tests::testbed::testbed;

/// A busy loop on one CPU, killed by its pid when dropped.
struct Hog(Child);

impl Hog {
    fn on(cpu: usize) -> Hog {
        let c = Command::new("taskset")
            .args(["-c", &cpu.to_string(), "sh", "-c", "while :; do :; done"])
            .spawn()
            .expect("starting the busy loop (taskset and sh are needed)");
        Hog(c)
    }
}

impl Drop for Hog {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_pinned_busy_loop_makes_the_point_noisy_and_is_named() {
    assert!(
        wirespeed_tests::testbed::sh("nproc", &[]).is_ok_and(|n| n
            .trim()
            .parse::<usize>()
            .unwrap_or(0)
            >= 2),
        "this test pins a busy loop to CPU 1: it needs 2 CPUs"
    );
    let tb = testbed(2, &[(0, 1)]);
    for side in 0..2 {
        tb.qdisc(
            0,
            side,
            &["tbf", "rate", "1gbit", "burst", "256kb", "latency", "10ms"],
        )
        .unwrap();
    }
    let l = &tb.links[0];
    // The test's own processes share CPU 1 with the loop: left free, the
    // scheduler would move them all to CPU 0 and no core of the test's
    // path would see the co-tenant.
    let pinned = |h: usize| {
        let mut c = tb.cmd(h, std::path::Path::new("taskset"));
        c.args(["-c", "1"]).arg(bin());
        c
    };
    let mut ac = pinned(1);
    ac.args(["agent", "--listen", &format!("{}:5290", l.v4[1])]);
    let _agent = AgentProc::start(ac);
    let dir = std::env::temp_dir().join(format!("ws-noisy-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // No link speed: the verdict comes from the CPU figures alone.
    let plan = format!(
        "name = \"noisy\"\n[defaults]\nduration = \"1s\"\nmode = \"socket\"\ndirections = [\"send\"]\n\
         [sweep]\nmax_noisy_retries = 1\nnoise_threshold = 10\n\
         [[agents]]\nname = \"a0\"\naddress = \"{}:5290\"\n\
         [[pairs]]\nagent = \"a0\"\nlocal = \"{}\"\niface = \"{}\"\n",
        l.v4[1], l.v4[0], l.ifname[0]
    );
    std::fs::write(dir.join("plan.toml"), plan).unwrap();
    let hog = Hog::on(1);
    let pid = hog.0.id();
    // Let the loop settle on its CPU before the point starts.
    std::thread::sleep(Duration::from_millis(300));
    let mut c = pinned(0);
    c.arg("plan")
        .arg(dir.join("plan.toml"))
        .arg("--json")
        .arg(dir.join("r.json"));
    let o = run(c, Duration::from_secs(60)).ok();
    drop(hog);
    let j: Value = serde_json::from_slice(&std::fs::read(dir.join("r.json")).unwrap()).unwrap();
    let p = &j["points"][0];
    assert!(p["error"].is_null(), "{}", p["error"]);
    // Both repetitions ran beside the loop: one measured again, one kept.
    let again = p["noisy_repetitions"].as_array().unwrap();
    assert_eq!(again.len(), 1, "{}", o.stdout);
    assert_eq!(p["noisy"], true, "{}", o.stdout);
    assert!(
        o.stdout.contains("*"),
        "the table marks the point: {}",
        o.stdout
    );
    assert!(
        o.stdout.contains("host: NOT quiet enough to trust"),
        "{}",
        o.stdout
    );
    let tag = format!("sh (pid {pid}");
    for rep in again.iter().chain(p["repetitions"].as_array().unwrap()) {
        assert_eq!(rep["noisy"], true);
        let co = rep["noise"]["co_tenant_percent"].as_f64().unwrap();
        assert!(co >= 10.0, "the loop took {co}% of CPU1: {rep}");
        // The controller's figures name the loop among others' processes.
        let tenants = &rep["hosts"][0]["cpu"]["tenants"];
        let named =
            tenants["top"].as_array().unwrap().iter().any(|t| {
                t["pid"] == pid && t["name"] == "sh" && t["cpus"] == serde_json::json!([1])
            });
        assert!(named, "{tenants}");
        let v = &rep["verdict"];
        let steal = rep["noise"]["steal_percent"].as_f64().unwrap_or(0.0);
        if steal < 10.0 {
            // Other busy processes may share the machine (builds): the
            // verdict names every saturated CPU's co-tenants, the loop's too.
            assert_eq!(v["limit"], "co-tenant", "{v}");
            let m = v["message"].as_str().unwrap();
            assert!(m.contains("CPU1 ") && m.contains(&tag), "{v}");
        } else {
            // The host's hypervisor took more: the verdict says so instead.
            assert_eq!(v["limit"], "steal", "{v}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
