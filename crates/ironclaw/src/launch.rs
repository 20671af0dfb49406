//! One launch: validate → create the VM → load shim, module and inputs → measure → run
//! the vCPU, dispatching hypercalls → tear down. Every limit ends the run with its own
//! [`LaunchError`] variant and exit code ([`LaunchError::exit_code`]).

use std::time::{Duration, Instant};

use ironclaw_abi::boot::{BootInfo, BOOT_MAGIC, FLAG_DEBUG, FLAG_SERVICE};
use ironclaw_abi::{layout as l, ExitKind, ABI_VERSION};

use crate::config::{ConfigError, LaunchConfig};
use crate::hypercall::{DispatchError, Dispatcher, GuestExit, IronClawCalls, RunIo, Step};
use crate::measurement::LaunchMeasurement;
use crate::vmm::watchdog::{Watchdog, WatchdogError};
use crate::vmm::{Exit, GuestFault, Vm, VmmError};

/// Process exit codes of `ironclaw run` (also documented in README.md). A module's own exit
/// code (0..=255 from `proc_exit`) passes through unchanged.
pub mod exit_code {
    /// The module trapped.
    pub const TRAP: i32 = 100;
    /// The fuel budget ran out.
    pub const FUEL: i32 = 101;
    /// The wall-clock timeout expired.
    pub const TIMEOUT: i32 = 102;
    /// A Wasm memory or table grew past its cap (or the guest heap ran out).
    pub const MEMORY: i32 = 103;
    /// The output limit was exceeded.
    pub const OUTPUT: i32 = 104;
    /// The guest took a CPU exception (or triple-faulted).
    pub const GUEST_FAULT: i32 = 105;
    /// The module failed to decode or validate.
    pub const INVALID_MODULE: i32 = 106;
    /// The module imports something that is neither WASI preview 1 nor IronClaw.
    pub const LINK: i32 = 107;
    /// The guest broke the hypercall protocol, or flooded exits.
    pub const PROTOCOL: i32 = 108;
    /// IronClaw itself failed: KVM unavailable, bad configuration, I/O error, shim error.
    pub const INTERNAL: i32 = 125;
}

