//! The validator on its own, without root: each config-only refusal names its field and comes
//! from `load` before anything exists (tests/bad_input.rs keeps the end-to-end runs that show a
//! refused `run` leaves no state, mount or process behind).

use serde_json::{json, Value};

use super::{load, Plan, SpecError};

/// runc's template running `sh`, as tests/common's `sh()` builds it.
fn base() -> Value {
    let mut spec = crate::spec::template::default_spec();
    spec["process"]["args"] = json!(["sh", "-c", "echo SHOULD-NOT-RUN"]);
    spec
}

/// Validates `spec` in a fresh bundle with an empty rootfs, as the runtime's root (euid 0).
fn validate(spec: &Value) -> Result<Plan, SpecError> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("rootfs")).unwrap();
    std::fs::write(
        dir.path().join("config.json"),
        serde_json::to_vec(spec).unwrap(),
    )
    .unwrap();
    load(dir.path(), 0)
}

#[track_caller]
fn refused(spec: &Value, expect: &str) {
    match validate(spec) {
        Ok(_) => panic!("accepted; expected {expect:?}"),
        Err(e) => {
            let e = e.to_string();
            assert!(e.contains(expect), "{e:?} lacks {expect:?}");
        }
    }
}

fn namespaces(spec: &mut Value) -> &mut Vec<Value> {
    spec["linux"]["namespaces"].as_array_mut().unwrap()
}

fn with_user_namespace(spec: &mut Value) {
    namespaces(spec).push(json!({"type": "user"}));
}

#[test]
fn the_template_becomes_a_plan() {
    let plan = validate(&base()).unwrap();
    assert_eq!(plan.process.args, ["sh", "-c", "echo SHOULD-NOT-RUN"]);
    assert_eq!(plan.mounts.len(), 7);
    assert!(plan.rootfs.ends_with("rootfs"));
    assert_eq!(plan.hostname.as_deref(), Some("nanoclaw"));
    // `nanoclaw spec` hardens runc's template: the default seccomp profile, compiled here,
    // and the powercap counters masked.
    assert!(plan.security.seccomp.is_some());
    assert!(plan
        .security
        .masked_paths
        .iter()
        .any(|p| p == "/sys/devices/virtual/powercap"));
    let mut spec = base();
    spec["linux"].as_object_mut().unwrap().remove("seccomp");
    assert!(validate(&spec).unwrap().security.seccomp.is_none());
}

#[test]
fn malformed_json_names_the_position() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("rootfs")).unwrap();
    std::fs::write(
        dir.path().join("config.json"),
        b"{\"ociVersion\": \"1.0.2\", \"process\": {",
    )
    .unwrap();
    let e = load(dir.path(), 0).unwrap_err().to_string();
    assert!(e.contains("malformed JSON at line 1, column"), "{e}");
}

#[test]
fn missing_rootfs() {
    let mut spec = base();
    spec["root"]["path"] = json!("no-such-rootfs");
    refused(&spec, "`root.path`");
}

#[test]
fn unknown_namespace_type() {
    let mut spec = base();
    spec["linux"]["namespaces"][2]["type"] = json!("sandwich");
    refused(
        &spec,
        "`linux.namespaces[2].type`: unknown variant `sandwich`",
    );
}

#[test]
fn duplicate_namespace() {
    let mut spec = base();
    namespaces(&mut spec).push(json!({"type": "pid"}));
    refused(
        &spec,
        "`linux.namespaces[6].type`: namespace Pid listed twice",
    );
}

