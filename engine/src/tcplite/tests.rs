//! Targeted behaviour tests, driven by hand segment by segment, and
//! properties over the simulated network.

use super::sim::{LinkConfig, Outcome, Pair};
use super::*;
use crate::wire::tcp;
use proptest::prelude::*;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

pub(super) fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
}

pub(super) fn addrs() -> (SocketAddr, SocketAddr) {
    (
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 40000),
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)), 5001),
    )
}

/// An emitted segment, owned.
#[derive(Clone)]
pub(super) struct Seg(pub(super) Vec<u8>);

impl Seg {
    pub(super) fn repr(&self) -> TcpSegment<'_> {
        let p = tcp::Packet::new_checked(&self.0[..]).unwrap();
        TcpSegment::parse_unverified(&p).unwrap()
    }
}

/// Everything `c` wants to send now.
pub(super) fn drain(c: &mut Connection, now: Instant) -> Vec<Seg> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 66_000];
    while let Some(t) = c.poll_transmit(now, &mut buf) {
        out.push(Seg(buf[..t.size].to_vec()));
        assert!(out.len() < 10_000, "endless transmit");
    }
    out
}

pub(super) fn feed(c: &mut Connection, now: Instant, segs: &[Seg]) {
    for s in segs {
        c.handle_segment(now, &s.repr());
    }
}

/// Handshake by hand; returns (client, server).
pub(super) fn established(
    ccfg: Config,
    scfg: Config,
    c_iss: u32,
    s_iss: u32,
) -> (Connection, Connection) {
    let (a, b) = addrs();
    let mut c = Connection::connect(ccfg, a, b, c_iss, 0);
    let syn = drain(&mut c, 0);
    assert_eq!(syn.len(), 1);
    let mut s = Connection::accept(scfg, b, a.ip(), &syn[0].repr(), s_iss, 0).unwrap();
    let synack = drain(&mut s, 1000);
    feed(&mut c, 2000, &synack);
    let ack = drain(&mut c, 2000);
    feed(&mut s, 3000, &ack);
    assert_eq!(c.state(), State::Established);
    assert_eq!(s.state(), State::Established);
    (c, s)
}

#[test]
fn handshake_negotiates_options() {
    let ccfg = Config {
        mss: 1000,
        recv_buffer: 1 << 20,
        ..Config::default()
    };
    let scfg = Config {
        mss: 1400,
        recv_buffer: 64 * 1024,
        ..Config::default()
    };
    let (a, b) = addrs();
    let mut c = Connection::connect(ccfg, a, b, 7, 0);
    let syn = drain(&mut c, 0);
    let r = syn[0].repr();
    assert_eq!(r.flags, TcpFlags::SYN);
    assert_eq!(r.max_seg_size, Some(1000));
    assert_eq!(r.window_scale, Some(5), "1 MiB needs a shift of 5");
    assert!(r.timestamp.is_some());
    let p = tcp::Packet::new_checked(&syn[0].0[..]).unwrap();
    assert!(
        p.verify_checksum(a.ip(), b.ip()),
        "checksum over the pseudo-header"
    );
    let mut s = Connection::accept(scfg, b, a.ip(), &r, 9, 0).unwrap();
    let sa = drain(&mut s, 1000);
    let r2 = sa[0].repr();
    assert_eq!(r2.flags, TcpFlags::SYN | TcpFlags::ACK);
    assert_eq!(r2.ack_number, SeqNum(8));
    assert_eq!(r2.max_seg_size, Some(1400));
    assert_eq!(r2.window_scale, Some(1));
    feed(&mut c, 2000, &sa);
    feed(&mut s, 3000, &drain(&mut c, 2000));
    assert!(c.is_established() && s.is_established());
    // min(1000, 1400) less 12 bytes of timestamps
    assert_eq!(c.mss(), 988);
    assert_eq!(s.mss(), 988);
    assert!(c.stats().srtt > 0, "the SYN was timed");
    // the server's window is scaled by the client's shift of 5
    c.write(&[1; 100]);
    let d = drain(&mut c, 4000);
    assert_eq!(d[0].repr().window_len, ((1 << 20) >> 5) as u16);
}

#[test]
fn no_window_scale_unless_both_offer() {
    let (a, b) = addrs();
    // a minimal SYN: no options at all
    let mut syn = TcpSegment::new(a.port(), b.port(), SeqNum(100), SeqNum(0), TcpFlags::SYN);
    syn.window_len = 8192;
    let mut s = Connection::accept(Config::default(), b, a.ip(), &syn, 5, 0).unwrap();
    let sa = drain(&mut s, 0);
    let r = sa[0].repr();
    assert_eq!(r.window_scale, None);
    assert_eq!(r.timestamp, None);
    assert_eq!(r.window_len, 65535, "unscaled, capped");
    assert_eq!(s.mss(), 536, "RFC 9293 default MSS when none is announced");
    assert!(Connection::accept(Config::default(), b, a.ip(), &sa[0].repr(), 5, 0).is_none());
}

