//! Wall-clock limit: a POSIX timer that sends a signal to the vCPU thread, which makes
//! `KVM_RUN` return `EINTR`; the run loop then sees the deadline has passed.
//!
//! No thread per launch: one `timer_create` per run (deleted on drop). The timer re-fires
//! every millisecond after the deadline, so a signal that lands while the thread is outside
//! `KVM_RUN` (where it interrupts nothing) is followed by another one.

use std::sync::Once;
use std::time::{Duration, Instant};

/// Why the watchdog could not be armed.
#[derive(Debug, thiserror::Error)]
pub enum WatchdogError {
    #[error("timer_create failed: {0}")]
    Create(std::io::Error),
    #[error("timer_settime failed: {0}")]
    Arm(std::io::Error),
    #[error("installing the watchdog signal handler failed: {0}")]
    Handler(std::io::Error),
}

/// The signal used to kick the vCPU out of `KVM_RUN` (SIGRTMIN + 2; not used by the Rust
/// runtime or glibc).
pub fn kick_signal() -> libc::c_int {
    libc::SIGRTMIN() + 2
}

extern "C" fn on_kick(_: libc::c_int) {
    // Nothing to do: the point of the signal is that KVM_RUN returns EINTR.
}

static HANDLER: Once = Once::new();

fn install_handler() -> Result<(), WatchdogError> {
    let mut result = Ok(());
    HANDLER.call_once(|| {
        // SAFETY: a zeroed sigaction is a valid starting value; the handler is an
        // async-signal-safe no-op. SA_RESTART keeps other syscalls of this thread from
        // seeing EINTR; KVM_RUN returns -EINTR itself, which is never restarted.
        let rc = unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_kick as *const () as usize;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(kick_signal(), &sa, std::ptr::null_mut())
        };
        if rc != 0 {
            result = Err(WatchdogError::Handler(std::io::Error::last_os_error()));
        }
    });
    result
}

/// An armed timer for the current thread; disarmed and deleted on drop.
pub struct Watchdog {
    timer: libc::timer_t,
    deadline: Instant,
}

impl Watchdog {
    /// Arms a timer that signals the calling thread after `limit`.
    pub fn arm(limit: Duration) -> Result<Self, WatchdogError> {
        // A zero it_value would disarm the timer: a deadline already reached (a 1 ms timeout
        // spent creating the VM) must still fire, at once.
        let limit = limit.max(Duration::from_micros(1));
        install_handler()?;
        let deadline = Instant::now() + limit;
        // SAFETY: zeroed sigevent is valid; we fill in the documented fields for
        // SIGEV_THREAD_ID. gettid has no preconditions.
        let mut sev: libc::sigevent = unsafe { std::mem::zeroed() };
        sev.sigev_notify = libc::SIGEV_THREAD_ID;
        sev.sigev_signo = kick_signal();
        // SAFETY: gettid cannot fail.
        sev.sigev_notify_thread_id = unsafe { libc::gettid() };
        let mut timer: libc::timer_t = std::ptr::null_mut();
        // SAFETY: `sev` and `timer` are valid for the call; on success the kernel owns a
        // timer that we delete in Drop.
        if unsafe { libc::timer_create(libc::CLOCK_MONOTONIC, &mut sev, &mut timer) } != 0 {
            return Err(WatchdogError::Create(std::io::Error::last_os_error()));
        }
        let dog = Self { timer, deadline };
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 1_000_000,
            },
            it_value: libc::timespec {
                tv_sec: limit.as_secs() as libc::time_t,
                tv_nsec: libc::c_long::from(limit.subsec_nanos() as i32),
            },
        };
        // SAFETY: `dog.timer` is a live timer; `spec` is valid.
        if unsafe { libc::timer_settime(dog.timer, 0, &spec, std::ptr::null_mut()) } != 0 {
            return Err(WatchdogError::Arm(std::io::Error::last_os_error()));
        }
        Ok(dog)
    }

    /// True once the deadline has passed.
    pub fn expired(&self) -> bool {
        Instant::now() >= self.deadline
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        // SAFETY: the timer was created by `arm` and is deleted exactly once here. A signal
        // already queued is harmless (no-op handler).
        unsafe { libc::timer_delete(self.timer) };
    }
}
