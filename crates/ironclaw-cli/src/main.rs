//! `ironclaw` command line. Parses arguments only; the library does the work.

#![forbid(unsafe_code)]

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

mod cli_broker;
mod cli_proxy;
mod cli_serve;
mod cli_verify;

use clap::{Args, Parser, Subcommand};
use ironclaw::hypercall::RunIo;
use ironclaw::{exit_code, LaunchConfig, LaunchInputs, LaunchMeasurement};

#[derive(Parser)]
#[command(
    name = "ironclaw",
    version,
    about = "Run a measured WebAssembly module in a KVM micro-VM with no guest OS"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Launch MODULE in a fresh micro-VM and exit with its exit code.
    Run(RunArgs),
    /// Run MODULE as a network service until SIGTERM/SIGINT (host-owned sockets).
    Serve(cli_serve::ServeArgs),
    /// Print the launch measurement (SHA-384, hex) of MODULE without launching it
    /// (with --listen: of a service launch).
    Measure {
        #[command(flatten)]
        limits: LimitArgs,
        #[command(flatten)]
        service: cli_serve::ServiceArgs,
        module: PathBuf,
    },
    /// Report whether KVM is usable here and which backend provides it.
    Check,
    /// Verify attestation evidence (SEV-SNP report, TDX/SGX quote, Nitro document,
    /// kvm evidence); exit 0 only when it verifies.
    Verify(cli_verify::VerifyArgs),
    /// Print the host's platform public key (signs kvm evidence), generating it on first use.
    PlatformKey(cli_broker::PlatformKeyArgs),
    /// Run the LLM API key proxy: clients send plain HTTP/1.1, the enclave adds the key it
    /// fetched from the broker and forwards to the configured upstreams.
    Proxy(cli_proxy::ProxyArgs),
    /// The key broker (KBS protocol): serve, secrets, policy.
    #[command(subcommand)]
    Broker(cli_broker::BrokerCommand),
}

#[derive(Args)]
struct LimitArgs {
    /// Guest memory in MiB.
    #[arg(long, default_value_t = LaunchConfig::default().memory_mib)]
    memory: u64,
    /// Wasm fuel budget (about one unit per instruction); unlimited if not given.
    #[arg(long)]
    fuel: Option<u64>,
    /// Wall-clock limit, e.g. 500ms, 10s, 2m.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    timeout: Duration,
    /// Maximum bytes of stdout + stderr.
    #[arg(long, default_value_t = LaunchConfig::default().max_output_bytes)]
    max_output: u64,
    /// Maximum size of any Wasm linear memory, in MiB.
    #[arg(long, default_value_t = LaunchConfig::default().max_wasm_memory_bytes >> 20)]
    max_wasm_memory: u64,
    /// Maximum elements of any Wasm table.
    #[arg(long, default_value_t = LaunchConfig::default().max_table_elements)]
    max_table_elements: u64,
    /// Maximum hypercalls (VM exits) per run.
    #[arg(long, default_value_t = LaunchConfig::default().max_hypercalls)]
    max_hypercalls: u64,
    /// Debug launch (measured, and reported by attestation).
    #[arg(long)]
    debug: bool,
}

