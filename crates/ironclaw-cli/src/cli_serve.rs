//! `ironclaw serve`: argument parsing only; `ironclaw::service` does the work.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use ironclaw::hypercall::RunIo;
use ironclaw::service::{Egress, ListenAddr, ServiceConfig, DEFAULT_TURN_FUEL};
use ironclaw::{exit_code, LaunchConfig, LaunchInputs};

/// The service part of a launch (measured, except the listen addresses).
#[derive(Args)]
pub(crate) struct ServiceArgs {
    /// Listen address: tcp:IP:PORT or unix:PATH (repeatable; the module sees fd 3, 4, ...).
    #[arg(long = "listen", value_name = "ADDR")]
    listen: Vec<ListenAddr>,
    /// Egress destination HOST:PORT the module may connect to (repeatable; measured).
    #[arg(long = "egress", value_name = "HOST:PORT")]
    egress: Vec<Egress>,
    /// Most connections (accepted + egress) open at once.
    #[arg(long, default_value_t = ServiceConfig::default().max_connections)]
    max_connections: u64,
    /// Bytes buffered per connection and direction (host and enclave).
    #[arg(long, default_value_t = ServiceConfig::default().window)]
    max_buffered: u64,
    /// Close a connection after this long without traffic.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "60s")]
    idle_timeout: Duration,
    /// After SIGTERM/SIGINT: how long open connections are still served.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5s")]
    grace: Duration,
}

impl ServiceArgs {
    /// The service configuration, if any `--listen` was given.
    pub(crate) fn config(&self) -> Option<ServiceConfig> {
        (!self.listen.is_empty()).then(|| ServiceConfig {
            listen: self.listen.clone(),
            egress: self.egress.clone(),
            max_connections: self.max_connections,
            window: self.max_buffered,
            idle_timeout: self.idle_timeout,
            grace: self.grace,
        })
    }
}

/// A service's launch configuration: `--fuel` is per poll turn, with a default.
pub(crate) fn service_launch_config(mut config: LaunchConfig) -> LaunchConfig {
    config.fuel = config.fuel.or(Some(DEFAULT_TURN_FUEL));
    config
}

#[derive(Args)]
pub(crate) struct ServeArgs {
    #[command(flatten)]
    limits: crate::LimitArgs,
    #[command(flatten)]
    service: ServiceArgs,
    /// Environment variable for the module (repeatable).
    #[arg(long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Print the launch measurement to stderr before serving.
    #[arg(long)]
    print_measurement: bool,
    /// Print the number of VM exits (and NET exchanges) to stderr when the service ends.
    #[arg(long)]
    stats: bool,
    /// Key broker the module's get_secret calls go to (https://HOST:PORT).
    #[arg(long, value_name = "URL")]
    broker: Option<String>,
    /// The broker's TLS certificate (PEM) to trust; required with --broker.
    #[arg(long, value_name = "FILE", requires = "broker")]
    broker_cert: Option<PathBuf>,
    /// IronClaw state directory (platform key, sealing root).
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// The module (wasm32-wasip1).
    module: PathBuf,
    /// Arguments passed to the module (argv[1..]).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

pub(crate) fn serve(a: ServeArgs) -> ExitCode {
    let bytes = match crate::read_module(&a.module) {
        Ok(b) => b,
        Err(c) => return c,
    };
    let config = service_launch_config(a.limits.config());
    let Some(service) = a.service.config() else {
        eprintln!("ironclaw: serve needs at least one --listen tcp:IP:PORT or unix:PATH");
        return ExitCode::from(exit_code::INTERNAL as u8);
    };
    let name = a
        .module
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut args = vec![name];
    args.extend(a.args);
    let inputs = LaunchInputs { args, env: a.env };
    let launch = AttestedService {
        module: &bytes,
        inputs: &inputs,
        config: &config,
        service: &service,
        state_dir: a.state_dir,
        broker: a.broker.as_deref(),
        broker_cert: a.broker_cert.as_deref(),
    };
    launch.serve(a.print_measurement, a.stats)
}

/// A service ready to launch with its attestation services. `ironclaw serve` and `ironclaw
/// proxy` both end here, so the two cannot differ in what they attest or report.
pub(crate) struct AttestedService<'a> {
    pub module: &'a [u8],
    pub inputs: &'a LaunchInputs,
    pub config: &'a LaunchConfig,
    pub service: &'a ServiceConfig,
    pub state_dir: Option<PathBuf>,
    pub broker: Option<&'a str>,
    pub broker_cert: Option<&'a Path>,
}

impl AttestedService<'_> {
    /// Serves until the module exits or a signal ends it; the exit code is the module's (or
    /// the error's, as in the README table).
    pub(crate) fn serve(self, print_measurement: bool, stats: bool) -> ExitCode {
        let mut services = match crate::cli_broker::enclave_services(
            self.module,
            self.config,
            self.state_dir,
            self.broker,
            self.broker_cert,
        ) {
            // Evidence carries the service measurement (it covers the egress list), the one
            // `ironclaw measure --listen ... --egress ...` prints and on_ready reports.
            Ok(s) => s.with_measurement(&ironclaw::LaunchMeasurement::of_service(
                self.module,
                self.config,
                self.service,
            )),
            Err(c) => return c,
        };
        let (mut stdin, mut stdout, mut stderr) =
            (std::io::empty(), std::io::stdout(), std::io::stderr());
        let io = RunIo {
            stdin: &mut stdin,
            stdout: &mut stdout,
            stderr: &mut stderr,
        };
        let mut on_ready = |bound: &[ListenAddr], m: &ironclaw::LaunchMeasurement| {
            if print_measurement {
                eprintln!("measurement: {m}");
            }
            for addr in bound {
                eprintln!("ironclaw: listening on {addr}");
            }
        };
        match ironclaw::service::serve(
            self.module,
            self.inputs,
            self.config,
            self.service,
            io,
            Some(&mut services),
            &mut on_ready,
        ) {
            Ok(report) => {
                if stats {
                    eprintln!(
                        "ironclaw: exits={} net_exchanges={}",
                        report.hypercalls, report.net_calls
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
