//! `linux.personality`: the execution domain set with personality(2) just before execve.

use oci_spec::runtime::{LinuxPersonality, LinuxPersonalityDomain};

/// PER_LINUX and PER_LINUX32 from <linux/personality.h>.
const PER_LINUX: libc::c_ulong = 0x0000;
const PER_LINUX32: libc::c_ulong = 0x0008;

#[derive(Debug, thiserror::Error)]
pub enum PersonalityError {
    #[error("linux.personality.flags[{index}]: {flag:?} is not supported (the OCI spec defines no personality flags)")]
    Flag { index: usize, flag: String },
    #[error("linux.personality: LINUX32 needs 32-bit support, which {arch} does not have")]
    NoCompat { arch: &'static str },
    #[error("linux.personality: personality({value:#x}) failed: {source}")]
    Apply {
        value: libc::c_ulong,
        source: std::io::Error,
    },
}

/// Validates `linux.personality`; returns the persona to set, if any.
pub fn plan(p: Option<&LinuxPersonality>) -> Result<Option<libc::c_ulong>, PersonalityError> {
    let Some(p) = p else { return Ok(None) };
    if let Some((index, flag)) = p.flags().iter().flatten().enumerate().next() {
        return Err(PersonalityError::Flag {
            index,
            flag: flag.clone(),
        });
    }
    Ok(Some(match p.domain() {
        LinuxPersonalityDomain::PerLinux => PER_LINUX,
        LinuxPersonalityDomain::PerLinux32 => {
            if !cfg!(any(
                target_arch = "x86_64",
                target_arch = "aarch64",
                target_arch = "powerpc64",
                target_arch = "s390x"
            )) {
                return Err(PersonalityError::NoCompat {
                    arch: std::env::consts::ARCH,
                });
            }
            PER_LINUX32
        }
    }))
}

/// Sets the persona (call in the init, before seccomp and execve).
pub fn apply(value: libc::c_ulong) -> Result<(), PersonalityError> {
    // SAFETY: personality(2) takes an integer and changes only this process's execution domain.
    let r = unsafe { libc::personality(value) };
    if r == -1 {
        return Err(PersonalityError::Apply {
            value,
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}
