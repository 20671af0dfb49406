//! The container's cgroup, from the runtime's side. nanoclaw-cgroups does the work; this module
//! decides *which* cgroup and *when*:
//!
//! - `spec::load` calls [`validate`]: cgroupsPath and every `linux.resources` value are checked
//!   against this host's layout before anything exists.
//! - `create` calls [`create`] before the init is cloned: the resolved directories are written
//!   to `cgroup.json` in the state dir *first*, then created and configured, so a runtime killed
//!   at any point leaves a record `delete --force` can clean up; the init pid is placed with
//!   [`CgroupManager::add_process`] before it runs any setup.
//! - `delete` (and every failed `create`) calls [`remove`]: kill whatever is left, then remove
//!   the directories.
//!
//! The driver is cgroupfs, or systemd with `--systemd-cgroup` ([`use_systemd_driver`]): then
//! cgroupsPath is `slice:prefix:name` and the cgroup is a transient unit of PID 1 (or of the
//! user's systemd when rootless); nanoclaw-cgroups' `systemd` module does the D-Bus part behind
//! the same `CgroupManager`, so every other command uses it unchanged.
//!
//! Device rules follow runc: the spec's rules, then allow rules for the default devices every
//! container gets, then one for each `linux.devices` node.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use nanoclaw_cgroups::{CgroupConfig, CgroupError, CgroupManager, CgroupPaths, Layout};
use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType, LinuxResources, Spec};

/// The record of the container's cgroup directories inside its state dir.
pub const CGROUP_FILE: &str = "cgroup.json";

#[derive(Debug, thiserror::Error)]
pub enum CgroupStepError {
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: corrupt cgroup record: {msg}")]
    Corrupt { path: PathBuf, msg: String },
}

static SYSTEMD_DRIVER: AtomicBool = AtomicBool::new(false);

/// Selects the systemd cgroup driver for this process (`--systemd-cgroup`).
pub fn use_systemd_driver() {
    SYSTEMD_DRIVER.store(true, Ordering::Relaxed);
}

/// Selects the driver an existing container was created with (its `cgroup.json`): engines
/// pass `--systemd-cgroup` to `create` but not always to `exec` (podman's exec does not), and
/// the config snapshot exec re-validates carries that driver's `slice:prefix:name` path.
pub fn use_recorded_driver(state_dir: &Path) {
    let recorded = std::fs::read(record_path(state_dir))
        .ok()
        .and_then(|b| serde_json::from_slice::<CgroupPaths>(&b).ok())
        .is_some_and(|p| p.systemd.is_some());
    if recorded {
        use_systemd_driver();
    }
}

fn systemd_instance() -> Option<nanoclaw_cgroups::systemd::Instance> {
    use nanoclaw_cgroups::systemd::Instance;
    SYSTEMD_DRIVER.load(Ordering::Relaxed).then(|| {
        if crate::rootless::is_rootless() {
            Instance::User
        } else {
            Instance::System
        }
    })
}

fn path_str(p: &Path) -> Result<&str, (String, String)> {
    p.to_str().ok_or_else(|| {
        (
            "linux.cgroupsPath".to_string(),
            "not valid UTF-8".to_string(),
        )
    })
}

/// Validates `linux.cgroupsPath` and `linux.resources` against this host; on error returns the
/// field (as `linux.…`) and the reason, for the spec validator's own error type.
pub fn validate(spec: &Spec) -> Result<(), (String, String)> {
    let Some(linux) = spec.linux() else {
        return Ok(());
    };
    if let Some(instance) = systemd_instance() {
        let given = linux.cgroups_path().as_deref().map(path_str).transpose()?;
        nanoclaw_cgroups::systemd::UnitSpec::parse(given, "id", instance).map_err(|e| {
            let msg = match e {
                CgroupError::BadPath { reason, .. } => reason,
                other => other.to_string(),
            };
            ("linux.cgroupsPath".to_string(), msg)
        })?;
        if let Some(a) = spec.annotations() {
            nanoclaw_cgroups::systemd::props::from_annotations(a)
                .map_err(|(key, reason)| (format!("annotations[{key:?}]"), reason))?;
        }
    } else if let Some(p) = linux.cgroups_path() {
        nanoclaw_cgroups::CgroupsPath::parse(Some(p), "id").map_err(|e| {
            let msg = match e {
                CgroupError::BadPath { reason, .. } => reason,
                other => other.to_string(),
            };
            ("linux.cgroupsPath".to_string(), msg)
        })?;
    }
    let Some(r) = linux.resources() else {
        return Ok(());
    };
    nanoclaw_cgroups::validate::validate_values(r).map_err(split)?;
    let layout = Layout::detect().map_err(|e| ("linux.resources".to_string(), e.to_string()))?;
    nanoclaw_cgroups::validate(r, &layout).map_err(split)
}

