//! Signals: the names and numbers `nanoclaw kill` accepts, the forwarding of a foreground
//! `run` or `exec`, and the clean signal state every workload starts with.
//!
//! Names follow runc's rules: a decimal number, or a name with or without the `SIG` prefix, in
//! any case (`9`, `KILL`, `SIGKILL`, `sigterm`), and real-time signals as `RTMIN+n` / `RTMAX-n`.
//!
//! Forwarding ([`Forwarder`]) blocks the forwarded signals and SIGCHLD before the process
//! exists and takes them with sigwait in the waiting thread: no handler runs asynchronously, none
//! is lost between fork and wait, and threads started later (the terminal and stdio relays)
//! inherit the mask, so a signal never lands in one of them with its default action.

use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignalError {
    #[error("signal {0:?}: unknown signal name")]
    UnknownName(String),
    #[error("signal {0}: not a valid signal number (1..={max})", max = libc::SIGRTMAX())]
    BadNumber(i64),
}

/// Parses a signal as given on the command line into its number.
pub fn parse_signal(s: &str) -> Result<i32, SignalError> {
    let s = s.trim();
    if let Ok(n) = s.parse::<i64>() {
        return check_number(n);
    }
    let upper = s.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    if let Some(rest) = name.strip_prefix("RTMIN") {
        return rt_offset(rest, libc::SIGRTMIN(), 1)
            .ok_or_else(|| SignalError::UnknownName(s.to_string()));
    }
    if let Some(rest) = name.strip_prefix("RTMAX") {
        return rt_offset(rest, libc::SIGRTMAX(), -1)
            .ok_or_else(|| SignalError::UnknownName(s.to_string()));
    }
    format!("SIG{name}")
        .parse::<Signal>()
        .map(|sig| sig as i32)
        .map_err(|_| SignalError::UnknownName(s.to_string()))
}

fn check_number(n: i64) -> Result<i32, SignalError> {
    match i32::try_from(n) {
        Ok(v) if (1..=libc::SIGRTMAX()).contains(&v) => Ok(v),
        _ => Err(SignalError::BadNumber(n)),
    }
}

/// `""` → base; `"+n"`/`"-n"` → base ± n when the sign matches `dir` and the result is in the
/// real-time range.
fn rt_offset(rest: &str, base: i32, dir: i32) -> Option<i32> {
    if rest.is_empty() {
        return Some(base);
    }
    // strip_prefix, not split_at(1): the rest may start with a multi-byte character (found by
    // the nanoclaw_lifecycle_inputs fuzz target).
    let digits = rest.strip_prefix(if dir > 0 { '+' } else { '-' })?;
    let n: i32 = digits.parse().ok()?;
    let v = base.checked_add(dir.checked_mul(n)?)?;
    (libc::SIGRTMIN()..=libc::SIGRTMAX())
        .contains(&v)
        .then_some(v)
}

/// Signals a foreground `run` or `exec` passes on to its process (as runc does).
const FORWARDED: [Signal; 7] = [
    Signal::SIGHUP,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGTERM,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
];

/// The forwarded signals and SIGCHLD, blocked in this thread while it lives; the previous
/// mask comes back on drop (signals that arrived after the wait then act on the runtime).
pub struct Forwarder {
    set: SigSet,
    old: SigSet,
}

impl Forwarder {
    /// Blocks the signals. Call before the process is created, so none is lost.
    pub fn block() -> nix::Result<Self> {
        let mut set = SigSet::empty();
        for s in FORWARDED {
            set.add(s);
        }
        set.add(Signal::SIGCHLD);
        let old = set.thread_swap_mask(SigmaskHow::SIG_BLOCK)?;
        Ok(Forwarder { set, old })
    }

