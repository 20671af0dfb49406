//! `checkpoint` and `restore` through CRIU, with runc's flags (podman's `container
//! checkpoint/restore` and containerd drive these).
//!
//! CRIU is run as its command line (`criu dump|pre-dump|restore`), not over its RPC socket:
//! the flags map one to one, and the log CRIU writes to the work directory is what both the
//! user and nanoclaw's error read. The argument lists are built by pure functions
//! ([`dump_args`], [`restore_args`]) so what is asked of CRIU is testable without CRIU.
//!
//! - checkpoint: the init's tree is dumped with the container's rootfs as CRIU's root, bind
//!   mounts named as external mounts (keyed by their destination, as runc does), the cgroup
//!   freezer used to stop the tree, `descriptors.json` (what fds 0-2 of the init are) written
//!   next to the images. Without `--leave-running` or `--pre-dump` the container is then
//!   deleted (CRIU killed its processes), as runc does. When CRIU fails, it has resumed the
//!   tree: the container is left as it was, and the error quotes CRIU's own error lines.
//! - restore: a new container from the bundle: state dir and cgroup first, then CRIU restores
//!   the tree into them (`--cgroup-root` per hierarchy), with the rootfs bind-mounted at
//!   `<state>/criu-root` in a private mount namespace of this process (nothing reaches the
//!   host's), external mounts mapped back to their sources, and pipes that were the init's
//!   stdio replaced by this process's (`--inherit-fd`). Any failure unwinds like `create`.
//!
//! Refused with their name: `--lazy-pages` (and `--status-fd`, which only serves it), the
//! LSM relabelling flags of restore (nanoclaw has no SELinux support), and restore's
//! `--console-socket` (a restored terminal). `--no-subreaper` and restore's `--no-pivot` are
//! accepted as no-ops: nanoclaw is never a subreaper, and CRIU recreates the mount namespace.

use std::ffi::OsString;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use nix::sys::signal::Signal;
use oci_spec::runtime::Spec;

