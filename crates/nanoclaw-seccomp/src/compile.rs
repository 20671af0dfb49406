//! OCI `linux.seccomp` → libseccomp filter. Pure: validates untrusted input and builds the filter
//! in memory; nothing is loaded into the kernel here.

use std::collections::BTreeMap;
use std::path::PathBuf;

use libseccomp::error::SeccompError;
use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag,
    LinuxSeccompOperator, LinuxSyscall,
};

use crate::MAX_ERRNO;

/// The number of syscall arguments seccomp can inspect (`seccomp_data.args`).
const MAX_ARGS: usize = 6;

/// `EPERM`: what `SCMP_ACT_ERRNO` / `SCMP_ACT_TRACE` return when no `errnoRet` is given.
const EPERM: u32 = 1;

/// Syscalls the runtime itself issues between installing the filter and `execve` while the
/// notify listener fd is being handed to the agent. A NOTIFY rule on one of them would make the
/// init wait for an agent that has not received its fd yet: a deadlock, so it is refused
/// (runc refuses `write` for the same reason).
const NOTIFY_FORBIDDEN: &[&str] = &["write", "sendmsg", "close"];

/// Why a `linux.seccomp` section was refused. Every variant names the JSON field it is about.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error("{field}: {value} is not a valid errno (must be 0..={max})", max = MAX_ERRNO)]
    ErrnoOutOfRange { field: String, value: u32 },
    #[error("{field}: {value} does not fit the 16-bit SCMP_ACT_TRACE message")]
    TraceValueOutOfRange { field: String, value: u32 },
    #[error(
        "{field}: errnoRet is only meaningful with SCMP_ACT_ERRNO or SCMP_ACT_TRACE, not {action}"
    )]
    ErrnoRetWithoutErrno {
        field: String,
        action: LinuxSeccompAction,
    },
    #[error("linux.seccomp.defaultAction: SCMP_ACT_NOTIFY cannot be the default action")]
    NotifyAsDefault,
    #[error("{field}: SCMP_ACT_NOTIFY needs linux.seccomp.listenerPath")]
    NotifyWithoutListener { field: String },
    #[error("{field}: SCMP_ACT_NOTIFY on `{name}` would deadlock the runtime, which uses it to hand over the listener fd")]
    NotifyOnRuntimeSyscall { field: String, name: String },
    #[error("linux.seccomp.listenerPath: {path:?} must be an absolute path")]
    ListenerPathNotAbsolute { path: PathBuf },
    #[error("{field}: a syscall rule must name at least one syscall")]
    EmptyNames { field: String },
    #[error("{field}: empty syscall name")]
    EmptyName { field: String },
    #[error("{field}: argument index {index} out of range (seccomp sees arguments 0..=5)")]
    ArgIndexOutOfRange { field: String, index: usize },
    #[error("{field}: {arch} is not supported by this libseccomp: {source}")]
    UnsupportedArch {
        field: String,
        arch: Arch,
        #[source]
        source: SeccompError,
    },
    #[error("{field}: {flag} is not supported by this kernel/libseccomp: {source}")]
    UnsupportedFlag {
        field: String,
        flag: LinuxSeccompFilterFlag,
        #[source]
        source: SeccompError,
    },
    #[error("{field}: libseccomp refused the rule: {source}")]
    Rule {
        field: String,
        #[source]
        source: SeccompError,
    },
    #[error("linux.seccomp: libseccomp could not create a filter: {0}")]
    Context(#[source] SeccompError),
}

/// A validated filter, ready to be installed with [`CompiledFilter::install`].
///
/// Compile in the parent (validation) and again in the container init, or compile once before
/// `clone`: the filter lives in ordinary memory and survives the fork.
pub struct CompiledFilter {
    pub(crate) ctx: ScmpFilterContext,
    pub(crate) uses_notify: bool,
    pub(crate) listener_path: Option<PathBuf>,
    pub(crate) listener_metadata: Option<String>,
    skipped: Vec<String>,
    rules: usize,
}