/// Why a launch did not end with the module's own exit code.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("invalid launch configuration: {0}")]
    Config(#[from] ConfigError),
    #[error("launch inputs: {0}")]
    Inputs(String),
    #[error(transparent)]
    Vmm(#[from] VmmError),
    #[error("watchdog: {0}")]
    Watchdog(#[from] WatchdogError),
    #[error("timeout: the run exceeded its wall-clock limit of {limit:?}")]
    Timeout { limit: Duration },
    #[error("fuel limit: the module used up its budget of {fuel} fuel units")]
    FuelExhausted { fuel: u64 },
    #[error("memory limit: {message}")]
    MemoryLimit { message: String },
    #[error("wasm trap: {message}")]
    Trap { message: String },
    #[error("invalid module: {message}")]
    InvalidModule { message: String },
    #[error("link error: {message}")]
    Link { message: String },
    #[error("shim error: {message}")]
    Shim { message: String },
    #[error("guest fault: {0}")]
    GuestFault(GuestFault),
    #[error("guest stopped unexpectedly: {0}")]
    UnexpectedExit(String),
    #[error("output limit: the module wrote more than {limit} bytes")]
    OutputLimit { limit: u64 },
    #[error("exit flood: the guest made more than {limit} hypercalls")]
    ExitFlood { limit: u64 },
    #[error("{0}")]
    Dispatch(DispatchError),
    #[error("service: {0}")]
    Service(#[from] crate::service::ServiceError),
}

impl From<DispatchError> for LaunchError {
    fn from(e: DispatchError) -> Self {
        match e {
            DispatchError::OutputLimit { limit } => Self::OutputLimit { limit },
            DispatchError::ExitFlood { limit } => Self::ExitFlood { limit },
            other => Self::Dispatch(other),
        }
    }
}

impl LaunchError {
    /// The documented process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        use exit_code::*;
        match self {
            Self::Timeout { .. } => TIMEOUT,
            Self::FuelExhausted { .. } => FUEL,
            Self::MemoryLimit { .. } => MEMORY,
            Self::Trap { .. } => TRAP,
            Self::InvalidModule { .. } => INVALID_MODULE,
            Self::Link { .. } => LINK,
            Self::GuestFault(_) | Self::UnexpectedExit(_) => GUEST_FAULT,
            Self::OutputLimit { .. } => OUTPUT,
            Self::ExitFlood { .. } => PROTOCOL,
            Self::Dispatch(DispatchError::Protocol(_))
            | Self::Dispatch(DispatchError::Net(crate::hypercall::NetCallError::Protocol(_)))
            | Self::Dispatch(DispatchError::Memory { .. }) => PROTOCOL,
            Self::Config(_)
            | Self::Inputs(_)
            | Self::Vmm(_)
            | Self::Watchdog(_)
            | Self::Shim { .. }
            | Self::Service(_)
            | Self::Dispatch(_) => INTERNAL,
        }
    }
}

/// Where the time of one launch went.
#[derive(Debug, Clone, Copy, Default)]
pub struct Timings {
    /// KVM_CREATE_VM + memory + vCPU + system structures + registers.
    pub vm_create: Duration,
    /// Copying shim, module and inputs into guest memory.
    pub load: Duration,
    /// Computing the launch measurement.
    pub measure: Duration,
    /// From the first KVM_RUN to the shim's main loop (guest time not spent compiling or running).
    pub shim_start: Duration,
    /// Module decode + validation + compilation inside the guest (guest TSC).
    pub compile: Duration,
    /// Instantiation + execution inside the guest (guest TSC).
    pub run: Duration,
    /// Dropping the vCPU, VM and memory.
    pub teardown: Duration,
    /// Launch start → first output byte at the host (if any output).
    pub first_output: Option<Duration>,
    /// Launch start → the guest's EXIT hypercall.
    pub to_exit: Duration,
    /// Launch start → everything torn down.
    pub total: Duration,
}

/// What a finished run reports.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// The module's exit code (`proc_exit` or 0).
    pub exit_code: u32,
    pub measurement: LaunchMeasurement,
    pub timings: Timings,
    /// Hypercalls (VM exits to the host) the run made.
    pub hypercalls: u64,
}

/// The inputs of one launch besides its configuration (not measured).
#[derive(Debug, Clone, Default)]
pub struct LaunchInputs {
    /// argv (`argv[0]` is the program name the module sees).
    pub args: Vec<String>,
    /// Environment as `KEY=VALUE`.
    pub env: Vec<String>,
}

fn align_up(v: u64, a: u64) -> Option<u64> {
    v.checked_add(a - 1).map(|x| x & !(a - 1))
}

fn strings_blob(strings: &[String], what: &str) -> Result<Vec<u8>, LaunchError> {
    let mut blob = Vec::new();
    for s in strings {
        if s.as_bytes().contains(&0) {
            return Err(LaunchError::Inputs(format!(
                "{what} entry {s:?} contains a NUL byte"
            )));
        }
        blob.extend_from_slice(s.as_bytes());
        blob.push(0);
    }
    Ok(blob)
}

/// The guest code a VM starts: normally the embedded shim ([`GuestImage::shim`]); tests
/// use purpose-built hostile images to exercise the host's defences.
#[derive(Debug, Clone, Copy)]
pub struct GuestImage<'a> {
    /// Flat image loaded at `ironclaw_abi::layout::SHIM_BASE`.
    pub bytes: &'a [u8],
    /// Entry point (inside the image).
    pub entry: u64,
}

impl GuestImage<'static> {
    /// The embedded IronClaw shim.
    pub fn shim() -> Self {
        Self {
            bytes: crate::shim::SHIM_IMAGE,
            entry: crate::shim::SHIM_ENTRY,
        }
    }
}

