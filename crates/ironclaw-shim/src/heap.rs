//! The global allocator: talc over the heap range from the boot block.
//!
//! talc is a small, fast, well-tested no_std allocator; the shim is single-threaded, so its
//! lock is a flag that only guards against re-entrancy (which would be a shim bug).

use core::sync::atomic::{AtomicBool, Ordering};

/// A minimal `lock_api::RawMutex` for a single-threaded guest.
pub(crate) struct FlagLock(AtomicBool);

// SAFETY: `lock` only returns once it has atomically set the flag, `unlock` clears it, so
// at most one guard exists at a time — the contract of RawMutex.
unsafe impl lock_api::RawMutex for FlagLock {
    #[allow(clippy::declare_interior_mutable_const)]
    const INIT: Self = FlagLock(AtomicBool::new(false));
    type GuardMarker = lock_api::GuardNoSend;

    fn lock(&self) {
        while !self.try_lock() {
            core::hint::spin_loop();
        }
    }

    fn try_lock(&self) -> bool {
        self.0
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    unsafe fn unlock(&self) {
        self.0.store(false, Ordering::Release);
    }
}

#[global_allocator]
static ALLOCATOR: talc::TalcLock<FlagLock, talc::source::Manual> =
    talc::TalcLock::new(talc::source::Manual);

/// Hands `[start, end)` to the allocator. Returns false if talc refused the range.
///
/// # Safety
/// The range must be mapped, writable, unused by anything else for the rest of the run,
/// and called once before the first allocation.
pub(crate) unsafe fn init(start: u64, end: u64) -> bool {
    let size = end.saturating_sub(start) as usize;
    // SAFETY: forwarded from the caller's contract.
    unsafe { ALLOCATOR.lock().claim(start as *mut u8, size).is_some() }
}
