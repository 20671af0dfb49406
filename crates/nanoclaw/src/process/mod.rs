//! The container process's own attributes: rlimits, oomScoreAdj, user and groups, umask,
//! working directory, environment and the executable lookup. Runs in the init, child side.

pub mod channel;
pub mod console;
pub mod exec;
pub mod finish;
pub mod init;
pub mod namespaces;
pub mod signal;
pub mod stdio;

use std::ffi::{CString, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::stat::Mode;
use nix::unistd::{Gid, Uid};

use crate::spec::ProcessPlan;

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("{field}: {source}")]
    Sys { field: String, source: Errno },
    #[error("process.oomScoreAdj: write /proc/self/oom_score_adj: {0}")]
    OomScoreAdj(std::io::Error),
    #[error("process.args[0]: {name:?}: executable file not found in $PATH")]
    NotFound { name: String },
    /// runc's (Go's exec.LookPath) wording: podman maps "permission denied" to exit 126.
    #[error(
        "process.args[0]: {name:?}: permission denied (a directory or a file without execute bits)"
    )]
    NotExecutable { name: String },
    #[error("{field}: contains NUL")]
    Nul { field: String },
}

fn sys(field: impl Into<String>) -> impl FnOnce(Errno) -> ProcessError {
    let field = field.into();
    move |source| ProcessError::Sys { field, source }
}

/// Becomes uid/gid 0 of a user namespace (if 0 is mapped), so the setup runs as the
/// namespace's root whatever host id the runtime had.
pub fn become_ns_root() -> Result<(), ProcessError> {
    let zero_g = Gid::from_raw(0);
    let zero_u = Uid::from_raw(0);
    match nix::unistd::setresgid(zero_g, zero_g, zero_g) {
        Ok(()) | Err(Errno::EINVAL) => {}
        Err(e) => return Err(sys("setresgid(0) in the user namespace")(e)),
    }
    match nix::unistd::setresuid(zero_u, zero_u, zero_u) {
        Ok(()) | Err(Errno::EINVAL) => Ok(()),
        Err(e) => Err(sys("setresuid(0) in the user namespace")(e)),
    }
}

/// Applies process.rlimits (before the uid switch: raising a hard limit needs
/// CAP_SYS_RESOURCE).
pub fn set_rlimits(p: &ProcessPlan) -> Result<(), ProcessError> {
    for (i, r) in p.rlimits.iter().enumerate() {
        nix::sys::resource::setrlimit(r.resource, r.soft, r.hard)
            .map_err(sys(format!("process.rlimits[{i}]")))?;
    }
    Ok(())
}

/// Writes process.oomScoreAdj (through the host's /proc, before pivot_root).
pub fn set_oom_score_adj(p: &ProcessPlan) -> Result<(), ProcessError> {
    if let Some(adj) = p.oom_score_adj {
        std::fs::write("/proc/self/oom_score_adj", adj.to_string())
            .map_err(ProcessError::OomScoreAdj)?;
    }
    Ok(())
}

/// Switches to process.user: supplementary groups, then gid, then uid (the order that keeps
/// the permission to do the next step).
///
/// `setgroups_denied`: the runtime wrote gid_map unprivileged, so the kernel refuses
/// setgroups in this namespace; the plan guarantees additionalGids is empty then (checked by
/// `container::create`).
pub fn switch_user(p: &ProcessPlan, setgroups_denied: bool) -> Result<(), ProcessError> {
    if !setgroups_denied {
        let gids: Vec<Gid> = p
            .additional_gids
            .iter()
            .map(|g| Gid::from_raw(*g))
            .collect();
        nix::unistd::setgroups(&gids).map_err(sys("process.user.additionalGids"))?;
    }
    let g = Gid::from_raw(p.gid);
    nix::unistd::setresgid(g, g, g).map_err(sys("process.user.gid"))?;
    let u = Uid::from_raw(p.uid);
    nix::unistd::setresuid(u, u, u).map_err(sys("process.user.uid"))?;
    Ok(())
}

/// Sets process.user.umask, or restores the runtime's umask when unset (the init ran its
/// setup under umask 0 so modes from the spec are exact).
pub fn set_umask(p: &ProcessPlan, original: Mode) {
    let m = p
        .umask
        .map(|u| Mode::from_bits_truncate(u as libc::mode_t))
        .unwrap_or(original);
    nix::sys::stat::umask(m);
}

/// The value of PATH in process.env, if any.
fn env_path(env: &[String]) -> Option<&str> {
    env.iter().rev().find_map(|e| e.strip_prefix("PATH="))
}

/// Finds `process.args[0]` like execvp would, with the container's PATH (runc's behaviour).
/// Called after pivot_root, so it only ever sees the container's files.
pub fn find_executable(p: &ProcessPlan) -> Result<PathBuf, ProcessError> {
    let name = p.args.first().map(String::as_str).unwrap_or_default();
    if name.contains('/') {
        // Checked here (as runc does at create) so a missing program fails `create`, where
        // engines report it, rather than the workload's start.
        let Ok(m) = std::fs::metadata(name) else {
            return Err(ProcessError::NotFound {
                name: name.to_string(),
            });
        };
        if m.is_dir() || m.permissions().mode() & 0o111 == 0 {
            return Err(ProcessError::NotExecutable {
                name: name.to_string(),
            });
        }
        return Ok(PathBuf::from(name));
    }
    let path =
        env_path(&p.env).unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        let cand = Path::new(dir).join(name);
        if let Ok(m) = std::fs::metadata(&cand) {
            if m.is_file() && m.permissions().mode() & 0o111 != 0 {
                return Ok(cand);
            }
        }
    }
    Err(ProcessError::NotFound {
        name: name.to_string(),
    })
}

/// argv and envp as C strings (NULs were refused by spec validation; checked again here).
pub fn c_strings(field: &str, items: &[String]) -> Result<Vec<CString>, ProcessError> {
    items
        .iter()
        .map(|s| {
            CString::new(s.as_bytes()).map_err(|_| ProcessError::Nul {
                field: field.to_string(),
            })
        })
        .collect()
}

pub fn c_path(p: &Path) -> Result<CString, ProcessError> {
    CString::new(OsStr::as_bytes(p.as_os_str())).map_err(|_| ProcessError::Nul {
        field: "process.args[0]".into(),
    })
}
