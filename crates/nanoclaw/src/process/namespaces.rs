//! Namespaces: cloning the init into new namespaces, joining namespaces given by path, and
//! writing the user namespace's uid/gid maps from the parent.
//!
//! The init is created with `clone3` and the `CLONE_NEW*` flags of every namespace the spec
//! creates. A user or pid namespace given by `path` must be entered *before* the clone (a pid
//! namespace only applies to children; namespaces created afterwards must be owned by the
//! joined user namespace), so in that case a short-lived intermediate process joins them and
//! clones the init with `CLONE_PARENT`, which keeps the runtime as the init's parent.
//!
//! A namespace file given by path is checked before anything is created ([`open_ns`]:
//! it must be on nsfs and `NS_GET_NSTYPE` must name the listed type) and again on the fd the
//! parent opens ([`open_joins`]), so a path swapped in between is caught too. The init joins
//! the remaining namespaces in runc's order (ipc, uts, net, pid, mount, cgroup, time; user and
//! pid were entered before the clone): a joined mount namespace is entered after ipc/uts/net,
//! and the rootfs is then set up *inside it* (rslave or rootfsPropagation, rootfs bind, mounts,
//! pivot_root), as runc does. pivot_root there also moves the root of every other process of
//! that namespace whose root was the namespace's root, and the container's mounts stay in the
//! namespace after the container is gone: joining a mount namespace hands it to the container.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::{open, OFlag};
use nix::sched::CloneFlags;
use nix::sys::stat::Mode;
use nix::sys::wait::waitpid;
use nix::unistd::Pid;

use crate::spec::{IdMap, Plan};

#[derive(Debug, thiserror::Error)]
pub enum NamespaceError {
    #[error("{field}: {path}: {problem}")]
    NotNamespace {
        field: String,
        path: PathBuf,
        problem: NsFileError,
    },
    #[error("{field}: setns: {source}")]
    Join { field: String, source: nix::Error },
    #[error("{field}: setns into the mount namespace: {source} (joining a mount namespace needs CAP_SYS_ADMIN in the user namespace that owns it: a rootless container can only join one owned by the user namespace it joins)")]
    JoinMountDenied { field: String, source: nix::Error },
    #[error(
        "root.path: {rootfs} is not a directory in the joined mount namespace ({field}): {source}"
    )]
    RootfsNotInJoinedMount {
        field: String,
        rootfs: PathBuf,
        source: nix::Error,
    },
    #[error("{field}: the joined mount namespace has no procfs at /proc in which this process is visible (/proc/self/fd: {detail}); the rootfs is set up through /proc/self/fd")]
    NoProcInJoinedMount { field: String, detail: String },
    #[error("clone3 of the container init (flags {flags:#x}): {source}")]
    Clone { flags: u64, source: nix::Error },
    #[error("intermediate process for joining user/pid namespaces failed: {0}")]
    Intermediate(String),
    #[error("writing {what} of pid {pid}: {source}")]
    IdMap {
        what: &'static str,
        pid: i32,
        source: std::io::Error,
    },
    #[error("{tool} for pid {pid} failed: {detail}")]
    IdMapTool {
        tool: &'static str,
        pid: i32,
        detail: String,
    },
}

/// Why a `linux.namespaces[].path` is not the namespace it is listed as.
#[derive(Debug, thiserror::Error)]
pub enum NsFileError {
    #[error("{0}")]
    Sys(nix::Error),
    #[error("not a namespace file (filesystem magic {magic:#x}, nsfs expected)")]
    NotNsfs { magic: u64 },
    #[error("is a {found} namespace, not a {want} namespace")]
    WrongType {
        found: &'static str,
        want: &'static str,
    },
}

/// Identity of a namespace (device and inode of its nsfs file), as `readlink` shows the inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NsId {
    pub dev: u64,
    pub ino: u64,
}

/// The OCI `type` name of a namespace flag (for messages).
pub fn type_name(flag: CloneFlags) -> &'static str {
    match flag.bits() {
        libc::CLONE_NEWNS => "mount",
        libc::CLONE_NEWCGROUP => "cgroup",
        libc::CLONE_NEWUTS => "uts",
        libc::CLONE_NEWIPC => "ipc",
        libc::CLONE_NEWUSER => "user",
        libc::CLONE_NEWPID => "pid",
        libc::CLONE_NEWNET => "network",
        libc::CLONE_NEWTIME => "time",
        _ => "unknown",
    }
}

