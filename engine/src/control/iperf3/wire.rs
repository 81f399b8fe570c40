//! iperf3's control protocol, the pure part: the state bytes, the cookie
//! that names a test, the parameter and result documents, and their
//! framing (a 4-byte big-endian length, then JSON). Learnt from reading
//! iperf3 3.12's `iperf_api.c`; nothing here does I/O.

use serde::{Deserialize, Serialize};

/// A cookie on the wire: 36 characters of `[a-z2-7]` and a NUL.
pub const COOKIE_LEN: usize = 37;
pub type Cookie = [u8; COOKIE_LEN];

/// The characters iperf3 draws a cookie from.
const COOKIE_CHARS: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// Largest parameter or result document accepted: iperf3's own are a few
/// hundred bytes, plus one small object per stream.
pub const MAX_JSON: usize = 256 << 10;

/// The state bytes (a signed char on the control connection).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    TestStart,
    TestRunning,
    TestEnd,
    ParamExchange,
    CreateStreams,
    ServerTerminate,
    ClientTerminate,
    ExchangeResults,
    DisplayResults,
    IperfStart,
    IperfDone,
    AccessDenied,
    ServerError,
}

impl State {
    pub fn byte(self) -> u8 {
        let v: i8 = match self {
            State::TestStart => 1,
            State::TestRunning => 2,
            State::TestEnd => 4,
            State::ParamExchange => 9,
            State::CreateStreams => 10,
            State::ServerTerminate => 11,
            State::ClientTerminate => 12,
            State::ExchangeResults => 13,
            State::DisplayResults => 14,
            State::IperfStart => 15,
            State::IperfDone => 16,
            State::AccessDenied => -1,
            State::ServerError => -2,
        };
        v as u8
    }

    /// The state a byte names; None for the unused and unknown ones.
    pub fn from_byte(b: u8) -> Option<State> {
        Some(match b as i8 {
            1 => State::TestStart,
            2 => State::TestRunning,
            4 => State::TestEnd,
            9 => State::ParamExchange,
            10 => State::CreateStreams,
            11 => State::ServerTerminate,
            12 => State::ClientTerminate,
            13 => State::ExchangeResults,
            14 => State::DisplayResults,
            15 => State::IperfStart,
            16 => State::IperfDone,
            -1 => State::AccessDenied,
            -2 => State::ServerError,
            _ => return None,
        })
    }
}

/// iperf3 error codes (`i_errno`) this implementation sends or explains.
pub mod code {
    pub const DURATION: i32 = 5;
    pub const NUM_STREAMS: i32 = 6;
    pub const BLOCK_SIZE: i32 = 7;
    pub const BUF_SIZE: i32 = 8;
    pub const UNIMPLEMENTED: i32 = 13;
    pub const NO_SCTP: i32 = 18;
    pub const NEW_TEST: i32 = 100;
    pub const RECV_PARAMS: i32 = 114;
    pub const AUTH_TEST: i32 = 142;
    pub const STREAM_CONNECT: i32 = 203;
}

/// iperf3's text for an error code, as its client prints it.
pub fn error_text(code: i32) -> String {
    match code {
        code::DURATION => "test duration too long".into(),
        code::NUM_STREAMS => "number of parallel streams too large".into(),
        code::BLOCK_SIZE => "block size too large".into(),
        code::BUF_SIZE => "socket buffer size too large".into(),
        code::UNIMPLEMENTED => "an option you are trying to set is not implemented yet".into(),
        code::NO_SCTP => "no SCTP support available".into(),
        code::NEW_TEST => "unable to create a new test".into(),
        102 => "unable to start listener for connections".into(),
        code::RECV_PARAMS => "unable to receive parameters from client".into(),
        121 => "the server is busy running a test".into(),
        code::AUTH_TEST => "test authorization failed".into(),
        c => format!("iperf3 error {c}"),
    }
}

