//! The last steps of every process the runtime starts inside a container — the init and each
//! `exec`'d process — from "inside the container's namespaces, still privileged" to `execve`.
//!
//! There is one path so the two can never drift apart again (the exec path once skipped the
//! new session keyring, the cwd check and `setsid`). The caller has already made the process
//! non-dumpable and closed the fds it inherited; [`ProcessFinish::exec`] then runs, in order:
//!
//! 1. a fresh session keyring (`_ses.<id>`), unless `--no-new-keyring` was given at create
//! 2. the terminal (pty from the container's devpts, controlling tty) or, without one, a new
//!    session, so the caller's terminal is never this process's controlling tty (TIOCSTI)
//! 3. rlimits, personality, scheduler and I/O priority (process.scheduler/ioPriority)
//! 4. seccomp now if it cannot be loaded after the privilege drop (no no_new_privs)
//! 5. capabilities around the uid/gid switch
//! 6. `chdir(process.cwd)`, then the check that the cwd lies inside the container's root
//!    (CVE-2024-21626: a cwd reached through a leaked host directory fd)
//! 7. no_new_privs; executable lookup; argv/envp; umask; default signal dispositions
//! 8. every fd above stderr (and above `--preserve-fds`) close-on-exec
//! 9. the caller's barrier (the init reports Ready and waits for `start` there)
//! 10. the AppArmor exec transition, then seccomp — the very last step before `execve`
//!     (with NOTIFY rules and a listenerPath, both move before step 9, so the agent gets the
//!     listener fd during `create`, as with runc and youki).

use std::ffi::CStr;
use std::os::unix::net::UnixStream;
use std::path::Path;

use nix::sys::stat::Mode;
use oci_spec::runtime::Spec;

use crate::process::{self, ProcessError};
use crate::security::{SeccompStep, SecurityError};
use crate::spec::ProcessPlan;

