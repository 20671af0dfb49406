//! The systemd cgroup driver (`--systemd-cgroup`), as runc, crun and youki implement it: the
//! container's cgroup is a transient unit that systemd creates over D-Bus, placed by
//! `linux.cgroupsPath` = `slice:prefix:name` ([`unit`](mod@unit)).
//!
//! - `create`: nothing exists before the init's pid (a scope cannot be empty). The first
//!   [`CgroupManager::add_process`] calls `StartTransientUnit` with `PIDs=[init]`,
//!   `Delegate=yes`, `DefaultDependencies=no`, the accounting switches and the resources systemd
//!   owns ([`props`]), waits for the job's `JobRemoved`, checks the unit's cgroup (the init's
//!   `/proc/<pid>/cgroup`; a slice's `ControlGroup`) is the directory recorded beforehand, and
//!   then writes every resource to that delegated cgroup
//!   through the cgroupfs code (fields systemd has no property for; exact values).
//! - everything else (freeze, kill, pids, stats, OOM events) is plain cgroup v2 on the unit's
//!   directory, as in runc.
//! - `update`: `SetUnitProperties(runtime)` + cgroupfs.
//! - `destroy`: `StopUnit` (waiting for the job) + `ResetFailedUnit`; only for a unit this
//!   manager started or a recorded container's, never for one that was already there.
//! - rootless (euid ≠ 0 or a user namespace): the user's `systemd --user` over the session bus.
//!
//! Only pure cgroup v2 hosts: on v1/hybrid hosts systemd's own hierarchy layout would have to be
//! mirrored per controller, which nanoclaw does not do (refused with a clear error).

pub mod client;
pub mod dbus;
pub mod props;
pub mod unit;

use std::path::Path;
use std::sync::Mutex;

use oci_spec::runtime::LinuxResources;

use crate::error::{CgroupError, Result};
use crate::layout::Layout;
use crate::manager::{CgroupManager, FreezerState};
use crate::oom::OomWatcher;
use crate::path::{CgroupPaths, HierarchyDir};
use crate::stats::Stats;
use crate::v2::V2Manager;
use client::{CallError, Systemd};
pub use unit::{Instance, UnitSpec};

fn sd_err(unit: &UnitSpec, op: &'static str, source: CallError) -> CgroupError {
    CgroupError::Systemd {
        unit: unit.unit.clone(),
        instance: match unit.instance {
            Instance::System => "system",
            Instance::User => "user",
        },
        op,
        source: Box::new(source),
    }
}

/// Resolves the unit and its future directory without creating anything (the record written
/// before the unit exists, so `delete --force` after a crash can find and stop it).
pub fn resolve(
    layout: &Layout,
    cgroups_path: Option<&str>,
    id: &str,
    instance: Instance,
    annotations: &std::collections::HashMap<String, String>,
) -> Result<CgroupPaths> {
    let mut spec = UnitSpec::parse(cgroups_path, id, instance)?;
    props::from_annotations(annotations)
        .map_err(|(key, reason)| CgroupError::Annotation { key, reason })?;
    spec.properties = annotations
        .iter()
        .filter(|(k, _)| k.starts_with(props::ANNOTATION_PREFIX))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let u = match (&layout.unified, layout.v1.is_empty()) {
        (Some(u), true) => u,
        _ => {
            return Err(CgroupError::SystemdNeedsV2 {
                mode: format!("{:?}", layout.mode),
            })
        }
    };
    // PID 1's units live at the hierarchy root (of its cgroup namespace); a user instance's
    // below its own service cgroup, which only it can tell.
    let base = match instance {
        Instance::System => String::new(),
        Instance::User => {
            let mut sd = Systemd::connect(instance).map_err(|e| sd_err(&spec, "connecting", e))?;
            sd.manager_cgroup()
                .map_err(|e| sd_err(&spec, "reading the manager's ControlGroup", e))?
        }
    };
    let cg = format!("{}{}", base.trim_end_matches('/'), spec.relative_cgroup());
    let dir = crate::path::dir_for(&u.mountpoint, &u.mount_root, &cg)?;
    Ok(CgroupPaths {
        v1: Default::default(),
        unified: Some(HierarchyDir {
            mountpoint: u.mountpoint.clone(),
            dir,
        }),
        systemd: Some(spec),
    })
}

#[derive(Debug, Default)]
struct State {
    /// True once this manager created the unit, or for a recorded container's.
    started: bool,
    /// Resources given before the unit existed (as `fs_resources` left them), applied when it
    /// is started.
    pending: Option<LinuxResources>,
}

/// A container's cgroup as a systemd transient unit.
#[derive(Debug)]
pub struct SystemdManager {
    unit: UnitSpec,
    fs: V2Manager,
    state: Mutex<State>,
}

impl SystemdManager {
    /// A recorded container's unit (it was started by the `create` that recorded it).
    pub fn open(paths: CgroupPaths, unit: UnitSpec) -> Self {
        Self::with_state(paths, unit, true)
    }

