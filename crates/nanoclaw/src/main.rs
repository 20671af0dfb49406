//! `nanoclaw`: argument parsing only (runc's command line); the library does the work.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use nanoclaw::container::checkpoint::{CheckpointArgs, RestoreArgs};
use nanoclaw::container::events::EventsRequest;
use nanoclaw::container::list::{render_list, render_ps_json, OutputFormat};
use nanoclaw::container::ops::{self, OpsError};
use nanoclaw::container::update::UpdateRequest;
use nanoclaw::logging::{LogConfig, LogFormat};
use nanoclaw::process::exec::{ExecOutcome, ExecRequest};

#[derive(Parser)]
#[command(
    name = "nanoclaw",
    version,
    about = "NanoClaw: a daemonless OCI container runtime"
)]
struct Cli {
    /// Directory for container state (default /run/nanoclaw; rootless: $XDG_RUNTIME_DIR/nanoclaw).
    #[arg(long, global = true)]
    root: Option<PathBuf>,
    /// Append error records to this file.
    #[arg(long, global = true)]
    log: Option<PathBuf>,
    #[arg(long = "log-format", global = true, value_enum, default_value_t = Format::Text)]
    log_format: Format,
    /// Log debug records too.
    #[arg(long, global = true)]
    debug: bool,
    /// Rootless mode (true|false|auto): accepted like runc's; nanoclaw decides from its euid.
    /// Not `global`: like runc's, it goes before the command, and a global flag would clash
    /// with `spec --rootless`.
    #[arg(long, value_name = "true|false|auto")]
    rootless: Option<String>,
    /// The systemd cgroup driver: the container's cgroup is a transient systemd unit
    /// (linux.cgroupsPath "slice:prefix:name"); rootless through the user's systemd.
    #[arg(long = "systemd-cgroup", global = true)]
    systemd_cgroup: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Write a default config.json into the bundle.
    Spec {
        /// A spec for an unprivileged user (user namespace mapping root to you).
        #[arg(long)]
        rootless: bool,
        #[arg(short, long, default_value = ".")]
        bundle: PathBuf,
    },
    /// Create and run a container in the foreground; exit with its status.
    Run {
        #[command(flatten)]
        create: CreateFlags,
        /// Detach: leave the container running and exit (create + start).
        #[arg(short, long)]
        detach: bool,
        id: String,
    },
    /// Create a container: its init waits until `start`.
    Create {
        #[command(flatten)]
        create: CreateFlags,
        id: String,
    },
    /// Start a created container's process.
    Start { id: String },
    /// Delete a container (kill it first with --force).
    Delete {
        #[arg(short, long)]
        force: bool,
        id: String,
    },
    /// Print the container's state as JSON.
    State { id: String },
    /// Send a signal (name or number, default SIGTERM) to the container's init.
    Kill {
        /// Signal every process of the container, not just the init.
        #[arg(short, long)]
        all: bool,
        id: String,
        #[arg(default_value = "SIGTERM")]
        signal: String,
    },
    /// List the containers under --root.
    List {
        #[arg(short, long, default_value = "table")]
        format: String,
        /// Print the ids only.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Show the container's processes (`ps` arguments may follow the id).
    Ps {
        #[arg(short, long, default_value = "table")]
        format: String,
        id: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_args: Vec<String>,
    },
    /// Print the OCI features document of this runtime.
    Features,
    /// Print which isolation features this host has and what nanoclaw uses; exit 1 when a
    /// required one is missing.
    Check,
    /// Freeze every process of a running container.
    Pause { id: String },
    /// Thaw a paused container.
    Resume { id: String },
    /// Update the resource limits of a container (runc's flags, or -r resources.json).
    Update(UpdateFlags),
    /// Checkpoint a running container with CRIU.
    Checkpoint(CheckpointFlags),
    /// Restore a container from a CRIU checkpoint.
    Restore(RestoreFlags),
    /// Stream a container's stats and OOM events as JSON lines (--stats: one snapshot).
    Events {
        /// Time between stats events (e.g. 5s, 500ms).
        #[arg(long, default_value = "5s")]
        interval: String,
        /// Print one stats snapshot and exit.
        #[arg(long)]
        stats: bool,
        id: String,
    },
    /// Run a new process inside a running container.
    Exec {
        /// An OCI process JSON file; replaces the command line and the flags below.
        #[arg(short, long)]
        process: Option<PathBuf>,
        /// Detach: exit as soon as the process started.
        #[arg(short, long)]
        detach: bool,
        /// Allocate a terminal (needs --console-socket).
        #[arg(short, long)]
        tty: bool,
        /// Environment KEY=VALUE, added to config.json's.
        #[arg(short, long)]
        env: Vec<String>,
        #[arg(long)]
        cwd: Option<PathBuf>,
        /// UID[:GID].
        #[arg(short, long)]
        user: Option<String>,
        #[arg(short = 'g', long = "additional-gids", value_delimiter = ',')]
        additional_gids: Vec<u32>,
        /// Add a capability (bounding, effective, permitted, ambient).
        #[arg(short, long)]
        cap: Vec<String>,
        #[arg(long = "no-new-privs")]
        no_new_privs: bool,
        #[arg(long = "pid-file")]
        pid_file: Option<PathBuf>,
        #[arg(long = "console-socket")]
        console_socket: Option<PathBuf>,
        #[arg(long = "preserve-fds", default_value_t = 0)]
        preserve_fds: u32,
        /// Allow exec in a paused container.
        #[arg(long = "ignore-paused")]
        ignore_paused: bool,
        /// Run the process in an existing sub-cgroup: [<controller>:]<cgroup>.
        #[arg(long = "cgroup")]
        cgroup: Vec<String>,
        id: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
}

/// The flags `create` and `run` share (runc's).
#[derive(Args)]
struct CreateFlags {
    #[arg(short, long, default_value = ".")]
    bundle: PathBuf,
    #[arg(long = "pid-file")]
    pid_file: Option<PathBuf>,
    /// Unix socket that receives the pty master (process.terminal).
    #[arg(long = "console-socket")]
    console_socket: Option<PathBuf>,
    /// Pass this many extra fds (3, 4, ...) to the container process.
    #[arg(long = "preserve-fds", default_value_t = 0)]
    preserve_fds: u32,
    /// Move the rootfs onto / and chroot instead of pivot_root (a rootfs on ramfs).
    #[arg(long = "no-pivot")]
    no_pivot: bool,
    /// Keep the caller's session keyring instead of a new one.
    #[arg(long = "no-new-keyring")]
    no_new_keyring: bool,
}

impl CreateFlags {
    fn options(self, root: PathBuf, id: String) -> nanoclaw::CreateOptions {
        nanoclaw::CreateOptions {
            root,
            id,
            bundle: self.bundle,
            pid_file: self.pid_file,
            console_socket: self.console_socket,
            preserve_fds: self.preserve_fds,
            no_new_keyring: self.no_new_keyring,
            no_pivot: self.no_pivot,
            relay_stdio: false,
        }
    }
}

/// runc's `update` flags; the values are parsed by the library, so its errors name the flag.
#[derive(Args)]
struct UpdateFlags {
    /// Path to a JSON file with linux.resources ("-" for stdin); other flags are then ignored.
    #[arg(short = 'r', long = "resources")]
    resources: Option<PathBuf>,
    /// Memory limit in bytes (suffixes k, m, g accepted; -1 for unlimited).
    #[arg(long, allow_hyphen_values = true)]
    memory: Option<String>,
    /// Memory reservation (soft limit) in bytes.
    #[arg(long = "memory-reservation", allow_hyphen_values = true)]
    memory_reservation: Option<String>,
    /// Memory plus swap limit in bytes (-1 for unlimited).
    #[arg(long = "memory-swap", allow_hyphen_values = true)]
    memory_swap: Option<String>,
    /// Kernel TCP buffer limit in bytes (cgroup v1 only).
    #[arg(long = "kernel-memory-tcp", allow_hyphen_values = true)]
    kernel_memory_tcp: Option<String>,
    /// CPU shares (relative weight vs. other containers).
    #[arg(long = "cpu-share", alias = "cpu-shares", allow_hyphen_values = true)]
    cpu_share: Option<String>,
    /// CPU CFS period in microseconds.
    #[arg(long = "cpu-period", allow_hyphen_values = true)]
    cpu_period: Option<String>,
    /// CPU CFS quota in microseconds (-1 for unlimited).
    #[arg(long = "cpu-quota", allow_hyphen_values = true)]
    cpu_quota: Option<String>,
    /// CPU CFS burst in microseconds.
    #[arg(long = "cpu-burst", allow_hyphen_values = true)]
    cpu_burst: Option<String>,
    /// Realtime period in microseconds (cgroup v1).
    #[arg(long = "cpu-rt-period", allow_hyphen_values = true)]
    cpu_rt_period: Option<String>,
    /// Realtime runtime in microseconds (cgroup v1).
    #[arg(long = "cpu-rt-runtime", allow_hyphen_values = true)]
    cpu_rt_runtime: Option<String>,
    /// SCHED_IDLE for the cgroup (0 or 1).
    #[arg(long = "cpu-idle", allow_hyphen_values = true)]
    cpu_idle: Option<String>,
    /// CPUs the container may run on (e.g. 0-3,5).
    #[arg(long = "cpuset-cpus")]
    cpuset_cpus: Option<String>,
    /// Memory nodes the container may use.
    #[arg(long = "cpuset-mems")]
    cpuset_mems: Option<String>,
    /// Block IO weight (10-1000).
    #[arg(long = "blkio-weight", allow_hyphen_values = true)]
    blkio_weight: Option<String>,
    /// Maximum number of tasks (<= 0 for unlimited).
    #[arg(long = "pids-limit", allow_hyphen_values = true)]
    pids_limit: Option<String>,
    id: String,
}

impl From<UpdateFlags> for UpdateRequest {
    fn from(f: UpdateFlags) -> Self {
        UpdateRequest {
            resources: f.resources,
            memory: f.memory,
            memory_reservation: f.memory_reservation,
            memory_swap: f.memory_swap,
            kernel_memory_tcp: f.kernel_memory_tcp,
            cpu_share: f.cpu_share,
            cpu_period: f.cpu_period,
            cpu_quota: f.cpu_quota,
            cpu_burst: f.cpu_burst,
            cpu_rt_period: f.cpu_rt_period,
            cpu_rt_runtime: f.cpu_rt_runtime,
            cpu_idle: f.cpu_idle,
            cpuset_cpus: f.cpuset_cpus,
            cpuset_mems: f.cpuset_mems,
            blkio_weight: f.blkio_weight,
            pids_limit: f.pids_limit,
            id: f.id,
        }
    }
}

/// runc's `checkpoint` flags.
#[derive(Args)]
struct CheckpointFlags {
    /// Directory for the CRIU images (default: ./checkpoint).
    #[arg(long = "image-path")]
    image_path: Option<PathBuf>,
    /// Directory for CRIU's log and work files (default: the image path).
    #[arg(long = "work-path")]
    work_path: Option<PathBuf>,
    /// Images of a previous pre-dump, relative to the image path (incremental dump).
    #[arg(long = "parent-path")]
    parent_path: Option<PathBuf>,
    /// Leave the container running after the dump.
    #[arg(long = "leave-running")]
    leave_running: bool,
    /// Dump established TCP connections.
    #[arg(long = "tcp-established")]
    tcp_established: bool,
    /// Allow external unix sockets.
    #[arg(long = "ext-unix-sk")]
    ext_unix_sk: bool,
    /// Allow shell jobs (a terminal from outside the tree).
    #[arg(long = "shell-job")]
    shell_job: bool,
    /// Lazy migration through a page server (refused).
    #[arg(long = "lazy-pages")]
    lazy_pages: bool,
    /// Status fd of --lazy-pages (refused).
    #[arg(long = "status-fd")]
    status_fd: Option<i32>,
    /// Send pages to a page server at ADDRESS:PORT.
    #[arg(long = "page-server")]
    page_server: Option<String>,
    /// Dump file locks.
    #[arg(long = "file-locks")]
    file_locks: bool,
    /// Dump memory only and leave the container running (for a later incremental dump).
    #[arg(long = "pre-dump")]
    pre_dump: bool,
    /// soft, full, strict or ignore.
    #[arg(long = "manage-cgroups-mode")]
    manage_cgroups_mode: Option<String>,
    /// Namespaces to leave empty, not dumped (network).
    #[arg(long = "empty-ns")]
    empty_ns: Vec<String>,
    /// Deduplicate against the parent images.
    #[arg(long = "auto-dedup")]
    auto_dedup: bool,
    id: String,
}

impl From<CheckpointFlags> for CheckpointArgs {
    fn from(f: CheckpointFlags) -> Self {
        CheckpointArgs {
            image_path: f.image_path,
            work_path: f.work_path,
            parent_path: f.parent_path,
            leave_running: f.leave_running,
            tcp_established: f.tcp_established,
            ext_unix_sk: f.ext_unix_sk,
            shell_job: f.shell_job,
            lazy_pages: f.lazy_pages,
            status_fd: f.status_fd,
            page_server: f.page_server,
            file_locks: f.file_locks,
            pre_dump: f.pre_dump,
            manage_cgroups_mode: f.manage_cgroups_mode,
            empty_ns: f.empty_ns,
            auto_dedup: f.auto_dedup,
            id: f.id,
        }
    }
}

/// runc's `restore` flags.
#[derive(Args)]
struct RestoreFlags {
    #[arg(short, long, default_value = ".")]
    bundle: PathBuf,
    /// Directory of the CRIU images (default: ./checkpoint).
    #[arg(long = "image-path")]
    image_path: Option<PathBuf>,
    /// Directory for CRIU's log and work files (default: the image path).
    #[arg(long = "work-path")]
    work_path: Option<PathBuf>,
    #[arg(long = "tcp-established")]
    tcp_established: bool,
    #[arg(long = "ext-unix-sk")]
    ext_unix_sk: bool,
    #[arg(long = "shell-job")]
    shell_job: bool,
    #[arg(long = "file-locks")]
    file_locks: bool,
    /// soft, full, strict or ignore.
    #[arg(long = "manage-cgroups-mode")]
    manage_cgroups_mode: Option<String>,
    /// Leave the restored container running and exit.
    #[arg(short, long)]
    detach: bool,
    #[arg(long = "pid-file")]
    pid_file: Option<PathBuf>,
    /// Refused: handing a restored container's pty to a console socket is not supported.
    #[arg(long = "console-socket")]
    console_socket: Option<PathBuf>,
    /// nanoclaw is never a subreaper: accepted, nothing to disable.
    #[arg(long = "no-subreaper")]
    no_subreaper: bool,
    /// CRIU restores the mount namespace it dumped: accepted, no pivot is involved.
    #[arg(long = "no-pivot")]
    no_pivot: bool,
    #[arg(long = "empty-ns")]
    empty_ns: Vec<String>,
    #[arg(long = "auto-dedup")]
    auto_dedup: bool,
    /// Refused.
    #[arg(long = "lazy-pages")]
    lazy_pages: bool,
    /// Refused (no SELinux support).
    #[arg(long = "lsm-profile")]
    lsm_profile: Option<String>,
    /// Refused (no SELinux support).
    #[arg(long = "lsm-mount-context")]
    lsm_mount_context: Option<String>,
    id: String,
}

impl From<RestoreFlags> for RestoreArgs {
    fn from(f: RestoreFlags) -> Self {
        RestoreArgs {
            bundle: f.bundle,
            image_path: f.image_path,
            work_path: f.work_path,
            tcp_established: f.tcp_established,
            ext_unix_sk: f.ext_unix_sk,
            shell_job: f.shell_job,
            file_locks: f.file_locks,
            manage_cgroups_mode: f.manage_cgroups_mode,
            detach: f.detach,
            pid_file: f.pid_file,
            console_socket: f.console_socket,
            no_subreaper: f.no_subreaper,
            no_pivot: f.no_pivot,
            empty_ns: f.empty_ns,
            auto_dedup: f.auto_dedup,
            lazy_pages: f.lazy_pages,
            lsm_profile: f.lsm_profile,
            lsm_mount_context: f.lsm_mount_context,
            id: f.id,
        }
    }
}

/// Every way a command fails, mapped to runc's exit status and message in one place.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error(transparent)]
    Template(#[from] nanoclaw::spec::template::TemplateError),
    #[error(transparent)]
    Container(#[from] nanoclaw::ContainerError),
    #[error(transparent)]
    Ops(#[from] OpsError),
    #[error(transparent)]
    Signal(#[from] nanoclaw::process::signal::SignalError),
    #[error(transparent)]
    List(#[from] nanoclaw::container::list::ListError),
    #[error(transparent)]
    Update(#[from] nanoclaw::container::update::UpdateError),
    #[error(transparent)]
    Events(#[from] nanoclaw::container::events::EventsError),
    #[error(transparent)]
    Exec(#[from] nanoclaw::process::exec::ExecError),
    #[error(transparent)]
    Checkpoint(#[from] nanoclaw::container::checkpoint::CheckpointError),
}

impl Failure {
    fn exit_code(&self) -> i32 {
        match self {
            // runc exits 255 when exec itself fails, so callers can tell it from the
            // process's own status.
            Failure::Exec(_) => 255,
            _ => 1,
        }
    }
}

fn main() {
    // Before any child exists (process::signal::restore_sigchld says why); it cannot fail for
    // SIGCHLD.
    let _ = nanoclaw::process::signal::restore_sigchld();
    // CVE-2019-5736 (sealed_exe): a command line that may be `run`, `create` or `exec`
    // re-executes from the protected image before parsing, so the parsing is not done twice
    // (milliseconds on an emulated host). The check after parsing below stays the one that
    // decides; an error here is reported there.
    if nanoclaw::security::sealed_exe::may_create_process(std::env::args_os()) {
        let _ = nanoclaw::security::sealed_exe::ensure();
    }
    let cli = Cli::parse();
    let root = cli
        .root
        .clone()
        .unwrap_or_else(nanoclaw::rootless::default_root);
    let format = match cli.log_format {
        Format::Text => LogFormat::Text,
        Format::Json => LogFormat::Json,
    };
    let log_cfg = LogConfig {
        path: cli.log.clone(),
        format,
        debug: cli.debug,
    };
    if let Err(e) = nanoclaw::logging::init(&log_cfg) {
        eprintln!("nanoclaw: {e}");
        std::process::exit(1);
    }
    if cli.systemd_cgroup {
        nanoclaw::container::cgroup::use_systemd_driver();
    }
    if let Some(r) = cli.rootless.as_deref() {
        if !matches!(r, "true" | "false" | "auto") {
            fail(
                &log_cfg,
                &format!("--rootless {r:?}: expected true, false or auto"),
            );
        }
    }
    // CVE-2019-5736: commands that put a process into a container run from an image of this
    // binary that cannot be written, never from the file on the host (see sealed_exe).
    if matches!(
        cli.command,
        Command::Run { .. } | Command::Create { .. } | Command::Exec { .. }
    ) {
        if let Err(e) = nanoclaw::security::sealed_exe::ensure() {
            fail(&log_cfg, &e.to_string());
        }
    }
    match dispatch(cli.command, root) {
        Ok(code) => std::process::exit(code),
        Err(e) => fail_with(&log_cfg, e.exit_code(), &e.to_string()),
    }
}

/// Runs one command; the exit status on success (a workload's own for `run` and `exec`).
fn dispatch(command: Command, root: PathBuf) -> Result<i32, Failure> {
    Ok(match command {
        Command::Spec { rootless, bundle } => {
            nanoclaw::spec::template::write(&bundle, rootless)?;
            0
        }
        Command::Run { create, detach, id } => {
            let opts = create.options(root, id);
            if detach {
                nanoclaw::container::run_detached(&opts)?;
                0
            } else {
                nanoclaw::run(&opts)?
            }
        }
        Command::Create { create, id } => {
            nanoclaw::create(&create.options(root, id))?;
            0
        }
        Command::Start { id } => {
            nanoclaw::start(&root, &id)?;
            0
        }
        Command::Delete { force, id } => {
            nanoclaw::delete(&root, &id, force)?;
            0
        }
        Command::State { id } => print_and(0, &ops::state(&root, &id)?),
        Command::Kill { all, id, signal } => {
            let sig = nanoclaw::process::signal::parse_signal(&signal)?;
            ops::kill(&root, &id, sig, all)?;
            0
        }
        Command::List { format, quiet } => {
            let format = format.parse::<OutputFormat>()?;
            print_raw(&render_list(&ops::list(&root)?, format, quiet))
        }
        Command::Ps {
            format,
            id,
            ps_args,
        } => match format.parse::<OutputFormat>()? {
            OutputFormat::Json => print_raw(&render_ps_json(&ops::ps_pids(&root, &id)?)),
            OutputFormat::Table => print_raw(&ops::ps_table(&root, &id, &ps_args)?),
        },
        Command::Features => print_and(0, &nanoclaw::spec::features::features_json()),
        Command::Check => {
            let features = nanoclaw::check::probe();
            let code = i32::from(!nanoclaw::check::missing_required(&features).is_empty());
            print_and(code, &nanoclaw::check::render(&features))
        }
        Command::Pause { id } => {
            ops::pause(&root, &id)?;
            0
        }
        Command::Resume { id } => {
            ops::resume(&root, &id)?;
            0
        }
        Command::Checkpoint(args) => {
            nanoclaw::container::checkpoint::checkpoint(&root, &CheckpointArgs::from(args))?;
            0
        }
        Command::Restore(args) => {
            nanoclaw::container::checkpoint::restore(&root, &RestoreArgs::from(args))?
        }
        Command::Update(flags) => {
            nanoclaw::container::update::update(&root, &UpdateRequest::from(flags))?;
            0
        }
        Command::Events {
            interval,
            stats,
            id,
        } => {
            let req = EventsRequest {
                interval,
                stats,
                id,
            };
            nanoclaw::container::events::events(&root, &req, &mut std::io::stdout())?;
            0
        }
        Command::Exec {
            process,
            detach,
            tty,
            env,
            cwd,
            user,
            additional_gids,
            cap,
            no_new_privs,
            pid_file,
            console_socket,
            preserve_fds,
            ignore_paused,
            cgroup,
            id,
            command,
        } => {
            let req = ExecRequest {
                process_file: process,
                args: command,
                env,
                cwd,
                user,
                additional_gids,
                tty,
                no_new_privs,
                caps: cap,
                detach,
                pid_file,
                console_socket,
                preserve_fds,
                ignore_paused,
                cgroups: cgroup,
            };
            match nanoclaw::process::exec::exec(&root, &id, &req)? {
                ExecOutcome::Detached { .. } => 0,
                ExecOutcome::Exited { code } => code,
            }
        }
    })
}

/// Reports a fatal error the way runc does (engines rely on it): a record in --log (containerd
/// shows the last JSON error record to the user) and the message on stderr.
fn fail(cfg: &LogConfig, msg: &str) -> ! {
    fail_with(cfg, 1, msg)
}

fn fail_with(cfg: &LogConfig, code: i32, msg: &str) -> ! {
    log::error!("{msg}");
    if nanoclaw::logging::logs_to_file(cfg) {
        eprintln!("nanoclaw: {msg}");
    }
    std::process::exit(code);
}

fn print_and(code: i32, text: &str) -> i32 {
    println!("{text}");
    code
}

fn print_raw(text: &str) -> i32 {
    print!("{text}");
    0
}
