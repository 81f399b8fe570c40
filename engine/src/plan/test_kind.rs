//! A plan configuration's `test`: bulk streams (the default) or netperf
//! TCP_RR request/response with `request_size`, `response_size` and
//! `burst`. The bounds are `run --test rr`'s ([`check_rr`]); a bad value
//! is refused at its own line, with the fix.

use super::file::{Locator, Pair, Settings};
use crate::spec::{check_rr, Direction, RrParam, TestKind};
use crate::units::parse_size;
use crate::Result;
use serde::Deserialize;
use std::time::Duration;
use toml::Spanned;

/// What `test = "..."` names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TestName {
    Stream,
    Rr,
}

/// A size written as a number (`64`) or with a unit (`"1K"`).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum SizeValue {
    Bytes(u64),
    Text(String),
}

/// How plans spell the rr parameters in messages.
const NAMES: [&str; 3] = ["request_size", "response_size", "burst"];

/// The test a configuration runs, checked against its directions (the
/// default, send and receive, suits rr), its pairs' pinned directions and
/// its warm-up.
pub(super) fn resolve(
    loc: &Locator<'_>,
    cname: &str,
    s: &Settings,
    pairs: &[Pair],
    warmup: Duration,
) -> Result<TestKind> {
    let rr = s
        .test
        .as_ref()
        .is_some_and(|t| *t.get_ref() == TestName::Rr);
    if !rr {
        let stray = [
            (NAMES[0], s.request_size.as_ref().map(Spanned::span)),
            (NAMES[1], s.response_size.as_ref().map(Spanned::span)),
            (NAMES[2], s.burst.as_ref().map(Spanned::span)),
        ];
        if let Some((name, span)) = stray.into_iter().find(|(_, sp)| sp.is_some()) {
            return loc.err(
                span,
                format!("configuration {cname:?}: {name} belongs to request/response tests: add test = \"rr\", or remove it"),
            );
        }
        return Ok(TestKind::Stream);
    }
    let test_span = s.test.as_ref().map(Spanned::span);
    let size = |v: &Option<Spanned<SizeValue>>, name: &str| -> Result<u32> {
        let Some(v) = v else { return Ok(1) };
        let n = match v.get_ref() {
            SizeValue::Bytes(n) => *n,
            SizeValue::Text(t) => parse_size(t).or_else(|_| {
                loc.err(
                    Some(v.span()),
                    format!("{name} = {t:?} is not a size: use e.g. {name} = 64 or \"1K\""),
                )
            })?,
        };
        // Out of u32 is out of bounds too: let the shared check say so.
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    };
    let request = size(&s.request_size, NAMES[0])?;
    let response = size(&s.response_size, NAMES[1])?;
    let burst = s.burst.as_ref().map_or(1, |b| *b.get_ref());
    if let Err((param, msg)) = check_rr(request, response, burst, NAMES) {
        let span = match param {
            RrParam::Request => s.request_size.as_ref().map(Spanned::span),
            RrParam::Response => s.response_size.as_ref().map(Spanned::span),
            RrParam::Burst => s.burst.as_ref().map(Spanned::span),
        };
        return loc.err(
            span.or(test_span),
            format!("configuration {cname:?}: {msg}"),
        );
    }
    let directions = s.directions.as_deref().unwrap_or_default();
    if directions.contains(&Direction::Both)
        || pairs.iter().any(|p| p.direction == Some(Direction::Both))
    {
        return loc.err(
            test_span,
            format!("configuration {cname:?}: an rr test has one client per pair: use directions = [\"send\"] (the controller is the client), [\"receive\"] (the agent is), or both as two sweeps, not \"both\""),
        );
    }
    if !warmup.is_zero() {
        let span = s.warmup.as_ref().map(Spanned::span);
        return loc.err(
            span,
            format!("configuration {cname:?}: an rr test's histogram holds every transaction from the first, so a warm-up cannot be left out: set warmup = \"0s\" in this configuration"),
        );
    }
    Ok(TestKind::Rr {
        request,
        response,
        burst,
    })
}

#[cfg(test)]
mod tests {
    use crate::plan::Plan;
    use crate::spec::{Direction, TestKind, MAX_BURST};

    const BASE: &str = r#"
[defaults]
duration = "1s"
[[agents]]
name = "a"
address = "198.18.1.2"
[[pairs]]
agent = "a"
[[pairs]]
agent = "a"
data_port = 7002
"#;

    fn with(extra: &str) -> String {
        BASE.replace(
            "duration = \"1s\"\n",
            &format!("duration = \"1s\"\n{extra}\n"),
        )
    }

