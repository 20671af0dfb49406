//! `nanoclaw exec`: runs a new process inside an existing container, joining everything the
//! container's init has — its namespaces, its cgroup, and the security settings of the
//! container's config (capabilities, no_new_privs, seccomp, rlimits, user) — with the process
//! described by `--process <process.json>` or by the command line on top of config.json's.
//!
//! Processes and order:
//! ```text
//! runtime (host namespaces)                 child
//! ─────────────────────────                 ─────
//! lock state, check status, build plan,
//! compile seccomp, open /proc/<init>/ns/*,
//! connect --console-socket,
//! setns(pid) (affects children only)
//! fork ───────────────────────────────────▶ wait for "go"
//! put child in the container's cgroup
//! (host /sys/fs/cgroup still visible), "go" ▶ setns user, then ipc/uts/net/cgroup/mnt
//!                                            rlimits, pty (-t), caps+uid switch, cwd,
//!                                            no_new_privs, close fds, seccomp, execve
//! error pipe: EOF = exec happened ◀──────── (error text if any step failed)
//! write --pid-file; -d: exit 0,
//! else forward signals, wait, exit status
//! ```
//! The child joins the container's mount namespace only after it was placed in the cgroup, so
//! nothing the runtime does on the host is done from inside the container's view.
//!
//! `request.rs` turns the flags into the process to run; `join.rs` opens what the child joins.

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;
use nix::sys::signal::Signal;
use nix::sys::wait::waitpid;
use nix::unistd::{ForkResult, Pid};
use oci_spec::runtime::{Process, Spec};

use crate::process::console;
use crate::process::finish::{FinishError, Never, ProcessFinish};
use crate::process::signal::Forwarder;
use crate::spec::ProcessPlan;

mod join;
mod request;

