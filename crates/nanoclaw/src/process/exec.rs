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

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;
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

/// Upper bound for a `--process` file (runc has none; a process.json is a few KiB).
const MAX_PROCESS_JSON: u64 = 1 << 20;

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

/// The command-line view of an exec request (runc's flags).
#[derive(Debug, Clone, Default)]
pub struct ExecRequest {
    /// `--process`: an OCI `process` object; when given, `args` and the overrides are ignored
    /// (as runc does).
    pub process_file: Option<PathBuf>,
    pub args: Vec<String>,
    /// `--env KEY=VALUE`, appended to config.json's environment (replacing equal keys).
    pub env: Vec<String>,
    pub cwd: Option<PathBuf>,
    /// `--user UID[:GID]`.
    pub user: Option<String>,
    pub additional_gids: Vec<u32>,
    pub tty: bool,
    pub no_new_privs: bool,
    /// `--cap CAP_X`: added to the bounding, effective, permitted and ambient sets (runc).
    pub caps: Vec<String>,
    pub detach: bool,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    /// `--preserve-fds N`: fds 3..3+N are passed to the process.
    pub preserve_fds: u32,
    /// `--ignore-paused`: exec into a paused container (the process starts frozen and runs
    /// once the container is resumed).
    pub ignore_paused: bool,
    /// `--cgroup [CONTROLLER[,CONTROLLER]:]PATH`: run the process in an existing sub-cgroup
    /// of the container's cgroup.
    pub cgroups: Vec<String>,
}

/// `--cap` as runc takes it: with or without the `CAP_` prefix, in any case.
pub fn parse_cap(name: &str) -> Result<oci_spec::runtime::Capability, ExecError> {
    let upper = name.trim().to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    if bare.is_empty() {
        return Err(ExecError::BadCap(name.to_string()));
    }
    bare.parse()
        .map_err(|_| ExecError::BadCap(name.to_string()))
}

/// The `--cgroup` flags: a sub-cgroup for every hierarchy (`PATH`) and per controller
/// (`cpu,memory:PATH`, v1 hierarchies by any of their controllers).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubCgroups {
    pub all: Option<PathBuf>,
    pub per_controller: std::collections::BTreeMap<String, PathBuf>,
}

impl SubCgroups {
    /// Parses runc's `[<controller>:]<cgroup>` forms. The path is relative to the container's
    /// cgroup (a leading `/` is ignored) and may not climb out of it.
    pub fn parse(args: &[String]) -> Result<Self, ExecError> {
        let mut out = SubCgroups::default();
        for arg in args {
            let bad = |why: &str| ExecError::BadCgroup {
                arg: arg.clone(),
                why: why.to_string(),
            };
            let (ctrls, path) = match arg.split_once(':') {
                Some((c, p)) => (Some(c), p),
                None => (None, arg.as_str()),
            };
            let rel = PathBuf::from(path.trim_start_matches('/'));
            if rel.as_os_str().is_empty() {
                return Err(bad("empty sub-cgroup path"));
            }
            if rel
                .components()
                .any(|c| !matches!(c, std::path::Component::Normal(_)))
            {
                return Err(bad(
                    "the sub-cgroup path may not contain `..` or `.` (it must stay inside the container's cgroup)",
                ));
            }
            match ctrls {
                None => out.all = Some(rel),
                Some(c) => {
                    for ctrl in c.split(',') {
                        if ctrl.is_empty() {
                            return Err(bad("empty controller name before `:`"));
                        }
                        out.per_controller.insert(ctrl.to_string(), rel.clone());
                    }
                }
            }
        }
        Ok(out)
    }

    pub fn is_empty(&self) -> bool {
        self.all.is_none() && self.per_controller.is_empty()
    }

    /// The directory each hierarchy's `cgroup.procs` is written in: the container's own
    /// directory, or the sub-cgroup chosen for one of its controllers (else the bare `PATH`).
    /// The unified (v2) hierarchy takes the bare `PATH`, else the path given for one of the
    /// controllers it has.
    pub fn targets(&self, paths: &nanoclaw_cgroups::CgroupPaths) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = Vec::new();
        for (ctrls, h) in &paths.v1 {
            let sub = ctrls
                .split(',')
                .find_map(|c| self.per_controller.get(c))
                .or(self.all.as_ref());
            out.push(match sub {
                Some(s) => h.dir.join(s),
                None => h.dir.clone(),
            });
        }
        if let Some(u) = &paths.unified {
            // cgroup2 is one hierarchy: the bare PATH, else the sub-cgroup named for one of
            // the controllers it has (pure v2: `memory:sub` works as in runc).
            let has = std::fs::read_to_string(u.dir.join("cgroup.controllers")).unwrap_or_default();
            let sub = self.all.as_ref().or_else(|| {
                has.split_whitespace()
                    .find_map(|c| self.per_controller.get(c))
            });
            out.push(match sub {
                Some(s) => u.dir.join(s),
                None => u.dir.clone(),
            });
        }
        out.dedup();
        out
    }
}

