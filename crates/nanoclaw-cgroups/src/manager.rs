//! The one interface the runtime uses, whatever the host layout: [`CgroupManager`]. The v1
//! implementation ([`crate::v1::V1Manager`], which also drives the cgroup2 part of a hybrid host)
//! and the v2 one ([`crate::v2::V2Manager`]) live in their own modules behind it.

use std::path::Path;
use std::time::{Duration, Instant};

use oci_spec::runtime::LinuxResources;

use crate::error::{CgroupError, Result};
use crate::layout::Layout;
use crate::oom::OomWatcher;
use crate::path::{CgroupPaths, CgroupsPath};
use crate::stats::Stats;
use crate::{fs, v1, v2, validate};

/// The freezer state of a container's cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FreezerState {
    Thawed,
    Frozen,
}

/// What the runtime does with a container's cgroup, on any layout.
pub trait CgroupManager: Send + Sync {
    /// The directories, to persist with the container state.
    fn paths(&self) -> &CgroupPaths;
    /// Creates the directories (and their missing ancestors), preparing each hierarchy so limits
    /// can be written (cpuset inheritance on v1, controller delegation on v2).
    fn create(&self) -> Result<()>;
    /// Moves `pid` (a whole process) into the cgroup in every hierarchy.
    fn add_process(&self, pid: i32) -> Result<()>;
    /// The directory a new process can be created in with `clone3(CLONE_INTO_CGROUP)`, when
    /// that one directory is the whole of the cgroup (pure v2, cgroupfs driver); `None`
    /// otherwise, and then the process is placed with [`CgroupManager::add_process`]. Placing
    /// at fork skips the migration a `cgroup.procs` write does, which waits for an RCU grace
    /// period (the kernel's cgroup_threadgroup_rwsem): milliseconds on a virtualised host.
    fn clone_into_cgroup(&self) -> Option<std::os::fd::OwnedFd> {
        None
    }
    /// Applies the given resources; absent fields are left as they are (this is also `update`).
    fn set(&self, resources: &LinuxResources) -> Result<()>;
    /// Freezes every process of the cgroup and waits until the kernel reports it frozen.
    fn freeze(&self) -> Result<()>;
    /// Thaws the cgroup.
    fn thaw(&self) -> Result<()>;
    fn freezer_state(&self) -> Result<FreezerState>;
    /// Every pid in the cgroup and its descendants.
    fn pids(&self) -> Result<Vec<i32>>;
    /// Sends SIGKILL to every process of the cgroup (race-free against forks) and waits until
    /// the cgroup is empty.
    fn kill_all(&self) -> Result<()>;
    /// Usage numbers in runc's `events --stats` shape.
    fn stats(&self) -> Result<Stats>;
    /// How many processes the OOM killer has killed in this cgroup.
    fn oom_kill_count(&self) -> Result<u64>;
    /// A watcher that wakes up on OOM events of this cgroup.
    fn oom_watcher(&self) -> Result<OomWatcher>;
    /// Removes the cgroup directories (descendants first), waiting briefly for exiting processes
    /// to leave; a directory that is already gone is fine.
    fn destroy(&self) -> Result<()>;
}

/// Opens a manager for directories resolved earlier (`create`) or loaded from container state.
pub fn open(paths: CgroupPaths) -> Box<dyn CgroupManager> {
    if let Some(unit) = paths.systemd.clone() {
        Box::new(crate::systemd::SystemdManager::open(paths, unit))
    } else if paths.v1.is_empty() {
        Box::new(v2::V2Manager::new(paths))
    } else {
        Box::new(v1::V1Manager::new(paths))
    }
}

/// What a runtime needs to give for a new container's cgroup.
#[derive(Debug, Clone, Copy)]
pub struct CgroupConfig<'a> {
    /// `linux.cgroupsPath`.
    pub cgroups_path: Option<&'a Path>,
    pub container_id: &'a str,
    /// `linux.resources`.
    pub resources: Option<&'a LinuxResources>,
    /// Rootless: a cgroup that cannot be created is skipped when no limit was asked for (runc).
    pub rootless: bool,
}

