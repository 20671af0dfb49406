//! `linux.maskedPaths` and `linux.readonlyPaths`: hide or freeze the parts of /proc and /sys
//! that reach past the container (/proc/kcore, /proc/keys, /proc/sysrq-trigger, /proc/sys, ...).
//!
//! * a masked file gets the null device bind-mounted over it, a masked directory an empty
//!   read-only tmpfs;
//! * a read-only path is bind-mounted onto itself and remounted read-only, keeping the
//!   nosuid/nodev/noexec flags the kernel locks in a user namespace.
//!
//! Race-free against a hostile rootfs (the CVE-2025-31133 / symlink-race class): every path is
//! resolved once with `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)` under the container
//! root into an `O_PATH` fd, and the mount targets that fd through `/proc/thread-self/fd/N`
//! (checked to be procfs), so nothing can swap the path between check and mount. The `/dev/null`
//! used for masking is opened without following a final symlink and must be the real null
//! device (char 1:3) — a rootfs that plants a symlink or another device there is refused rather
//! than bind-mounting an attacker-chosen file over a masked path. Paths that do not exist are
//! skipped, as runc does.

use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path};

use nix::mount::{mount, MsFlags};

#[derive(Debug, thiserror::Error)]
pub enum MaskError {
    #[error("linux.{list}[{index}]: {path:?} must be an absolute path without `..`")]
    BadPath {
        list: &'static str,
        index: usize,
        path: String,
    },
    #[error("linux.{list}[{index}] {path}: {what}: {source}")]
    Io {
        list: &'static str,
        index: usize,
        path: String,
        what: &'static str,
        source: std::io::Error,
    },
    #[error("linux.maskedPaths[{index}] {path}: the container's /dev/null is not the null device (char 1:3); refusing to bind it over a masked path")]
    FakeNull { index: usize, path: String },
    #[error("/proc/thread-self is not procfs: cannot address mount targets by fd")]
    NoProcfs,
    #[error(
        "linux.readonlyPaths[{index}] {path}: the path changed while it was being made read-only"
    )]
    Raced { index: usize, path: String },
}

/// Checks both lists (pure).
pub fn validate(masked: &[String], readonly: &[String]) -> Result<(), MaskError> {
    for (list, paths) in [("maskedPaths", masked), ("readonlyPaths", readonly)] {
        for (index, path) in paths.iter().enumerate() {
            let p = Path::new(path);
            let ok = p.is_absolute()
                && !path.contains('\0')
                && !p.components().any(|c| c == Component::ParentDir);
            if !ok {
                return Err(MaskError::BadPath {
                    list,
                    index,
                    path: path.clone(),
                });
            }
        }
    }
    Ok(())
}

const PROC_SUPER_MAGIC: i64 = 0x9fa0;

