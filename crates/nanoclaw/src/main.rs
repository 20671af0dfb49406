//! `nanoclaw`: argument parsing only (runc's command line); the library does the work.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};
use nanoclaw::logging::{LogConfig, LogFormat};

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
        /// Detach: leave the container running and exit (create + start).
        #[arg(short, long)]
        detach: bool,
        id: String,
    },
    /// Create a container: its init waits until `start`.
    Create {
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
    Update(nanoclaw::container::update::UpdateArgs),
    /// Checkpoint a running container with CRIU.
    Checkpoint(nanoclaw::container::checkpoint::CheckpointArgs),
    /// Restore a container from a CRIU checkpoint.
    Restore(nanoclaw::container::checkpoint::RestoreArgs),
    /// Stream a container's stats and OOM events as JSON lines (--stats: one snapshot).
    Events(nanoclaw::container::events::EventsArgs),
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

fn main() {
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
    let result: Result<i32, String> = match cli.command {
        Command::Spec { rootless, bundle } => nanoclaw::spec::template::write(&bundle, rootless)
            .map(|_| 0)
            .map_err(|e| e.to_string()),
        Command::Run {
            bundle,
            pid_file,
            console_socket,
            preserve_fds,
            no_pivot,
            no_new_keyring,
            detach,
            id,
        } => create_options(
            root,
            id,
            bundle,
            pid_file,
            console_socket,
            preserve_fds,
            no_pivot,
            no_new_keyring,
        )
        .and_then(|opts| {
            if detach {
                nanoclaw::container::run_detached(&opts).map(|_| 0)
            } else {
                nanoclaw::run(&opts)
            }
            .map_err(|e| e.to_string())
        }),
        Command::Create {
            bundle,
            pid_file,
            console_socket,
            preserve_fds,
            no_pivot,
            no_new_keyring,
            id,
        } => create_options(
            root,
            id,
            bundle,
            pid_file,
            console_socket,
            preserve_fds,
            no_pivot,
            no_new_keyring,
        )
        .and_then(|opts| {
            nanoclaw::create(&opts)
                .map(|_| 0)
                .map_err(|e| e.to_string())
        }),
        Command::Start { id } => nanoclaw::start(&root, &id)
            .map(|_| 0)
            .map_err(|e| e.to_string()),
        Command::Delete { force, id } => nanoclaw::delete(&root, &id, force)
            .map(|_| 0)
            .map_err(|e| e.to_string()),
        Command::State { id } => nanoclaw::container::ops::state(&root, &id)
            .map(|json| print_and(0, &json))
            .map_err(|e| e.to_string()),
        Command::Kill { all, id, signal } => nanoclaw::process::signal::parse_signal(&signal)
            .map_err(|e| e.to_string())
            .and_then(|sig| {
                nanoclaw::container::ops::kill(&root, &id, sig, all).map_err(|e| e.to_string())
            })
            .map(|_| 0),
        Command::List { format, quiet } => format
            .parse::<nanoclaw::container::list::OutputFormat>()
            .map_err(|e| e.to_string())
            .and_then(|f| {
                nanoclaw::container::ops::list(&root)
                    .map(|entries| nanoclaw::container::list::render_list(&entries, f, quiet))
                    .map_err(|e| e.to_string())
            })
            .map(|out| print_raw(&out)),
        Command::Ps {
            format,
            id,
            ps_args,
        } => match format.parse::<nanoclaw::container::list::OutputFormat>() {
            Ok(nanoclaw::container::list::OutputFormat::Json) => {
                nanoclaw::container::ops::ps_pids(&root, &id)
                    .map(|pids| print_raw(&nanoclaw::container::list::render_ps_json(&pids)))
                    .map_err(|e| e.to_string())
            }
            Ok(nanoclaw::container::list::OutputFormat::Table) => {
                nanoclaw::container::ops::ps_table(&root, &id, &ps_args)
                    .map(|out| print_raw(&out))
                    .map_err(|e| e.to_string())
            }
            Err(e) => Err(e.to_string()),
        },
        Command::Features => Ok(print_and(0, &nanoclaw::spec::features::features_json())),
        Command::Check => {
            let features = nanoclaw::check::probe();
            let code = i32::from(!nanoclaw::check::missing_required(&features).is_empty());
            Ok(print_and(code, &nanoclaw::check::render(&features)))
        }
        Command::Pause { id } => nanoclaw::container::ops::pause(&root, &id)
            .map(|_| 0)
            .map_err(|e| e.to_string()),
        Command::Resume { id } => nanoclaw::container::ops::resume(&root, &id)
            .map(|_| 0)
            .map_err(|e| e.to_string()),
        Command::Checkpoint(args) => nanoclaw::container::checkpoint::checkpoint(&root, &args)
            .map(|()| 0)
            .map_err(|e| e.to_string()),
        Command::Restore(args) => {
            nanoclaw::container::checkpoint::restore(&root, &args).map_err(|e| e.to_string())
        }
        Command::Update(args) => nanoclaw::container::update::update(&root, &args)
            .map(|_| 0)
            .map_err(|e| e.to_string()),
        Command::Events(args) => {
            nanoclaw::container::events::events(&root, &args, &mut std::io::stdout())
                .map(|_| 0)
                .map_err(|e| e.to_string())
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
            let req = nanoclaw::process::exec::ExecRequest {
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
            match nanoclaw::process::exec::exec(&root, &id, &req) {
                Ok(nanoclaw::process::exec::ExecOutcome::Detached { .. }) => Ok(0),
                Ok(nanoclaw::process::exec::ExecOutcome::Exited { code }) => Ok(code),
                // runc exits 255 when exec itself fails, so callers can tell it from the
                // process's own status.
                Err(e) => fail_with(&log_cfg, 255, &e.to_string()),
            }
        }
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(msg) => fail(&log_cfg, &msg),
    }
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

#[allow(clippy::too_many_arguments)] // one per runc flag of create/run
fn create_options(
    root: PathBuf,
    id: String,
    bundle: PathBuf,
    pid_file: Option<PathBuf>,
    console_socket: Option<PathBuf>,
    preserve_fds: u32,
    no_pivot: bool,
    no_new_keyring: bool,
) -> Result<nanoclaw::CreateOptions, String> {
    Ok(nanoclaw::CreateOptions {
        root,
        id,
        bundle,
        pid_file,
        console_socket,
        preserve_fds,
        no_new_keyring,
        no_pivot,
        relay_stdio: false,
    })
}

fn print_and(code: i32, text: &str) -> i32 {
    println!("{text}");
    code
}

fn print_raw(text: &str) -> i32 {
    print!("{text}");
    0
}
