//! `ironclaw check`: is KVM usable here, and which backend provides it.

use std::path::Path;

/// The KVM implementation behind /dev/kvm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Hardware VMX (Intel).
    KvmIntel,
    /// Hardware SVM (AMD).
    KvmAmd,
    /// PVM: software, pagetable-based; CPL0 emulated, CPL3 native.
    KvmPvm,
    /// KVM is there but the vendor module is not recognised.
    Unknown,
}

impl Backend {
    pub fn name(&self) -> &'static str {
        match self {
            Self::KvmIntel => "kvm_intel",
            Self::KvmAmd => "kvm_amd",
            Self::KvmPvm => "kvm_pvm",
            Self::Unknown => "unknown",
        }
    }
}

/// Result of the check.
#[derive(Debug, Clone)]
pub struct CheckReport {
    pub backend: Backend,
    /// `Ok(())` when /dev/kvm opened and reported its CPUID.
    pub usable: Result<(), String>,
    /// KVM API version, when usable.
    pub api_version: Option<i32>,
}

/// Names the backend from the loaded modules (/sys/module, then /proc/modules).
pub fn detect_backend() -> Backend {
    let loaded = |m: &str| {
        Path::new("/sys/module").join(m).exists()
            || std::fs::read_to_string("/proc/modules")
                .map(|s| s.lines().any(|l| l.split_whitespace().next() == Some(m)))
                .unwrap_or(false)
    };
    if loaded("kvm_pvm") {
        Backend::KvmPvm
    } else if loaded("kvm_intel") {
        Backend::KvmIntel
    } else if loaded("kvm_amd") {
        Backend::KvmAmd
    } else {
        Backend::Unknown
    }
}

/// Opens /dev/kvm and names the backend.
pub fn check() -> CheckReport {
    let usable = crate::vmm::probe().map_err(|e| e.to_string());
    let api_version = kvm_ioctls::Kvm::new().ok().map(|k| k.get_api_version());
    CheckReport {
        backend: detect_backend(),
        usable,
        api_version,
    }
}
