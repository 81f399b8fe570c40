//! SACK: negotiation, the receiver's blocks, the sender's RFC 6675 loss
//! recovery, by hand and over the simulated network against NewReno.

use super::sim::{LinkConfig, Outcome, Pair};
use super::tests::{addrs, drain, established, feed, no_sack, pattern};
use super::*;
use crate::wire::tcp;

#[test]
fn offered_on_syn_and_used_only_when_both_offer() {
    let cfg = |sack| Config {
        sack,
        ..Config::default()
    };
    for (c_on, s_on) in [(true, true), (true, false), (false, true), (false, false)] {
        let (a, b) = addrs();
        let mut c = Connection::connect(cfg(c_on), a, b, 1, 0);
        let syn = drain(&mut c, 0);
        assert_eq!(syn[0].repr().sack_permitted, c_on);
        let mut s = Connection::accept(cfg(s_on), b, a.ip(), &syn[0].repr(), 2, 0).unwrap();
        let sa = drain(&mut s, 1000);
        assert_eq!(
            sa[0].repr().sack_permitted,
            c_on && s_on,
            "a SYN-ACK offers SACK only if the SYN did"
        );
        feed(&mut c, 2000, &sa);
        feed(&mut s, 3000, &drain(&mut c, 2000));
        assert!(c.is_established() && s.is_established());
        assert_eq!((c.sack(), s.sack()), (c_on && s_on, c_on && s_on));
    }
}

#[test]
fn receiver_reports_the_latest_range_first() {
    let (mut c, mut s) = established(Config::default(), Config::default(), 1, 2);
    let mss = c.mss();
    c.write(&pattern(10 * mss));
    let segs = drain(&mut c, 10_000);
    assert_eq!(segs.len(), 10);
    let blk = |i: usize, j: usize| (SeqNum(2) + i * mss, SeqNum(2) + j * mss);
    let mut arrive = |i: usize| {
        feed(&mut s, 11_000, &segs[i..=i]);
        let acks = drain(&mut s, 11_000);
        assert_eq!(acks.len(), 1, "out of order: acked at once");
        acks[0].repr().sack.iter().collect::<Vec<_>>()
    };
    // 0, 2, 4, 6 missing for now
    assert_eq!(arrive(5), [blk(5, 6)]);
    assert_eq!(arrive(1), [blk(1, 2), blk(5, 6)]);
    assert_eq!(arrive(7), [blk(7, 8), blk(1, 2), blk(5, 6)]);
    // four ranges; three blocks fit beside the timestamps: 5's falls off
    assert_eq!(arrive(3), [blk(3, 4), blk(7, 8), blk(1, 2)]);
    // 6 joins 5 and 7: that range first, the others as reported before
    assert_eq!(arrive(6), [blk(5, 8), blk(3, 4), blk(1, 2)]);
    // 0 fills the first hole: 1 is delivered, no longer reported
    assert_eq!(arrive(0), [blk(5, 8), blk(3, 4)]);
    assert_eq!(arrive(2), [blk(5, 8)]);
    assert!(arrive(4).is_empty(), "no hole, no blocks");
    assert_eq!(s.recv_queue(), 8 * mss);

    // data sent while holding a hole carries blocks, and less payload
    // so that the segment still fits the MSS
    feed(&mut s, 12_000, &segs[9..10]);
    drain(&mut s, 12_000);
    s.write(&pattern(3 * mss));
    let out = drain(&mut s, 12_000);
    assert!(!out.is_empty());
    for seg in &out {
        let r = seg.repr();
        assert_eq!(r.sack.iter().collect::<Vec<_>>(), [blk(9, 10)]);
        assert!(
            seg.0.len() <= tcp::HEADER_LEN + 1460,
            "{} bytes: beyond the MSS",
            seg.0.len()
        );
    }
    assert_eq!(out[0].repr().payload.len(), mss - 12, "one block: 12 bytes");
}

/// The hand-driven case of `newreno_partial_ack_retransmits_next_hole`,
/// with SACK: both holes go again in the same round trip.
#[test]
fn both_holes_of_a_window_are_resent_at_once() {
    let (mut c, mut s) = established(Config::default(), Config::default(), 1, 2);
    let mss = c.mss();
    c.write(&pattern(10 * mss));
    let segs = drain(&mut c, 10_000);
    assert_eq!(segs.len(), 10);
    let mut acks = Vec::new();
    for (i, sg) in segs.iter().enumerate() {
        if i != 0 && i != 4 {
            feed(&mut s, 11_000, std::slice::from_ref(sg));
            acks.extend(drain(&mut s, 11_000));
        }
    }
    feed(&mut c, 12_000, &acks);
    let rx = drain(&mut c, 12_000);
    let seqs: Vec<SeqNum> = rx.iter().map(|r| r.repr().seq_number).collect();
    assert_eq!(
        seqs,
        [SeqNum(2), SeqNum(2) + 4 * mss],
        "both holes, nothing SACKed"
    );
    assert!(rx.iter().all(|r| r.repr().payload.len() == mss));
    let st = c.stats();
    assert_eq!((st.fast_retransmits, st.sack_recovery_retransmits), (1, 2));
    feed(&mut s, 13_000, &rx);
    let ack = drain(&mut s, 13_000);
    assert_eq!(ack.last().unwrap().repr().ack_number, SeqNum(2) + 10 * mss);
    feed(&mut c, 14_000, &ack);
    assert_eq!(c.stats().bytes_acked, 10 * mss as u64);
    assert_eq!(c.stats().rto_count, 0);
    let mut out = vec![0; 10 * mss];
    assert_eq!(s.read(&mut out), 10 * mss);
    assert_eq!(out, pattern(10 * mss));
}

