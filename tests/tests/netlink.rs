//! Routes, neighbours and XDP state over rtnetlink against a real kernel:
//! three namespaces a - router - b, IPv4 and IPv6, routes via the router
//! (an IPv6 one through its link-local address). From a, the route to b
//! names a's interface, a's source and the router; the MAC to send to b
//! with is the router's, resolved when the table has none yet; an on-link
//! address nobody answers for fails within the bound, naming the hop.
//! `cleanup` detaches a program `ip` attached and leaves alone one that a
//! live bpf_link holds.

use std::net::IpAddr;
use std::time::{Duration, Instant};
use wirespeed::datapath::xdp::attached;
use wirespeed::datapath::xdp::loader::{attached_program, Steering};
use wirespeed::datapath::xdp::neigh::{resolve, route_to, Route};
use wirespeed::host::netlink::link::XdpMode;
use wirespeed::host::netlink::neigh::{self, Entry};
use wirespeed::host::netlink::{link, route};
use wirespeed_tests::process::run;
use wirespeed_tests::testbed::sh;
use wirespeed_tests::testbed::{ping, testbed, Testbed};
use wirespeed_tests::{bin, in_netns};

const A: usize = 0;
const ROUTER: usize = 1;
const B: usize = 2;
/// The router's link-local address on a's link, a's IPv6 gateway.
const ROUTER_LL: &str = "fe80::1:2";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// a (link 0) router (link 1) b, forwarding both ways.
fn routed() -> Testbed {
    let tb = testbed(3, &[(A, ROUTER), (ROUTER, B)]);
    let (l0, l1) = (&tb.links[0], &tb.links[1]);
    let ipn = |h: usize, args: &[&str]| {
        let mut v = vec!["-n", tb.ns(h)];
        v.extend_from_slice(args);
        sh("ip", &v).unwrap_or_else(|e| panic!("ip {v:?}: {e}"));
    };
    for key in ["net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"] {
        sh(
            "ip",
            &["netns", "exec", tb.ns(ROUTER), "sysctl", "-qw", key],
        )
        .unwrap();
    }
    ipn(
        ROUTER,
        &[
            "addr",
            "add",
            &format!("{ROUTER_LL}/64"),
            "dev",
            &l0.ifname[1],
            "nodad",
        ],
    );
    let (net0, net1) = ("198.18.0.0/24", "198.18.1.0/24");
    ipn(A, &["route", "add", net1, "via", &l0.v4[1].to_string()]);
    ipn(B, &["route", "add", net0, "via", &l1.v4[0].to_string()]);
    ipn(
        A,
        &[
            "-6",
            "route",
            "add",
            "2001:2:0:1::/64",
            "via",
            ROUTER_LL,
            "dev",
            &l0.ifname[0],
        ],
    );
    ipn(
        B,
        &[
            "-6",
            "route",
            "add",
            "2001:2::/64",
            "via",
            &l1.v6[0].to_string(),
        ],
    );
    // The kernel sends neighbour solicitations only from a link-local
    // address that passed DAD: wait for those (a second or two after the
    // links came up), as on any host whose links are not brand new.
    let deadline = Instant::now() + Duration::from_secs(10);
    for h in [A, ROUTER, B] {
        while !sh("ip", &["-n", tb.ns(h), "-6", "addr", "show", "tentative"])
            .unwrap()
            .trim()
            .is_empty()
        {
            assert!(
                Instant::now() < deadline,
                "DAD did not finish in {}",
                tb.ns(h)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    tb
}

/// `iface`'s MAC as host `h`'s sysfs has it.
fn sysfs_mac(tb: &Testbed, h: usize, iface: &str) -> [u8; 6] {
    let s = sh(
        "ip",
        &[
            "netns",
            "exec",
            tb.ns(h),
            "cat",
            &format!("/sys/class/net/{iface}/address"),
        ],
    )
    .unwrap();
    wirespeed::host::iface::parse_mac(s.trim()).expect("a MAC in sysfs")
}

#[test]
fn routes_name_interface_source_and_gateway() {
    let tb = routed();
    let (l0, l1) = (&tb.links[0], &tb.links[1]);
    let a_if = &l0.ifname[0];
    ping(&tb, A, l1.v4[1].into()).ok();
    ping(&tb, A, l1.v6[1].into()).ok();
    in_netns(tb.ns(A), || {
        let index = link::by_name(a_if).unwrap().index;
        for (dst, src, gw) in [
            (
                IpAddr::from(l1.v4[1]),
                IpAddr::from(l0.v4[0]),
                IpAddr::from(l0.v4[1]),
            ),
            (l1.v6[1].into(), l0.v6[0].into(), ip(ROUTER_LL)),
        ] {
            assert_eq!(route_to(dst), Route::Dev(a_if.clone()), "{dst}");
            let r = route::get(dst, None, None).unwrap();
            assert_eq!(
                (r.oif, r.src, r.gateway, r.local),
                (Some(index), Some(src), Some(gw), false),
                "{dst}"
            );
            // on-link: no gateway
            let r = route::get(gw, None, None).unwrap();
            assert_eq!((r.oif, r.gateway), (Some(index), None), "{gw}");
        }
        assert_eq!(route_to(l0.v4[0].into()), Route::Local);
        assert_eq!(route_to(l0.v6[0].into()), Route::Local);
        assert_eq!(route_to(ip("127.0.0.1")), Route::Local);
        // nothing routes there (no default route)
        assert_eq!(route_to(ip("198.19.200.1")), Route::Unknown);
        assert_eq!(route_to(ip("2001:2:0:ff::1")), Route::Unknown);
    });
}

#[test]
fn resolve_gives_the_routers_mac_and_resolves_missing_ones() {
    let tb = routed();
    let (l0, l1) = (&tb.links[0], &tb.links[1]);
    let a_if = &l0.ifname[0];
    let router_mac = sysfs_mac(&tb, ROUTER, &l0.ifname[1]);
    let b_mac = sysfs_mac(&tb, B, &l1.ifname[1]);
    assert_ne!(router_mac, b_mac);
    in_netns(tb.ns(A), || {
        let index = link::by_name(a_if).unwrap().index;
        for (local, dst, hop) in [
            (
                IpAddr::from(l0.v4[0]),
                IpAddr::from(l1.v4[1]),
                IpAddr::from(l0.v4[1]),
            ),
            (l0.v6[0].into(), l1.v6[1].into(), ip(ROUTER_LL)),
        ] {
            // A fresh namespace has no entry for the router yet.
            assert!(
                !matches!(neigh::lookup(hop, index).unwrap(), Entry::Usable(_)),
                "{hop} resolved before anything was sent"
            );
            let t = Instant::now();
            let mac = resolve(a_if, local, dst).unwrap_or_else(|e| panic!("{dst}: {e}"));
            assert_eq!(mac, router_mac, "{dst}: the router's MAC, not b's");
            assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
            assert_eq!(
                neigh::lookup(hop, index).unwrap(),
                Entry::Usable(router_mac)
            );
            // on-link to the router itself: the same MAC
            assert_eq!(resolve(a_if, local, hop).unwrap(), router_mac);
        }
    });
    // The resolved path carries traffic.
    ping(&tb, A, l1.v4[1].into()).ok();
    ping(&tb, A, l1.v6[1].into()).ok();
}

#[test]
fn unreachable_on_link_fails_within_the_bound_naming_the_hop() {
    let tb = routed();
    let l0 = &tb.links[0];
    let a_if = &l0.ifname[0];
    in_netns(tb.ns(A), || {
        for (local, dst) in [
            (IpAddr::from(l0.v4[0]), ip("198.18.0.77")),
            (l0.v6[0].into(), ip("2001:2::77")),
        ] {
            let t = Instant::now();
            let e = resolve(a_if, local, dst).expect_err("nobody answers for it");
            let took = t.elapsed();
            let msg = e.to_string();
            assert!(
                msg.contains(&dst.to_string()) && msg.contains(a_if.as_str()),
                "{msg}"
            );
            assert!(msg.contains("did not resolve"), "{msg}");
            assert!(
                took >= Duration::from_millis(900) && took < Duration::from_secs(3),
                "{dst}: {took:?}"
            );
        }
        let e = resolve(a_if, l0.v4[0], l0.v4[0]).expect_err("our own address");
        assert!(e.to_string().contains("address of this host"), "{e}");
        let e = resolve("nosuch0", l0.v4[0], l0.v4[1]).expect_err("no interface");
        assert!(e.to_string().contains("nosuch0"), "{e}");
    });
}

fn cleanup(tb: &Testbed, h: usize, iface: &str) -> String {
    let mut c = tb.cmd(h, &bin());
    c.args(["cleanup", "--iface", iface]);
    run(c, Duration::from_secs(30)).ok().stdout
}

#[test]
fn cleanup_detaches_what_ip_attached_in_driver_mode() {
    let tb = routed();
    let a_if = tb.links[0].ifname[0].clone();
    let obj = std::env::temp_dir().join(format!("ws-nl-steer-{}.o", std::process::id()));
    std::fs::write(&obj, wirespeed::datapath::xdp::loader::program_object()).unwrap();
    let attached = sh(
        "ip",
        &[
            "-n",
            tb.ns(A),
            "link",
            "set",
            "dev",
            &a_if,
            "xdpdrv",
            "obj",
            obj.to_str().unwrap(),
            "sec",
            "xdp.frags",
        ],
    );
    let _ = std::fs::remove_file(&obj);
    attached.unwrap();
    let (_, progs) = in_netns(tb.ns(A), || attached::on(&a_if)).unwrap();
    assert_eq!(progs.len(), 1, "{progs:?}");
    assert_eq!(progs[0].mode, XdpMode::Driver);
    assert_eq!(progs[0].name.as_deref(), Some("steer"));
    assert_eq!(progs[0].link, Some(false), "ip attaches without a bpf_link");
    let out = cleanup(&tb, A, &a_if);
    assert!(out.contains("detached wirespeed's XDP program"), "{out}");
    assert!(in_netns(tb.ns(A), || attached_program(&a_if)).is_none());
    let out = cleanup(&tb, A, &a_if);
    assert!(out.contains("no XDP program"), "{out}");
}

#[test]
fn cleanup_leaves_a_program_held_by_a_live_bpf_link() {
    let tb = routed();
    let a_if = tb.links[0].ifname[0].clone();
    let steer = in_netns(tb.ns(A), || Steering::attach(&a_if, &[], false)).expect("attaching");
    let (index, progs) = in_netns(tb.ns(A), || attached::on(&a_if)).unwrap();
    assert_eq!(progs.len(), 1, "{progs:?}");
    assert_eq!(
        progs[0].link,
        Some(true),
        "Steering attaches through a bpf_link"
    );
    // The kernel itself refuses netlink's detach of a link's program.
    assert_eq!(
        in_netns(tb.ns(A), || attached::detach(index, &progs[0])).unwrap(),
        attached::Detach::HeldByLink
    );
    let out = cleanup(&tb, A, &a_if);
    assert!(out.contains("held by a running wirespeed"), "{out}");
    assert!(in_netns(tb.ns(A), || attached_program(&a_if)).is_some());
    drop(steer);
    assert!(in_netns(tb.ns(A), || attached_program(&a_if)).is_none());
}