#[test]
fn accepts_a_linux_syn() {
    // the SYN of wire::tcp's test, as a real Linux sends it
    let syn: [u8; 40] = [
        0xb1, 0x22, 0x00, 0x50, 0x9d, 0x2c, 0x5b, 0x3a, 0x00, 0x00, 0x00, 0x00, 0xa0, 0x02, 0xfa,
        0xf0, 0xe3, 0xc3, 0x00, 0x00, 0x02, 0x04, 0x05, 0xb4, 0x04, 0x02, 0x08, 0x0a, 0x8d, 0x2f,
        0x1e, 0x40, 0x00, 0x00, 0x00, 0x00, 0x01, 0x03, 0x03, 0x07,
    ];
    let src = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    let local = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)), 80);
    let p = tcp::Packet::new_checked(&syn[..]).unwrap();
    let r = TcpSegment::parse(&p, src, local.ip()).unwrap();
    let mut s = Connection::accept(Config::default(), local, src, &r, 1, 0).unwrap();
    let sa = drain(&mut s, 0);
    let back = sa[0].repr();
    assert_eq!(back.ack_number, SeqNum(0x9d2c5b3b));
    assert_eq!(
        back.timestamp,
        Some((0, 0x8d2f1e40)),
        "TSecr echoes the SYN's TSval"
    );
    assert!(back.window_scale.is_some());
    assert_eq!(s.mss(), 1460 - 12);
}

/// Without SACK: recovery is NewReno's.
pub(super) fn no_sack() -> Config {
    Config {
        sack: false,
        ..Config::default()
    }
}

#[test]
fn fast_retransmit_on_three_dup_acks() {
    let (mut c, mut s) = established(no_sack(), Config::default(), 1, 2);
    let mss = c.mss();
    c.write(&pattern(8 * mss));
    let segs = drain(&mut c, 10_000);
    assert_eq!(segs.len(), 8, "IW10 lets all 8 go");
    // the first is lost; each later one makes the server send a dup ACK
    let mut dups = Vec::new();
    for sg in &segs[1..] {
        feed(&mut s, 11_000, std::slice::from_ref(sg));
        dups.extend(drain(&mut s, 11_000));
    }
    assert!(dups.len() >= 3);
    assert!(
        dups.iter().all(|d| d.repr().ack_number == SeqNum(2)),
        "all ack the hole"
    );
    // the first opens the window from the SYN-ACK's unscaled 64 KiB: a
    // window update, not a duplicate (RFC 5681 2)
    feed(&mut c, 12_000, &dups[..1]);
    feed(&mut c, 12_000, &dups[1..3]);
    assert!(
        drain(&mut c, 12_000).is_empty(),
        "two dup ACKs are not enough"
    );
    feed(&mut c, 12_000, &dups[3..4]);
    let rx = drain(&mut c, 12_000);
    assert_eq!(rx[0].repr().seq_number, SeqNum(2), "the hole is sent again");
    assert_eq!(rx[0].repr().payload.len(), mss);
    assert_eq!(c.stats().fast_retransmits, 1);
    assert!(c.stats().retransmits >= 1);
    assert!(c.stats().rto_count == 0);
    // the retransmission fills the hole: everything is acked at once
    feed(&mut s, 13_000, &rx[..1]);
    let ack = drain(&mut s, 13_000);
    assert_eq!(ack.last().unwrap().repr().ack_number, SeqNum(2) + 8 * mss);
    feed(&mut c, 14_000, &ack);
    assert_eq!(c.stats().bytes_acked, 8 * mss as u64);
    let mut out = vec![0; 8 * mss];
    assert_eq!(s.read(&mut out), 8 * mss);
    assert_eq!(out, pattern(8 * mss));
}

#[test]
fn newreno_partial_ack_retransmits_next_hole() {
    let (mut c, mut s) = established(Config::default(), no_sack(), 1, 2);
    let mss = c.mss();
    c.write(&pattern(10 * mss));
    let segs = drain(&mut c, 10_000);
    assert_eq!(segs.len(), 10);
    // segments 0 and 4 are lost
    let mut acks = Vec::new();
    for (i, sg) in segs.iter().enumerate() {
        if i != 0 && i != 4 {
            feed(&mut s, 11_000, std::slice::from_ref(sg));
            acks.extend(drain(&mut s, 11_000));
        }
    }
    feed(&mut c, 12_000, &acks);
    let rx = drain(&mut c, 12_000);
    assert_eq!(rx[0].repr().seq_number, SeqNum(2));
    feed(&mut s, 13_000, &rx[..1]);
    let partial = drain(&mut s, 13_000);
    assert_eq!(
        partial.last().unwrap().repr().ack_number,
        SeqNum(2) + 4 * mss
    );
    feed(&mut c, 14_000, &partial);
    let rx2 = drain(&mut c, 14_000);
    assert_eq!(
        rx2[0].repr().seq_number,
        SeqNum(2) + 4 * mss,
        "a partial ACK retransmits the next hole at once"
    );
    assert_eq!(c.stats().rto_count, 0);
    assert_eq!(c.stats().fast_retransmits, 1, "one recovery episode");
}

#[test]
fn rto_backs_off_and_gives_up() {
    let cfg = Config {
        max_retries: 5,
        ..Config::default()
    };
    let (mut c, _s) = established(cfg, Config::default(), 1, 2);
    c.write(b"hello");
    assert_eq!(drain(&mut c, 10_000).len(), 1);
    let mut now = 10_000;
    let mut gaps = Vec::new();
    while let Some(t) = c.poll_timeout() {
        gaps.push(t - now);
        now = t;
        c.on_timeout(now);
        let out = drain(&mut c, now);
        if c.is_closed() {
            assert!(out.is_empty());
            break;
        }
        assert_eq!(out.len(), 1, "one retransmission per timeout");
        assert_eq!(out[0].repr().payload, b"hello");
        assert!(gaps.len() < 20);
    }
    assert_eq!(c.error(), Some(ConnectionError::TimedOut));
    assert_eq!(c.state(), State::Closed);
    assert_eq!(c.stats().rto_count, 6);
    assert_eq!(c.stats().retransmits, 5);
    for w in gaps.windows(2) {
        assert!(
            w[1] == 2 * w[0] || w[1] == c.stats().rto,
            "back-off doubles: {gaps:?}"
        );
    }
    assert!(gaps[0] >= 200 * MS, "min RTO");
    assert!(now < 30 * SEC, "bounded time: {now}");
    assert!(c.error().unwrap().to_string().contains("timed out"));
}

