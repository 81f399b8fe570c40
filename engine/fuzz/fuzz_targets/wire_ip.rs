//! IPv4 and IPv6: any bytes parse or fail without panicking; a header
//! that fails only its checksum parses once the checksum is filled; what
//! parses emits back to the same meaning.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wirespeed::wire::{ipv4, ipv6, Error};

fn v4(data: &[u8]) {
    let Ok(p) = ipv4::Packet::new_checked(data) else {
        return;
    };
    let _ = (p.payload(), p.dont_frag(), p.frag_offset());
    let r = match ipv4::Ipv4Repr::parse(&p) {
        Ok(r) => r,
        Err(Error::Checksum) => {
            let mut fixed = data.to_vec();
            let mut q = ipv4::Packet::new_checked(&mut fixed[..]).unwrap();
            q.fill_checksum();
            assert_ne!(ipv4::Ipv4Repr::parse(&q), Err(Error::Checksum));
            return;
        }
        Err(_) => return,
    };
    let mut out = vec![0u8; ipv4::HEADER_LEN + r.payload_len];
    r.emit(&mut ipv4::Packet::new_unchecked(&mut out[..]));
    let back = ipv4::Ipv4Repr::parse(&ipv4::Packet::new_checked(&out[..]).unwrap()).unwrap();
    assert_eq!(back, r);
}

fn v6(data: &[u8]) {
    let Ok(p) = ipv6::Packet::new_checked(data) else {
        return;
    };
    let _ = (p.payload(), p.flow_label());
    let Ok(r) = ipv6::Ipv6Repr::parse(&p) else {
        return;
    };
    let mut out = vec![0u8; ipv6::HEADER_LEN + r.payload_len];
    r.emit(&mut ipv6::Packet::new_unchecked(&mut out[..]));
    let back = ipv6::Ipv6Repr::parse(&ipv6::Packet::new_checked(&out[..]).unwrap()).unwrap();
    assert_eq!(back, r);
}

fuzz_target!(|data: &[u8]| {
    v4(data);
    v6(data);
});
