//! Runs the module: engine configuration (fuel), resource limits (memory and table caps),
//! the import check (only WASI preview 1 and IronClaw), instantiation, `_start`, and the
//! classification of how it ended into an `ExitKind`.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use ironclaw_abi::ExitKind;
use wasmi::TrapCode;
use wasmi::{Config, Engine, ExternType, FuncType, Linker, Module, Store, Val};
use wasmi_core::LimiterError;

use crate::boot::Boot;
use crate::wasi::{self, Clock};

/// The store's data: inputs for WASI and the limiter.
pub(crate) struct State {
    pub args: Vec<Vec<u8>>,
    pub env: Vec<Vec<u8>>,
    pub clock: Clock,
    pub limiter: Limiter,
    /// The enclave's KBS session, reused by every `get_secret` (its ephemeral key and
    /// cookie live here, in enclave memory, until the run ends).
    pub kbs: ironclaw_enclave::kbs_session::KbsSession,
    /// The service's sockets (`None` unless the launch is a service).
    pub net: Option<crate::sock::Net>,
}

/// Memory and table caps. A denied growth ends the run with `MemoryLimit` (a trap, rather
/// than `memory.grow` returning -1: a bomb must not be able to carry on).
pub(crate) struct Limiter {
    pub max_memory: usize,
    pub max_table: usize,
    /// Set when a growth was denied, with what was asked.
    pub denied: Option<String>,
}

