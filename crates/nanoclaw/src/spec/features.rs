//! `nanoclaw features`: the OCI runtime features document (runtime-spec features.md), which
//! engines read to learn what the runtime accepts before they write a config.json.
//!
//! Every list here is a promise: a value listed is one `create` accepts and applies. Keep it in
//! step with the validators (mount options, namespaces, hooks, seccomp) when they change.

use std::collections::HashMap;

use oci_spec::runtime::{
    Apparmor, Arch, Cgroup, Features, IntelRdt, LinuxFeature, LinuxNamespaceType,
    LinuxSeccompAction, MemoryPolicy, NetDevices, Seccomp, Selinux,
};

use crate::container::hooks::HookKind;

/// The runtime-spec versions `create` accepts in config.json's `ociVersion`.
pub const OCI_VERSION_MIN: &str = "1.0.0";
pub const OCI_VERSION_MAX: &str = "1.2.1";

/// Mount options (mount(8) names) that `spec.rs` maps to mount flags or propagation for
/// `mounts[].options`, plus runc's `tmpcopyup` extension (and crun's `notmpcopyup`); other
/// options an engine or mount(8) knows (`rro`, `idmap`, `x-*`, `nofail`, ...) are refused, and
/// anything else is passed to mount(2) as filesystem data (`mode=755`). `remount` is refused
/// in a container mount, so it is not listed.
pub const MOUNT_OPTIONS: &[&str] = &[
    "async",
    "atime",
    "bind",
    "defaults",
    "dev",
    "diratime",
    "dirsync",
    "exec",
    "lazytime",
    "loud",
    "mand",
    "noatime",
    "nodev",
    "nodiratime",
    "noexec",
    "nolazytime",
    "nomand",
    "norelatime",
    "nostrictatime",
    "nosuid",
    "notmpcopyup",
    "private",
    "rbind",
    "relatime",
    "ro",
    "rprivate",
    "rshared",
    "rslave",
    "runbindable",
    "rw",
    "shared",
    "silent",
    "slave",
    "strictatime",
    "suid",
    "sync",
    "tmpcopyup",
    "unbindable",
];

/// Capability names in kernel bit order (capability.h); trimmed to what the running kernel
/// knows (`/proc/sys/kernel/cap_last_cap`).
const CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

const SECCOMP_OPERATORS: &[&str] = &[
    "SCMP_CMP_EQ",
    "SCMP_CMP_GE",
    "SCMP_CMP_GT",
    "SCMP_CMP_LE",
    "SCMP_CMP_LT",
    "SCMP_CMP_MASKED_EQ",
    "SCMP_CMP_NE",
];

const SECCOMP_FLAGS: &[&str] = &[
    "SECCOMP_FILTER_FLAG_TSYNC",
    "SECCOMP_FILTER_FLAG_LOG",
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
];

