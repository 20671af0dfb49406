//! `nanoclaw check`: which isolation features this host offers, which of them the runtime needs,
//! and what it will use. Read-only probes: files under /proc and /sys, and syscalls that create
//! nothing lasting (a pidfd of ourselves, a Landlock version query, an openat2 of "/").

use std::fmt::Write as _;
use std::os::fd::{FromRawFd, OwnedFd};

/// One probed feature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Feature {
    pub name: &'static str,
    pub available: bool,
    /// Without it `nanoclaw create` cannot work on this host.
    pub required: bool,
    /// What was found (versions, lists, paths).
    pub detail: String,
    /// What nanoclaw does with it.
    pub used_for: &'static str,
}

/// Probes everything, in a fixed order.
pub fn probe() -> Vec<Feature> {
    vec![
        namespaces(),
        user_namespaces(),
        cgroups(),
        seccomp(),
        openat2(),
        capabilities(),
        landlock(),
        pidfd(),
        lsm(),
        kvm(),
    ]
}

/// The features that are required and missing.
pub fn missing_required(features: &[Feature]) -> Vec<&Feature> {
    features
        .iter()
        .filter(|f| f.required && !f.available)
        .collect()
}

/// A human-readable table, then one line per missing required feature.
pub fn render(features: &[Feature]) -> String {
    let mut s = String::new();
    for f in features {
        let status = match (f.available, f.required) {
            (true, _) => "yes",
            (false, true) => "MISSING",
            (false, false) => "no",
        };
        let need = if f.required { "required" } else { "optional" };
        let _ = writeln!(s, "{:<16} {:<8} {need:<9} {}", f.name, status, f.detail);
        let _ = writeln!(s, "{:<16} {:<8} {:<9} nanoclaw: {}", "", "", "", f.used_for);
    }
    for f in missing_required(features) {
        let _ = writeln!(
            s,
            "error: required feature `{}` is missing: {} ({})",
            f.name, f.detail, f.used_for
        );
    }
    s
}

const NAMESPACES: [(&str, bool); 8] = [
    ("mnt", true),
    ("pid", true),
    ("uts", true),
    ("ipc", true),
    ("net", true),
    ("cgroup", false),
    ("user", false),
    ("time", false),
];

fn namespaces() -> Feature {
    let have: Vec<&str> = NAMESPACES
        .iter()
        .filter(|(n, _)| std::path::Path::new(&format!("/proc/self/ns/{n}")).exists())
        .map(|(n, _)| *n)
        .collect();
    let missing: Vec<&str> = NAMESPACES
        .iter()
        .filter(|(n, req)| *req && !have.contains(n))
        .map(|(n, _)| *n)
        .collect();
    Feature {
        name: "namespaces",
        available: missing.is_empty(),
        required: true,
        detail: if missing.is_empty() {
            have.join(" ")
        } else {
            format!("have {}; missing {}", have.join(" "), missing.join(" "))
        },
        used_for: "linux.namespaces (mnt pid uts ipc net are what `nanoclaw spec` asks for)",
    }
}

fn read_trim(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_owned())
}

fn user_namespaces() -> Feature {
    let max = read_trim("/proc/sys/user/max_user_namespaces").and_then(|s| s.parse::<u64>().ok());
    let debian_knob = read_trim("/proc/sys/kernel/unprivileged_userns_clone");
    let unpriv = debian_knob.as_deref().is_none_or(|v| v == "1");
    let available = std::path::Path::new("/proc/self/ns/user").exists() && max.unwrap_or(0) > 0;
    let mut detail = match max {
        Some(m) => format!("max_user_namespaces={m}"),
        None => "no /proc/sys/user/max_user_namespaces".to_owned(),
    };
    if let Some(k) = debian_knob {
        let _ = write!(detail, ", unprivileged_userns_clone={k}");
    }
    if available && !unpriv {
        detail.push_str(" (unprivileged users cannot create them: no rootless)");
    }
    Feature {
        name: "user-namespaces",
        available,
        required: false,
        detail,
        used_for:
            "user namespace + uid/gid mappings; rootless containers (`nanoclaw spec --rootless`)",
    }
}

fn cgroups() -> Feature {
    // The layout exactly as the cgroup manager (nanoclaw-cgroups) detects and will use it.
    let (available, detail) = match nanoclaw_cgroups::check_summary() {
        Ok(d) => (true, d),
        Err(e) => (false, e.to_string()),
    };
    Feature {
        name: "cgroups",
        available,
        required: true,
        detail,
        used_for:
            "linux.resources and linux.cgroupsPath (v2 first-class, v1 where the host has it)",
    }
}

