//! An established TCP-lite pair fed arbitrary segments. The pair shakes
//! hands first; then the input is read as a script of operations, each
//! one control byte and its arguments:
//!
//! * a forged segment to either side, its fields chosen by the input but
//!   its sequence and acknowledgment numbers (and SACK blocks) near the
//!   ones that side expects (so the fuzzer reaches the in-window paths);
//! * raw bytes as a TCP header and payload, parsed and delivered;
//! * the application writing, reading, closing or aborting;
//! * time passing (timers fire) or the genuine traffic of both sides
//!   being exchanged.
//!
//! Checked: nothing panics, a connection never wants to send forever,
//! the queues stay within their buffers, and every emitted segment parses.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use wirespeed::tcplite::{Config, Connection, Instant, SeqNum, TcpFlags, TcpSegment, MS};
use wirespeed::wire::tcp;

const BUF: usize = 16 * 1024;

fn config() -> Config {
    Config {
        mss: 536,
        send_buffer: BUF,
        recv_buffer: BUF,
        max_ooo_ranges: 4,
        time_wait: 2_000 * MS,
        ..Config::default()
    }
}

struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn u8(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_be_bytes([self.u8()?, self.u8()?]))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes([
            self.u8()?,
            self.u8()?,
            self.u8()?,
            self.u8()?,
        ]))
    }
    fn bytes(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.0.len());
        let (b, rest) = self.0.split_at(n);
        self.0 = rest;
        b
    }
}

/// One side: its connection and what it last sent (to forge the peer's
/// segments near the right numbers).
struct Side {
    conn: Connection,
    next_seq: SeqNum,
    ack: SeqNum,
    tsval: u32,
}

/// Everything `c` sends now, checked; bounded.
fn drain(side: &mut Side, now: Instant) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 2048];
    while let Some(t) = side.conn.poll_transmit(now, &mut buf) {
        let seg = buf[..t.size].to_vec();
        let p = tcp::Packet::new_checked(&seg[..]).expect("emitted segment parses");
        let r = TcpSegment::parse(&p, side.conn.local().ip(), side.conn.remote().ip())
            .expect("emitted segment verifies");
        side.next_seq = r.seq_number + r.segment_len();
        if r.flags.ack() {
            side.ack = r.ack_number;
        }
        if let Some((v, _)) = r.timestamp {
            side.tsval = v;
        }
        out.push(seg);
        assert!(out.len() < 1000, "a connection that never stops sending");
    }
    out
}

fn deliver(to: &mut Side, now: Instant, segs: &[Vec<u8>]) {
    for s in segs {
        let p = tcp::Packet::new_checked(&s[..]).unwrap();
        to.conn
            .handle_segment(now, &TcpSegment::parse_unverified(&p).unwrap());
    }
}

fn check(s: &Side) {
    let c = &s.conn;
    assert!(c.send_queue() <= BUF && c.recv_queue() <= BUF);
    assert!(c.send_capacity() <= BUF);
    let _ = (c.stats(), c.state(), c.error(), c.poll_timeout());
}

fuzz_target!(|data: &[u8]| {
    let a = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1)), 40000);
    let b = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2)), 5001);
    let mut now: Instant = 1_000;
    let mut cl = Side {
        conn: Connection::connect(config(), a, b, 0xffff_ff00, now),
        next_seq: SeqNum(0),
        ack: SeqNum(0),
        tsval: 0,
    };
    let syn = drain(&mut cl, now);
    let p = tcp::Packet::new_checked(&syn[0][..]).unwrap();
    let conn = Connection::accept(
        config(),
        b,
        a.ip(),
        &TcpSegment::parse_unverified(&p).unwrap(),
        7,
        now,
    )
    .expect("accept the SYN");
    let mut sv = Side {
        conn,
        next_seq: SeqNum(0),
        ack: SeqNum(0),
        tsval: 0,
    };
    now += 100;
    let synack = drain(&mut sv, now);
    deliver(&mut cl, now, &synack);
    let ack = drain(&mut cl, now);
    deliver(&mut sv, now, &ack);
    assert!(cl.conn.is_established() && sv.conn.is_established());

    let pattern: Vec<u8> = (0..BUF).map(|i| i as u8).collect();
    let mut sink = vec![0u8; BUF];
    let mut inp = Input(data);
    let mut steps = 0;
    while let Some(op) = inp.u8() {
        steps += 1;
        if steps > 500 {
            break;
        }
        let (to, from) = if op & 0x80 == 0 {
            (&mut sv, &mut cl)
        } else {
            (&mut cl, &mut sv)
        };
        match op & 0x7f {
            // a forged segment near the numbers `to` expects
            0..=63 => {
                let (Some(fl), Some(ds), Some(da), Some(win), Some(len)) =
                    (inp.u8(), inp.u16(), inp.u16(), inp.u16(), inp.u16())
                else {
                    break;
                };
                let seq = from.next_seq + (ds as i16 as isize as usize);
                let ackn = from.ack + (da as i16 as isize as usize);
                let (lp, rp) = (to.conn.remote().port(), to.conn.local().port());
                let mut r = TcpSegment::new(lp, rp, seq, ackn, TcpFlags(fl));
                r.window_len = win;
                if op & 0x20 != 0 {
                    r.timestamp = Some((from.tsval.wrapping_add(u32::from(op & 3)), 0));
                }
                let mut sack = [0; tcp::SACK_BUF];
                if op & 0x10 != 0 {
                    // SACK blocks near what `from` acknowledged, any shape
                    let n = inp.u8().unwrap_or(0) % 5;
                    let mut edges = Vec::new();
                    for _ in 0..n {
                        let (Some(dl), Some(len)) = (inp.u16(), inp.u16()) else {
                            break;
                        };
                        let left = from.ack + (dl as i16 as isize as usize);
                        edges.push((left, left + (len as i16 as isize as usize)));
                    }
                    r.sack = tcp::SackBlocks::encode(edges, &mut sack);
                }
                let n = usize::from(len) % 2048;
                r.payload = &pattern[..n.min(pattern.len())];
                to.conn.handle_segment(now, &r);
            }
            // raw header and payload bytes
            64..=79 => {
                let Some(n) = inp.u8() else { break };
                let raw = inp.bytes(usize::from(n) * 4);
                if let Ok(p) = tcp::Packet::new_checked(raw) {
                    if let Ok(r) = TcpSegment::parse_unverified(&p) {
                        to.conn.handle_segment(now, &r);
                    }
                }
            }
            80..=89 => {
                let Some(n) = inp.u16() else { break };
                to.conn.write(&pattern[..usize::from(n) % BUF]);
            }
            90..=99 => {
                let Some(n) = inp.u16() else { break };
                let n = usize::from(n) % BUF + 1;
                to.conn.read(&mut sink[..n]);
                let _ = to.conn.read_finished();
            }
            100..=103 => to.conn.close(),
            104 => to.conn.abort(),
            105..=115 => {
                let Some(t) = inp.u32() else { break };
                // up to about 70 minutes, usually a little
                now += u64::from(t >> (u32::from(op) % 16));
                for s in [&mut *to, &mut *from] {
                    if s.conn.poll_timeout().is_some_and(|d| d <= now) {
                        s.conn.on_timeout(now);
                    }
                }
            }
            _ => {
                now += 50;
                let x = drain(from, now);
                let y = drain(to, now);
                deliver(to, now, &x);
                deliver(from, now, &y);
            }
        }
        // what the forged input made either side want to send, sent nowhere
        drain(to, now);
        drain(from, now);
        check(to);
        check(from);
    }
});