/// The capabilities the running kernel knows (all of [`CAPABILITIES`] if that cannot be read).
fn kernel_capabilities() -> Vec<String> {
    let last = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok());
    let n = last.map_or(CAPABILITIES.len(), |l| {
        l.saturating_add(1).min(CAPABILITIES.len())
    });
    CAPABILITIES.iter().take(n).map(|s| s.to_string()).collect()
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// The features document of this build on this host.
pub fn features() -> Features {
    let mut linux = LinuxFeature::default();
    linux.set_namespaces(Some(vec![
        LinuxNamespaceType::Cgroup,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Mount,
        LinuxNamespaceType::Network,
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Time,
        LinuxNamespaceType::User,
        LinuxNamespaceType::Uts,
    ]));
    linux.set_capabilities(Some(kernel_capabilities()));

    let mut cgroup = Cgroup::default();
    cgroup.set_v1(Some(true));
    cgroup.set_v2(Some(true));
    // --systemd-cgroup: transient units of PID 1, or of the user's instance when rootless.
    cgroup.set_systemd(Some(true));
    cgroup.set_systemd_user(Some(true));
    // linux.resources.rdma is written to rdma.max (v2, or a v1 rdma hierarchy).
    cgroup.set_rdma(Some(true));
    linux.set_cgroup(Some(cgroup));

    let mut seccomp = Seccomp::default();
    seccomp.set_enabled(Some(true));
    seccomp.set_actions(Some(vec![
        LinuxSeccompAction::ScmpActAllow,
        LinuxSeccompAction::ScmpActErrno,
        LinuxSeccompAction::ScmpActKill,
        LinuxSeccompAction::ScmpActKillProcess,
        LinuxSeccompAction::ScmpActKillThread,
        LinuxSeccompAction::ScmpActLog,
        LinuxSeccompAction::ScmpActNotify,
        LinuxSeccompAction::ScmpActTrace,
        LinuxSeccompAction::ScmpActTrap,
    ]));
    seccomp.set_operators(Some(strings(SECCOMP_OPERATORS)));
    seccomp.set_archs(Some(vec![
        Arch::ScmpArchX86,
        Arch::ScmpArchX86_64,
        Arch::ScmpArchX32,
    ]));
    seccomp.set_known_flags(Some(strings(SECCOMP_FLAGS)));
    seccomp.set_supported_flags(Some(strings(SECCOMP_FLAGS)));
    linux.set_seccomp(Some(seccomp));

    // LSM labels and RDT are refused with an error, so they are reported as not enabled.
    let mut apparmor = Apparmor::default();
    apparmor.set_enabled(Some(false));
    linux.set_apparmor(Some(apparmor));
    let mut selinux = Selinux::default();
    selinux.set_enabled(Some(false));
    linux.set_selinux(Some(selinux));
    let mut rdt = IntelRdt::default();
    rdt.set_enabled(Some(false));
    linux.set_intel_rdt(Some(rdt));
    // netdev.rs and mempolicy.rs.
    let mut net_devices = NetDevices::default();
    net_devices.set_enabled(Some(true));
    linux.set_net_devices(Some(net_devices));
    let mut mempolicy = MemoryPolicy::default();
    mempolicy.set_modes(Some(strings(crate::security::mempolicy::MODES)));
    mempolicy.set_flags(Some(strings(crate::security::mempolicy::FLAGS)));
    linux.set_memory_policy(Some(mempolicy));

    let mut f = Features::default();
    f.set_oci_version_min(OCI_VERSION_MIN.to_string());
    f.set_oci_version_max(OCI_VERSION_MAX.to_string());
    f.set_hooks(Some(
        HookKind::ALL.iter().map(|k| k.name().to_string()).collect(),
    ));
    // The plain options and the recursive ones (mount_setattr with AT_RECURSIVE).
    let mut options = strings(MOUNT_OPTIONS);
    options.extend(strings(crate::spec::RECURSIVE_MOUNT_OPTIONS));
    options.sort();
    f.set_mount_options(Some(options));
    f.set_linux(Some(linux));
    f.set_annotations(Some(HashMap::from([(
        "org.claw.nanoclaw.version".to_string(),
        env!("CARGO_PKG_VERSION").to_string(),
    )])));
    f
}

/// The document as `nanoclaw features` prints it (indented JSON, like runc).
pub fn features_json() -> String {
    // Serializing a struct of strings, bools and enums with string names cannot fail.
    serde_json::to_string_pretty(&features()).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_has_the_spec_field_names_and_every_hook() {
        let v: serde_json::Value = serde_json::from_str(&features_json()).unwrap();
        assert_eq!(v["ociVersionMin"], "1.0.0");
        let hooks: Vec<&str> = v["hooks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h.as_str().unwrap())
            .collect();
        assert_eq!(
            hooks,
            [
                "prestart",
                "createRuntime",
                "createContainer",
                "startContainer",
                "poststart",
                "poststop"
            ]
        );
        let ns: Vec<&str> = v["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h.as_str().unwrap())
            .collect();
        assert!(
            ns.contains(&"user") && ns.contains(&"cgroup") && ns.contains(&"mount"),
            "{ns:?}"
        );
        assert_eq!(v["linux"]["cgroup"]["systemd"], true);
        assert_eq!(v["linux"]["cgroup"]["rdma"], true);
        assert!(v["linux"]["seccomp"]["actions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a == "SCMP_ACT_NOTIFY"));
        assert!(v["mountOptions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o == "rbind"));
        for o in crate::spec::RECURSIVE_MOUNT_OPTIONS {
            assert!(
                v["mountOptions"].as_array().unwrap().iter().any(|x| x == o),
                "{o} not advertised"
            );
        }
        assert!(ns.contains(&"time"), "{ns:?}");
        assert_eq!(v["linux"]["netDevices"]["enabled"], true);
        assert_eq!(
            v["linux"]["memoryPolicy"]["modes"].as_array().map(Vec::len),
            Some(crate::security::mempolicy::MODES.len())
        );
    }

    #[test]
    fn capabilities_follow_the_running_kernel() {
        let last: usize = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let caps = kernel_capabilities();
        assert_eq!(caps.len(), (last + 1).min(CAPABILITIES.len()));
        assert_eq!(caps.first().map(String::as_str), Some("CAP_CHOWN"));
    }
}
