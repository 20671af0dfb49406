//! NanoClaw seccomp: compiles OCI `linux.seccomp` into a BPF filter and installs it.
//!
//! The work is split along the trust boundary:
//!
//! * [`compile`] is pure: it validates an untrusted [`oci_spec::runtime::LinuxSeccomp`] and builds
//!   a libseccomp filter in memory. Every error names the offending field
//!   (`linux.seccomp.syscalls[3].args[0].op`). It never touches the calling process, so the
//!   runtime calls it while validating `config.json` (before anything is created) and the fuzzer
//!   calls it on arbitrary input.
//! * [`CompiledFilter::install`] loads the filter into the calling thread (or every thread with
//!   `SECCOMP_FILTER_FLAG_TSYNC`). The runtime does this last, just before `execve`.
//! * [`notify`] hands the `SCMP_ACT_NOTIFY` listener fd to the agent at `listenerPath`, with the
//!   container process state as payload, exactly as runc does.
//! * [`profile`] is the hardened default profile `nanoclaw spec` writes.
//!
//! Semantics follow runc where the OCI spec is silent:
//! * a syscall name unknown to this kernel/libseccomp is skipped (debug log), not an error —
//!   profiles list syscalls of every architecture and kernel generation;
//! * a rule whose action equals the default action is dropped (it would be a no-op);
//! * conditions on distinct arguments are ANDed in one rule; several conditions on the same
//!   argument are ORed (one rule each), since libseccomp cannot AND two conditions on one argument;
//! * `SCMP_ACT_ERRNO` / `SCMP_ACT_TRACE` without `errnoRet` return `EPERM`;
//! * `SCMP_ACT_KILL` means kill-thread (the kernel's historical `SECCOMP_RET_KILL`).
//! * libseccomp never sets `no_new_privs` itself: that is `process.noNewPrivileges`'s job.

mod compile;
mod install;
pub mod notify;
pub mod profile;

pub use compile::{compile, CompileError, CompiledFilter};
pub use install::InstallError;

/// The largest value `errnoRet` / `defaultErrnoRet` may carry: the kernel clamps anything above
/// `MAX_ERRNO` (4095), so a larger value is a mistake in the profile, not a request.
pub const MAX_ERRNO: u32 = 4095;

/// The libseccomp library this process runs with (`major.minor.micro`), for diagnostics.
pub fn libseccomp_version() -> Option<String> {
    libseccomp::ScmpVersion::current()
        .ok()
        .map(|v| format!("{}.{}.{}", v.major, v.minor, v.micro))
}
