//! `tcplite::frame::parse_frame`, what a datapath calls on every received
//! frame: any bytes parse or fail without panicking. A frame that fails
//! only a checksum is also tried with its IPv4 and TCP checksums filled,
//! so the fuzzer reaches the TCP parser behind them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::net::IpAddr;
use wirespeed::tcplite::frame::{parse_frame, HEADROOM_V4};
use wirespeed::wire::{ethernet, ipv4, tcp, Error};

/// Fill the IPv4 header and TCP checksums of an Ethernet/IPv4 frame in
/// place, if its lengths allow.
fn fix_v4(frame: &mut [u8]) -> Option<()> {
    let l3 = frame.get_mut(ethernet::HEADER_LEN..)?;
    let mut ip = ipv4::Packet::new_checked(&mut *l3).ok()?;
    ip.fill_checksum();
    let (h, t) = (ip.header_len(), usize::from(ip.total_len()));
    let (src, dst) = (IpAddr::V4(ip.src_addr()), IpAddr::V4(ip.dst_addr()));
    let seg = l3.get_mut(h..t)?;
    if seg.len() >= tcp::HEADER_LEN {
        tcp::Packet::new_unchecked(seg).fill_checksum(src, dst);
    }
    Some(())
}

fuzz_target!(|data: &[u8]| {
    match parse_frame(data) {
        Ok(f) => {
            let _ = (f.segment.segment_len(), f.src, f.dst);
        }
        Err(Error::Checksum) if data.len() >= HEADROOM_V4 => {
            let mut fixed = data.to_vec();
            if fix_v4(&mut fixed).is_some() {
                let _ = parse_frame(&fixed);
            }
        }
        Err(_) => {}
    }
});
