//! `ironclaw serve`: an enclave as a long-running network service.
//!
//! The host owns every socket: the listeners given with `--listen` (TCP or Unix), the
//! connections it accepts on them, and the egress connections the module opens to the
//! destinations given with `--egress`. The module sees listener `i` as the preopened WASI
//! socket fd `3 + i` and talks to the host only through the NET hypercall
//! ([`ironclaw_abi::net`]); [`relay::Relay`] is the host side. The host relays bytes and
//! never interprets them.
//!
//! Lifetime: until SIGTERM/SIGINT (listeners closed at once, connections get the grace
//! period, then exit 0) or until the module exits (its code). Limits: connections,
//! bytes buffered per connection and direction (the flow-control window), idle timeout per
//! connection, and fuel per poll turn (the module's CPU guard).

pub mod relay;
pub mod untrusted_guest_ops;

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::config::LaunchConfig;
use crate::hypercall::{Dispatcher, IronClawCalls, RunIo, Step};
use crate::launch::{guest_result, prepare, GuestImage, LaunchError, LaunchInputs, Prepared};
use crate::measurement::LaunchMeasurement;
use crate::vmm::watchdog::Watchdog;
use crate::vmm::Exit;

/// Where a service listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    /// `tcp:IP:PORT` (port 0 picks a free port; the bound address is reported).
    Tcp(SocketAddr),
    /// `unix:PATH` (a stale socket file left by a killed service is replaced).
    Unix(PathBuf),
}

impl std::str::FromStr for ListenAddr {
    type Err = ServiceError;

    fn from_str(s: &str) -> Result<Self, ServiceError> {
        let bad = |why: &str| ServiceError::Listen {
            addr: s.to_string(),
            why: why.to_string(),
        };
        if let Some(rest) = s.strip_prefix("tcp:") {
            rest.parse::<SocketAddr>()
                .map(ListenAddr::Tcp)
                .map_err(|_| bad("expected tcp:IP:PORT (IPv6 as tcp:[::1]:PORT)"))
        } else if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(bad("empty socket path"));
            }
            // sockaddr_un.sun_path holds 108 bytes including the NUL.
            if path.len() > 107 {
                return Err(bad("socket path longer than 107 bytes"));
            }
            Ok(ListenAddr::Unix(PathBuf::from(path)))
        } else {
            Err(bad("expected tcp:IP:PORT or unix:PATH"))
        }
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Tcp(a) => write!(f, "tcp:{a}"),
            ListenAddr::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// An egress destination `HOST:PORT` (resolved on the host at connect time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Egress {
    pub host: String,
    pub port: u16,
}

impl std::str::FromStr for Egress {
    type Err = ServiceError;

    fn from_str(s: &str) -> Result<Self, ServiceError> {
        let bad = |why: &str| ServiceError::Egress {
            dest: s.to_string(),
            why: why.to_string(),
        };
        let (host, port) = s
            .rsplit_once(':')
            .ok_or_else(|| bad("expected HOST:PORT"))?;
        let port: u16 = port
            .parse()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| bad("port must be 1..=65535"))?;
        let inner = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let valid = !inner.is_empty()
            && inner.len() <= 253
            && inner
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._:".contains(&b));
        if !valid {
            return Err(bad("host must be a DNS name or an IP address"));
        }
        Ok(Egress {
            host: host.to_string(),
            port,
        })
    }
}

impl fmt::Display for Egress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// The service part of a launch configuration (measured, except the listen addresses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceConfig {
    pub listen: Vec<ListenAddr>,
    pub egress: Vec<Egress>,
    /// Most connections (accepted + egress) open at once.
    pub max_connections: u64,
    /// Bytes buffered per connection and direction, on the host and in the enclave.
    pub window: u64,
    /// A connection with no traffic for this long is closed (the module sees ETIMEDOUT).
    pub idle_timeout: Duration,
    /// After SIGTERM/SIGINT: how long open connections may still be served.
    pub grace: Duration,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            listen: Vec::new(),
            egress: Vec::new(),
            max_connections: 1024,
            window: 256 << 10,
            idle_timeout: Duration::from_secs(60),
            grace: Duration::from_secs(5),
        }
    }
}

/// Fuel of one poll turn when `--fuel` is not given: about a second of interpretation.
pub const DEFAULT_TURN_FUEL: u64 = 1_000_000_000;

/// A bad service configuration or a host socket failure.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("--listen {addr}: {why}")]
    Listen { addr: String, why: String },
    #[error("--egress {dest}: {why}")]
    Egress { dest: String, why: String },
    #[error("listen: at least one --listen address is required, at most {max}", max = ironclaw_abi::boot::MAX_LISTENERS)]
    ListenCount,
    #[error("--max-connections: must be 1..={max}, got {got}", max = ironclaw_abi::boot::MAX_CONNECTIONS)]
    MaxConnections { got: u64 },
    #[error("--max-buffered: must be {min}..={max} bytes, got {got}", min = ironclaw_abi::boot::MIN_NET_WINDOW, max = ironclaw_abi::boot::MAX_NET_WINDOW)]
    Window { got: u64 },
    #[error("--idle-timeout and --grace: must be between 1 ms and 1 day")]
    Duration,
    #[error("binding {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("{addr}: {why}")]
    SocketPath { addr: String, why: String },
    #[error("host event loop: {0}")]
    Poll(std::io::Error),
}