/// A cookie from 36 random bytes, as iperf3 makes one.
pub fn cookie_from(random: &[u8; COOKIE_LEN - 1]) -> Cookie {
    let mut c = [0u8; COOKIE_LEN];
    for (o, r) in c.iter_mut().zip(random) {
        *o = COOKIE_CHARS[usize::from(*r) % COOKIE_CHARS.len()];
    }
    c
}

/// A fresh random cookie.
pub fn new_cookie() -> Cookie {
    let mut r = [0u8; COOKIE_LEN - 1];
    getrandom::getrandom(&mut r).expect("the OS random source is available");
    cookie_from(&r)
}

/// A cookie a client may send: printable ASCII, NUL-terminated (iperf3
/// compares them as C strings).
pub fn cookie_ok(c: &Cookie) -> bool {
    c[COOKIE_LEN - 1] == 0 && c[..COOKIE_LEN - 1].iter().all(|b| b.is_ascii_graphic())
}

/// The 4-byte length that precedes a JSON document; longer than `cap`
/// is refused.
pub fn json_len(prefix: [u8; 4], cap: usize) -> Result<usize, String> {
    let n = u32::from_be_bytes(prefix) as usize;
    match n {
        0 => Err("an empty JSON document".into()),
        n if n > cap => Err(format!("a {n}-byte JSON document (at most {cap})")),
        n => Ok(n),
    }
}

/// A document framed for the wire.
pub fn frame_json(doc: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(doc.len() + 4);
    v.extend_from_slice(&(doc.len() as u32).to_be_bytes());
    v.extend_from_slice(doc);
    v
}

/// The test a client asks for (`send_parameters`). Numbers arrive as
/// cJSON prints them (possibly with an exponent), so they are read as f64.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Params {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub udp: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sctp: Option<bool>,
    #[serde(default)]
    pub omit: f64,
    /// Seconds (`-t`); the client keeps its own timer.
    #[serde(default)]
    pub time: f64,
    /// Bytes over all streams (`-n`); 0 = by time.
    #[serde(default)]
    pub num: f64,
    #[serde(default)]
    pub blockcount: f64,
    #[serde(default = "one")]
    pub parallel: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reverse: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bidirectional: Option<bool>,
    /// SO_SNDBUF/SO_RCVBUF (`-w`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<f64>,
    /// Bytes per read and write (`-l`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub len: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fqrate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<f64>,
    #[serde(rename = "MSS", default, skip_serializing_if = "Option::is_none")]
    pub mss: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodelay: Option<bool>,
    #[serde(rename = "TOS", default, skip_serializing_if = "Option::is_none")]
    pub tos: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flowlabel: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub congestion: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_affinity: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub get_server_output: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dont_fragment: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authtoken: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_version: Option<String>,
}

fn one() -> f64 {
    1.0
}

/// What a wirespeed end runs for a client's parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct Accepted {
    /// The server sends (`-R`).
    pub reverse: bool,
    pub streams: u16,
    /// Seconds; the client's `-t`.
    pub seconds: f64,
    /// Bytes over all streams (`-n`); None = by time.
    pub bytes: Option<u64>,
    pub len: Option<u32>,
    pub window: Option<u32>,
}

/// The server's limits a test is checked against.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_streams: u16,
    pub max_seconds: f64,
    pub max_len: u32,
    pub max_window: u32,
}

/// A refusal: the iperf3 error code the client prints, and the reason
/// the agent logs.
pub type Refusal = (i32, String);

fn whole(v: f64, what: &str) -> Result<u64, Refusal> {
    if v.is_finite() && v >= 0.0 && v.fract() == 0.0 && v < 1.8e19 {
        Ok(v as u64)
    } else {
        Err((
            code::RECV_PARAMS,
            format!("{what} {v} is not a whole number"),
        ))
    }
}

