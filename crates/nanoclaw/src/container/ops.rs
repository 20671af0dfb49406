//! The lifecycle commands that act on an existing container without creating anything:
//! `state`, `kill`, `list`, `ps`, `pause`, `resume`. Each takes the container's lock (the state
//! dir `flock`), so they are serialized with `create`/`start`/`delete` on the same container.
//!
//! Signals go through a pidfd opened on the recorded init and checked against the recorded start
//! time, so a pid reused by an unrelated host process after the init died is never signalled.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::container::list::ListEntry;
use crate::container::state::{self, State, StateDir, StateError, Status};
use crate::container::status_of;

#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    #[error(transparent)]
    State(#[from] StateError),
    /// Starts with runc's wording: containerd's runc shim treats a kill error containing
    /// `container not running` as "process already finished" (a pod stop relies on it).
    #[error("container not running: container {id:?} has no live init")]
    NotRunning { id: String },
    /// `runc_says` is runc's own message for the refusal (`container not running`,
    /// `container not paused`), which engines may match.
    #[error("{runc_says}: container {id:?} is {status}")]
    WrongStatus {
        id: String,
        status: &'static str,
        runc_says: &'static str,
    },
    #[error("signal {signal} to container {id:?} (pid {pid}): {source}")]
    Signal {
        id: String,
        pid: i32,
        signal: i32,
        source: nix::Error,
    },
    #[error("--root {root}: {source}")]
    Root {
        root: PathBuf,
        source: std::io::Error,
    },
    #[error("cgroup of container {id:?}: {msg}")]
    Cgroup { id: String, msg: String },
    #[error("ps: running {cmd}: {msg}")]
    Ps { cmd: String, msg: String },
}

pub fn status_name(s: Status) -> &'static str {
    match s {
        Status::Creating => "creating",
        Status::Created => "created",
        Status::Running => "running",
        Status::Paused => "paused",
        Status::Stopped => "stopped",
    }
}

/// runc's refusal of `start` on a container that is not `created` (its wording, which engines
/// may match).
pub fn start_refusal(s: Status) -> &'static str {
    match s {
        Status::Running => "cannot start an already running container",
        Status::Stopped => "cannot start a container that has stopped",
        Status::Paused => "cannot start a container in the paused state",
        Status::Creating => "cannot start a container in the creating state",
        Status::Created => "cannot start a container in the created state",
    }
}

/// `nanoclaw state` output: the OCI state (ociVersion, id, status, pid, bundle, annotations) with
/// runc's extra fields (rootfs, created, owner), in runc's field order. A stopped container
/// shows pid 0, as runc does.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StateView {
    pub oci_version: String,
    pub id: String,
    pub pid: i32,
    pub status: &'static str,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: String,
    pub owner: String,
    #[serde(skip_serializing_if = "HashMap::is_empty")]
    pub annotations: HashMap<String, String>,
}

fn view(dir: &StateDir, st: &State) -> StateView {
    let status = status_of(dir, st);
    StateView {
        oci_version: st.oci_version.clone(),
        id: st.id.clone(),
        pid: if status == Status::Stopped {
            0
        } else {
            st.pid.unwrap_or(0)
        },
        status: status_name(status),
        bundle: st.bundle.clone(),
        rootfs: st.rootfs.clone(),
        created: st.created.clone(),
        owner: String::new(),
        annotations: st.annotations.clone(),
    }
}

/// `state ID`: the pretty-printed state JSON.
pub fn state(root: &Path, id: &str) -> Result<String, OpsError> {
    let dir = StateDir::open(root, id)?;
    let st = dir.load()?;
    let v = view(&dir, &st);
    Ok(serde_json::to_string_pretty(&v).unwrap_or_default())
}

pub(crate) fn pidfd_open(pid: i32) -> nix::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1; no pointers.
    let r = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    let fd = nix::errno::Errno::result(r)?;
    let fd = i32::try_from(fd).map_err(|_| nix::Error::EBADF)?;
    // SAFETY: the kernel returned a fresh fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

pub(crate) fn pidfd_send_signal(fd: &OwnedFd, sig: i32) -> nix::Result<()> {
    // SAFETY: pidfd_send_signal(fd, sig, NULL, 0): a null siginfo is allowed (the kernel fills
    // in a kill(2)-like one); fd is a live pidfd.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    nix::errno::Errno::result(r).map(|_| ())
}

