//! Device nodes in the container's /dev: the OCI default set (null, zero, full, random,
//! urandom, tty; ptmx as a link to the devpts instance), the standard symlinks (/dev/fd,
//! stdin, stdout, stderr) and `linux.devices[]`.
//!
//! As real root the nodes are created with mknod. In a user namespace mknod is refused by the
//! kernel, so the host's node at the same path is bind-mounted instead (as runc does). Every
//! path is resolved inside the rootfs by [`RootfsMounter::resolve`].

use std::ffi::OsStr;
use std::path::Path;

use nix::errno::Errno;
use nix::mount::MsFlags;
use nix::sys::stat::{makedev, Mode, SFlag};
use nix::unistd::{Gid, Uid};

use crate::rootfs::{Create, RootfsError, RootfsMounter};
use crate::spec::{DeviceKind, DevicePlan, MountKind, Plan};

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("{field}: {path}: {what}: {source}")]
    Sys {
        field: String,
        path: String,
        what: &'static str,
        source: Errno,
    },
    #[error(transparent)]
    Rootfs(#[from] RootfsError),
    #[error("{field}: {path}: the image has a file there that is not a device node; outside /dev a device never replaces an image file")]
    Occupied { field: String, path: String },
}

/// The default devices every container gets (runtime-spec "Default Devices").
pub fn default_devices() -> Vec<DevicePlan> {
    [
        ("/dev/null", 1, 3),
        ("/dev/zero", 1, 5),
        ("/dev/full", 1, 7),
        ("/dev/random", 1, 8),
        ("/dev/urandom", 1, 9),
        ("/dev/tty", 5, 0),
    ]
    .into_iter()
    .map(|(p, major, minor)| DevicePlan {
        field: format!("default device {p}"),
        path: p.into(),
        kind: DeviceKind::Char,
        major,
        minor,
        mode: 0o666,
        uid: Some(0),
        gid: Some(0),
    })
    .collect()
}

/// True unless /dev is bind-mounted from the host (then the host's nodes are used as is).
fn needs_dev_setup(plan: &Plan) -> bool {
    !plan
        .mounts
        .iter()
        .any(|m| m.destination == Path::new("/dev") && matches!(m.kind, MountKind::Bind { .. }))
}

/// Creates the default devices and symlinks (unless /dev is a host bind) and every
/// `linux.devices[]` entry.
pub fn create_all(mounter: &RootfsMounter<'_>, plan: &Plan) -> Result<(), DeviceError> {
    let mut all = Vec::new();
    if needs_dev_setup(plan) {
        all.extend(
            default_devices()
                .into_iter()
                .filter(|d| !plan.devices.iter().any(|x| x.path == d.path)),
        );
    }
    all.extend(plan.devices.iter().cloned());
    for d in &all {
        create_device(mounter, d)?;
    }
    if needs_dev_setup(plan) {
        for (link, target) in [
            ("/dev/fd", "/proc/self/fd"),
            ("/dev/stdin", "/proc/self/fd/0"),
            ("/dev/stdout", "/proc/self/fd/1"),
            ("/dev/stderr", "/proc/self/fd/2"),
            ("/dev/ptmx", "pts/ptmx"),
        ] {
            symlink(mounter, link, target)?;
        }
    }
    Ok(())
}

fn split(path: &Path) -> (&Path, &OsStr) {
    (
        path.parent().unwrap_or(Path::new("/")),
        path.file_name().unwrap_or(OsStr::new(".")),
    )
}

