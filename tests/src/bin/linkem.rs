//! Test helper: bridge two interfaces at layer 2 through an impaired delay
//! line (see `wirespeed_tests::linkem`).
//!
//!   linkem IF_A IF_B [--delay-us=N] [--loss=P] [--duplicate=P]
//!          [--reorder=P] [--reorder-by-us=N] [--seed=N]
//!
//! Runs until killed, or for ten minutes at most. Prints its counts to
//! stderr once a second when they changed.

use nix::libc;
use std::time::{Duration, Instant};
use wirespeed_tests::linkem::{Impairment, Line};

const MAX_RUN: Duration = Duration::from_secs(600);
const MAX_FRAME: usize = 65536;
/// Frames held in the line at most (a second of 1 Gb/s at 1500 bytes is 83k).
const CAP: usize = 200_000;

/// A raw socket on one interface that sees what arrives there, not what
/// we send out of it.
fn open(ifname: &str) -> std::io::Result<i32> {
    let proto = (libc::ETH_P_ALL as u16).to_be();
    // SAFETY: plain socket calls on values we own.
    unsafe {
        let fd = libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_NONBLOCK,
            i32::from(proto),
        );
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let name = std::ffi::CString::new(ifname).expect("no NUL");
        let index = libc::if_nametoindex(name.as_ptr());
        if index == 0 {
            return Err(std::io::Error::other(format!("no interface {ifname}")));
        }
        let one: libc::c_int = 1;
        const PACKET_IGNORE_OUTGOING: libc::c_int = 23;
        libc::setsockopt(
            fd,
            libc::SOL_PACKET,
            PACKET_IGNORE_OUTGOING,
            (&one as *const libc::c_int).cast(),
            4,
        );
        let mut sll: libc::sockaddr_ll = std::mem::zeroed();
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = proto;
        sll.sll_ifindex = index as i32;
        if libc::bind(
            fd,
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        ) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
        Ok(fd)
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        eprintln!("usage: linkem IF_A IF_B [--delay-us=N] [--loss=P] [--duplicate=P] [--reorder=P] [--reorder-by-us=N] [--seed=N]");
        std::process::exit(2);
    }
    let imp = Impairment::parse(&args[2..]).unwrap_or_else(|e| {
        eprintln!("linkem: {e}");
        std::process::exit(2)
    });
    let fds = [open(&args[0]), open(&args[1])].map(|r| {
        r.unwrap_or_else(|e| {
            eprintln!("linkem: {e}");
            std::process::exit(1)
        })
    });
    let mut line = Line::new(imp, CAP);
    let t0 = Instant::now();
    let now_us = || t0.elapsed().as_micros() as u64;
    let mut buf = vec![0u8; MAX_FRAME];
    let mut last_report = (Instant::now(), line.counts);
    while t0.elapsed() < MAX_RUN {
        let wait_ms = line
            .next_due()
            .map_or(10, |d| (d.saturating_sub(now_us()) / 1000).min(10) as i32);
        let mut pfd = fds.map(|fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        });
        // SAFETY: two pollfds we own.
        unsafe { libc::poll(pfd.as_mut_ptr(), 2, wait_ms) };
        for (i, p) in pfd.iter().enumerate() {
            if p.revents & libc::POLLIN == 0 {
                continue;
            }
            for _ in 0..256 {
                // SAFETY: reading into our buffer.
                let n = unsafe { libc::recv(p.fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
                if n <= 0 {
                    break;
                }
                line.push(now_us(), 1 - i, &buf[..n as usize]);
            }
        }
        while let Some((out, frame)) = line.pop_due(now_us()) {
            // SAFETY: sending our buffer on a bound packet socket.
            unsafe { libc::send(fds[out], frame.as_ptr().cast(), frame.len(), 0) };
        }
        if last_report.0.elapsed() >= Duration::from_secs(1) && last_report.1 != line.counts {
            eprintln!("linkem: {:?}", line.counts);
            last_report = (Instant::now(), line.counts);
        }
    }
}
