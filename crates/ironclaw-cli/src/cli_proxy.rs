//! `ironclaw proxy`: runs the LLM API key proxy module (`examples/wasm/llm-proxy`, embedded
//! in this binary as `ironclaw::shim::LLM_PROXY_MODULE`) with `ironclaw serve`'s machinery.
//!
//! Each route is `--upstream URL --secret PATH --inject 'Header: ...{secret}...'` (the n-th
//! of each flag form route n). The upstreams' HOST:PORT become the launch's egress list,
//! which is measured: the enclave can reach nothing else. The routes themselves are measured
//! too (a custom section of the launched module, see [`ironclaw_abi::measured_argv`]). The key never
//! passes through this
//! process: the module fetches it from the broker with `get_secret` (attested, JWE-wrapped
//! to the enclave's ephemeral key).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use ironclaw::service::{Egress, ListenAddr, ServiceConfig};
use ironclaw::{exit_code, LaunchInputs};

#[derive(Args)]
pub(crate) struct ProxyArgs {
    /// Guest memory in MiB (measured).
    #[arg(long, default_value_t = 256)]
    memory: u64,
    /// Most Wasm linear memory in MiB (measured): client and upstream buffers live there.
    #[arg(long, default_value_t = 96)]
    max_wasm_memory: u64,
    /// Fuel of one poll turn (measured; default: `ironclaw serve`'s).
    #[arg(long)]
    fuel: Option<u64>,
    /// Debug launch (measured, and reported by attestation).
    #[arg(long)]
    debug: bool,
    /// Listen address for clients: tcp:IP:PORT or unix:PATH (repeatable).
    #[arg(long = "listen", value_name = "ADDR", required = true)]
    listen: Vec<ListenAddr>,
    /// Upstream base URL, https://HOST[:PORT] (TLS from inside the enclave) or
    /// http://HOST[:PORT] (repeatable: one per route).
    #[arg(long = "upstream", value_name = "URL", required = true)]
    upstream: Vec<String>,
    /// Broker resource path of the route's key, REPOSITORY/TYPE/TAG (one per --upstream).
    #[arg(long = "secret", value_name = "PATH")]
    secret: Vec<String>,
    /// Header added to the route's requests, e.g. 'Authorization: Bearer {secret}' or
    /// 'x-api-key: {secret}' (one per --upstream).
    #[arg(long = "inject", value_name = "HEADER")]
    inject: Vec<String>,
    /// CA certificate(s) (PEM) the https upstreams' chains must lead to (default: the
    /// Mozilla root store compiled into the module).
    #[arg(long, value_name = "FILE")]
    upstream_ca: Option<PathBuf>,
    /// Key broker (https://HOST:PORT) that releases the keys to this enclave.
    #[arg(long, value_name = "URL")]
    broker: Option<String>,
    /// The broker's TLS certificate (PEM) to trust; required with --broker.
    #[arg(long, value_name = "FILE", requires = "broker")]
    broker_cert: Option<PathBuf>,
    /// IronClaw state directory (platform key, sealing root).
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Most client + upstream connections open at once.
    #[arg(long, default_value_t = ServiceConfig::default().max_connections)]
    max_connections: u64,
    /// Close a connection after this long without traffic.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "120s")]
    idle_timeout: Duration,
    /// Print the launch measurement to stderr before serving.
    #[arg(long)]
    print_measurement: bool,
    /// Only print the launch measurement (stdout) and exit: what a broker policy pins.
    #[arg(long)]
    measure: bool,
}

fn fail(msg: &str) -> ExitCode {
    eprintln!("ironclaw proxy: {msg}");
    ExitCode::from(exit_code::INTERNAL as u8)
}

/// The egress destination (`HOST:PORT`) of an upstream URL.
pub(crate) fn upstream_egress(url: &str) -> Result<Egress, String> {
    let (rest, port) = if let Some(r) = url.strip_prefix("http://") {
        (r, 80)
    } else if let Some(r) = url.strip_prefix("https://") {
        (r, 443)
    } else {
        return Err(format!("{url}: expected http(s)://HOST[:PORT]"));
    };
    let authority = rest.trim_end_matches('/');
    if authority.is_empty() || authority.contains(['/', '@', '?', '#']) {
        return Err(format!("{url}: expected http://HOST[:PORT] with no path"));
    }
    let dest = match authority.rsplit_once(':') {
        Some((_, p)) if p.parse::<u16>().is_ok() => authority.to_string(),
        _ => format!("{authority}:{port}"),
    };
    dest.parse::<Egress>().map_err(|e| format!("{url}: {e}"))
}

pub(crate) fn proxy(a: ProxyArgs) -> ExitCode {
    let n = a.upstream.len();
    if a.secret.len() != n || a.inject.len() != n {
        return fail("every --upstream needs one --secret and one --inject (in the same order)");
    }
    let mut egress = Vec::new();
    let mut args = vec!["llm-proxy".to_string()];
    if let Some(ca) = &a.upstream_ca {
        match std::fs::read_to_string(ca) {
            Ok(pem) => args.extend(["--upstream-ca-pem".to_string(), pem]),
            Err(e) => return fail(&format!("--upstream-ca {}: {e}", ca.display())),
        }
    }
    for i in 0..n {
        match upstream_egress(&a.upstream[i]) {
            Ok(e) => {
                if !egress.contains(&e) {
                    egress.push(e);
                }
            }
            Err(why) => return fail(&why),
        }
        if !a.inject[i].contains("{secret}") {
            return fail(&format!("--inject {:?}: has no {{secret}}", a.inject[i]));
        }
        for (flag, v) in [
            ("--upstream", &a.upstream[i]),
            ("--secret", &a.secret[i]),
            ("--inject", &a.inject[i]),
        ] {
            args.push(flag.to_string());
            args.push(v.clone());
        }
    }
    let service = ServiceConfig {
        listen: a.listen,
        egress,
        max_connections: a.max_connections,
        idle_timeout: a.idle_timeout,
        ..ServiceConfig::default()
    };
    if let Err(e) = service.validate() {
        return fail(&format!("invalid service configuration: {e}"));
    }
    let config = crate::cli_serve::service_launch_config(ironclaw::LaunchConfig {
        memory_mib: a.memory,
        fuel: a.fuel,
        max_wasm_memory_bytes: a.max_wasm_memory.saturating_mul(1 << 20),
        debug: a.debug,
        ..ironclaw::LaunchConfig::default()
    });
    if let Err(e) = config.validate() {
        return fail(&format!("invalid launch configuration: {e}"));
    }
    // The routes travel as the module's measured argv: the measurement the broker pins covers
    // them, and the shim runs the module only with exactly this argv (a host cannot hand the
    // attested module other routes).
    let module =
        ironclaw_abi::measured_argv::append_to_module(ironclaw::shim::LLM_PROXY_MODULE, &args);
    let bytes = module.as_slice();
    if a.measure {
        println!(
            "{}",
            ironclaw::LaunchMeasurement::of_service(bytes, &config, &service)
        );
        return ExitCode::SUCCESS;
    }
    let inputs = LaunchInputs {
        args,
        env: Vec::new(),
    };
    let launch = crate::cli_serve::AttestedService {
        module: bytes,
        inputs: &inputs,
        config: &config,
        service: &service,
        state_dir: a.state_dir,
        broker: a.broker.as_deref(),
        broker_cert: a.broker_cert.as_deref(),
    };
    launch.serve(a.print_measurement, false)
}
