//! One interface over RTM_GETLINK: its index, name and the XDP programs
//! the kernel reports attached (IFLA_XDP), and detaching one of those
//! through RTM_SETLINK as `ip link set dev X xdp… off` does; and, for
//! testbeds, making a veth pair and setting a link up (RTM_NEWLINK).

use super::NlError;
use netlink_packet_core::{NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo as Info, LinkMessage, LinkXdp,
    XdpAttached,
};
use netlink_packet_route::RouteNetlinkMessage;

/// Where in the stack an XDP program runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdpMode {
    /// In the driver (XDP_ATTACHED_DRV).
    Driver,
    /// Generic, on the skb (XDP_ATTACHED_SKB).
    Generic,
    /// Offloaded to the NIC (XDP_ATTACHED_HW).
    Offload,
}

impl XdpMode {
    /// The XDP_FLAGS_*_MODE bit that names this mode when attaching or
    /// detaching.
    pub fn flag(self) -> u32 {
        match self {
            XdpMode::Generic => 1 << 1,
            XdpMode::Driver => 1 << 2,
            XdpMode::Offload => 1 << 3,
        }
    }

    /// As `ip link` names it.
    pub fn as_str(self) -> &'static str {
        match self {
            XdpMode::Driver => "xdpdrv",
            XdpMode::Generic => "xdpgeneric",
            XdpMode::Offload => "xdpoffload",
        }
    }
}

/// An XDP program on an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XdpProgram {
    pub mode: XdpMode,
    /// The kernel's program id.
    pub id: u32,
}

/// An interface as RTM_GETLINK describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkInfo {
    pub index: u32,
    pub name: String,
    /// Attached XDP programs, one per mode (several: XDP_ATTACHED_MULTI).
    pub xdp: Vec<XdpProgram>,
}

/// The question: interface `name`.
pub fn by_name_request(name: &str) -> RouteNetlinkMessage {
    let mut m = LinkMessage::default();
    m.attributes.push(LinkAttribute::IfName(name.to_string()));
    RouteNetlinkMessage::GetLink(m)
}

/// The question: interface number `index`.
pub fn by_index_request(index: u32) -> RouteNetlinkMessage {
    let mut m = LinkMessage::default();
    m.header.index = index;
    RouteNetlinkMessage::GetLink(m)
}

/// The request that detaches the `mode` program from interface `index`
/// (IFLA_XDP_FD = -1 with that mode's flag). The kernel refuses with EBUSY
/// when a bpf_link holds the program.
pub fn detach_request(index: u32, mode: XdpMode) -> RouteNetlinkMessage {
    let mut m = LinkMessage::default();
    m.header.index = index;
    m.attributes.push(LinkAttribute::Xdp(vec![
        LinkXdp::Fd(-1),
        LinkXdp::Flags(mode.flag()),
    ]));
    RouteNetlinkMessage::SetLink(m)
}

/// The request that makes veth `name` here with its peer `peer` in the
/// namespace open as `peer_ns`, each end with `queues` transmit and receive
/// queues (`ip link add NAME numtxqueues Q numrxqueues Q type veth peer
/// name PEER numtxqueues Q numrxqueues Q netns NS`).
pub fn veth_request(
    name: &str,
    peer: &str,
    queues: u32,
    peer_ns: std::os::fd::RawFd,
) -> RouteNetlinkMessage {
    let end = |n: &str| {
        vec![
            LinkAttribute::IfName(n.to_string()),
            LinkAttribute::NumTxQueues(queues),
            LinkAttribute::NumRxQueues(queues),
        ]
    };
    let mut p = LinkMessage::default();
    p.attributes = end(peer);
    p.attributes.push(LinkAttribute::NetNsFd(peer_ns));
    let mut m = LinkMessage::default();
    m.attributes = end(name);
    m.attributes.push(LinkAttribute::LinkInfo(vec![
        Info::Kind(InfoKind::Veth),
        Info::Data(InfoData::Veth(InfoVeth::Peer(p))),
    ]));
    RouteNetlinkMessage::NewLink(m)
}