    fn err(extra: &str) -> String {
        Plan::parse(&with(extra), "lat.toml")
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn rr_defaults_are_netperfs_and_reach_the_spec() {
        let p = Plan::parse(&with("test = \"rr\""), "lat.toml").unwrap();
        let c = &p.configurations[0];
        let one = TestKind::Rr {
            request: 1,
            response: 1,
            burst: 1,
        };
        assert_eq!(c.test, one);
        assert_eq!(c.spec(Direction::Receive, 2).test, one);
        let p = Plan::parse(
            &with("test = \"rr\"\nrequest_size = 64\nresponse_size = \"1K\"\nburst = 4"),
            "lat.toml",
        )
        .unwrap();
        assert_eq!(
            p.configurations[0].test,
            TestKind::Rr {
                request: 64,
                response: 1024,
                burst: 4
            }
        );
        let p = Plan::parse(&with(""), "lat.toml").unwrap();
        assert_eq!(p.configurations[0].test, TestKind::Stream);
    }

    #[test]
    fn configurations_mix_stream_and_rr() {
        let text = format!(
            "{BASE}[[configurations]]\nname = \"bulk\"\n[[configurations]]\nname = \"lat\"\ntest = \"rr\"\nburst = 2\n"
        )
        .replace("agent = \"a\"\ndata_port", "agent = \"a\"\nconfiguration = \"lat\"\ndata_port");
        let p = Plan::parse(&text, "lat.toml").unwrap();
        assert_eq!(p.configurations[0].test, TestKind::Stream);
        assert!(matches!(
            p.configurations[1].test,
            TestKind::Rr { burst: 2, .. }
        ));
    }

    #[test]
    fn the_latency_example_runs_rr() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/latency.toml");
        let p = Plan::load(&path).unwrap();
        let tests: Vec<TestKind> = p.configurations.iter().map(|c| c.test).collect();
        assert_eq!(
            tests,
            [
                TestKind::Rr {
                    request: 1,
                    response: 1,
                    burst: 1
                },
                TestKind::Rr {
                    request: 1024,
                    response: 1024,
                    burst: 4
                }
            ]
        );
        assert_eq!(p.points().len(), 2 * 2 * 2);
    }

    #[test]
    fn bad_rr_values_name_the_line_and_the_fix() {
        // [defaults] starts on line 2: the extra lines follow duration (3).
        let e = err("test = \"rr\"\nburst = 0");
        assert!(
            e.contains("lat.toml:5:") && e.contains("burst 0 must be between 1 and"),
            "{e}"
        );
        let e = err(&format!("test = \"rr\"\nburst = {}", MAX_BURST + 1));
        assert!(e.contains("lat.toml:5:") && e.contains("1024"), "{e}");
        let e = err("test = \"rr\"\nrequest_size = \"2M\"");
        assert!(
            e.contains("lat.toml:5:") && e.contains("request_size 2097152 must be between 1 byte"),
            "{e}"
        );
        let e = err("test = \"rr\"\nresponse_size = 0");
        assert!(
            e.contains("lat.toml:5:") && e.contains("response_size 0"),
            "{e}"
        );
        let e = err("test = \"rr\"\nresponse_size = \"lots\"");
        assert!(
            e.contains("lat.toml:5:") && e.contains("response_size = 64"),
            "{e}"
        );
        let e = err("test = \"rr\"\nrequest_size = \"64K\"\nburst = 4");
        assert!(
            e.contains("lat.toml:6:") && e.contains("deadlock") && e.contains("lower burst"),
            "{e}"
        );
        let e = err("test = \"rr\"\ndirections = [\"both\"]");
        assert!(
            e.contains("lat.toml:4:") && e.contains("one client per pair"),
            "{e}"
        );
        let e = err("warmup = \"1s\"\ntest = \"rr\"");
        assert!(
            e.contains("lat.toml:4:") && e.contains("warmup = \"0s\""),
            "{e}"
        );
        let e = err("burst = 8");
        assert!(
            e.contains("lat.toml:4:") && e.contains("add test = \"rr\""),
            "{e}"
        );
        let e = err("test = \"tcp_crr\"");
        assert!(e.contains("lat.toml:4:") && e.contains("tcp_crr"), "{e}");
        // a pair pinned to both directions
        let e = Plan::parse(
            &with("test = \"rr\"")
                .replace("data_port = 7002", "data_port = 7002\ndirection = \"both\""),
            "lat.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("one client per pair"), "{e}");
    }
}