impl wasmi::ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> Result<bool, LimiterError> {
        if desired > self.max_memory {
            self.denied = Some(format!(
                "Wasm memory growth from {current} to {desired} bytes exceeds the cap of {} bytes",
                self.max_memory
            ));
            return Err(LimiterError::ResourceLimiterDeniedAllocation);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> Result<bool, LimiterError> {
        if desired > self.max_table {
            self.denied = Some(format!(
                "Wasm table growth from {current} to {desired} elements exceeds the cap of {} elements",
                self.max_table
            ));
            return Err(LimiterError::ResourceLimiterDeniedAllocation);
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        1
    }

    fn tables(&self) -> usize {
        100
    }

    fn memories(&self) -> usize {
        1
    }
}

/// How the run ended.
pub(crate) struct Outcome {
    pub kind: ExitKind,
    pub code: u32,
    pub message: String,
    pub compile_ticks: u64,
    pub run_ticks: u64,
}

fn outcome(kind: ExitKind, code: u32, message: String) -> Outcome {
    Outcome {
        kind,
        code,
        message,
        compile_ticks: 0,
        run_ticks: 0,
    }
}

/// Checks every import before linking, so an unsupported one is named precisely.
fn check_imports(module: &Module, linker: &mut Linker<State>) -> Result<(), String> {
    for import in module.imports() {
        let (m, name) = (import.module(), import.name());
        if m == wasi::MODULE && wasi::ALL.contains(&name) {
            if wasi::IMPLEMENTED.contains(&name) || crate::sock::IMPLEMENTED.contains(&name) {
                continue;
            }
            let ExternType::Func(ty) = import.ty() else {
                return Err(format!("import `{m}::{name}` is not a function"));
            };
            define_stub(linker, name, ty.clone())?;
        } else if m == crate::ironclaw_calls::MODULE
            && crate::ironclaw_calls::PROVIDED.contains(&name)
        {
            continue;
        } else if m == wasi::MODULE {
            return Err(format!(
                "import `{m}::{name}` is not a WASI preview 1 function"
            ));
        } else if m == crate::ironclaw_calls::MODULE {
            return Err(format!(
                "import `{m}::{name}` is not an IronClaw call this shim provides"
            ));
        } else {
            return Err(format!(
                "import `{m}::{name}` is neither WASI preview 1 (`{}`) nor IronClaw (`{}`)",
                wasi::MODULE,
                crate::ironclaw_calls::MODULE
            ));
        }
    }
    Ok(())
}

/// Defines a stub for a WASI function this shim does not implement, returning its errno.
fn define_stub(linker: &mut Linker<State>, name: &str, ty: FuncType) -> Result<(), String> {
    if ty.results() != [wasmi::ValType::I32] {
        return Err(format!(
            "import `{}::{name}` has a type that is not WASI's",
            wasi::MODULE
        ));
    }
    let static_name: &'static str = wasi::ALL.iter().copied().find(|n| *n == name).unwrap_or("");
    linker
        .func_new(wasi::MODULE, name, ty, move |_caller, params, results| {
            let first = match params.first() {
                Some(Val::I32(v)) => Some(*v),
                _ => None,
            };
            if let Some(slot) = results.first_mut() {
                *slot = Val::I32(wasi::stub_errno(static_name, first));
            }
            Ok(())
        })
        .map(|_| ())
        .map_err(|e| format!("defining stub `{name}`: {e}"))
}

/// Classifies an error from instantiation or `_start`.
fn classify(e: &wasmi::Error, limiter: &Limiter, fuel_limited: bool) -> Outcome {
    if let Some(code) = e.i32_exit_status() {
        return outcome(ExitKind::Exited, code as u32, String::new());
    }
    if let Some(denied) = &limiter.denied {
        return outcome(ExitKind::MemoryLimit, 0, denied.clone());
    }
    match e.as_trap_code() {
        Some(TrapCode::OutOfFuel) if fuel_limited => {
            outcome(ExitKind::FuelExhausted, 0, format!("{e}"))
        }
        Some(TrapCode::GrowthOperationLimited) => outcome(ExitKind::MemoryLimit, 0, format!("{e}")),
        _ => outcome(ExitKind::Trap, 0, format!("{e}")),
    }
}

/// A module that carries its argv in an `ironclaw.argv` custom section (measured with the
/// module) runs only with exactly that argv: the boot block's argv is written by the host
/// after measurement, so on SEV-SNP/TDX it could differ from what the enclave attests to.
fn check_measured_argv(module: &Module, host_args: &[Vec<u8>]) -> Result<(), String> {
    use ironclaw_abi::measured_argv;
    let mut sections = module
        .custom_sections()
        .filter(|s| s.name() == measured_argv::SECTION);
    let Some(section) = sections.next() else {
        return Ok(());
    };
    if sections.next().is_some() {
        return Err(format!(
            "module has more than one `{}` section",
            measured_argv::SECTION
        ));
    }
    let measured = measured_argv::decode(section.data())
        .map_err(|e| format!("module's `{}` section: {e}", measured_argv::SECTION))?;
    if measured.len() != host_args.len()
        || measured
            .iter()
            .zip(host_args)
            .any(|(m, h)| *m != h.as_slice())
    {
        return Err(format!(
            "argv from the host differs from the module's measured `{}` section",
            measured_argv::SECTION
        ));
    }
    Ok(())
}

/// Runs the module of `boot` to completion.
pub(crate) fn run(boot: Boot, boot_tsc: u64) -> Outcome {
    let info = boot.info;
    let fuel_limited = info.fuel != u64::MAX;
    let mut config = Config::default();
    config.consume_fuel(fuel_limited);
    let engine = Engine::new(&config);

    let t0 = crate::cpu::rdtsc();
    let module = match Module::new(&engine, boot.module) {
        Ok(m) => m,
        Err(e) => return outcome(ExitKind::InvalidModule, 0, format!("{e}")),
    };
    let t1 = crate::cpu::rdtsc();
    let compile_ticks = t1.saturating_sub(t0);
    if let Err(message) = check_measured_argv(&module, &boot.args) {
        return outcome(ExitKind::ShimError, 0, message);
    }

    let state = State {
        args: boot.args,
        env: boot.env,
        clock: Clock {
            tsc_khz: info.tsc_khz,
            boot_tsc,
            realtime_at_boot_ns: info.realtime_ns,
        },
        limiter: Limiter {
            max_memory: usize::try_from(info.max_wasm_memory).unwrap_or(usize::MAX),
            max_table: usize::try_from(info.max_table_elements).unwrap_or(usize::MAX),
            denied: None,
        },
        kbs: ironclaw_enclave::kbs_session::KbsSession::new(ironclaw_enclave::tee::TeeKind::KVM),
        net: (info.flags & ironclaw_abi::boot::FLAG_SERVICE != 0).then(|| {
            crate::sock::Net::new(
                info.listeners as u32,
                info.net_window,
                info.max_connections,
                fuel_limited.then_some(info.fuel),
            )
        }),
    };
    let mut store = Store::new(&engine, state);
    store.limiter(|s| &mut s.limiter);
    if fuel_limited {
        if let Err(e) = store.set_fuel(info.fuel) {
            return outcome(ExitKind::ShimError, 0, format!("setting fuel: {e}"));
        }
    }
    let mut linker = Linker::<State>::new(&engine);
    if let Err(e) = wasi::define(&mut linker)
        .and_then(|_| crate::sock::define(&mut linker))
        .and_then(|_| crate::ironclaw_calls::define(&mut linker))
    {
        return outcome(
            ExitKind::ShimError,
            0,
            format!("defining host functions: {e}"),
        );
    }
    if let Err(message) = check_imports(&module, &mut linker) {
        return outcome(ExitKind::LinkError, 0, message);
    }
    let finish = |mut o: Outcome| {
        o.compile_ticks = compile_ticks;
        o.run_ticks = crate::cpu::rdtsc().saturating_sub(t1);
        o
    };
    let instance = match linker.instantiate_and_start(&mut store, &module) {
        Ok(i) => i,
        Err(e) => {
            let o = classify(&e, &store.data().limiter, fuel_limited);
            // Anything at instantiation that is not a limit, an exit or fuel is a link problem
            // (type mismatch of an import, a failing start function traps).
            let o = if o.kind == ExitKind::Trap && e.as_trap_code().is_none() {
                outcome(ExitKind::LinkError, 0, format!("{e}"))
            } else {
                o
            };
            return finish(o);
        }
    };
    let start = match instance.get_typed_func::<(), ()>(&store, "_start") {
        Ok(f) => f,
        Err(_) => {
            return finish(outcome(
                ExitKind::LinkError,
                0,
                String::from("module exports no `_start: [] -> []` function"),
            ))
        }
    };
    let result = start.call(&mut store, ());
    finish(match result {
        Ok(()) => outcome(ExitKind::Exited, 0, String::new()),
        Err(e) => classify(&e, &store.data().limiter, fuel_limited),
    })
}