#[test]
fn unanswered_syn_times_out() {
    let (a, b) = addrs();
    let cfg = Config {
        max_retries: 3,
        ..Config::default()
    };
    let mut c = Connection::connect(cfg, a, b, 1, 0);
    let mut syns = drain(&mut c, 0).len();
    let mut now = 0;
    while let Some(t) = c.poll_timeout() {
        now = t;
        c.on_timeout(now);
        syns += drain(&mut c, now).len();
    }
    assert_eq!(syns, 4);
    assert_eq!(c.error(), Some(ConnectionError::TimedOut));
    assert_eq!(now, SEC + 2 * SEC + 4 * SEC + 8 * SEC);
}

#[test]
fn refused_by_rst() {
    let (a, b) = addrs();
    let mut c = Connection::connect(Config::default(), a, b, 1, 0);
    let syn = drain(&mut c, 0);
    let mut buf = [0u8; 64];
    let n = Connection::reset_for(b, a, &syn[0].repr(), &mut buf).unwrap();
    feed(&mut c, 10, &[Seg(buf[..n].to_vec())]);
    assert_eq!(c.error(), Some(ConnectionError::Refused));
}

fn rst(seq: SeqNum) -> TcpSegment<'static> {
    let (a, b) = addrs();
    TcpSegment::new(b.port(), a.port(), seq, SeqNum(0), TcpFlags::RST)
}

#[test]
fn rst_in_window_closes() {
    let (mut c, _s) = established(Config::default(), Config::default(), 1, 2);
    c.handle_segment(5000, &rst(SeqNum(3)));
    assert_eq!(c.error(), Some(ConnectionError::Reset));
    assert!(c.is_closed());
    assert!(drain(&mut c, 5000).is_empty(), "a RST is never answered");
}

#[test]
fn rst_off_by_some_gets_a_challenge_ack() {
    let (mut c, _s) = established(Config::default(), Config::default(), 1, 2);
    c.handle_segment(5000, &rst(SeqNum(3) + 100));
    assert_eq!(c.state(), State::Established);
    let out = drain(&mut c, 5000);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].repr().flags, TcpFlags::ACK);
    assert_eq!(out[0].repr().ack_number, SeqNum(3));
    assert_eq!(c.stats().challenge_acks, 1);
}

#[test]
fn rst_out_of_window_is_ignored() {
    let (mut c, _s) = established(Config::default(), Config::default(), 1, 2);
    c.handle_segment(5000, &rst(SeqNum(3) + 10_000_000));
    c.handle_segment(5000, &rst(SeqNum(3) - 1));
    assert_eq!(c.state(), State::Established);
    assert!(c.error().is_none());
    assert!(drain(&mut c, 5000).is_empty());
}

#[test]
fn syn_when_established_gets_a_challenge_ack() {
    let (mut c, _s) = established(Config::default(), Config::default(), 1, 2);
    let (a, b) = addrs();
    let syn = TcpSegment::new(b.port(), a.port(), SeqNum(3) + 10, SeqNum(0), TcpFlags::SYN);
    c.handle_segment(5000, &syn);
    assert_eq!(c.state(), State::Established);
    let out = drain(&mut c, 5000);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].repr().flags, TcpFlags::ACK);
}

#[test]
fn out_of_order_is_buffered_and_delivered_when_the_hole_fills() {
    let (mut c, mut s) = established(Config::default(), Config::default(), 1, 2);
    let mss = c.mss();
    let data = pattern(5 * mss);
    c.write(&data);
    let segs = drain(&mut c, 10_000);
    assert_eq!(segs.len(), 5);
    feed(
        &mut s,
        11_000,
        &[
            segs[3].clone(),
            segs[1].clone(),
            segs[4].clone(),
            segs[2].clone(),
        ],
    );
    let mut out = vec![0; 5 * mss];
    assert_eq!(s.read(&mut out), 0, "nothing in order yet");
    let dups = drain(&mut s, 11_000);
    assert!(dups.iter().all(|d| d.repr().ack_number == SeqNum(2)));
    feed(&mut s, 12_000, &segs[..1]);
    assert_eq!(s.read(&mut out), 5 * mss);
    assert_eq!(out, data);
    let ack = drain(&mut s, 12_000);
    assert_eq!(ack.len(), 1, "filling a hole is acked at once");
    assert_eq!(ack[0].repr().ack_number, SeqNum(2) + 5 * mss);
}

#[test]
fn out_of_order_beyond_the_cap_is_dropped() {
    let cfg = Config {
        max_ooo_ranges: 2,
        ..Config::default()
    };
    let (mut c, mut s) = established(Config::default(), cfg, 1, 2);
    let mss = c.mss();
    c.write(&pattern(7 * mss));
    let segs = drain(&mut c, 10_000);
    // three separate ranges: 1, 3, 5; the third has no slot
    feed(
        &mut s,
        11_000,
        &[segs[1].clone(), segs[3].clone(), segs[5].clone()],
    );
    assert_eq!(s.stats().ooo_dropped, 1);
    feed(&mut s, 11_000, &[segs[0].clone(), segs[2].clone()]);
    let mut out = vec![0; 7 * mss];
    assert_eq!(s.read(&mut out), 4 * mss, "up to the dropped one");
}