/// Resolves the container's directories without touching the system (persist them first, so a
/// crash after [`create_and_apply`] leaves something `delete --force` can find).
pub fn resolve(layout: &Layout, cfg: &CgroupConfig<'_>) -> Result<CgroupPaths> {
    let path = CgroupsPath::parse(cfg.cgroups_path, cfg.container_id)?;
    CgroupPaths::resolve(layout, &path)
}

/// Validates, creates the cgroup and applies the resources. On any error the directories this
/// call made are removed again before the error is returned: nothing leaks.
pub fn create_and_apply(
    layout: &Layout,
    paths: CgroupPaths,
    cfg: &CgroupConfig<'_>,
) -> Result<Box<dyn CgroupManager>> {
    if let Some(r) = cfg.resources {
        validate::validate(r, layout)?;
    }
    // Never adopt a populated cgroup: `delete` would later kill processes that are not ours.
    for h in paths.dirs() {
        let pids = fs::procs(&h.dir)?;
        if !pids.is_empty() {
            return Err(CgroupError::InUse {
                path: h.dir.clone(),
                pids,
            });
        }
    }
    let mgr: Box<dyn CgroupManager> = match paths.systemd.clone() {
        Some(unit) => Box::new(crate::systemd::SystemdManager::new_pending(paths, unit)),
        None => open(paths),
    };
    let res = mgr.create().and_then(|()| match cfg.resources {
        Some(r) => mgr.set(r),
        None => Ok(()),
    });
    match res {
        Ok(()) => Ok(mgr),
        Err(e)
            if cfg.rootless && is_permission(&e) && cfg.resources.is_none_or(resources_empty) =>
        {
            let _ = mgr.destroy();
            Ok(open(CgroupPaths::default()))
        }
        Err(e) => {
            let _ = mgr.destroy();
            Err(e)
        }
    }
}

fn is_permission(e: &CgroupError) -> bool {
    let kind = match e {
        CgroupError::Mkdir { source, .. } | CgroupError::Write { source, .. } => source.kind(),
        _ => return false,
    };
    matches!(
        kind,
        std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem
    )
}

/// True when `r` asks for no limit. Device rules do not count: without cgroup access (rootless)
/// the user namespace already keeps the container from opening host devices it may not use.
pub fn resources_empty(r: &LinuxResources) -> bool {
    let mut r = r.clone();
    r.set_devices(None);
    r == LinuxResources::default()
}

/// Removes `dir` and every cgroup below it, deepest first, retrying EBUSY (processes that were
/// just killed take a moment to leave) until `deadline`.
pub(crate) fn remove_tree(dir: &Path, deadline: Instant) -> Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(CgroupError::Read {
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    for e in entries.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            remove_tree(&e.path(), deadline)?;
        }
    }
    let mut pause = Duration::from_millis(1);
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                return Err(CgroupError::NotEmpty {
                    path: dir.to_path_buf(),
                    pids: fs::procs(dir).unwrap_or_default(),
                });
            }
            Err(source) => {
                return Err(CgroupError::Rmdir {
                    path: dir.to_path_buf(),
                    source,
                })
            }
        }
    }
}

/// Every pid in `dir` and its descendant cgroups.
pub(crate) fn procs_recursive(dir: &Path, out: &mut Vec<i32>) -> Result<()> {
    out.extend(fs::procs(dir)?);
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                procs_recursive(&e.path(), out)?;
            }
        }
    }
    Ok(())
}

/// Waits until `dir` (recursively) holds no process, or `deadline`.
pub(crate) fn wait_empty(dir: &Path, deadline: Instant) -> Result<()> {
    let mut pause = Duration::from_millis(1);
    loop {
        let mut pids = Vec::new();
        procs_recursive(dir, &mut pids)?;
        if pids.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(CgroupError::NotEmpty {
                path: dir.to_path_buf(),
                pids,
            });
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// How long destroy and kill wait for processes to leave.
pub(crate) const EMPTY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long freeze waits for the kernel to report the cgroup frozen.
pub(crate) const FREEZE_TIMEOUT: Duration = Duration::from_secs(5);