#[test]
fn mappings_without_user_namespace() {
    let mut spec = base();
    spec["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 10}]);
    refused(
        &spec,
        "`linux.uidMappings`: set, but linux.namespaces creates no user namespace",
    );
}

#[test]
fn user_namespace_without_mappings() {
    let mut spec = base();
    with_user_namespace(&mut spec);
    refused(&spec, "`linux.uidMappings`: required");
}

#[test]
fn unmapped_process_uid() {
    let mut spec = base();
    with_user_namespace(&mut spec);
    spec["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 10}]);
    spec["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 10}]);
    spec["process"]["user"]["uid"] = json!(1000);
    refused(&spec, "`process.user.uid`: 1000 is not mapped");
}

#[test]
fn overlapping_mappings() {
    let mut spec = base();
    with_user_namespace(&mut spec);
    spec["linux"]["uidMappings"] = json!([
        {"containerID": 0, "hostID": 100000, "size": 10},
        {"containerID": 5, "hostID": 200000, "size": 10}
    ]);
    spec["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 10}]);
    refused(&spec, "`linux.uidMappings[1]`: containerID range overlaps");
}

#[test]
fn rootless_needs_a_user_namespace() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("rootfs")).unwrap();
    std::fs::write(
        dir.path().join("config.json"),
        serde_json::to_vec(&base()).unwrap(),
    )
    .unwrap();
    let e = load(dir.path(), 1000).unwrap_err().to_string();
    assert!(e.contains("user namespace"), "{e}");
}

#[test]
fn unknown_mount_type() {
    let mut spec = base();
    spec["mounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"destination": "/x", "type": "nosuchfs", "source": "x"}));
    refused(&spec, "`mounts[7].type`: unknown filesystem type");
}

#[test]
fn relative_mount_destination() {
    let mut spec = base();
    spec["mounts"][0]["destination"] = json!("proc");
    refused(
        &spec,
        "`mounts[0].destination`: proc must be an absolute path",
    );
}

#[test]
fn dotdot_mount_destination() {
    let mut spec = base();
    spec["mounts"][1]["destination"] = json!("/dev/../../etc");
    refused(
        &spec,
        "`mounts[1].destination`: /dev/../../etc contains `..`",
    );
}

#[test]
fn missing_bind_source() {
    let mut spec = base();
    spec["mounts"].as_array_mut().unwrap().push(
        json!({"destination": "/data", "type": "bind", "source": "/no/such/dir", "options": ["rbind"]}),
    );
    refused(&spec, "`mounts[7].source`: /no/such/dir");
}

#[test]
fn engine_only_mount_options_are_refused_by_index() {
    for opt in ["idmap", "z", "U", "nofail", "x-systemd.automount"] {
        let mut spec = base();
        spec["mounts"].as_array_mut().unwrap().push(
            json!({"destination": "/data", "type": "bind", "source": "/tmp", "options": ["rbind", opt]}),
        );
        refused(&spec, "mounts[7].options[1]");
    }
}

#[test]
fn rlimit_soft_above_hard() {
    let mut spec = base();
    spec["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "soft": 2048, "hard": 1024}]);
    refused(
        &spec,
        "`process.rlimits[0]`: soft limit 2048 exceeds hard limit 1024",
    );
}

#[test]
fn unknown_rlimit() {
    let mut spec = base();
    spec["process"]["rlimits"] = json!([{"type": "RLIMIT_BOGUS", "soft": 1, "hard": 1}]);
    refused(&spec, "`process.rlimits[0].type`");
}

#[test]
fn hostname_without_uts_namespace() {
    let mut spec = base();
    namespaces(&mut spec).retain(|n| n["type"] != "uts");
    refused(
        &spec,
        "`hostname`: set, but linux.namespaces creates no uts namespace",
    );
}

/// Without a mount namespace the runtime's is inherited (as in runc); what cannot be honoured
/// there is refused.
#[test]
fn no_mount_namespace_with_masked_paths() {
    let mut spec = base();
    namespaces(&mut spec).retain(|n| n["type"] != "mount");
    refused(
        &spec,
        "`linux.maskedPaths`: unable to restrict sys entries without a private mount namespace",
    );
}

#[test]
fn relative_cwd() {
    let mut spec = base();
    spec["process"]["cwd"] = json!("work");
    refused(&spec, "`process.cwd`: work must be an absolute path");
}

#[test]
fn empty_args() {
    let mut spec = base();
    spec["process"]["args"] = json!([]);
    refused(&spec, "`process.args`: must name a program");
}

#[test]
fn bad_env_entry() {
    let mut spec = base();
    spec["process"]["env"] = json!(["PATH=/bin", "NOEQUALS"]);
    refused(&spec, "`process.env[1]`");
}

#[test]
fn oom_score_adj_out_of_range() {
    let mut spec = base();
    spec["process"]["oomScoreAdj"] = json!(5000);
    refused(&spec, "`process.oomScoreAdj`: 5000 is outside");
}

#[test]
fn wrong_field_type() {
    let mut spec = base();
    spec["process"]["user"]["uid"] = json!("root");
    refused(&spec, "`process.user.uid`");
}

#[test]
fn unsupported_version() {
    let mut spec = base();
    spec["ociVersion"] = json!("2.0.0");
    refused(&spec, "ociVersion");
}

#[test]
fn device_over_the_rootfs() {
    let mut spec = base();
    spec["linux"]["devices"] = json!([{"path": "/", "type": "c", "major": 1, "minor": 3}]);
    refused(
        &spec,
        "`linux.devices[0].path`: a device cannot replace the rootfs /",
    );
}

/// File-type bits in `fileMode` are accepted when they agree with `type`; a block-device or
/// regular-file type on a `"c"` entry, or bits above the type, are refused.
#[test]
fn device_file_mode_contradicting_type() {
    for (mode, expect) in [
        (
            0o60660,
            "0o60660 has file-type bits 0o60000 that contradict `type`",
        ),
        (
            0o100644,
            "0o100644 has file-type bits 0o100000 that contradict `type`",
        ),
        (
            0o220660,
            "0o220660 has bits outside the file type and 07777",
        ),
    ] {
        let mut spec = base();
        spec["linux"]["devices"] =
            json!([{"path": "/dev/x", "type": "c", "major": 1, "minor": 3, "fileMode": mode}]);
        refused(&spec, &format!("`linux.devices[0].fileMode`: {expect}"));
    }
    let mut spec = base();
    spec["linux"]["devices"] =
        json!([{"path": "/dev/x", "type": "c", "major": 1, "minor": 3, "fileMode": 0o20660}]);
    assert_eq!(validate(&spec).unwrap().devices.len(), 1);
}

/// (uid_t)-1 means "unchanged" to setresuid: the process would stay root.
#[test]
fn uid_minus_one_is_refused() {
    for (field, user) in [
        ("process.user.uid", json!({"uid": 4294967295u32, "gid": 0})),
        ("process.user.gid", json!({"uid": 0, "gid": 4294967295u32})),
        (
            "process.user.additionalGids[1]",
            json!({"uid": 0, "gid": 0, "additionalGids": [5, 4294967295u32]}),
        ),
    ] {
        let mut spec = base();
        spec["process"]["user"] = user;
        refused(&spec, field);
    }
}

#[test]
fn security_fields_are_refused_by_name() {
    let mut spec = base();
    spec["linux"]["sysctl"] = json!({"kernel.modprobe": "/x"});
    refused(&spec, "linux.sysctl");
    let mut spec = base();
    spec["process"]["capabilities"]["bounding"] = json!(["CAP_NO_SUCH"]);
    refused(&spec, "process.capabilities");
    let mut spec = base();
    spec["linux"]["seccomp"] = json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["read"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 9, "value": 1, "op": "SCMP_CMP_EQ"}]}
    ]});
    refused(&spec, "linux.seccomp.syscalls[0].args[0]");
}
