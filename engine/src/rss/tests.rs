//! The hash against Microsoft's published verification vectors and the
//! plain bit-loop; placement against simulated indirection tables.

use super::place::{self, Placed};
use super::*;
use proptest::prelude::*;
use std::net::{IpAddr, SocketAddr};

/// The specification's definition, one input bit at a time: for every set
/// bit, XOR in the key's 32-bit window starting at that bit.
fn reference(key: &[u8], input: &[u8]) -> u32 {
    let bit = |i: usize| key.get(i / 8).is_some_and(|b| b & (0x80 >> (i % 8)) != 0);
    let mut window = (0..32).fold(0u32, |w, i| (w << 1) | u32::from(bit(i)));
    let mut h = 0;
    for (n, &byte) in input.iter().enumerate() {
        for b in 0..8 {
            if byte & (0x80 >> b) != 0 {
                h ^= window;
            }
            window = (window << 1) | u32::from(bit(n * 8 + b + 32));
        }
    }
    h
}

/// "Verifying the RSS Hash Calculation": source (the peer), destination
/// (us), hash of addresses only, hash of addresses and ports.
const VECTORS: [(&str, &str, u32, u32); 8] = [
    (
        "66.9.149.187:2794",
        "161.142.100.80:1766",
        0x323e8fc2,
        0x51ccc178,
    ),
    (
        "199.92.111.2:14230",
        "65.69.140.83:4739",
        0xd718262a,
        0xc626b0ea,
    ),
    (
        "24.19.198.95:12898",
        "12.22.207.184:38024",
        0xd2d0a5de,
        0x5c2b394a,
    ),
    (
        "38.27.205.30:48228",
        "209.142.163.6:2217",
        0x82989176,
        0xafc7327f,
    ),
    (
        "153.39.163.191:44251",
        "202.188.127.2:1303",
        0x5d1809c5,
        0x10e828a2,
    ),
    (
        "[3ffe:2501:200:1fff::7]:2794",
        "[3ffe:2501:200:3::1]:1766",
        0x2cc18cd5,
        0x40207d3d,
    ),
    (
        "[3ffe:501:8::260:97ff:fe40:efab]:14230",
        "[ff02::1]:4739",
        0x0f0c461c,
        0xdde51bbf,
    ),
    (
        "[3ffe:1900:4545:3:200:f8ff:fe21:67cf]:44251",
        "[fe80::200:f8ff:fe21:67cf]:38024",
        0x4b61e985,
        0x02d1feef,
    ),
];

/// RSS hashing addresses and ports for both families.
fn sdfn(key: &[u8], indir: Vec<u32>) -> Rss {
    Rss::new(key, indir, Fields::AddrsPorts, Fields::AddrsPorts).unwrap()
}

fn flow(peer: &str, local: &str) -> Flow {
    Flow::new(peer.parse().unwrap(), local.parse().unwrap()).unwrap()
}

#[test]
fn specification_vectors() {
    let t = Toeplitz::new(&SPEC_KEY).unwrap();
    for (src, dst, addrs, ports) in VECTORS {
        let f = flow(src, dst);
        for (fields, want) in [(Fields::Addrs, addrs), (Fields::AddrsPorts, ports)] {
            let input = f.input(fields);
            assert_eq!(
                t.hash(input.as_bytes()),
                want,
                "{src} -> {dst} {fields:?}: table"
            );
            assert_eq!(
                reference(&SPEC_KEY, input.as_bytes()),
                want,
                "{src} -> {dst} {fields:?}: bit loop"
            );
        }
    }
}

#[test]
fn the_hash_is_of_the_arriving_direction() {
    // The reply direction (src = us) is another hash: getting the
    // direction wrong must show.
    let t = Toeplitz::new(&SPEC_KEY).unwrap();
    let back = flow("161.142.100.80:1766", "66.9.149.187:2794");
    assert_ne!(
        t.hash(back.input(Fields::AddrsPorts).as_bytes()),
        0x51ccc178
    );
}

#[test]
fn input_layout() {
    let f = flow("198.18.0.1:258", "198.18.0.2:772");
    assert_eq!(
        f.input(Fields::AddrsPorts).as_bytes(),
        [198, 18, 0, 1, 198, 18, 0, 2, 1, 2, 3, 4]
    );
    assert_eq!(f.input(Fields::Addrs).as_bytes().len(), 8);
    assert_eq!(f.local_port_pos(), 10);
    let f6 = flow("[2001:2::1]:1", "[2001:2::2]:772");
    let b = f6.input(Fields::AddrsPorts);
    assert_eq!(b.as_bytes().len(), 36);
    assert_eq!(&b.as_bytes()[f6.local_port_pos()..], [3, 4]);
    assert!(Flow::new(
        "198.18.0.1:1".parse().unwrap(),
        "[2001:2::2]:2".parse().unwrap()
    )
    .is_err());
}

