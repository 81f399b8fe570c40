//! Test helper: attach the steering program to IFACE inside namespace NS,
//! print "attached", and hold it until killed. `xdp_steering.rs` kills it
//! with SIGKILL to check that nothing stays attached.

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(ns), Some(iface)) = (args.next(), args.next()) else {
        eprintln!("usage: hold-steering NS IFACE");
        std::process::exit(2);
    };
    let steering = wirespeed_tests::in_netns(&ns, || {
        wirespeed::datapath::xdp::loader::Steering::attach(&iface, &[], false)
    });
    match steering {
        Ok(_held) => {
            println!("attached");
            std::thread::sleep(std::time::Duration::from_secs(120));
        }
        Err(e) => {
            eprintln!("hold-steering: {e}");
            std::process::exit(1);
        }
    }
}
