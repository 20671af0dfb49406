//! CVE-2019-5736 class: a container must never get a writable handle on the runtime binary.
//!
//! The container init (and an `exec`'d process until its execve) is a copy of this process, so
//! `/proc/<pid>/exe` names the runtime binary. A workload that reaches it — through
//! `/proc/<pid>/exe` of a process joining its pid namespace, or by making the init execve
//! `#!/proc/self/exe` — could keep the file open and write to it after the process exits,
//! replacing the binary the host runs as root next time.
//!
//! Two defences, as runc and crun use:
//! 1. the init is non-dumpable until execve (init.rs): other processes of the container cannot
//!    open its `/proc/<pid>/exe` without CAP_SYS_PTRACE;
//! 2. [`ensure`]: before creating anything, the runtime re-executes itself from an image of
//!    its binary that cannot be written, so even a process that does reach `/proc/<pid>/exe`
//!    holds a read-only handle, never a writable one on the host's file. Two ways, cheapest
//!    first:
//!    - [`ReadOnlyClone`]: a detached, read-only bind mount of the binary made with the new
//!      mount API (`open_tree(OPEN_TREE_CLONE)` + `mount_setattr(MOUNT_ATTR_RDONLY)`). It is
//!      never attached to any mount namespace (no mount event, nothing to clean up; it goes
//!      when the last process executing it exits), and a write through it fails with EROFS.
//!      Making it writable again takes `mount_setattr` on that very mount, which needs
//!      CAP_SYS_ADMIN (the default profile never grants it) and, once this process has
//!      exec'd and closed the clone's fd, is refused for any caller: the clone then belongs to
//!      no mount namespace. This is runc ≥ 1.2's choice too (it uses a read-only overlayfs).
//!      Cost: three syscalls, no copy.
//!    - [`SealedCopy`]: a memfd copy of the binary with every write seal
//!      (`F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE`), for callers that may not
//!      use the mount API (rootless: no CAP_SYS_ADMIN in the initial user namespace, or a
//!      kernel older than 5.12). Immutable even to CAP_SYS_ADMIN, at the price of copying the
//!      whole binary into memory on every command.
//!
//! A binary that already runs from a read-only mount or a sealed memfd is not re-executed.
//! The cost of the re-exec itself (one execve and dynamic link per `create`/`run`/`exec`) is
//! part of the `nanoclaw run` benchmark in BENCHMARKS.md.

use std::ffi::{CString, OsString};
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;

const SEALS: libc::c_int =
    libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("sealing the runtime binary: {what}: {source}")]
    Sys {
        what: &'static str,
        source: std::io::Error,
    },
    #[error("sealing the runtime binary: an argument or environment entry contains NUL")]
    Nul,
}

fn sys(what: &'static str) -> impl FnOnce(std::io::Error) -> SealError {
    move |source| SealError::Sys { what, source }
}

/// How the running binary is protected against writes through `/proc/<pid>/exe`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExeProtection {
    /// Runs from a read-only mount (a [`ReadOnlyClone`], or a binary installed on a read-only
    /// filesystem): opening it for writing fails with EROFS.
    ReadOnlyMount,
    /// Runs from a memfd carrying all of the write seals ([`SealedCopy`]).
    SealedMemfd,
    /// Runs from a writable file: [`ensure`] re-executes before touching any container.
    Writable,
}

/// Inspects `/proc/self/exe`.
pub fn current_protection() -> ExeProtection {
    let Ok(exe) = File::open("/proc/self/exe") else {
        return ExeProtection::Writable;
    };
    // SAFETY: F_GET_SEALS only reads the seals of an fd we own; a regular file returns EINVAL.
    let seals = unsafe { libc::fcntl(exe.as_raw_fd(), libc::F_GET_SEALS) };
    if seals >= 0 && seals & SEALS == SEALS {
        return ExeProtection::SealedMemfd;
    }
    match nix::sys::statvfs::fstatvfs(&exe) {
        Ok(st) if st.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY) => {
            ExeProtection::ReadOnlyMount
        }
        _ => ExeProtection::Writable,
    }
}

/// A look at the raw command line before it is parsed: true when some argument is `run`,
/// `create` or `exec`, the commands that put a process into a container. A false positive (a
/// container named `run`) costs one re-exec; a miss cannot happen for those commands, and the
/// check after parsing would still catch one.
pub fn may_create_process(args: impl IntoIterator<Item = OsString>) -> bool {
    args.into_iter()
        .skip(1)
        .any(|a| a == "run" || a == "create" || a == "exec")
}

/// Re-executes the current process from an image of its binary that cannot be written
/// (a [`ReadOnlyClone`], else a [`SealedCopy`]), with the same arguments and environment.
/// Returns `Ok(())` without doing anything when the binary is already protected; on success it
/// does not return.
pub fn ensure() -> Result<(), SealError> {
    if current_protection() != ExeProtection::Writable {
        return Ok(());
    }
    let image = match ReadOnlyClone::of_self() {
        Ok(clone) => clone.0,
        // EPERM: no CAP_SYS_ADMIN over our mount namespace (rootless); ENOSYS/EINVAL: a kernel
        // without the new mount API or without mount_setattr. Anything else is unexpected but
        // the sealed copy is always correct, only slower.
        Err(_) => SealedCopy::of_self()?.0,
    };
    reexec(&image)
}

/// A detached read-only bind mount of this process's binary, as an `O_PATH` fd.
pub struct ReadOnlyClone(OwnedFd);

impl ReadOnlyClone {
    /// The clone of the running binary.
    pub fn of_self() -> Result<Self, SealError> {
        Self::of(c"/proc/self/exe")
    }