/// Applies `readonly` then `masked` under `root` (the container's root directory: the rootfs
/// before pivot_root, `/` after).
pub fn apply(root: &Path, masked: &[String], readonly: &[String]) -> Result<(), MaskError> {
    if masked.is_empty() && readonly.is_empty() {
        return Ok(());
    }
    let fd_dir = std::fs::File::open("/proc/thread-self/fd").map_err(|_| MaskError::NoProcfs)?;
    let st = nix::sys::statfs::fstatfs(&fd_dir).map_err(|_| MaskError::NoProcfs)?;
    if st.filesystem_type().0 as i64 != PROC_SUPER_MAGIC {
        return Err(MaskError::NoProcfs);
    }
    let root_fd = std::fs::File::open(root).map_err(|source| MaskError::Io {
        list: "maskedPaths",
        index: 0,
        path: root.display().to_string(),
        what: "opening the container root",
        source,
    })?;
    let root = std::os::fd::AsFd::as_fd(&root_fd);

    for (index, path) in readonly.iter().enumerate() {
        let io = |what, source| MaskError::Io {
            list: "readonlyPaths",
            index,
            path: path.clone(),
            what,
            source,
        };
        let Some(target) = open_in_root(root, path, true).map_err(|e| io("resolving", e))? else {
            continue;
        };
        let before = stat_fd(&target).map_err(|e| io("stat", e))?;
        let t = fd_path(&target);
        mount(
            Some(t.as_str()),
            t.as_str(),
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(|e| io("bind-mounting onto itself", e.into()))?;
        // Re-resolve: a path walk enters the new mount (the old fd still names the one below).
        let Some(top) = open_in_root(root, path, true).map_err(|e| io("resolving", e))? else {
            return Err(MaskError::Raced {
                index,
                path: path.clone(),
            });
        };
        let after = stat_fd(&top).map_err(|e| io("stat", e))?;
        if (after.dev(), after.ino()) != (before.dev(), before.ino()) {
            return Err(MaskError::Raced {
                index,
                path: path.clone(),
            });
        }
        let t = fd_path(&top);
        let locked = crate::rootfs::locked_flags(std::path::Path::new(&t))
            .map_err(|e| io("statfs", e.into()))?;
        mount(
            None::<&str>,
            t.as_str(),
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | locked,
            None::<&str>,
        )
        .map_err(|e| io("remounting read-only", e.into()))?;
    }

    let mut null: Option<OwnedFd> = None;
    for (index, path) in masked.iter().enumerate() {
        let io = |what, source| MaskError::Io {
            list: "maskedPaths",
            index,
            path: path.clone(),
            what,
            source,
        };
        let Some(target) = open_in_root(root, path, true).map_err(|e| io("resolving", e))? else {
            continue;
        };
        let meta = stat_fd(&target).map_err(|e| io("stat", e))?;
        let t = fd_path(&target);
        if meta.is_dir() {
            mount(
                Some("tmpfs"),
                t.as_str(),
                Some("tmpfs"),
                MsFlags::MS_RDONLY,
                Some("size=0"),
            )
            .map_err(|e| io("mounting an empty tmpfs over it", e.into()))?;
        } else {
            if null.is_none() {
                null = Some(
                    open_null(root)
                        .map_err(|e| io("opening /dev/null", e))?
                        .ok_or(MaskError::FakeNull {
                            index,
                            path: path.clone(),
                        })?,
                );
            }
            let Some(null_fd) = null.as_ref() else {
                return Err(MaskError::FakeNull {
                    index,
                    path: path.clone(),
                });
            };
            let n = fd_path(null_fd);
            mount(
                Some(n.as_str()),
                t.as_str(),
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(|e| io("bind-mounting /dev/null over it", e.into()))?;
        }
    }
    Ok(())
}

fn fd_path(fd: &OwnedFd) -> String {
    format!("/proc/thread-self/fd/{}", fd.as_raw_fd())
}

fn stat_fd(fd: &OwnedFd) -> std::io::Result<std::fs::Metadata> {
    std::fs::metadata(fd_path(fd))
}

/// Opens the container's /dev/null without following a final symlink; `None` unless it is the
/// null device.
fn open_null(root: BorrowedFd<'_>) -> std::io::Result<Option<OwnedFd>> {
    let Some(fd) = open_in_root(root, "/dev/null", false)? else {
        return Ok(None);
    };
    let meta = stat_fd(&fd)?;
    use std::os::unix::fs::FileTypeExt;
    let rdev = meta.rdev();
    let is_null = meta.file_type().is_char_device()
        && nix::sys::stat::major(rdev) == 1
        && nix::sys::stat::minor(rdev) == 3;
    Ok(is_null.then_some(fd))
}

/// `openat2(root, path, O_PATH, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`; `Ok(None)` when the
/// path does not exist. With `follow_final == false` a final symlink is opened as itself.
fn open_in_root(
    root: BorrowedFd<'_>,
    path: &str,
    follow_final: bool,
) -> std::io::Result<Option<OwnedFd>> {
    use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
    let rel = path.trim_start_matches('/');
    let rel = if rel.is_empty() { "." } else { rel };
    let mut flags = OFlag::O_PATH | OFlag::O_CLOEXEC;
    if !follow_final {
        flags |= OFlag::O_NOFOLLOW;
    }
    let how = OpenHow::new()
        .flags(flags)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    loop {
        match openat2(root, rel, how) {
            Ok(fd) => return Ok(Some(fd)),
            Err(nix::Error::ENOENT) => return Ok(None),
            Err(nix::Error::EAGAIN) | Err(nix::Error::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}
