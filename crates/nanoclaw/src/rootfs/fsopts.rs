//! Filesystem options (`mounts[].options` that are not mount flags) checked by the kernel
//! itself before anything is created: the options are given one by one to a filesystem
//! context (`fsopen` + `fsconfig`), which parses them exactly as mount(2) would (mount(2)
//! splits its data string and feeds the same parser), but never mounts anything. An option
//! the filesystem refuses is then reported as `mounts[N].options[M]` with the kernel's own
//! reason (`tmpfs: Unknown parameter 'foo'`), instead of a bare EINVAL from inside the init.
//!
//! Only filesystems whose options are plain values are checked this way (the ones engines put
//! in a config: tmpfs, devpts, mqueue, proc, sysfs, ramfs, hugetlbfs). Others, overlay above
//! all, resolve paths while parsing (`lowerdir=`), which may only exist inside the container
//! once earlier mounts are made: those options go to mount(2) in the init as before.
//!
//! Where the check cannot run (no CAP_SYS_ADMIN over our mount namespace, as for an
//! unprivileged rootless runtime; a kernel without the mount API; a filesystem type this
//! kernel cannot open a context for), it is skipped and the mount reports what it reports.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use nix::errno::Errno;

/// The filesystem types whose options are checked (see the module comment).
pub const CHECKED: &[&str] = &[
    "tmpfs",
    "devpts",
    "mqueue",
    "proc",
    "sysfs",
    "ramfs",
    "hugetlbfs",
];

const FSOPEN_CLOEXEC: libc::c_uint = 0x1;
const FSCONFIG_SET_FLAG: libc::c_uint = 0;
const FSCONFIG_SET_STRING: libc::c_uint = 1;

/// Why the filesystem refused option `index` (an index into the list given to [`check`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub index: usize,
    pub reason: String,
}

fn fsopen(fstype: &CString) -> Result<OwnedFd, Errno> {
    // SAFETY: fsopen(name, flags) reads the NUL-terminated `fstype`, which outlives the call,
    // and returns a new fd or -1.
    let r = unsafe { libc::syscall(libc::SYS_fsopen, fstype.as_ptr(), FSOPEN_CLOEXEC) };
    let fd = Errno::result(r)?;
    let fd = i32::try_from(fd).map_err(|_| Errno::EBADF)?;
    // SAFETY: the kernel returned a fresh fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn fsconfig(fd: &OwnedFd, key: &CString, value: Option<&CString>) -> Result<(), Errno> {
    let (cmd, value_ptr) = match value {
        Some(v) => (FSCONFIG_SET_STRING, v.as_ptr()),
        None => (FSCONFIG_SET_FLAG, std::ptr::null()),
    };
    // SAFETY: fsconfig(fd, cmd, key, value, aux): `key` and `value` are NUL-terminated and
    // outlive the call; a flag takes a null value and aux 0; `fd` is a live fs context.
    let r = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fd.as_raw_fd(),
            cmd,
            key.as_ptr(),
            value_ptr,
            0 as libc::c_int,
        )
    };
    Errno::result(r).map(drop)
}

/// The messages the kernel logged on the context (`e tmpfs: Unknown parameter 'foo'`), joined.
fn context_log(fd: &OwnedFd) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 512];
    // Each read returns one message; bounded so a chatty filesystem cannot keep us here.
    for _ in 0..8 {
        match nix::unistd::read(fd, &mut buf) {
            Ok(n) if n > 0 => {
                let msg = String::from_utf8_lossy(&buf[..n]);
                let msg = msg.trim_end();
                out.push(msg.get(2..).unwrap_or(msg).to_string());
            }
            _ => break,
        }
    }
    out.join("; ")
}

/// Gives `options` (`key` or `key=value`) to a new `fstype` context one by one; the first
/// one the filesystem refuses is returned. `Ok` also when the check cannot run here.
pub fn check(fstype: &str, options: &[&str]) -> Result<(), Refused> {
    if options.is_empty() || !CHECKED.contains(&fstype) {
        return Ok(());
    }
    let Ok(ty) = CString::new(fstype) else {
        return Ok(());
    };
    let Ok(fd) = fsopen(&ty) else {
        return Ok(());
    };
    for (index, opt) in options.iter().enumerate() {
        let (key, value) = match opt.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (*opt, None),
        };
        let (Ok(key), Ok(value)) = (CString::new(key), value.map(CString::new).transpose()) else {
            return Err(Refused {
                index,
                reason: "contains NUL".into(),
            });
        };
        if let Err(e) = fsconfig(&fd, &key, value.as_ref()) {
            let log = context_log(&fd);
            let reason = if log.is_empty() {
                format!("the {fstype} filesystem refuses it ({e})")
            } else {
                format!("the {fstype} filesystem refuses it: {log} ({e})")
            };
            return Err(Refused { index, reason });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> bool {
        nix::unistd::geteuid().is_root()
    }

    #[test]
    fn tmpfs_options_checked_by_the_kernel() {
        if !root() {
            eprintln!("SKIPPED: fsopen needs CAP_SYS_ADMIN");
            return;
        }
        assert_eq!(
            check("tmpfs", &["size=64k", "mode=1777", "nr_inodes=10"]),
            Ok(())
        );
        let r = check("tmpfs", &["size=64k", "tmpcopyup", "mode=755"]).unwrap_err();
        assert_eq!(r.index, 1);
        assert!(r.reason.contains("tmpcopyup"), "{}", r.reason);
        let r = check("tmpfs", &["size=lots"]).unwrap_err();
        assert_eq!(r.index, 0);
        assert!(
            r.reason.contains("tmpfs filesystem refuses it"),
            "{}",
            r.reason
        );
        // Not a checked type: left to mount(2).
        assert_eq!(check("overlay", &["lowerdir=/does/not/exist/yet"]), Ok(()));
    }

    #[test]
    fn devpts_takes_what_engines_give_it() {
        if !root() {
            eprintln!("SKIPPED: fsopen needs CAP_SYS_ADMIN");
            return;
        }
        assert_eq!(
            check(
                "devpts",
                &["newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]
            ),
            Ok(())
        );
    }
}
