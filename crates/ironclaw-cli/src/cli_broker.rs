//! `ironclaw platform-key` and `ironclaw broker ...`: argument parsing only; the
//! work is in `ironclaw::platform_key` and the `ironclaw-broker` crate.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use clap::{Args, Subcommand};
use ironclaw_broker::admin::{self, AdminRequest};
use ironclaw_broker::{Broker, BrokerConfig};

#[derive(Args)]
pub(crate) struct PlatformKeyArgs {
    /// IronClaw state directory (default: $IRONCLAW_STATE_DIR or /var/lib/ironclaw).
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Output format: a public JWK (what `broker policy` trusts) or SPKI PEM.
    #[arg(long, default_value = "jwk", value_parser = ["jwk", "pem"])]
    format: String,
}

#[derive(Subcommand)]
pub(crate) enum BrokerCommand {
    /// Serve the KBS API over HTTPS.
    Serve {
        /// Address to listen on, e.g. 127.0.0.1:8443.
        #[arg(long)]
        listen: String,
        /// Broker state directory (store, keys, audit log, admin socket).
        #[arg(long)]
        state: PathBuf,
        /// TLS certificate (PEM); a self-signed one is generated in STATE if not given.
        #[arg(long, requires = "key")]
        cert: Option<PathBuf>,
        /// TLS private key (PEM).
        #[arg(long, requires = "cert")]
        key: Option<PathBuf>,
        /// Session lifetime in seconds.
        #[arg(long, default_value_t = 300)]
        session_ttl: u64,
        /// Rotate STATE/audit.jsonl before it would exceed this many bytes.
        #[arg(long, default_value_t = ironclaw_broker::audit::AuditRotation::DEFAULT_MAX_BYTES,
              value_parser = clap::value_parser!(u64).range(4096..))]
        audit_max_bytes: u64,
        /// Rotated audit files kept (audit.jsonl.1 is the newest).
        #[arg(long, default_value_t = ironclaw_broker::audit::AuditRotation::DEFAULT_KEEP,
              value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1000))]
        audit_keep: usize,
        /// Audit lines one peer may write in a burst for requests nobody has
        /// authenticated (challenges, refusals); the rest are counted in
        /// periodic `suppressed` lines.
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
        audit_unauth_burst: u32,
        /// Sustained audit lines per second per peer for unauthenticated requests.
        #[arg(long, default_value_t = 1.0)]
        audit_unauth_rate: f64,
        /// Ed25519 public key (PEM) allowed to use trustee's admin API over HTTPS
        /// (`kbs-client config --auth-private-key ...`); repeatable. Without one
        /// that API is disabled (the admin socket always works).
        #[arg(long, value_name = "FILE")]
        admin_public_key: Vec<PathBuf>,
        /// Connections served at once.
        #[arg(long, default_value_t = ironclaw_broker::http::MAX_CONNECTIONS,
              value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=65536))]
        max_connections: usize,
        /// Connections one peer (IPv4 address, IPv6 /64) may hold at once; raise it
        /// when many guests reach the broker through one NAT address.
        #[arg(long, default_value_t = ironclaw_broker::http::MAX_CONNECTIONS_PER_PEER,
              value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=65536))]
        max_connections_per_peer: usize,
    },
    /// Manage secrets (works while the broker runs).
    #[command(subcommand)]
    Secret(SecretCommand),
    /// Manage the release policy (works while the broker runs).
    #[command(subcommand)]
    Policy(PolicyCommand),
}

#[derive(Subcommand)]
pub(crate) enum SecretCommand {
    /// Store a secret at repository/type/tag. The value is read from standard
    /// input (all of it, byte for byte: use `printf %s`, not `echo`) unless
    /// --file is given.
    Put {
        #[arg(long)]
        state: PathBuf,
        path: String,
        /// Read the value from FILE ("-": standard input, the default).
        #[arg(long, conflicts_with = "value")]
        file: Option<PathBuf>,
        /// DISCOURAGED: the value on the command line, where every local user
        /// can read it (/proc/PID/cmdline) and shell history keeps it.
        #[arg(long)]
        value: Option<String>,
    },
    /// List secret paths.
    List {
        #[arg(long)]
        state: PathBuf,
    },
    /// Delete a secret.
    Delete {
        #[arg(long)]
        state: PathBuf,
        path: String,
    },
}

