//! `process.capabilities`: the five capability sets, applied around the uid switch.
//!
//! Order (as runc and crun do it, because the kernel's rules force it):
//! 1. [`CapabilityPlan::before_user_switch`]: drop everything outside `bounding` from the
//!    bounding set (needs CAP_SETPCAP, which the init still has), then `PR_SET_KEEPCAPS` so
//!    the permitted set survives `setresuid` away from uid 0.
//! 2. the caller switches gid/groups/uid.
//! 3. [`CapabilityPlan::after_user_switch`]: clear `PR_SET_KEEPCAPS`, set inheritable,
//!    effective, permitted (in that order: each `capset` must keep E ⊆ P and I ⊆ P ∪ old I),
//!    then clear the ambient set and raise the requested ambient capabilities — last, because
//!    the kernel only lets a capability into the ambient set when it is permitted and
//!    inheritable (one that is not is skipped with a debug log, as runc does).
//!
//! An absent `process.capabilities` means no capabilities at all (runc's behaviour): a config
//! has to ask for privilege explicitly. Capability names are checked when config.json is parsed
//! (an unknown name is a parse error naming `process.capabilities.<set>[i]`); the relations
//! between the sets are checked here before anything is created.
//!
//! The `caps` crate does the syscalls: it covers all five sets (capget/capset for the three base
//! sets, PR_CAPBSET_DROP for bounding, PR_CAP_AMBIENT for ambient) in pure Rust over libc, where
//! nix has no capability API and rustix covers the base sets only.

use caps::{CapSet, CapsHashSet};
use oci_spec::runtime::{Capabilities, Capability, LinuxCapabilities};

#[derive(Debug, thiserror::Error)]
pub enum CapabilityError {
    #[error("process.capabilities.effective: {cap} is not in process.capabilities.permitted (the kernel requires effective ⊆ permitted)")]
    EffectiveNotPermitted { cap: caps::Capability },
    #[error("dropping {cap} from the bounding set: {source}")]
    Bounding {
        cap: caps::Capability,
        source: caps::errors::CapsError,
    },
    #[error("setting the {set} capability set: {source}")]
    Set {
        set: &'static str,
        source: caps::errors::CapsError,
    },
    #[error("{what}: {source}")]
    KeepCaps {
        what: &'static str,
        source: caps::errors::CapsError,
    },
}

/// The five validated sets, in the `caps` crate's types.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CapabilityPlan {
    pub bounding: CapsHashSet,
    pub effective: CapsHashSet,
    pub inheritable: CapsHashSet,
    pub permitted: CapsHashSet,
    pub ambient: CapsHashSet,
}

/// Validates `process.capabilities` (absent = no capabilities).
pub fn plan(caps: Option<&LinuxCapabilities>) -> Result<CapabilityPlan, CapabilityError> {
    let Some(c) = caps else {
        return Ok(CapabilityPlan::default());
    };
    let plan = CapabilityPlan {
        bounding: convert_set(c.bounding().as_ref()),
        effective: convert_set(c.effective().as_ref()),
        inheritable: convert_set(c.inheritable().as_ref()),
        permitted: convert_set(c.permitted().as_ref()),
        ambient: convert_set(c.ambient().as_ref()),
    };
    let mut effective: Vec<_> = plan.effective.difference(&plan.permitted).collect();
    effective.sort_by_key(|c| c.index());
    if let Some(cap) = effective.first() {
        return Err(CapabilityError::EffectiveNotPermitted { cap: **cap });
    }
    Ok(plan)
}

/// The capabilities this kernel knows, asked of the kernel itself (never of a procfs the
/// container image could fake). The kernel numbers them 0..=CAP_LAST_CAP without gaps and
/// answers PR_CAPBSET_READ with EINVAL above the last one, so a binary search takes six
/// prctl calls where probing each one (`caps::runtime::thread_all_supported`) takes 41.
fn kernel_supported() -> CapsHashSet {
    let known = |index: u8| {
        caps::all()
            .into_iter()
            .find(|c| c.index() == index)
            .is_some_and(|c| caps::has_cap(None, CapSet::Bounding, c).is_ok())
    };
    // Invariant: every index < lo is known, every index >= hi is not.
    let (mut lo, mut hi) = (0u8, 64u8);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if known(mid) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    caps::all().into_iter().filter(|c| c.index() < lo).collect()
}

impl CapabilityPlan {
    /// Step 1 (before setresgid/setresuid): shrink the bounding set and set KEEPCAPS.
    /// Capabilities this kernel does not know are skipped (runc warns and ignores them).
    pub fn before_user_switch(&self) -> Result<(), CapabilityError> {
        let supported = kernel_supported();
        let mut drop: Vec<caps::Capability> = supported
            .iter()
            .filter(|c| !self.bounding.contains(c))
            .copied()
            .collect();
        drop.sort_by_key(|c| c.index());
        for cap in drop {
            caps::drop(None, CapSet::Bounding, cap)
                .map_err(|source| CapabilityError::Bounding { cap, source })?;
        }
        caps::securebits::set_keepcaps(true).map_err(|source| CapabilityError::KeepCaps {
            what: "prctl(PR_SET_KEEPCAPS, 1)",
            source,
        })
    }

