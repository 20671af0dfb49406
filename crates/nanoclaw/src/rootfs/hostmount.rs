//! A container without a mount namespace of its own (no `mount` entry in `linux.namespaces`):
//! it inherits the runtime's, as config-linux requires ("If a namespace type is not specified
//! in the namespaces array, the container MUST inherit the runtime namespace of that type").
//!
//! As runc does it: the init sets the rootfs up in the caller's mount namespace (`/` made
//! rslave there, or given rootfsPropagation; the rootfs self-bind; every mount), then
//! `chroot`s into it instead of `pivot_root` (which would swap the root of every process of
//! that namespace). `maskedPaths` / `readonlyPaths` are refused, as runc refuses them ("unable
//! to restrict sys entries without a private MNT namespace"); so is a new user namespace, which
//! holds no privilege over the caller's mount namespace.
//!
//! Where nanoclaw differs from runc 1.1.5, on purpose:
//! - runc leaves every mount of the container (the rootfs self-bind, /proc, /dev, /sys, the
//!   cgroup mounts...) in the caller's mount namespace after `delete`. nanoclaw records which
//!   mount held the rootfs path before `create` ([`record`]) and on `delete` (and when a failed
//!   `create` unwinds) detaches the mounts stacked on it since ([`cleanup`]).
//! - runc's `exec` into such a container joins no mount namespace and runs the process in the
//!   host's root. nanoclaw's `exec` chroots into the init's root (`/proc/<pid>/root`, opened
//!   through the pidfd-checked /proc directory).

use std::os::fd::AsFd;
use std::path::Path;

use nix::sched::CloneFlags;
use oci_spec::runtime::Linux;

use crate::spec::NamespacePlan;

/// The state-dir record of the mount that held the rootfs path before `create`.
pub const RECORD: &str = "rootfs-mount-id";

/// True when the container shares the runtime's mount namespace.
pub fn shares_mount_ns(ns: &NamespacePlan) -> bool {
    !ns.creates(CloneFlags::CLONE_NEWNS) && !ns.joins(CloneFlags::CLONE_NEWNS)
}

/// Refusals for a config without a mount namespace: (field, why).
pub fn check(linux: &Linux, ns: &NamespacePlan) -> Result<(), (String, String)> {
    if !shares_mount_ns(ns) {
        return Ok(());
    }
    for (field, set) in [
        ("linux.maskedPaths", linux.masked_paths().as_ref()),
        ("linux.readonlyPaths", linux.readonly_paths().as_ref()),
    ] {
        if set.is_some_and(|v| !v.is_empty()) {
            return Err((
                field.to_owned(),
                "unable to restrict sys entries without a private mount namespace (add a \"mount\" namespace, or drop the field)".to_owned(),
            ));
        }
    }
    if ns.has_userns() {
        return Err((
            "linux.namespaces".to_owned(),
            "a user namespace other than the runtime's has no privilege over the runtime's mount namespace, where the rootfs would be set up without a \"mount\" namespace: add one".to_owned(),
        ));
    }
    Ok(())
}

/// The id of the mount at `path` (the topmost one), or None when statx cannot tell.
pub fn mount_id(path: &Path) -> Option<u64> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).ok()?;
    // SAFETY: statx is all plain data; all-zero is a valid value.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is NUL-terminated and outlives the call; `stx` is ours to write.
    let r = unsafe {
        libc::statx(
            libc::AT_FDCWD,
            c.as_ptr(),
            libc::AT_STATX_DONT_SYNC,
            libc::STATX_MNT_ID,
            &mut stx,
        )
    };
    (r == 0 && stx.stx_mask & libc::STATX_MNT_ID != 0).then_some(stx.stx_mnt_id)
}

/// The inode of the calling process's mount namespace.
fn mount_ns() -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/thread-self/ns/mnt")
        .ok()
        .map(|m| m.ino())
}

/// Before the clone: the record of which mount holds the rootfs path now, and in which mount
/// namespace (`<namespace inode> <mount id>`).
pub fn record(rootfs: &Path) -> Option<(String, u64)> {
    let base = mount_id(rootfs)?;
    Some((format!("{} {base}", mount_ns()?), base))
}

/// Detaches what the container stacked on the rootfs path in the shared mount namespace:
/// every mount on top of `base` (the one recorded before `create`), topmost first. A lazy
/// detach takes the whole subtree below each (proc, dev, sys, cgroup mounts). Stops when the
/// path is back on `base`, or after a bounded number of steps.
pub fn cleanup(rootfs: &Path, base: u64) {
    for _ in 0..16 {
        match mount_id(rootfs) {
            Some(id) if id != base => {
                if nix::mount::umount2(rootfs, nix::mount::MntFlags::MNT_DETACH).is_err() {
                    return;
                }
            }
            _ => return,
        }
    }
}

/// `delete`: the same, from the record in the state dir, and only from the mount namespace
/// `create` ran in: mount ids of another namespace say nothing about this one's mounts.
pub fn cleanup_recorded(state_dir: &Path, rootfs: &Path) {
    let Ok(text) = std::fs::read_to_string(state_dir.join(RECORD)) else {
        return;
    };
    let mut it = text.split_whitespace().map(str::parse::<u64>);
    let (Some(Ok(ns)), Some(Ok(base))) = (it.next(), it.next()) else {
        return;
    };
    if mount_ns() == Some(ns) {
        cleanup(rootfs, base);
    } else {
        log::warn!(
            "the container's mounts under {} are in another mount namespace than this delete's; left there",
            rootfs.display()
        );
    }
}

/// In the init, instead of pivot_root: chroot into the rootfs (`root` is its O_PATH fd).
pub fn chroot_into(root: impl AsFd) -> Result<(), nix::Error> {
    nix::unistd::fchdir(root)?;
    nix::unistd::chroot(".")?;
    nix::unistd::chdir("/")
}