impl ServiceConfig {
    /// Checks every field (before anything is bound or created).
    pub fn validate(&self) -> Result<(), ServiceError> {
        use ironclaw_abi::boot as b;
        if self.listen.is_empty() || self.listen.len() as u64 > b::MAX_LISTENERS {
            return Err(ServiceError::ListenCount);
        }
        if !(1..=b::MAX_CONNECTIONS).contains(&self.max_connections) {
            return Err(ServiceError::MaxConnections {
                got: self.max_connections,
            });
        }
        if !(b::MIN_NET_WINDOW..=b::MAX_NET_WINDOW).contains(&self.window) {
            return Err(ServiceError::Window { got: self.window });
        }
        let ok = |d: Duration| d >= Duration::from_millis(1) && d <= Duration::from_secs(86_400);
        if !ok(self.idle_timeout) || !ok(self.grace) {
            return Err(ServiceError::Duration);
        }
        Ok(())
    }
}

/// How a service ended.
#[derive(Debug, Clone)]
pub struct ServeReport {
    /// 0 after SIGTERM/SIGINT, else the module's own exit code.
    pub exit_code: u32,
    pub measurement: LaunchMeasurement,
    /// VM exits (hypercalls) of the whole run, and how many of them were NET exchanges.
    pub hypercalls: u64,
    pub net_calls: u64,
}

/// Runs `module` as a service with the embedded shim. `on_ready` is called with the bound
/// listen addresses (port 0 resolved) once the listeners exist and the VM is loaded.
pub fn serve(
    module: &[u8],
    inputs: &LaunchInputs,
    config: &LaunchConfig,
    service: &ServiceConfig,
    io: RunIo<'_>,
    extension: Option<&mut dyn IronClawCalls>,
    on_ready: &mut dyn FnMut(&[ListenAddr], &LaunchMeasurement),
) -> Result<ServeReport, LaunchError> {
    let start = Instant::now();
    service.validate()?;
    config.validate()?;
    let mut relay = relay::Relay::bind(service)?;
    let Prepared {
        mut vm,
        measurement,
        ..
    } = prepare(
        start,
        &GuestImage::shim(),
        module,
        inputs,
        config,
        Some(service),
    )?;
    on_ready(relay.bound(), &measurement);
    // Reborrow the caller's I/O for the relay's (shorter) lifetime.
    let io = RunIo {
        stdin: &mut *io.stdin,
        stdout: &mut *io.stdout,
        stderr: &mut *io.stderr,
    };
    let mut dispatcher =
        Dispatcher::new(io, config.max_output_bytes, config.max_hypercalls).with_net(&mut relay);
    if let Some(ext) = extension {
        dispatcher = dispatcher.with_extension(ext);
    }
    let mut grace_dog: Option<Watchdog> = None;
    let outcome = loop {
        let exit = vm.run()?;
        let interrupted = matches!(exit, Exit::Interrupted);
        match exit {
            Exit::Hypercall => match dispatcher.handle(vm.memory()) {
                Ok(Step::Continue) => {}
                Ok(Step::Exit(e)) => break guest_result(&e, config),
                Err(e) => break Err(LaunchError::from(e)),
            },
            Exit::Fault(f) => break Err(LaunchError::GuestFault(f)),
            Exit::Interrupted => {}
            Exit::Unexpected(reason) => break Err(LaunchError::UnexpectedExit(reason)),
        }
        // A signal may have arrived while the guest computed (KVM_RUN returned EINTR).
        let state = relay_state(&mut dispatcher, interrupted);
        if let Some(deadline) = state.grace_deadline {
            if grace_dog.is_none() {
                grace_dog = Some(Watchdog::arm(
                    deadline.saturating_duration_since(Instant::now()),
                )?);
            }
        }
        if state.finished {
            break Ok(0);
        }
    };
    let hypercalls = dispatcher.calls();
    let net_calls = dispatcher.net_calls();
    drop(dispatcher);
    drop(grace_dog);
    drop(vm);
    drop(relay);
    Ok(ServeReport {
        exit_code: outcome?,
        measurement,
        hypercalls,
        net_calls,
    })
}

struct RelayState {
    grace_deadline: Option<Instant>,
    finished: bool,
}

fn relay_state(d: &mut Dispatcher<'_>, interrupted: bool) -> RelayState {
    match d.net_mut() {
        Some(net) => {
            if interrupted {
                net.check_signals();
            }
            RelayState {
                grace_deadline: net.grace_deadline(),
                finished: net.finished(),
            }
        }
        None => RelayState {
            grace_deadline: None,
            finished: false,
        },
    }
}