#[test]
fn hostile_sack_blocks_are_ignored() {
    let (mut c, _s) = established(Config::default(), Config::default(), 1, 2);
    let mss = c.mss() as u32;
    c.write(&pattern(6 * mss as usize));
    drain(&mut c, 10_000);
    let (a, b) = addrs();
    let ack = |c: &mut Connection, blocks: &[(u32, u32)]| {
        let mut seg = TcpSegment::new(b.port(), a.port(), SeqNum(3), SeqNum(2), TcpFlags::ACK);
        seg.window_len = 1000;
        let edges = blocks.iter().map(|&(l, r)| (SeqNum(l), SeqNum(r)));
        let mut buf = [0; tcp::SACK_BUF];
        seg.sack = tcp::SackBlocks::encode(edges, &mut buf);
        c.handle_segment(11_000, &seg);
    };
    // beyond what was sent, below snd_una (a D-SACK), inverted, empty
    ack(
        &mut c,
        &[
            (2 + 100 * mss, 2 + 101 * mss),
            (0, 2),
            (2 + 3 * mss, 2 + mss),
            (5, 5),
        ],
    );
    assert!(c.scoreboard().is_empty());
    assert!(drain(&mut c, 11_000).is_empty());
    // straddling the cumulative ACK: cut to it
    ack(&mut c, &[(0, 2 + mss)]);
    assert_eq!(
        c.scoreboard().blocks(),
        [(SeqNum(2), SeqNum(2) + mss as usize)]
    );
    assert_eq!(c.stats().sack_recovery_retransmits, 0);
}

/// One bulk transfer over 100 Mbit/s, 10 ms each way, with a burst of
/// `k` consecutive data segments lost in one window: returns the sender's
/// stats (the smoothed RTT as of the loss) and how long recovery took, from
/// the first retransmission until everything sent before it was
/// acknowledged.
fn burst_recovery(sack: bool, k: u64) -> (Stats, u64) {
    let cfg = Config {
        sack,
        send_buffer: 1 << 20,
        recv_buffer: 1 << 20,
        ..Config::default()
    };
    let link = LinkConfig {
        delay: 10 * MS,
        bandwidth: 12_500_000,
        ..LinkConfig::default()
    };
    let c2s = LinkConfig {
        // frame 0 is the SYN, 1 the handshake's ACK: well into slow start
        drop: (200..200 + k).collect(),
        ..link.clone()
    };
    let n = 4 << 20;
    let mut p = Pair::new(cfg.clone(), cfg, c2s, link, 1, 2, pattern(n), 7);
    // the time of the step that sent the first retransmission
    let mut t0 = None;
    for _ in 0..1_000_000 {
        let t = p.now;
        assert!(p.step());
        if p.client.stats().retransmits > 0 {
            t0 = Some(t);
            break;
        }
    }
    let t0 = t0.expect("a loss was noticed");
    let (before, srtt) = (p.client.stats().bytes_sent, p.client.stats().srtt);
    assert!(
        p.run_until(1_000_000, 60 * SEC, |p| p.client.stats().bytes_acked
            >= before)
    );
    let took = p.now - t0;
    assert_eq!(p.run(10_000_000, 600 * SEC), Outcome::Completed);
    assert!(p.received == p.data);
    assert_eq!(p.link_stats()[0].lost, k);
    assert_eq!(p.client.sack(), sack);
    let mut st = p.client.stats();
    st.srtt = srtt;
    (st, took)
}

#[test]
fn a_burst_of_losses_is_recovered_in_about_one_round_trip() {
    for k in [4, 8, 16] {
        let (sack, sack_took) = burst_recovery(true, k);
        let (reno, reno_took) = burst_recovery(false, k);
        let rtt = sack.srtt;
        eprintln!(
            "{k} lost: SACK {} ms ({} resent, srtt {} ms), NewReno {} ms ({} resent, {} RTOs, srtt {} ms)",
            sack_took / MS,
            sack.retransmits,
            sack.srtt / MS,
            reno_took / MS,
            reno.retransmits,
            reno.rto_count,
            reno.srtt / MS,
        );
        assert_eq!(sack.rto_count, 0, "{k} lost: SACK needs no timeout");
        assert_eq!(sack.fast_retransmits, 1, "{k} lost: one recovery");
        assert_eq!(
            sack.sack_recovery_retransmits, k,
            "{k} lost: each hole once"
        );
        assert_eq!(sack.retransmits, k, "nothing SACKed is sent again");
        assert!(
            sack_took <= 2 * rtt,
            "{k} lost: SACK recovery took {} ms, RTT {} ms",
            sack_took / MS,
            rtt / MS
        );
        // NewReno learns of one hole per round trip (or times out)
        assert!(
            reno_took >= (k - 1) * rtt || reno.rto_count > 0,
            "{k} lost: NewReno took {} ms",
            reno_took / MS
        );
        assert!(reno_took > 2 * sack_took);
    }
}

#[test]
fn without_sack_on_either_side_recovery_is_newreno() {
    let (stats, _) = burst_recovery(false, 4);
    assert_eq!(stats.sack_recovery_retransmits, 0);
    assert!(stats.fast_retransmits >= 1);
    let mut p = Pair::new(
        Config::default(),
        no_sack(),
        LinkConfig {
            drop: (200..204).collect(),
            ..LinkConfig::default()
        },
        LinkConfig::default(),
        1,
        2,
        pattern(1 << 20),
        3,
    );
    assert_eq!(p.run(1_000_000, 600 * SEC), Outcome::Completed);
    assert!(!p.client.sack());
    assert_eq!(p.client.stats().sack_recovery_retransmits, 0);
    assert!(p.client.stats().retransmits >= 4);
}
