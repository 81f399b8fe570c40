//! The cost of predicting a flow's receive queue: the table-driven Toeplitz
//! hash over an IPv4 (12-byte) and IPv6 (36-byte) TCP input, and one port
//! placement on a 128-entry table over 4 queues.
//!
//!     cargo bench -p wirespeed-engine --bench rss

use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use std::net::SocketAddr;
use wirespeed::rss::{place, Fields, Flow, Rss, SPEC_KEY};

fn bench(c: &mut Criterion) {
    let rss = Rss::new(
        &SPEC_KEY,
        (0..128).map(|i| i % 4).collect(),
        Fields::AddrsPorts,
        Fields::AddrsPorts,
    )
    .unwrap();
    for (name, peer, local) in [
        ("ipv4", "198.18.0.2:5201", "198.18.0.1:40000"),
        ("ipv6", "[2001:2::2]:5201", "[2001:2::1]:40000"),
    ] {
        let (peer, local): (SocketAddr, SocketAddr) =
            (peer.parse().unwrap(), local.parse().unwrap());
        let input = Flow::new(peer, local).unwrap().input(Fields::AddrsPorts);
        c.bench_function(
            &format!("toeplitz {name} {} bytes", input.as_bytes().len()),
            |b| b.iter(|| rss.toeplitz().hash(black_box(input.as_bytes()))),
        );
        c.bench_function(&format!("place {name} port on queue 3 of 4"), |b| {
            b.iter(|| {
                place::local_port(&rss, black_box(peer), local.ip(), 3, 32768..=60999, |_| {
                    true
                })
                .unwrap()
            })
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