fn split(e: nanoclaw_cgroups::ValidationError) -> (String, String) {
    (format!("linux.resources.{}", e.field), e.reason)
}

/// Devices every container may use (runc's AllowedDevices): mknod of any node, the standard
/// /dev nodes, ptys, and tun.
fn default_device_rules() -> Vec<LinuxDeviceCgroup> {
    let rule = |typ: LinuxDeviceType, major: Option<i64>, minor: Option<i64>, access: &str| {
        let mut d = LinuxDeviceCgroup::default();
        d.set_allow(true);
        d.set_typ(Some(typ));
        d.set_major(major);
        d.set_minor(minor);
        d.set_access(Some(access.to_string()));
        d
    };
    use LinuxDeviceType::{B, C};
    vec![
        rule(C, None, None, "m"),
        rule(B, None, None, "m"),
        rule(C, Some(1), Some(3), "rwm"),    // null
        rule(C, Some(1), Some(5), "rwm"),    // zero
        rule(C, Some(1), Some(7), "rwm"),    // full
        rule(C, Some(1), Some(8), "rwm"),    // random
        rule(C, Some(1), Some(9), "rwm"),    // urandom
        rule(C, Some(5), Some(0), "rwm"),    // tty
        rule(C, Some(5), Some(2), "rwm"),    // ptmx
        rule(C, Some(136), None, "rwm"),     // pts/*
        rule(C, Some(10), Some(200), "rwm"), // net/tun
    ]
}

/// The resources to apply at create: the spec's, with the device list completed as runc does.
pub fn effective_resources(spec: &Spec) -> LinuxResources {
    let mut r = spec
        .linux()
        .as_ref()
        .and_then(|l| l.resources().clone())
        .unwrap_or_default();
    let rules = complete_device_rules(r.devices().clone().unwrap_or_default(), Some(spec));
    r.set_devices(Some(rules));
    r
}

/// `rules` followed by the default devices and the spec's `linux.devices` nodes (read, write,
/// mknod): a rule list that starts with deny-all still leaves the container its /dev.
pub fn complete_device_rules(
    mut rules: Vec<LinuxDeviceCgroup>,
    spec: Option<&Spec>,
) -> Vec<LinuxDeviceCgroup> {
    rules.extend(default_device_rules());
    let devices = spec
        .and_then(|s| s.linux().as_ref())
        .and_then(|l| l.devices().as_ref());
    for d in devices.into_iter().flatten() {
        let mut rule = LinuxDeviceCgroup::from(d);
        rule.set_access(Some("rwm".to_string()));
        rules.push(rule);
    }
    rules
}

/// The cgroup of a container whose config names none: the container id, relative — under the
/// runtime's own cgroup on v1 and under its parent on cgroup2 (`nanoclaw_cgroups::path`), as
/// runc does, so tools that look for the id find it. Two containers with one id under two
/// --roots would share it: the second `create` is refused (a populated cgroup is never
/// adopted), as with runc.
pub fn default_cgroups_path(_state_dir: &Path, id: &str) -> PathBuf {
    PathBuf::from(id)
}

fn record_path(state_dir: &Path) -> PathBuf {
    state_dir.join(CGROUP_FILE)
}

/// Creates the container's cgroup and applies its resources (before the init is cloned). The
/// directories are recorded in the state dir before they are created.
pub fn create(
    state_dir: &Path,
    id: &str,
    spec: &Spec,
    rootless: bool,
) -> Result<Box<dyn CgroupManager>, CgroupStepError> {
    let layout = Layout::detect()?;
    let resources = effective_resources(spec);
    let given = spec
        .linux()
        .as_ref()
        .and_then(|l| l.cgroups_path().as_deref())
        .filter(|p| !p.as_os_str().is_empty());
    let default = default_cgroups_path(state_dir, id);
    let cfg = CgroupConfig {
        cgroups_path: Some(given.unwrap_or(&default)),
        container_id: id,
        resources: Some(&resources),
        rootless,
    };
    let paths = match systemd_instance() {
        Some(instance) => {
            let given = given.map(|p| p.to_string_lossy());
            let annotations = spec.annotations().clone().unwrap_or_default();
            nanoclaw_cgroups::systemd::resolve(
                &layout,
                given.as_deref(),
                id,
                instance,
                &annotations,
            )?
        }
        None => nanoclaw_cgroups::resolve(&layout, &cfg)?,
    };
    save(state_dir, &paths)?;
    let mgr = nanoclaw_cgroups::create_and_apply(&layout, paths, &cfg)?;
    if mgr.paths().is_empty() {
        save(state_dir, mgr.paths())?; // rootless without cgroup access: nothing to remove later
    }
    Ok(mgr)
}

