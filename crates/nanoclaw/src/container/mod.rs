//! Container lifecycle orchestration on the runtime (parent) side: create, start, wait,
//! delete, and `run` = all four in the foreground.
//!
//! `create` validates the bundle, claims the state dir, clones the init and waits until the
//! init reports it is set up and blocked on the exec fifo. Every step registers what it made
//! in an `Unwind` guard, so a failure at any point removes the init process, the state dir
//! (and the cgroup); mounts live only in the init's mount namespace and vanish
//! with it (a mount namespace joined by path keeps them: it outlives the container, as in
//! runc).

pub mod cgroup;
pub mod checkpoint;
pub mod events;
pub mod hooks;
pub mod list;
pub mod netdev;
pub mod ops;
pub mod state;
pub mod update;

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;
use nix::sys::signal::{kill, Signal};
use nix::sys::stat::Mode;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::container::hooks::HookState;
use crate::container::state::{State, StateDir, StateError, Status};
use crate::process::channel::{self, Msg, SyncError};
use crate::process::init::{self, InitContext};
use crate::process::namespaces::{self, NamespaceError};
use crate::process::signal::Forwarder;
use crate::spec::{self, SpecError};

#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Cgroup(#[from] crate::container::cgroup::CgroupStepError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Namespace(#[from] NamespaceError),
    #[error("container init failed: {0}")]
    InitFailed(String),
    #[error("container init exited during setup ({0})")]
    InitDied(String),
    #[error(transparent)]
    Sync(#[from] SyncError),
    #[error("{what}: {source}")]
    Sys { what: String, source: nix::Error },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("the runtime must be single-threaded to clone the container init ({0} threads)")]
    MultiThreaded(usize),
    #[error("{}: container {id:?} is {}", crate::container::ops::start_refusal(*status), crate::container::ops::status_name(*status))]
    NotCreated { id: String, status: Status },
    #[error("cannot delete container {id} that is not stopped: {}; stop it first or use --force", crate::container::ops::status_name(*status))]
    StillRunning { id: String, status: Status },
    #[error("process.terminal is true but no --console-socket was given: the pty master needs somewhere to go")]
    TerminalNeedsSocket,
    #[error("--console-socket was given but process.terminal is false")]
    SocketWithoutTerminal,
    #[error(transparent)]
    Console(#[from] crate::process::console::ConsoleError),
    #[error(transparent)]
    Hook(#[from] crate::container::hooks::HookError),
    #[error(transparent)]
    Rootfs(#[from] crate::rootfs::RootfsError),
    #[error(transparent)]
    PidFile(#[from] state::PidFileError),
    #[error(transparent)]
    NetDevice(#[from] crate::container::netdev::NetDeviceError),
    #[error("process.user.additionalGids: a rootless runtime with a single-id gid mapping cannot set supplementary groups (map more gids through /etc/subgid)")]
    RootlessGroups,
}

fn sys(what: impl Into<String>) -> impl FnOnce(nix::Error) -> ContainerError {
    let what = what.into();
    move |source| ContainerError::Sys { what, source }
}

/// Options of `create` (and `run`).
#[derive(Debug, Clone)]
pub struct CreateOptions {
    /// --root: directory of the per-container state dirs.
    pub root: PathBuf,
    pub id: String,
    pub bundle: PathBuf,
    /// --pid-file: the init's pid is written there after a successful create.
    pub pid_file: Option<PathBuf>,
    /// --console-socket: where the pty master of a process.terminal container is sent.
    pub console_socket: Option<PathBuf>,
    /// --preserve-fds N: the caller's fds 3..3+N are passed to the container process.
    pub preserve_fds: u32,
    /// --no-new-keyring: the container keeps the caller's session keyring.
    pub no_new_keyring: bool,
    /// --no-pivot: MS_MOVE + chroot instead of pivot_root (rootfs on ramfs).
    pub no_pivot: bool,
    /// The runtime stays in the foreground (`run`): terminal stdio is relayed through pipes
    /// rather than replaced by /dev/null (stdio.rs).
    pub relay_stdio: bool,
}

/// A created container: the init is blocked on the exec fifo.
#[derive(Debug)]
pub struct Created {
    pub pid: Pid,
    pub state_dir: StateDir,
    pub state: State,
    /// The runtime's ends of the stdio relay (`run` in the foreground, caller on a terminal).
    pub stdio_relay: Option<crate::process::stdio::RelayEnds>,
}

/// Undoes a half-made container. Disarmed once create succeeded.
struct Unwind {
    pid: Option<Pid>,
    state_dir: Option<StateDir>,
    /// The container's cgroup: its processes are killed and it is removed on unwind.
    cgroup: Option<Box<dyn nanoclaw_cgroups::CgroupManager>>,
    /// linux.netDevices moved into a container whose create fails: moved back before the init
    /// is killed.
    netdevs: Option<(
        std::os::fd::OwnedFd,
        Vec<crate::container::netdev::NetDevice>,
    )>,
    /// No mount namespace: the rootfs path and the mount that held it before (hostmount.rs).
    host_mounts: Option<(PathBuf, u64)>,
}

impl Drop for Unwind {
    fn drop(&mut self) {
        if let Some((netns, devs)) = self.netdevs.take() {
            let _ = crate::container::netdev::move_back(&devs, std::os::fd::AsFd::as_fd(&netns));
        }
        if let Some(pid) = self.pid.take() {
            let _ = kill(pid, Signal::SIGKILL);
            let _ = waitpid(pid, None);
        }
        if let Some((rootfs, base)) = self.host_mounts.take() {
            crate::rootfs::hostmount::cleanup(&rootfs, base);
        }
        if let Some(cg) = self.cgroup.take() {
            crate::container::cgroup::unwind(cg.as_ref());
        }
        if let Some(dir) = self.state_dir.take() {
            let _ = dir.remove();
        }
    }
}

fn thread_count() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(1)
}

/// A bundle checked against the options, before anything exists on the host.
struct Checked {
    plan: spec::Plan,
    /// config.json as read: the snapshot `exec` plans from.
    config_bytes: Vec<u8>,
    setgroups_denied: bool,
}

/// Everything `create` checks before it touches the host.
fn check(opts: &CreateOptions) -> Result<Checked, ContainerError> {
    let euid = nix::unistd::geteuid().as_raw();
    state::validate_id(&opts.id)?;
    let (plan, config_bytes) = spec::load_with_source(&opts.bundle, euid)?;
    let setgroups_denied = namespaces::setgroups_denied(&plan);
    if setgroups_denied && !plan.process.additional_gids.is_empty() {
        return Err(ContainerError::RootlessGroups);
    }
    if opts.no_pivot {
        crate::rootfs::check_no_pivot(&plan)?;
    }
    let threads = thread_count();
    if threads > 1 {
        return Err(ContainerError::MultiThreaded(threads));
    }
    Ok(Checked {
        plan,
        config_bytes,
        setgroups_denied,
    })
}

/// `create`: everything up to the init waiting on the exec fifo.
pub fn create(opts: &CreateOptions) -> Result<Created, ContainerError> {
    create_checked(opts, check(opts)?)
}

fn create_checked(opts: &CreateOptions, checked: Checked) -> Result<Created, ContainerError> {
    let Checked {
        plan,
        config_bytes,
        setgroups_denied,
    } = checked;
    // The terminal needs somewhere to go before anything is created (runc's rules).
    match (plan.process.terminal, &opts.console_socket) {
        (true, None) => return Err(ContainerError::TerminalNeedsSocket),
        (false, Some(_)) => return Err(ContainerError::SocketWithoutTerminal),
        _ => {}
    }
    let console = match &opts.console_socket {
        Some(path) => Some(crate::process::console::connect(path)?),
        None => None,
    };
    let session_keyring = if opts.no_new_keyring {
        None
    } else {
        std::ffi::CString::new(format!("_ses.{}", opts.id)).ok()
    };

    // The caller's terminal never reaches a process without one of its own (stdio.rs).
    let (stdio, stdio_relay) = if plan.process.terminal {
        (crate::process::stdio::ContainerStdio::default(), None)
    } else {
        crate::process::stdio::isolate_from_caller_tty(opts.relay_stdio).map_err(|source| {
            ContainerError::Io {
                what: "stdio relay pipes".into(),
                source,
            }
        })?
    };

    let state_dir = StateDir::create(&opts.root, &opts.id)?;
    let mut unwind = Unwind {
        pid: None,
        state_dir: None,
        cgroup: None,
        netdevs: None,
        host_mounts: None,
    };
    let fifo_path = state_dir.exec_fifo();
    let snapshot = state_dir.write_private(state::CONFIG_SNAPSHOT, &config_bytes);
    unwind.state_dir = Some(state_dir);
    snapshot?;
    crate::testpoint::hit("create:state-dir");

    nix::unistd::mkfifo(fifo_path.as_path(), Mode::from_bits_truncate(0o600))
        .map_err(sys(format!("mkfifo {}", fifo_path.display())))?;
    // O_RDWR never blocks on a fifo; the init keeps this (close-on-exec) fd and blocks
    // reading it until `start` writes a byte.
    let exec_fifo = nix::fcntl::open(
        fifo_path.as_path(),
        nix::fcntl::OFlag::O_RDWR | nix::fcntl::OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(sys(format!("open {}", fifo_path.display())))?;
    let joins = namespaces::open_joins(&plan)?;
    let (parent_sock, child_sock) = channel::pair()?;

    // Cgroup step: create the container's cgroup (linux.cgroupsPath, resources)
    // here, before the clone, and register it in `unwind`.
    if let Some(dir) = unwind.state_dir.as_ref() {
        unwind.cgroup = Some(crate::container::cgroup::create(
            dir.path(),
            &opts.id,
            &plan.spec,
            crate::rootless::is_rootless(),
        )?);
    }
    crate::testpoint::hit("create:cgroup");

    // No mount namespace: remember which mount holds the rootfs path now, so what the init
    // stacks there in our mount namespace can be detached on delete or unwind.
    if crate::rootfs::hostmount::shares_mount_ns(&plan.namespaces) {
        if let (Some((record, base)), Some(dir)) = (
            crate::rootfs::hostmount::record(&plan.rootfs),
            unwind.state_dir.as_ref(),
        ) {
            dir.write_private(crate::rootfs::hostmount::RECORD, record.as_bytes())?;
            unwind.host_mounts = Some((plan.rootfs.clone(), base));
        }
    }
    let ctx = InitContext {
        plan: &plan,
        sync: child_sock,
        exec_fifo,
        joins: &joins,
        setgroups_denied,
        console,
        preserve_fds: opts.preserve_fds,
        session_keyring,
        container_id: &opts.id,
        no_pivot: opts.no_pivot,
        stdio,
    };
    // Cgroup step: on pure v2 the init is created inside the container's cgroup.
    let cgroup_dir = unwind.cgroup.as_ref().and_then(|cg| cg.clone_into_cgroup());
    let cgroup_fd = cgroup_dir.as_ref().map(std::os::fd::AsFd::as_fd);
    // SAFETY: checked above that this process is single-threaded. The closure runs only in
    // the child, which never returns into this function (spawn_init _exits).
    let spawned =
        unsafe { namespaces::spawn_init(&plan, &joins, cgroup_fd, move || init::run(ctx)) }?;
    drop(cgroup_dir);
    let pid = spawned.pid;
    unwind.pid = Some(pid);
    crate::testpoint::hit("create:clone");
    // The closure (holding the child's sync end and the fifo fd) was dropped in the parent:
    // only the init holds them now, so its death shows up as EOF on the sync socket.

    if plan.namespaces.creates(CloneFlags::CLONE_NEWUSER) {
        namespaces::write_id_maps(pid, &plan)?;
    }
    // linux.netDevices: into the container's network namespace before the init goes on, so
    // hooks and the workload find them there.
    let devs = crate::container::netdev::devices(
        plan.spec
            .linux()
            .as_ref()
            .and_then(|l| l.net_devices().as_ref()),
    );
    if !devs.is_empty() {
        let netns = container_netns(pid, &joins)?;
        crate::container::netdev::move_in(&devs, std::os::fd::AsFd::as_fd(&netns))?;
        unwind.netdevs = Some((netns, devs));
    }
    parent_sock.send(&Msg::Go)?;
    // Cgroup step: move `pid` into the container's cgroup (unless it was created there)
    // while the init starts its mounts; it waits for `Placed` before anything that depends on
    // its cgroup (sync.rs).
    if let Some(cg) = unwind.cgroup.as_ref().filter(|_| !spawned.in_cgroup) {
        if let Err(e) = cg.add_process(pid.as_raw()) {
            // The init may already have failed (and so be gone): its own error says why.
            if let Some(Msg::Error(text)) = parent_sock.try_recv() {
                return Err(ContainerError::InitFailed(text));
            }
            return Err(crate::container::cgroup::CgroupStepError::from(e).into());
        }
    }
    // A closed socket here means the init already failed: its error is read below.
    match parent_sock.send(&Msg::Placed) {
        Ok(()) | Err(SyncError::Closed) => {}
        Err(e) => return Err(e.into()),
    }
    // The hooks' state: the init's pid, status "creating".
    let hook_state = HookState::of_plan(&plan, &opts.id, Some(pid.as_raw()));
    let mut hooks_ran = false;
    let before_pivot =
        crate::container::hooks::HookKind::runtime_hooks_before_pivot(plan.spec.hooks().as_ref());
    let mut next = parent_sock.recv();
    // prestart and createRuntime, in the runtime namespace, while the init waits between its
    // mounts and pivot_root (sync.rs step 3). A failure fails `create`; `unwind` kills the
    // waiting init and removes everything.
    if before_pivot && matches!(next, Ok(Msg::Mounted)) {
        let json = hook_state.json("creating");
        let hooks = plan.spec.hooks().as_ref();
        crate::container::hooks::run_hooks(
            crate::container::hooks::HookKind::Prestart,
            hooks,
            &json,
        )?;
        crate::container::hooks::run_hooks(
            crate::container::hooks::HookKind::CreateRuntime,
            hooks,
            &json,
        )?;
        hooks_ran = true;
        match parent_sock.send(&Msg::HooksDone) {
            Ok(()) | Err(SyncError::Closed) => {}
            Err(e) => return Err(e.into()),
        }
        next = parent_sock.recv();
    }
    match next {
        Ok(Msg::Ready) if before_pivot && !hooks_ran => {
            return Err(ContainerError::InitFailed(
                "the init skipped the prestart/createRuntime hook step".into(),
            ))
        }
        Ok(Msg::Ready) => {}
        Ok(Msg::Error(text)) => return Err(ContainerError::InitFailed(text)),
        Ok(other) => return Err(ContainerError::InitFailed(format!("unexpected {other:?}"))),
        Err(SyncError::Closed) => {
            let how = match waitpid(pid, None) {
                Ok(WaitStatus::Exited(_, c)) => format!("exit status {c}"),
                Ok(WaitStatus::Signaled(_, s, _)) => format!("killed by {s}"),
                Ok(other) => format!("{other:?}"),
                Err(e) => e.to_string(),
            };
            unwind.pid = None;
            return Err(ContainerError::InitDied(how));
        }
        Err(e) => return Err(e.into()),
    }
    drop(parent_sock);
    crate::testpoint::hit("create:ready");

    if let (Some(hooks), Some(dir)) = (plan.spec.hooks().as_ref(), unwind.state_dir.as_ref()) {
        crate::container::hooks::save_record(dir.path(), hooks)?;
    }

    let state = State {
        oci_version: plan.spec.version().clone(),
        id: opts.id.clone(),
        status: Status::Created,
        pid: Some(pid.as_raw()),
        bundle: plan.bundle.clone(),
        annotations: plan.spec.annotations().clone().unwrap_or_default(),
        init_start_time: state::process_start_time(pid.as_raw()).unwrap_or(0),
        rootless: crate::rootless::is_rootless(),
        rootfs: plan.rootfs.clone(),
        created: humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string(),
        no_new_keyring: opts.no_new_keyring,
    };
    let state_dir = unwind
        .state_dir
        .as_ref()
        .ok_or(ContainerError::InitDied("state lost".into()))?;
    state_dir.save(&state)?;
    crate::testpoint::hit("create:saved");
    if let Some(pf) = &opts.pid_file {
        state::write_pid_file(pf, pid.as_raw())?;
    }
    unwind.pid = None;
    unwind.cgroup = None; // the container keeps its cgroup; `delete` removes it
    unwind.netdevs = None; // the namespace's owner manages them from now on (spec)
    unwind.host_mounts = None; // `delete` detaches them
    let state_dir = unwind
        .state_dir
        .take()
        .ok_or(ContainerError::InitDied("state lost".into()))?;
    Ok(Created {
        pid,
        state_dir,
        state,
        stdio_relay,
    })
}

/// The container's network namespace: the one it joins by path, else the init's own.
fn container_netns(
    pid: Pid,
    joins: &[namespaces::JoinFd],
) -> Result<std::os::fd::OwnedFd, ContainerError> {
    if let Some(j) = joins.iter().find(|j| j.flag == CloneFlags::CLONE_NEWNET) {
        return j.fd.try_clone().map_err(|source| ContainerError::Io {
            what: format!("{}: dup", j.field),
            source,
        });
    }
    Ok(crate::container::netdev::open_ns(&format!(
        "/proc/{pid}/ns/net"
    ))?)
}

/// Current status of a container from its saved state and the init's liveness.
pub fn status_of(dir: &StateDir, st: &State) -> Status {
    let alive = st
        .pid
        .is_some_and(|p| state::init_alive(p, st.init_start_time));
    if !alive {
        return Status::Stopped;
    }
    if dir.exec_fifo().exists() {
        Status::Created
    } else if st.status == Status::Paused {
        Status::Paused
    } else {
        Status::Running
    }
}

/// `start` on a locked state dir: releases the init blocked on the exec fifo.
pub fn start_locked(dir: &StateDir) -> Result<State, ContainerError> {
    let mut st = dir.load()?;
    let status = status_of(dir, &st);
    if status != Status::Created {
        return Err(ContainerError::NotCreated {
            id: dir.id().to_string(),
            status,
        });
    }
    let fifo = dir.exec_fifo();
    // Non-blocking: ENXIO means nobody holds the read side (the init is gone).
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(&fifo)
        .map_err(|source| ContainerError::Io {
            what: format!("open exec fifo {}", fifo.display()),
            source,
        })?;
    f.write_all(b"0").map_err(|source| ContainerError::Io {
        what: format!("write exec fifo {}", fifo.display()),
        source,
    })?;
    crate::testpoint::hit("start:fifo");
    let _ = std::fs::remove_file(&fifo);
    st.status = Status::Running;
    dir.save(&st)?;
    // poststart: the process has been started. A failure fails `start` and stops the
    // container (runtime-spec 1.3: "generate an error, stop the container"); `delete` then
    // runs the poststop hooks and removes it.
    if let Some(hooks) = crate::container::hooks::load_record(dir.path()) {
        let json = HookState::of_record(&st).json("running");
        if let Err(e) = crate::container::hooks::run_hooks(
            crate::container::hooks::HookKind::Poststart,
            Some(&hooks),
            &json,
        ) {
            stop_after_failed_start(dir, &st);
            return Err(e.into());
        }
    }
    Ok(st)
}

/// Kills every process of a container whose `start` failed after the fifo was written: the
/// whole cgroup when the container has one, else the init (checked against its start time).
fn stop_after_failed_start(dir: &StateDir, st: &State) {
    if let Ok(Some(mgr)) = crate::container::cgroup::load(dir.path()) {
        if !mgr.paths().is_empty() {
            let _ = mgr.thaw();
            let _ = mgr.kill_all();
        }
    }
    if let Some(pid) = st.pid {
        kill_and_reap(Pid::from_raw(pid), st.init_start_time);
    }
}

/// `run` / `run -d` whose `start` failed (e.g. a poststart hook): the container is removed as
/// `delete --force` removes it — processes, cgroup, then the poststop hooks (runtime-spec 1.3:
/// "stop the container, and continue the lifecycle" at the undo step), then the state.
fn remove_after_failed_start(dir: StateDir, st: &State) {
    stop_after_failed_start(&dir, st);
    let _ = crate::container::cgroup::remove(dir.path());
    if let Some(hooks) = crate::container::hooks::load_record(dir.path()) {
        let json = HookState::of_record(st).json("stopped");
        let _ = crate::container::hooks::run_hooks(
            crate::container::hooks::HookKind::Poststop,
            Some(&hooks),
            &json,
        );
    }
    let _ = dir.remove();
}

/// `start ID`.
pub fn start(root: &Path, id: &str) -> Result<State, ContainerError> {
    let dir = StateDir::open(root, id)?;
    start_locked(&dir)
}

/// `delete [--force] ID`: kills the init if needed, removes the state dir.
pub fn delete(root: &Path, id: &str, force: bool) -> Result<(), ContainerError> {
    let dir = match StateDir::open(root, id) {
        // `delete --force` of a container that is already gone succeeds, as in runc: engines
        // (containerd's shim) call `delete` and then `delete --force` for the same id.
        Err(StateError::NotFound { .. }) if force => return Ok(()),
        other => other?,
    };
    let st = match dir.load() {
        Ok(st) => st,
        // A state dir without a readable state.json is what a crash during create leaves
        // behind: nothing was recorded, so there is nothing else to clean.
        Err(StateError::Io { .. }) | Err(StateError::Corrupt { .. }) if force => {
            // The cgroup record is written before the cgroup is made: clean it up too.
            crate::container::cgroup::remove(dir.path())?;
            return Ok(dir.remove()?);
        }
        Err(e) => return Err(e.into()),
    };
    let status = status_of(&dir, &st);
    match (status, force) {
        (Status::Stopped, _) => {}
        (Status::Created, _) | (_, true) => {
            // A frozen (paused) init cannot die until thawed.
            crate::container::cgroup::thaw(dir.path());
            if let Some(p) = st.pid {
                kill_and_reap(Pid::from_raw(p), st.init_start_time);
            }
        }
        (s, false) => {
            return Err(ContainerError::StillRunning {
                id: id.to_string(),
                status: s,
            })
        }
    }
    crate::testpoint::hit("delete:killed");
    crate::rootfs::hostmount::cleanup_recorded(dir.path(), &st.rootfs);
    // Cgroup step: remove the container's cgroup here (after the processes are
    // gone; also when the init had already exited). A cgroup that cannot be removed keeps
    // the state dir, so `delete` can be retried.
    crate::container::cgroup::remove(dir.path())?;
    crate::testpoint::hit("delete:cgroup");
    // poststop: after the container is gone, before its state is; failures are warnings.
    if let Some(hooks) = crate::container::hooks::load_record(dir.path()) {
        let json = HookState::of_record(&st).json("stopped");
        crate::container::hooks::run_hooks(
            crate::container::hooks::HookKind::Poststop,
            Some(&hooks),
            &json,
        )?;
    }
    Ok(dir.remove()?)
}

/// SIGKILLs the init (if it is still ours) and waits until it is gone: reaped if it is our
/// child, otherwise until /proc shows it exited.
fn kill_and_reap(pid: Pid, start_time: u64) {
    // The pidfd pins the process; only then is the start-time check free of pid reuse.
    let Ok(pidfd) = crate::container::ops::pidfd_open(pid.as_raw()) else {
        return;
    };
    if !state::init_alive(pid.as_raw(), start_time) {
        return;
    }
    let _ = crate::container::ops::pidfd_send_signal(&pidfd, Signal::SIGKILL as i32);
    for _ in 0..2000 {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => {}
            Ok(_) => return,
            Err(_) => {
                if !state::init_alive(pid.as_raw(), start_time) {
                    return;
                }
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// `run --detach`: create + start, then leave the container running (its init is reparented
/// to the caller's subreaper or to init when we exit).
pub fn run_detached(opts: &CreateOptions) -> Result<(), ContainerError> {
    let created = create(opts)?;
    if let Err(e) = start_locked(&created.state_dir) {
        remove_after_failed_start(created.state_dir, &created.state);
        return Err(e);
    }
    Ok(())
}

/// `run`: create + start + wait + delete, in the foreground. Returns the exit code.
pub fn run(opts: &CreateOptions) -> Result<i32, ContainerError> {
    // Block the forwarded signals and SIGCHLD before the init exists, so none is lost; the
    // init unblocks them before execve.
    let forwarder = Forwarder::block().map_err(sys("sigprocmask"))?;
    let foreground = CreateOptions {
        relay_stdio: true,
        ..opts.clone()
    };
    run_blocked(&foreground, &forwarder)
}

fn run_blocked(opts: &CreateOptions, forwarder: &Forwarder) -> Result<i32, ContainerError> {
    // A terminal without --console-socket: like runc in the foreground, receive the pty master
    // ourselves (on a socket in a private temporary directory) and relay it to our stdio.
    let checked = check(opts)?;
    let (created, relay) = if checked.plan.process.terminal && opts.console_socket.is_none() {
        let dir = tempfile_dir()?;
        let path = dir.join("console.sock");
        let listener =
            std::os::unix::net::UnixListener::bind(&path).map_err(|source| ContainerError::Io {
                what: format!("console socket {}", path.display()),
                source,
            })?;
        let mut with_socket = opts.clone();
        with_socket.console_socket = Some(path.clone());
        let created = create_checked(&with_socket, checked);
        let _ = std::fs::remove_file(&path);
        let _ = std::fs::remove_dir(&dir);
        let created = created?;
        let relay = listener
            .accept()
            .map_err(|source| ContainerError::Io {
                what: "console socket accept".into(),
                source,
            })
            .and_then(|(conn, _)| Ok(crate::process::console::receive_master(&conn)?))
            .and_then(|master| Ok(crate::process::console::Relay::start(master)?));
        match relay {
            Ok(r) => (created, Some(r)),
            Err(e) => {
                kill_and_reap(created.pid, created.state.init_start_time);
                let _ = crate::container::cgroup::remove(created.state_dir.path());
                let _ = created.state_dir.remove();
                return Err(e);
            }
        }
    } else {
        (create_checked(opts, checked)?, None)
    };
    let pid = created.pid;
    if let Err(e) = start_locked(&created.state_dir) {
        remove_after_failed_start(created.state_dir, &created.state);
        return Err(e);
    }
    let stdio_relay = match created
        .stdio_relay
        .map(crate::process::stdio::RelayEnds::start)
    {
        Some(Err(source)) => {
            kill_and_reap(pid, created.state.init_start_time);
            let _ = crate::container::cgroup::remove(created.state_dir.path());
            let _ = created.state_dir.remove();
            return Err(ContainerError::Io {
                what: "starting the stdio relay".into(),
                source,
            });
        }
        Some(Ok(r)) => Some(r),
        None => None,
    };
    // Release the lock while the workload runs, so other commands (state, kill) can act.
    drop(created.state_dir);
    let code = forwarder.wait(pid).unwrap_or(255);
    if let Some(r) = stdio_relay {
        r.finish();
    }
    drop(relay);
    // Delete: the init is reaped; with a new pid namespace every other process of the
    // container died with it.
    // Cgroup step: `delete` also removes the cgroup (and kills leftovers when the
    // container shares the host pid namespace).
    delete(&opts.root, &opts.id, true)?;
    Ok(code)
}

/// A fresh 0700 directory under $TMPDIR (or /tmp) for the relay's console socket.
fn tempfile_dir() -> Result<PathBuf, ContainerError> {
    use std::os::unix::fs::DirBuilderExt;
    let base = std::env::temp_dir();
    for n in 0..100u32 {
        let dir = base.join(format!("nanoclaw-console-{}-{n}", std::process::id()));
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(source) => {
                return Err(ContainerError::Io {
                    what: format!("mkdir {}", dir.display()),
                    source,
                })
            }
        }
    }
    Err(ContainerError::Io {
        what: "console socket directory".into(),
        source: std::io::Error::from(std::io::ErrorKind::AlreadyExists),
    })
}
