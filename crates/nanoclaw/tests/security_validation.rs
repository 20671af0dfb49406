//! The security profile's validation rules, without running a container: which sysctls need
//! which namespace, capability set relations, masked path syntax, personality flags, and that
//! `nanoclaw spec`'s template carries the hardened defaults.

use std::collections::HashMap;

use nanoclaw::rootfs::masked_paths;
use nanoclaw::security::{capabilities, personality, sysctl};
use nanoclaw::spec::NamespacePlan;
use nix::sched::CloneFlags;
use oci_spec::runtime::{Capability, LinuxCapabilities, LinuxPersonality, Spec};
use serde_json::json;

fn ns(flags: CloneFlags) -> NamespacePlan {
    NamespacePlan {
        create: flags,
        join: Vec::new(),
    }
}

fn sysctl_err(key: &str, flags: CloneFlags) -> Option<String> {
    let map: HashMap<String, String> = [(key.to_owned(), "1".to_owned())].into();
    sysctl::validate(Some(&map), &ns(flags))
        .err()
        .map(|e| e.to_string())
}

#[test]
fn sysctls_need_their_own_namespace() {
    let all = CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWNET
        | CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWNS;
    for key in [
        "kernel.shmmax",
        "kernel.msgmnb",
        "kernel.sem",
        "fs.mqueue.msg_max",
        "net.ipv4.ip_forward",
        "net.core.somaxconn",
        "kernel.domainname",
    ] {
        assert_eq!(sysctl_err(key, all), None, "{key} with every namespace");
    }
    let e = sysctl_err("kernel.shmmax", CloneFlags::CLONE_NEWNET).expect("refused");
    assert!(
        e.starts_with("linux.sysctl.kernel.shmmax: an IPC sysctl needs an ipc namespace"),
        "{e}"
    );
    let e = sysctl_err("net.ipv4.ip_forward", CloneFlags::CLONE_NEWIPC).expect("refused");
    assert!(
        e.starts_with("linux.sysctl.net.ipv4.ip_forward: a net.* sysctl needs a network namespace"),
        "{e}"
    );
    let e = sysctl_err("kernel.domainname", CloneFlags::CLONE_NEWNET).expect("refused");
    assert!(e.contains("uts namespace"), "{e}");
    // Host-global knobs are refused whatever the namespaces.
    for key in [
        "kernel.pid_max",
        "vm.overcommit_memory",
        "kernel.core_pattern",
        "kernel.hostname",
    ] {
        let e = sysctl_err(key, all).expect("refused");
        assert!(e.starts_with(&format!("linux.sysctl.{key}:")), "{e}");
    }
    // Malformed keys and values.
    for key in [
        "",
        "net..ipv4",
        "net/ipv4/ip_forward",
        "../../x",
        "net.ipv4.ip forward",
    ] {
        let e = sysctl_err(key, all).expect("refused");
        assert!(e.contains("not a valid sysctl name"), "{key:?}: {e}");
    }
    let map: HashMap<String, String> =
        [("net.ipv4.ip_forward".to_owned(), "1\n0".to_owned())].into();
    assert!(sysctl::validate(Some(&map), &ns(all)).is_err());
}

fn caps(v: serde_json::Value) -> LinuxCapabilities {
    serde_json::from_value(v).expect("capabilities JSON")
}

#[test]
fn capability_sets_must_be_consistent() {
    let p = capabilities::plan(None).expect("absent = none");
    assert!(p.bounding.is_empty() && p.effective.is_empty() && p.ambient.is_empty());

    let ok = caps(json!({
        "bounding": ["CAP_KILL", "CAP_CHOWN"], "permitted": ["CAP_KILL", "CAP_CHOWN"],
        "effective": ["CAP_KILL"], "inheritable": ["CAP_KILL"], "ambient": ["CAP_KILL"]
    }));
    let p = capabilities::plan(Some(&ok)).expect("valid");
    assert!(p.effective.contains(&caps::Capability::CAP_KILL));
    assert_eq!(p.bounding.len(), 2);

    let bad = caps(json!({"permitted": ["CAP_KILL"], "effective": ["CAP_KILL", "CAP_SYS_ADMIN"]}));
    let e = capabilities::plan(Some(&bad))
        .expect_err("effective ⊄ permitted")
        .to_string();
    assert!(
        e.starts_with("process.capabilities.effective: CAP_SYS_ADMIN"),
        "{e}"
    );

    // runc's own template lists ambient capabilities without inheritable ones: accepted
    // (they are skipped at apply time, as runc does).
    let runc = caps(json!({
        "bounding": ["CAP_KILL"], "permitted": ["CAP_KILL"], "effective": ["CAP_KILL"],
        "ambient": ["CAP_KILL"]
    }));
    assert!(capabilities::plan(Some(&runc)).is_ok());

    // Every OCI capability maps to the kernel number the caps crate uses.
    assert_eq!(capabilities::to_caps(Capability::SysAdmin).index(), 21);
    assert_eq!(
        capabilities::to_caps(Capability::CheckpointRestore).index(),
        40
    );
    assert_eq!(capabilities::to_caps(Capability::Chown).index(), 0);
}

