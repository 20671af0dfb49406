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
//! 2. [`ensure`]: before creating anything, the runtime re-executes itself from a sealed memfd
//!    copy of its binary (`F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE`), so even a
//!    process that does reach `/proc/<pid>/exe` holds an immutable in-memory copy, never the
//!    file on the host.
//!
//! The cost is one copy of the binary into memory and one extra execve per `create`/`run`/
//! `exec` (measured in BENCHMARKS.md).

use std::ffi::{CString, OsString};
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
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

/// True when this process already runs from a memfd carrying all of [`SEALS`].
pub fn is_sealed() -> bool {
    let Ok(exe) = File::open("/proc/self/exe") else {
        return false;
    };
    // SAFETY: F_GET_SEALS only reads the seals of an fd we own; a regular file returns EINVAL.
    let seals = unsafe { libc::fcntl(exe.as_raw_fd(), libc::F_GET_SEALS) };
    seals >= 0 && seals & SEALS == SEALS
}

/// Re-executes the current process from a sealed memfd copy of its binary, with the same
/// arguments and environment. Returns `Ok(())` without doing anything when already sealed; on
/// success it does not return.
pub fn ensure() -> Result<(), SealError> {
    if is_sealed() {
        return Ok(());
    }
    let mut exe = File::open("/proc/self/exe").map_err(sys("open /proc/self/exe"))?;
    let name = c"nanoclaw";
    // SAFETY: memfd_create takes a NUL-terminated name and flags; it returns a new fd or -1.
    let fd =
        unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
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
    // `*mut` in libc's signature; the path is an empty C string used with
    // AT_EMPTY_PATH on our memfd. A close-on-exec fd is fine for an ELF binary.
    unsafe {
        libc::execveat(
            memfd.as_raw_fd(),
            c"".as_ptr(),
            argv_ptrs.as_ptr(),
            envp_ptrs.as_ptr(),
            libc::AT_EMPTY_PATH,
        )
    };
    Err(sys("execveat(memfd)")(std::io::Error::last_os_error()))
}