/// Parses a `--process` file into an OCI `Process`, naming the offending JSON field on error.
pub fn load_process_file(path: &Path) -> Result<Process, ExecError> {
    let file = std::fs::File::open(path).map_err(|source| ExecError::ProcessFile {
        path: path.to_path_buf(),
        source,
    })?;
    let mut bytes = Vec::new();
    file.take(MAX_PROCESS_JSON + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| ExecError::ProcessFile {
            path: path.to_path_buf(),
            source,
        })?;
    if bytes.len() as u64 > MAX_PROCESS_JSON {
        return Err(ExecError::ProcessFileTooLarge {
            path: path.to_path_buf(),
        });
    }
    parse_process_json(path, &bytes)
}

/// Parses the bytes of a `--process` file (`path` only names it in errors). Untrusted input:
/// fuzzed by the `nanoclaw_lifecycle_inputs` target.
pub fn parse_process_json(path: &Path, bytes: &[u8]) -> Result<Process, ExecError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize::<_, Process>(de).map_err(|e| ExecError::ProcessJson {
        path: path.to_path_buf(),
        field: e.path().to_string(),
        msg: e.into_inner().to_string(),
    })
}

/// The exec'd process: `--process` as given, or config.json's process with the command line
/// applied on top (args replaced, env appended, cwd/user/terminal overridden).
pub fn build_process(
    req: &ExecRequest,
    config_process: Option<&Process>,
) -> Result<Process, ExecError> {
    if let Some(path) = &req.process_file {
        let mut p = load_process_file(path)?;
        if req.tty {
            p.set_terminal(Some(true));
        }
        return Ok(p);
    }
    if req.args.is_empty() {
        return Err(ExecError::NoCommand);
    }
    let mut p = config_process.cloned().unwrap_or_default();
    p.set_args(Some(req.args.clone()));
    p.set_terminal(Some(req.tty));
    let mut env = p.env().clone().unwrap_or_default();
    for kv in &req.env {
        let Some((k, _)) = kv.split_once('=').filter(|(k, _)| !k.is_empty()) else {
            return Err(ExecError::BadEnv(kv.clone()));
        };
        env.retain(|e| e.split_once('=').map(|(ek, _)| ek) != Some(k));
        env.push(kv.clone());
    }
    p.set_env(Some(env));
    if let Some(cwd) = &req.cwd {
        if !cwd.is_absolute() {
            return Err(ExecError::BadCwd(cwd.clone()));
        }
        p.set_cwd(cwd.clone());
    }
    let mut user = p.user().clone();
    if let Some(u) = &req.user {
        let (uid, gid) = parse_user(u)?;
        user.set_uid(uid);
        if let Some(g) = gid {
            user.set_gid(g);
        }
    }
    if !req.additional_gids.is_empty() {
        user.set_additional_gids(Some(req.additional_gids.clone()));
    }
    p.set_user(user);
    if req.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    if !req.caps.is_empty() {
        let mut caps = p.capabilities().clone().unwrap_or_default();
        for name in &req.caps {
            let cap = parse_cap(name)?;
            let add = |set: Option<&oci_spec::runtime::Capabilities>| {
                let mut set = set.cloned().unwrap_or_default();
                set.insert(cap);
                Some(set)
            };
            caps.set_bounding(add(caps.bounding().as_ref()));
            caps.set_effective(add(caps.effective().as_ref()));
            caps.set_permitted(add(caps.permitted().as_ref()));
            caps.set_ambient(add(caps.ambient().as_ref()));
        }
        p.set_capabilities(Some(caps));
    }
    Ok(p)
}

