//! Plain kernel TCP peers for TCP-lite's interop tests: a listener in
//! testbed host 1 that hashes all it reads, or one that sends
//! pseudo-random bytes and returns their hash (SHA-256, hex). Threads, not
//! child processes: nothing outlives the test binary.

use crate::in_netns;
use crate::testbed::Testbed;
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

/// Bytes as lowercase hex.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A kernel listener in host 1 that reads everything and returns
/// (bytes, sha256).
pub fn kernel_sink(tb: &Testbed, addr: &str) -> std::thread::JoinHandle<(u64, String)> {
    let l = in_netns(tb.ns(1), || TcpListener::bind(addr)).expect("listening");
    std::thread::spawn(move || {
        let (mut s, _) = l.accept().expect("a connection");
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut h = Sha256::new();
        let mut n = 0u64;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(k) => {
                    h.update(&buf[..k]);
                    n += k as u64;
                }
                Err(e) => panic!("kernel sink: {e}"),
            }
        }
        (n, hex(&h.finalize()))
    })
}

/// A kernel listener in host 1 that sends `n` pseudo-random bytes to the
/// first connection and closes; returns their sha256.
pub fn kernel_source(tb: &Testbed, addr: &str, n: usize) -> std::thread::JoinHandle<String> {
    let l = in_netns(tb.ns(1), || TcpListener::bind(addr)).expect("listening");
    let mut x = 0x1234_5678_9abc_def0u64;
    let data: Vec<u8> = (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let want = hex(&Sha256::digest(&data));
    std::thread::spawn(move || {
        let (mut s, _): (TcpStream, _) = l.accept().expect("a connection");
        s.set_write_timeout(Some(Duration::from_secs(30))).unwrap();
        s.write_all(&data).expect("kernel source writes");
        drop(s);
        want
    })
}