#[test]
fn refuses_what_it_cannot_predict() {
    let e = Toeplitz::new(&SPEC_KEY[..16]).unwrap_err().to_string();
    assert!(e.contains("16 bytes is too short"), "{e}");
    let e = Rss::new(
        &SPEC_KEY,
        vec![0; 96],
        Fields::AddrsPorts,
        Fields::AddrsPorts,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("96 entries is not a power of two"), "{e}");
    assert!(Rss::new(&SPEC_KEY, vec![], Fields::AddrsPorts, Fields::AddrsPorts).is_err());
}

#[test]
fn the_queue_is_the_entry_the_low_bits_pick() {
    // Each entry names its own index, so the queue is the entry number.
    let rss = sdfn(&SPEC_KEY, (0..128).collect());
    let f = flow("66.9.149.187:2794", "161.142.100.80:1766");
    assert_eq!(rss.hash(&f), 0x51ccc178);
    assert_eq!(rss.queue_of(&f), 0x51ccc178 & 127);
    let rss = Rss::new(
        &SPEC_KEY,
        (0..128).collect(),
        Fields::Addrs,
        Fields::AddrsPorts,
    )
    .unwrap();
    assert_eq!(rss.queue_of(&f), 0x323e8fc2 & 127);
    let f6 = flow("[3ffe:2501:200:1fff::7]:2794", "[3ffe:2501:200:3::1]:1766");
    assert_eq!(rss.queue_of(&f6), 0x40207d3d & 127);
}

proptest! {
    #[test]
    fn table_matches_the_bit_loop(
        key in proptest::collection::vec(any::<u8>(), MIN_KEY..=52),
        input in proptest::collection::vec(any::<u8>(), 0..=MAX_INPUT),
        split in 0..=MAX_INPUT,
    ) {
        let t = Toeplitz::new(&key).unwrap();
        prop_assert_eq!(t.hash(&input), reference(&key, &input));
        // linear: the parts' hashes XOR to the whole's
        let split = split.min(input.len());
        prop_assert_eq!(
            t.hash(&input[..split]) ^ t.hash_at(split, &input[split..]),
            t.hash(&input)
        );
    }
}

/// A key as drivers make them (random bytes), fixed for the test.
fn random_key() -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..52)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A table as `ethtool -X IF weight ...` spreads it: entry i goes to the
/// queue whose share of the weights holds i.
fn weighted(entries: usize, weights: &[u32]) -> Vec<u32> {
    let total: u32 = weights.iter().sum();
    (0..entries as u32)
        .map(|i| {
            let mut at = i * total / entries as u32;
            weights
                .iter()
                .position(|&w| {
                    let here = at < w;
                    at = at.saturating_sub(w);
                    here
                })
                .unwrap() as u32
        })
        .collect()
}

fn peers() -> [(SocketAddr, IpAddr); 2] {
    [
        (
            "198.18.0.2:5201".parse().unwrap(),
            "198.18.0.1".parse().unwrap(),
        ),
        (
            "[2001:2::2]:5201".parse().unwrap(),
            "2001:2::1".parse().unwrap(),
        ),
    ]
}

fn arrives_on(rss: &Rss, peer: SocketAddr, local: IpAddr, port: u16) -> u32 {
    rss.queue_of(&Flow::new(peer, SocketAddr::new(local, port)).unwrap())
}

#[test]
fn placement_over_even_and_uneven_tables() {
    let even: Vec<u32> = (0..128).map(|i| i % 4).collect();
    let uneven = weighted(128, &[12, 3, 1]);
    assert_eq!(uneven.iter().filter(|&&q| q == 2).count(), 8);
    let gaps: Vec<u32> = (0..64).map(|i| [2, 5][i % 2]).collect();
    for (key, indir) in [
        (SPEC_KEY.to_vec(), even.clone()),
        (random_key(), even),
        (SPEC_KEY.to_vec(), uneven.clone()),
        (random_key(), uneven),
        (random_key(), gaps),
    ] {
        let rss = sdfn(&key, indir);
        for (peer, local) in peers() {
            for q in rss.queues() {
                let port = place::local_port(&rss, peer, local, q, 32768..=60999, |_| true)
                    .unwrap_or_else(|e| panic!("{peer} queue {q}: {e}"));
                assert_eq!(arrives_on(&rss, peer, local, port), q, "{peer} port {port}");
                // the first such port: none before it lands there
                assert!((32768..port).all(|p| arrives_on(&rss, peer, local, p) != q));
                // deterministic
                let again = place::local_port(&rss, peer, local, q, 32768..=60999, |_| true);
                assert_eq!(again.unwrap(), port);
            }
        }
    }
}