#[test]
fn delayed_ack_waits_for_a_second_segment_or_the_timer() {
    let (mut c, mut s) = established(Config::default(), Config::default(), 1, 2);
    let mss = c.mss();
    c.write(&pattern(3 * mss));
    let segs = drain(&mut c, 10_000);
    feed(&mut s, 11_000, &segs[..1]);
    assert!(drain(&mut s, 11_000).is_empty(), "one segment: delayed");
    assert_eq!(s.poll_timeout(), Some(11_000 + 40 * MS));
    feed(&mut s, 11_500, &segs[1..2]);
    let a = drain(&mut s, 11_500);
    assert_eq!(a.len(), 1, "two full segments: acked at once");
    feed(&mut s, 12_000, &segs[2..3]);
    assert!(drain(&mut s, 12_000).is_empty());
    s.on_timeout(12_000 + 40 * MS);
    let a = drain(&mut s, 12_000 + 40 * MS);
    assert_eq!(a[0].repr().ack_number, SeqNum(2) + 3 * mss);
}

#[test]
fn sequence_numbers_wrap_around() {
    for (ci, si) in [
        (u32::MAX - 3000, u32::MAX),
        (u32::MAX, u32::MAX - 1),
        (0, 1),
    ] {
        let mut p = Pair::new(
            Config::default(),
            Config::default(),
            LinkConfig {
                loss: 0.05,
                jitter: 3 * MS,
                ..LinkConfig::default()
            },
            LinkConfig::default(),
            ci,
            si,
            pattern(200_000),
            ci as u64,
        );
        assert_eq!(p.run(1_000_000, 3600 * SEC), Outcome::Completed, "iss {ci}");
        assert!(p.received == p.data);
    }
}

#[test]
fn stretch_acks_wait_for_ack_every_segments_or_the_push() {
    let cfg = Config {
        ack_every: 8,
        ..Config::default()
    };
    let sender = Config {
        congestion: Congestion::Fixed(1 << 20),
        ..cfg.clone()
    };
    let (mut c, mut s) = established(sender, cfg, 1, 2);
    let mss = c.mss();
    c.write(&pattern(11 * mss));
    let segs = drain(&mut c, 10_000);
    assert_eq!(segs.len(), 11);
    let pushed: Vec<bool> = segs.iter().map(|g| g.repr().flags.psh()).collect();
    assert_eq!(pushed.iter().filter(|&&p| p).count(), 1, "{pushed:?}");
    assert!(pushed[10], "PSH on the segment that empties the queue");
    let mut buf = vec![0; 11 * mss];
    feed(&mut s, 11_000, &segs[..1]);
    assert_eq!(s.read(&mut buf), mss);
    assert_eq!(
        drain(&mut s, 11_000).len(),
        1,
        "the first read opens the SYN's unscaled window"
    );
    for k in 1..8 {
        feed(&mut s, 11_000, &segs[k..k + 1]);
        // the reader keeps up: its reads send no window updates
        assert_eq!(s.read(&mut buf), mss);
        assert!(drain(&mut s, 11_000).is_empty(), "{k} segments: held");
    }
    feed(&mut s, 11_000, &segs[8..9]);
    let a = drain(&mut s, 11_000);
    assert_eq!(a.len(), 1, "eight segments: acked at once");
    assert_eq!(a[0].repr().ack_number, SeqNum(2) + 9 * mss);
    feed(&mut s, 11_000, &segs[9..10]);
    assert!(drain(&mut s, 11_000).is_empty());
    feed(&mut s, 11_000, &segs[10..11]);
    let a = drain(&mut s, 11_000);
    assert_eq!(a.len(), 1, "the pushed end of the data: acked at once");
    assert_eq!(a[0].repr().ack_number, SeqNum(2) + 11 * mss);
}

/// A receiver whose buffer holds 8 segments of 1460 bytes (at most 8 of
/// the 1448 the timestamps leave), and its peer.
fn small_receiver(ack_every: usize) -> (Connection, Connection) {
    let cfg = Config {
        ack_every,
        recv_buffer: 8 * 1460,
        window_scaling: false,
        ..Config::default()
    };
    established(Config::default(), cfg, 1, 2)
}

#[test]
fn stretch_acks_keep_four_per_window() {
    let (mut c, mut s) = small_receiver(8);
    let mss = c.mss();
    c.write(&pattern(8 * mss));
    let segs = drain(&mut c, 10_000);
    feed(&mut s, 11_000, &segs[..1]);
    assert!(drain(&mut s, 11_000).is_empty());
    feed(&mut s, 11_000, &segs[1..2]);
    assert_eq!(drain(&mut s, 11_000).len(), 1, "a quarter of the buffer");
}

#[test]
fn a_read_sends_a_window_update_only_when_the_window_had_halved() {
    let (mut c, mut s) = small_receiver(2);
    let mss = c.mss();
    let buffer = 8 * 1460;
    c.write(&pattern(7 * mss));
    let segs = drain(&mut c, 10_000);
    let mut buf = vec![0; buffer];
    feed(&mut s, 11_000, &segs[..2]);
    assert_eq!(drain(&mut s, 11_000).len(), 1);
    assert_eq!(s.read(&mut buf), 2 * mss);
    assert!(
        drain(&mut s, 11_000).is_empty(),
        "the peer still holds more than half the buffer: no update"
    );
    feed(&mut s, 12_000, &segs[2..7]);
    let acks = drain(&mut s, 12_000);
    let last = acks.last().expect("acked").repr();
    // the window the peer holds now: the last ACK's, less the segment since
    let held = usize::from(last.window_len) - mss;
    assert!(2 * held <= buffer, "window left to the peer: {held}");
    assert_eq!(s.read(&mut buf), 5 * mss);
    let upd = drain(&mut s, 12_000);
    assert_eq!(upd.len(), 1, "the window at least doubles: update at once");
    assert!(usize::from(upd[0].repr().window_len) >= 2 * held);
}