/// Runs `module` in a fresh micro-VM with the embedded shim. Returns the module's exit
/// code, or the limit / fault that ended it. The VM is torn down before this returns, on
/// every path.
pub fn run<'a>(
    module: &[u8],
    inputs: &LaunchInputs,
    config: &LaunchConfig,
    io: RunIo<'a>,
    extension: Option<&'a mut dyn IronClawCalls>,
) -> Result<RunReport, LaunchError> {
    run_image(&GuestImage::shim(), module, inputs, config, io, extension)
}

/// Like [`run`], with an explicit guest image.
pub fn run_image<'a>(
    guest: &GuestImage<'_>,
    module: &[u8],
    inputs: &LaunchInputs,
    config: &LaunchConfig,
    io: RunIo<'a>,
    extension: Option<&'a mut dyn IronClawCalls>,
) -> Result<RunReport, LaunchError> {
    let start = Instant::now();
    let Prepared {
        mut vm,
        measurement,
        start,
        t_created,
        t_loaded,
        t_measured,
    } = prepare(start, guest, module, inputs, config, None)?;

    let mut dispatcher = Dispatcher::new(io, config.max_output_bytes, config.max_hypercalls);
    if let Some(ext) = extension {
        dispatcher = dispatcher.with_extension(ext);
    }
    let watchdog = Watchdog::arm(config.timeout.saturating_sub(start.elapsed()))?;
    let outcome = loop {
        let exit = vm.run()?;
        match exit {
            Exit::Hypercall => match dispatcher.handle(vm.memory()) {
                Ok(Step::Continue) => {}
                Ok(Step::Exit(e)) => break Ok(e),
                Err(e) => break Err(LaunchError::from(e)),
            },
            Exit::Fault(f) => break Err(LaunchError::GuestFault(f)),
            Exit::Interrupted => {}
            Exit::Unexpected(reason) => break Err(LaunchError::UnexpectedExit(reason)),
        }
        if watchdog.expired() {
            break Err(LaunchError::Timeout {
                limit: config.timeout,
            });
        }
    };
    let t_exit = Instant::now();
    drop(watchdog);
    let tsc_khz = vm.tsc_khz();
    drop(vm);
    let t_end = Instant::now();

    let guest = outcome?;
    let ticks = |t: u64| {
        Duration::from_nanos(
            t.saturating_mul(1_000_000)
                .checked_div(tsc_khz)
                .unwrap_or(0),
        )
    };
    let compile = ticks(guest.compile_ticks);
    let run_time = ticks(guest.run_ticks);
    let in_guest = t_exit.saturating_duration_since(t_measured);
    let timings = Timings {
        vm_create: t_created - start,
        load: t_loaded - t_created,
        measure: t_measured - t_loaded,
        shim_start: in_guest.saturating_sub(compile + run_time),
        compile,
        run: run_time,
        teardown: t_end - t_exit,
        first_output: dispatcher.first_output().map(|t| t - start),
        to_exit: t_exit - start,
        total: t_end - start,
    };
    let exit_code = guest_result(&guest, config)?;
    Ok(RunReport {
        exit_code,
        measurement,
        timings,
        hypercalls: dispatcher.calls(),
    })
}

/// The module's exit code, or the limit/fault the shim reported.
pub(crate) fn guest_result(guest: &GuestExit, config: &LaunchConfig) -> Result<u32, LaunchError> {
    let message = guest.message.clone();
    match guest.kind {
        ExitKind::Exited => Ok(guest.code),
        ExitKind::Trap => Err(LaunchError::Trap { message }),
        ExitKind::FuelExhausted => Err(LaunchError::FuelExhausted {
            fuel: config.fuel.unwrap_or(u64::MAX),
        }),
        ExitKind::MemoryLimit => Err(LaunchError::MemoryLimit { message }),
        ExitKind::InvalidModule => Err(LaunchError::InvalidModule { message }),
        ExitKind::LinkError => Err(LaunchError::Link { message }),
        ExitKind::ShimError => Err(LaunchError::Shim { message }),
    }
}