use crate::container::state::{self, State, StateDir, Status};

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{flag}: {why}")]
    Refused { flag: &'static str, why: String },
    #[error("{0}")]
    Container(#[from] crate::container::ContainerError),
    #[error(transparent)]
    State(#[from] crate::container::state::StateError),
    #[error(transparent)]
    Spec(#[from] crate::spec::SpecError),
    #[error(transparent)]
    Cgroup(#[from] crate::container::cgroup::CgroupStepError),
    #[error("container {id:?} is {status}: only a running container can be checkpointed")]
    NotRunning { id: String, status: &'static str },
    #[error("CRIU is needed for {what} and was not found (install the `criu` package)")]
    NoCriu { what: &'static str },
    #[error("criu {action} failed ({how}): {errors}; log file: {log}")]
    Criu {
        action: &'static str,
        how: String,
        errors: String,
        log: PathBuf,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("{what}: {source}")]
    Sys { what: String, source: nix::Error },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> CheckpointError {
    let what = what.into();
    move |source| CheckpointError::Io { what, source }
}

fn sys(what: impl Into<String>) -> impl FnOnce(nix::Error) -> CheckpointError {
    let what = what.into();
    move |source| CheckpointError::Sys { what, source }
}

/// `nanoclaw checkpoint`: runc's flags, as given (the binary parses the command line).
#[derive(Debug, Default, Clone)]
pub struct CheckpointArgs {
    /// Directory for the CRIU images (default: ./checkpoint).
    pub image_path: Option<PathBuf>,
    /// Directory for CRIU's log and work files (default: the image path).
    pub work_path: Option<PathBuf>,
    /// Images of a previous pre-dump, relative to the image path (incremental dump).
    pub parent_path: Option<PathBuf>,
    /// Leave the container running after the dump.
    pub leave_running: bool,
    /// Dump established TCP connections.
    pub tcp_established: bool,
    /// Allow external unix sockets.
    pub ext_unix_sk: bool,
    /// Allow shell jobs (a terminal from outside the tree).
    pub shell_job: bool,
    /// Lazy migration through a page server (refused).
    pub lazy_pages: bool,
    /// Status fd of --lazy-pages (refused).
    pub status_fd: Option<i32>,
    /// Send pages to a page server at ADDRESS:PORT.
    pub page_server: Option<String>,
    /// Dump file locks.
    pub file_locks: bool,
    /// Dump memory only and leave the container running (for a later incremental dump).
    pub pre_dump: bool,
    /// soft, full, strict or ignore.
    pub manage_cgroups_mode: Option<String>,
    /// Namespaces to leave empty, not dumped (network).
    pub empty_ns: Vec<String>,
    /// Deduplicate against the parent images.
    pub auto_dedup: bool,
    pub id: String,
}

/// `nanoclaw restore`: runc's flags, as given (the binary parses the command line).
#[derive(Debug, Default, Clone)]
pub struct RestoreArgs {
    pub bundle: PathBuf,
    /// Directory of the CRIU images (default: ./checkpoint).
    pub image_path: Option<PathBuf>,
    /// Directory for CRIU's log and work files (default: the image path).
    pub work_path: Option<PathBuf>,
    pub tcp_established: bool,
    pub ext_unix_sk: bool,
    pub shell_job: bool,
    pub file_locks: bool,
    /// soft, full, strict or ignore.
    pub manage_cgroups_mode: Option<String>,
    /// Leave the restored container running and exit.
    pub detach: bool,
    pub pid_file: Option<PathBuf>,
    /// Refused: handing a restored container's pty to a console socket is not supported.
    pub console_socket: Option<PathBuf>,
    /// nanoclaw is never a subreaper: accepted, nothing to disable.
    pub no_subreaper: bool,
    /// CRIU restores the mount namespace it dumped: accepted, no pivot is involved.
    pub no_pivot: bool,
    pub empty_ns: Vec<String>,
    pub auto_dedup: bool,
    /// Refused.
    pub lazy_pages: bool,
    /// Refused (no SELinux support).
    pub lsm_profile: Option<String>,
    /// Refused (no SELinux support).
    pub lsm_mount_context: Option<String>,
    pub id: String,
}

/// What CRIU is asked to do with the cgroups (`--manage-cgroups-mode`).
fn cgroup_mode(mode: Option<&str>) -> Result<&'static str, CheckpointError> {
    match mode.unwrap_or("soft") {
        "soft" => Ok("soft"),
        "full" => Ok("full"),
        "strict" => Ok("strict"),
        "ignore" => Ok("ignore"),
        other => Err(CheckpointError::Refused {
            flag: "--manage-cgroups-mode",
            why: format!("{other:?}: expected soft, full, strict or ignore"),
        }),
    }
}

fn empty_ns(list: &[String]) -> Result<Vec<OsString>, CheckpointError> {
    let mut v = Vec::new();
    for ns in list {
        match ns.as_str() {
            "network" | "net" => {
                v.push("--empty-ns".into());
                v.push("net".into());
            }
            other => {
                return Err(CheckpointError::Refused {
                    flag: "--empty-ns",
                    why: format!("{other:?}: only the network namespace can be left empty"),
                })
            }
        }
    }
    Ok(v)
}

/// Bind mounts of the config: CRIU cannot dump their sources (outside the container), so
/// each is external, keyed by its destination.
fn external_binds(spec: &Spec) -> Vec<(PathBuf, PathBuf)> {
    spec.mounts()
        .iter()
        .flatten()
        .filter(|m| {
            m.typ().as_deref() == Some("bind")
                || m.options()
                    .iter()
                    .flatten()
                    .any(|o| o == "bind" || o == "rbind")
        })
        .filter_map(|m| Some((m.destination().clone(), m.source().clone()?)))
        .collect()
}

/// CRIU's key for a network namespace the container joined by path (podman's, a CNI netns):
/// it is not the container's to dump, so dump names it external and restore hands CRIU an fd
/// of the namespace to put the restored tree back into (runc's `extRootNetNS`).
const EXTERNAL_NET_NS: &str = "extRootNetNS";

/// The path of the network namespace the config joins, if it joins one.
fn joined_net_ns(spec: &Spec) -> Option<PathBuf> {
    spec.linux()
        .as_ref()?
        .namespaces()
        .as_ref()?
        .iter()
        .find(|n| n.typ() == oci_spec::runtime::LinuxNamespaceType::Network)?
        .path()
        .clone()
}

/// Everything `criu dump` / `pre-dump` gets, in order.
pub struct DumpInputs<'a> {
    pub args: &'a CheckpointArgs,
    pub pid: i32,
    pub rootfs: &'a Path,
    pub image: &'a Path,
    pub work: &'a Path,
    pub spec: &'a Spec,
    pub freezer: Option<&'a Path>,
    /// Inode of the joined network namespace (`joined_net_ns`).
    pub net_ns_inode: Option<u64>,
}

pub fn dump_args(d: &DumpInputs<'_>) -> Result<Vec<OsString>, CheckpointError> {
    let a = d.args;
    if a.lazy_pages {
        return Err(CheckpointError::Refused {
            flag: "--lazy-pages",
            why: "lazy migration is not supported by nanoclaw".into(),
        });
    }
    if a.status_fd.is_some() {
        return Err(CheckpointError::Refused {
            flag: "--status-fd",
            why: "it only serves --lazy-pages, which is not supported".into(),
        });
    }
    let mut v: Vec<OsString> = vec![
        if a.pre_dump { "pre-dump" } else { "dump" }.into(),
        "--tree".into(),
        d.pid.to_string().into(),
        "--images-dir".into(),
        d.image.into(),
        "--work-dir".into(),
        d.work.into(),
        "--log-file".into(),
        if a.pre_dump {
            "pre-dump.log"
        } else {
            "dump.log"
        }
        .into(),
        "-v4".into(),
        "--root".into(),
        d.rootfs.into(),
        // An optional argument: only the `=` form binds it.
        format!(
            "--manage-cgroups={}",
            cgroup_mode(a.manage_cgroups_mode.as_deref())?
        )
        .into(),
        // Files unlinked but open (as runc asks).
        "--link-remap".into(),
    ];
    if let Some(f) = d.freezer {
        v.push("--freeze-cgroup".into());
        v.push(f.into());
    }
    if let Some(parent) = &a.parent_path {
        v.push("--prev-images-dir".into());
        v.push(parent.into());
        v.push("--track-mem".into());
    } else if a.pre_dump {
        v.push("--track-mem".into());
    }
    if a.leave_running && !a.pre_dump {
        v.push("--leave-running".into());
    }
    for (flag, on) in [
        ("--tcp-established", a.tcp_established),
        ("--ext-unix-sk", a.ext_unix_sk),
        ("--shell-job", a.shell_job),
        ("--file-locks", a.file_locks),
        ("--auto-dedup", a.auto_dedup),
    ] {
        if on {
            v.push(flag.into());
        }
    }
    if let Some(ps) = &a.page_server {
        let (addr, port) = ps.rsplit_once(':').ok_or(CheckpointError::Refused {
            flag: "--page-server",
            why: format!("{ps:?}: expected ADDRESS:PORT"),
        })?;
        v.extend(["--page-server".into(), "--address".into(), addr.into()]);
        v.extend(["--port".into(), port.into()]);
    }
    v.extend(empty_ns(&a.empty_ns)?);
    for (dest, _) in external_binds(d.spec) {
        let mut m = OsString::from("mnt[");
        m.push(&dest);
        m.push("]:");
        m.push(&dest);
        v.push("--external".into());
        v.push(m);
    }
    if let Some(ino) = d.net_ns_inode {
        v.push("--external".into());
        v.push(format!("net[{ino}]:{EXTERNAL_NET_NS}").into());
    }
    Ok(v)
}

/// Everything `criu restore` gets.
pub struct RestoreInputs<'a> {
    pub args: &'a RestoreArgs,
    pub root: &'a Path,
    pub image: &'a Path,
    pub work: &'a Path,
    pub spec: &'a Spec,
    pub pidfile: &'a Path,
    /// `--cgroup-root` values (`controllers:/path` or `/path`).
    pub cgroup_roots: &'a [String],
    /// (our fd, the pipe it replaces) from descriptors.json.
    pub inherit: &'a [(i32, String)],
    /// Our fd (inheritable) of the joined network namespace (`joined_net_ns`).
    pub net_ns_fd: Option<i32>,
}

pub fn restore_args(r: &RestoreInputs<'_>) -> Result<Vec<OsString>, CheckpointError> {
    let a = r.args;
    if a.lazy_pages {
        return Err(CheckpointError::Refused {
            flag: "--lazy-pages",
            why: "lazy migration is not supported by nanoclaw".into(),
        });
    }
    if a.console_socket.is_some() {
        return Err(CheckpointError::Refused {
            flag: "--console-socket",
            why: "restoring a container with a terminal is not supported by nanoclaw".into(),
        });
    }
    for (flag, set) in [
        ("--lsm-profile", a.lsm_profile.is_some()),
        ("--lsm-mount-context", a.lsm_mount_context.is_some()),
    ] {
        if set {
            return Err(CheckpointError::Refused {
                flag,
                why: "relabelling on restore is not supported by nanoclaw (no SELinux support)"
                    .into(),
            });
        }
    }
    let mut v: Vec<OsString> = vec![
        "restore".into(),
        "--images-dir".into(),
        r.image.into(),
        "--work-dir".into(),
        r.work.into(),
        "--log-file".into(),
        "restore.log".into(),
        "-v4".into(),
        "--root".into(),
        r.root.into(),
        "--pidfile".into(),
        r.pidfile.into(),
        // An optional argument: only the `=` form binds it.
        format!(
            "--manage-cgroups={}",
            cgroup_mode(a.manage_cgroups_mode.as_deref())?
        )
        .into(),
        "--restore-detached".into(),
    ];
    for c in r.cgroup_roots {
        v.push("--cgroup-root".into());
        v.push(c.into());
    }
    for (flag, on) in [
        ("--tcp-established", a.tcp_established),
        ("--ext-unix-sk", a.ext_unix_sk),
        ("--shell-job", a.shell_job),
        ("--file-locks", a.file_locks),
        ("--auto-dedup", a.auto_dedup),
    ] {
        if on {
            v.push(flag.into());
        }
    }
    v.extend(empty_ns(&a.empty_ns)?);
    for (dest, source) in external_binds(r.spec) {
        let mut m = OsString::from("mnt[");
        m.push(&dest);
        m.push("]:");
        m.push(&source);
        v.push("--external".into());
        v.push(m);
    }
    for (fd, pipe) in r.inherit {
        v.push("--inherit-fd".into());
        v.push(format!("fd[{fd}]:{pipe}").into());
    }
    if let Some(fd) = r.net_ns_fd {
        v.push("--inherit-fd".into());
        v.push(format!("fd[{fd}]:{EXTERNAL_NET_NS}").into());
    }
    Ok(v)
}

/// `path` opened read-only without close-on-exec, for CRIU to inherit.
fn inheritable(path: &Path) -> Result<std::fs::File, CheckpointError> {
    let f = std::fs::File::open(path).map_err(io(format!("open {}", path.display())))?;
    nix::fcntl::fcntl(
        &f,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
    )
    .map_err(sys(format!("clearing close-on-exec of {}", path.display())))?;
    Ok(f)
}

fn criu() -> Result<PathBuf, CheckpointError> {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join("criu"))
        .find(|p| p.is_file());
    found.ok_or(CheckpointError::NoCriu {
        what: "checkpoint/restore",
    })
}

/// Runs CRIU; a failure quotes the `Error` lines of its log.
fn run_criu(action: &'static str, args: &[OsString], log: &Path) -> Result<(), CheckpointError> {
    let out = Command::new(criu()?)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::inherit())
        .stderr(std::process::Stdio::piped())
        .output()
        .map_err(io(format!("running criu {action}")))?;
    let status = out.status;
    if status.success() {
        return Ok(());
    }
    // What CRIU says before its log is open (bad arguments) goes to stderr.
    let early = String::from_utf8_lossy(&out.stderr).into_owned();
    let how = match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit status {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        _ => status.to_string(),
    };
    Err(CheckpointError::Criu {
        action,
        how,
        errors: criu_errors(&early, log),
        log: log.to_path_buf(),
    })
}

/// CRIU's own error lines (at most four), timestamps cut.
pub fn criu_errors(stderr: &str, log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = stderr
        .lines()
        .chain(text.lines())
        .filter_map(|l| l.find("Error (").map(|i| l[i..].trim()))
        .take(4)
        .collect();
    if lines.is_empty() {
        "no error line from CRIU".to_owned()
    } else {
        lines.join("; ")
    }
}

fn absolute(p: Option<&Path>, default: &str) -> Result<PathBuf, CheckpointError> {
    let p = p.map(Path::to_path_buf).unwrap_or_else(|| default.into());
    if p.is_absolute() {
        return Ok(p);
    }
    Ok(std::env::current_dir()
        .map_err(io("current directory"))?
        .join(p))
}

fn mkdir(p: &Path) -> Result<(), CheckpointError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(p)
        .map_err(io(format!("mkdir {}", p.display())))
}

/// The config snapshot taken at create.
fn snapshot(dir: &StateDir) -> Result<Spec, CheckpointError> {
    let path = dir.path().join(state::CONFIG_SNAPSHOT);
    let bytes = std::fs::read(&path).map_err(io(format!("read {}", path.display())))?;
    serde_json::from_slice(&bytes).map_err(|e| CheckpointError::Io {
        what: format!("parse {}", path.display()),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
    })
}

/// What fds 0-2 of the init are (`pipe:[N]`, a path, ...), as runc records them.
fn descriptors(pid: i32) -> Vec<String> {
    (0..3)
        .map(|fd| {
            std::fs::read_link(format!("/proc/{pid}/fd/{fd}"))
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default()
        })
        .collect()
}

/// `nanoclaw checkpoint`.
pub fn checkpoint(root: &Path, a: &CheckpointArgs) -> Result<(), CheckpointError> {
    let image = absolute(a.image_path.as_deref(), "checkpoint")?;
    let work = match &a.work_path {
        Some(w) => absolute(Some(w), "")?,
        None => image.clone(),
    };
    let dir = StateDir::open(root, &a.id)?;
    let st = dir.load()?;
    let status = crate::container::status_of(&dir, &st);
    let pid = match (status, st.pid) {
        (Status::Running | Status::Paused, Some(pid)) => pid,
        (s, _) => {
            return Err(CheckpointError::NotRunning {
                id: a.id.clone(),
                status: crate::container::ops::status_name(s),
            })
        }
    };
    let spec = snapshot(&dir)?;
    let freezer = crate::container::cgroup::load(dir.path())?.and_then(|m| {
        let p = m.paths();
        p.v1_dir("freezer")
            .map(Path::to_path_buf)
            .or_else(|| p.unified.as_ref().map(|u| u.dir.clone()))
    });
    let args = dump_args(&DumpInputs {
        args: a,
        pid,
        rootfs: &st.rootfs,
        image: &image,
        work: &work,
        spec: &spec,
        freezer: freezer.as_deref(),
        net_ns_inode: match joined_net_ns(&spec) {
            Some(p) => Some(
                std::fs::metadata(&p)
                    .map_err(io(format!("stat network namespace {}", p.display())))?
                    .ino(),
            ),
            None => None,
        },
    })?;
    criu()?;
    mkdir(&image)?;
    mkdir(&work)?;
    let desc = serde_json::to_vec(&descriptors(pid)).unwrap_or_default();
    std::fs::write(image.join("descriptors.json"), desc).map_err(io(format!(
        "write {}",
        image.join("descriptors.json").display()
    )))?;
    let log = work.join(if a.pre_dump {
        "pre-dump.log"
    } else {
        "dump.log"
    });
    // CRIU resumes the tree when it fails: the container stays as it was.
    run_criu(if a.pre_dump { "pre-dump" } else { "dump" }, &args, &log)?;
    if !a.leave_running && !a.pre_dump {
        // CRIU killed the tree; the container is gone, as after runc's checkpoint.
        drop(dir);
        crate::container::delete(root, &a.id, true)?;
    }
    Ok(())
}

/// `--cgroup-root` values that map the dumped tree's cgroups onto the new container's.
fn cgroup_roots(paths: &nanoclaw_cgroups::path::CgroupPaths) -> Vec<String> {
    let rel = |d: &nanoclaw_cgroups::path::HierarchyDir| {
        d.dir
            .strip_prefix(&d.mountpoint)
            .map(|r| format!("/{}", r.display()))
            .ok()
    };
    let mut v: Vec<String> = paths
        .v1
        .iter()
        .filter_map(|(ctrl, d)| Some(format!("{ctrl}:{}", rel(d)?)))
        .collect();
    if paths.v1.is_empty() {
        v.extend(paths.unified.as_ref().and_then(rel));
    }
    v
}

/// Undoes a half-restored container.
struct Unwind {
    state_dir: Option<StateDir>,
    cgroup: Option<Box<dyn nanoclaw_cgroups::CgroupManager>>,
}

impl Drop for Unwind {
    fn drop(&mut self) {
        if let Some(cg) = self.cgroup.take() {
            crate::container::cgroup::unwind(cg.as_ref());
        }
        if let Some(dir) = self.state_dir.take() {
            let _ = std::fs::remove_dir(dir.path().join("criu-root"));
            let _ = dir.remove();
        }
    }
}

/// `nanoclaw restore`. Returns the exit code (`-d`: 0 once restored).
pub fn restore(root: &Path, a: &RestoreArgs) -> Result<i32, CheckpointError> {
    let image = absolute(a.image_path.as_deref(), "checkpoint")?;
    let work = match &a.work_path {
        Some(w) => absolute(Some(w), "")?,
        None => image.clone(),
    };
    let euid = nix::unistd::geteuid().as_raw();
    state::validate_id(&a.id)?;
    let bundle = absolute(Some(&a.bundle), ".")?;
    let (plan, config_bytes) = crate::spec::load_with_source(&bundle, euid)?;
    // Flags first: nothing is created for a refused one.
    let pidfile = work.join("restore.pid");
    let mut inherit = Vec::new();
    if let Ok(bytes) = std::fs::read(image.join("descriptors.json")) {
        let fds: Vec<String> = serde_json::from_slice(&bytes).unwrap_or_default();
        // Only stdio: the image directory is input, and only fds 0-2 are ours to hand over.
        for (fd, what) in fds.iter().enumerate().take(3) {
            if what.starts_with("pipe:") {
                inherit.push((fd as i32, what.clone()));
            }
        }
    }
    let criu_root = PathBuf::from("criu-root");
    restore_args(&RestoreInputs {
        args: a,
        root: &criu_root,
        image: &image,
        work: &work,
        spec: &plan.spec,
        pidfile: &pidfile,
        cgroup_roots: &[],
        inherit: &inherit,
        net_ns_fd: None,
    })?;
    criu()?;
    mkdir(&work)?;

    let state_dir = StateDir::create(root, &a.id)?;
    let mut unwind = Unwind {
        state_dir: None,
        cgroup: None,
    };
    let snap = state_dir.write_private(state::CONFIG_SNAPSHOT, &config_bytes);
    let dir_path = state_dir.path().to_path_buf();
    unwind.state_dir = Some(state_dir);
    snap?;
    let cg = crate::container::cgroup::create(
        &dir_path,
        &a.id,
        &plan.spec,
        crate::rootless::is_rootless(),
    )?;
    let roots = cgroup_roots(cg.paths());
    unwind.cgroup = Some(cg);

    // The rootfs at <state>/criu-root, in a mount namespace of our own: CRIU restores the
    // container's mounts under it, and nothing of this reaches the host's mount table.
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
        .map_err(sys("unshare(CLONE_NEWNS)"))?;
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        nix::mount::MsFlags::MS_SLAVE | nix::mount::MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(sys("make / rslave"))?;
    let criu_root = dir_path.join("criu-root");
    mkdir(&criu_root)?;
    nix::mount::mount(
        Some(plan.rootfs.as_path()),
        criu_root.as_path(),
        None::<&str>,
        nix::mount::MsFlags::MS_BIND | nix::mount::MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(sys(format!("bind {} for CRIU", plan.rootfs.display())))?;
    let _ = std::fs::remove_file(&pidfile);
    // CRIU's own stdio is not the restored tree's: its stderr is a pipe this process reads
    // until EOF, which a restored process holding it would never give. So each stdio fd to
    // inherit is handed over as an inheritable duplicate above 2.
    let mut held = Vec::new();
    let mut handed = Vec::new();
    for (fd, pipe) in &inherit {
        // SAFETY: `fd` is 0, 1 or 2 (only those are read from descriptors.json), which are
        // always open in a Rust program (std's startup reopens closed stdio fds on
        // /dev/null) and are not closed by this process; the borrow ends in this statement.
        let ours = unsafe { std::os::fd::BorrowedFd::borrow_raw(*fd) };
        let dup = nix::fcntl::fcntl(ours, nix::fcntl::FcntlArg::F_DUPFD(3))
            .map_err(sys(format!("duplicating fd {fd} for CRIU")))?;
        // SAFETY: F_DUPFD returned a new descriptor that nothing else owns.
        let dup = unsafe { std::os::fd::OwnedFd::from_raw_fd(dup) };
        handed.push((dup.as_raw_fd(), pipe.clone()));
        held.push(dup);
    }
    // Kept open (and inheritable) until CRIU has run: CRIU restores the tree into it.
    let net_ns = match joined_net_ns(&plan.spec) {
        Some(p) => Some(inheritable(&p)?),
        None => None,
    };
    let args = restore_args(&RestoreInputs {
        args: a,
        root: &criu_root,
        image: &image,
        work: &work,
        spec: &plan.spec,
        pidfile: &pidfile,
        cgroup_roots: &roots,
        inherit: &handed,
        net_ns_fd: net_ns.as_ref().map(|f| f.as_raw_fd()),
    })?;
    let restored = run_criu("restore", &args, &work.join("restore.log"));
    drop(held);
    let _ = nix::mount::umount2(criu_root.as_path(), nix::mount::MntFlags::MNT_DETACH);
    restored?;
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .map_err(io(format!("read {}", pidfile.display())))?
        .trim()
        .parse()
        .map_err(|_| CheckpointError::Io {
            what: format!("{}: not a pid", pidfile.display()),
            source: std::io::Error::from(std::io::ErrorKind::InvalidData),
        })?;
    let st = State {
        oci_version: plan.spec.version().clone(),
        id: a.id.clone(),
        status: Status::Running,
        pid: Some(pid),
        bundle: plan.bundle.clone(),
        annotations: plan.spec.annotations().clone().unwrap_or_default(),
        init_start_time: state::process_start_time(pid).unwrap_or(0),
        rootless: crate::rootless::is_rootless(),
        rootfs: plan.rootfs.clone(),
        created: humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string(),
        no_new_keyring: false,
    };
    let dir = unwind
        .state_dir
        .take()
        .ok_or_else(|| io("state lost")(std::io::Error::from(std::io::ErrorKind::NotFound)))?;
    let saved = dir.save(&st).map_err(CheckpointError::from).and_then(|()| {
        if let Some(hooks) = plan.spec.hooks() {
            crate::container::hooks::save_record(dir.path(), hooks)
                .map_err(|e| CheckpointError::Container(e.into()))?;
        }
        if let Some(pf) = &a.pid_file {
            state::write_pid_file(pf, pid).map_err(|e| CheckpointError::Container(e.into()))?;
        }
        Ok(())
    });
    if let Err(e) = saved {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
        unwind.state_dir = Some(dir);
        return Err(e);
    }
    unwind.cgroup = None;
    let _ = std::fs::remove_dir(dir.path().join("criu-root"));
    if a.detach {
        return Ok(0);
    }
    // Foreground: the restored init is not our child (CRIU restored it detached): wait until
    // it is gone, then delete the container as `run` does.
    drop(dir);
    while state::init_alive(pid, st.init_start_time) {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    crate::container::delete(root, &a.id, true)?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec_with_bind() -> Spec {
        serde_json::from_str(
            r#"{"ociVersion":"1.2.0","root":{"path":"rootfs"},
                "mounts":[{"destination":"/data","type":"bind","source":"/srv/data","options":["rbind"]},
                          {"destination":"/proc","type":"proc","source":"proc"}]}"#,
        )
        .unwrap()
    }

    fn strs(v: &[OsString]) -> Vec<String> {
        v.iter().map(|s| s.to_string_lossy().into_owned()).collect()
    }

    #[test]
    fn dump_maps_runcs_flags_to_criu() {
        let spec = spec_with_bind();
        let a = CheckpointArgs {
            leave_running: true,
            tcp_established: true,
            file_locks: true,
            parent_path: Some("../pre".into()),
            manage_cgroups_mode: Some("full".into()),
            empty_ns: vec!["network".into()],
            id: "c".into(),
            ..Default::default()
        };
        let v = strs(
            &dump_args(&DumpInputs {
                args: &a,
                pid: 42,
                rootfs: Path::new("/b/rootfs"),
                image: Path::new("/img"),
                work: Path::new("/work"),
                spec: &spec,
                freezer: Some(Path::new("/sys/fs/cgroup/freezer/c")),
                net_ns_inode: Some(4026532001),
            })
            .unwrap(),
        );
        let s = v.join(" ");
        assert!(v[0] == "dump", "{s}");
        assert!(s.contains("--external net[4026532001]:extRootNetNS"), "{s}");
        for want in [
            "--tree 42",
            "--images-dir /img",
            "--work-dir /work",
            "--root /b/rootfs",
            "--manage-cgroups=full",
            "--freeze-cgroup /sys/fs/cgroup/freezer/c",
            "--prev-images-dir ../pre --track-mem",
            "--leave-running",
            "--tcp-established",
            "--file-locks",
            "--empty-ns net",
            "--external mnt[/data]:/data",
        ] {
            assert!(s.contains(want), "{want} missing: {s}");
        }
        assert!(!s.contains("mnt[/proc]"), "{s}");
        let pre = CheckpointArgs {
            pre_dump: true,
            leave_running: true,
            ..Default::default()
        };
        let v = strs(
            &dump_args(&DumpInputs {
                args: &pre,
                pid: 1,
                rootfs: Path::new("/r"),
                image: Path::new("/i"),
                work: Path::new("/w"),
                spec: &spec,
                freezer: None,
                net_ns_inode: None,
            })
            .unwrap(),
        );
        assert_eq!(v[0], "pre-dump");
        assert!(v.iter().any(|x| x == "--track-mem"));
        assert!(!v.iter().any(|x| x == "--leave-running"));
    }

    #[test]
    fn refused_flags_are_named() {
        let spec = spec_with_bind();
        let inputs = |a: &CheckpointArgs| {
            dump_args(&DumpInputs {
                args: a,
                pid: 1,
                rootfs: Path::new("/r"),
                image: Path::new("/i"),
                work: Path::new("/w"),
                spec: &spec,
                freezer: None,
                net_ns_inode: None,
            })
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
        };
        let lazy = CheckpointArgs {
            lazy_pages: true,
            ..Default::default()
        };
        assert!(inputs(&lazy).starts_with("--lazy-pages:"));
        let mode = CheckpointArgs {
            manage_cgroups_mode: Some("bogus".into()),
            ..Default::default()
        };
        assert!(inputs(&mode).starts_with("--manage-cgroups-mode:"));
        let ns = CheckpointArgs {
            empty_ns: vec!["pid".into()],
            ..Default::default()
        };
        assert!(inputs(&ns).starts_with("--empty-ns:"));
        let r = RestoreArgs {
            lsm_profile: Some("apparmor:x".into()),
            ..Default::default()
        };
        let e = restore_args(&RestoreInputs {
            args: &r,
            root: Path::new("/r"),
            image: Path::new("/i"),
            work: Path::new("/w"),
            spec: &spec,
            pidfile: Path::new("/w/p"),
            cgroup_roots: &[],
            inherit: &[],
            net_ns_fd: None,
        })
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("--lsm-profile:"), "{e}");
    }

    #[test]
    fn restore_maps_binds_back_to_their_sources() {
        let spec = spec_with_bind();
        let a = RestoreArgs {
            tcp_established: true,
            ..Default::default()
        };
        let v = strs(
            &restore_args(&RestoreInputs {
                args: &a,
                root: Path::new("/state/criu-root"),
                image: Path::new("/img"),
                work: Path::new("/work"),
                spec: &spec,
                pidfile: Path::new("/work/restore.pid"),
                cgroup_roots: &["memory:/c".into()],
                inherit: &[(1, "pipe:[77]".into())],
                net_ns_fd: Some(9),
            })
            .unwrap(),
        );
        let s = v.join(" ");
        for want in [
            "restore",
            "--root /state/criu-root",
            "--pidfile /work/restore.pid",
            "--restore-detached",
            "--cgroup-root memory:/c",
            "--external mnt[/data]:/srv/data",
            "--inherit-fd fd[1]:pipe:[77]",
            "--inherit-fd fd[9]:extRootNetNS",
            "--tcp-established",
        ] {
            assert!(s.contains(want), "{want} missing: {s}");
        }
    }
}
