//! Which XDP programs an interface has, in which mode, and whether a
//! bpf_link holds them: the attachment from rtnetlink (IFLA_XDP), the
//! program's name and the links from the bpf syscall (through aya).
//! `doctor`, `cleanup` and the refusal to replace someone else's program
//! all ask here.

use crate::host::netlink::link::{self, XdpMode};
use crate::Result;

/// One XDP program on an interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attached {
    pub mode: XdpMode,
    /// The kernel's program id.
    pub id: u32,
    /// The program's name; None where the bpf syscall is refused (it needs
    /// CAP_SYS_ADMIN to look up another process's program).
    pub name: Option<String>,
    /// Held by a bpf_link, so kept attached by the process that owns the
    /// link (a running wirespeed) and not detachable over netlink; None
    /// where the links cannot be listed.
    pub link: Option<bool>,
}

impl Attached {
    /// For people: `"steer" (id 7, xdpdrv, held by a bpf_link)`.
    pub fn describe(&self) -> String {
        let link = match self.link {
            Some(true) => ", held by a bpf_link",
            Some(false) => ", attached without a bpf_link",
            None => "",
        };
        format!(
            "{:?} (id {}, {}{link})",
            self.name.as_deref().unwrap_or("?"),
            self.id,
            self.mode.as_str()
        )
    }
}

/// BPF_LINK_TYPE_XDP in the kernel's `enum bpf_link_type`.
const BPF_LINK_TYPE_XDP: u32 = 6;

/// The XDP programs on `iface` (index, programs) in the calling thread's
/// namespace.
pub fn on(iface: &str) -> Result<(u32, Vec<Attached>)> {
    let l =
        link::by_name(iface).map_err(|e| e.into_error(format!("reading {iface}'s XDP state")))?;
    let progs = l
        .xdp
        .iter()
        .map(|p| Attached {
            mode: p.mode,
            id: p.id,
            name: name_of(p.id),
            link: held_by_link(p.id, l.index),
        })
        .collect();
    Ok((l.index, progs))
}

/// Program `id`'s name, from the bpf syscall.
fn name_of(id: u32) -> Option<String> {
    aya::programs::loaded_programs()
        .filter_map(|p| p.ok())
        .find(|p| p.id() == id)
        .and_then(|p| p.name_as_str().map(str::to_string))
}

/// Whether an XDP bpf_link on interface `ifindex` holds program `id`.
/// (aya 0.13's `loaded_links` is public but doc(hidden); the kernel's
/// own answer, EBUSY on detach, backs it up in [`detach`].)
fn held_by_link(id: u32, ifindex: u32) -> Option<bool> {
    let mut unreadable = false;
    for l in aya::programs::loaded_links() {
        let Ok(l) = l else {
            // Not allowed to list links, or one went away meanwhile.
            unreadable = true;
            continue;
        };
        // SAFETY: the kernel fills the union's `xdp` member for XDP links.
        if l.type_ == BPF_LINK_TYPE_XDP
            && l.prog_id == id
            && unsafe { l.__bindgen_anon_1.xdp.ifindex } == ifindex
        {
            return Some(true);
        }
    }
    (!unreadable).then_some(false)
}

/// What detaching did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Detach {
    Detached,
    /// A bpf_link holds it (the kernel said EBUSY).
    HeldByLink,
}

/// Detach `p` from interface `ifindex` over netlink.
pub fn detach(ifindex: u32, p: &Attached) -> Result<Detach> {
    match link::detach_xdp(ifindex, p.mode) {
        Ok(()) => Ok(Detach::Detached),
        Err(e) if e.errno() == Some(nix::errno::Errno::EBUSY as i32) => Ok(Detach::HeldByLink),
        Err(e) => Err(e.into_error(format!(
            "detaching XDP program {} ({})",
            p.id,
            p.mode.as_str()
        ))),
    }
}