/// Checks an open namespace file: on nsfs, and of type `want` (`NS_GET_NSTYPE`). Returns its
/// identity.
pub fn inspect_fd(fd: BorrowedFd<'_>, want: CloneFlags) -> Result<NsId, NsFileError> {
    let fs = nix::sys::statfs::fstatfs(fd).map_err(NsFileError::Sys)?;
    if fs.filesystem_type() != nix::sys::statfs::NSFS_MAGIC {
        return Err(NsFileError::NotNsfs {
            magic: fs.filesystem_type().0 as u64,
        });
    }
    // SAFETY: NS_GET_NSTYPE takes no argument and only reads the fd's namespace; fd is a
    // valid open file for the duration of the call (borrowed).
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::NS_GET_NSTYPE) };
    let found = nix::Error::result(r).map_err(NsFileError::Sys)?;
    if found != want.bits() {
        return Err(NsFileError::WrongType {
            found: type_name(CloneFlags::from_bits_retain(found)),
            want: type_name(want),
        });
    }
    let st = nix::sys::stat::fstat(fd).map_err(NsFileError::Sys)?;
    Ok(NsId {
        dev: st.st_dev,
        ino: st.st_ino,
    })
}

/// Opens a namespace path and checks it (validation, and again when the parent opens the
/// fds it joins). The path is opened `O_PATH` first (no open side effects: a fifo or a device
/// is never really opened), checked to be on nsfs, and only then reopened for reading through
/// `/proc/self/fd`, which reopens that same inode, so a path swapped in between does not count.
pub fn open_ns(path: &Path, want: CloneFlags) -> Result<(OwnedFd, NsId), NsFileError> {
    let opath =
        open(path, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty()).map_err(NsFileError::Sys)?;
    let fs = nix::sys::statfs::fstatfs(&opath).map_err(NsFileError::Sys)?;
    if fs.filesystem_type() != nix::sys::statfs::NSFS_MAGIC {
        return Err(NsFileError::NotNsfs {
            magic: fs.filesystem_type().0 as u64,
        });
    }
    let fd = open(
        format!("/proc/self/fd/{}", opath.as_raw_fd()).as_str(),
        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(NsFileError::Sys)?;
    let id = inspect_fd(fd.as_fd(), want)?;
    Ok((fd, id))
}

/// Identity of a namespace link such as `/proc/self/ns/mnt`, if it can be read.
pub fn id_of_link(path: &Path) -> Option<NsId> {
    nix::sys::stat::stat(path).ok().map(|st| NsId {
        dev: st.st_dev,
        ino: st.st_ino,
    })
}

/// A namespace to join, opened by the parent before the clone so the child never resolves a
/// host path.
#[derive(Debug)]
pub struct JoinFd {
    pub flag: CloneFlags,
    pub fd: OwnedFd,
    pub field: String,
}

/// Opens every `linux.namespaces[].path` (O_CLOEXEC: they never reach the workload) and
/// checks, on the opened fd, that it still is the namespace type it is listed as.
pub fn open_joins(plan: &Plan) -> Result<Vec<JoinFd>, NamespaceError> {
    plan.namespaces
        .join
        .iter()
        .map(|(flag, path, field)| {
            let (fd, _) = open_ns(path, *flag).map_err(|problem| NamespaceError::NotNamespace {
                field: field.clone(),
                path: path.clone(),
                problem,
            })?;
            Ok(JoinFd {
                flag: *flag,
                fd,
                field: field.clone(),
            })
        })
        .collect()
}

/// runc's order for joining namespaces (`configs.NamespaceTypes()`); user and pid are
/// entered before the clone (see [`spawn_init`]) and are not in this list.
const JOIN_ORDER: [CloneFlags; 6] = [
    CloneFlags::CLONE_NEWIPC,
    CloneFlags::CLONE_NEWUTS,
    CloneFlags::CLONE_NEWNET,
    CloneFlags::CLONE_NEWNS,
    CloneFlags::CLONE_NEWCGROUP,
    CloneFlags::from_bits_retain(libc::CLONE_NEWTIME),
];

/// Joins the given namespaces (in the child, after clone) in `JOIN_ORDER`. User and pid
/// were joined before the clone and are skipped here. A joined mount namespace sets the
/// init's root and cwd to that namespace's root: everything the rootfs setup resolves by
/// path from here on (root.path, bind sources, /proc) is looked up inside it.
pub fn join(joins: &[JoinFd]) -> Result<(), NamespaceError> {
    for flag in JOIN_ORDER {
        for j in joins.iter().filter(|j| j.flag == flag) {
            nix::sched::setns(j.fd.as_fd(), j.flag).map_err(|source| {
                if flag == CloneFlags::CLONE_NEWNS && source == nix::Error::EPERM {
                    NamespaceError::JoinMountDenied {
                        field: j.field.clone(),
                        source,
                    }
                } else {
                    NamespaceError::Join {
                        field: j.field.clone(),
                        source,
                    }
                }
            })?;
        }
    }
    Ok(())
}

/// After joining a mount namespace (in the init): the rootfs setup needs `root.path` as a
/// directory and a procfs at /proc whose `self` is this process (mounts target
/// `/proc/self/fd/N`). Checked here so a namespace without them fails with an error naming
/// the field, before anything is mounted in it.
pub fn check_joined_mount(plan: &Plan, joins: &[JoinFd]) -> Result<(), NamespaceError> {
    let Some(j) = joins.iter().find(|j| j.flag == CloneFlags::CLONE_NEWNS) else {
        return Ok(());
    };
    let field = j.field.clone();
    let no_proc = |detail: String| NamespaceError::NoProcInJoinedMount {
        field: field.clone(),
        detail,
    };
    let fs = nix::sys::statfs::statfs("/proc/self/fd").map_err(|e| no_proc(e.to_string()))?;
    if fs.filesystem_type() != nix::sys::statfs::PROC_SUPER_MAGIC {
        return Err(no_proc(format!(
            "filesystem magic {:#x}, not procfs",
            fs.filesystem_type().0
        )));
    }
    open(
        plan.rootfs.as_path(),
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map(drop)
    .map_err(|source| NamespaceError::RootfsNotInJoinedMount {
        field,
        rootfs: plan.rootfs.clone(),
        source,
    })
}

/// include/uapi/linux/sched.h (libc's constant is an overflowing `c_int`).
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// Kernel `struct clone_args` (include/uapi/linux/sched.h), version 0 (64 bytes) plus
/// set_tid/cgroup fields; all fields are u64 per the ABI.
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// fork-like clone3: returns 0 in the child, the child's pid in the parent.
///
/// # Safety
/// The calling process must be single-threaded (as with `fork`): the child gets a copy of the
/// address space with only the calling thread, so locks held by other threads would never be
/// released. The `nanoclaw` binary is single-threaded; `container::create` checks it.
unsafe fn clone3(flags: u64, cgroup: Option<BorrowedFd<'_>>) -> Result<i32, nix::Error> {
    // With CLONE_PARENT the kernel takes the exit signal from the parent's thread group and
    // refuses (EINVAL) a nonzero exit_signal in clone_args.
    let exit_signal = if flags & libc::CLONE_PARENT as u64 != 0 {
        0
    } else {
        libc::SIGCHLD as u64
    };
    let (flags, cgroup) = match cgroup {
        Some(fd) => (
            flags | CLONE_INTO_CGROUP,
            u64::try_from(fd.as_raw_fd()).map_err(|_| nix::Error::EBADF)?,
        ),
        None => (flags, 0),
    };
    let args = CloneArgs {
        flags,
        exit_signal,
        cgroup,
        ..Default::default()
    };
    // SAFETY: args is a valid clone_args of the size passed; stack 0 means the child runs on
    // a copy of the parent's stack (fork semantics). Single-threadedness is the caller's
    // contract.
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if r < 0 {
        return Err(nix::Error::last());
    }
    Ok(r as i32)
}

/// The container init as [`spawn_init`] created it.
#[derive(Debug, Clone, Copy)]
pub struct Spawned {
    /// In the runtime's pid namespace.
    pub pid: Pid,
    /// Created inside the cgroup given to [`spawn_init`] (`CLONE_INTO_CGROUP`): it needs no
    /// `add_process`.
    pub in_cgroup: bool,
}

/// Runs `child` in a new process in the namespaces of `plan` and returns its pid (in the
/// runtime's pid namespace). `child` must never return: it execs or exits.
///
/// With `cgroup` (a cgroup2 directory) the init is created in that cgroup, as crun does, when
/// the kernel allows it (5.7+, and the runtime creates the init itself: not through the
/// intermediate that joins user/pid namespaces); otherwise [`Spawned::in_cgroup`] is false and
/// the caller places it.
///
/// # Safety
/// Same contract as `clone3`: the caller is single-threaded.
pub unsafe fn spawn_init(
    plan: &Plan,
    joins: &[JoinFd],
    cgroup: Option<BorrowedFd<'_>>,
    child: impl FnOnce() -> i32,
) -> Result<Spawned, NamespaceError> {
    // The cgroup namespace is unshared by the init after the parent placed it in the
    // container's cgroup (init.rs), so the namespace is rooted at that cgroup, as in runc.
    // Likewise the time namespace: its offsets can only be written before a process is in it,
    // so the init unshares it (time_for_children), writes the offsets and enters it at execve.
    let create = (plan.namespaces.create
        - CloneFlags::CLONE_NEWCGROUP
        - CloneFlags::from_bits_retain(libc::CLONE_NEWTIME))
    .bits() as u32 as u64;
    let pre = joins
        .iter()
        .filter(|j| j.flag == CloneFlags::CLONE_NEWUSER || j.flag == CloneFlags::CLONE_NEWPID)
        .collect::<Vec<_>>();
    if pre.is_empty() {
        // A failed CLONE_INTO_CGROUP (an older kernel, or a cgroup the kernel refuses) creates
        // nothing: the plain clone follows, and the caller's cgroup.procs write then reports
        // any real problem with the cgroup by its path.
        // SAFETY: single-threaded caller (function contract).
        let placed = cgroup.and_then(|fd| unsafe { clone3(create, Some(fd)) }.ok());
        let in_cgroup = placed.is_some();
        let pid = match placed {
            Some(pid) => pid,
            // SAFETY: single-threaded caller (function contract).
            None => unsafe { clone3(create, None) }.map_err(|source| NamespaceError::Clone {
                flags: create,
                source,
            })?,
        };
        if pid == 0 {
            let code = run_child(child);
            // SAFETY: _exit never returns and skips atexit handlers that belong to the parent.
            unsafe { libc::_exit(code) }
        }
        return Ok(Spawned {
            pid: Pid::from_raw(pid),
            in_cgroup,
        });
    }

    // Intermediate: joins user then pid, clones the init as a sibling (CLONE_PARENT), reports
    // its pid on a pipe and exits.
    let (rd, wr) = nix::unistd::pipe2(OFlag::O_CLOEXEC)
        .map_err(|source| NamespaceError::Clone { flags: 0, source })?;
    // SAFETY: single-threaded caller (function contract).
    let mid =
        unsafe { clone3(0, None) }.map_err(|source| NamespaceError::Clone { flags: 0, source })?;
    if mid == 0 {
        drop(rd);
        let mut ordered = pre;
        ordered.sort_by_key(|j| j.flag != CloneFlags::CLONE_NEWUSER);
        let mut code = 0;
        let mut report: i32 = -1;
        for j in ordered {
            if let Err(e) = nix::sched::setns(j.fd.as_fd(), j.flag) {
                let _ = nix::unistd::write(&wr, format!("{}: setns: {e}", j.field).as_bytes());
                // SAFETY: _exit in the intermediate child.
                unsafe { libc::_exit(1) }
            }
        }
        // SAFETY: the intermediate is single-threaded (a fork of a single-threaded parent).
        match unsafe { clone3(create | libc::CLONE_PARENT as u64, None) } {
            Ok(0) => {
                drop(wr);
                let c = run_child(child);
                // SAFETY: _exit in the init child.
                unsafe { libc::_exit(c) }
            }
            Ok(pid) => report = pid,
            Err(e) => {
                let _ = nix::unistd::write(&wr, format!("clone3: {e}").as_bytes());
                code = 1;
            }
        }
        if report > 0 {
            let _ = nix::unistd::write(&wr, &report.to_ne_bytes());
        }
        // SAFETY: _exit in the intermediate child.
        unsafe { libc::_exit(code) }
    }
    drop(wr);
    let mut buf = [0u8; 512];
    let n = nix::unistd::read(&rd, &mut buf).unwrap_or(0);
    let _ = waitpid(Pid::from_raw(mid), None);
    match (n, buf.first_chunk::<4>()) {
        (4, Some(b)) if i32::from_ne_bytes(*b) > 0 => Ok(Spawned {
            pid: Pid::from_raw(i32::from_ne_bytes(*b)),
            in_cgroup: false,
        }),
        _ => Err(NamespaceError::Intermediate(
            String::from_utf8_lossy(buf.get(..n).unwrap_or_default()).into_owned(),
        )),
    }
}

fn run_child(child: impl FnOnce() -> i32) -> i32 {
    // A panic must never unwind into the parent's copy of the stack frames.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(child)).unwrap_or(70)
}

fn map_lines(maps: &[IdMap]) -> String {
    maps.iter()
        .map(|m| format!("{} {} {}\n", m.container_id, m.host_id, m.size))
        .collect()
}

/// True when the maps can be written directly by this (possibly unprivileged) runtime: as
/// root always; otherwise only one range mapping exactly the caller's own id.
fn direct_ok(maps: &[IdMap], own: u32, euid: u32) -> bool {
    euid == 0
        || (maps.len() == 1
            && maps
                .first()
                .is_some_and(|m| m.host_id == own && m.size == 1))
}

/// Writes the uid and gid maps of the init's new user namespace. Returns true when
/// `setgroups` had to be denied (an unprivileged runtime writing gid_map itself).
pub fn write_id_maps(pid: Pid, plan: &Plan) -> Result<bool, NamespaceError> {
    let euid = nix::unistd::geteuid().as_raw();
    let egid = nix::unistd::getegid().as_raw();
    let p = pid.as_raw();
    let mut setgroups_denied = false;
    if direct_ok(&plan.gid_mappings, egid, euid) {
        if euid != 0 {
            write_proc(p, "setgroups", "deny")?;
            setgroups_denied = true;
        }
        write_proc(p, "gid_map", &map_lines(&plan.gid_mappings))?;
    } else {
        run_map_tool("newgidmap", p, &plan.gid_mappings)?;
    }
    if direct_ok(&plan.uid_mappings, euid, euid) {
        write_proc(p, "uid_map", &map_lines(&plan.uid_mappings))?;
    } else {
        run_map_tool("newuidmap", p, &plan.uid_mappings)?;
    }
    Ok(setgroups_denied)
}

fn write_proc(pid: i32, what: &'static str, content: &str) -> Result<(), NamespaceError> {
    std::fs::write(format!("/proc/{pid}/{what}"), content.as_bytes())
        .map_err(|source| NamespaceError::IdMap { what, pid, source })
}

fn run_map_tool(tool: &'static str, pid: i32, maps: &[IdMap]) -> Result<(), NamespaceError> {
    let mut cmd = std::process::Command::new(tool);
    cmd.arg(pid.to_string());
    for m in maps {
        cmd.arg(m.container_id.to_string())
            .arg(m.host_id.to_string())
            .arg(m.size.to_string());
    }
    let out = cmd.output().map_err(|e| NamespaceError::IdMapTool {
        tool,
        pid,
        detail: e.to_string(),
    })?;
    if !out.status.success() {
        return Err(NamespaceError::IdMapTool {
            tool,
            pid,
            detail: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(())
}

/// Sets the UTS names (the plan guarantees a new uts namespace when they are set).
pub fn set_uts(hostname: Option<&str>, domainname: Option<&str>) -> Result<(), nix::Error> {
    if let Some(h) = hostname {
        nix::unistd::sethostname(h)?;
    }
    if let Some(d) = domainname {
        let c = CString::new(d).map_err(|_| nix::Error::EINVAL)?;
        // SAFETY: c is a valid NUL-terminated string of d.len() bytes; nix has no wrapper.
        let r = unsafe { libc::setdomainname(c.as_ptr(), d.len()) };
        nix::Error::result(r)?;
    }
    Ok(())
}

/// Brings `lo` up in a network namespace the container created (runc's "loopback" network):
/// a fresh namespace has its loopback device down, and workloads expect 127.0.0.1 to work.
pub fn loopback_up() -> Result<(), nix::Error> {
    use std::os::fd::AsRawFd;
    let sock = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Inet,
        nix::sys::socket::SockType::Datagram,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    // SAFETY: ifreq is plain data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write the ifreq we own, on our own socket.
    unsafe {
        nix::Error::result(libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req))?;
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        nix::Error::result(libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req))?;
    }
    Ok(())
}

/// True when this process's user namespace denies setgroups (`/proc/self/setgroups`; in the
/// init, read before pivot_root).
pub fn setgroups_denied_here() -> bool {
    std::fs::read_to_string("/proc/self/setgroups").is_ok_and(|s| s.trim() == "deny")
}

/// True when the runtime will write gid_map itself without privilege, which requires
/// denying setgroups in the new user namespace.
pub fn setgroups_denied(plan: &Plan) -> bool {
    let euid = nix::unistd::geteuid().as_raw();
    let egid = nix::unistd::getegid().as_raw();
    plan.namespaces.creates(CloneFlags::CLONE_NEWUSER)
        && euid != 0
        && direct_ok(&plan.gid_mappings, egid, euid)
}
