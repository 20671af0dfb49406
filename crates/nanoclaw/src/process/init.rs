//! The container init: what the cloned child does, top to bottom, until it execs the
//! workload. Each step is one call; the order is the security argument:
//!
//! 1. wait for the parent (uid/gid maps written, cgroup joined), then become non-dumpable
//! 2. join namespaces given by path (a joined mount namespace is where step 4 runs), become
//!    root of the user namespace
//! 3. hostname/domainname
//! 4. rootfs: mounts, devices, (masked/readonly paths), pivot_root, readonly root
//! 5. process attributes: oomScoreAdj, rlimits, uid/gid switch (+capabilities), cwd, no_new_privs
//! 6. resolve the executable, mark every fd close-on-exec, report Ready
//! 7. wait on the exec fifo until `start`, (seccomp), execve
//!
//! Any error is sent to the parent as text and the child exits; the parent unwinds.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use nix::sys::stat::Mode;

use crate::process::channel::{Msg, SyncError, SyncSocket};
use crate::process::finish::{FinishError, Never, ProcessFinish};
use crate::process::namespaces::{self, JoinFd, NamespaceError};
use crate::process::{self, ProcessError};
use crate::rootfs::devices::{self, DeviceError};
use crate::rootfs::{self, RootfsError, RootfsMounter};
use crate::spec::Plan;

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("sync with the runtime: {0}")]
    Sync(#[from] SyncError),
    #[error("the runtime sent {0:?} instead of Go")]
    Protocol(Msg),
    #[error(transparent)]
    Namespace(#[from] NamespaceError),
    #[error(transparent)]
    Rootfs(#[from] RootfsError),
    #[error(transparent)]
    Device(#[from] DeviceError),
    #[error(transparent)]
    Process(#[from] ProcessError),
    #[error(transparent)]
    Console(#[from] crate::process::console::ConsoleError),
    #[error(transparent)]
    Hook(#[from] crate::container::hooks::HookError),
    /// Security profile steps: paths, sysctl, capabilities, seccomp, AppArmor.
    #[error(transparent)]
    Security(#[from] crate::security::SecurityError),
    #[error(transparent)]
    Finish(#[from] FinishError),
    #[error("{what}: {source}")]
    Sys {
        what: &'static str,
        source: nix::Error,
    },
}

fn sys(what: &'static str) -> impl FnOnce(nix::Error) -> InitError {
    move |source| InitError::Sys { what, source }
}

/// Everything the init needs; it lives in the child's copy of the parent's memory.
pub struct InitContext<'a> {
    pub plan: &'a Plan,
    pub sync: SyncSocket,
    /// Read end of the exec fifo (opened O_RDWR by the parent, close-on-exec).
    pub exec_fifo: OwnedFd,
    pub joins: &'a [JoinFd],
    /// The runtime wrote gid_map unprivileged: the kernel refuses setgroups.
    pub setgroups_denied: bool,
    /// Lifecycle: the connected `--console-socket` when process.terminal is set; the
    /// pty is allocated from the container's devpts after pivot_root and its master sent here.
    pub console: Option<std::os::unix::net::UnixStream>,
    /// `--preserve-fds N`: fds 3..3+N stay open across execve.
    pub preserve_fds: u32,
    /// Join a new session keyring with this name (runc's default, so containers do not share
    /// the caller's keys); `None` with `--no-new-keyring`.
    pub session_keyring: Option<std::ffi::CString>,
    /// The container id, for the state JSON of createContainer/startContainer hooks.
    pub container_id: &'a str,
    /// `--no-pivot`: move the rootfs onto / and chroot instead of pivot_root.
    pub no_pivot: bool,
    /// What fds 0-2 become when the caller's are a terminal (stdio.rs).
    pub stdio: crate::process::stdio::ContainerStdio,
}

/// Child entry point after clone. Never returns to the runtime's code: the caller `_exit`s
/// with the returned status when exec did not happen.
pub fn run(ctx: InitContext<'_>) -> i32 {
    let sync = &ctx.sync;
    match setup_and_exec(&ctx) {
        Ok(never) => match never {},
        Err(e) => {
            // Before Ready the runtime reports the error and unwinds; after it (exec fifo or
            // execve failed) nobody listens any more, so tell the user directly.
            if sync.send(&Msg::Error(e.to_string())).is_err() {
                eprintln!("nanoclaw: container init: {e}");
            }
            match &e {
                InitError::Finish(f) => f.exit_status(),
                _ => 1,
            }
        }
    }
}

fn setup_and_exec(ctx: &InitContext<'_>) -> Result<Never, InitError> {
    let plan = ctx.plan;

    // 0. Drop every inherited fd we do not need (the state dir lock, the parent's end of the
    //    sync socket, anything the runtime's caller leaked): a held flock would block the
    //    next command on this container, and the fewer host fds, the smaller the exposure.
    let mut keep: Vec<RawFd> = vec![0, 1, 2, ctx.sync.as_raw_fd(), ctx.exec_fifo.as_raw_fd()];
    keep.extend(ctx.joins.iter().map(|j| j.fd.as_raw_fd()));
    keep.extend(ctx.console.as_ref().map(|c| c.as_raw_fd()));
    keep.extend(ctx.stdio.kept_fds());
    // --preserve-fds N: the caller's fds 3..3+N go to the workload.
    keep.extend(
        (3..3u32.saturating_add(ctx.preserve_fds)).filter_map(|fd| RawFd::try_from(fd).ok()),
    );
    crate::process::finish::close_fds_except(&mut keep);
    ctx.stdio.install().map_err(sys("stdio"))?;

    // 1. The parent writes our uid/gid maps, then says Go; it moves us into the cgroup while
    //    we go on (see `CgroupPlacement`).
    match ctx.sync.recv()? {
        Msg::Go => {}
        other => return Err(InitError::Protocol(other)),
    }
    // Non-dumpable until execve: no other process of this user may ptrace us or open our
    // /proc/<pid> files (e.g. /proc/<pid>/exe, the runtime binary). Set only now because an
    // unprivileged parent needs a dumpable child to write its uid_map.
    nix::sys::prctl::set_dumpable(false).map_err(sys("prctl(PR_SET_DUMPABLE, 0)"))?;
    // Modes from the spec (devices, created directories) are applied exactly.
    let original_umask = nix::sys::stat::umask(Mode::empty());

    // 2. Namespaces given by path (user and pid were entered before the clone). A joined
    //    mount namespace is entered here, before the rootfs setup (step 4), which then runs
    //    inside it; what that setup resolves by path must exist there.
    namespaces::join(ctx.joins)?;
    namespaces::check_joined_mount(plan, ctx.joins)?;
    let placement = CgroupPlacement {
        ctx,
        done: std::cell::Cell::new(false),
    };
    let in_userns = plan.namespaces.has_userns();
    if in_userns {
        process::become_ns_root()?;
    }
    // A new time namespace: unshared now (it becomes our time_for_children), its offsets
    // written before any process is in it, entered by our execve; hooks we run see it too.
    let newtime = nix::sched::CloneFlags::from_bits_retain(libc::CLONE_NEWTIME);
    if plan.namespaces.creates(newtime) {
        nix::sched::unshare(newtime).map_err(sys("unshare(CLONE_NEWTIME)"))?;
        let offsets = crate::spec::time_offsets_text(&plan.spec);
        if !offsets.is_empty() {
            std::fs::write("/proc/self/timens_offsets", offsets).map_err(|e| InitError::Sys {
                what: "linux.timeOffsets: writing /proc/self/timens_offsets",
                source: nix::Error::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
            })?;
        }
    }
    // A user namespace joined by path may deny setgroups (one made by `unshare -r`, or by an
    // unprivileged runtime): then only an empty additionalGids can be honoured.
    let setgroups_denied = ctx.setgroups_denied
        || (plan.namespaces.joins(nix::sched::CloneFlags::CLONE_NEWUSER)
            && namespaces::setgroups_denied_here());
    if setgroups_denied && !plan.process.additional_gids.is_empty() {
        return Err(InitError::Sys {
            what: "process.user.additionalGids: the joined user namespace denies setgroups",
            source: nix::Error::EPERM,
        });
    }

    // 3. UTS names.
    namespaces::set_uts(plan.hostname.as_deref(), plan.domainname.as_deref())
        .map_err(sys("sethostname/setdomainname"))?;
    if plan
        .namespaces
        .creates(nix::sched::CloneFlags::CLONE_NEWNET)
    {
        namespaces::loopback_up().map_err(sys("bring up lo in the new network namespace"))?;
    }

    // 4. Root filesystem.
    let mut mounter = RootfsMounter::new(plan, in_userns);
    mounter.prepare()?;
    mounter.mount_all(|| placement.wait())?;
    placement.wait()?;
    devices::create_all(&mounter, plan)?;
    // The working directory is created (as the namespace's root) while the rootfs is still
    // addressed through the resolver.
    mounter.resolve("process.cwd", &plan.process.cwd, Some(rootfs::Create::Dir))?;
    // oom_score_adj through the host's /proc, which is still reachable here.
    process::set_oom_score_adj(&plan.process)?;
    // Security profile: sysctl through the container's /proc/sys, then readonly and masked
    // paths (resolved inside the rootfs, mounted through O_PATH fds), then the personality.
    crate::security::apply_before_pivot(&plan.security, &plan.rootfs)?;
    // The seccomp filter is compiled now and loaded last; a NOTIFY agent is connected now,
    // while linux.seccomp.listenerPath on the host is still reachable.
    let seccomp = crate::security::prepare_seccomp(&plan.security)?;
    // Lifecycle: createContainer hooks, inside the container's namespaces and before
    // pivot_root, so their paths still resolve in the runtime's filesystem (spec). The host's
    // /proc is still mounted here: `self` names our pid as the host sees it.
    let host_pid: Option<i32> = std::fs::read_link("/proc/self")
        .ok()
        .and_then(|p| p.to_str().and_then(|s| s.parse().ok()));
    let hook_state = crate::container::hooks::HookState::of_plan(plan, ctx.container_id, host_pid);
    // prestart and createRuntime run in the runtime, now: after the mounts, before
    // createContainer and pivot_root (sync.rs step 3).
    if crate::container::hooks::HookKind::runtime_hooks_before_pivot(plan.spec.hooks().as_ref()) {
        ctx.sync.send(&Msg::Mounted)?;
        match ctx.sync.recv()? {
            Msg::HooksDone => {}
            other => return Err(InitError::Protocol(other)),
        }
    }
    if let Some(hooks) = plan.spec.hooks() {
        let kind = crate::container::hooks::HookKind::CreateContainer;
        crate::container::hooks::run_hooks(kind, Some(hooks), &hook_state.json("creating"))?;
    }
    if crate::rootfs::hostmount::shares_mount_ns(&plan.namespaces) {
        mounter.chroot()?;
    } else if ctx.no_pivot {
        mounter.move_root()?;
    } else {
        mounter.pivot()?;
    }
    rootfs::finish_root(plan)?;
    devices::reopen_stdio_dev_null()?;
    // 5-7. The steps every container process shares with `exec` (finish.rs): keyring,
    //      terminal or new session, rlimits, personality, capabilities and the uid switch,
    //      the cwd check, no_new_privs, fds close-on-exec; then Ready and the wait for
    //      `start`; then AppArmor and seccomp, last, and execve.
    let console_size = plan
        .spec
        .process()
        .as_ref()
        .and_then(|p| p.console_size())
        .map(|b| {
            let clamp = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
            (clamp(b.height()), clamp(b.width()))
        });
    let finish = ProcessFinish {
        process: &plan.process,
        spec: &plan.spec,
        security: &plan.security,
        container_id: ctx.container_id,
        bundle: &plan.bundle,
        setgroups_denied,
        session_keyring: ctx.session_keyring.as_deref(),
        console: ctx.console.as_ref().map(|sock| (sock, console_size)),
        seccomp,
        preserve_fds: ctx.preserve_fds,
        default_umask: original_umask,
    };
    finish.exec(|| wait_for_start(ctx, &hook_state))
}

/// Reports Ready, blocks until `start` writes the exec fifo, then runs the startContainer
/// hooks (in the container: paths resolve inside it). A hook failure ends the init.
fn wait_for_start(
    ctx: &InitContext<'_>,
    hook_state: &crate::container::hooks::HookState<'_>,
) -> Result<(), InitError> {
    ctx.sync.send(&Msg::Ready)?;
    let mut byte = [0u8; 1];
    loop {
        match nix::unistd::read(&ctx.exec_fifo, &mut byte) {
            Ok(1) => break,
            Ok(_) => {
                return Err(InitError::Sys {
                    what: "exec fifo closed before start",
                    source: nix::Error::EPIPE,
                })
            }
            Err(nix::Error::EINTR) => continue,
            Err(e) => return Err(sys("read exec fifo")(e)),
        }
    }
    if let Some(hooks) = ctx.plan.spec.hooks() {
        // A hook without `env` gets the container process's environment (runc, youki).
        let kind = crate::container::hooks::HookKind::StartContainer;
        let env = Some(ctx.plan.process.env.as_slice());
        crate::container::hooks::run_hooks_with_env(
            kind,
            Some(hooks),
            &hook_state.json("created"),
            env,
        )?;
    }
    Ok(())
}

/// The parent moves the init into the container's cgroup after `Go`, while the init already
/// runs its first setup steps: a cgroup v1 move waits for an RCU grace period (milliseconds on
/// a loaded or virtualised host), and overlapping it with the mounts takes it off the start-up
/// path. Everything that depends on the init's cgroup waits in [`CgroupPlacement::wait`]
/// first: the cgroup namespace, cgroup mounts, and all steps after the mounts (devices,
/// hooks, the workload itself).
struct CgroupPlacement<'a> {
    ctx: &'a InitContext<'a>,
    done: std::cell::Cell<bool>,
}

impl CgroupPlacement<'_> {
    fn wait(&self) -> Result<(), InitError> {
        if self.done.get() {
            return Ok(());
        }
        match self.ctx.sync.recv()? {
            Msg::Placed => {}
            other => return Err(InitError::Protocol(other)),
        }
        // A new cgroup namespace now, not at clone time: we are in the container's cgroup, so
        // that cgroup becomes the namespace's root ("/" inside).
        if self
            .ctx
            .plan
            .namespaces
            .create
            .contains(nix::sched::CloneFlags::CLONE_NEWCGROUP)
        {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWCGROUP)
                .map_err(sys("unshare(CLONE_NEWCGROUP)"))?;
        }
        self.done.set(true);
        Ok(())
    }
}
