//! Crash points for the crash-safety tests: when `NANOCLAW_TEST_CRASH_AT` names a point, the
//! runtime kills itself with SIGKILL exactly there, leaving whatever a real crash (OOM kill,
//! power loss of the caller, `kill -9`) would leave. The tests then check that `delete --force`
//! removes everything. Without the variable a point costs one cached environment lookup.
//!
//! The variable can only make the runtime die earlier, which any caller can already do with a
//! signal, so honouring it gives a caller no new power.

use std::sync::OnceLock;

/// The environment variable that names the crash point.
pub const ENV: &str = "NANOCLAW_TEST_CRASH_AT";

/// Every point, in lifecycle order (the tests iterate over this list).
pub const POINTS: &[&str] = &[
    "create:state-dir",
    "create:cgroup",
    "create:clone",
    "create:ready",
    "create:saved",
    "start:fifo",
    "delete:killed",
    "delete:cgroup",
];

/// Dies with SIGKILL if `point` is the configured crash point.
pub fn hit(point: &str) {
    static AT: OnceLock<Option<String>> = OnceLock::new();
    let at = AT.get_or_init(|| std::env::var(ENV).ok());
    if at.as_deref() == Some(point) {
        // SIGKILL cannot be caught: no destructor, no unwinding, exactly like a crash.
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
}