#[test]
fn placement_skips_taken_ports_and_says_when_none_fits() {
    let rss = sdfn(&random_key(), (0..128).map(|i| i % 4).collect());
    let [(peer, local), _] = peers();
    let first = place::local_port(&rss, peer, local, 3, 40000..=49999, |_| true).unwrap();
    let mut asked = Vec::new();
    let next = place::local_port(&rss, peer, local, 3, 40000..=49999, |p| {
        asked.push(p);
        p != first
    })
    .unwrap();
    assert!(next > first && arrives_on(&rss, peer, local, next) == 3);
    assert_eq!(
        asked,
        [first, next],
        "only ports that land on the queue are asked about"
    );

    let e = place::local_port(&rss, peer, local, 3, 40000..=49999, |_| false)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("no free local port in 40000-49999") && e.contains("queue 3"),
        "{e}"
    );
    let e = place::local_port(&rss, peer, local, 7, 40000..=49999, |_| true)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("queue 7 is not in the NIC's indirection table"),
        "{e}"
    );
    // a one-port range that lands elsewhere
    let other = (40000..=49999u16)
        .find(|&p| arrives_on(&rss, peer, local, p) != 3)
        .unwrap();
    assert!(place::local_port(&rss, peer, local, 3, other..=other, |_| true).is_err());
    assert!(Flow::new(peer, "[2001:2::1]:1".parse().unwrap()).is_err());
    assert!(
        place::local_port(&rss, peer, "2001:2::1".parse().unwrap(), 3, 1..=2, |_| true).is_err()
    );
}

#[test]
fn addresses_only_pins_every_port_to_one_queue() {
    let rss = Rss::new(
        &SPEC_KEY,
        (0..128).map(|i| i % 4).collect(),
        Fields::Addrs,
        Fields::Addrs,
    )
    .unwrap();
    for (peer, local) in peers() {
        let home = arrives_on(&rss, peer, local, 1);
        assert_eq!(
            place::local_port(&rss, peer, local, home, 40000..=40010, |p| p > 40003).unwrap(),
            40004
        );
        let e = place::local_port(&rss, peer, local, (home + 1) % 4, 40000..=49999, |_| true)
            .unwrap_err()
            .to_string();
        assert!(e.contains("hashes only addresses"), "{e}");
    }
}

#[test]
fn flows_round_robin_on_distinct_ports() {
    assert_eq!(place::round_robin(5, &[3, 1]), [3, 1, 3, 1, 3]);
    assert!(place::round_robin(5, &[]).is_empty());
    let rss = sdfn(&random_key(), weighted(512, &[1, 1, 1, 2]));
    for (peer, local) in peers() {
        for (queues, n) in [(vec![0, 1, 2, 3], 16), (vec![1, 3], 1024)] {
            let placed =
                place::flows(&rss, peer, local, &queues, n, 32768..=60999, |p| p % 7 != 0).unwrap();
            assert_eq!(placed.len(), n);
            let mut ports: Vec<u16> = placed.iter().map(|p| p.port).collect();
            ports.sort_unstable();
            ports.dedup();
            assert_eq!(ports.len(), n, "ports are distinct");
            for (i, &Placed { port, queue }) in placed.iter().enumerate() {
                assert_eq!(queue, queues[i % queues.len()]);
                assert_eq!(
                    arrives_on(&rss, peer, local, port),
                    queue,
                    "{peer} flow {i}"
                );
                assert!(port % 7 != 0 && (32768..=60999).contains(&port));
            }
        }
        // a range too small for the flows asked
        let e = place::flows(&rss, peer, local, &[0, 1], 64, 40000..=40063, |_| true)
            .unwrap_err()
            .to_string();
        assert!(e.contains("after placing"), "{e}");
        assert!(place::flows(&rss, peer, local, &[], 1, 1..=9, |_| true).is_err());
    }
}
