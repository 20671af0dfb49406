//! `linux.sysctl`: only namespaced keys, and only when the container has its own namespace of
//! the right kind — anything else would change the host and is refused before anything is
//! created (the same rules as runc's `validateSysctl`).
//!
//! Values are written before pivot_root (and before readonlyPaths freezes /proc/sys) through
//! the container's own procfs: `<rootfs>/proc/sys` is resolved inside the rootfs and checked to be procfs (`PROC_SUPER_MAGIC`), and each key is opened
//! beneath it with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS |
//! RESOLVE_NO_XDEV)`, so a mount or symlink planted over /proc cannot redirect a write to another
//! file (the CVE-2025-52881 class).

use std::collections::HashMap;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::Path;

use nix::sched::CloneFlags;

use crate::spec::NamespacePlan;

/// sysctls of the IPC namespace (runc's list).
const IPC_KEYS: &[&str] = &[
    "kernel.msgmax",
    "kernel.msgmnb",
    "kernel.msgmni",
    "kernel.sem",
    "kernel.shmall",
    "kernel.shmmax",
    "kernel.shmmni",
    "kernel.shm_rmid_forced",
];

/// Longest key/value accepted (the kernel's own limits are far below this).
const MAX_LEN: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum SysctlError {
    #[error(
        "linux.sysctl.{key}: not a valid sysctl name (dot-separated components of [A-Za-z0-9_-])"
    )]
    BadKey { key: String },
    #[error(
        "linux.sysctl.{key}: value is empty, longer than {MAX_LEN} bytes or contains NUL/newline"
    )]
    BadValue { key: String },
    #[error("linux.sysctl.{key}: {reason}")]
    NotNamespaced { key: String, reason: String },
    #[error("linux.sysctl.{key}: /proc/sys is not procfs inside the container")]
    NotProcfs { key: String },
    #[error("linux.sysctl.{key}: writing /proc/sys/{path}: {source}")]
    Write {
        key: String,
        path: String,
        source: std::io::Error,
    },
}

/// Checks every key and value against the namespaces the container gets.
pub fn validate(
    sysctl: Option<&HashMap<String, String>>,
    ns: &NamespacePlan,
) -> Result<(), SysctlError> {
    let has = |flag| ns.creates(flag) || ns.joins(flag);
    let mut keys: Vec<(&String, &String)> = sysctl.into_iter().flatten().collect();
    keys.sort();
    for (key, value) in keys {
        let bad_key = key.is_empty()
            || key.len() > MAX_LEN
            || key.split('.').any(|c| {
                c.is_empty()
                    || !c
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            });
        if bad_key {
            return Err(SysctlError::BadKey { key: key.clone() });
        }
        if value.is_empty() || value.len() > MAX_LEN || value.contains(['\0', '\n']) {
            return Err(SysctlError::BadValue { key: key.clone() });
        }
        let refuse = |reason: &str| SysctlError::NotNamespaced {
            key: key.clone(),
            reason: reason.to_owned(),
        };
        if IPC_KEYS.contains(&key.as_str()) || key.starts_with("fs.mqueue.") {
            if !has(CloneFlags::CLONE_NEWIPC) {
                return Err(refuse(
                    "an IPC sysctl needs an ipc namespace in linux.namespaces",
                ));
            }
        } else if key.starts_with("net.") {
            if !has(CloneFlags::CLONE_NEWNET) {
                return Err(refuse(
                    "a net.* sysctl needs a network namespace in linux.namespaces",
                ));
            }
        } else if key == "kernel.domainname" {
            if !has(CloneFlags::CLONE_NEWUTS) {
                return Err(refuse("needs a uts namespace in linux.namespaces"));
            }
        } else if key == "kernel.hostname" {
            return Err(refuse(
                "set the container's hostname with the `hostname` field",
            ));
        } else {
            return Err(refuse(
                "not a namespaced sysctl: setting it would change the host (only IPC, fs.mqueue.*, net.* and kernel.domainname are per-container)",
            ));
        }
    }
    Ok(())
}

const PROC_SUPER_MAGIC: i64 = 0x9fa0;

/// Writes the sysctls through the container's `/proc/sys`, resolved inside `rootfs` (before
/// pivot_root: the container's procfs is mounted at `<rootfs>/proc` and readonlyPaths has not
/// frozen it yet). Call only with a map [`validate`] accepted.
pub fn apply(sysctl: Option<&HashMap<String, String>>, rootfs: &Path) -> Result<(), SysctlError> {
    let mut keys: Vec<(&String, &String)> = sysctl.into_iter().flatten().collect();
    if keys.is_empty() {
        return Ok(());
    }
    keys.sort();
    let first_key = keys.first().map(|(k, _)| (*k).clone()).unwrap_or_default();
    let io = |source: std::io::Error| SysctlError::Write {
        key: first_key.clone(),
        path: String::new(),
        source,
    };
    let root = std::fs::File::open(rootfs).map_err(io)?;
    let dir = open_proc_sys(&root).map_err(io)?;
    let st = nix::sys::statfs::fstatfs(&dir).map_err(|e| io(e.into()))?;
    if st.filesystem_type().0 as i64 != PROC_SUPER_MAGIC {
        return Err(SysctlError::NotProcfs { key: first_key });
    }
    for (key, value) in keys {
        let rel = key.replace('.', "/");
        let write_err = |source: std::io::Error| SysctlError::Write {
            key: key.clone(),
            path: rel.clone(),
            source,
        };
        let fd = openat2_beneath(&dir, &rel).map_err(write_err)?;
        let mut file = std::fs::File::from(fd);
        file.write_all(value.as_bytes()).map_err(write_err)?;
    }
    Ok(())
}

/// `proc/sys` under the container root, symlinks resolved inside it (a rootfs whose /proc is a
/// symlink cannot point this at the host's procfs; a non-procfs is refused by the caller).
fn open_proc_sys(root: &std::fs::File) -> std::io::Result<std::fs::File> {
    use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    loop {
        match openat2(root, "proc/sys", how) {
            Err(nix::Error::EAGAIN) | Err(nix::Error::EINTR) => continue,
            r => return r.map(std::fs::File::from).map_err(std::io::Error::from),
        }
    }
}

/// Opens `rel` for writing strictly beneath `dir`: no symlinks, no magic links, no mount
/// crossings, no `..` escapes.
fn openat2_beneath(dir: &std::fs::File, rel: &str) -> std::io::Result<OwnedFd> {
    use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
    let how = OpenHow::new()
        .flags(OFlag::O_WRONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW)
        .resolve(
            ResolveFlag::RESOLVE_BENEATH
                | ResolveFlag::RESOLVE_NO_SYMLINKS
                | ResolveFlag::RESOLVE_NO_MAGICLINKS
                | ResolveFlag::RESOLVE_NO_XDEV,
        );
    loop {
        match openat2(dir, rel, how) {
            Err(nix::Error::EAGAIN) | Err(nix::Error::EINTR) => continue,
            r => return r.map_err(std::io::Error::from),
        }
    }
}