#[test]
fn zero_window_probe_recovers_when_the_reader_drains() {
    let scfg = Config {
        recv_buffer: 8 * 1024,
        ..Config::default()
    };
    let mut p = Pair::new(
        Config::default(),
        scfg,
        LinkConfig::default(),
        LinkConfig::default(),
        1,
        2,
        pattern(100_000),
        3,
    );
    p.server_reads = false;
    let probed = p.run_until(100_000, 600 * SEC, |p| p.client.stats().window_probes >= 3);
    assert!(probed, "probes while the window is shut");
    assert!(p.client.error().is_none());
    assert_eq!(
        p.server.as_ref().unwrap().recv_queue(),
        8 * 1024,
        "window full"
    );
    p.server_reads = true;
    assert_eq!(p.run(1_000_000, 3600 * SEC), Outcome::Completed);
    assert!(p.received == p.data);
}

#[test]
fn lost_window_update_is_recovered_by_a_probe() {
    // the reader drains while every server->client segment is lost: the
    // window update never arrives, only a later probe can find the window
    // open
    let scfg = Config {
        recv_buffer: 4 * 1024,
        ..Config::default()
    };
    let mut p = Pair::new(
        Config::default(),
        scfg,
        LinkConfig::default(),
        LinkConfig::default(),
        1,
        2,
        pattern(50_000),
        4,
    );
    p.server_reads = false;
    assert!(p.run_until(100_000, 600 * SEC, |p| p.client.stats().window_probes >= 1));
    p.link_config_mut(1).loss = 1.0;
    p.server_reads = true;
    let probes = p.client.stats().window_probes;
    assert!(
        p.run_until(100_000, 600 * SEC, |p| p.client.stats().window_probes
            >= probes + 2)
    );
    assert!(
        p.client.error().is_none(),
        "unanswered probes, but below the limit"
    );
    p.link_config_mut(1).loss = 0.0;
    assert_eq!(p.run(1_000_000, 3600 * SEC), Outcome::Completed);
    assert!(p.received == p.data);
}

#[test]
fn a_peer_that_stops_answering_probes_times_out() {
    let scfg = Config {
        recv_buffer: 4 * 1024,
        ..Config::default()
    };
    let ccfg = Config {
        max_retries: 4,
        ..Config::default()
    };
    let mut p = Pair::new(
        ccfg,
        scfg,
        LinkConfig::default(),
        LinkConfig::default(),
        1,
        2,
        pattern(50_000),
        4,
    );
    p.server_reads = false;
    assert!(p.run_until(100_000, 600 * SEC, |p| p.client.stats().window_probes >= 1));
    p.link_config_mut(1).loss = 1.0;
    let o = p.run(1_000_000, 3600 * SEC);
    assert!(
        matches!(
            o,
            Outcome::Failed {
                client: Some(ConnectionError::TimedOut),
                ..
            }
        ),
        "{o:?}"
    );
    assert!(p.now < 600 * SEC, "bounded: {} s", p.now / SEC);
}

#[test]
fn ipv6_frames_carry_a_connection() {
    use super::frame::{parse_frame, poll_transmit_frame, LinkAddrs, HEADROOM_V6};
    use crate::wire::ethernet::MacAddr;
    let a: SocketAddr = "[fd00::1]:40000".parse().unwrap();
    let b: SocketAddr = "[fd00::2]:5001".parse().unwrap();
    let la = LinkAddrs {
        src: MacAddr([2, 0, 0, 0, 0, 1]),
        dst: MacAddr([2, 0, 0, 0, 0, 2]),
    };
    let lb = LinkAddrs {
        src: la.dst,
        dst: la.src,
    };
    let mut buf = vec![0u8; 1600];
    let mut c = Connection::connect(Config::default(), a, b, u32::MAX, 0);
    let (n, t) = poll_transmit_frame(&mut c, 0, &la, &mut buf).unwrap();
    assert_eq!(n, HEADROOM_V6 + t.size);
    let f = parse_frame(&buf[..n]).unwrap();
    assert_eq!((f.src, f.dst), (a.ip(), b.ip()));
    assert_eq!(f.dst_mac, la.dst);
    let mut s = Connection::accept(Config::default(), b, f.src, &f.segment, 77, 0).unwrap();
    let mut sbuf = vec![0u8; 1600];
    let (n, _) = poll_transmit_frame(&mut s, 10, &lb, &mut sbuf).unwrap();
    c.handle_segment(20, &parse_frame(&sbuf[..n]).unwrap().segment);
    assert!(c.is_established());
    c.write(b"over IPv6");
    let mut n = 0;
    while let Some((m, _)) = poll_transmit_frame(&mut c, 30, &la, &mut buf) {
        s.handle_segment(40, &parse_frame(&buf[..m]).unwrap().segment);
        n = m;
    }
    let mut out = [0u8; 16];
    assert_eq!(s.read(&mut out), 9);
    assert_eq!(&out[..9], b"over IPv6");
    // damage anywhere is refused by a checksum or a length check
    for i in 14..n {
        let mut bad = buf[..n].to_vec();
        bad[i] ^= 0x40;
        if let Ok(f) = parse_frame(&bad) {
            // only fields no checksum covers may change (traffic class, flow, hop limit)
            assert!((14..18).contains(&i) || i == 21, "byte {i} changed: {f:?}");
        }
    }
}