/// The request that sets interface `index` up (`ip link set X up`).
pub fn up_request(index: u32) -> RouteNetlinkMessage {
    let mut m = LinkMessage::default();
    m.header.index = index;
    m.header.flags = LinkFlags::Up;
    m.header.change_mask = LinkFlags::Up;
    RouteNetlinkMessage::NewLink(m)
}

/// The programs an IFLA_XDP attribute lists: per-mode ids where the kernel
/// gives them, else the one id with the attached mode.
fn xdp_programs(nlas: &[LinkXdp]) -> Vec<XdpProgram> {
    let per_mode: Vec<XdpProgram> = nlas
        .iter()
        .filter_map(|n| match *n {
            LinkXdp::DrvProgId(id) => Some((XdpMode::Driver, id)),
            LinkXdp::SkbProgId(id) => Some((XdpMode::Generic, id)),
            LinkXdp::HwProgId(id) => Some((XdpMode::Offload, id)),
            _ => None,
        })
        .filter(|&(_, id)| id != 0)
        .map(|(mode, id)| XdpProgram { mode, id })
        .collect();
    if !per_mode.is_empty() {
        return per_mode;
    }
    let mode = nlas.iter().find_map(|n| match n {
        LinkXdp::Attached(XdpAttached::Driver) => Some(XdpMode::Driver),
        LinkXdp::Attached(XdpAttached::SocketBuffer) => Some(XdpMode::Generic),
        LinkXdp::Attached(XdpAttached::Hardware) => Some(XdpMode::Offload),
        _ => None,
    });
    let id = nlas.iter().find_map(|n| match n {
        LinkXdp::ProgId(id) if *id != 0 => Some(*id),
        _ => None,
    });
    mode.zip(id)
        .map(|(mode, id)| XdpProgram { mode, id })
        .into_iter()
        .collect()
}

/// The answer: the first interface in `replies`.
pub fn parse(replies: &[RouteNetlinkMessage]) -> Option<LinkInfo> {
    let m = replies.iter().find_map(|r| match r {
        RouteNetlinkMessage::NewLink(m) => Some(m),
        _ => None,
    })?;
    Some(LinkInfo {
        index: m.header.index,
        name: m.attributes.iter().find_map(|a| match a {
            LinkAttribute::IfName(n) => Some(n.clone()),
            _ => None,
        })?,
        xdp: m
            .attributes
            .iter()
            .find_map(|a| match a {
                LinkAttribute::Xdp(x) => Some(xdp_programs(x)),
                _ => None,
            })
            .unwrap_or_default(),
    })
}

fn get(req: RouteNetlinkMessage, what: &str) -> Result<LinkInfo, NlError> {
    parse(&super::ask(req, 0)?)
        .ok_or_else(|| NlError::Malformed(format!("no interface in the answer for {what}")))
}

/// Interface `name` in the calling thread's namespace.
pub fn by_name(name: &str) -> Result<LinkInfo, NlError> {
    get(by_name_request(name), name)
}

/// Interface number `index` in the calling thread's namespace.
pub fn by_index(index: u32) -> Result<LinkInfo, NlError> {
    get(by_index_request(index), &format!("ifindex {index}"))
}

/// Detach the `mode` XDP program from interface `index`.
pub fn detach_xdp(index: u32, mode: XdpMode) -> Result<(), NlError> {
    super::ask(detach_request(index, mode), NLM_F_ACK).map(drop)
}

/// Make veth `name` in the calling thread's namespace, its peer `peer` in
/// the namespace open as `peer_ns`.
pub fn add_veth(
    name: &str,
    peer: &str,
    queues: u32,
    peer_ns: impl std::os::fd::AsFd,
) -> Result<(), NlError> {
    use std::os::fd::AsRawFd;
    let req = veth_request(name, peer, queues, peer_ns.as_fd().as_raw_fd());
    super::ask(req, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL).map(drop)
}

