//! IronClaw's own calls for the module (import module `"ironclaw"`): attestation, sealing,
//! secrets — owned by issue 7 (the attestation engineer), built on
//! [`crate::hostcall::call`] with call numbers from `ironclaw_abi::call::IRONCLAW_FIRST ..=
//! IRONCLAW_LAST`.
//!
//! How to add a call:
//! 1. give it a number in that range in `ironclaw_abi::call` and document args/payload/
//!    response there;
//! 2. define it here with `linker.func_wrap(MODULE, "name", ...)`, range-check every module
//!    pointer like `wasi.rs` does, and validate the host's answer as hostile input;
//! 3. add its name to [`PROVIDED`] so the import check accepts it;
//! 4. handle the number on the host in an `ironclaw::hypercall::IronClawCalls`
//!    implementation (the host validates the payload as hostile input too).

use wasmi::Linker;

use crate::runner::State;

/// Import module name of IronClaw's calls.
pub const MODULE: &str = "ironclaw";

/// Names this shim defines under [`MODULE`]. None yet: issue 7 adds them.
pub const PROVIDED: &[&str] = &[];

/// Defines IronClaw's calls in `linker`.
pub fn define(_linker: &mut Linker<State>) -> Result<(), wasmi::errors::LinkerError> {
    Ok(())
}