fn create_device(mounter: &RootfsMounter<'_>, d: &DevicePlan) -> Result<(), DeviceError> {
    let err = |what, source| DeviceError::Sys {
        field: d.field.clone(),
        path: d.path.display().to_string(),
        what,
        source,
    };
    let (dir, name) = split(&d.path);
    let parent = mounter.resolve(&d.field, dir, Some(Create::Dir))?;
    // mknod is not permitted in a user namespace: bind the host's node.
    let bind_host_node = || -> Result<(), DeviceError> {
        let target = mounter.resolve(&d.field, &d.path, Some(Create::File))?;
        mounter.bind(
            &d.field,
            &d.path,
            &d.path,
            &target,
            false,
            MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        )?;
        Ok(())
    };
    if mounter.in_userns() {
        return bind_host_node();
    }
    // Under /dev (the container's own tmpfs unless bind-mounted) whatever is at the path is
    // replaced (a regular file would shadow the device). Elsewhere the node lands in the
    // image's own directory, as with runc: an old device node or fifo is replaced, but an
    // image file is never deleted for it.
    if !d.path.starts_with("/dev") {
        match nix::sys::stat::fstatat(&parent, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => {
                let kind = st.st_mode & libc::S_IFMT;
                if !matches!(kind, libc::S_IFCHR | libc::S_IFBLK | libc::S_IFIFO) {
                    return Err(DeviceError::Occupied {
                        field: d.field.clone(),
                        path: d.path.display().to_string(),
                    });
                }
            }
            Err(Errno::ENOENT) => {}
            Err(e) => return Err(err("stat", e)),
        }
    }
    match nix::unistd::unlinkat(&parent, name, nix::unistd::UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => {}
        Err(e) => return Err(err("unlink", e)),
    }
    let kind = match d.kind {
        DeviceKind::Char => SFlag::S_IFCHR,
        DeviceKind::Block => SFlag::S_IFBLK,
        DeviceKind::Fifo => SFlag::S_IFIFO,
    };
    match nix::sys::stat::mknodat(
        &parent,
        name,
        kind,
        Mode::from_bits_truncate(d.mode),
        makedev(d.major, d.minor),
    ) {
        Ok(()) => {}
        // The runtime itself runs as root of a user namespace it did not create (rootless
        // podman): no mknod there either; bind the host's node, as runc does.
        Err(Errno::EPERM) if kind != SFlag::S_IFIFO => return bind_host_node(),
        Err(e) => return Err(err("mknod", e)),
    }
    nix::unistd::fchownat(
        &parent,
        name,
        d.uid.map(Uid::from_raw),
        d.gid.map(Gid::from_raw),
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(|e| err("chown", e))?;
    Ok(())
}

fn symlink(mounter: &RootfsMounter<'_>, link: &str, target: &str) -> Result<(), DeviceError> {
    let path = Path::new(link);
    let (dir, name) = split(path);
    let parent = mounter.resolve(link, dir, Some(Create::Dir))?;
    match nix::unistd::symlinkat(target, &parent, name) {
        Ok(()) | Err(Errno::EEXIST) => Ok(()),
        Err(source) => Err(DeviceError::Sys {
            field: "default symlink".into(),
            path: link.into(),
            what: "symlink",
            source,
        }),
    }
}

/// After the switch to the container's root: each of fds 0-2 that is the caller's `/dev/null`
/// (engines give detached containers one) becomes the container's own `/dev/null`, as runc
/// does. The caller's is a file on a mount outside the container, which CRIU cannot
/// checkpoint ("Can't lookup mount ... path=/dev/null"), and the container has no business
/// holding a file of the host's mount table.
pub fn reopen_stdio_dev_null() -> Result<(), DeviceError> {
    let is_null = |st: &nix::sys::stat::FileStat| {
        SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFCHR
            && st.st_rdev == makedev(1, 3)
    };
    use std::os::fd::{AsFd, AsRawFd};
    let (stdin, stdout, stderr) = (std::io::stdin(), std::io::stdout(), std::io::stderr());
    let on_null: Vec<i32> = [stdin.as_fd(), stdout.as_fd(), stderr.as_fd()]
        .into_iter()
        .filter(|fd| nix::sys::stat::fstat(fd).is_ok_and(|st| is_null(&st)))
        .map(|fd| fd.as_raw_fd())
        .collect();
    if on_null.is_empty() {
        return Ok(());
    }
    let sys = |what, source| DeviceError::Sys {
        field: "process (stdio)".into(),
        path: "/dev/null".into(),
        what,
        source,
    };
    let null = nix::fcntl::open(
        "/dev/null",
        nix::fcntl::OFlag::O_RDWR | nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NOFOLLOW,
        Mode::empty(),
    )
    .map_err(|e| sys("open", e))?;
    match nix::sys::stat::fstat(&null).map_err(|e| sys("fstat", e)) {
        // The container's /dev/null must be the null device itself, not whatever the image
        // or a mount put at that path.
        Ok(st) if !is_null(&st) => Err(sys("not the null device (1:3)", Errno::EINVAL)),
        Ok(_) => on_null.iter().try_for_each(|fd| {
            // SAFETY: dup3 only replaces descriptor `fd` (0-2, currently open on the caller's
            // /dev/null) with a duplicate of `null`; no memory is involved.
            let rc = unsafe { libc::dup3(null.as_raw_fd(), *fd, 0) };
            if rc < 0 {
                Err(sys("dup3 onto stdio", Errno::last()))
            } else {
                Ok(())
            }
        }),
        Err(e) => Err(e),
    }
}