/// Set interface `name` (in the calling thread's namespace) up.
pub fn set_up(name: &str) -> Result<(), NlError> {
    super::ask(up_request(by_name(name)?.index), NLM_F_ACK).map(drop)
}

#[cfg(test)]
mod tests {
    use super::super::recorded::replies;
    use super::*;

    #[test]
    fn xdp_programs_by_mode() {
        // a0 (ifindex 2) without XDP, then with `ip link set dev a0
        // xdpgeneric|xdpdrv obj steer.bpf.o sec xdp`.
        let l = parse(&replies(include_str!("testdata/link_no_xdp.hex"))).unwrap();
        assert_eq!((l.index, l.name.as_str(), l.xdp.len()), (2, "a0", 0));
        let l = parse(&replies(include_str!("testdata/link_xdp_generic.hex"))).unwrap();
        assert_eq!(l.xdp.len(), 1);
        assert_eq!(l.xdp[0].mode, XdpMode::Generic);
        let l = parse(&replies(include_str!("testdata/link_xdp_driver.hex"))).unwrap();
        assert_eq!(
            l.xdp,
            vec![XdpProgram {
                mode: XdpMode::Driver,
                id: 111
            }]
        );
    }

    #[test]
    fn several_modes_at_once() {
        // XDP_ATTACHED_MULTI (driver + offload): veth cannot show it, so
        // built by hand as the kernel's rtnl_xdp_fill lays it out.
        let nlas = [
            LinkXdp::Attached(XdpAttached::Multiple),
            LinkXdp::DrvProgId(5),
            LinkXdp::HwProgId(6),
        ];
        assert_eq!(
            xdp_programs(&nlas),
            vec![
                XdpProgram {
                    mode: XdpMode::Driver,
                    id: 5
                },
                XdpProgram {
                    mode: XdpMode::Offload,
                    id: 6
                }
            ]
        );
        assert!(xdp_programs(&[LinkXdp::Attached(XdpAttached::None)]).is_empty());
    }

    #[test]
    fn detaching_names_the_mode() {
        let RouteNetlinkMessage::SetLink(m) = detach_request(9, XdpMode::Generic) else {
            panic!("a SetLink");
        };
        assert_eq!(m.header.index, 9);
        assert_eq!(
            m.attributes,
            vec![LinkAttribute::Xdp(vec![LinkXdp::Fd(-1), LinkXdp::Flags(2)])]
        );
        assert_eq!(XdpMode::Driver.flag(), 4);
    }

    #[test]
    fn veth_peer_goes_to_the_other_namespace() {
        let RouteNetlinkMessage::NewLink(m) = veth_request("a", "b", 2, 7) else {
            panic!("a NewLink");
        };
        assert!(m.attributes.contains(&LinkAttribute::NumTxQueues(2)));
        let peer = m.attributes.iter().find_map(|a| match a {
            LinkAttribute::LinkInfo(i) => i.iter().find_map(|i| match i {
                Info::Data(InfoData::Veth(InfoVeth::Peer(p))) => Some(p.clone()),
                _ => None,
            }),
            _ => None,
        });
        let peer = peer.expect("a veth peer");
        assert!(peer.attributes.contains(&LinkAttribute::IfName("b".into())));
        assert!(peer.attributes.contains(&LinkAttribute::NetNsFd(7)));
        assert!(
            !m.attributes.contains(&LinkAttribute::NetNsFd(7)),
            "our end stays here"
        );
        let RouteNetlinkMessage::NewLink(m) = up_request(3) else {
            panic!("a NewLink");
        };
        assert_eq!((m.header.index, m.header.flags), (3, LinkFlags::Up));
        assert_eq!(m.header.change_mask, LinkFlags::Up);
    }
}