use join::CHROOT;
pub use join::{join_cgroups_of, open_namespaces, Namespaces, NsFd};
use request::MAX_PROCESS_JSON;
pub use request::{
    build_process, load_process_file, parse_cap, parse_process_json, parse_user, ExecRequest,
    SubCgroups,
};

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("--process {path:?}: {source}")]
    ProcessFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("--process {path:?}: larger than {MAX_PROCESS_JSON} bytes")]
    ProcessFileTooLarge { path: PathBuf },
    #[error("--process {path:?}: {field}: {msg}")]
    ProcessJson {
        path: PathBuf,
        field: String,
        msg: String,
    },
    #[error("exec needs a command (or --process)")]
    NoCommand,
    #[error("--cap {0:?}: unknown capability")]
    BadCap(String),
    #[error("--user {0:?}: expected UID[:GID] with numeric ids")]
    BadUser(String),
    #[error("--env {0:?}: expected KEY=VALUE")]
    BadEnv(String),
    #[error("--cwd {0:?}: must be an absolute path")]
    BadCwd(PathBuf),
    #[error("container {id:?} is {status}: cannot exec in a {status} container")]
    NotRunning { id: String, status: &'static str },
    #[error("container {0:?} is paused: cannot exec in a paused container (use --ignore-paused to override)")]
    Paused(String),
    #[error("--cgroup {arg:?}: {why}")]
    BadCgroup { arg: String, why: String },
    #[error("--tty --detach without --console-socket: the pty master of a detached process needs a console socket")]
    TtyNeedsSocket,
    #[error("--console-socket given but the process has no terminal (process.terminal / --tty)")]
    SocketWithoutTty,
    #[error("exec process: {0}")]
    Plan(String),
    #[error("opening {path}: {source}")]
    Namespace {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("joining the container's cgroup: {0}")]
    Cgroup(String),
    #[error(transparent)]
    PidFile(#[from] crate::container::state::PidFileError),
    #[error("{what}: {source}")]
    Sys {
        what: &'static str,
        source: nix::Error,
    },
    #[error(transparent)]
    Console(#[from] console::ConsoleError),
    #[error("exec failed inside the container: {0}")]
    InContainer(String),
    #[error(transparent)]
    Finish(#[from] FinishError),
}

fn sys(what: &'static str) -> impl FnOnce(nix::Error) -> ExecError {
    move |source| ExecError::Sys { what, source }
}

/// Everything the child needs, prepared by the runtime before the fork.
pub struct Prepared {
    pub plan: ProcessPlan,
    /// The container's spec with the exec process in place (capabilities, seccomp, apparmor).
    pub spec: Spec,
    /// The validated security settings of the config with the exec process in place.
    pub security: crate::security::SecurityPlan,
    pub seccomp: Option<crate::security::SeccompStep>,
    pub console: Option<(UnixStream, Option<(u32, u32)>)>,
    pub setgroups_denied: bool,
    pub preserve_fds: u32,
    /// The container's session keyring name (`_ses.<id>`), unless it was created with
    /// `--no-new-keyring`.
    pub session_keyring: Option<std::ffi::CString>,
    pub container_id: String,
    pub bundle: PathBuf,
    /// What the process's fds 0-2 become when the caller's are a terminal.
    pub stdio: crate::process::stdio::ContainerStdio,
}

/// `exec`: validates the request against the container, then runs the process in it.
pub fn exec(root: &Path, id: &str, req: &ExecRequest) -> Result<ExecOutcome, ExecError> {
    let (namespaces, join, relay, prepared, stdio_relay) = {
        // The lock is held while the container is checked and the process planned, and released
        // before the process runs: a long foreground exec must not block `kill` or `delete`.
        let dir = crate::container::state::StateDir::open(root, id)
            .map_err(|e| ExecError::Plan(e.to_string()))?;
        let st = dir.load().map_err(|e| ExecError::Plan(e.to_string()))?;
        let status = crate::container::status_of(&dir, &st);
        let not = |status| ExecError::NotRunning {
            id: id.to_string(),
            status,
        };
        match status {
            crate::container::state::Status::Stopped => return Err(not("stopped")),
            crate::container::state::Status::Paused if !req.ignore_paused => {
                return Err(ExecError::Paused(id.to_string()))
            }
            _ => {}
        }
        let init_pid = st.pid.ok_or_else(|| not("stopped"))?;
        // The config validated at create (runc snapshots it too): later edits of the bundle's
        // config.json do not change what an exec'd process gets.
        let config = dir.config_snapshot();
        let bytes = std::fs::read(&config).map_err(|source| ExecError::ProcessFile {
            path: config.clone(),
            source,
        })?;
        let spec =
            crate::spec::parse(&config, &bytes).map_err(|e| ExecError::Plan(e.to_string()))?;
        crate::container::cgroup::use_recorded_driver(dir.path());
        let process = build_process(req, spec.process().as_ref())?;
        let terminal = process.terminal().unwrap_or(false);
        let size = process.console_size().map(|b| {
            let clamp = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
            (clamp(b.height()), clamp(b.width()))
        });
        // In the foreground without a socket, the runtime relays the pty itself (as runc does).
        let mut relay = None;
        let console = match (terminal, &req.console_socket) {
            (true, None) if !req.detach => {
                let (ours, theirs) = UnixStream::pair().map_err(|source| ExecError::Sys {
                    what: "socketpair for the terminal relay",
                    source: nix::Error::from_raw(source.raw_os_error().unwrap_or(libc::EIO)),
                })?;
                relay = Some(ours);
                Some((theirs, size))
            }
            (true, None) => return Err(ExecError::TtyNeedsSocket),
            (false, Some(_)) => return Err(ExecError::SocketWithoutTty),
            (true, Some(path)) => Some((console::connect(path)?, size)),
            (false, None) => None,
        };
        let (stdio, stdio_relay) = if terminal {
            (crate::process::stdio::ContainerStdio::default(), None)
        } else {
            crate::process::stdio::isolate_from_caller_tty(!req.detach).map_err(|source| {
                ExecError::Sys {
                    what: "stdio relay pipes",
                    source: nix::Error::from_raw(source.raw_os_error().unwrap_or(libc::EIO)),
                }
            })?
        };
        let plan = plan_process(&st.bundle, spec, process, nix::unistd::geteuid().as_raw())?;
        // Compiled (and a NOTIFY agent connected) here, on the host side; loaded in the child.
        let seccomp = crate::security::prepare_seccomp(&plan.security)
            .map_err(|e| ExecError::Plan(e.to_string()))?;
        let setgroups_denied = std::fs::read_to_string(format!("/proc/{init_pid}/setgroups"))
            .map(|s| s.trim() == "deny")
            .unwrap_or(false);
        let namespaces = open_namespaces(init_pid, st.init_start_time, id)?;
        // The container's cgroup from its record; without one (rootless), the init's cgroups.
        let cgroup = crate::container::cgroup::load(dir.path())
            .map_err(|e| ExecError::Cgroup(e.to_string()))?;
        let subs = SubCgroups::parse(&req.cgroups)?;
        let join: Box<dyn Fn(i32) -> Result<(), String>> = match cgroup {
            Some(mgr) if !subs.is_empty() => {
                let targets = subs.targets(mgr.paths());
                if targets.is_empty() {
                    return Err(ExecError::BadCgroup {
                        arg: req.cgroups.join(" "),
                        why: "the container has no cgroup of its own".into(),
                    });
                }
                for t in &targets {
                    if !t.is_dir() {
                        return Err(ExecError::BadCgroup {
                            arg: req.cgroups.join(" "),
                            why: format!("{}: no such cgroup (create it first)", t.display()),
                        });
                    }
                }
                Box::new(move |pid| {
                    for t in &targets {
                        let procs = t.join("cgroup.procs");
                        std::fs::write(&procs, pid.to_string())
                            .map_err(|e| format!("{}: {e}", procs.display()))?;
                    }
                    Ok(())
                })
            }
            Some(mgr) => Box::new(move |pid| mgr.add_process(pid).map_err(|e| e.to_string())),
            None if !subs.is_empty() => {
                return Err(ExecError::BadCgroup {
                    arg: req.cgroups.join(" "),
                    why: "the container has no cgroup of its own".into(),
                })
            }
            None => Box::new(move |pid| join_cgroups_of(init_pid, pid)),
        };
        (
            namespaces,
            join,
            relay,
            Prepared {
                plan: plan.process,
                spec: plan.spec,
                security: plan.security,
                seccomp,
                console,
                setgroups_denied,
                preserve_fds: req.preserve_fds,
                session_keyring: (!st.no_new_keyring)
                    .then(|| std::ffi::CString::new(format!("_ses.{id}")).ok())
                    .flatten(),
                container_id: id.to_string(),
                bundle: st.bundle.clone(),
                stdio,
            },
            stdio_relay,
        )
    };
    exec_in(
        namespaces,
        prepared,
        relay,
        stdio_relay,
        req.detach,
        req.pid_file.as_deref(),
        &*join,
    )
}

/// How the exec ended, for the CLI's exit status.
pub enum ExecOutcome {
    /// `-d`: the process is running; its pid was written to --pid-file.
    Detached { pid: i32 },
    /// Foreground: the process's exit code (128+N when killed by signal N).
    Exited { code: i32 },
}

/// Builds the process plan the init would have for `process`, by validating config.json with
/// the exec process put in place: the same rules apply to both (args, env, user mapping,
/// rlimits).
pub fn plan_process(
    bundle: &Path,
    mut spec: Spec,
    process: Process,
    euid: u32,
) -> Result<crate::spec::Plan, ExecError> {
    spec.set_process(Some(process));
    // The links of linux.netDevices were moved into the container at create: they are no
    // longer on the host for the check, and an exec'd process moves nothing.
    if let Some(linux) = spec.linux_mut() {
        linux.set_net_devices(None);
    }
    crate::spec::validate(bundle, spec, euid).map_err(|e| ExecError::Plan(e.to_string()))
}

/// Runs the exec: `namespaces` are the init's, `join_cgroup` moves a pid into the container's
/// cgroup (every hierarchy).
pub fn exec_in(
    namespaces: Namespaces,
    prepared: Prepared,
    relay: Option<UnixStream>,
    stdio_relay: Option<crate::process::stdio::RelayEnds>,
    detach: bool,
    pid_file: Option<&Path>,
    join_cgroup: &dyn Fn(i32) -> Result<(), String>,
) -> Result<ExecOutcome, ExecError> {
    let Namespaces {
        pid: pid_ns,
        others: joins,
    } = namespaces;
    // Our own pid namespace, to return to after the fork: while pid_for_children differs from
    // our own, the kernel refuses to create threads (the terminal relay needs two).
    let own_pid_ns = match &pid_ns {
        Some(_) => Some(std::fs::File::open("/proc/self/ns/pid").map_err(|source| {
            ExecError::Namespace {
                path: PathBuf::from("/proc/self/ns/pid"),
                source,
            }
        })?),
        None => None,
    };
    if let Some(fd) = &pid_ns {
        nix::sched::setns(fd.as_fd(), CloneFlags::CLONE_NEWPID).map_err(sys("setns(pid)"))?;
    }
    // execCPUAffinity.initial: the runtime itself moves to those CPUs before the fork, so the
    // child runs there until it is in the container's cgroup (runtime-spec); `final` is set by
    // the child once it is in the cgroup.
    if let Some(cpus) = &prepared.plan.sched.affinity_initial {
        crate::security::sched::set_affinity("process.execCPUAffinity.initial", cpus)
            .map_err(|e| ExecError::Plan(e.to_string()))?;
    }
    let (go_r, go_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(sys("pipe"))?;
    let (err_r, err_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(sys("pipe"))?;

    // Blocked before the fork, so a signal sent to us meanwhile still reaches the process; the
    // child clears the mask before execve (finish.rs).
    let forwarder = Forwarder::block().map_err(sys("sigprocmask"))?;
    // SAFETY: the runtime is single-threaded here (no threads are ever spawned by the CLI before
    // exec), so the child may allocate and use any library code until it execs or _exits.
    match unsafe { nix::unistd::fork() }.map_err(sys("fork"))? {
        ForkResult::Child => {
            drop(go_w);
            drop(relay);
            drop(stdio_relay);
            drop(err_r);
            let code = match child(go_r, &err_w, &joins, prepared) {
                Ok(never) => match never {},
                Err(e) => {
                    let mut f = std::fs::File::from(err_w);
                    let _ = f.write_all(e.to_string().as_bytes());
                    match &e {
                        ExecError::Finish(f) => f.exit_status(),
                        _ => 1,
                    }
                }
            };
            // SAFETY: _exit skips atexit handlers and destructors of the parent's state,
            // which belong to the runtime process.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child: pid } => {
            drop(go_r);
            drop(err_w);
            drop(prepared);
            if let Some(own) = &own_pid_ns {
                match nix::sched::setns(own.as_fd(), CloneFlags::CLONE_NEWPID) {
                    Ok(()) => {}
                    // Root of a user namespace that does not own our own pid namespace
                    // (rootless podman): the way back is closed. Only the terminal relay's
                    // threads need it; a detached or plain exec goes on without them.
                    Err(nix::Error::EPERM) if relay.is_none() => {}
                    Err(e) => return Err(sys("setns(pid) back to the runtime's")(e)),
                }
            }
            let started = parent_start(pid, go_w, err_r, join_cgroup);
            if let Err(e) = started {
                let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
                let _ = waitpid(pid, None);
                return Err(e);
            }
            if let Some(path) = pid_file {
                crate::container::state::write_pid_file(path, pid.as_raw())?;
            }
            if detach {
                return Ok(ExecOutcome::Detached { pid: pid.as_raw() });
            }
            let _relay = match relay {
                Some(sock) => {
                    match console::receive_master(&sock).and_then(console::Relay::start) {
                        Ok(r) => Some(r),
                        Err(e) => {
                            let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
                            let _ = waitpid(pid, None);
                            return Err(e.into());
                        }
                    }
                }
                None => None,
            };
            let stdio_relay = match stdio_relay
                .map(crate::process::stdio::RelayEnds::start)
                .transpose()
            {
                Ok(r) => r,
                Err(e) => {
                    let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
                    let _ = waitpid(pid, None);
                    return Err(ExecError::Sys {
                        what: "starting the stdio relay",
                        source: nix::Error::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
                    });
                }
            };
            let code = forwarder.wait(pid).map_err(sys("waitpid"));
            // The child is reaped: its pid may be reused by anyone. Stop forwarding at once, and
            // let the caller's signals act on us again (a Ctrl-C during the last output copy
            // ends exec).
            drop(forwarder);
            if let Some(r) = stdio_relay {
                r.finish();
            }
            Ok(ExecOutcome::Exited { code: code? })
        }
    }
}

fn parent_start(
    pid: Pid,
    go_w: OwnedFd,
    err_r: OwnedFd,
    join_cgroup: &dyn Fn(i32) -> Result<(), String>,
) -> Result<(), ExecError> {
    join_cgroup(pid.as_raw()).map_err(ExecError::Cgroup)?;
    nix::unistd::write(&go_w, b"g").map_err(sys("write go pipe"))?;
    drop(go_w);
    // EOF without data: the child's copy of the close-on-exec pipe went away in execve.
    let mut msg = String::new();
    let _ = std::fs::File::from(err_r).read_to_string(&mut msg);
    if msg.is_empty() {
        Ok(())
    } else {
        Err(ExecError::InContainer(msg))
    }
}

/// The exec'd process, between fork and execve. Non-dumpable from its first instruction: until
/// execve it holds the runtime's memory (environment, the compiled filter) and fds, and a
/// process inside the container with the same uid could otherwise ptrace it or open its
/// /proc/<pid> files and steer it into execve before seccomp and no_new_privs (runc's
/// CVE-2016-9962). Then it drops every fd it was not asked to keep, takes its stdio, waits for
/// the runtime (cgroup joined), joins the namespaces and finishes like the init (finish.rs).
fn child(
    go_r: OwnedFd,
    err_w: &OwnedFd,
    joins: &[NsFd],
    mut p: Prepared,
) -> Result<Never, ExecError> {
    nix::sys::prctl::set_dumpable(false).map_err(sys("prctl(PR_SET_DUMPABLE, 0)"))?;
    let mut keep: Vec<RawFd> = vec![0, 1, 2, go_r.as_raw_fd(), err_w.as_raw_fd()];
    keep.extend(joins.iter().map(|ns| ns.fd.as_raw_fd()));
    keep.extend(p.console.as_ref().map(|(sock, _)| sock.as_raw_fd()));
    keep.extend(p.seccomp.as_ref().and_then(|s| s.agent_fd()));
    keep.extend(p.stdio.kept_fds());
    keep.extend((3..3u32.saturating_add(p.preserve_fds)).filter_map(|fd| RawFd::try_from(fd).ok()));
    crate::process::finish::close_fds_except(&mut keep);
    if let Some(step) = p.seccomp.as_mut() {
        // Still the host's /proc here (the mount namespace is joined later): `self` is our
        // pid as the runtime and a NOTIFY agent see it.
        if let Some(pid) = std::fs::read_link("/proc/self")
            .ok()
            .and_then(|l| l.to_str().and_then(|s| s.parse().ok()))
        {
            step.set_host_pid(pid);
        }
    }
    p.stdio.install().map_err(|source| ExecError::Sys {
        what: "stdio",
        source,
    })?;
    let mut b = [0u8; 1];
    match nix::unistd::read(&go_r, &mut b) {
        Ok(1) => {}
        _ => {
            return Err(ExecError::Sys {
                what: "waiting for the runtime",
                source: nix::Error::EPIPE,
            })
        }
    }
    drop(go_r);
    // In the container's cgroup now: execCPUAffinity.final.
    if let Some(cpus) = &p.plan.sched.affinity_final {
        crate::security::sched::set_affinity("process.execCPUAffinity.final", cpus)
            .map_err(|e| ExecError::Plan(e.to_string()))?;
    }
    for ns in joins {
        if ns.name == CHROOT {
            crate::rootfs::hostmount::chroot_into(ns.fd.as_fd())
                .map_err(sys("chroot into the container's root"))?;
            continue;
        }
        nix::sched::setns(ns.fd.as_fd(), ns.flag).map_err(|source| ExecError::Sys {
            what: match ns.name {
                "user" => "setns(user)",
                "ipc" => "setns(ipc)",
                "uts" => "setns(uts)",
                "net" => "setns(net)",
                "cgroup" => "setns(cgroup)",
                "time_for_children" => "setns(time)",
                _ => "setns(mnt)",
            },
            source,
        })?;
    }
    let umask = nix::sys::stat::umask(nix::sys::stat::Mode::empty());
    nix::sys::stat::umask(umask);
    let finish = ProcessFinish {
        process: &p.plan,
        spec: &p.spec,
        security: &p.security,
        container_id: &p.container_id,
        bundle: &p.bundle,
        setgroups_denied: p.setgroups_denied,
        session_keyring: p.session_keyring.as_deref(),
        console: p.console.as_ref().map(|(sock, size)| (sock, *size)),
        seccomp: p.seccomp,
        preserve_fds: p.preserve_fds,
        default_umask: umask,
    };
    finish.exec(|| Ok::<(), ExecError>(()))
}
