//! The security profile of a container: what config.json asks for, validated into a
//! [`SecurityPlan`] before anything is created ([`validate`]), and applied from that plan by the
//! init and each exec'd process at fixed points of their sequence (`init.rs`, `finish.rs`).
//!
//! | config.json | module | when the init applies it |
//! |---|---|---|
//! | `linux.sysctl` | [`crate::security::sysctl`] | rootfs complete, before pivot_root, through the container's /proc |
//! | `linux.maskedPaths`, `linux.readonlyPaths` | [`crate::rootfs::masked_paths`] | right after sysctl |
//! | `linux.personality` | [`crate::security::personality`] | finish.rs, before the uid switch (init and exec) |
//! | `process.capabilities` | [`crate::security::capabilities`] | bounding + keepcaps before the uid switch, the rest after |
//! | `process.apparmorProfile` | here | just before execve |
//! | `linux.seccomp` | `nanoclaw-seccomp` | last, just before execve (before the capability drop when `noNewPrivileges` is false, since loading a filter then needs CAP_SYS_ADMIN) |
//!
//! SELinux labels and `linux.intelRdt` are refused: with a clear "the host lacks it" error when
//! it does, and as unsupported otherwise — never silently ignored.

pub mod capabilities;
pub mod mempolicy;
pub mod personality;
pub mod sched;
pub mod sealed_exe;
pub mod sysctl;

use std::collections::HashMap;
use std::path::Path;
use std::rc::Rc;

use oci_spec::runtime::Spec;

use crate::rootfs::masked_paths::{self, MaskError};
use crate::security::capabilities::{CapabilityError, CapabilityPlan};
use crate::security::personality::PersonalityError;
use crate::security::sysctl::SysctlError;
use crate::spec::NamespacePlan;

