//! `nanoclaw`: argument parsing only (runc's command line); the library does the work.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};
use nanoclaw::log::LogFormat;

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
    /// Accepted for runc compatibility.
    #[arg(long, global = true)]
    debug: bool,
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
        id: String,
    },
    /// Create a container: its init waits until `start`.
    Create {
        #[arg(short, long, default_value = ".")]
        bundle: PathBuf,
        #[arg(long = "pid-file")]
        pid_file: Option<PathBuf>,
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
}

fn main() {
    let cli = Cli::parse();
    let root = cli
        .root
        .clone()
        .unwrap_or_else(|| nanoclaw::state::default_root(nix::unistd::geteuid().as_raw()));
    let format = match cli.log_format {
        Format::Text => LogFormat::Text,
        Format::Json => LogFormat::Json,
    };
    let result: Result<i32, String> = match cli.command {
        Command::Spec { rootless, bundle } => nanoclaw::spec_template::write(&bundle, rootless)
            .map(|_| 0)
            .map_err(|e| e.to_string()),
        Command::Run {
            bundle,
            pid_file,
            id,
        } => nanoclaw::run(&nanoclaw::CreateOptions {
            root,
            id,
            bundle,
            pid_file,
        })
        .map_err(|e| e.to_string()),
        Command::Create {
            bundle,
            pid_file,
            id,
        } => nanoclaw::create(&nanoclaw::CreateOptions {
            root,
            id,
            bundle,
            pid_file,
        })
        .map(|_| 0)
        .map_err(|e| e.to_string()),
        Command::Start { id } => nanoclaw::start(&root, &id)
            .map(|_| 0)
            .map_err(|e| e.to_string()),
        Command::Delete { force, id } => nanoclaw::delete(&root, &id, force)
            .map(|_| 0)
            .map_err(|e| e.to_string()),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(msg) => {
            nanoclaw::log::record(cli.log.as_deref(), format, "error", &msg);
            eprintln!("nanoclaw: {msg}");
            std::process::exit(1);
        }
    }
}
