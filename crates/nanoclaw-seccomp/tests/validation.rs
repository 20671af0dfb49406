//! Bad `linux.seccomp` input: each case is refused by `compile` with an error naming the field.

use nanoclaw_seccomp::{compile, profile, CompileError};
use oci_spec::runtime::LinuxSeccomp;
use serde_json::json;

fn err(value: serde_json::Value) -> CompileError {
    let seccomp: LinuxSeccomp = serde_json::from_value(value).expect("valid OCI JSON");
    compile(&seccomp).expect_err("must be refused")
}

fn message(value: serde_json::Value) -> String {
    err(value).to_string()
}

#[test]
fn errno_ret_out_of_range_names_the_rule() {
    let m = message(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {"names": ["getpid"], "action": "SCMP_ACT_ERRNO"},
            {"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 70000}
        ]
    }));
    assert!(
        m.starts_with("linux.seccomp.syscalls[1].errnoRet: 70000"),
        "{m}"
    );
}

#[test]
fn default_errno_ret_out_of_range() {
    let m = message(json!({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 4096}));
    assert!(m.starts_with("linux.seccomp.defaultErrnoRet: 4096"), "{m}");
}

#[test]
fn errno_ret_on_allow_is_refused() {
    let m = message(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_ALLOW", "errnoRet": 5}]
    }));
    assert!(m.starts_with("linux.seccomp.syscalls[0].errnoRet:"), "{m}");
}

#[test]
fn trace_message_must_fit_16_bits() {
    let m = message(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_TRACE", "errnoRet": 65536}]
    }));
    assert!(
        m.starts_with("linux.seccomp.syscalls[0].errnoRet: 65536"),
        "{m}"
    );
}

#[test]
fn notify_cannot_be_default_and_needs_a_listener() {
    assert!(matches!(
        err(json!({"defaultAction": "SCMP_ACT_NOTIFY", "listenerPath": "/run/agent.sock"})),
        CompileError::NotifyAsDefault
    ));
    let m = message(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_NOTIFY"}]
    }));
    assert!(
        m.starts_with("linux.seccomp.syscalls[0].action: SCMP_ACT_NOTIFY needs"),
        "{m}"
    );
    let m = message(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": "relative.sock",
        "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_NOTIFY"}]
    }));
    assert!(m.starts_with("linux.seccomp.listenerPath:"), "{m}");
    let m = message(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": "/run/agent.sock",
        "syscalls": [{"names": ["getppid", "write"], "action": "SCMP_ACT_NOTIFY"}]
    }));
    assert!(
        m.starts_with("linux.seccomp.syscalls[0].names[1]: SCMP_ACT_NOTIFY on `write`"),
        "{m}"
    );
}

#[test]
fn argument_index_beyond_six_names_the_argument() {
    let m = message(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "args": [
            {"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
            {"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}
        ]}]
    }));
    assert!(
        m.starts_with("linux.seccomp.syscalls[0].args[1].index: argument index 6"),
        "{m}"
    );
}

#[test]
fn empty_names_are_refused() {
    let m = message(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": [], "action": "SCMP_ACT_ERRNO"}]
    }));
    assert!(m.starts_with("linux.seccomp.syscalls[0].names:"), "{m}");
    let m = message(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["getppid", ""], "action": "SCMP_ACT_ERRNO"}]
    }));
    assert!(
        m.starts_with("linux.seccomp.syscalls[0].names[1]: empty"),
        "{m}"
    );
}

#[test]
fn wait_killable_recv_matches_what_libseccomp_supports() {
    let seccomp: LinuxSeccomp = serde_json::from_value(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "flags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]
    }))
    .expect("valid");
    let version = libseccomp::ScmpVersion::current().expect("version");
    let supported = (version.major, version.minor) >= (2, 6);
    match compile(&seccomp) {
        Ok(_) => assert!(
            supported,
            "libseccomp {version:?} accepted WAIT_KILLABLE_RECV"
        ),
        Err(e) => {
            assert!(!supported, "libseccomp {version:?} refused: {e}");
            assert!(e.to_string().starts_with("linux.seccomp.flags[1]:"), "{e}");
        }
    }
}

#[test]
fn a_rule_repeating_the_default_action_is_dropped() {
    let seccomp: LinuxSeccomp = serde_json::from_value(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [
            {"names": ["getppid"], "action": "SCMP_ACT_ERRNO"},
            {"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 2}
        ]
    }))
    .expect("valid");
    let filter = compile(&seccomp).expect("compiles");
    // getppid repeats ERRNO(EPERM) and is dropped; getpid's ERRNO(ENOENT) differs and stays.
    assert_eq!(filter.rule_count(), 1);
}

#[test]
fn every_architecture_libseccomp_knows_compiles() {
    let seccomp: LinuxSeccomp = serde_json::from_value(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [{"names": ["read", "write", "socketcall"], "action": "SCMP_ACT_ALLOW"}]
    }))
    .expect("valid");
    compile(&seccomp).expect("compiles");
}

#[test]
fn default_profile_round_trips_through_json_and_compiles() {
    let p = profile::default_profile(&[]);
    let text = serde_json::to_string(&p).expect("serialise");
    let back: LinuxSeccomp = serde_json::from_str(&text).expect("parse");
    assert_eq!(back, p);
    let filter = compile(&back).expect("compiles");
    let mut bpf = tempfile::tempfile().expect("tempfile");
    filter.export_bpf(&bpf).expect("bpf");
    use std::io::Seek;
    let len = bpf.seek(std::io::SeekFrom::End(0)).expect("len");
    // struct sock_filter is 8 bytes; a profile of this size needs hundreds of instructions.
    assert!(len > 8 * 100 && len.is_multiple_of(8), "bpf length {len}");
}
