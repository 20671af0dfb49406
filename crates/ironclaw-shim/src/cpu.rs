//! The few CPU instructions the shim needs, each in one place. All run at CPL3.

/// Exits to the host through an I/O port write (RFLAGS.IOPL=3 allows it at CPL3).
pub fn out8(port: u16, value: u8) {
    // SAFETY: `out` has no memory effects visible to Rust; the host owns the port and
    // resumes the vCPU after handling it (or ends the VM).
    unsafe { core::arch::asm!("out dx, al", in("dx") port, in("al") value, options(nostack, preserves_flags)) }
}