fn save(state_dir: &Path, paths: &CgroupPaths) -> Result<(), CgroupStepError> {
    let path = record_path(state_dir);
    let json = serde_json::to_vec(paths).map_err(|e| CgroupStepError::Corrupt {
        path: path.clone(),
        msg: e.to_string(),
    })?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    crate::container::state::write_private_record(state_dir, &name, &json)
        .map_err(|(path, source)| CgroupStepError::Io { path, source })
}

/// The manager of an existing container, from its record; `None` when it has no cgroup record
/// (created before the record existed, or a rootless container without cgroups).
pub fn load(state_dir: &Path) -> Result<Option<Box<dyn CgroupManager>>, CgroupStepError> {
    let path = record_path(state_dir);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(CgroupStepError::Io { path, source }),
    };
    let paths: CgroupPaths =
        serde_json::from_slice(&bytes).map_err(|e| CgroupStepError::Corrupt {
            path: path.clone(),
            msg: e.to_string(),
        })?;
    // The record lives in the container owner's private state; still, never trust it to name
    // what may be killed and removed: each directory must lie strictly below a cgroup
    // hierarchy that the host's mount table (not the record) shows, and be a cgroup
    // filesystem itself.
    let layout =
        nanoclaw_cgroups::layout::Layout::detect().map_err(|e| CgroupStepError::Corrupt {
            path: path.clone(),
            msg: format!("cgroup layout: {e}"),
        })?;
    let real_mounts: Vec<&Path> = layout
        .v1
        .iter()
        .map(|h| h.mountpoint.as_path())
        .chain(layout.unified.iter().map(|u| u.mountpoint.as_path()))
        .collect();
    for d in paths.dirs() {
        let corrupt = |why: String| CgroupStepError::Corrupt {
            path: path.clone(),
            msg: format!("{}: {why}", d.dir.display()),
        };
        if !real_mounts.contains(&d.mountpoint.as_path()) {
            return Err(corrupt(format!(
                "{} is not a cgroup hierarchy in the host's mount table",
                d.mountpoint.display()
            )));
        }
        if d.dir == d.mountpoint
            || !d.dir.starts_with(&d.mountpoint)
            || d.dir
                .components()
                .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            return Err(corrupt(format!(
                "not a cgroup below {}",
                d.mountpoint.display()
            )));
        }
        if let Ok(fs) = nix::sys::statfs::statfs(&d.dir) {
            let t = fs.filesystem_type();
            if t != nix::sys::statfs::CGROUP_SUPER_MAGIC
                && t != nix::sys::statfs::CGROUP2_SUPER_MAGIC
            {
                return Err(corrupt("not on a cgroup filesystem".into()));
            }
        }
    }
    Ok(Some(nanoclaw_cgroups::open(paths)))
}

/// Kills every process left in the container's cgroup and removes it (delete, failed create).
/// Nothing recorded: nothing to do.
pub fn remove(state_dir: &Path) -> Result<(), CgroupStepError> {
    let Some(mgr) = load(state_dir)? else {
        return Ok(());
    };
    // A frozen cgroup cannot die: thaw first (a paused container being deleted with --force).
    if mgr.freezer_state().ok() == Some(nanoclaw_cgroups::FreezerState::Frozen) {
        let _ = mgr.thaw();
    }
    mgr.kill_all()?;
    mgr.destroy()?;
    let _ = std::fs::remove_file(record_path(state_dir));
    Ok(())
}

/// Thaws the container's cgroup if it is frozen (before killing a paused container); best
/// effort: a container without a cgroup record has nothing to thaw.
pub fn thaw(state_dir: &Path) {
    if let Ok(Some(mgr)) = load(state_dir) {
        if mgr.freezer_state().ok() == Some(nanoclaw_cgroups::FreezerState::Frozen) {
            let _ = mgr.thaw();
        }
    }
}

/// Removes a cgroup held by an unwinding `create`: kill, then destroy.
pub fn unwind(mgr: &dyn CgroupManager) {
    let _ = mgr.thaw();
    let _ = mgr.kill_all();
    let _ = mgr.destroy();
}
