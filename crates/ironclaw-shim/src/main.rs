//! IronClaw guest shim: runs at CPL3 in a KVM micro-VM with no guest OS, interprets one
//! WebAssembly module with wasmi, and implements WASI preview 1 and IronClaw's calls over
//! the one shared hypercall buffer (`crates/ironclaw-abi`).
//!
//! Start-up: the host enters [`_start`] in 64-bit mode at CPL3 with a stack, page tables
//! and fault handlers already in place. The shim reads and validates the boot block, hands
//! the heap range to the allocator, copies its inputs in, runs the module and reports how
//! it ended with one EXIT hypercall (which also carries the last output).
//!
//! Everything here runs at CPL3, natively even under a software KVM backend, with SSE
//! enabled by the host (the hardware-float ABI lets wasmi's tail-call dispatcher keep every
//! handler argument in a register); the CPL0 code is the host's SSE-free fault stubs.
#![no_std]
#![no_main]

extern crate alloc;

mod boot;
mod cpu;
mod heap;
mod hostcall;
mod ironclaw_calls;
// The C memory functions are linker-visible symbols (`#[no_mangle]`), not a Rust API.
#[allow(unreachable_pub)]
mod mem;
mod runner;
mod sock;
mod wasi;

use ironclaw_abi::ExitKind;

/// Entry point: RSP = `SHIM_STACK_TOP - 8` (aligned as after a `call`), RDI = boot block.
#[no_mangle]
#[link_section = ".text._start"]
pub extern "C" fn _start() -> ! {
    let boot_tsc = cpu::rdtsc();
    let info = match boot::read_info() {
        Ok(i) => i,
        Err(e) => {
            let msg = alloc_free_message(e);
            hostcall::exit(ExitKind::ShimError, 0, [0, 0], msg)
        }
    };
    // SAFETY: `validate` checked the heap lies inside guest memory, above the shim image and
    // clear of the module and inputs; nothing else uses it; this is the first allocation.
    if !unsafe { heap::init(info.heap_start, info.heap_end) } {
        hostcall::exit(
            ExitKind::ShimError,
            0,
            [0, 0],
            b"heap range refused by the allocator",
        )
    }
    let boot = match boot::load(info) {
        Ok(b) => b,
        Err(msg) => hostcall::exit(ExitKind::ShimError, 0, [0, 0], msg.as_bytes()),
    };
    let o = runner::run(boot, boot_tsc);
    hostcall::exit(
        o.kind,
        o.code,
        [o.compile_ticks, o.run_ticks],
        o.message.as_bytes(),
    )
}

fn alloc_free_message(e: ironclaw_abi::boot::BootError) -> &'static [u8] {
    use ironclaw_abi::boot::BootError::*;
    match e {
        BadMagic => b"boot block: bad magic",
        BadVersion(_) => b"boot block: ABI version mismatch",
        BadRegion("module") => b"boot block: module region invalid",
        BadRegion("args") => b"boot block: argv region invalid",
        BadRegion("env") => b"boot block: environment region invalid",
        BadRegion(_) => b"boot block: heap region invalid",
        BadMemorySize => b"boot block: memory size invalid",
        BadService => b"boot block: service fields invalid",
    }
}

/// A fixed buffer for formatting the panic message without allocating.
struct MessageBuf {
    buf: [u8; 512],
    len: usize,
}

impl core::fmt::Write for MessageBuf {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let n = s.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    use core::fmt::Write;
    let mut m = MessageBuf {
        buf: [0; 512],
        len: 0,
    };
    let _ = write!(m, "shim panic: {}", info.message());
    let msg = &m.buf[..m.len];
    // The no_std default allocation-error handler panics with this text: the guest heap is
    // exhausted, which is a memory limit, not a shim bug.
    let kind = if msg.windows(20).any(|w| w == b"memory allocation of") {
        ExitKind::MemoryLimit
    } else {
        ExitKind::ShimError
    };
    hostcall::exit(kind, 0, [0, 0], msg)
}