#[test]
fn unknown_capability_name_is_a_parse_error_naming_the_field() {
    let mut spec = nanoclaw::spec::template::default_spec();
    spec["process"]["capabilities"]["effective"] = json!(["CAP_KILL", "CAP_FLY"]);
    let bytes = serde_json::to_vec(&spec).expect("json");
    let e = nanoclaw::spec::parse(std::path::Path::new("config.json"), &bytes)
        .expect_err("unknown capability")
        .to_string();
    assert!(e.contains("process.capabilities.effective"), "{e}");
    assert!(e.contains("CAP_FLY"), "{e}");
}

#[test]
fn masked_and_readonly_paths_must_be_absolute() {
    assert!(masked_paths::validate(&["/proc/kcore".into()], &["/proc/sys".into()]).is_ok());
    let e = masked_paths::validate(&["/proc/kcore".into(), "proc/keys".into()], &[])
        .expect_err("relative")
        .to_string();
    assert!(e.starts_with("linux.maskedPaths[1]"), "{e}");
    let e = masked_paths::validate(&[], &["/proc/../etc".into()])
        .expect_err("dotdot")
        .to_string();
    assert!(e.starts_with("linux.readonlyPaths[0]"), "{e}");
}

#[test]
fn personality_accepts_the_oci_domains_and_no_flags() {
    let p: LinuxPersonality = serde_json::from_value(json!({"domain": "LINUX32"})).expect("json");
    assert_eq!(personality::plan(Some(&p)).expect("valid"), Some(0x0008));
    let p: LinuxPersonality = serde_json::from_value(json!({"domain": "LINUX"})).expect("json");
    assert_eq!(personality::plan(Some(&p)).expect("valid"), Some(0));
    let p: LinuxPersonality =
        serde_json::from_value(json!({"domain": "LINUX", "flags": ["SHORT_INODE"]})).expect("json");
    let e = personality::plan(Some(&p)).expect_err("flags").to_string();
    assert!(e.starts_with("linux.personality.flags[0]"), "{e}");
}

#[test]
fn spec_template_is_hardened() {
    let v = nanoclaw::spec::template::default_spec();
    let spec: Spec = serde_json::from_value(v.clone()).expect("template parses");
    let linux = spec.linux().as_ref().expect("linux");
    let seccomp = linux.seccomp().as_ref().expect("a seccomp profile");
    let filter = nanoclaw_seccomp::compile(seccomp).expect("profile compiles");
    assert!(filter.rule_count() > 300);
    // runc's default capabilities only, no_new_privs, and runc's masked/readonly paths.
    assert_eq!(
        v["process"]["capabilities"]["bounding"],
        json!(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"])
    );
    assert_eq!(v["process"]["noNewPrivileges"], json!(true));
    let masked = linux.masked_paths().as_ref().expect("masked");
    for p in [
        "/proc/kcore",
        "/proc/keys",
        "/proc/timer_list",
        "/sys/firmware",
        "/sys/devices/virtual/powercap",
    ] {
        assert!(masked.iter().any(|m| m == p), "{p} masked");
    }
    let ro = linux.readonly_paths().as_ref().expect("readonly");
    for p in [
        "/proc/sys",
        "/proc/sysrq-trigger",
        "/proc/bus",
        "/proc/fs",
        "/proc/irq",
    ] {
        assert!(ro.iter().any(|m| m == p), "{p} read-only");
    }
    // Capability-conditional rules follow the template's bounding set: no mount/unshare/bpf.
    let names: Vec<&String> = seccomp
        .syscalls()
        .iter()
        .flatten()
        .filter(|r| {
            r.action() == oci_spec::runtime::LinuxSeccompAction::ScmpActAllow && r.args().is_none()
        })
        .flat_map(|r| r.names())
        .collect();
    for denied in [
        "mount",
        "unshare",
        "setns",
        "bpf",
        "init_module",
        "kexec_load",
        "keyctl",
    ] {
        assert!(
            !names.iter().any(|n| *n == denied),
            "{denied} allowed unconditionally"
        );
    }
    assert!(
        names.iter().any(|n| *n == "ptrace"),
        "ptrace allowed as in Docker's profile (kernel >= 4.8)"
    );
}

#[test]
fn check_probes_this_host() {
    let features = nanoclaw::check::probe();
    let names: Vec<&str> = features.iter().map(|f| f.name).collect();
    for n in [
        "namespaces",
        "user-namespaces",
        "cgroups",
        "seccomp",
        "openat2",
        "capabilities",
        "landlock",
        "pidfd",
        "kvm",
    ] {
        assert!(names.contains(&n), "{n} probed: {names:?}");
    }
    let text = nanoclaw::check::render(&features);
    // This machine runs the whole test suite, so every required feature is present.
    assert!(
        nanoclaw::check::missing_required(&features).is_empty(),
        "{text}"
    );
    let seccomp = features
        .iter()
        .find(|f| f.name == "seccomp")
        .expect("seccomp");
    assert!(seccomp.detail.contains("user_notif"), "{}", seccomp.detail);
}
