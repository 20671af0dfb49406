//! The C memory functions the compiler emits calls to (`memcpy`, `memmove`, `memset`,
//! `memcmp`, `bcmp`). The shim is built for `x86_64-unknown-linux-gnu` without a libc (for
//! its hardware-float ABI, see crates/ironclaw/build/guest_build.rs), and that target's
//! `compiler_builtins` leaves these to the libc. The copies and fills are `rep movsb` /
//! `rep stosb` (fast-string microcode, no SSE state needed); the comparisons are plain
//! loops. None of them may be written as a loop the optimizer could turn back into a call
//! to itself: the copies are inline asm, the comparisons read words with `read_unaligned`.

use core::arch::asm;

/// # Safety
/// The C contract: `dst` and `src` valid for `n` bytes, not overlapping.
#[no_mangle]
pub unsafe extern "C" fn memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: the caller guarantees both ranges are valid and disjoint; `rep movsb` copies
    // exactly RCX bytes forwards (DF is clear per the ABI).
    unsafe {
        asm!("rep movsb", inout("rcx") n => _, inout("rdi") dst => _, inout("rsi") src => _,
             options(nostack, preserves_flags))
    };
    dst
}

/// # Safety
/// The C contract: `dst` and `src` valid for `n` bytes; they may overlap.
#[no_mangle]
pub unsafe extern "C" fn memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if (dst as usize).wrapping_sub(src as usize) >= n {
        // dst is below src or past its end: a forward copy never reads a byte it wrote.
        // SAFETY: as in `memcpy`; forward copying is correct for this overlap direction.
        return unsafe { memcpy(dst, src, n) };
    }
    // dst lies inside (src, src + n): copy backwards from the last byte.
    // SAFETY: both ranges are valid for n bytes (caller); with DF set `rep movsb` walks
    // down from RSI/RDI, which point at the last byte; DF is cleared again before the asm
    // ends, as the ABI requires.
    unsafe {
        asm!("std", "rep movsb", "cld",
             inout("rcx") n => _, inout("rdi") dst.add(n).wrapping_sub(1) => _,
             inout("rsi") src.add(n).wrapping_sub(1) => _, options(nostack))
    };
    dst
}

/// # Safety
/// The C contract: `dst` valid for `n` bytes.
#[no_mangle]
pub unsafe extern "C" fn memset(dst: *mut u8, c: i32, n: usize) -> *mut u8 {
    // SAFETY: the caller guarantees `dst` is valid for n bytes; `rep stosb` writes exactly
    // RCX copies of AL forwards.
    unsafe {
        asm!("rep stosb", inout("rcx") n => _, inout("rdi") dst => _, in("al") c as u8,
             options(nostack, preserves_flags))
    };
    dst
}

/// # Safety
/// The C contract: `a` and `b` valid for `n` bytes.
#[no_mangle]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: i + 8 <= n, and both ranges are valid for n bytes (caller).
        let (x, y) = unsafe {
            (
                (a.add(i) as *const u64).read_unaligned(),
                (b.add(i) as *const u64).read_unaligned(),
            )
        };
        if x != y {
            // Big-endian order of the words is the byte order of the comparison.
            return if u64::from_be(x) < u64::from_be(y) {
                -1
            } else {
                1
            };
        }
        i += 8;
    }
    while i < n {
        // SAFETY: i < n (caller: both valid for n bytes).
        let (x, y) = unsafe { (*a.add(i), *b.add(i)) };
        if x != y {
            return i32::from(x) - i32::from(y);
        }
        i += 1;
    }
    0
}

/// # Safety
/// The C contract: `a` and `b` valid for `n` bytes.
#[no_mangle]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: same contract as memcmp.
    unsafe { memcmp(a, b, n) }
}

/// Referenced by landing pads in the precompiled `alloc` of the build target. The shim is
/// built with `panic = "abort"`, so nothing ever unwinds and this is never reached; should
/// it be, the run ends as a shim error instead of jumping anywhere.
#[no_mangle]
pub extern "C" fn _Unwind_Resume() -> ! {
    crate::hostcall::exit(
        ironclaw_abi::ExitKind::ShimError,
        0,
        [0, 0],
        b"unwinding reached in a panic=abort shim",
    )
}
