//! Reading a NIC's RSS configuration on interfaces that have none to give:
//! veth (single- and multi-queue) answers "unpredictable" with the reason,
//! never a panic and never a made-up key, so the caller falls back to
//! handing misrouted frames to their owner.

use wirespeed::host::rss;
use wirespeed_tests::in_netns;
use wirespeed_tests::testbed::{pair, pair_with_queues};

fn assert_unpredictable(answer: Result<wirespeed::rss::Rss, rss::Unpredictable>, iface: &str) {
    match answer {
        Ok(r) => panic!("{iface} is a veth and has no readable RSS, yet the reader gave {r:?}"),
        Err(why) => {
            let why = why.to_string();
            assert!(
                why.starts_with(iface)
                    && why.contains("driver veth")
                    && why.contains("ETHTOOL_GRSSH")
                    && why.contains("cannot be predicted"),
                "{why}"
            );
        }
    }
}

#[test]
fn veth_has_no_readable_rss() {
    let tb = pair();
    let l = &tb.links[0];
    for side in 0..2 {
        let answer = in_netns(tb.ns(side), || rss::read(&l.ifname[side]));
        assert_unpredictable(answer, &l.ifname[side]);
    }
}

#[test]
fn multi_queue_veth_has_no_readable_rss() {
    let tb = pair_with_queues(2);
    let l = &tb.links[0];
    let (answer, queues) = in_netns(tb.ns(0), || {
        (
            rss::read(&l.ifname[0]),
            wirespeed::host::iface::queue_count(&l.ifname[0]),
        )
    });
    assert_eq!(queues, 2, "the testbed made a two-queue veth");
    assert_unpredictable(answer, &l.ifname[0]);
}
