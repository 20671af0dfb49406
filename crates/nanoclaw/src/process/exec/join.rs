//! What an exec'd process joins: the namespaces of the container's init (opened through a
//! `/proc/<pid>` fd checked against the recorded start time, so a reused pid is never entered)
//! and the init's cgroups in every hierarchy.

use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use nix::sched::CloneFlags;

use super::ExecError;

/// The namespaces a process joins, in the order it joins them: user first (it grants the
/// capabilities the other setns calls need inside a user namespace), mount last. `pid` is
/// joined by the runtime before the fork (it only affects children).
/// The time namespace is read from `time_for_children`: the init enters its own at execve,
/// so before `start` its `time` link still shows the runtime's.
const JOIN_ORDER: [(&str, CloneFlags); 7] = [
    ("user", CloneFlags::CLONE_NEWUSER),
    ("ipc", CloneFlags::CLONE_NEWIPC),
    ("uts", CloneFlags::CLONE_NEWUTS),
    ("net", CloneFlags::CLONE_NEWNET),
    ("cgroup", CloneFlags::CLONE_NEWCGROUP),
    (
        "time_for_children",
        CloneFlags::from_bits_retain(libc::CLONE_NEWTIME),
    ),
    ("mnt", CloneFlags::CLONE_NEWNS),
];

/// The pseudo-namespace entry that makes the exec child chroot into the init's root.
pub(super) const CHROOT: &str = "root";

/// A namespace of the container's init that differs from ours.
pub struct NsFd {
    pub name: &'static str,
    pub flag: CloneFlags,
    pub fd: OwnedFd,
}

/// The namespaces of the container's init to join: the pid namespace (joined by the runtime,
/// for its children) and the others (joined by the child).
pub struct Namespaces {
    pub pid: Option<OwnedFd>,
    pub others: Vec<NsFd>,
}

/// Opens the init's namespaces through a `/proc/<pid>` directory fd after checking, through
/// that same fd, that the process has the recorded start time: if the init died and its pid
/// was reused, the check fails (or the fd refers to the dead process and every open fails), so
/// exec can never enter an unrelated process's namespaces. Namespaces this process already
/// shares are skipped: setns into one's own user namespace is EINVAL, the others are no-ops.
pub fn open_namespaces(pid: i32, start_time: u64, id: &str) -> Result<Namespaces, ExecError> {
    use nix::fcntl::{openat, OFlag};
    use nix::sys::stat::Mode;
    let gone = || ExecError::NotRunning {
        id: id.to_string(),
        status: "stopped",
    };
    let proc_dir = nix::fcntl::open(
        format!("/proc/{pid}").as_str(),
        OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|_| gone())?;
    let stat = openat(
        &proc_dir,
        "stat",
        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|_| gone())?;
    let mut text = String::new();
    std::fs::File::from(stat)
        .read_to_string(&mut text)
        .map_err(|_| gone())?;
    let started = crate::container::state::ProcStat::parse(&text).map(|s| s.start_time);
    if started != Some(start_time) {
        return Err(gone());
    }
    let open = |name: &str| -> Result<Option<OwnedFd>, ExecError> {
        let rel = format!("ns/{name}");
        let err = |source: std::io::Error| ExecError::Namespace {
            path: PathBuf::from(format!("/proc/{pid}/{rel}")),
            source,
        };
        let fd = openat(
            &proc_dir,
            rel.as_str(),
            OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| err(e.into()))?;
        let f = std::fs::File::from(fd);
        let their_ino = f.metadata().map_err(err)?.ino();
        let our_ino = std::fs::metadata(format!("/proc/self/ns/{name}"))
            .map(|m| m.ino())
            .ok();
        Ok((our_ino != Some(their_ino)).then(|| OwnedFd::from(f)))
    };
    let pid_ns = open("pid")?;
    let mut others = Vec::new();
    for (name, flag) in JOIN_ORDER {
        if let Some(fd) = open(name)? {
            others.push(NsFd { name, flag, fd });
        }
    }
    // A container in our own mount namespace (no `mount` namespace, hostmount.rs) lives in a
    // chroot: the child enters the init's root instead of a mount namespace.
    if !others.iter().any(|ns| ns.name == "mnt") {
        let fd = openat(
            &proc_dir,
            "root",
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| ExecError::Namespace {
            path: PathBuf::from(format!("/proc/{pid}/root")),
            source: e.into(),
        })?;
        others.push(NsFd {
            name: CHROOT,
            flag: CloneFlags::empty(),
            fd,
        });
    }
    Ok(Namespaces {
        pid: pid_ns,
        others,
    })
}

/// Joins `pid` to the cgroups `init_pid` is in, in every hierarchy: the directories come from
/// `/proc/<init_pid>/cgroup` and the host's cgroup layout (nanoclaw-cgroups).
pub fn join_cgroups_of(init_pid: i32, pid: i32) -> Result<(), String> {
    let theirs = std::fs::read_to_string(format!("/proc/{init_pid}/cgroup"))
        .map_err(|e| format!("/proc/{init_pid}/cgroup: {e}"))?;
    let layout = nanoclaw_cgroups::layout::Layout::detect().map_err(|e| e.to_string())?;
    for (hid, ctrls, path) in nanoclaw_cgroups::layout::parse_self_cgroup(&theirs) {
        let (mountpoint, mount_root) = if hid == "0" {
            match &layout.unified {
                Some(u) => (&u.mountpoint, &u.mount_root),
                None => continue,
            }
        } else {
            let want: std::collections::BTreeSet<&str> = ctrls.split(',').collect();
            let found = layout.v1.iter().find(|h| {
                h.controllers
                    .iter()
                    .map(String::as_str)
                    .collect::<std::collections::BTreeSet<_>>()
                    == want
            });
            match found {
                Some(h) => (&h.mountpoint, &h.mount_root),
                None => continue,
            }
        };
        let rel = path
            .strip_prefix(mount_root.as_str())
            .unwrap_or(&path)
            .trim_start_matches('/');
        let procs = mountpoint.join(rel).join("cgroup.procs");
        std::fs::write(&procs, pid.to_string()).map_err(|e| format!("{}: {e}", procs.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_cgroups_resolve_to_existing_directories() {
        // Joining our own cgroups is a no-op move that must find every hierarchy's directory;
        // writing cgroup.procs needs root.
        if !claw_testsupport::require_root("own_cgroups_resolve_to_existing_directories") {
            return;
        }
        let me = std::process::id() as i32;
        join_cgroups_of(me, me).unwrap();
    }
}
