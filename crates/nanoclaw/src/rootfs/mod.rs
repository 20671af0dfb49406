//! The container's root filesystem, set up inside the init's new mount namespace.
//!
//! Every path inside the rootfs is resolved with `openat2(RESOLVE_IN_ROOT)` relative to a
//! directory fd of the rootfs: `..` and absolute symlinks are clamped at the rootfs, so a
//! symlink planted in the image (`/proc -> /`, `/mnt/x -> /etc`) can never redirect a mount,
//! a device node or a directory creation onto the host. The mount itself then targets the
//! resolved fd through `/proc/self/fd/N` (the host's /proc, still visible before pivot_root),
//! never a path string.
//!
//! Order (see [`RootfsMounter`]): make the mount tree a slave of the host's (or give `/` the
//! rootfsPropagation asked for, as runc does) → bind the rootfs onto itself → mounts in
//! config order → devices → pivot_root → readonly root and rootfsPropagation on the new root.

pub mod devices;
pub mod fsopts;
pub mod hostmount;
pub mod masked_paths;
pub mod tmpcopyup;

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::Mode;

use crate::spec::{MountKind, MountPlan, Plan};

#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("{what}: {source}")]
    Sys { what: String, source: nix::Error },
    #[error(
        "{field}: destination {path} is a dangling symlink or not a directory inside the rootfs"
    )]
    BadDestination { field: String, path: PathBuf },
    #[error("{field}: {why}")]
    Unsupported { field: String, why: String },
    #[error("{field}: filesystem {fstype:?} must be mounted on ordinary directory: {path} in the rootfs is a {what}")]
    NotOrdinaryDir {
        field: String,
        fstype: String,
        path: PathBuf,
        what: &'static str,
    },
    #[error("{field}: tmpcopyup: {source}")]
    CopyUp {
        field: String,
        source: crate::rootfs::tmpcopyup::CopyUpError,
    },
}

fn sys(what: impl Into<String>) -> impl FnOnce(nix::Error) -> RootfsError {
    let what = what.into();
    move |source| RootfsError::Sys { what, source }
}

/// What to create at a path that does not exist yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Create {
    Dir,
    File,
}

/// Mounts into one rootfs. Built after the mount namespace exists; consumed by `pivot`.
pub struct RootfsMounter<'a> {
    plan: &'a Plan,
    /// O_PATH fd of the rootfs bind mount (opened after the self-bind).
    root: Option<OwnedFd>,
    /// The init runs in a user namespace other than the host's: mknod is not allowed and
    /// locked mount flags must be preserved on remount.
    in_userns: bool,
}

impl<'a> RootfsMounter<'a> {
    pub fn new(plan: &'a Plan, in_userns: bool) -> Self {
        Self {
            plan,
            root: None,
            in_userns,
        }
    }

    pub fn in_userns(&self) -> bool {
        self.in_userns
    }

    fn root_fd(&self) -> Result<&OwnedFd, RootfsError> {
        self.root.as_ref().ok_or(RootfsError::Sys {
            what: "rootfs not prepared".into(),
            source: Errno::EINVAL,
        })
    }