impl std::fmt::Debug for CompiledFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledFilter")
            .field("uses_notify", &self.uses_notify)
            .field("listener_path", &self.listener_path)
            .field("skipped", &self.skipped)
            .field("rules", &self.rules)
            .finish_non_exhaustive()
    }
}

impl CompiledFilter {
    /// Syscall names the profile lists that this kernel/libseccomp does not know (skipped, as
    /// runc does), in profile order, without duplicates.
    pub fn skipped_syscalls(&self) -> &[String] {
        &self.skipped
    }

    /// True when at least one rule uses `SCMP_ACT_NOTIFY`: installing yields a listener fd.
    pub fn uses_notify(&self) -> bool {
        self.uses_notify
    }

    /// `linux.seccomp.listenerPath`, where the listener fd goes.
    pub fn listener_path(&self) -> Option<&std::path::Path> {
        self.listener_path.as_deref()
    }

    /// `linux.seccomp.listenerMetadata`, passed to the agent verbatim.
    pub fn listener_metadata(&self) -> Option<&str> {
        self.listener_metadata.as_deref()
    }

    /// The number of libseccomp rules added (after skipping unknown names and no-op rules).
    pub fn rule_count(&self) -> usize {
        self.rules
    }

    /// Writes the BPF program (`struct sock_filter[]`) libseccomp generates for this filter to
    /// `out`: exactly what [`CompiledFilter::install`] would load. Exercises code generation
    /// without touching the process (fuzzing, diagnostics).
    pub fn export_bpf(&self, out: impl std::os::fd::AsFd) -> Result<(), CompileError> {
        self.ctx.export_bpf(out).map_err(CompileError::Context)
    }
}

/// Validates `seccomp` and builds its filter. Pure: nothing is loaded.
pub fn compile(seccomp: &LinuxSeccomp) -> Result<CompiledFilter, CompileError> {
    let default_action = to_action(
        seccomp.default_action(),
        seccomp.default_errno_ret(),
        "linux.seccomp.defaultErrnoRet",
    )?;
    if default_action == ScmpAction::Notify {
        return Err(CompileError::NotifyAsDefault);
    }

    let listener_path = seccomp.listener_path().clone();
    if let Some(path) = &listener_path {
        if !path.is_absolute() {
            return Err(CompileError::ListenerPathNotAbsolute { path: path.clone() });
        }
    }

    let mut ctx = ScmpFilterContext::new(default_action).map_err(CompileError::Context)?;
    // The runtime sets no_new_privs from process.noNewPrivileges; libseccomp must not force it.
    ctx.set_ctl_nnp(false).map_err(CompileError::Context)?;

    for (i, arch) in seccomp.architectures().iter().flatten().enumerate() {
        let field = format!("linux.seccomp.architectures[{i}]");
        ctx.add_arch(to_arch(*arch))
            .map_err(|source| CompileError::UnsupportedArch {
                field,
                arch: *arch,
                source,
            })?;
    }

    for (i, flag) in seccomp.flags().iter().flatten().enumerate() {
        let field = format!("linux.seccomp.flags[{i}]");
        let result = match flag {
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => ctx.set_ctl_log(true),
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => ctx.set_ctl_tsync(true),
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => ctx.set_ctl_ssb(true),
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => ctx.set_ctl_waitkill(true),
        };
        result.map_err(|source| CompileError::UnsupportedFlag {
            field,
            flag: *flag,
            source,
        })?;
    }

    let mut skipped: Vec<String> = Vec::new();
    let mut uses_notify = false;
    let mut rules = 0usize;
    for (i, rule) in seccomp.syscalls().iter().flatten().enumerate() {
        let base = format!("linux.seccomp.syscalls[{i}]");
        let action = to_action(rule.action(), rule.errno_ret(), &format!("{base}.errnoRet"))?;
        let conditions = to_conditions(rule, &base)?;
        if rule.names().is_empty() {
            return Err(CompileError::EmptyNames {
                field: format!("{base}.names"),
            });
        }
        if action == ScmpAction::Notify {
            uses_notify = true;
            if listener_path.is_none() {
                return Err(CompileError::NotifyWithoutListener {
                    field: format!("{base}.action"),
                });
            }
        }
        for (j, name) in rule.names().iter().enumerate() {
            let field = format!("{base}.names[{j}]");
            if name.is_empty() {
                return Err(CompileError::EmptyName { field });
            }
            if action == ScmpAction::Notify && NOTIFY_FORBIDDEN.contains(&name.as_str()) {
                return Err(CompileError::NotifyOnRuntimeSyscall {
                    field,
                    name: name.clone(),
                });
            }
            // A rule that repeats the default action is a no-op, and libseccomp refuses it.
            if action == default_action {
                continue;
            }
            let Ok(syscall) = ScmpSyscall::from_name(name) else {
                log::debug!(
                    "seccomp: {field}: `{name}` is unknown to this kernel/libseccomp; skipped"
                );
                if !skipped.contains(name) {
                    skipped.push(name.clone());
                }
                continue;
            };
            rules = rules.saturating_add(add_rule(&mut ctx, action, syscall, &conditions, &field)?);
        }
    }

    Ok(CompiledFilter {
        ctx,
        uses_notify,
        listener_path,
        listener_metadata: seccomp.listener_metadata().clone(),
        skipped,
        rules,
    })
}