/// A VM loaded with shim, module and inputs, measured, not yet run.
pub(crate) struct Prepared {
    pub vm: Vm,
    pub measurement: LaunchMeasurement,
    pub start: Instant,
    pub t_created: Instant,
    pub t_loaded: Instant,
    pub t_measured: Instant,
}

/// Validates, creates the VM, loads everything and computes the measurement (a service
/// launch when `service` is given).
pub(crate) fn prepare(
    start: Instant,
    guest: &GuestImage<'_>,
    module: &[u8],
    inputs: &LaunchInputs,
    config: &LaunchConfig,
    service: Option<&crate::service::ServiceConfig>,
) -> Result<Prepared, LaunchError> {
    config.validate()?;
    let entry_ok =
        guest.entry >= l::SHIM_BASE && guest.entry < l::SHIM_BASE + guest.bytes.len() as u64;
    if !entry_ok {
        return Err(LaunchError::Inputs(format!(
            "guest entry point {:#x} is outside the image",
            guest.entry
        )));
    }
    let args = strings_blob(&inputs.args, "argument")?;
    let env = strings_blob(&inputs.env, "environment")?;

    // Guest placement: shim image, then module, args, env (page aligned), heap to the end.
    let image = guest.bytes;
    let memory = config.memory_bytes();
    let page = l::PAGE_SIZE;
    let too_big = || {
        LaunchError::Inputs(format!(
            "module and inputs do not fit in {} MiB of guest memory",
            config.memory_mib
        ))
    };
    let image_end = align_up(l::SHIM_BASE + image.len() as u64, page).ok_or_else(too_big)?;
    let module_addr = image_end;
    let args_addr = align_up(module_addr + module.len() as u64, page).ok_or_else(too_big)?;
    let env_addr = align_up(args_addr + args.len() as u64, page).ok_or_else(too_big)?;
    let heap_start = align_up(env_addr + env.len() as u64, page).ok_or_else(too_big)?;
    if heap_start.saturating_add(crate::config::GUEST_OVERHEAD_BYTES / 2) > memory {
        return Err(too_big());
    }

    let vm = Vm::create(memory, guest.entry)?;
    let t_created = Instant::now();

    let boot = BootInfo {
        magic: BOOT_MAGIC,
        abi_version: ABI_VERSION,
        memory_size: memory,
        module_addr,
        module_len: module.len() as u64,
        args_addr,
        args_len: args.len() as u64,
        argc: inputs.args.len() as u64,
        env_addr,
        env_len: env.len() as u64,
        envc: inputs.env.len() as u64,
        heap_start,
        heap_end: memory,
        fuel: config.fuel.unwrap_or(u64::MAX),
        max_wasm_memory: config.max_wasm_memory_bytes,
        max_table_elements: config.max_table_elements,
        tsc_khz: vm.tsc_khz(),
        realtime_ns: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0),
        flags: if config.debug { FLAG_DEBUG } else { 0 }
            | if service.is_some() { FLAG_SERVICE } else { 0 },
        listeners: service.map_or(0, |s| s.listen.len() as u64),
        net_window: service.map_or(0, |s| s.window),
        max_connections: service.map_or(0, |s| s.max_connections),
    };
    vm.write(l::SHIM_BASE, image, "shim image")?;
    vm.write(module_addr, module, "module")?;
    vm.write(args_addr, &args, "argv")?;
    vm.write(env_addr, &env, "environment")?;
    vm.write(l::BOOT_INFO_ADDR, &boot.encode(), "boot block")?;
    let t_loaded = Instant::now();
    let measurement = LaunchMeasurement::compute_with_service(
        l::SHIM_BASE,
        guest.entry,
        image,
        module,
        config,
        service,
    );
    let t_measured = Instant::now();
    if std::ptr::eq(image, crate::shim::SHIM_IMAGE) {
        // Copied and measured (from its build-time digest): the host never reads it again.
        crate::shim::release_image_pages();
    }
    Ok(Prepared {
        vm,
        measurement,
        start,
        t_created,
        t_loaded,
        t_measured,
    })
}