    /// Detaches the mount tree from the host's and bind-mounts the rootfs onto itself so it is
    /// a mount point pivot_root can use. `/` becomes rslave (host mounts still propagate in,
    /// nothing propagates out) unless linux.rootfsPropagation says otherwise, as in runc:
    /// `rshared` keeps the host's shared mounts shared, which is how a Kubernetes
    /// Bidirectional volume sees mounts made inside the container. The mount holding the
    /// rootfs is then made private, so the self-bind does not appear on the host and
    /// pivot_root (which refuses a new root under a shared mount) accepts it.
    pub fn prepare(&mut self) -> Result<(), RootfsError> {
        let (flags, what) = match self.plan.rootfs_propagation {
            None => (
                MsFlags::MS_SLAVE | MsFlags::MS_REC,
                "make / rslave".to_string(),
            ),
            Some(p) => (
                before_pivot(p),
                format!("linux.rootfsPropagation: apply {p:?} to /"),
            ),
        };
        mount(None::<&str>, "/", None::<&str>, flags, None::<&str>).map_err(sys(what))?;
        if !detached_from_host(self.plan.rootfs_propagation) {
            make_holding_mount_private(&self.plan.rootfs)?;
        }
        let rootfs = &self.plan.rootfs;
        mount(
            Some(rootfs.as_path()),
            rootfs.as_path(),
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(sys(format!("bind rootfs {}", rootfs.display())))?;
        let fd = nix::fcntl::open(
            rootfs.as_path(),
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(sys(format!("open rootfs {}", rootfs.display())))?;
        self.root = Some(fd);
        Ok(())
    }

    /// Resolves `path` (absolute, inside the container) with RESOLVE_IN_ROOT, creating missing
    /// directories and, if `create` says so, the last component. Returns an O_PATH fd.
    pub fn resolve(
        &self,
        field: &str,
        path: &Path,
        create: Option<Create>,
    ) -> Result<OwnedFd, RootfsError> {
        let root = self.root_fd()?;
        match open_in_root(root, path) {
            Ok(fd) => return Ok(fd),
            Err(Errno::ENOENT) if create.is_some() => {}
            Err(e) => return Err(sys(format!("{field}: resolve {}", path.display()))(e)),
        }
        // Create each missing component. Every step re-resolves from the rootfs root with
        // RESOLVE_IN_ROOT, so symlinks and `..` are followed by the kernel inside the rootfs
        // only. A dangling symlink is followed by hand: its target is spliced into the
        // remaining components (at most MAX_SYMLINKS times), so `/x -> /host/dir` creates
        // `<rootfs>/host/dir`, never the host's.
        let mut todo: std::collections::VecDeque<std::ffi::OsString> = path
            .components()
            .filter_map(|c| match c {
                Component::Normal(n) => Some(n.to_os_string()),
                _ => None,
            })
            .collect();
        // Most destinations miss only their last component or two: start from the deepest
        // ancestor that exists (probing upwards) instead of re-resolving every prefix.
        let mut cur = PathBuf::from("/");
        for existing in (1..todo.len()).rev() {
            let prefix: PathBuf = std::iter::once(std::ffi::OsStr::new("/"))
                .chain(todo.iter().take(existing).map(|c| c.as_os_str()))
                .collect();
            match open_in_root(root, &prefix) {
                Ok(_) => {
                    cur = prefix;
                    todo.drain(..existing);
                    break;
                }
                Err(Errno::ENOENT) => continue,
                Err(e) => return Err(sys(format!("{field}: resolve {}", prefix.display()))(e)),
            }
        }
        let mut links = 0;
        while let Some(name) = todo.pop_front() {
            if name == ".." || name == "." {
                cur.push(&name);
                continue;
            }
            let parent = open_in_root(root, &cur)
                .map_err(sys(format!("{field}: resolve {}", cur.display())))?;
            cur.push(&name);
            match open_in_root(root, &cur) {
                Ok(_) => continue,
                Err(Errno::ENOENT) => {}
                Err(e) => return Err(sys(format!("{field}: resolve {}", cur.display()))(e)),
            }
            // The parent is an O_PATH fd; *at calls accept it as a directory fd.
            let r = if todo.is_empty() && create == Some(Create::File) {
                nix::fcntl::openat(
                    &parent,
                    name.as_os_str(),
                    OFlag::O_CREAT
                        | OFlag::O_EXCL
                        | OFlag::O_WRONLY
                        | OFlag::O_NOFOLLOW
                        | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o644),
                )
                .map(drop)
            } else {
                nix::sys::stat::mkdirat(&parent, name.as_os_str(), Mode::from_bits_truncate(0o755))
            };
            match r {
                Ok(()) => {}
                Err(Errno::EEXIST) => {
                    // Exists but did not resolve: a dangling symlink.
                    links += 1;
                    let target = nix::fcntl::readlinkat(&parent, name.as_os_str())
                        .ok()
                        .filter(|_| links <= MAX_SYMLINKS)
                        .ok_or_else(|| RootfsError::BadDestination {
                            field: field.to_string(),
                            path: path.to_path_buf(),
                        })?;
                    cur.pop();
                    let target = PathBuf::from(target);
                    if target.is_absolute() {
                        cur = PathBuf::from("/");
                    }
                    for c in target.components().rev() {
                        match c {
                            Component::Normal(n) => todo.push_front(n.to_os_string()),
                            Component::ParentDir => todo.push_front("..".into()),
                            _ => {}
                        }
                    }
                }
                Err(e) => return Err(sys(format!("{field}: create {}", cur.display()))(e)),
            }
        }
        open_in_root(root, path).map_err(sys(format!("{field}: resolve {}", path.display())))
    }

    /// Performs every `mounts[]` entry in config order.
    /// Mounts `mounts[]` in order; `before_cgroup` runs once, before the first `cgroup` mount
    /// (what it mounts depends on the init's cgroup and cgroup namespace).
    pub fn mount_all<E: From<RootfsError>>(
        &self,
        mut before_cgroup: impl FnMut() -> Result<(), E>,
    ) -> Result<(), E> {
        let mut cgroup_ready = false;
        for m in &self.plan.mounts {
            if matches!(m.kind, MountKind::Cgroup) && !cgroup_ready {
                before_cgroup()?;
                cgroup_ready = true;
            }
            self.mount_one(m)?;
        }
        Ok(())
    }

    fn mount_one(&self, m: &MountPlan) -> Result<(), RootfsError> {
        match &m.kind {
            MountKind::Bind {
                recursive,
                source_is_dir,
            } => {
                let create = if *source_is_dir {
                    Create::Dir
                } else {
                    Create::File
                };
                let target = self.resolve(&m.field, &m.destination, Some(create))?;
                let src = m.source.as_deref().unwrap_or(Path::new(""));
                self.bind(
                    &m.field,
                    src,
                    &m.destination,
                    &target,
                    *recursive,
                    m.remount_flags(),
                )?;
            }
            MountKind::Fs { fstype } if fstype == "tmpfs" => self.mount_tmpfs(m)?,
            MountKind::Fs { fstype } => {
                if fstype == "proc" || fstype == "sysfs" {
                    self.check_ordinary_dir(m, fstype)?;
                }
                let target = self.resolve(&m.field, &m.destination, Some(Create::Dir))?;
                let source = m
                    .source
                    .clone()
                    .unwrap_or_else(|| PathBuf::from(fstype.as_str()));
                let r = mount(
                    Some(source.as_path()),
                    fd_path(&target).as_path(),
                    Some(fstype.as_str()),
                    m.flags,
                    m.data.as_deref(),
                );
                match r {
                    Ok(()) => {}
                    // In a user namespace that does not own the network namespace, sysfs
                    // cannot be mounted: bind the host's /sys instead (as runc does).
                    Err(Errno::EPERM) if self.in_userns && fstype == "sysfs" => self.bind(
                        &m.field,
                        Path::new("/sys"),
                        &m.destination,
                        &target,
                        true,
                        m.flags | MsFlags::MS_RDONLY,
                    )?,
                    Err(e) => {
                        return Err(sys(format!(
                            "{}: mount {fstype} on {}",
                            m.field,
                            m.destination.display()
                        ))(e))
                    }
                }
            }
            MountKind::Cgroup => self.mount_cgroup(m)?,
        }
        if let Some(attr) = &m.recursive_attr {
            let mounted = self.reresolve(&m.field, &m.destination)?;
            set_recursive_attr(&m.field, &mounted, attr)?;
        }
        if !m.propagation.is_empty() {
            let mounted = self.reresolve(&m.field, &m.destination)?;
            let tpath = fd_path(&mounted);
            for p in &m.propagation {
                mount(
                    None::<&str>,
                    tpath.as_path(),
                    None::<&str>,
                    *p,
                    None::<&str>,
                )
                .map_err(sys(format!("{}: propagation {p:?}", m.field)))?;
            }
        }
        Ok(())
    }

    /// proc and sysfs go only on a directory (or a path that does not exist yet): an image whose
    /// `/proc` or `/sys` is a symlink or a file is refused, naming the path, as runc refuses
    /// it ("must be mounted on ordinary directory"), rather than mounted where the link points.
    /// The parent is resolved inside the rootfs; the last component is examined unfollowed.
    fn check_ordinary_dir(&self, m: &MountPlan, fstype: &str) -> Result<(), RootfsError> {
        let (Some(parent), Some(name)) = (m.destination.parent(), m.destination.file_name()) else {
            return Ok(());
        };
        let parent_fd = match open_in_root(self.root_fd()?, parent) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => return Ok(()),
            Err(e) => return Err(sys(format!("{}: resolve {}", m.field, parent.display()))(e)),
        };
        let st = match nix::sys::stat::fstatat(
            &parent_fd,
            name,
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        ) {
            Ok(st) => st,
            Err(Errno::ENOENT) => return Ok(()),
            Err(e) => {
                return Err(sys(format!(
                    "{}: stat {}",
                    m.field,
                    m.destination.display()
                ))(e))
            }
        };
        let what = match st.st_mode & libc::S_IFMT {
            libc::S_IFDIR => return Ok(()),
            libc::S_IFLNK => "symlink",
            libc::S_IFREG => "regular file",
            _ => "special file",
        };
        Err(RootfsError::NotOrdinaryDir {
            field: m.field.clone(),
            fstype: fstype.to_string(),
            path: m.destination.clone(),
            what,
        })
    }

