//! Named network namespaces made the way iproute2 makes them, without
//! running `ip`: a namespace is a file under `/run/netns` with the
//! namespace bind-mounted on it, so `ip netns`, `ip netns exec` and any
//! other tool see ours and we see theirs.
//!
//! A namespace is entered per thread (setns affects only the calling
//! thread), so [`within`] runs its work on a helper thread and the caller's
//! own namespace never changes; [`enter_for_exec`] is for a child process
//! between fork and exec.

use crate::{Error, Result};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
use std::fs::File;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

/// Where named namespaces live (iproute2's NETNS_RUN_DIR).
pub const RUN_DIR: &str = "/run/netns";

/// The file of namespace `name`.
pub fn path(name: &str) -> PathBuf {
    Path::new(RUN_DIR).join(name)
}

fn checked(name: &str) -> Result<PathBuf> {
    if name.is_empty() || name.len() > 64 || name.contains('/') || name.starts_with('.') {
        return Err(Error::Invalid(format!(
            "{name:?} is not a namespace name (1-64 characters, no '/', not starting with '.')"
        )));
    }
    Ok(path(name))
}

fn errno(what: String) -> impl FnOnce(nix::errno::Errno) -> Error {
    move |e| Error::io(what, std::io::Error::from(e))
}

/// Make `RUN_DIR` a shared mount point, so a namespace mounted on a file in
/// it propagates to other mount namespaces (as `ip netns add` does).
fn share_run_dir() -> Result<()> {
    std::fs::create_dir_all(RUN_DIR).map_err(|e| Error::io(format!("creating {RUN_DIR}"), e))?;
    let shared = || {
        mount(
            None::<&str>,
            RUN_DIR,
            None::<&str>,
            MsFlags::MS_SHARED | MsFlags::MS_REC,
            None::<&str>,
        )
    };
    match shared() {
        Err(nix::errno::Errno::EINVAL) => {
            // Not a mount point yet: make it one (bind onto itself).
            mount(
                Some(RUN_DIR),
                RUN_DIR,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .map_err(errno(format!("bind-mounting {RUN_DIR} onto itself")))?;
            shared().map_err(errno(format!("making {RUN_DIR} a shared mount")))
        }
        r => r.map_err(errno(format!("making {RUN_DIR} a shared mount"))),
    }
}

/// Create namespace `name`: the file, a fresh namespace made by a helper
/// thread, bind-mounted onto the file so it outlives the thread.
pub fn create(name: &str) -> Result<()> {
    let p = checked(name)?;
    share_run_dir()?;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&p)
        .map_err(|e| Error::io(format!("creating {}", p.display()), e))?;
    let made = std::thread::scope(|s| {
        s.spawn(|| {
            unshare(CloneFlags::CLONE_NEWNET).map_err(errno("unshare(CLONE_NEWNET)".into()))?;
            mount(
                Some("/proc/thread-self/ns/net"),
                &p,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(errno(format!(
                "bind-mounting the namespace on {}",
                p.display()
            )))
        })
        .join()
        .unwrap_or_else(|_| Err(Error::Invalid("namespace thread panicked".into())))
    });
    if made.is_err() {
        let _ = delete(name);
    }
    made
}

/// Delete namespace `name` (as `ip netns del`): unmount and remove the
/// file. The namespace itself, with its interfaces and qdiscs, goes when
/// its last process or mount goes.
pub fn delete(name: &str) -> Result<()> {
    let p = checked(name)?;
    // Not mounted (a half-made namespace) is fine: the unlink decides.
    let _ = umount2(&p, MntFlags::MNT_DETACH);
    std::fs::remove_file(&p).map_err(|e| Error::io(format!("removing {}", p.display()), e))
}

/// The names of all named namespaces (none when `RUN_DIR` is missing).
pub fn list() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(RUN_DIR) else {
        return Vec::new();
    };
    let mut v: Vec<String> = dir
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    v.sort();
    v
}

/// An open handle on namespace `name`, for setns.
pub fn open(name: &str) -> Result<File> {
    let p = checked(name)?;
    File::open(&p).map_err(|e| Error::io(format!("opening namespace {}", p.display()), e))
}

/// Run `f` on a helper thread inside namespace `name`: netlink sockets it
/// opens speak to that namespace. The caller's thread stays where it is.
pub fn within<T: Send>(name: &str, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    let ns = open(name)?;
    std::thread::scope(|s| {
        s.spawn(move || {
            setns(&ns, CloneFlags::CLONE_NEWNET)
                .map_err(errno(format!("entering namespace {name}")))?;
            f()
        })
        .join()
        .unwrap_or_else(|_| Err(Error::Invalid(format!("work in namespace {name} panicked"))))
    })
}

/// Move a forked child into namespace `ns` the way `ip netns exec` does:
/// setns, a private mount namespace, and a /sys that shows this network
/// namespace's interfaces (sysfs describes the namespace of whoever mounts
/// it). For `CommandExt::pre_exec`: only system calls, no allocation
/// (`label` must be short, as nix paths under 1 KiB stay on the stack).
pub fn enter_for_exec(ns: impl AsFd, label: &str) -> std::io::Result<()> {
    setns(ns, CloneFlags::CLONE_NEWNET)?;
    unshare(CloneFlags::CLONE_NEWNS)?;
    // Our mounts must not propagate back to the parent's namespace.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_SLAVE | MsFlags::MS_REC,
        None::<&str>,
    )?;
    let mut flags = MsFlags::empty();
    if umount2("/sys", MntFlags::MNT_DETACH).is_err() {
        // Could not unmount it: overlay it, read-only if it was.
        if nix::sys::statvfs::statvfs("/sys")
            .is_ok_and(|s| s.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY))
        {
            flags = MsFlags::MS_RDONLY;
        }
    }
    mount(Some(label), "/sys", Some("sysfs"), flags, None::<&str>)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_would_escape_the_directory_are_refused() {
        for bad in ["", "a/b", "..", ".x", &"n".repeat(65)] {
            assert!(checked(bad).is_err(), "{bad:?}");
        }
        assert_eq!(checked("wst-1-0-h0").unwrap(), path("wst-1-0-h0"));
    }
}