/// Signals the init recorded in `st`, if it is still that process.
pub fn signal_init(st: &State, sig: i32) -> Result<(), OpsError> {
    let not_running = || OpsError::NotRunning { id: st.id.clone() };
    let pid = st.pid.ok_or_else(not_running)?;
    let fd = pidfd_open(pid).map_err(|_| not_running())?;
    // The pidfd pins the process; only now is the start-time check free of reuse races.
    if !state::init_alive(pid, st.init_start_time) {
        return Err(not_running());
    }
    pidfd_send_signal(&fd, sig).map_err(|source| OpsError::Signal {
        id: st.id.clone(),
        pid,
        signal: sig,
        source,
    })
}

/// `kill [--all] ID SIGNAL`. A created container can be killed (its init is waiting on the
/// exec fifo); a stopped one is an error, as in runc.
pub fn kill(root: &Path, id: &str, sig: i32, all: bool) -> Result<(), OpsError> {
    let dir = StateDir::open(root, id)?;
    let st = dir.load()?;
    if status_of(&dir, &st) == Status::Stopped {
        return Err(OpsError::NotRunning { id: id.to_string() });
    }
    if all {
        for pid in container_pids_of(&dir, &st)? {
            if pid == st.pid.unwrap_or(0) {
                continue;
            }
            // Processes may exit between listing and signalling: ESRCH is fine.
            // SAFETY: kill(2) with a pid and a signal number; no pointers. (libc rather than
            // nix: nix's Signal has no real-time signals.)
            let r = unsafe { libc::kill(pid, sig) };
            match nix::errno::Errno::result(r) {
                Ok(_) | Err(nix::Error::ESRCH) => {}
                Err(source) => {
                    return Err(OpsError::Signal {
                        id: id.to_string(),
                        pid,
                        signal: sig,
                        source,
                    })
                }
            }
        }
    }
    signal_init(&st, sig)
}

/// Every process of the container: the members of its cgroup; without a cgroup (rootless),
/// the members of the init's pid namespace when it has its own, else the init alone.
pub fn container_pids_of(dir: &StateDir, st: &State) -> Result<Vec<i32>, OpsError> {
    let cg = |msg: String| OpsError::Cgroup {
        id: st.id.clone(),
        msg,
    };
    if let Some(mgr) = crate::container::cgroup::load(dir.path()).map_err(|e| cg(e.to_string()))? {
        let mut pids = mgr.pids().map_err(|e| cg(e.to_string()))?;
        pids.sort_unstable();
        return Ok(pids);
    }
    container_pids(st)
}

/// The members of the init's pid namespace (the init alone when it shares ours).
pub fn container_pids(st: &State) -> Result<Vec<i32>, OpsError> {
    let Some(init) = st.pid.filter(|p| state::init_alive(*p, st.init_start_time)) else {
        return Ok(Vec::new());
    };
    let ns_of = |pid: i32| {
        std::fs::metadata(format!("/proc/{pid}/ns/pid"))
            .map(|m| m.ino())
            .ok()
    };
    let theirs = ns_of(init);
    let ours = ns_of(std::process::id() as i32);
    if theirs.is_none() || theirs == ours {
        return Ok(vec![init]);
    }
    let mut pids = Vec::new();
    let entries = std::fs::read_dir("/proc").map_err(|source| OpsError::Root {
        root: PathBuf::from("/proc"),
        source,
    })?;
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if ns_of(pid) == theirs {
            pids.push(pid);
        }
    }
    pids.sort_unstable();
    Ok(pids)
}

/// `ps ID`: the container's pids.
pub fn ps_pids(root: &Path, id: &str) -> Result<Vec<i32>, OpsError> {
    let dir = StateDir::open(root, id)?;
    let st = dir.load()?;
    container_pids_of(&dir, &st)
}

/// `pause ID`: freezes every process of a running container (cgroup freezer).
pub fn pause(root: &Path, id: &str) -> Result<(), OpsError> {
    freeze_or_thaw(root, id, true)
}

/// `resume ID`: thaws a paused container.
pub fn resume(root: &Path, id: &str) -> Result<(), OpsError> {
    freeze_or_thaw(root, id, false)
}