/// `UID[:GID]`, numeric (the container's /etc/passwd is not consulted, like runc).
pub fn parse_user(s: &str) -> Result<(u32, Option<u32>), ExecError> {
    let bad = || ExecError::BadUser(s.to_string());
    match s.split_once(':') {
        Some((u, g)) => Ok((
            u.parse().map_err(|_| bad())?,
            Some(g.parse().map_err(|_| bad())?),
        )),
        None => Ok((s.parse().map_err(|_| bad())?, None)),
    }
}

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
const CHROOT: &str = "root";

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
    fn cap_flag_takes_runc_forms() {
        use oci_spec::runtime::Capability;
        for name in ["CAP_KILL", "KILL", "cap_kill", "kill", "Cap_Kill"] {
            assert_eq!(parse_cap(name).unwrap(), Capability::Kill, "{name}");
        }
        assert_eq!(parse_cap("cap_sys_admin").unwrap(), Capability::SysAdmin);
        for bad in ["CAP_", "", "CAP_NOPE", "CAPKILL"] {
            let e = parse_cap(bad).unwrap_err().to_string();
            assert!(
                e.contains("--cap") && e.contains("unknown capability"),
                "{e}"
            );
        }
    }

    #[test]
    fn cgroup_flag_forms() {
        let s =
            |v: &[&str]| SubCgroups::parse(&v.iter().map(|x| x.to_string()).collect::<Vec<_>>());
        let a = s(&["sub"]).unwrap();
        assert_eq!(a.all.as_deref(), Some(Path::new("sub")));
        let b = s(&["cpu,memory:/x/y", "pids:z"]).unwrap();
        assert_eq!(b.per_controller["cpu"], Path::new("x/y"));
        assert_eq!(b.per_controller["memory"], Path::new("x/y"));
        assert_eq!(b.per_controller["pids"], Path::new("z"));
        for bad in ["../up", "a/../../b", "", "/", ":x", "cpu,:x"] {
            let e = s(&[bad]).unwrap_err().to_string();
            assert!(e.contains("--cgroup"), "{bad}: {e}");
        }
        let mut paths = nanoclaw_cgroups::CgroupPaths::default();
        let dir = |d: &str| nanoclaw_cgroups::path::HierarchyDir {
            mountpoint: "/m".into(),
            dir: d.into(),
        };
        paths.v1.insert("cpu,cpuacct".into(), dir("/m/cpu/c"));
        paths.v1.insert("memory".into(), dir("/m/memory/c"));
        paths.unified = Some(dir("/m/unified/c"));
        let t = s(&["cpu:s"]).unwrap().targets(&paths);
        assert_eq!(
            t,
            [
                PathBuf::from("/m/cpu/c/s"),
                "/m/memory/c".into(),
                "/m/unified/c".into()
            ]
        );
        let t = s(&["s"]).unwrap().targets(&paths);
        assert!(t.iter().all(|p| p.ends_with("c/s")), "{t:?}");
    }

    #[test]
    fn user_flag() {
        assert_eq!(parse_user("1000").unwrap(), (1000, None));
        assert_eq!(parse_user("1000:100").unwrap(), (1000, Some(100)));
        assert!(parse_user("bob").is_err());
        assert!(parse_user("1:x").is_err());
    }

    #[test]
    fn command_line_applies_on_top_of_config_process() {
        let mut base = Process::default();
        base.set_env(Some(vec!["PATH=/bin".into(), "A=1".into()]));
        let req = ExecRequest {
            args: vec!["sh".into()],
            env: vec!["A=2".into(), "B=3".into()],
            cwd: Some("/tmp".into()),
            user: Some("7:8".into()),
            tty: true,
            ..Default::default()
        };
        let p = build_process(&req, Some(&base)).unwrap();
        assert_eq!(p.args().as_deref(), Some(&["sh".to_string()][..]));
        assert_eq!(
            p.env().as_deref(),
            Some(
                &[
                    "PATH=/bin".to_string(),
                    "A=2".to_string(),
                    "B=3".to_string()
                ][..]
            )
        );
        assert_eq!(p.cwd(), Path::new("/tmp"));
        assert_eq!((p.user().uid(), p.user().gid()), (7, 8));
        assert_eq!(p.terminal(), Some(true));
        let bad = ExecRequest {
            args: vec!["sh".into()],
            env: vec!["=x".into()],
            ..Default::default()
        };
        assert!(matches!(
            build_process(&bad, None),
            Err(ExecError::BadEnv(_))
        ));
        assert!(matches!(
            build_process(&ExecRequest::default(), None),
            Err(ExecError::NoCommand)
        ));
    }

    #[test]
    fn process_file_errors_name_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("p.json");
        std::fs::write(
            &f,
            br#"{"cwd":"/","args":["sh"],"user":{"uid":"zero","gid":0}}"#,
        )
        .unwrap();
        let e = load_process_file(&f).unwrap_err().to_string();
        assert!(e.contains("user.uid"), "{e}");
        std::fs::write(&f, br#"{"cwd":"/","args":["sh"],"user":{"uid":0,"gid":0}}"#).unwrap();
        assert_eq!(
            load_process_file(&f).unwrap().args().as_deref(),
            Some(&["sh".to_string()][..])
        );
    }

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
