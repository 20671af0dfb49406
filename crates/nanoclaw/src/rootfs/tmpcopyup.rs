//! `tmpcopyup`: the content a directory has in the image is copied into the tmpfs mounted
//! over it (podman adds the option to `--read-only`'s /run, /tmp, /var/tmp and to every
//! `--tmpfs`), so files the image ships there stay visible, as runc does.
//!
//! The copy runs in the init before pivot_root, from an fd of the covered directory (opened
//! before the tmpfs hid it) into an fd of the new tmpfs root. Every step is relative to a
//! directory fd with `O_NOFOLLOW`/`AT_SYMLINK_NOFOLLOW`: symlinks in the image are copied as
//! symlinks and never followed, so nothing outside the directory can be read or written.
//! Kept: file content, directories, symlinks, fifos, sockets and device nodes, owners and
//! mode bits (setuid/setgid/sticky included). Not kept, as in runc: timestamps, extended
//! attributes, hard links (each name becomes its own file) and holes in sparse files.

use std::ffi::{CStr, CString, OsStr};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{FchmodatFlags, Mode, SFlag};
use nix::unistd::{Gid, Uid};

/// Directory levels copied at most (each level holds two directory fds open).
pub const MAX_DEPTH: usize = 128;

#[derive(Debug, thiserror::Error)]
pub enum CopyUpError {
    #[error("{path}: {what}: {source}")]
    Sys {
        path: PathBuf,
        what: &'static str,
        source: Errno,
    },
    #[error("{path}: more than {MAX_DEPTH} directory levels")]
    TooDeep { path: PathBuf },
    #[error("{path}: copying the content: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Copies everything inside directory `src` into directory `dst` (both opened `O_RDONLY |
/// O_DIRECTORY`). `src` itself (its mode and owner) is not copied: the caller mounts the tmpfs
/// with the directory's mode, as runc does. `shown` is the directory's path in the container,
/// for error messages.
pub fn copy_dir_contents(src: &OwnedFd, dst: &OwnedFd, shown: &Path) -> Result<(), CopyUpError> {
    copy_dir(src.as_fd(), dst.as_fd(), shown, 0)
}

fn sys(path: &Path, what: &'static str) -> impl FnOnce(Errno) -> CopyUpError {
    let path = path.to_path_buf();
    move |source| CopyUpError::Sys { path, what, source }
}

/// Names in directory `dir`, without `.` and `..`. Listed up front so no directory stream
/// stays open while the tree below is walked.
fn names(dir: BorrowedFd<'_>, shown: &Path) -> Result<Vec<CString>, CopyUpError> {
    let list = nix::dir::Dir::openat(
        dir,
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(sys(shown, "open to list"))?;
    let mut out = Vec::new();
    for entry in list {
        let entry = entry.map_err(sys(shown, "readdir"))?;
        let name = entry.file_name();
        if name.to_bytes() == b"." || name.to_bytes() == b".." {
            continue;
        }
        out.push(name.to_owned());
    }
    Ok(out)
}

fn open_dir(dir: BorrowedFd<'_>, name: &CStr, path: &Path) -> Result<OwnedFd, CopyUpError> {
    nix::fcntl::openat(
        dir,
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(sys(path, "open directory"))
}

fn copy_dir(
    src: BorrowedFd<'_>,
    dst: BorrowedFd<'_>,
    shown: &Path,
    depth: usize,
) -> Result<(), CopyUpError> {
    if depth >= MAX_DEPTH {
        return Err(CopyUpError::TooDeep {
            path: shown.to_path_buf(),
        });
    }
    for name in names(src, shown)? {
        let path = shown.join(OsStr::from_bytes(name.to_bytes()));
        let st = nix::sys::stat::fstatat(src, name.as_c_str(), AtFlags::AT_SYMLINK_NOFOLLOW)
            .map_err(sys(&path, "stat"))?;
        let kind = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits());
        let perm = Mode::from_bits_truncate(st.st_mode & 0o7777);
        let uid = Some(Uid::from_raw(st.st_uid));
        let gid = Some(Gid::from_raw(st.st_gid));
        match kind {
            SFlag::S_IFDIR => {
                nix::sys::stat::mkdirat(dst, name.as_c_str(), Mode::S_IRWXU)
                    .map_err(sys(&path, "mkdir"))?;
                let s = open_dir(src, &name, &path)?;
                let d = open_dir(dst, &name, &path)?;
                copy_dir(s.as_fd(), d.as_fd(), &path, depth + 1)?;
                // Owner before mode: chown clears the setuid/setgid bits.
                nix::unistd::fchown(&d, uid, gid).map_err(sys(&path, "chown"))?;
                nix::sys::stat::fchmod(&d, perm).map_err(sys(&path, "chmod"))?;
            }
            SFlag::S_IFREG => {
                // O_NONBLOCK: should the entry be swapped for a fifo after the stat, the open
                // does not hang the init (it has no effect on a regular file).
                let s = nix::fcntl::openat(
                    src,
                    name.as_c_str(),
                    OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK,
                    Mode::empty(),
                )
                .map_err(sys(&path, "open"))?;
                let d = nix::fcntl::openat(
                    dst,
                    name.as_c_str(),
                    OFlag::O_WRONLY
                        | OFlag::O_CREAT
                        | OFlag::O_EXCL
                        | OFlag::O_NOFOLLOW
                        | OFlag::O_CLOEXEC,
                    Mode::S_IRUSR | Mode::S_IWUSR,
                )
                .map_err(sys(&path, "create"))?;
                let mut s = std::fs::File::from(s);
                let mut d = std::fs::File::from(d);
                std::io::copy(&mut s, &mut d).map_err(|source| CopyUpError::Io {
                    path: path.clone(),
                    source,
                })?;
                nix::unistd::fchown(&d, uid, gid).map_err(sys(&path, "chown"))?;
                nix::sys::stat::fchmod(&d, perm).map_err(sys(&path, "chmod"))?;
            }
            SFlag::S_IFLNK => {
                let target =
                    nix::fcntl::readlinkat(src, name.as_c_str()).map_err(sys(&path, "readlink"))?;
                nix::unistd::symlinkat(target.as_os_str(), dst, name.as_c_str())
                    .map_err(sys(&path, "symlink"))?;
                nix::unistd::fchownat(dst, name.as_c_str(), uid, gid, AtFlags::AT_SYMLINK_NOFOLLOW)
                    .map_err(sys(&path, "chown"))?;
            }
            _ => {
                // Fifos, sockets and device nodes: a new node of the same type and number.
                nix::sys::stat::mknodat(dst, name.as_c_str(), kind, perm, st.st_rdev)
                    .map_err(sys(&path, "mknod"))?;
                nix::unistd::fchownat(dst, name.as_c_str(), uid, gid, AtFlags::AT_SYMLINK_NOFOLLOW)
                    .map_err(sys(&path, "chown"))?;
                // Not a symlink (just made by mknod): following is the same as not following.
                nix::sys::stat::fchmodat(dst, name.as_c_str(), perm, FchmodatFlags::FollowSymlink)
                    .map_err(sys(&path, "chmod"))?;
            }
        }
    }
    Ok(())
}