fn freeze_or_thaw(root: &Path, id: &str, freeze: bool) -> Result<(), OpsError> {
    let dir = StateDir::open(root, id)?;
    let mut st = dir.load()?;
    let status = status_of(&dir, &st);
    let (want, next, runc_says) = if freeze {
        (Status::Running, Status::Paused, "container not running")
    } else {
        (Status::Paused, Status::Running, "container not paused")
    };
    if status != want {
        return Err(OpsError::WrongStatus {
            id: id.to_string(),
            status: status_name(status),
            runc_says,
        });
    }
    let cg = |msg: String| OpsError::Cgroup {
        id: id.to_string(),
        msg,
    };
    let mgr = crate::container::cgroup::load(dir.path())
        .map_err(|e| cg(e.to_string()))?
        .ok_or_else(|| cg("the container has no cgroup, so it cannot be frozen".to_string()))?;
    if freeze {
        mgr.freeze().map_err(|e| cg(e.to_string()))?;
    } else {
        mgr.thaw().map_err(|e| cg(e.to_string()))?;
    }
    st.status = next;
    dir.save(&st)?;
    Ok(())
}

/// `ps ID [-- ps args]` as a table: the host's `ps` output filtered to the container's pids.
pub fn ps_table(root: &Path, id: &str, ps_args: &[String]) -> Result<String, OpsError> {
    let pids = ps_pids(root, id)?;
    let args: Vec<String> = if ps_args.is_empty() {
        vec!["-ef".to_string()]
    } else {
        ps_args.to_vec()
    };
    let cmd = format!("ps {}", args.join(" "));
    let out = std::process::Command::new("ps")
        .args(&args)
        .output()
        .map_err(|e| OpsError::Ps {
            cmd: cmd.clone(),
            msg: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(OpsError::Ps {
            cmd,
            msg: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    crate::container::list::filter_ps_table(&String::from_utf8_lossy(&out.stdout), &pids).map_err(
        |e| OpsError::Ps {
            cmd,
            msg: e.to_string(),
        },
    )
}

/// `list`: every container under `root` (an absent root is an empty list).
pub fn list(root: &Path) -> Result<Vec<ListEntry>, OpsError> {
    let entries = match std::fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(OpsError::Root {
                root: root.to_path_buf(),
                source,
            })
        }
    };
    let mut ids: Vec<String> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .collect();
    ids.sort();
    let mut out = Vec::new();
    for id in ids {
        // A container deleted meanwhile, or one half-created by a crash (no state.json yet), is
        // skipped; `delete --force` cleans the latter.
        let Ok(dir) = StateDir::open(root, &id) else {
            continue;
        };
        let Ok(st) = dir.load() else { continue };
        let v = view(&dir, &st);
        let owner = std::fs::metadata(dir.path())
            .map(|m| user_name(m.uid()))
            .unwrap_or_default();
        out.push(ListEntry {
            oci_version: v.oci_version,
            id: v.id,
            pid: v.pid,
            status: v.status.to_string(),
            bundle: v.bundle,
            rootfs: v.rootfs,
            created: v.created,
            owner,
            annotations: (!v.annotations.is_empty()).then_some(v.annotations),
        });
    }
    Ok(out)
}

fn user_name(uid: u32) -> String {
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| format!("#{uid}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_root_lists_nothing_and_missing_container_is_named() {
        let dir = tempfile::tempdir().unwrap();
        assert!(list(&dir.path().join("absent")).unwrap().is_empty());
        let e = state(dir.path(), "nope").unwrap_err().to_string();
        assert!(e.contains("\"nope\""), "{e}");
        let e = kill(dir.path(), "nope", 9, false).unwrap_err().to_string();
        assert!(e.contains("does not exist"), "{e}");
    }

    #[test]
    fn signal_to_a_dead_recorded_init_is_refused() {
        // A process that exited: its pid is either free or (rarely) reused with another
        // start time; both must give NotRunning, never a signal to someone else.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        child.wait().unwrap();
        let st = State {
            oci_version: "1.0.2".into(),
            id: "gone".into(),
            status: Status::Running,
            pid: Some(pid),
            bundle: "/b".into(),
            annotations: HashMap::new(),
            init_start_time: 1,
            rootless: false,
            rootfs: "/b/rootfs".into(),
            created: String::new(),
            no_new_keyring: false,
        };
        assert!(matches!(
            signal_init(&st, 0),
            Err(OpsError::NotRunning { .. })
        ));
    }
}