impl LimitArgs {
    fn config(&self) -> LaunchConfig {
        LaunchConfig {
            memory_mib: self.memory,
            fuel: self.fuel,
            timeout: self.timeout,
            max_output_bytes: self.max_output,
            max_wasm_memory_bytes: self.max_wasm_memory.saturating_mul(1 << 20),
            max_table_elements: self.max_table_elements,
            max_hypercalls: self.max_hypercalls,
            debug: self.debug,
        }
    }
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    limits: LimitArgs,
    /// Environment variable for the module (repeatable).
    #[arg(long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Print the launch measurement to stderr before running.
    #[arg(long)]
    print_measurement: bool,
    /// Print the launch time breakdown to stderr after the run.
    #[arg(long)]
    timings: bool,
    /// Key broker the module's get_secret calls go to (https://HOST:PORT).
    #[arg(long, value_name = "URL")]
    broker: Option<String>,
    /// The broker's TLS certificate (PEM) to trust; required with --broker.
    #[arg(long, value_name = "FILE", requires = "broker")]
    broker_cert: Option<PathBuf>,
    /// IronClaw state directory holding the platform key and sealing root
    /// (default: $IRONCLAW_STATE_DIR or /var/lib/ironclaw).
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// The module (wasm32-wasip1).
    module: PathBuf,
    /// Arguments passed to the module (argv[1..]).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

fn read_module(path: &PathBuf) -> Result<Vec<u8>, ExitCode> {
    std::fs::read(path).map_err(|e| {
        eprintln!("ironclaw: reading module {}: {e}", path.display());
        ExitCode::from(exit_code::INTERNAL as u8)
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Verify(args) => cli_verify::run(args),
        Command::PlatformKey(args) => cli_broker::platform_key(args),
        Command::Broker(cmd) => cli_broker::broker(cmd),
        Command::Check => {
            let r = ironclaw::check::check();
            println!("backend: {}", r.backend.name());
            match (&r.usable, r.api_version) {
                (Ok(()), Some(v)) => {
                    println!("kvm: usable (API version {v})");
                    ExitCode::SUCCESS
                }
                (Ok(()), None) => {
                    println!("kvm: usable");
                    ExitCode::SUCCESS
                }
                (Err(e), _) => {
                    println!("kvm: NOT usable: {e}");
                    ExitCode::from(exit_code::INTERNAL as u8)
                }
            }
        }
        Command::Serve(args) => cli_serve::serve(args),
        Command::Proxy(args) => cli_proxy::proxy(args),
        Command::Measure {
            limits,
            service,
            module,
        } => {
            let bytes = match read_module(&module) {
                Ok(b) => b,
                Err(c) => return c,
            };
            let config = limits.config();
            if let Err(e) = config.validate() {
                eprintln!("ironclaw: invalid launch configuration: {e}");
                return ExitCode::from(exit_code::INTERNAL as u8);
            }
            let m = match service.config() {
                Some(s) => {
                    let config = cli_serve::service_launch_config(config);
                    if let Err(e) = s.validate() {
                        eprintln!("ironclaw: invalid service configuration: {e}");
                        return ExitCode::from(exit_code::INTERNAL as u8);
                    }
                    LaunchMeasurement::of_service(&bytes, &config, &s)
                }
                None => LaunchMeasurement::of_launch(&bytes, &config),
            };
            println!("{m}");
            ExitCode::SUCCESS
        }
        Command::Run(run) => {
            let bytes = match read_module(&run.module) {
                Ok(b) => b,
                Err(c) => return c,
            };
            let config = run.limits.config();
            if run.print_measurement {
                eprintln!(
                    "measurement: {}",
                    LaunchMeasurement::of_launch(&bytes, &config)
                );
            }
            let name = run
                .module
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let mut args = vec![name];
            args.extend(run.args);
            let inputs = LaunchInputs { args, env: run.env };
            let (stdin, stdout, stderr) = (std::io::stdin(), std::io::stdout(), std::io::stderr());
            let (mut i, mut o, mut e) = (stdin.lock(), stdout.lock(), stderr.lock());
            let io = RunIo {
                stdin: &mut i,
                stdout: &mut o,
                stderr: &mut e,
            };
            let mut services = match cli_broker::enclave_services(
                &bytes,
                &config,
                run.state_dir,
                run.broker.as_deref(),
                run.broker_cert.as_deref(),
            ) {
                Ok(s) => s,
                Err(c) => return c,
            };
            let result = ironclaw::run(&bytes, &inputs, &config, io, Some(&mut services));
            drop((i, o, e));
            match result {
                Ok(report) => {
                    if run.timings {
                        let t = report.timings;
                        let mut err = std::io::stderr().lock();
                        let _ = writeln!(
                            err,
                            "timings: vm_create={:?} load={:?} measure={:?} shim_start={:?} compile={:?} run={:?} teardown={:?} first_output={:?} to_exit={:?} total={:?} hypercalls={}",
                            t.vm_create, t.load, t.measure, t.shim_start, t.compile, t.run, t.teardown,
                            t.first_output, t.to_exit, t.total, report.hypercalls
                        );
                    }
                    ExitCode::from((report.exit_code & 0xFF) as u8)
                }
                Err(e) => {
                    eprintln!("ironclaw: {e}");
                    ExitCode::from(e.exit_code() as u8)
                }
            }
        }
    }
}
