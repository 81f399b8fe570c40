//! `wirespeed report --html` checked in a real headless Chromium: a short
//! real plan (stream and rr configurations, 1 and 2 pairs, across three
//! namespaces) rendered to one page that loads without console errors,
//! whose every figure renders as a non-empty SVG box (measured by a probe
//! script in a copy of the page, with every folded point opened), and
//! whose screenshot is kept under target/ as the test's artifact.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use wirespeed_tests::bin;
use wirespeed_tests::process::{run, AgentProc, Output};
use wirespeed_tests::testbed::{testbed, Testbed};

fn plan(tb: &Testbed) -> String {
    let mut s = String::from(
        "name = \"html\"\n[defaults]\nduration = \"1s\"\nmode = \"socket\"\n\
         directions = [\"send\"]\nlink_speed = \"10G\"\n[sweep]\npairs = [1, 2]\n\
         [[configurations]]\nname = \"bulk\"\n[[configurations]]\nname = \"rr\"\n\
         test = \"rr\"\nrequest_size = 64\nresponse_size = \"1K\"\n",
    );
    for (k, l) in tb.links.iter().enumerate() {
        s += &format!(
            "[[agents]]\nname = \"a{k}\"\naddress = \"{}:5290\"\n",
            l.v4[1]
        );
    }
    for c in ["bulk", "rr"] {
        for (k, l) in tb.links.iter().enumerate() {
            s += &format!(
                "[[pairs]]\nagent = \"a{k}\"\nlocal = \"{}\"\niface = \"{}\"\nconfiguration = \"{c}\"\n",
                l.v4[0], l.ifname[0]
            );
        }
    }
    s
}

/// Headless Chromium on a file, with a profile of its own.
fn chromium(dir: &Path, args: &[&str], page: &Path) -> Output {
    let which = Command::new("sh")
        .args(["-c", "command -v chromium"])
        .output()
        .expect("sh");
    assert!(
        which.status.success(),
        "chromium is missing: apt-get install chromium (scripts/test installs it)"
    );
    let mut c = Command::new("chromium");
    c.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-extensions",
        "--hide-scrollbars",
    ])
    .arg(format!("--user-data-dir={}", dir.join("profile").display()))
    .args(args)
    .arg(format!("file://{}", page.display()));
    run(c, Duration::from_secs(90)).ok()
}

/// The probe: collects errors from the first moment, then opens every
/// folded point and writes each figure's rendered box into the DOM.
const PROBE_HEAD: &str = "<script>window.__errors=[];\
addEventListener('error',e=>__errors.push(String(e.message||(e.target&&e.target.outerHTML))),true);\
const __ce=console.error;console.error=(...a)=>{__errors.push(a.join(' '));__ce(...a)};</script>";
const PROBE_END: &str = "<script>document.querySelectorAll('details').forEach(d=>d.open=true);\
const figs=[...document.querySelectorAll('figure.figure')].map(f=>{const s=f.querySelector('svg');\
const b=s?s.getBoundingClientRect():{width:0,height:0};\
return {w:b.width,h:b.height,shapes:s?s.querySelectorAll('path,polyline,rect,circle,line').length:0}});\
const p=document.createElement('pre');p.id='probe';\
p.textContent=JSON.stringify({figures:figs,errors:__errors,details:document.querySelectorAll('details').length});\
document.body.appendChild(p);</script>";

/// What the probe wrote, from Chromium's dumped DOM.
fn probe_result(dom: &str) -> Value {
    let text = dom
        .split("<pre id=\"probe\">")
        .nth(1)
        .and_then(|t| t.split("</pre>").next())
        .unwrap_or_else(|| panic!("no probe result in the DOM:\n{dom}"));
    let text = text
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("probe result {text}: {e}"))
}

fn artifact_dir() -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("html-report");
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn html_report_renders_in_headless_chromium() {
    let tb = testbed(3, &[(0, 1), (0, 2)]);
    let _agents: Vec<AgentProc> = tb
        .links
        .iter()
        .enumerate()
        .map(|(k, l)| {
            let mut c = tb.cmd(k + 1, &bin());
            c.args(["agent", "--listen", &format!("{}:5290", l.v4[1])]);
            AgentProc::start(c)
        })
        .collect();
    let dir = artifact_dir();
    std::fs::write(dir.join("plan.toml"), plan(&tb)).unwrap();
    let mut c = tb.cmd(0, &bin());
    c.arg("plan")
        .arg(dir.join("plan.toml"))
        .arg("--quiet")
        .arg("--json")
        .arg(dir.join("results.json"));
    run(c, Duration::from_secs(120)).ok();
    let page = dir.join("report.html");
    let mut c = Command::new(bin());
    c.arg("report")
        .arg(dir.join("results.json"))
        .arg("--html")
        .arg(&page);
    let out = run(c, Duration::from_secs(60)).ok();
    assert!(out.stdout.contains("html: "), "{}", out.stdout);
    let html = std::fs::read_to_string(&page).unwrap();
    // Self-contained: nothing to fetch, no script of its own.
    for outside in ["<link", " src=", "<script", "url("] {
        assert!(!html.contains(outside), "{outside} in the page");
    }
    // 4 points: a goodput and a latency figure, and a CPU figure each.
    assert_eq!(html.matches("<figure class=\"figure\">").count(), 6);
    assert_eq!(html.matches("<details class=\"point\">").count(), 4);

    // The page itself: loads, logs nothing to the console, screenshot kept.
    let shot = dir.join("report.png");
    let o = chromium(
        &dir,
        &[
            "--enable-logging=stderr",
            "--v=0",
            "--window-size=1280,4000",
            &format!("--screenshot={}", shot.display()),
        ],
        &page,
    );
    let console: Vec<&str> = o.stderr.lines().filter(|l| l.contains("CONSOLE")).collect();
    assert!(console.is_empty(), "console messages: {console:#?}");
    let png = std::fs::read(&shot).expect("the screenshot");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );

    // A copy with the probe: every figure a visible, drawn SVG box.
    let probe = dir.join("probe.html");
    let with_probe = html
        .replacen("<head>", &format!("<head>{PROBE_HEAD}"), 1)
        .replacen("</body>", &format!("{PROBE_END}</body>"), 1);
    std::fs::write(&probe, with_probe).unwrap();
    let o = chromium(&dir, &["--dump-dom"], &probe);
    let r = probe_result(&o.stdout);
    assert_eq!(r["errors"], Value::Array(vec![]), "{r}");
    assert_eq!(r["details"], 4, "{r}");
    let figs = r["figures"].as_array().unwrap();
    assert_eq!(figs.len(), 6, "{r}");
    for f in figs {
        let (w, h) = (f["w"].as_f64().unwrap(), f["h"].as_f64().unwrap());
        assert!(w >= 100.0 && h >= 100.0, "a figure renders {w}x{h}: {r}");
        assert!(f["shapes"].as_u64().unwrap() > 5, "an empty figure: {r}");
    }
    println!("screenshot: {}", shot.display());
}