    /// Step 3 (after the uid switch): clear KEEPCAPS, set I, E, P, then the ambient set.
    pub fn after_user_switch(&self) -> Result<(), CapabilityError> {
        caps::securebits::set_keepcaps(false).map_err(|source| CapabilityError::KeepCaps {
            what: "prctl(PR_SET_KEEPCAPS, 0)",
            source,
        })?;
        let supported = kernel_supported();
        let known =
            |set: &CapsHashSet| -> CapsHashSet { set.intersection(&supported).copied().collect() };
        for (name, set, value) in [
            ("inheritable", CapSet::Inheritable, known(&self.inheritable)),
            ("effective", CapSet::Effective, known(&self.effective)),
            ("permitted", CapSet::Permitted, known(&self.permitted)),
        ] {
            caps::set(None, set, &value)
                .map_err(|source| CapabilityError::Set { set: name, source })?;
        }
        caps::clear(None, CapSet::Ambient).map_err(|source| CapabilityError::Set {
            set: "ambient",
            source,
        })?;
        let mut ambient: Vec<_> = known(&self.ambient).into_iter().collect();
        ambient.sort_by_key(|c| c.index());
        for cap in ambient {
            // The kernel admits a capability to the ambient set only when it is permitted and
            // inheritable (and still bounded). runc's own `runc spec` lists ambient capabilities
            // without an inheritable set, so like runc we skip those (debug log) instead of
            // failing every such config.
            let allowed = self.permitted.contains(&cap)
                && self.inheritable.contains(&cap)
                && self.bounding.contains(&cap);
            if !allowed {
                log::debug!(
                    "process.capabilities.ambient: {cap} is not in permitted, inheritable and bounding; not raised"
                );
                continue;
            }
            caps::raise(None, CapSet::Ambient, cap).map_err(|source| CapabilityError::Set {
                set: "ambient",
                source,
            })?;
        }
        Ok(())
    }
}

fn convert_set(set: Option<&Capabilities>) -> CapsHashSet {
    set.into_iter().flatten().map(|c| to_caps(*c)).collect()
}

/// oci-spec's capability names → the `caps` crate's (same kernel numbers).
pub fn to_caps(cap: Capability) -> caps::Capability {
    macro_rules! map {
        ($($oci:ident => $caps:ident),* $(,)?) => {
            match cap { $(Capability::$oci => caps::Capability::$caps,)* }
        };
    }
    map! {
        AuditControl => CAP_AUDIT_CONTROL, AuditRead => CAP_AUDIT_READ,
        AuditWrite => CAP_AUDIT_WRITE, BlockSuspend => CAP_BLOCK_SUSPEND, Bpf => CAP_BPF,
        CheckpointRestore => CAP_CHECKPOINT_RESTORE, Chown => CAP_CHOWN,
        DacOverride => CAP_DAC_OVERRIDE, DacReadSearch => CAP_DAC_READ_SEARCH,
        Fowner => CAP_FOWNER, Fsetid => CAP_FSETID, IpcLock => CAP_IPC_LOCK,
        IpcOwner => CAP_IPC_OWNER, Kill => CAP_KILL, Lease => CAP_LEASE,
        LinuxImmutable => CAP_LINUX_IMMUTABLE, MacAdmin => CAP_MAC_ADMIN,
        MacOverride => CAP_MAC_OVERRIDE, Mknod => CAP_MKNOD, NetAdmin => CAP_NET_ADMIN,
        NetBindService => CAP_NET_BIND_SERVICE, NetBroadcast => CAP_NET_BROADCAST,
        NetRaw => CAP_NET_RAW, Perfmon => CAP_PERFMON, Setgid => CAP_SETGID,
        Setfcap => CAP_SETFCAP, Setpcap => CAP_SETPCAP, Setuid => CAP_SETUID,
        SysAdmin => CAP_SYS_ADMIN, SysBoot => CAP_SYS_BOOT, SysChroot => CAP_SYS_CHROOT,
        SysModule => CAP_SYS_MODULE, SysNice => CAP_SYS_NICE, SysPacct => CAP_SYS_PACCT,
        SysPtrace => CAP_SYS_PTRACE, SysRawio => CAP_SYS_RAWIO,
        SysResource => CAP_SYS_RESOURCE, SysTime => CAP_SYS_TIME,
        SysTtyConfig => CAP_SYS_TTY_CONFIG, Syslog => CAP_SYSLOG, WakeAlarm => CAP_WAKE_ALARM,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_search_finds_what_probing_every_capability_finds() {
        let probed = caps::runtime::thread_all_supported();
        assert!(!probed.is_empty());
        assert_eq!(kernel_supported(), probed);
    }
}
