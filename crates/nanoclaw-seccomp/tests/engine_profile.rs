//! The default profile against the profile a real engine applies by default: podman's
//! containers-common `seccomp.json`, installed with podman by scripts/install-deps. The claim
//! "the engines' coverage" in profile.rs is checked here, not asserted.

use std::collections::BTreeSet;

use nanoclaw_seccomp::profile::default_profile;
use oci_spec::runtime::LinuxSeccompAction;

const ENGINE_PROFILE: &str = "/usr/share/containers/seccomp.json";

/// Syscalls nanoclaw allows unconditionally that the engine profile does not, each for a
/// reason written down here. Everything else nanoclaw allows must be in the engine's list.
const NANOCLAW_EXTRAS: &[(&str, &str)] = &[
    (
        "futex_waitv",
        "Linux 5.16 wait on several futexes (Wine/Proton); newer than this engine profile, in moby's",
    ),
    (
        "io_pgetevents",
        "classic AIO completion wait with a signal mask (not io_uring); in moby's allowlist",
    ),
    ("io_pgetevents_time64", "the 32-bit time64 variant of io_pgetevents"),
    (
        "vmsplice",
        "pipe page gifting used by splice-based copy paths; in moby's allowlist",
    ),
];

/// Syscalls the engine profile allows unconditionally (no argument filter, no capability
/// condition, no other architecture).
fn engine_unconditional() -> BTreeSet<String> {
    let text = match std::fs::read_to_string(ENGINE_PROFILE) {
        Ok(t) => t,
        Err(e) => {
            claw_testsupport::skip(
                "engine_profile",
                &format!(
                    "{ENGINE_PROFILE}: {e} (podman's containers-common; scripts/install-deps)"
                ),
            );
            return BTreeSet::new();
        }
    };
    let v: serde_json::Value = serde_json::from_str(&text).expect("engine profile is JSON");
    let mut out = BTreeSet::new();
    for rule in v["syscalls"].as_array().expect("syscalls array") {
        if rule["action"] != "SCMP_ACT_ALLOW" {
            continue;
        }
        let no_args = rule["args"].as_array().is_none_or(|a| a.is_empty());
        let includes = rule["includes"].as_object();
        let inc_caps = includes
            .and_then(|i| i.get("caps"))
            .and_then(|c| c.as_array())
            .is_some_and(|c| !c.is_empty());
        let inc_arches = includes
            .and_then(|i| i.get("arches"))
            .and_then(|c| c.as_array())
            .is_some_and(|a| !a.iter().any(|x| x == "amd64" || x == "x86_64"));
        let inc_kernel = includes.is_some_and(|i| i.contains_key("minKernel"));
        let excludes = rule["excludes"].as_object().is_some_and(|e| !e.is_empty());
        if no_args && !inc_caps && !inc_arches && !inc_kernel && !excludes {
            for n in rule["names"].as_array().into_iter().flatten() {
                out.extend(n.as_str().map(str::to_owned));
            }
        }
    }
    out
}

fn nanoclaw_unconditional() -> BTreeSet<String> {
    let p = default_profile(&[]);
    p.syscalls()
        .iter()
        .flatten()
        .filter(|r| r.action() == LinuxSeccompAction::ScmpActAllow)
        .filter(|r| r.args().as_ref().is_none_or(|a| a.is_empty()))
        .flat_map(|r| r.names().iter().cloned())
        .collect()
}

#[test]
fn io_uring_is_denied() {
    let ours = nanoclaw_unconditional();
    for name in ["io_uring_setup", "io_uring_enter", "io_uring_register"] {
        assert!(!ours.contains(name), "{name} must not be allowed");
    }
    // No rule of any kind (conditional included) mentions io_uring.
    use oci_spec::runtime::Capability as C;
    let all = vec![
        C::SysAdmin,
        C::SysPtrace,
        C::SysNice,
        C::SysModule,
        C::SysRawio,
    ];
    for cap_set in [vec![], all] {
        let p = default_profile(&cap_set);
        for r in p.syscalls().iter().flatten() {
            if r.action() == LinuxSeccompAction::ScmpActAllow {
                assert!(
                    !r.names().iter().any(|n| n.starts_with("io_uring")),
                    "{:?}",
                    r.names()
                );
            }
        }
    }
}

#[test]
fn allowlist_is_within_the_engine_profile() {
    let engine = engine_unconditional();
    if engine.is_empty() {
        return;
    }
    let ours = nanoclaw_unconditional();
    let extras: BTreeSet<&str> = NANOCLAW_EXTRAS.iter().map(|(n, _)| *n).collect();
    let beyond: Vec<&String> = ours
        .iter()
        .filter(|n| !engine.contains(*n) && !extras.contains(n.as_str()))
        .collect();
    let missing: Vec<&String> = engine.iter().filter(|n| !ours.contains(*n)).collect();
    assert!(
        beyond.is_empty(),
        "nanoclaw allows what {ENGINE_PROFILE} does not: {beyond:?}\n(and lacks {missing:?})"
    );
    println!("engine allows, nanoclaw does not (stricter): {missing:?}");
}