#[derive(Debug, thiserror::Error)]
pub enum FinishError {
    #[error(transparent)]
    Process(#[from] ProcessError),
    #[error(transparent)]
    Security(#[from] SecurityError),
    #[error(transparent)]
    Console(#[from] crate::process::console::ConsoleError),
    #[error(transparent)]
    Sched(#[from] crate::security::sched::SchedError),
    #[error("{what}: {source}")]
    Sys {
        what: &'static str,
        source: nix::Error,
    },
}

impl FinishError {
    /// The exit status of a process that failed before execve: 127 when the executable was
    /// not found (as a shell reports it), 1 otherwise.
    pub fn exit_status(&self) -> i32 {
        if matches!(self, FinishError::Process(ProcessError::NotFound { .. })) {
            127
        } else {
            1
        }
    }
}

fn sys(what: &'static str) -> impl FnOnce(nix::Error) -> FinishError {
    move |source| FinishError::Sys { what, source }
}

/// Everything the last steps need; built by the init or the exec child.
pub struct ProcessFinish<'a> {
    pub process: &'a ProcessPlan,
    /// The container's spec with this process in place (version and annotations for the
    /// seccomp agent).
    pub spec: &'a Spec,
    /// The validated security settings of this process.
    pub security: &'a crate::security::SecurityPlan,
    pub container_id: &'a str,
    pub bundle: &'a Path,
    /// The kernel refuses setgroups in this user namespace (unprivileged gid_map).
    pub setgroups_denied: bool,
    /// Join a new session keyring with this name; `None` keeps the current one.
    pub session_keyring: Option<&'a CStr>,
    /// `process.terminal`: the connected console socket and the size (rows, cols).
    pub console: Option<(&'a UnixStream, Option<(u32, u32)>)>,
    /// The compiled seccomp filter (and NOTIFY agent connection), loaded at step 4 or 10.
    pub seccomp: Option<SeccompStep>,
    /// `--preserve-fds N`: fds 3..3+N stay open across execve.
    pub preserve_fds: u32,
    /// The umask when process.user.umask is unset.
    pub default_umask: Mode,
}

/// Uninhabited: `exec` only returns on failure.
pub enum Never {}

impl ProcessFinish<'_> {
    /// Runs the steps above and execs the process. `barrier` runs after everything that needs
    /// privilege and before AppArmor and seccomp (the init waits for `start` there).
    pub fn exec<E: From<FinishError>>(
        mut self,
        barrier: impl FnOnce() -> Result<(), E>,
    ) -> Result<Never, E> {
        let plan = self.process;
        if let Some(name) = self.session_keyring {
            join_session_keyring(name)?;
        }
        match self.console {
            Some((socket, size)) => crate::process::console::setup_in_container(socket, size)
                .map_err(|e| E::from(e.into()))?,
            None => new_session()?,
        }
        process::set_rlimits(plan).map_err(|e| E::from(e.into()))?;
        if let Some(value) = self.security.personality {
            crate::security::personality::apply(value)
                .map_err(|e| E::from(SecurityError::from(e).into()))?;
        }
        // Scheduler and I/O priority while the process still has CAP_SYS_NICE (a realtime
        // policy needs it); both survive execve.
        plan.sched.apply().map_err(|e| E::from(e.into()))?;
        if let Some(policy) = &self.security.memory_policy {
            policy
                .apply()
                .map_err(|e| E::from(SecurityError::from(e).into()))?;
        }
        let mut seccomp = self.seccomp.take();
        // Without no_new_privs, loading a filter needs CAP_SYS_ADMIN: load it before the
        // capabilities go (runc does the same); otherwise last, just before execve.
        if !plan.no_new_privileges {
            if let Some(step) = seccomp.take() {
                self.install_seccomp(step)?;
            }
        }
        let caps = &self.security.capabilities;
        caps.before_user_switch()
            .map_err(|e| E::from(SecurityError::from(e).into()))?;
        process::switch_user(plan, self.setgroups_denied).map_err(|e| E::from(e.into()))?;
        caps.after_user_switch()
            .map_err(|e| E::from(SecurityError::from(e).into()))?;
        enter_cwd(plan)?;
        if plan.no_new_privileges {
            nix::sys::prctl::set_no_new_privs()
                .map_err(|e| E::from(sys("prctl(PR_SET_NO_NEW_PRIVS)")(e)))?;
        }
        let exe = process::find_executable(plan)
            .and_then(|p| process::c_path(&p))
            .map_err(|e| E::from(e.into()))?;
        let argv = process::c_strings("process.args", &plan.args).map_err(|e| E::from(e.into()))?;
        let envp = process::c_strings("process.env", &plan.env).map_err(|e| E::from(e.into()))?;
        process::set_umask(plan, self.default_umask);
        crate::process::signal::reset_for_workload().map_err(sys("sigprocmask"))?;
        close_on_exec_from(3u32.saturating_add(self.preserve_fds))?;
        // A NOTIFY listener must reach its agent during `create` (runc and youki deliver it
        // there; an agent that waits for it before `start` would otherwise deadlock): the
        // filter is then loaded before the barrier. Every privilege step is already behind
        // us, so the filter still comes after the capability drop, the uid switch and
        // no_new_privs; only the exec fifo wait (and startContainer hooks) run under it, as
        // in runc, which loads every filter there.
        let early = seccomp
            .as_ref()
            .is_some_and(crate::security::SeccompStep::delivers_listener);
        if early {
            crate::security::apply_apparmor(self.security).map_err(|e| E::from(e.into()))?;
            if let Some(step) = seccomp.take() {
                self.install_seccomp(step)?;
            }
        }
        barrier()?;
        if !early {
            crate::security::apply_apparmor(self.security).map_err(|e| E::from(e.into()))?;
        }
        if let Some(step) = seccomp {
            self.install_seccomp(step)?;
        }
        let err = match nix::unistd::execve(&exe, &argv, &envp) {
            Err(e) => e,
            Ok(never) => match never {},
        };
        Err(sys("execve")(err).into())
    }

    fn install_seccomp(&self, step: SeccompStep) -> Result<(), FinishError> {
        Ok(step.install(self.spec, self.container_id, self.bundle)?)
    }
}

/// KEYCTL_JOIN_SESSION_KEYRING: the caller's keys are not the container's.
fn join_session_keyring(name: &CStr) -> Result<(), FinishError> {
    // SAFETY: KEYCTL_JOIN_SESSION_KEYRING takes a NUL-terminated name that outlives the call;
    // the other arguments are unused.
    let r = unsafe {
        libc::syscall(
            libc::SYS_keyctl,
            1, /* KEYCTL_JOIN_SESSION_KEYRING */
            name.as_ptr(),
            0,
            0,
            0,
        )
    };
    // ENOSYS/EACCES/EPERM: keyrings unavailable or refused (a restrictive seccomp profile on
    // the host); runc ignores that too, and the process then cannot reach keyrings at all.
    match nix::errno::Errno::result(r) {
        Ok(_) | Err(nix::Error::ENOSYS) | Err(nix::Error::EACCES) | Err(nix::Error::EPERM) => {
            Ok(())
        }
        Err(e) => Err(sys("keyctl(JOIN_SESSION_KEYRING)")(e)),
    }
}

/// A new session without a controlling terminal: whatever terminal the runtime's caller had
/// is not ours, so TIOCSTI on it fails (the kernel allows it only on one's controlling tty,
/// or with CAP_SYS_ADMIN in the initial user namespace). EPERM: already a session leader.
fn new_session() -> Result<(), FinishError> {
    match nix::unistd::setsid() {
        Ok(_) | Err(nix::Error::EPERM) => Ok(()),
        Err(e) => Err(sys("setsid")(e)),
    }
}

/// `chdir(process.cwd)`, then proves the cwd lies inside the process's root: the kernel
/// reports a cwd outside the root (reached through a leaked fd of the host, e.g.
/// `/proc/self/fd/N`) as "(unreachable)", which getcwd returns as ENOENT.
fn enter_cwd(plan: &ProcessPlan) -> Result<(), FinishError> {
    let field = || "process.cwd".to_string();
    nix::unistd::chdir(&plan.cwd).map_err(|source| ProcessError::Sys {
        field: field(),
        source,
    })?;
    match nix::unistd::getcwd() {
        Ok(cwd) if cwd.is_absolute() => Ok(()),
        Ok(_) | Err(_) => Err(ProcessError::Sys {
            field: format!(
                "process.cwd {}: outside the container's root",
                plan.cwd.display()
            ),
            source: nix::Error::ENOENT,
        }
        .into()),
    }
}

/// Every fd from `first` up becomes close-on-exec: nothing of the runtime (state dir lock,
/// sync socket, exec fifo, namespace fds) reaches the workload.
fn close_on_exec_from(first: u32) -> Result<(), FinishError> {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets fd flags; no memory is involved.
    let r = unsafe { libc::close_range(first, u32::MAX, libc::CLOSE_RANGE_CLOEXEC as i32) };
    nix::errno::Errno::result(r)
        .map(drop)
        .map_err(sys("close_range(CLOEXEC)"))
}

/// Closes every fd of this process not in `keep` (close_range over the gaps). For a freshly
/// forked or cloned child before it runs anything of the container's: what the runtime's
/// caller leaked (a host directory fd, the `--log` file, the runtime's pid namespace) must
/// not be reachable from inside, even for the instant before execve.
pub fn close_fds_except(keep: &mut [std::os::fd::RawFd]) {
    keep.sort_unstable();
    let mut next: u32 = 0;
    for &fd in keep.iter() {
        let Ok(fd) = u32::try_from(fd) else { continue };
        if fd > next {
            // SAFETY: closes fds of this (child) process. Objects owning them live only in
            // the parent's stack frames copied by fork/clone, which the child never returns
            // to or drops (it execs or _exits); the fds the child uses are in `keep`.
            unsafe { libc::close_range(next, fd - 1, 0) };
        }
        next = fd.saturating_add(1);
    }
    // SAFETY: as above, for everything above the highest kept fd.
    unsafe { libc::close_range(next, u32::MAX, 0) };
}
