//! The few CPU instructions the shim needs, each in one place. All run at CPL3, natively.

/// Exits to the host through an I/O port write. The host allows exactly the hypercall port
/// in the TSS I/O bitmap (and sets RFLAGS.IOPL=3).
pub(crate) fn out8(port: u16, value: u8) {
    // SAFETY: `out` has no effect on Rust-visible state except through memory the host
    // writes during the exit; the asm block is not `nomem`, so it is a compiler memory
    // barrier and the shim re-reads the shared buffer afterwards.
    unsafe {
        core::arch::asm!("out dx, al", in("dx") port, in("al") value, options(nostack, preserves_flags))
    }
}

/// Reads the time-stamp counter.
pub(crate) fn rdtsc() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: rdtsc only reads the TSC (CR4.TSD is clear, so it is allowed at CPL3).
    unsafe {
        core::arch::asm!("rdtsc", out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags))
    };
    (u64::from(hi) << 32) | u64::from(lo)
}

/// One 64-bit value from RDRAND, retried as Intel recommends (10 tries), then RDSEED.
/// `None` if the hardware keeps failing. Randomness never comes from the host.
pub(crate) fn random_u64() -> Option<u64> {
    for _ in 0..10 {
        let (value, ok): (u64, u8);
        // SAFETY: rdrand writes only the output register and CF; the host exposes it
        // in CPUID (KVM_GET_SUPPORTED_CPUID).
        unsafe {
            core::arch::asm!("rdrand {v}", "setc {ok}", v = out(reg) value, ok = out(reg_byte) ok, options(nomem, nostack))
        };
        if ok == 1 {
            return Some(value);
        }
    }
    for _ in 0..100 {
        let (value, ok): (u64, u8);
        // SAFETY: as above, for rdseed.
        unsafe {
            core::arch::asm!("rdseed {v}", "setc {ok}", v = out(reg) value, ok = out(reg_byte) ok, options(nomem, nostack))
        };
        if ok == 1 {
            return Some(value);
        }
        core::hint::spin_loop();
    }
    None
}