    /// A new container's unit, started by the first `add_process`.
    pub fn new_pending(paths: CgroupPaths, unit: UnitSpec) -> Self {
        Self::with_state(paths, unit, false)
    }

    fn with_state(paths: CgroupPaths, unit: UnitSpec, started: bool) -> Self {
        SystemdManager {
            unit,
            fs: V2Manager::new(paths),
            state: Mutex::new(State {
                started,
                pending: None,
            }),
        }
    }

    pub fn unit(&self) -> &UnitSpec {
        &self.unit
    }

    fn dir(&self) -> Result<&Path> {
        self.fs.dir().ok_or_else(|| CgroupError::BadPath {
            path: self.unit.unit.clone(),
            reason: "no cgroup directory recorded for the systemd unit".into(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn connect(&self) -> Result<Systemd> {
        Systemd::connect(self.unit.instance).map_err(|e| sd_err(&self.unit, "connecting", e))
    }

    /// The resources for the unit and the cgroupfs code: without device rules for a user
    /// instance (a rootless runtime cannot attach the BPF filter, nor can the user's systemd;
    /// the user namespace already keeps the container from opening devices it may not use).
    fn fs_resources(&self, r: &LinuxResources) -> LinuxResources {
        let mut r = r.clone();
        if self.unit.instance == Instance::User {
            r.set_devices(None);
        }
        r
    }

    fn start(&self, pid: i32, state: &mut State) -> Result<()> {
        let mut sd = self.connect()?;
        let version = sd.version();
        let pid_u32 = u32::try_from(pid).map_err(|_| CgroupError::BadPath {
            path: self.unit.unit.clone(),
            reason: format!("invalid pid {pid}"),
        })?;
        let description = format!("nanoclaw container {}", self.unit.unit);
        let mut props = props::base(&self.unit, Some(pid_u32), &description);
        if let Some(r) = &state.pending {
            props.extend(props::resources(r, version)?);
        }
        props.extend(
            props::from_annotations(&self.unit.properties)
                .map_err(|(key, reason)| CgroupError::Annotation { key, reason })?,
        );
        let name = self.unit.unit.as_str();
        match sd.start_transient_unit(name, &props) {
            Ok(()) => {}
            Err(e) if e.remote_name() == Some("org.freedesktop.systemd1.UnitExists") => {
                // A failed leftover of an earlier container is forgotten by ResetFailedUnit;
                // an active unit stays, and the second attempt fails the same way.
                let _ = sd.reset_failed_unit(name);
                sd.start_transient_unit(name, &props)
                    .map_err(|e| sd_err(&self.unit, "StartTransientUnit", e))?;
            }
            Err(e @ CallError::Job { .. }) => {
                let _ = sd.reset_failed_unit(name);
                return Err(sd_err(&self.unit, "StartTransientUnit", e));
            }
            Err(e) if e.is_timeout() => {
                // systemd may still create the unit: let the unwind stop it (once the init is
                // killed an empty scope also goes away by itself).
                state.started = true;
                return Err(sd_err(&self.unit, "StartTransientUnit", e));
            }
            Err(e) => return Err(sd_err(&self.unit, "StartTransientUnit", e)),
        }
        state.started = true;
        if self.unit.is_slice() {
            // A slice takes no PIDs property: the init joins its cgroup directly.
            let got = sd
                .unit_cgroup(name)
                .map_err(|e| sd_err(&self.unit, "reading the unit's ControlGroup", e))?;
            self.check_unit_cgroup(&got, CgroupView::Systemd)?;
            self.fs.add_process(pid)?;
        } else {
            // systemd moved the init into the scope's cgroup before the job finished: where
            // the kernel says it is, is where systemd put the unit (no D-Bus round trip).
            self.check_unit_cgroup(&init_cgroup(pid)?, CgroupView::Proc)?;
        }
        if let Some(r) = state.pending.take() {
            self.fs.set(&r)?;
        }
        Ok(())
    }
}

impl SystemdManager {
    /// Refuses a unit whose cgroup is not the directory recorded at create. `view` says whose
    /// path `got` is.
    fn check_unit_cgroup(&self, got: &str, view: CgroupView) -> Result<()> {
        let dir = self.dir()?;
        let placed = match view {
            // systemd's ControlGroup: relative to the root of the hierarchy it manages.
            CgroupView::Systemd => self
                .fs
                .paths()
                .unified
                .as_ref()
                .and_then(|h| dir.strip_prefix(&h.mountpoint).ok())
                .is_some_and(|rel| Path::new("/").join(rel) == Path::new(got)),
            // /proc/<pid>/cgroup: relative to our cgroup namespace, as the mount's root is.
            CgroupView::Proc => {
                let layout = crate::layout::Layout::detect()?;
                layout.unified.is_some_and(|u| {
                    crate::path::dir_for(&u.mountpoint, &u.mount_root, got)
                        .ok()
                        .as_deref()
                        == Some(dir)
                })
            }
        };
        if placed {
            return Ok(());
        }
        Err(CgroupError::BadPath {
            path: self.unit.unit.clone(),
            reason: format!(
                "systemd placed the unit at cgroup {got:?}, not at the recorded {}",
                dir.display()
            ),
        })
    }
}

/// Whose view a cgroup path is given in ([`SystemdManager::check_unit_cgroup`]).
#[derive(Debug, Clone, Copy)]
enum CgroupView {
    Systemd,
    Proc,
}

/// The cgroup v2 path of process `pid` (`0::PATH` in `/proc/<pid>/cgroup`).
fn init_cgroup(pid: i32) -> Result<String> {
    let file = format!("/proc/{pid}/cgroup");
    let text = std::fs::read_to_string(&file).map_err(|source| CgroupError::Read {
        path: file.clone().into(),
        source,
    })?;
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(str::to_string)
        .ok_or_else(|| CgroupError::BadPath {
            path: file,
            reason: "no cgroup v2 entry".into(),
        })
}

impl CgroupManager for SystemdManager {
    fn paths(&self) -> &CgroupPaths {
        self.fs.paths()
    }

    fn create(&self) -> Result<()> {
        // A scope cannot exist without a process: created by the first add_process.
        Ok(())
    }

    fn add_process(&self, pid: i32) -> Result<()> {
        let mut st = self.lock();
        if st.started {
            return self.fs.add_process(pid);
        }
        self.start(pid, &mut st)
    }

    fn set(&self, r: &LinuxResources) -> Result<()> {
        let mut st = self.lock();
        if !st.started {
            st.pending = Some(self.fs_resources(r));
            return Ok(());
        }
        drop(st);
        let mut sd = self.connect()?;
        let version = sd.version();
        let r = self.fs_resources(r);
        let props = props::resources(&r, version)?;
        sd.set_unit_properties(&self.unit.unit, &props)
            .map_err(|e| sd_err(&self.unit, "SetUnitProperties", e))?;
        self.fs.set(&r)
    }

    fn freeze(&self) -> Result<()> {
        self.fs.freeze()
    }

    fn thaw(&self) -> Result<()> {
        self.fs.thaw()
    }

    fn freezer_state(&self) -> Result<FreezerState> {
        self.fs.freezer_state()
    }

    fn pids(&self) -> Result<Vec<i32>> {
        self.fs.pids()
    }

    fn kill_all(&self) -> Result<()> {
        self.fs.kill_all()
    }

    fn stats(&self) -> Result<Stats> {
        self.fs.stats()
    }

    fn oom_kill_count(&self) -> Result<u64> {
        self.fs.oom_kill_count()
    }

    fn oom_watcher(&self) -> Result<OomWatcher> {
        self.fs.oom_watcher()
    }

    fn destroy(&self) -> Result<()> {
        if !self.lock().started {
            return Ok(());
        }
        let mut sd = self.connect()?;
        let name = self.unit.unit.as_str();
        sd.stop_unit(name)
            .map_err(|e| sd_err(&self.unit, "StopUnit", e))?;
        let _ = sd.reset_failed_unit(name);
        // systemd removes the cgroup with the unit; whatever a delegated subtree left behind
        // goes too.
        self.fs.destroy()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hybrid_and_v1_hosts_are_refused_before_anything_exists() {
        let mi = "\
32 31 0:29 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
";
        let l =
            Layout::from_sources(mi, "", "4:memory:/\n0::/\n", |_| Ok("hugetlb".into())).unwrap();
        let e = resolve(&l, None, "c1", Instance::System, &Default::default()).unwrap_err();
        assert!(matches!(e, CgroupError::SystemdNeedsV2 { .. }), "{e}");
        assert!(e.to_string().contains("--systemd-cgroup"), "{e}");
    }

    #[test]
    fn pure_v2_resolves_to_the_units_directory() {
        let mi = "41 31 0:38 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        let l = Layout::from_sources(mi, "", "0::/init.scope\n", |_| Ok("cpu memory pids".into()))
            .unwrap();
        let p = resolve(
            &l,
            Some("system.slice:docker:abc"),
            "abc",
            Instance::System,
            &Default::default(),
        )
        .unwrap();
        assert_eq!(
            p.unified.as_ref().unwrap().dir,
            Path::new("/sys/fs/cgroup/system.slice/docker-abc.scope")
        );
        assert_eq!(p.systemd.as_ref().unwrap().unit, "docker-abc.scope");
        // The record round-trips, so delete finds the unit again.
        let json = serde_json::to_string(&p).unwrap();
        let back: CgroupPaths = serde_json::from_str(&json).unwrap();
        assert_eq!(back, p);
        let e = resolve(
            &l,
            Some("docker/abc"),
            "abc",
            Instance::System,
            &Default::default(),
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("linux.cgroupsPath"), "{e}");
    }
}