/// Adds one syscall's rule(s); returns how many libseccomp rules that took.
fn add_rule(
    ctx: &mut ScmpFilterContext,
    action: ScmpAction,
    syscall: ScmpSyscall,
    conditions: &Conditions,
    field: &str,
) -> Result<usize, CompileError> {
    let err = |source| CompileError::Rule {
        field: field.to_owned(),
        source,
    };
    match conditions {
        Conditions::None => {
            ctx.add_rule(action, syscall).map_err(err)?;
            Ok(1)
        }
        Conditions::All(all) => {
            ctx.add_rule_conditional(action, syscall, all)
                .map_err(err)?;
            Ok(1)
        }
        Conditions::Any(any) => {
            for one in any {
                ctx.add_rule_conditional(action, syscall, std::slice::from_ref(one))
                    .map_err(err)?;
            }
            Ok(any.len())
        }
    }
}

/// How a rule's argument conditions combine (see the crate docs).
enum Conditions {
    None,
    /// Distinct argument indexes: one rule, conditions ANDed.
    All(Vec<ScmpArgCompare>),
    /// Some argument index repeats: one rule per condition, ORed.
    Any(Vec<ScmpArgCompare>),
}

fn to_conditions(rule: &LinuxSyscall, base: &str) -> Result<Conditions, CompileError> {
    let Some(args) = rule.args() else {
        return Ok(Conditions::None);
    };
    if args.is_empty() {
        return Ok(Conditions::None);
    }
    let mut per_index: BTreeMap<usize, usize> = BTreeMap::new();
    let mut out = Vec::with_capacity(args.len());
    for (k, arg) in args.iter().enumerate() {
        out.push(to_condition(arg, &format!("{base}.args[{k}]"))?);
        let count = per_index.entry(arg.index()).or_insert(0);
        *count = count.saturating_add(1);
    }
    if per_index.values().any(|&n| n > 1) {
        Ok(Conditions::Any(out))
    } else {
        Ok(Conditions::All(out))
    }
}

fn to_condition(arg: &LinuxSeccompArg, field: &str) -> Result<ScmpArgCompare, CompileError> {
    let index = arg.index();
    if index >= MAX_ARGS {
        return Err(CompileError::ArgIndexOutOfRange {
            field: format!("{field}.index"),
            index,
        });
    }
    // Checked above: index < 6.
    let arg_no = index as u32;
    let value = arg.value();
    Ok(match arg.op() {
        LinuxSeccompOperator::ScmpCmpNe => {
            ScmpArgCompare::new(arg_no, ScmpCompareOp::NotEqual, value)
        }
        LinuxSeccompOperator::ScmpCmpLt => ScmpArgCompare::new(arg_no, ScmpCompareOp::Less, value),
        LinuxSeccompOperator::ScmpCmpLe => {
            ScmpArgCompare::new(arg_no, ScmpCompareOp::LessOrEqual, value)
        }
        LinuxSeccompOperator::ScmpCmpEq => ScmpArgCompare::new(arg_no, ScmpCompareOp::Equal, value),
        LinuxSeccompOperator::ScmpCmpGe => {
            ScmpArgCompare::new(arg_no, ScmpCompareOp::GreaterEqual, value)
        }
        LinuxSeccompOperator::ScmpCmpGt => {
            ScmpArgCompare::new(arg_no, ScmpCompareOp::Greater, value)
        }
        // OCI: `value` is the mask, `valueTwo` the value the masked argument must equal.
        LinuxSeccompOperator::ScmpCmpMaskedEq => ScmpArgCompare::new(
            arg_no,
            ScmpCompareOp::MaskedEqual(value),
            arg.value_two().unwrap_or(0),
        ),
    })
}