    /// A tmpfs over a directory the image has takes that directory's mode (`mode=` ahead of
    /// the config's own options, so a `mode=` there still wins), as runc does; with
    /// `tmpcopyup` the directory's content is copied in (see [`crate::rootfs::tmpcopyup`]). A copy-up
    /// tmpfs is mounted writable and remounted read-only after the copy if `ro` was asked.
    fn mount_tmpfs(&self, m: &MountPlan) -> Result<(), RootfsError> {
        let existing = match open_in_root(self.root_fd()?, &m.destination) {
            Ok(fd) => Some(fd),
            Err(Errno::ENOENT) => None,
            Err(e) => {
                return Err(sys(format!(
                    "{}: resolve {}",
                    m.field,
                    m.destination.display()
                ))(e))
            }
        };
        let existed = existing.is_some();
        let target = match existing {
            Some(fd) => fd,
            None => self.resolve(&m.field, &m.destination, Some(Create::Dir))?,
        };
        let st = nix::sys::stat::fstat(&target).map_err(sys(format!(
            "{}: stat {}",
            m.field,
            m.destination.display()
        )))?;
        let is_dir = st.st_mode & libc::S_IFMT == libc::S_IFDIR;
        let mut data = m.data.clone();
        let mut copy_from = None;
        // A directory created just now has nothing to copy and no mode of its own to keep:
        // the tmpfs keeps the kernel's 1777, as with runc.
        if existed && is_dir {
            let mode = format!("mode={:04o}", st.st_mode & 0o7777);
            data = Some(match data {
                Some(d) => format!("{mode},{d}"),
                None => mode,
            });
            if m.copy_up {
                // Opened before the tmpfs covers it: this fd still reads the image's directory.
                let fd = nix::fcntl::openat(
                    &target,
                    ".",
                    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
                .map_err(sys(format!(
                    "{}: tmpcopyup: open {}",
                    m.field,
                    m.destination.display()
                )))?;
                copy_from = Some(fd);
            }
        }
        let flags = if copy_from.is_some() {
            m.flags - MsFlags::MS_RDONLY
        } else {
            m.flags
        };
        let source = m.source.clone().unwrap_or_else(|| PathBuf::from("tmpfs"));
        mount(
            Some(source.as_path()),
            fd_path(&target).as_path(),
            Some("tmpfs"),
            flags,
            data.as_deref(),
        )
        .map_err(sys(format!(
            "{}: mount tmpfs on {} (options {:?})",
            m.field,
            m.destination.display(),
            data.as_deref().unwrap_or("")
        )))?;
        let Some(src) = copy_from else {
            return Ok(());
        };
        let mounted = self.reresolve(&m.field, &m.destination)?;
        let dst = nix::fcntl::openat(
            &mounted,
            ".",
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(sys(format!(
            "{}: tmpcopyup: open the new tmpfs on {}",
            m.field,
            m.destination.display()
        )))?;
        crate::rootfs::tmpcopyup::copy_dir_contents(&src, &dst, &m.destination).map_err(|e| {
            RootfsError::CopyUp {
                field: m.field.clone(),
                source: e,
            }
        })?;
        if m.flags.contains(MsFlags::MS_RDONLY) {
            remount(&m.field, &fd_path(&mounted), m.remount_flags())?;
        }
        Ok(())
    }

    /// Re-resolves `dest` after something was mounted on it: an fd opened before the mount
    /// still points *under* the new mount (magic links do not cross mount points), a fresh
    /// RESOLVE_IN_ROOT walk does.
    fn reresolve(&self, field: &str, dest: &Path) -> Result<OwnedFd, RootfsError> {
        open_in_root(self.root_fd()?, dest)
            .map_err(sys(format!("{field}: resolve {}", dest.display())))
    }

    /// Bind-mounts host `src` onto the resolved `target` (the fd of `dest`), then remounts
    /// with `flags` (the first MS_BIND call ignores ro/nosuid/...).
    pub fn bind(
        &self,
        field: &str,
        src: &Path,
        dest: &Path,
        target: &OwnedFd,
        recursive: bool,
        flags: MsFlags,
    ) -> Result<(), RootfsError> {
        let mut bflags = MsFlags::MS_BIND;
        if recursive {
            bflags |= MsFlags::MS_REC;
        }
        mount(
            Some(src),
            fd_path(target).as_path(),
            None::<&str>,
            bflags,
            None::<&str>,
        )
        .map_err(sys(format!("{field}: bind {}", src.display())))?;
        if !flags.is_empty() {
            let mounted = self.reresolve(field, dest)?;
            remount(field, &fd_path(&mounted), flags)?;
        }
        Ok(())
    }

    /// `type: cgroup`: the container sees its own cgroup, read-only unless `rw` is given.
    /// - With a new cgroup namespace each hierarchy is mounted by type (the kernel roots it
    ///   at the namespace's cgroup).
    /// - Without one (or where the kernel refuses), the init's own cgroup directory of each
    ///   hierarchy is bind-mounted.
    ///
    /// On a pure cgroup v2 host that is a single cgroup2 mount; on v1/hybrid hosts a tmpfs
    /// holds one directory per hierarchy, like runc.
    fn mount_cgroup(&self, m: &MountPlan) -> Result<(), RootfsError> {
        let target = self.resolve(&m.field, &m.destination, Some(Create::Dir))?;
        let cgroupns = self
            .plan
            .namespaces
            .creates(nix::sched::CloneFlags::CLONE_NEWCGROUP);
        let hierarchies = host_cgroup_mounts();
        let own = OwnCgroups::read();
        let flags = m.flags | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
        // Pure v2 host: one cgroup2 filesystem at /sys/fs/cgroup.
        if let [only] = hierarchies.as_slice() {
            if only.fstype == "cgroup2" && only.mountpoint == Path::new("/sys/fs/cgroup") {
                let tp = fd_path(&target);
                if cgroupns
                    && mount(
                        Some("cgroup2"),
                        tp.as_path(),
                        Some("cgroup2"),
                        flags,
                        None::<&str>,
                    )
                    .is_ok()
                {
                    return Ok(());
                }
                let src = only.mountpoint.join(own.path("").trim_start_matches('/'));
                return self.bind(&m.field, &src, &m.destination, &target, false, flags);
            }
        }
        mount(
            Some("tmpfs"),
            fd_path(&target).as_path(),
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            Some("mode=755"),
        )
        .map_err(sys(format!("{}: tmpfs for cgroup hierarchies", m.field)))?;
        for h in &hierarchies {
            let Some(name) = h.mountpoint.file_name() else {
                continue;
            };
            let dest = m.destination.join(name);
            let t = self.resolve(&m.field, &dest, Some(Create::Dir))?;
            let data = (h.fstype == "cgroup").then_some(h.options.as_str());
            let by_type = cgroupns
                && mount(
                    Some(h.fstype.as_str()),
                    fd_path(&t).as_path(),
                    Some(h.fstype.as_str()),
                    flags,
                    data,
                )
                .is_ok();
            if !by_type {
                let src = h.mountpoint.join(own.path(&h.key).trim_start_matches('/'));
                self.bind(&m.field, &src, &dest, &t, false, flags)?;
            }
        }
        if m.flags.contains(MsFlags::MS_RDONLY) {
            let mounted = self.reresolve(&m.field, &m.destination)?;
            remount(
                &m.field,
                &fd_path(&mounted),
                MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            )?;
        }
        Ok(())
    }

    /// Moves into the new root: `pivot_root(".", ".")` then detaches the old root, so no
    /// host path stays reachable (pivot_root stacks the old root on top of the new one at
    /// "/"; it is unmounted from there).
    pub fn pivot(self) -> Result<(), RootfsError> {
        let root = self.root_fd()?;
        // The old root is addressed by fd after pivot_root: "." then names it, not the new
        // root underneath (mount(2), unlike umount2, does not step onto the mount on top).
        let old_root = nix::fcntl::open(
            "/",
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(sys("open the old root /"))?;
        nix::unistd::fchdir(root).map_err(sys("fchdir rootfs"))?;
        nix::unistd::pivot_root(".", ".").map_err(sys("pivot_root"))?;
        nix::unistd::fchdir(&old_root).map_err(sys("fchdir the old root"))?;
        // With the default rslave `/` the detach cannot reach the host. A rootfsPropagation
        // that left host peers in the old tree (rshared, or a non-recursive flag) would
        // unmount the host's own mounts along with our copies: make the old tree a slave
        // first, as runc does. Only the old tree: mounts[] propagation inside the new root
        // stays as asked.
        if !detached_from_host(self.plan.rootfs_propagation) {
            mount(
                None::<&str>,
                ".",
                None::<&str>,
                MsFlags::MS_SLAVE | MsFlags::MS_REC,
                None::<&str>,
            )
            .map_err(sys("make the old root rslave"))?;
        }
        umount2(".", MntFlags::MNT_DETACH).map_err(sys("detach old root"))?;
        nix::unistd::chdir("/").map_err(sys("chdir /"))?;
        Ok(())
    }

    /// `--no-pivot`: for a rootfs pivot_root cannot leave (ramfs/initramfs). Every
    /// mount outside the rootfs is detached first, so the host's tree is not reachable from the
    /// container's mount namespace even through a chroot escape; then the rootfs mount is moved
    /// onto `/` and the process chroots into it. Weaker than pivot_root (a process with
    /// CAP_SYS_CHROOT can still leave a chroot into what remains), as with runc.
    /// Without a mount namespace of its own (hostmount.rs): chroot into the rootfs, leaving
    /// the root of the runtime's mount namespace alone.
    pub fn chroot(self) -> Result<(), RootfsError> {
        crate::rootfs::hostmount::chroot_into(self.root_fd()?)
            .map_err(sys("chroot into the rootfs"))
    }

    pub fn move_root(self) -> Result<(), RootfsError> {
        check_no_pivot(self.plan)?;
        let rootfs = self.plan.rootfs.clone();
        let info = nanoclaw_cgroups::mountinfo::read_self().map_err(|e| {
            sys("read /proc/self/mountinfo")(Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))
        })?;
        let mut outside: Vec<PathBuf> = info
            .into_iter()
            .map(|m| m.mountpoint)
            .filter(|m| !m.starts_with(&rootfs) && m != Path::new("/") && !rootfs.starts_with(m))
            .collect();
        // Deepest first; a mount that cannot be detached (busy, locked) stays hidden by the
        // chroot.
        outside.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
        for m in outside {
            let _ = umount2(m.as_path(), MntFlags::MNT_DETACH);
        }
        let root = self.root_fd()?;
        nix::unistd::fchdir(root).map_err(sys("fchdir rootfs"))?;
        mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>)
            .map_err(sys("--no-pivot: move the rootfs onto /"))?;
        nix::unistd::chroot(".").map_err(sys("--no-pivot: chroot"))?;
        nix::unistd::chdir("/").map_err(sys("chdir /"))?;
        Ok(())
    }
}

/// Remounts a bind mount with `flags`, keeping flags the kernel locked (a mount inherited
/// from a more privileged namespace keeps its nosuid/nodev/noexec/ro/atime flags).
/// mount_setattr(AT_RECURSIVE) on the mount at `fd` and every mount below it (the recursive
/// mount options; Linux 5.12).
fn set_recursive_attr(
    field: &str,
    fd: &OwnedFd,
    attr: &crate::spec::RecursiveAttr,
) -> Result<(), RootfsError> {
    use std::os::fd::AsRawFd;
    let ma = libc::mount_attr {
        attr_set: attr.set,
        attr_clr: attr.clear,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: mount_setattr reads `size_of::<mount_attr>()` bytes from `&ma`, which lives
    // across the call; the path is an empty C string used with AT_EMPTY_PATH on our open fd.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH | libc::AT_RECURSIVE,
            &ma as *const libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    };
    Errno::result(rc).map(drop).map_err(sys(format!(
        "{field}: recursive mount options (mount_setattr)"
    )))
}

fn remount(field: &str, target: &Path, flags: MsFlags) -> Result<(), RootfsError> {
    let base = MsFlags::MS_BIND | MsFlags::MS_REMOUNT;
    match mount(
        None::<&str>,
        target,
        None::<&str>,
        base | flags,
        None::<&str>,
    ) {
        Ok(()) => Ok(()),
        Err(Errno::EPERM) => {
            let locked = locked_flags(target).map_err(sys(format!("{field}: statvfs")))?;
            mount(
                None::<&str>,
                target,
                None::<&str>,
                base | flags | locked,
                None::<&str>,
            )
            .map_err(sys(format!("{field}: remount {flags:?}")))
        }
        Err(e) => Err(sys(format!("{field}: remount {flags:?}"))(e)),
    }
}

/// Applied after pivot_root: root.readonly and linux.rootfsPropagation on the new "/".
pub fn finish_root(plan: &Plan) -> Result<(), RootfsError> {
    if plan.rootfs_readonly {
        let base = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
        if let Err(e) = mount(None::<&str>, "/", None::<&str>, base, None::<&str>) {
            if e != Errno::EPERM {
                return Err(sys("remount / read-only")(e));
            }
            let locked = locked_flags(Path::new("/")).map_err(sys("statvfs /"))?;
            mount(None::<&str>, "/", None::<&str>, base | locked, None::<&str>)
                .map_err(sys("remount / read-only"))?;
        }
    }
    if let Some(p) = plan.rootfs_propagation {
        mount(None::<&str>, "/", None::<&str>, p, None::<&str>)
            .map_err(sys(format!("linux.rootfsPropagation {p:?}")))?;
    }
    Ok(())
}

/// Refuses a rootfsPropagation `--no-pivot` cannot honour: [`RootfsMounter::move_root`]
/// detaches the host's mounts one by one, harmless only when none of them has a peer on the
/// host; with a shared tree each umount would propagate there. Checked by `create` before
/// anything exists; `move_root` checks again for callers that drive a [`RootfsMounter`]
/// themselves (by then their mounts under a shared bind may already have reached the host).
pub fn check_no_pivot(plan: &Plan) -> Result<(), RootfsError> {
    match plan.rootfs_propagation {
        Some(p) if !detached_from_host(Some(p)) => Err(RootfsError::Unsupported {
            field: "linux.rootfsPropagation".into(),
            why: "a shared or non-recursive propagation keeps the host's mounts shared; \
                  --no-pivot needs rslave, rprivate or runbindable"
                .into(),
        }),
        _ => Ok(()),
    }
}

/// Whether `/` keeps no peer on the host once [`RootfsMounter::prepare`] applied `p` to it:
/// the default rslave, or a recursive private or unbindable propagation. `rshared`, and any
/// non-recursive flag (the host's shared sub-mounts stay shared), do not.
fn detached_from_host(p: Option<MsFlags>) -> bool {
    p.is_none_or(|p| p.contains(MsFlags::MS_REC) && !p.contains(MsFlags::MS_SHARED))
}

/// The propagation `prepare` gives `/` for linux.rootfsPropagation `p`: `p` itself, except
/// that unbindable becomes private (the same detachment). An unbindable tree could not be the
/// source of the rootfs self-bind or of any bind from the host (EINVAL); [`finish_root`]
/// applies the real flag to the new root once nothing needs binding any more.
fn before_pivot(p: MsFlags) -> MsFlags {
    if p.contains(MsFlags::MS_UNBINDABLE) {
        (p - MsFlags::MS_UNBINDABLE) | MsFlags::MS_PRIVATE
    } else {
        p
    }
}

/// Makes the mount that holds `rootfs` private (runc's rootfsParentMountPrivate): the
/// nearest mount root on its path, found by asking the kernel rather than by reading
/// mountinfo (which also lists mounts hidden under another): MS_PRIVATE on a directory that
/// is not a mount root fails with EINVAL, so walk up until it succeeds.
fn make_holding_mount_private(rootfs: &Path) -> Result<(), RootfsError> {
    let mut at = rootfs;
    loop {
        match mount(
            None::<&str>,
            at,
            None::<&str>,
            MsFlags::MS_PRIVATE,
            None::<&str>,
        ) {
            Ok(()) => return Ok(()),
            Err(Errno::EINVAL) => match at.parent() {
                Some(parent) => at = parent,
                None => break,
            },
            Err(e) => {
                return Err(sys(format!(
                    "linux.rootfsPropagation: make {} (holding the rootfs) private",
                    at.display()
                ))(e))
            }
        }
    }
    Err(sys(format!(
        "linux.rootfsPropagation: no mount holding {} could be made private",
        rootfs.display()
    ))(Errno::EINVAL))
}

/// Symlinks followed by hand while creating a destination (the kernel's own limit).
const MAX_SYMLINKS: u32 = 40;

const RESOLVE: ResolveFlag = ResolveFlag::RESOLVE_IN_ROOT.union(ResolveFlag::RESOLVE_NO_MAGICLINKS);

fn open_in_root(root: &OwnedFd, path: &Path) -> Result<OwnedFd, Errno> {
    let rel = path.strip_prefix("/").unwrap_or(path);
    let rel = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
        .resolve(RESOLVE);
    loop {
        match openat2(root.as_fd(), rel, how) {
            Err(Errno::EAGAIN) | Err(Errno::EINTR) => continue,
            r => return r,
        }
    }
}

/// `/proc/self/fd/N` for an fd: mount(2) follows the magic link to exactly the resolved inode.
pub fn fd_path(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// The flags a remount must keep (the kernel refuses to clear them in a user namespace).
pub(crate) fn locked_flags(path: &Path) -> Result<MsFlags, Errno> {
    use nix::sys::statvfs::{statvfs, FsFlags};
    let st = statvfs(path)?;
    let f = st.flags();
    let mut out = MsFlags::empty();
    for (fs, ms) in [
        (FsFlags::ST_RDONLY, MsFlags::MS_RDONLY),
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if f.contains(fs) {
            out |= ms;
        }
    }
    Ok(out)
}

struct CgroupMount {
    mountpoint: PathBuf,
    fstype: String,
    /// Super options of a v1 hierarchy (`cpu`, `name=systemd`).
    options: String,
    /// Key to find this hierarchy's line in /proc/self/cgroup ("" for cgroup2).
    key: String,
}

/// cgroup and cgroup2 mounts directly under /sys/fs/cgroup (or /sys/fs/cgroup itself), from
/// /proc/self/mountinfo.
fn host_cgroup_mounts() -> Vec<CgroupMount> {
    let Ok(info) = nanoclaw_cgroups::mountinfo::read_self() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for m in info {
        let (mp, fstype, superopts) = (m.mountpoint, m.fstype.as_str(), m.super_opts.as_str());
        if fstype != "cgroup" && fstype != "cgroup2" {
            continue;
        }
        if mp != Path::new("/sys/fs/cgroup") && mp.parent() != Some(Path::new("/sys/fs/cgroup")) {
            continue;
        }
        let (options, key) = if fstype == "cgroup" {
            let opts: Vec<&str> = superopts
                .split(',')
                .filter(|o| {
                    !matches!(*o, "rw" | "ro")
                        && !o.starts_with("release_agent")
                        && *o != "clone_children"
                        && *o != "noprefix"
                        && *o != "xattr"
                })
                .collect();
            (opts.join(","), opts.join(","))
        } else {
            (String::new(), String::new())
        };
        out.push(CgroupMount {
            mountpoint: mp,
            fstype: fstype.to_string(),
            options,
            key,
        });
    }
    out
}

/// The init's cgroup of each hierarchy, from /proc/self/cgroup (read once per cgroup mount).
struct OwnCgroups(String);

impl OwnCgroups {
    fn read() -> Self {
        // procfs files report size 0: a buffer of a page reads it in one call, not in the
        // doubling probes read_to_string starts with.
        let mut text = String::with_capacity(4096);
        let read = std::fs::File::open("/proc/self/cgroup")
            .and_then(|mut f| std::io::Read::read_to_string(&mut f, &mut text));
        if read.is_err() {
            text.clear();
        }
        Self(text)
    }

    /// The path for the hierarchy whose controller list is `key` ("" = cgroup2); "/" if
    /// not found.
    fn path(&self, key: &str) -> &str {
        for line in self.0.lines() {
            let mut it = line.splitn(3, ':');
            let (_, Some(ctrl), Some(path)) = (it.next(), it.next(), it.next()) else {
                continue;
            };
            if ctrl == key {
                return path;
            }
        }
        "/"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_recursive_non_shared_propagation_detaches_from_host() {
        assert!(detached_from_host(None));
        for name in ["rslave", "rprivate", "runbindable"] {
            let p = crate::spec::propagation_flag(name);
            assert!(detached_from_host(p), "{name}");
        }
        for name in ["rshared", "shared", "slave", "private", "unbindable"] {
            let p = crate::spec::propagation_flag(name);
            assert!(p.is_some(), "{name}");
            assert!(!detached_from_host(p), "{name}");
        }
    }

    #[test]
    fn unbindable_is_private_until_the_new_root() {
        for (name, expect) in [
            ("runbindable", MsFlags::MS_PRIVATE | MsFlags::MS_REC),
            ("unbindable", MsFlags::MS_PRIVATE),
            ("rshared", MsFlags::MS_SHARED | MsFlags::MS_REC),
            ("slave", MsFlags::MS_SLAVE),
        ] {
            let p = crate::spec::propagation_flag(name).expect(name);
            assert_eq!(before_pivot(p), expect, "{name}");
        }
    }
}
