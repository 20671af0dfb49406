//! IronClaw guest shim. See the crate description and `crates/ironclaw-abi` for the ABI.
#![no_std]
#![no_main]

mod cpu;
mod hostcall;

use ironclaw_abi::{call, ExitKind};

/// Entry point: the host starts the vCPU here at CPL3 in 64-bit mode with
/// RSP = `SHIM_STACK_TOP - 8` (so the stack is aligned as after a `call`).
#[no_mangle]
#[link_section = ".text._start"]
pub extern "C" fn _start() -> ! {
    hostcall::write_output(ironclaw_abi::output::STDOUT, b"hello from the shim\n");
    hostcall::exit(ExitKind::Exited, 0, b"")
}

#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    hostcall::exit(ExitKind::ShimError, 0, b"shim panic")
}

#[allow(dead_code)]
const _: u32 = call::EXIT;