#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    #[error(transparent)]
    Capability(#[from] CapabilityError),
    #[error(transparent)]
    Seccomp(#[from] nanoclaw_seccomp::CompileError),
    #[error("linux.seccomp: {0}")]
    SeccompInstall(#[from] nanoclaw_seccomp::InstallError),
    #[error("linux.seccomp.listenerPath: {0}")]
    SeccompNotify(#[from] nanoclaw_seccomp::notify::NotifyError),
    #[error(transparent)]
    Sysctl(#[from] SysctlError),
    #[error(transparent)]
    Mask(#[from] MaskError),
    #[error(transparent)]
    Personality(#[from] PersonalityError),
    #[error(transparent)]
    MemoryPolicy(#[from] crate::security::mempolicy::MemoryPolicyError),
    #[error(transparent)]
    NetDevice(#[from] crate::container::netdev::NetDeviceError),
    #[error("{field}: {what} is not available on this host ({probe} not found); refusing rather than running the container without it")]
    Unavailable {
        field: &'static str,
        what: &'static str,
        probe: &'static str,
    },
    #[error("{field}: {what} is present on this host but not supported by nanoclaw yet; refusing rather than ignoring it")]
    Unsupported {
        field: &'static str,
        what: &'static str,
    },
    #[error("process.apparmorProfile: applying {profile:?}: {source}")]
    AppArmor {
        profile: String,
        source: std::io::Error,
    },
}

/// Every security setting of a config, checked and converted: what the init and exec'd
/// processes apply. Built only by [`validate`].
#[derive(Debug, Clone, Default)]
pub struct SecurityPlan {
    /// process.capabilities.
    pub capabilities: CapabilityPlan,
    /// linux.seccomp, compiled.
    pub seccomp: Option<SeccompFilter>,
    /// linux.sysctl: namespaced keys only.
    pub sysctl: HashMap<String, String>,
    /// linux.maskedPaths.
    pub masked_paths: Vec<String>,
    /// linux.readonlyPaths.
    pub readonly_paths: Vec<String>,
    /// linux.personality, as personality(2) takes it.
    pub personality: Option<libc::c_ulong>,
    /// linux.memoryPolicy, as set_mempolicy(2) takes it.
    pub memory_policy: Option<crate::security::mempolicy::MemoryPolicyPlan>,
    /// process.apparmorProfile (non-empty).
    pub apparmor_profile: Option<String>,
}

/// A compiled seccomp filter, shared by a plan and its copies: a libseccomp context can be
/// neither cloned nor sent to another thread, and the init (a fork-like copy of the runtime)
/// loads the very filter validation compiled.
#[derive(Debug, Clone)]
pub struct SeccompFilter(Rc<nanoclaw_seccomp::CompiledFilter>);

const APPARMOR_ENABLED: &str = "/sys/module/apparmor/parameters/enabled";
const SELINUX_FS: &str = "/sys/fs/selinux/enforce";
const RESCTRL_INFO: &str = "/sys/fs/resctrl/info";

fn apparmor_enabled() -> bool {
    std::fs::read_to_string(APPARMOR_ENABLED).is_ok_and(|s| s.trim() == "Y")
}

/// Validates every security field of `spec` into the plan. Pure apart from reading which LSMs
/// the host has; the seccomp filter is compiled in memory, so its errors surface here.
pub fn validate(spec: &Spec, ns: &NamespacePlan) -> Result<SecurityPlan, SecurityError> {
    let process = spec.process().as_ref();
    let capabilities = capabilities::plan(process.and_then(|p| p.capabilities().as_ref()))?;

    let linux = spec.linux().as_ref();
    let seccomp = match linux.and_then(|l| l.seccomp().as_ref()) {
        Some(seccomp) => Some(SeccompFilter(Rc::new(nanoclaw_seccomp::compile(seccomp)?))),
        None => None,
    };
    let sysctl_map = linux.and_then(|l| l.sysctl().as_ref());
    sysctl::validate(sysctl_map, ns)?;
    let masked = linux
        .and_then(|l| l.masked_paths().clone())
        .unwrap_or_default();
    let readonly = linux
        .and_then(|l| l.readonly_paths().clone())
        .unwrap_or_default();
    masked_paths::validate(&masked, &readonly)?;
    let personality = personality::plan(linux.and_then(|l| l.personality().as_ref()))?;
    let apparmor_profile = process
        .and_then(|p| p.apparmor_profile().clone())
        .filter(|p| !p.is_empty());

    if process
        .and_then(|p| p.apparmor_profile().as_deref())
        .is_some_and(|p| !p.is_empty())
        && !apparmor_enabled()
    {
        return Err(SecurityError::Unavailable {
            field: "process.apparmorProfile",
            what: "AppArmor",
            probe: APPARMOR_ENABLED,
        });
    }
    let selinux_label = process
        .and_then(|p| p.selinux_label().as_deref())
        .is_some_and(|l| !l.is_empty());
    let mount_label = linux
        .and_then(|l| l.mount_label().as_deref())
        .is_some_and(|l| !l.is_empty());
    for (set, field) in [
        (selinux_label, "process.selinuxLabel"),
        (mount_label, "linux.mountLabel"),
    ] {
        if set {
            if !Path::new(SELINUX_FS).exists() {
                return Err(SecurityError::Unavailable {
                    field,
                    what: "SELinux",
                    probe: SELINUX_FS,
                });
            }
            return Err(SecurityError::Unsupported {
                field,
                what: "SELinux",
            });
        }
    }
    let memory_policy =
        crate::security::mempolicy::plan(linux.and_then(|l| l.memory_policy().as_ref()))?;
    crate::container::netdev::validate(linux.and_then(|l| l.net_devices().as_ref()), ns)?;
    if linux.and_then(|l| l.intel_rdt().as_ref()).is_some() {
        if !Path::new(RESCTRL_INFO).exists() {
            return Err(SecurityError::Unavailable {
                field: "linux.intelRdt",
                what: "Intel RDT (resctrl)",
                probe: RESCTRL_INFO,
            });
        }
        return Err(SecurityError::Unsupported {
            field: "linux.intelRdt",
            what: "Intel RDT (resctrl)",
        });
    }
    Ok(SecurityPlan {
        capabilities,
        seccomp,
        sysctl: sysctl_map.cloned().unwrap_or_default(),
        masked_paths: masked,
        readonly_paths: readonly,
        personality,
        memory_policy,
        apparmor_profile,
    })
}

/// Before pivot_root, with the container's mounts complete under `rootfs`: sysctl (through the
/// container's /proc/sys, before readonlyPaths freezes it), then read-only and masked paths,
/// (The personality is applied by finish.rs, for the init and exec'd processes alike.)
pub fn apply_before_pivot(plan: &SecurityPlan, rootfs: &Path) -> Result<(), SecurityError> {
    sysctl::apply(Some(&plan.sysctl), rootfs)?;
    masked_paths::apply(rootfs, &plan.masked_paths, &plan.readonly_paths)?;
    Ok(())
}

/// A seccomp filter compiled in the init, plus the connection to the notify agent (opened
/// before pivot_root, while `listenerPath` on the host is still reachable).
pub struct SeccompStep {
    filter: SeccompFilter,
    agent: Option<std::os::unix::net::UnixStream>,
    host_pid: i32,
}

/// The plan's seccomp filter (if any) and, for NOTIFY rules, the connection to the agent. Call
/// before pivot_root.
pub fn prepare_seccomp(plan: &SecurityPlan) -> Result<Option<SeccompStep>, SecurityError> {
    let Some(filter) = plan.seccomp.clone() else {
        return Ok(None);
    };
    let mut agent = None;
    let mut host_pid = 0;
    if let (true, Some(path)) = (filter.0.uses_notify(), filter.0.listener_path()) {
        agent = Some(
            std::os::unix::net::UnixStream::connect(path).map_err(|source| {
                nanoclaw_seccomp::notify::NotifyError::Connect {
                    path: path.to_owned(),
                    source,
                }
            })?,
        );
        // The host's procfs is still mounted here: its `self` names our pid as the runtime
        // (and the agent) see it, not the 1 of our own pid namespace.
        host_pid = std::fs::read_link("/proc/self")
            .ok()
            .and_then(|p| p.to_str().and_then(|s| s.parse().ok()))
            .unwrap_or(0);
    }
    Ok(Some(SeccompStep {
        filter,
        agent,
        host_pid,
    }))
}

impl SeccompStep {
    /// Names the process the filter is loaded into, as the host sees it, for the state the
    /// NOTIFY agent receives: an exec'd process's filter is compiled by the runtime, but it is
    /// the exec child that loads it.
    pub fn set_host_pid(&mut self, pid: i32) {
        self.host_pid = pid;
    }

    /// The filter has NOTIFY rules and an agent waits at listenerPath for the listener fd.
    pub fn delivers_listener(&self) -> bool {
        self.agent.is_some()
    }

    /// The NOTIFY agent connection, which a freshly forked exec child must keep open.
    pub fn agent_fd(&self) -> Option<std::os::fd::RawFd> {
        self.agent.as_ref().map(std::os::fd::AsRawFd::as_raw_fd)
    }

    /// Loads the filter; with NOTIFY rules, hands the listener fd to the agent and closes it.
    /// `id` and `bundle` go into the state the agent receives.
    pub fn install(self, spec: &Spec, id: &str, bundle: &Path) -> Result<(), SecurityError> {
        let listener = self.filter.0.install()?;
        if let (Some(listener), Some(agent)) = (listener, self.agent) {
            let mut state = oci_spec::runtime::State::default();
            state.set_version(spec.version().clone());
            state.set_id(id.to_owned());
            state.set_status(oci_spec::runtime::ContainerState::Creating);
            state.set_pid(Some(self.host_pid));
            state.set_bundle(bundle.to_path_buf());
            state.set_annotations(spec.annotations().clone());
            let process = nanoclaw_seccomp::notify::process_state(
                state,
                self.host_pid,
                self.filter.0.listener_metadata().map(str::to_owned),
            );
            nanoclaw_seccomp::notify::send_over(
                &agent,
                std::os::fd::AsFd::as_fd(&listener),
                &process,
            )?;
        }
        Ok(())
    }
}

/// `process.apparmorProfile`, for the execve that follows.
pub fn apply_apparmor(plan: &SecurityPlan) -> Result<(), SecurityError> {
    let Some(profile) = plan.apparmor_profile.as_deref() else {
        return Ok(());
    };
    let err = |source| SecurityError::AppArmor {
        profile: profile.to_owned(),
        source,
    };
    // The profile takes effect at the next execve ("exec" transition).
    let attr = if Path::new("/proc/thread-self/attr/apparmor/exec").exists() {
        "/proc/thread-self/attr/apparmor/exec"
    } else {
        "/proc/thread-self/attr/exec"
    };
    std::fs::write(attr, format!("exec {profile}")).map_err(err)
}

/// What `nanoclaw spec` adds to runc's template: `linux.seccomp` = the default profile (Docker's
/// coverage, capability-conditional rules evaluated against the template's bounding set) and
/// `/sys/devices/virtual/powercap` in maskedPaths (energy counters leak secrets: PLATYPUS,
/// CVE-2020-8694; runc >= 1.2 and Docker mask it too).
pub fn harden_template(spec: &mut serde_json::Value) {
    let bounding: Vec<oci_spec::runtime::Capability> = spec
        .pointer("/process/capabilities/bounding")
        .cloned()
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default();
    let profile = nanoclaw_seccomp::profile::default_profile(&bounding);
    let Some(linux) = spec
        .get_mut("linux")
        .and_then(serde_json::Value::as_object_mut)
    else {
        return;
    };
    if let Ok(seccomp) = serde_json::to_value(profile) {
        linux.insert("seccomp".into(), seccomp);
    }
    if let Some(masked) = linux
        .get_mut("maskedPaths")
        .and_then(serde_json::Value::as_array_mut)
    {
        masked.push("/sys/devices/virtual/powercap".into());
    }
}