#[test]
fn throughput_of_a_fixed_window_fills_the_pipe() {
    // 100 Mbit/s, 10 ms RTT: BDP 125 kB; window 256 kB
    let bw = 12_500_000;
    let link = LinkConfig {
        delay: 5 * MS,
        bandwidth: bw,
        ..LinkConfig::default()
    };
    let cfg = Config {
        congestion: Congestion::Fixed(256 * 1024),
        send_buffer: 512 * 1024,
        recv_buffer: 512 * 1024,
        ..Config::default()
    };
    let n = 5_000_000;
    let mut p = Pair::new(cfg.clone(), cfg, link.clone(), link, 1, 2, pattern(n), 5);
    assert!(p.run_until(100_000, 10 * SEC, |p| p.client.is_established()));
    let t0 = p.now;
    assert!(p.run_until(10_000_000, 600 * SEC, |p| p.received.len() == n));
    let elapsed = (p.now - t0) as f64 / SEC as f64;
    // the ideal: the bytes on the wire (with headers) at line rate, plus one RTT
    let wire = p.link_stats()[0].bytes_delivered as f64;
    let ideal = wire / bw as f64 + 0.010;
    assert!(
        elapsed < ideal * 1.2,
        "took {elapsed:.3} s, ideal {ideal:.3} s"
    );
    assert!(p.received == p.data);
}

#[test]
fn newreno_also_fills_the_pipe_eventually() {
    let bw = 12_500_000;
    let link = LinkConfig {
        delay: 5 * MS,
        bandwidth: bw,
        ..LinkConfig::default()
    };
    let cfg = Config {
        send_buffer: 512 * 1024,
        recv_buffer: 512 * 1024,
        ..Config::default()
    };
    let n = 10_000_000;
    let mut p = Pair::new(cfg.clone(), cfg, link.clone(), link, 1, 2, pattern(n), 5);
    assert_eq!(p.run(10_000_000, 600 * SEC), Outcome::Completed);
    let secs = p.now as f64 / SEC as f64;
    let rate = n as f64 / secs;
    assert!(rate > 0.7 * bw as f64, "{rate:.0} B/s of {bw}");
}

#[test]
fn pacing_holds_the_rate() {
    let rate = 1_000_000; // 1 MB/s
    let cfg = Config {
        pacing_rate: Some(rate),
        ..Config::default()
    };
    let n = 500_000;
    let mut p = Pair::new(
        cfg,
        Config::default(),
        LinkConfig::default(),
        LinkConfig::default(),
        1,
        2,
        pattern(n),
        6,
    );
    assert_eq!(p.run(1_000_000, 600 * SEC), Outcome::Completed);
    let secs = p.now as f64 / SEC as f64;
    assert!(
        secs > 0.45 && secs < 0.6,
        "500 kB at 1 MB/s took {secs:.3} s"
    );
}

#[test]
fn pacing_release_time_is_a_timeout() {
    let cfg = Config {
        pacing_rate: Some(100_000),
        pacing_burst: 1460,
        ..Config::default()
    };
    let (mut c, _s) = established(cfg, Config::default(), 1, 2);
    c.write(&pattern(10_000));
    let first = drain(&mut c, 10_000);
    assert_eq!(first.len(), 1, "a burst of one segment");
    let t = c.poll_timeout().unwrap();
    // the bucket held 1460 bytes and a 1448-byte segment left 12: the
    // next needs 1436 more, 14.36 ms at 100 kB/s
    assert_eq!(c.mss(), 1448);
    assert_eq!(t, 10_000 + 14_360);
    c.on_timeout(t);
    assert_eq!(drain(&mut c, t).len(), 1);
}

#[test]
fn orderly_close_both_ways() {
    let (mut c, mut s) = established(Config::default(), Config::default(), 1, 2);
    c.close();
    assert_eq!(c.state(), State::FinWait1);
    let fin = drain(&mut c, 10_000);
    assert!(fin[0].repr().flags.fin());
    feed(&mut s, 11_000, &fin);
    assert_eq!(s.state(), State::CloseWait);
    assert!(s.read_finished());
    feed(&mut c, 12_000, &drain(&mut s, 11_000));
    assert_eq!(c.state(), State::FinWait2);
    assert_eq!(s.write(b"late reply"), 10, "the other direction stays open");
    s.close();
    let out = drain(&mut s, 13_000);
    assert!(out.last().unwrap().repr().flags.fin());
    feed(&mut c, 14_000, &out);
    assert_eq!(c.state(), State::TimeWait);
    let mut b = [0; 32];
    assert_eq!(c.read(&mut b), 10);
    assert!(c.read_finished());
    feed(&mut s, 15_000, &drain(&mut c, 14_000));
    assert_eq!(s.state(), State::Closed);
    assert!(s.error().is_none());
    c.on_timeout(c.poll_timeout().unwrap());
    assert_eq!(c.state(), State::Closed);
    assert!(c.error().is_none());
}

