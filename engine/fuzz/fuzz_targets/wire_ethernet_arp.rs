//! Ethernet and ARP: any bytes parse or fail without panicking, and what
//! parses emits back to the same meaning.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wirespeed::wire::arp::{self, ArpRepr};
use wirespeed::wire::ethernet::{self, EthernetRepr};

fn arp_round_trip(b: &[u8]) {
    let Ok(p) = arp::Packet::new_checked(b) else {
        return;
    };
    let _ = (
        p.source_hardware_addr(),
        p.target_protocol_addr(),
        p.operation(),
    );
    if let Ok(r) = ArpRepr::parse(&p) {
        let mut out = [0u8; arp::PACKET_LEN];
        r.emit(&mut arp::Packet::new_unchecked(&mut out[..]));
        let back = ArpRepr::parse(&arp::Packet::new_checked(&out[..]).unwrap()).unwrap();
        assert_eq!(back, r);
    }
}

fuzz_target!(|data: &[u8]| {
    arp_round_trip(data);
    let Ok(f) = ethernet::Frame::new_checked(data) else {
        return;
    };
    let _ = (f.dst_addr().is_multicast(), f.payload());
    let Ok(e) = EthernetRepr::parse(&f) else {
        return;
    };
    let mut out = data.to_vec();
    e.emit(&mut ethernet::Frame::new_unchecked(&mut out[..]));
    let back = EthernetRepr::parse(&ethernet::Frame::new_checked(&out[..]).unwrap()).unwrap();
    assert_eq!(back, e);
    arp_round_trip(f.payload());
});