#[derive(Subcommand)]
pub(crate) enum PolicyCommand {
    /// Replace the policy with FILE (JSON).
    Set {
        #[arg(long)]
        state: PathBuf,
        file: PathBuf,
    },
    /// Print the policy.
    Show {
        #[arg(long)]
        state: PathBuf,
    },
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("ironclaw: {msg}");
    ExitCode::from(1)
}

pub(crate) fn platform_key(args: PlatformKeyArgs) -> ExitCode {
    let dir = args
        .state_dir
        .unwrap_or_else(ironclaw::platform_key::state_dir);
    match ironclaw::platform_key::PlatformKey::load_or_create(&dir) {
        Ok(k) if args.format == "pem" => {
            print!("{}", k.public_pem());
            ExitCode::SUCCESS
        }
        Ok(k) => {
            println!("{}", k.public_jwk());
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

fn admin_call(state: &std::path::Path, req: AdminRequest) -> Result<admin::AdminReply, ExitCode> {
    match admin::call(state, req) {
        Ok(r) if r.ok => Ok(r),
        Ok(r) => Err(fail(r.error.unwrap_or_default())),
        Err(e) => Err(fail(e)),
    }
}

pub(crate) fn broker(cmd: BrokerCommand) -> ExitCode {
    // Every broker command handles key material (the store key at least): no
    // core dumps, no same-uid ptrace / /proc/PID/mem (see ironclaw_broker::secmem).
    if let Err(e) = ironclaw_broker::secmem::disable_core_dumps() {
        return fail(format!("prctl(PR_SET_DUMPABLE, 0): {e}"));
    }
    match cmd {
        BrokerCommand::Serve {
            listen,
            state,
            cert,
            key,
            session_ttl,
            audit_max_bytes,
            audit_keep,
            audit_unauth_burst,
            audit_unauth_rate,
            admin_public_key,
            max_connections,
            max_connections_per_peer,
        } => {
            let mut admin_keys = Vec::new();
            for f in &admin_public_key {
                match ironclaw_broker::admin_http::AdminKeys::load_pem(f) {
                    Ok(k) => admin_keys.push(k),
                    Err(e) => return fail(e),
                }
            }
            if !(audit_unauth_rate.is_finite() && audit_unauth_rate >= 0.0) {
                return fail(format!(
                    "--audit-unauth-rate {audit_unauth_rate}: must be a number >= 0"
                ));
            }
            let config = BrokerConfig {
                audit_limits: ironclaw_broker::audit::AuditLimits {
                    per_peer_burst: f64::from(audit_unauth_burst),
                    per_peer_per_sec: audit_unauth_rate,
                    global_burst: ironclaw_broker::audit::AuditLimits::default()
                        .global_burst
                        .max(f64::from(audit_unauth_burst)),
                    ..Default::default()
                },
                session_ttl: Duration::from_secs(session_ttl),
                admin_keys: ironclaw_broker::admin_http::AdminKeys::new(admin_keys),
                audit: ironclaw_broker::audit::AuditRotation {
                    max_bytes: audit_max_bytes,
                    keep: audit_keep,
                },
                ..Default::default()
            };
            let broker = match Broker::open(&state, config) {
                Ok(b) => Arc::new(b),
                Err(e) => return fail(e),
            };
            let tls = match ironclaw_broker::tls::server_config(
                broker.state(),
                cert.as_deref(),
                key.as_deref(),
            ) {
                Ok(t) => t,
                Err(e) => return fail(e),
            };
            let limits = ironclaw_broker::http::ServeLimits {
                max_connections,
                max_connections_per_peer,
                ..Default::default()
            };
            let server = match ironclaw_broker::http::start_with(broker, &listen, tls, limits) {
                Ok(s) => s,
                Err(e) => return fail(format!("listening on {listen}: {e}")),
            };
            eprintln!(
                "ironclaw broker: serving the KBS API on {} (state {})",
                server.url(),
                state.display()
            );
            server.join();
            ExitCode::SUCCESS
        }
        BrokerCommand::Secret(SecretCommand::Put {
            state,
            path,
            value,
            file,
        }) => {
            let bytes = match (value, file) {
                (Some(v), _) => {
                    eprintln!(
                        "ironclaw: WARNING: --value puts the secret on the command line, where \
                         every local user can read it (/proc/PID/cmdline) and shell history \
                         keeps it; pass it on standard input or with --file instead"
                    );
                    v.into_bytes()
                }
                (None, Some(f)) if f.as_os_str() != "-" => match std::fs::read(&f) {
                    Ok(b) => b,
                    Err(e) => return fail(format!("{}: {e}", f.display())),
                },
                (None, _) => {
                    use std::io::{IsTerminal, Read};
                    let mut stdin = std::io::stdin();
                    if stdin.is_terminal() {
                        eprintln!(
                            "ironclaw: reading the secret from standard input (end with Ctrl-D)"
                        );
                    }
                    let mut b = Vec::new();
                    if let Err(e) = stdin.read_to_end(&mut b) {
                        return fail(format!("standard input: {e}"));
                    }
                    if b.is_empty() {
                        return fail("the secret read from standard input is empty");
                    }
                    b
                }
            };
            let value_b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
            match admin_call(&state, AdminRequest::SecretPut { path, value_b64 }) {
                Ok(_) => ExitCode::SUCCESS,
                Err(c) => c,
            }
        }
        BrokerCommand::Secret(SecretCommand::List { state }) => {
            match admin_call(&state, AdminRequest::SecretList) {
                Ok(r) => {
                    for s in r.secrets.unwrap_or_default() {
                        println!("{s}");
                    }
                    ExitCode::SUCCESS
                }
                Err(c) => c,
            }
        }
        BrokerCommand::Secret(SecretCommand::Delete { state, path }) => {
            match admin_call(&state, AdminRequest::SecretDelete { path: path.clone() }) {
                Ok(r) if r.existed == Some(false) => fail(format!("no secret at {path}")),
                Ok(_) => ExitCode::SUCCESS,
                Err(c) => c,
            }
        }
        BrokerCommand::Policy(PolicyCommand::Set { state, file }) => {
            let text = match std::fs::read(&file) {
                Ok(t) => t,
                Err(e) => return fail(format!("{}: {e}", file.display())),
            };
            let policy: serde_json::Value = match serde_json::from_slice(&text) {
                Ok(p) => p,
                Err(e) => return fail(format!("{}: not JSON: {e}", file.display())),
            };
            match admin_call(&state, AdminRequest::PolicySet { policy }) {
                Ok(_) => ExitCode::SUCCESS,
                Err(c) => c,
            }
        }
        BrokerCommand::Policy(PolicyCommand::Show { state }) => {
            match admin_call(&state, AdminRequest::PolicyShow) {
                Ok(r) => {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&r.policy.unwrap_or_default())
                            .unwrap_or_default()
                    );
                    ExitCode::SUCCESS
                }
                Err(c) => c,
            }
        }
    }
}

/// The IronClaw calls offered to a run: attestation and sealing with the keys of
/// the state directory, and the KBS relay when a broker is given.
pub(crate) fn enclave_services(
    module: &[u8],
    config: &ironclaw::LaunchConfig,
    state_dir: Option<PathBuf>,
    broker: Option<&str>,
    broker_cert: Option<&std::path::Path>,
) -> Result<ironclaw::attest::EnclaveServices, ExitCode> {
    let dir = state_dir.unwrap_or_else(ironclaw::platform_key::state_dir);
    let services = ironclaw::attest::EnclaveServices::new(module, config).with_state_dir(dir);
    let Some(url) = broker else {
        return Ok(services);
    };
    let Some(cert) = broker_cert else {
        return Err(fail(
            "--broker needs --broker-cert (the broker's certificate, e.g. STATE/tls.crt)",
        ));
    };
    let roots = ironclaw_broker::tls::load_certs(cert).map_err(fail)?;
    let client = ironclaw_broker::client::KbsHttpClient::new(url, &roots).map_err(fail)?;
    Ok(services.with_broker(client))
}