impl Params {
    /// Check a client's parameters against what wirespeed serves and the
    /// agent's limits: options it cannot honour are refused, not ignored.
    pub fn accept(&self, lim: &Limits) -> Result<Accepted, Refusal> {
        let unimp = |what: &str| Err((code::UNIMPLEMENTED, format!("{what} is not served")));
        if self.sctp.is_some() {
            return Err((code::NO_SCTP, "SCTP (--sctp) is not served".into()));
        }
        if self.udp.is_some() {
            return unimp("UDP (-u)");
        }
        if self.tcp.is_none() {
            return unimp("a protocol other than TCP");
        }
        let refused = [
            (self.bidirectional.is_some(), "--bidir"),
            (self.bandwidth.is_some_and(|b| b > 0.0), "a TCP rate (-b)"),
            (self.fqrate.is_some(), "--fq-rate"),
            (self.burst.is_some(), "a burst (-b RATE/N)"),
            (self.mss.is_some(), "-M (MSS)"),
            (self.nodelay.is_some(), "-N (no delay)"),
            (self.tos.is_some(), "-S (TOS)"),
            (self.flowlabel.is_some(), "-L (flow label)"),
            (self.congestion.is_some(), "-C (congestion control)"),
            (self.server_affinity.is_some(), "-A on the server"),
            (self.get_server_output.is_some(), "--get-server-output"),
            (self.dont_fragment.is_some(), "--dont-fragment"),
            (self.omit > 0.0, "-O (omit)"),
            (self.blockcount > 0.0, "-k (block count)"),
        ];
        if let Some((_, what)) = refused.iter().find(|(set, _)| *set) {
            return unimp(what);
        }
        if self.authtoken.is_some() {
            return Err((
                code::AUTH_TEST,
                "iperf3 authentication is not served".into(),
            ));
        }
        let streams = whole(self.parallel, "parallel")?;
        if streams == 0 || streams > u64::from(lim.max_streams) {
            return Err((
                code::NUM_STREAMS,
                format!(
                    "{streams} streams (this agent allows 1 to {})",
                    lim.max_streams
                ),
            ));
        }
        let seconds = whole(self.time, "time")? as f64;
        let bytes = match whole(self.num, "num")? {
            0 => None,
            n => Some(n),
        };
        if bytes.is_none() && (seconds <= 0.0 || seconds > lim.max_seconds) {
            return Err((
                code::DURATION,
                format!(
                    "{seconds} s (this agent allows up to {} s)",
                    lim.max_seconds
                ),
            ));
        }
        let capped =
            |v: Option<f64>, max: u32, what: &str, c: i32| -> Result<Option<u32>, Refusal> {
                match v {
                    None => Ok(None),
                    Some(v) => match whole(v, what)? {
                        0 => Ok(None),
                        n if n > u64::from(max) => {
                            Err((c, format!("{what} {n} (this agent allows up to {max})")))
                        }
                        n => Ok(Some(n as u32)),
                    },
                }
            };
        Ok(Accepted {
            reverse: self.reverse.is_some(),
            streams: streams as u16,
            seconds,
            bytes,
            len: capped(self.len, lim.max_len, "len", code::BLOCK_SIZE)?,
            window: capped(self.window, lim.max_window, "window", code::BUF_SIZE)?,
        })
    }
}

/// A count that iperf3 prints as a signed or unsigned integer or a float:
/// 3.12 prints its -1 ("unknown") as 2^64 - 1, which reads back as -1.
fn lenient_i64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    let v = serde_json::Number::deserialize(d)?;
    Ok(match (v.as_i64(), v.as_u64(), v.as_f64()) {
        (Some(i), _, _) => i,
        (None, Some(u), _) => i64::try_from(u).unwrap_or(-1),
        (None, None, Some(f)) if f.is_finite() && f.abs() < 9.2e18 => f as i64,
        _ => -1,
    })
}

/// One stream's line of a results document.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StreamFigures {
    #[serde(deserialize_with = "lenient_i64")]
    pub id: i64,
    /// Sent (a sender's) or received (a receiver's) payload bytes.
    pub bytes: f64,
    /// -1 where unknown (a receiver, or no TCP_INFO).
    #[serde(deserialize_with = "lenient_i64")]
    pub retransmits: i64,
    #[serde(default)]
    pub jitter: f64,
    #[serde(default, deserialize_with = "lenient_i64")]
    pub errors: i64,
    #[serde(default, deserialize_with = "lenient_i64")]
    pub packets: i64,
    #[serde(default)]
    pub start_time: f64,
    #[serde(default)]
    pub end_time: f64,
}