#[test]
fn simultaneous_close() {
    let (mut c, mut s) = established(Config::default(), Config::default(), 1, 2);
    c.close();
    s.close();
    let cf = drain(&mut c, 10_000);
    let sf = drain(&mut s, 10_000);
    feed(&mut c, 11_000, &sf);
    feed(&mut s, 11_000, &cf);
    assert_eq!(c.state(), State::Closing);
    assert_eq!(s.state(), State::Closing);
    let ca = drain(&mut c, 11_000);
    let sa = drain(&mut s, 11_000);
    feed(&mut c, 12_000, &sa);
    feed(&mut s, 12_000, &ca);
    assert_eq!(c.state(), State::TimeWait);
    assert_eq!(s.state(), State::TimeWait);
}

/// A pair with the default config (SACK offered or not) on both ends and
/// `link` both ways.
fn same_both_ways(sack: bool, link: LinkConfig, data: Vec<u8>, seed: u64) -> Pair {
    let cfg = Config {
        sack,
        ..Config::default()
    };
    Pair::new(cfg.clone(), cfg, link.clone(), link, 1000, 2000, data, seed)
}

#[test]
fn lossy_runs_complete() {
    for sack in [true, false] {
        let (mut sack_resent, mut rtos, mut time) = (0, 0, 0);
        for seed in 0..12 {
            let link = LinkConfig {
                delay: 10 * MS,
                jitter: 5 * MS,
                loss: 0.1,
                duplicate: 0.05,
                ..LinkConfig::default()
            };
            let mut p = same_both_ways(sack, link, pattern(150_000), seed);
            let o = p.run(2_000_000, 3600 * SEC);
            let st = p.client.stats();
            assert_eq!(o, Outcome::Completed, "sack {sack} seed {seed}: {st:?}");
            assert!(p.received == p.data);
            assert_eq!(p.bad_frames, 0);
            assert_eq!(p.client.sack(), sack);
            sack_resent += st.sack_recovery_retransmits;
            rtos += st.rto_count;
            time += p.now;
        }
        eprintln!(
            "sack {sack}: {sack_resent} SACK retransmissions, {rtos} RTOs, {} ms",
            time / MS
        );
        assert_eq!(sack_resent > 0, sack, "SACK recovery ran iff negotiated");
    }
}

/// Bit flips in data and ACKs: every one is caught by the checksum (the
/// payload's while it is copied into the receive ring, which then must
/// not keep it), the stream arrives intact, with or without SACK.
#[test]
fn corrupted_frames_are_dropped_and_resent() {
    for sack in [true, false] {
        let link = LinkConfig {
            corrupt: 0.1,
            ..LinkConfig::default()
        };
        let mut p = same_both_ways(sack, link, pattern(500_000), 3);
        assert_eq!(
            p.run(2_000_000, 3600 * SEC),
            Outcome::Completed,
            "sack {sack}"
        );
        assert!(p.received == p.data, "sack {sack}: the stream differs");
        assert_eq!(p.corrupt_accepted, 0);
        assert_eq!(p.bad_frames, 0);
        let corrupted = p.link_stats()[0].corrupted + p.link_stats()[1].corrupted;
        assert!(
            p.corrupt_dropped >= 10,
            "sack {sack}: {} dropped",
            p.corrupt_dropped
        );
        assert_eq!(
            p.corrupt_dropped, corrupted,
            "every corrupted frame arrived, none kept"
        );
    }
}

fn iss_strategy() -> impl Strategy<Value = u32> {
    prop_oneof![any::<u32>(), (u32::MAX - 100_000)..=u32::MAX, 0u32..10]
}

proptest! {
    /// Whatever the impairments, the receiver reads exactly a prefix of
    /// what was sent, all of it when both sides close in order; or the
    /// run ends with a reported failure. Never a panic, never a hang.
    #[test]
    fn delivers_in_order_or_fails_with_a_reason(
        loss in 0.0f64..0.2,
        back_loss in 0.0f64..0.2,
        duplicate in 0.0f64..0.1,
        corrupt in prop_oneof![Just(0.0f64), 0.0f64..0.05],
        delay in 0u64..50_000,
        jitter in 0u64..20_000,
        mss in prop_oneof![Just(536u16), Just(1460u16), 200u16..1460],
        sbuf in 2048usize..262_144,
        rbuf in 2048usize..262_144,
        c_iss in iss_strategy(),
        s_iss in iss_strategy(),
        len in 0usize..120_000,
        delayed_ack in prop_oneof![Just(0u64), Just(40 * MS)],
        ack_every in prop_oneof![Just(2usize), Just(8usize), 2usize..32],
        reno in any::<bool>(),
        // SACK offered by the client, by the server
        sack in (any::<bool>(), any::<bool>()),
        // consecutive frames lost in one window, each way: (first, how many)
        bursts in (proptest::option::of((0u64..200, 1u64..24)), proptest::option::of((0u64..200, 1u64..12))),
        seed in any::<u64>(),
    ) {
        let link = |loss, burst: Option<(u64, u64)>| LinkConfig {
            delay,
            jitter,
            loss,
            drop: burst.map_or(Vec::new(), |(first, n)| (first..first + n).collect()),
            duplicate,
            corrupt,
            mtu: usize::from(mss) + 40,
            ..LinkConfig::default()
        };
        let cfg = |sack| Config {
            mss,
            send_buffer: sbuf,
            recv_buffer: rbuf,
            delayed_ack,
            ack_every,
            congestion: if reno { Congestion::NewReno } else { Congestion::Fixed(rbuf) },
            sack,
            ..Config::default()
        };
        let mut p = Pair::new(cfg(sack.0), cfg(sack.1), link(loss, bursts.0), link(back_loss, bursts.1), c_iss, s_iss, pattern(len), seed);
        let o = p.run(3_000_000, 4 * 3600 * SEC);
        prop_assert!(p.data.starts_with(&p.received), "received bytes are not a prefix of the sent ones");
        prop_assert_eq!(p.bad_frames, 0);
        prop_assert_eq!(p.corrupt_accepted, 0, "a corrupted frame was taken in");
        prop_assert_eq!(p.link_stats()[0].too_big + p.link_stats()[1].too_big, 0);
        if !(sack.0 && sack.1) {
            prop_assert_eq!(p.client.stats().sack_recovery_retransmits, 0);
        }
        match o {
            Outcome::Completed => {
                prop_assert!(p.received == p.data);
                let both = sack.0 && sack.1;
                prop_assert_eq!((p.client.sack(), p.server.as_ref().map(|s| s.sack())), (both, Some(both)));
            }
            Outcome::Failed { client, server } => {
                // a side gave up; or the client's TIME-WAIT ran out while the
                // server still retransmitted its FIN, and the closed client
                // answered it with a RST (RFC 9293 behaviour: 2 MSL is
                // shorter than a FIN's whole retry span)
                let timed_out = client == Some(ConnectionError::TimedOut)
                    || server == Some(ConnectionError::TimedOut);
                let late_reset = p.received == p.data
                    && client.is_none()
                    && server == Some(ConnectionError::Reset)
                    && p.client.is_closed();
                prop_assert!(timed_out || late_reset, "unexpected failure: {:?} {:?}", client, server);
            }
            o => prop_assert!(false, "{:?} after {} steps at {} us: client {:?} {:?} server {:?}",
                o, p.steps, p.now, p.client.state(), p.client.stats(), p.server.as_ref().map(|s| s.state())),
        }
    }
}