fn to_action(
    action: LinuxSeccompAction,
    errno_ret: Option<u32>,
    errno_field: &str,
) -> Result<ScmpAction, CompileError> {
    if errno_ret.is_some()
        && !matches!(
            action,
            LinuxSeccompAction::ScmpActErrno | LinuxSeccompAction::ScmpActTrace
        )
    {
        return Err(CompileError::ErrnoRetWithoutErrno {
            field: errno_field.to_owned(),
            action,
        });
    }
    let value = errno_ret.unwrap_or(EPERM);
    Ok(match action {
        LinuxSeccompAction::ScmpActErrno => {
            if value > MAX_ERRNO {
                return Err(CompileError::ErrnoOutOfRange {
                    field: errno_field.to_owned(),
                    value,
                });
            }
            // value <= 4095, so it fits an i32.
            ScmpAction::Errno(value as i32)
        }
        LinuxSeccompAction::ScmpActTrace => {
            let msg = u16::try_from(value).map_err(|_| CompileError::TraceValueOutOfRange {
                field: errno_field.to_owned(),
                value,
            })?;
            ScmpAction::Trace(msg)
        }
        // SCMP_ACT_KILL is the kernel's SECCOMP_RET_KILL, which kills the thread.
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            ScmpAction::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        LinuxSeccompAction::ScmpActNotify => ScmpAction::Notify,
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
    })
}

fn to_arch(arch: Arch) -> ScmpArch {
    match arch {
        Arch::ScmpArchNative => ScmpArch::Native,
        Arch::ScmpArchX86 => ScmpArch::X86,
        Arch::ScmpArchX86_64 => ScmpArch::X8664,
        Arch::ScmpArchX32 => ScmpArch::X32,
        Arch::ScmpArchArm => ScmpArch::Arm,
        Arch::ScmpArchAarch64 => ScmpArch::Aarch64,
        Arch::ScmpArchMips => ScmpArch::Mips,
        Arch::ScmpArchMips64 => ScmpArch::Mips64,
        Arch::ScmpArchMips64n32 => ScmpArch::Mips64N32,
        Arch::ScmpArchMipsel => ScmpArch::Mipsel,
        Arch::ScmpArchMipsel64 => ScmpArch::Mipsel64,
        Arch::ScmpArchMipsel64n32 => ScmpArch::Mipsel64N32,
        Arch::ScmpArchPpc => ScmpArch::Ppc,
        Arch::ScmpArchPpc64 => ScmpArch::Ppc64,
        Arch::ScmpArchPpc64le => ScmpArch::Ppc64Le,
        Arch::ScmpArchS390 => ScmpArch::S390,
        Arch::ScmpArchS390x => ScmpArch::S390X,
        Arch::ScmpArchParisc => ScmpArch::Parisc,
        Arch::ScmpArchParisc64 => ScmpArch::Parisc64,
        Arch::ScmpArchRiscv64 => ScmpArch::Riscv64,
        Arch::ScmpArchLoongarch64 => ScmpArch::Loongarch64,
        Arch::ScmpArchM68k => ScmpArch::M68k,
        Arch::ScmpArchSh => ScmpArch::Sh,
        Arch::ScmpArchSheb => ScmpArch::Sheb,
    }
}