/// A side's results (`send_results`): CPU in percent of the test's wall
/// time, and per-stream figures.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Results {
    pub cpu_util_total: f64,
    pub cpu_util_user: f64,
    pub cpu_util_system: f64,
    /// 1 = the sender's streams report retransmits, 0 = not, -1 = a receiver.
    #[serde(deserialize_with = "lenient_i64")]
    pub sender_has_retransmits: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub congestion_used: Option<String>,
    pub streams: Vec<StreamFigures>,
}

impl Results {
    /// Bytes over all streams (iperf3 prints counts under 2^53 exactly).
    pub fn total_bytes(&self) -> u64 {
        self.streams.iter().map(|s| s.bytes.max(0.0) as u64).sum()
    }
}

/// iperf3's stream ids in connection order: 1, then 3, 4, 5, ... (its own
/// quirk, kept for compatibility with older iperf3).
pub fn stream_ids(n: usize) -> Vec<i64> {
    (0..n as i64)
        .map(|k| if k == 0 { 1 } else { k + 2 })
        .collect()
}

/// `total` bytes split over `n` streams, the remainder to the first.
pub fn split_bytes(total: u64, n: usize) -> Vec<u64> {
    let n = n.max(1) as u64;
    (0..n)
        .map(|k| total / n + if k == 0 { total % n } else { 0 })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            max_streams: 8,
            max_seconds: 60.0,
            max_len: 1 << 20,
            max_window: 1 << 24,
        }
    }

    #[test]
    fn states_round_trip_and_unknown_bytes_are_none() {
        for s in [
            State::TestStart,
            State::TestRunning,
            State::TestEnd,
            State::ParamExchange,
            State::CreateStreams,
            State::ServerTerminate,
            State::ClientTerminate,
            State::ExchangeResults,
            State::DisplayResults,
            State::IperfStart,
            State::IperfDone,
            State::AccessDenied,
            State::ServerError,
        ] {
            assert_eq!(State::from_byte(s.byte()), Some(s));
        }
        assert_eq!(State::AccessDenied.byte(), 0xff);
        assert_eq!(State::ServerError.byte(), 0xfe);
        for b in [0u8, 3, 5, 6, 7, 8, 17, 0x80] {
            assert_eq!(State::from_byte(b), None, "{b}");
        }
    }

    #[test]
    fn cookies_look_like_iperf3s() {
        let c = cookie_from(&[255; 36]);
        assert_eq!(c[36], 0);
        assert!(c[..36].iter().all(|b| COOKIE_CHARS.contains(b)));
        assert!(cookie_ok(&c));
        assert!(cookie_ok(&new_cookie()));
        assert_ne!(new_cookie(), new_cookie());
        let mut bad = c;
        bad[36] = b'x';
        assert!(!cookie_ok(&bad), "not NUL-terminated");
        let mut bad = c;
        bad[3] = 0;
        assert!(!cookie_ok(&bad), "NUL inside");
    }

    #[test]
    fn json_framing_and_caps() {
        assert_eq!(frame_json(b"{}"), vec![0, 0, 0, 2, b'{', b'}']);
        assert_eq!(json_len([0, 0, 1, 0], MAX_JSON), Ok(256));
        assert!(json_len([0, 0, 0, 0], MAX_JSON).is_err());
        assert!(json_len([0xff, 0xff, 0xff, 0xff], MAX_JSON).is_err());
    }

    #[test]
    fn iperf3_parameters_parse_and_are_accepted() {
        // What iperf3 3.12 sends for `-c H -R -P 4 -n 1G -l 64K -w 1M`.
        let doc = r#"{"tcp":true,"omit":0,"time":10,"num":1073741824,"blockcount":0,"parallel":4,"reverse":true,"window":1048576,"len":65536,"pacing_timer":1000,"client_version":"3.12"}"#;
        let p: Params = serde_json::from_str(doc).unwrap();
        let a = p.accept(&limits()).unwrap();
        assert_eq!(
            a,
            Accepted {
                reverse: true,
                streams: 4,
                seconds: 10.0,
                bytes: Some(1 << 30),
                len: Some(65536),
                window: Some(1 << 20),
            }
        );
        // cJSON prints large whole numbers with an exponent.
        let p: Params =
            serde_json::from_str(r#"{"tcp":true,"time":0,"num":1e+12,"parallel":1}"#).unwrap();
        assert_eq!(p.accept(&limits()).unwrap().bytes, Some(1_000_000_000_000));
    }

    #[test]
    fn unsupported_options_and_limits_are_refused_with_iperf3_codes() {
        let base: Params =
            serde_json::from_str(r#"{"tcp":true,"time":10,"num":0,"parallel":1}"#).unwrap();
        let lim = limits();
        let check = |p: Params, want: i32| {
            let (c, why) = p.accept(&lim).unwrap_err();
            assert_eq!(c, want, "{why}");
            assert!(!why.is_empty());
        };
        check(
            Params {
                udp: Some(true),
                tcp: None,
                ..base.clone()
            },
            code::UNIMPLEMENTED,
        );
        check(
            Params {
                sctp: Some(true),
                tcp: None,
                ..base.clone()
            },
            code::NO_SCTP,
        );
        check(
            Params {
                bidirectional: Some(true),
                ..base.clone()
            },
            code::UNIMPLEMENTED,
        );
        check(
            Params {
                bandwidth: Some(1e6),
                ..base.clone()
            },
            code::UNIMPLEMENTED,
        );
        check(
            Params {
                parallel: 9.0,
                ..base.clone()
            },
            code::NUM_STREAMS,
        );
        check(
            Params {
                parallel: 0.0,
                ..base.clone()
            },
            code::NUM_STREAMS,
        );
        check(
            Params {
                time: 61.0,
                ..base.clone()
            },
            code::DURATION,
        );
        check(
            Params {
                len: Some(2e6),
                ..base.clone()
            },
            code::BLOCK_SIZE,
        );
        check(
            Params {
                window: Some(1e9),
                ..base.clone()
            },
            code::BUF_SIZE,
        );
        check(
            Params {
                parallel: 1.5,
                ..base.clone()
            },
            code::RECV_PARAMS,
        );
        check(
            Params {
                authtoken: Some("x".into()),
                ..base.clone()
            },
            code::AUTH_TEST,
        );
        // A byte-count test may leave the time at iperf3's default.
        assert!(Params {
            num: 1e6,
            time: 0.0,
            ..base
        }
        .accept(&lim)
        .is_ok());
    }

    #[test]
    fn results_round_trip_as_iperf3_reads_them() {
        let doc = r#"{"cpu_util_total":1.5,"cpu_util_user":0.5,"cpu_util_system":1,"sender_has_retransmits":-1,"streams":[{"id":1,"bytes":5368709120,"retransmits":18446744073709551615,"jitter":0,"errors":0,"packets":0,"start_time":0,"end_time":2.0001}]}"#;
        let r: Results = serde_json::from_str(doc).unwrap();
        assert_eq!(r.total_bytes(), 5 << 30);
        assert_eq!(r.streams[0].retransmits, -1, "3.12's unsigned -1");
        let back: Results = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back, r);
        assert!(serde_json::from_str::<Results>(r#"{"streams":[]}"#).is_err());
    }

    #[test]
    fn ids_and_byte_split_follow_iperf3() {
        assert_eq!(stream_ids(4), vec![1, 3, 4, 5]);
        assert_eq!(split_bytes(10, 4), vec![4, 2, 2, 2]);
        assert_eq!(split_bytes(10, 4).iter().sum::<u64>(), 10);
    }
}