    /// Waits until `pid` (our child) ends, sending it every forwarded signal that arrives
    /// meanwhile. Returns its exit code as a shell reports it ([`exit_code`]).
    pub fn wait(&self, pid: Pid) -> nix::Result<i32> {
        loop {
            match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => {}
                Ok(st) => match exit_code(st) {
                    Some(code) => return Ok(code),
                    None => continue,
                },
                Err(nix::Error::EINTR) => continue,
                Err(e) => return Err(e),
            }
            // SIGCHLD (pending since it is blocked) ends the wait; anything else is passed on.
            if let Ok(sig) = self.set.wait() {
                if sig != Signal::SIGCHLD {
                    let _ = nix::sys::signal::kill(pid, sig);
                }
            }
        }
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        let _ = self.old.thread_set_mask();
    }
}

/// Exit code convention of runc/shells: the status, or 128+N when killed by signal N.
pub fn exit_code(status: WaitStatus) -> Option<i32> {
    match status {
        WaitStatus::Exited(_, c) => Some(c),
        WaitStatus::Signaled(_, s, _) => Some(128 + s as i32),
        _ => None,
    }
}

/// SIGCHLD back to its default disposition. A caller that ignores it (a shell's `trap '' CHLD`,
/// some supervisors) hands that on across exec, and the kernel would then reap the runtime's
/// children itself: `waitpid` would never see the container's exit, and a pid the runtime acts
/// on could be reused meanwhile.
pub fn restore_sigchld() -> nix::Result<()> {
    let dfl = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    // SAFETY: SIG_DFL installs no handler, so no code of ours can run in signal context.
    unsafe { sigaction(Signal::SIGCHLD, &dfl) }.map(|_| ())
}

/// Default dispositions and an empty signal mask, for a process about to execve its workload:
/// Rust's runtime ignores SIGPIPE and [`Forwarder`] blocks signals, and ignored and blocked
/// signals would otherwise survive execve.
pub(crate) fn reset_for_workload() -> nix::Result<()> {
    let dfl = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    for sig in Signal::iterator() {
        if sig == Signal::SIGKILL || sig == Signal::SIGSTOP {
            continue;
        }
        // SAFETY: SIG_DFL installs no handler, so no code of ours can run in signal context;
        // sigaction only fails (ignored) for signals that cannot be changed.
        let _ = unsafe { sigaction(sig, &dfl) };
    }
    SigSet::empty().thread_set_mask()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_numbers_and_realtime() {
        assert_eq!(parse_signal("9"), Ok(9));
        assert_eq!(parse_signal("KILL"), Ok(9));
        assert_eq!(parse_signal("SIGTERM"), Ok(15));
        assert_eq!(parse_signal("sigusr1"), Ok(libc::SIGUSR1));
        assert_eq!(parse_signal("hup"), Ok(1));
        assert_eq!(parse_signal("RTMIN"), Ok(libc::SIGRTMIN()));
        assert_eq!(parse_signal("SIGRTMIN+2"), Ok(libc::SIGRTMIN() + 2));
        assert_eq!(parse_signal("RTMAX-1"), Ok(libc::SIGRTMAX() - 1));
    }

    #[test]
    fn bad_input_is_named() {
        assert_eq!(parse_signal("0"), Err(SignalError::BadNumber(0)));
        assert_eq!(parse_signal("-9"), Err(SignalError::BadNumber(-9)));
        assert_eq!(
            parse_signal("99999999999"),
            Err(SignalError::BadNumber(99_999_999_999))
        );
        assert_eq!(
            parse_signal("FOO"),
            Err(SignalError::UnknownName("FOO".into()))
        );
        assert_eq!(
            parse_signal("RTMIN+99"),
            Err(SignalError::UnknownName("RTMIN+99".into()))
        );
        assert_eq!(
            parse_signal("RTMIN-1"),
            Err(SignalError::UnknownName("RTMIN-1".into()))
        );
        // A multi-byte character right after the prefix.
        assert_eq!(
            parse_signal(" RTMIN\u{fe05}(2"),
            Err(SignalError::UnknownName("RTMIN\u{fe05}(2".into()))
        );
    }
}