fn seccomp() -> Feature {
    // SAFETY: PR_GET_SECCOMP only reads this thread's seccomp mode.
    let mode = unsafe { libc::prctl(libc::PR_GET_SECCOMP, 0, 0, 0, 0) };
    let actions = read_trim("/proc/sys/kernel/seccomp/actions_avail");
    let lib = nanoclaw_seccomp::libseccomp_version();
    let available = mode >= 0 && actions.is_some() && lib.is_some();
    let mut detail = match &actions {
        Some(a) => format!("filter mode; actions: {a}"),
        None => "no seccomp filter support (CONFIG_SECCOMP_FILTER)".to_owned(),
    };
    match &lib {
        Some(v) => {
            let _ = write!(detail, "; libseccomp {v}");
        }
        None => detail.push_str("; libseccomp not usable"),
    }
    if actions
        .as_deref()
        .is_some_and(|a| !a.contains("user_notif"))
    {
        detail.push_str(" (no SCMP_ACT_NOTIFY)");
    }
    Feature {
        name: "seccomp",
        available,
        required: true,
        detail,
        used_for: "linux.seccomp; `nanoclaw spec` writes a Docker-equivalent default profile",
    }
}

fn openat2() -> Feature {
    use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT);
    let r = openat2(nix::fcntl::AT_FDCWD, "/", how);
    Feature {
        name: "openat2",
        available: r.is_ok(),
        required: true,
        detail: match r {
            Ok(_) => "RESOLVE_IN_ROOT".to_owned(),
            Err(e) => format!("openat2: {e} (Linux >= 5.6 needed)"),
        },
        used_for: "every path inside the rootfs (mounts, masked paths) is resolved with RESOLVE_IN_ROOT: no symlink escapes",
    }
}

fn capabilities() -> Feature {
    let last = read_trim("/proc/sys/kernel/cap_last_cap");
    // SAFETY: PR_CAP_AMBIENT_IS_SET only reads this thread's ambient set.
    let ambient =
        unsafe { libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_IS_SET, 0, 0, 0) } >= 0;
    Feature {
        name: "capabilities",
        available: last.is_some(),
        required: true,
        detail: format!(
            "cap_last_cap={}; ambient set {}",
            last.as_deref().unwrap_or("?"),
            if ambient { "yes" } else { "no" }
        ),
        used_for: "process.capabilities (all five sets); runc's default set in `nanoclaw spec`",
    }
}

fn landlock() -> Feature {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    // SAFETY: with a NULL attr, size 0 and the VERSION flag, landlock_create_ruleset only
    // returns the ABI version; it creates nothing.
    let abi = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    let err = std::io::Error::last_os_error();
    Feature {
        name: "landlock",
        available: abi > 0,
        required: false,
        detail: if abi > 0 {
            format!("ABI v{abi}")
        } else {
            format!("unavailable: {err}")
        },
        used_for: "not used by the runtime itself; the default seccomp profile lets workloads sandbox themselves with it",
    }
}

fn pidfd() -> Feature {
    // SAFETY: pidfd_open of our own pid returns a new fd (owned below) or an error.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, libc::getpid(), 0) };
    let available = fd >= 0;
    if available {
        // SAFETY: the fd was just returned to us and is owned by nothing else.
        drop(unsafe { OwnedFd::from_raw_fd(fd as i32) });
    }
    Feature {
        name: "pidfd",
        available,
        required: false,
        detail: if available {
            "pidfd_open".to_owned()
        } else {
            format!("unavailable: {}", std::io::Error::last_os_error())
        },
        used_for: "race-free signalling of the container init (pids are reused)",
    }
}

fn lsm() -> Feature {
    let lsms = read_trim("/sys/kernel/security/lsm").unwrap_or_default();
    let apparmor = read_trim("/sys/module/apparmor/parameters/enabled").is_some_and(|v| v == "Y");
    let selinux = std::path::Path::new("/sys/fs/selinux/enforce").exists();
    Feature {
        name: "lsm",
        available: apparmor || selinux,
        required: false,
        detail: format!(
            "lsm={}; apparmor {}; selinux {}",
            if lsms.is_empty() { "?" } else { &lsms },
            if apparmor { "yes" } else { "no" },
            if selinux { "yes" } else { "no" }
        ),
        used_for: "process.apparmorProfile (applied when AppArmor is enabled); selinux labels and intelRdt are refused",
    }
}

fn kvm() -> Feature {
    let r = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm");
    Feature {
        name: "kvm",
        available: r.is_ok(),
        required: false,
        detail: match r {
            Ok(_) => "/dev/kvm usable".to_owned(),
            Err(e) => format!("/dev/kvm: {e}"),
        },
        used_for: "not used by NanoClaw; IronClaw (the enclave tier) needs it",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_required_feature_is_reported() {
        let f = vec![Feature {
            name: "seccomp",
            available: false,
            required: true,
            detail: "no seccomp".into(),
            used_for: "linux.seccomp",
        }];
        assert_eq!(missing_required(&f).len(), 1);
        assert!(render(&f).contains("error: required feature `seccomp` is missing"));
    }
}
