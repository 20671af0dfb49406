//! Loading a compiled filter into the calling thread (or process, with TSYNC).

use std::os::fd::{FromRawFd, OwnedFd};

use libseccomp::error::SeccompError;

use crate::CompiledFilter;

/// Why loading a filter failed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// `seccomp(2)` refused the program: EACCES without `no_new_privs` or CAP_SYS_ADMIN, EINVAL
    /// for a flag the kernel lacks, ESRCH when TSYNC could not synchronise a thread.
    #[error("loading the seccomp filter failed: {0}")]
    Load(#[source] SeccompError),
    #[error("the filter has SCMP_ACT_NOTIFY rules but the kernel returned no listener fd: {0}")]
    NotifyFd(#[source] SeccompError),
}

impl CompiledFilter {
    /// Loads the filter. From here on the calling thread (every thread with TSYNC) is confined.
    ///
    /// Without `no_new_privs` the caller needs CAP_SYS_ADMIN, so a runtime that honours
    /// `noNewPrivileges: false` installs the filter before dropping capabilities.
    ///
    /// Returns the `SCMP_ACT_NOTIFY` listener fd (close-on-exec) when the filter has notify rules;
    /// hand it to the agent with [`crate::notify::send_listener_fd`] and close it.
    pub fn install(&self) -> Result<Option<OwnedFd>, InstallError> {
        self.ctx.load().map_err(InstallError::Load)?;
        if !self.uses_notify {
            return Ok(None);
        }
        let raw = self.ctx.get_notify_fd().map_err(InstallError::NotifyFd)?;
        // SAFETY: `raw` is the listener fd the kernel returned to libseccomp for the filter just
        // loaded; it is open (get_notify_fd returned >= 0) and nothing else in this process owns
        // or closes it: libseccomp only remembers the number and never closes it, and this is the
        // only place the number is read. Taking ownership makes closing it our responsibility.
        Ok(Some(unsafe { OwnedFd::from_raw_fd(raw) }))
    }
}