    /// The clone of the file at `path` (symlinks, including magic links, followed).
    pub fn of(path: &std::ffi::CStr) -> Result<Self, SealError> {
        let flags = libc::OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint;
        // SAFETY: open_tree takes a dirfd, a NUL-terminated path and flags, and returns a new
        // fd or -1; `path` is a valid C string for the duration of the call.
        let fd =
            unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, path.as_ptr(), flags) };
        if fd < 0 {
            return Err(sys("open_tree(OPEN_TREE_CLONE) of the binary")(
                std::io::Error::last_os_error(),
            ));
        }
        let fd = libc::c_int::try_from(fd).map_err(|_| {
            sys("open_tree returned an out-of-range fd")(std::io::Error::from_raw_os_error(
                libc::EBADF,
            ))
        })?;
        // SAFETY: open_tree just returned this fd; nothing else owns it.
        let clone = unsafe { OwnedFd::from_raw_fd(fd) };
        let attr = libc::mount_attr {
            attr_set: libc::MOUNT_ATTR_RDONLY | libc::MOUNT_ATTR_NOSUID | libc::MOUNT_ATTR_NODEV,
            attr_clr: 0,
            propagation: 0,
            userns_fd: 0,
        };
        // SAFETY: mount_setattr reads `size_of::<mount_attr>()` bytes from `&attr`, which lives
        // across the call; the path is an empty C string used with AT_EMPTY_PATH on our fd.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_mount_setattr,
                clone.as_raw_fd(),
                c"".as_ptr(),
                libc::AT_EMPTY_PATH,
                &attr as *const libc::mount_attr,
                std::mem::size_of::<libc::mount_attr>(),
            )
        };
        if rc < 0 {
            return Err(sys(
                "mount_setattr(MOUNT_ATTR_RDONLY) on the binary's clone",
            )(std::io::Error::last_os_error()));
        }
        Ok(Self(clone))
    }
}

impl AsFd for ReadOnlyClone {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// A memfd copy of this process's binary carrying every write seal.
pub struct SealedCopy(OwnedFd);

impl SealedCopy {
    pub fn of_self() -> Result<Self, SealError> {
        let mut exe = File::open("/proc/self/exe").map_err(sys("open /proc/self/exe"))?;
        // SAFETY: memfd_create takes a NUL-terminated name and flags; it returns a new fd or -1.
        let fd = unsafe {
            libc::memfd_create(
                c"nanoclaw".as_ptr(),
                libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
            )
        };
        if fd < 0 {
            return Err(sys("memfd_create")(std::io::Error::last_os_error()));
        }
        // SAFETY: memfd_create just returned this fd; nothing else owns it.
        let memfd = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        let mut writer = &memfd;
        std::io::copy(&mut exe, &mut writer).map_err(sys("copy the binary into the memfd"))?;
        // SAFETY: F_ADD_SEALS on our own memfd; no pointers.
        if unsafe { libc::fcntl(memfd.as_raw_fd(), libc::F_ADD_SEALS, SEALS) } < 0 {
            return Err(sys("F_ADD_SEALS")(std::io::Error::last_os_error()));
        }
        Ok(Self(memfd.into()))
    }
}

impl AsFd for SealedCopy {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// execveat(`image`) with this process's arguments and environment; returns only on failure.
fn reexec(image: &OwnedFd) -> Result<(), SealError> {
    let to_c = |s: OsString| CString::new(s.into_vec()).map_err(|_| SealError::Nul);
    let argv: Vec<CString> = std::env::args_os().map(to_c).collect::<Result<_, _>>()?;
    let envp: Vec<CString> = std::env::vars_os()
        .map(|(k, v)| {
            let mut kv = k;
            kv.push("=");
            kv.push(v);
            to_c(kv)
        })
        .collect::<Result<_, _>>()?;
    let mut argv_ptrs: Vec<*mut libc::c_char> =
        argv.iter().map(|a| a.as_ptr().cast_mut()).collect();
    argv_ptrs.push(std::ptr::null_mut());
    let mut envp_ptrs: Vec<*mut libc::c_char> =
        envp.iter().map(|e| e.as_ptr().cast_mut()).collect();
    envp_ptrs.push(std::ptr::null_mut());
    // SAFETY: argv/envp are NULL-terminated arrays of pointers into CStrings that live until
    // the call returns (it only returns on failure), which the kernel only reads despite the
    // `*mut` in libc's signature; the path is an empty C string used with AT_EMPTY_PATH on
    // our fd (an O_PATH mount clone or a memfd). A close-on-exec fd is fine for an ELF binary.
    unsafe {
        libc::execveat(
            image.as_raw_fd(),
            c"".as_ptr(),
            argv_ptrs.as_ptr(),
            envp_ptrs.as_ptr(),
            libc::AT_EMPTY_PATH,
        )
    };
    Err(sys("execveat(protected image of the binary)")(
        std::io::Error::last_os_error(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn commands_that_create_processes_are_seen_before_parsing() {
        assert!(may_create_process(args(&["nanoclaw", "run", "c1"])));
        assert!(may_create_process(args(&[
            "nanoclaw", "--root", "/r", "create", "c1"
        ])));
        assert!(may_create_process(args(&[
            "nanoclaw", "--log", "l", "exec", "c1", "sh"
        ])));
        // argv[0] is never taken for the command.
        assert!(!may_create_process(args(&["run", "state", "c1"])));
        assert!(!may_create_process(args(&["nanoclaw", "state", "c1"])));
        assert!(!may_create_process(args(&[
            "nanoclaw", "delete", "--force", "runner"
        ])));
    }
}