/// A segment from the network, with the connection's ports but any
/// sequence numbers, flags, window, options and payload.
/// (seq, ack, flags, window, window scale, timestamps, payload, near,
/// SACK blocks)
type RawSegment = (
    u32,
    u32,
    u8,
    u16,
    Option<u8>,
    Option<(u32, u32)>,
    Vec<u8>,
    bool,
    Vec<(u32, u32)>,
);

fn arbitrary_segment() -> impl Strategy<Value = RawSegment> {
    (
        any::<u32>(),
        any::<u32>(),
        any::<u8>(),
        any::<u16>(),
        proptest::option::of(any::<u8>()),
        proptest::option::of(any::<(u32, u32)>()),
        proptest::collection::vec(any::<u8>(), 0..3000),
        any::<bool>(),
        proptest::collection::vec(any::<(u32, u32)>(), 0..5),
    )
}

proptest! {
    /// Hostile or garbled segments, near the connection's own sequence
    /// numbers or anywhere, never panic it and never break its accounting.
    #[test]
    fn arbitrary_segments_never_panic(
        segs in proptest::collection::vec(arbitrary_segment(), 1..40),
        c_iss in iss_strategy(),
        s_iss in iss_strategy(),
        close_first in any::<bool>(),
    ) {
        let (mut c, _s) = established(Config::default(), Config::default(), c_iss, s_iss);
        c.write(&pattern(20_000));
        if close_first {
            c.close();
        }
        let (a, b) = addrs();
        let mut now = 10_000;
        let mut buf = vec![0u8; 2000];
        for (seq, ack, flags, win, ws, ts, payload, near, blocks) in segs {
            // half of them close to what the connection expects
            let (seq, ack) = if near {
                (s_iss.wrapping_add(1).wrapping_add(seq % 40_000), c_iss.wrapping_add(ack % 40_000))
            } else {
                (seq, ack)
            };
            let edges = blocks.into_iter().map(|(l, r)| {
                let (l, r) = if near {
                    let l = c_iss.wrapping_add(l % 40_000);
                    (l, l.wrapping_add(r % 8_000).wrapping_sub(1_000))
                } else {
                    (l, r)
                };
                (SeqNum(l), SeqNum(r))
            });
            let mut sack_buf = [0; tcp::SACK_BUF];
            let sack = tcp::SackBlocks::encode(edges, &mut sack_buf);
            let mut r = TcpSegment::new(b.port(), a.port(), SeqNum(seq), SeqNum(ack), TcpFlags(flags));
            r.window_len = win;
            r.window_scale = ws;
            r.timestamp = ts;
            r.sack = sack;
            r.payload = &payload;
            c.handle_segment(now, &r);
            while let Some(t) = c.poll_transmit(now, &mut buf) {
                prop_assert!(t.size <= buf.len());
            }
            if let Some(t) = c.poll_timeout() {
                now = now.max(t.min(now + 50_000));
                c.on_timeout(now);
            }
            let mut rd = [0u8; 4096];
            let _ = c.read(&mut rd);
            prop_assert!(c.send_queue() <= 256 * 1024);
            prop_assert!(c.recv_queue() <= 256 * 1024);
            now += 1_000;
        }
    }

    /// Arbitrary bytes as a frame never panic the parser.
    #[test]
    fn arbitrary_frames_never_panic(b in proptest::collection::vec(any::<u8>(), 0..200), kind in 0u8..3) {
        let mut b = b;
        if b.len() > 14 {
            let (t, v) = [(0x0800u16, 0x45u8), (0x86dd, 0x60), (0x0806, 0)][usize::from(kind)];
            b[12..14].copy_from_slice(&t.to_be_bytes());
            b[14] = v | (b[14] & 0x0f);
        }
        let _ = super::frame::parse_frame(&b);
    }
}
