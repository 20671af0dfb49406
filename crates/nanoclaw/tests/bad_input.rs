//! Bad bundles: each gets its specific error naming the field, a nonzero exit, and leaves no
//! state dir, mount or process behind.

mod common;

use claw_testsupport::bundle::{Bundle, Runtime};
use common::*;
use serde_json::{json, Value};

/// Runs `spec` and asserts failure with `expect` in stderr and nothing left behind.
fn refused(test: &str, spec: &Value, expect: &str) {
    let bundle = Bundle::busybox().unwrap();
    bundle.write_config(spec).unwrap();
    refused_in(test, &bundle, expect);
}

fn base() -> Value {
    sh("echo SHOULD-NOT-RUN")
}

#[test]
fn missing_rootfs() {
    if !root("missing_rootfs") {
        return;
    }
    let mut spec = base();
    spec["root"]["path"] = json!("no-such-rootfs");
    refused("missing_rootfs", &spec, "`root.path`");
}

#[test]
fn malformed_json() {
    if !root("malformed_json") {
        return;
    }
    let bundle = Bundle::busybox().unwrap();
    bundle
        .write_raw_config(b"{\"ociVersion\": \"1.0.2\", \"process\": {")
        .unwrap();
    refused_in(
        "malformed_json",
        &bundle,
        "malformed JSON at line 1, column",
    );
}

#[test]
fn missing_config() {
    if !root("missing_config") {
        return;
    }
    let bundle = Bundle::busybox().unwrap();
    refused_in("missing_config", &bundle, "config.json");
}

#[test]
fn unknown_namespace_type() {
    if !root("unknown_namespace_type") {
        return;
    }
    let mut spec = base();
    spec["linux"]["namespaces"][2]["type"] = json!("sandwich");
    refused(
        "unknown_namespace_type",
        &spec,
        "`linux.namespaces[2].type`: unknown variant `sandwich`",
    );
}

#[test]
fn duplicate_namespace() {
    if !root("duplicate_namespace") {
        return;
    }
    let mut spec = base();
    spec["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "pid"}));
    refused(
        "duplicate_namespace",
        &spec,
        "`linux.namespaces[6].type`: namespace Pid listed twice",
    );
}

#[test]
fn mappings_without_user_namespace() {
    if !root("mappings_without_user_namespace") {
        return;
    }
    let mut spec = base();
    spec["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 10}]);
    refused(
        "mappings_without_user_namespace",
        &spec,
        "`linux.uidMappings`: set, but linux.namespaces creates no user namespace",
    );
}

#[test]
fn user_namespace_without_mappings() {
    if !root("user_namespace_without_mappings") {
        return;
    }
    let mut spec = base();
    spec["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "user"}));
    refused(
        "user_namespace_without_mappings",
        &spec,
        "`linux.uidMappings`: required",
    );
}

#[test]
fn unmapped_process_uid() {
    if !root("unmapped_process_uid") {
        return;
    }
    let mut spec = base();
    spec["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "user"}));
    spec["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 10}]);
    spec["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 10}]);
    spec["process"]["user"]["uid"] = json!(1000);
    refused(
        "unmapped_process_uid",
        &spec,
        "`process.user.uid`: 1000 is not mapped",
    );
}

#[test]
fn overlapping_mappings() {
    if !root("overlapping_mappings") {
        return;
    }
    let mut spec = base();
    spec["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "user"}));
    spec["linux"]["uidMappings"] = json!([
        {"containerID": 0, "hostID": 100000, "size": 10},
        {"containerID": 5, "hostID": 200000, "size": 10}
    ]);
    spec["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 10}]);
    refused(
        "overlapping_mappings",
        &spec,
        "`linux.uidMappings[1]`: containerID range overlaps",
    );
}

#[test]
fn unknown_mount_type() {
    if !root("unknown_mount_type") {
        return;
    }
    let mut spec = base();
    spec["mounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"destination": "/x", "type": "nosuchfs", "source": "x"}));
    refused(
        "unknown_mount_type",
        &spec,
        "`mounts[7].type`: unknown filesystem type",
    );
}

#[test]
fn relative_mount_destination() {
    if !root("relative_mount_destination") {
        return;
    }
    let mut spec = base();
    spec["mounts"][0]["destination"] = json!("proc");
    refused(
        "relative_mount_destination",
        &spec,
        "`mounts[0].destination`: proc must be an absolute path",
    );
}

#[test]
fn dotdot_mount_destination() {
    if !root("dotdot_mount_destination") {
        return;
    }
    let mut spec = base();
    spec["mounts"][1]["destination"] = json!("/dev/../../etc");
    refused(
        "dotdot_mount_destination",
        &spec,
        "`mounts[1].destination`: /dev/../../etc contains `..`",
    );
}

#[test]
fn missing_bind_source() {
    if !root("missing_bind_source") {
        return;
    }
    let mut spec = base();
    spec["mounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"destination": "/data", "type": "bind", "source": "/no/such/dir", "options": ["rbind"]}));
    refused(
        "missing_bind_source",
        &spec,
        "`mounts[7].source`: /no/such/dir",
    );
}

#[test]
fn rlimit_soft_above_hard() {
    if !root("rlimit_soft_above_hard") {
        return;
    }
    let mut spec = base();
    spec["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "soft": 2048, "hard": 1024}]);
    refused(
        "rlimit_soft_above_hard",
        &spec,
        "`process.rlimits[0]`: soft limit 2048 exceeds hard limit 1024",
    );
}

#[test]
fn unknown_rlimit() {
    if !root("unknown_rlimit") {
        return;
    }
    let mut spec = base();
    spec["process"]["rlimits"] = json!([{"type": "RLIMIT_BOGUS", "soft": 1, "hard": 1}]);
    refused("unknown_rlimit", &spec, "`process.rlimits[0].type`");
}

#[test]
fn hostname_without_uts_namespace() {
    if !root("hostname_without_uts_namespace") {
        return;
    }
    let mut spec = base();
    spec["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .retain(|n| n["type"] != "uts");
    refused(
        "hostname_without_uts_namespace",
        &spec,
        "`hostname`: set, but linux.namespaces creates no uts namespace",
    );
}

/// Without a mount namespace the runtime's is inherited (spec_conformance.rs shows it run);
/// what cannot be honoured there is refused before anything is mounted in it.
#[test]
fn no_mount_namespace_with_masked_paths() {
    if !root("no_mount_namespace_with_masked_paths") {
        return;
    }
    let mut spec = base();
    spec["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .retain(|n| n["type"] != "mount");
    spec["linux"]["maskedPaths"] = json!(["/proc/kcore"]);
    refused(
        "no_mount_namespace_with_masked_paths",
        &spec,
        "`linux.maskedPaths`: unable to restrict sys entries without a private mount namespace",
    );
}

#[test]
fn relative_cwd() {
    if !root("relative_cwd") {
        return;
    }
    let mut spec = base();
    spec["process"]["cwd"] = json!("work");
    refused(
        "relative_cwd",
        &spec,
        "`process.cwd`: work must be an absolute path",
    );
}

#[test]
fn empty_args() {
    if !root("empty_args") {
        return;
    }
    let mut spec = base();
    spec["process"]["args"] = json!([]);
    refused("empty_args", &spec, "`process.args`: must name a program");
}

#[test]
fn bad_env_entry() {
    if !root("bad_env_entry") {
        return;
    }
    let mut spec = base();
    spec["process"]["env"] = json!(["PATH=/bin", "NOEQUALS"]);
    refused("bad_env_entry", &spec, "`process.env[1]`");
}

#[test]
fn oom_score_adj_out_of_range() {
    if !root("oom_score_adj_out_of_range") {
        return;
    }
    let mut spec = base();
    spec["process"]["oomScoreAdj"] = json!(5000);
    refused(
        "oom_score_adj_out_of_range",
        &spec,
        "`process.oomScoreAdj`: 5000 is outside",
    );
}

#[test]
fn wrong_field_type() {
    if !root("wrong_field_type") {
        return;
    }
    let mut spec = base();
    spec["process"]["user"]["uid"] = json!("root");
    refused("wrong_field_type", &spec, "`process.user.uid`");
}

#[test]
fn device_over_the_rootfs() {
    if !root("device_over_the_rootfs") {
        return;
    }
    let mut spec = base();
    spec["linux"]["devices"] = json!([{"path": "/", "type": "c", "major": 1, "minor": 3}]);
    refused(
        "device_over_the_rootfs",
        &spec,
        "`linux.devices[0].path`: a device cannot replace the rootfs /",
    );
}

/// Outside /dev a device node goes into the image's own directory (as runc): an image file
/// already at that path is never deleted for it; the container is refused, the file kept.
#[test]
fn device_over_an_image_file_outside_dev() {
    if !root("device_over_an_image_file_outside_dev") {
        return;
    }
    let bundle = Bundle::busybox().unwrap();
    std::fs::write(bundle.rootfs().join("etc/keep"), "image file\n").unwrap();
    let mut spec = base();
    spec["linux"]["devices"] = json!([{"path": "/etc/keep", "type": "c", "major": 1, "minor": 3}]);
    bundle.write_config(&spec).unwrap();
    refused_in(
        "device_over_an_image_file_outside_dev",
        &bundle,
        "linux.devices[0]: /etc/keep: the image has a file there that is not a device node",
    );
    assert_eq!(
        std::fs::read_to_string(bundle.rootfs().join("etc/keep")).unwrap(),
        "image file\n"
    );
}

/// File-type bits in `fileMode` are accepted when they agree with `type` (run.rs checks that);
/// a block-device or regular-file type on a `"c"` entry, or bits above the type, are refused.
#[test]
fn device_file_mode_contradicting_type() {
    if !root("device_file_mode_contradicting_type") {
        return;
    }
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
        refused(
            "device_file_mode_contradicting_type",
            &spec,
            &format!("`linux.devices[0].fileMode`: {expect}"),
        );
    }
}

#[test]
fn executable_not_found_unwinds_after_clone() {
    if !root("executable_not_found_unwinds_after_clone") {
        return;
    }
    // Passes validation, fails in the init after the rootfs is set up: the runtime must
    // still remove the init, its mounts and the state dir.
    refused(
        "executable_not_found_unwinds_after_clone",
        &spec_with_args(&["no-such-program"]),
        "executable file not found in $PATH",
    );
}

#[test]
fn failing_mount_in_init_unwinds() {
    if !root("failing_mount_in_init_unwinds") {
        return;
    }
    // A valid mount that fails in the init: a tmpfs over a file of the image (ENOTDIR).
    // (A bad filesystem option is refused earlier now, by the filesystem's own parser.)
    let mut spec = base();
    spec["mounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"destination": "/bin/busybox", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m"]}));
    refused(
        "failing_mount_in_init_unwinds",
        &spec,
        "mounts[7]: mount tmpfs on /bin/busybox",
    );
}

#[test]
fn invalid_container_id() {
    if !root("invalid_container_id") {
        return;
    }
    let bundle = Bundle::busybox().unwrap();
    bundle.write_config(&base()).unwrap();
    let runtime = Runtime::new(NANOCLAW).unwrap();
    for id in ["../escape", "a/b", ".."] {
        let out = runtime.run(bundle.path(), id).unwrap();
        assert_ne!(out.status.code(), Some(0));
        assert!(String::from_utf8_lossy(&out.stderr).contains("invalid container id"));
    }
    assert!(runtime.leftover_state().is_empty());
    assert!(!runtime.root().parent().unwrap().join("escape").exists());
}

/// `--no-pivot` detaches the host's mounts one by one; with rshared each umount would
/// propagate to the host, so the pair is refused before anything is created.
#[test]
fn no_pivot_with_shared_rootfs_propagation() {
    if !root("no_pivot_with_shared_rootfs_propagation") {
        return;
    }
    let mut spec = base();
    spec["linux"]["rootfsPropagation"] = json!("rshared");
    let bundle = Bundle::busybox().unwrap();
    bundle.write_config(&spec).unwrap();
    refused_with_flags(
        "no_pivot_with_shared_rootfs_propagation",
        &bundle,
        &["--no-pivot"],
        "linux.rootfsPropagation: a shared or non-recursive propagation keeps the host's mounts shared; --no-pivot needs",
    );
}

#[test]
fn uid_minus_one_is_refused() {
    if !root("uid_minus_one_is_refused") {
        return;
    }
    // (uid_t)-1 means "unchanged" to setresuid: the process would stay root.
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
        refused("uid_minus_one_is_refused", &spec, field);
    }
}

/// A cgroup record rewritten to name a fake "hierarchy" whose cgroup.procs lists a host
/// process: `delete --force` refuses the record and the host process lives on.
#[test]
fn forged_cgroup_record_is_refused_by_delete() {
    if !root("forged_cgroup_record_is_refused_by_delete") {
        return;
    }
    let bundle = Bundle::busybox().unwrap();
    bundle
        .write_config(&spec_with_args(&["sleep", "100"]))
        .unwrap();
    let runtime = Runtime::new(NANOCLAW).unwrap();
    let id = "forged";
    create_waiting(&runtime, &bundle, id);
    let mut victim = std::process::Command::new("sleep")
        .arg("100")
        .spawn()
        .unwrap();
    let fake = tempfile::tempdir().unwrap();
    let fake_cg = fake.path().join("victim");
    std::fs::create_dir(&fake_cg).unwrap();
    std::fs::write(fake_cg.join("cgroup.procs"), format!("{}\n", victim.id())).unwrap();
    let record = runtime.root().join(id).join("cgroup.json");
    let original = std::fs::read(&record).unwrap();
    let mut cg: Value = serde_json::from_slice(&original).unwrap();
    let forge = |d: &mut Value| {
        d["mountpoint"] = json!(fake.path());
        d["dir"] = json!(fake_cg);
    };
    if let Some(v1) = cg["v1"].as_object_mut() {
        v1.values_mut().for_each(forge);
    }
    if cg["unified"].is_object() {
        forge(&mut cg["unified"]);
    }
    std::fs::write(&record, serde_json::to_vec(&cg).unwrap()).unwrap();
    let out = runtime.command(["delete", "--force", id]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let alive = victim.try_wait().unwrap().is_none();
    let _ = victim.kill();
    let _ = victim.wait();
    assert!(
        alive,
        "delete --force killed a host process through a forged record"
    );
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("not a cgroup hierarchy in the host's mount table"),
        "{stderr}"
    );
    // Restore the real record so the container and its cgroup can be cleaned up.
    std::fs::write(&record, original).unwrap();
    delete_leaving_nothing(&runtime, id);
}

/// A bad memory policy and a host link that does not exist are refused by field, before
/// anything is created (tests/spec_conformance.rs shows both applied when valid).
#[test]
fn bad_memory_policy_and_missing_net_device_are_refused() {
    if !root("bad_memory_policy_and_missing_net_device_are_refused") {
        return;
    }
    let mut spec = base();
    spec["linux"]["memoryPolicy"] = json!({"mode": "MPOL_BIND", "nodes": "0,9999"});
    refused(
        "bad_memory_policy_and_missing_net_device_are_refused",
        &spec,
        "linux.memoryPolicy.nodes",
    );
    let mut spec = base();
    spec["linux"]["netDevices"] = json!({"clwnosuchdev": {"name": "eth1"}});
    refused(
        "bad_memory_policy_and_missing_net_device_are_refused",
        &spec,
        "linux.netDevices",
    );
}

/// Fields nanoclaw cannot honour are refused by name, never ignored: id-mapped mounts and
/// the sections of other platforms (a `vm` section asks for a virtual machine).
#[test]
fn idmapped_mounts_and_other_platform_sections_are_refused() {
    if !root("idmapped_mounts_and_other_platform_sections_are_refused") {
        return;
    }
    let t = "idmapped_mounts_and_other_platform_sections_are_refused";
    let mut spec = base();
    let map = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    spec["mounts"].as_array_mut().unwrap().push(json!({
        "destination": "/data", "type": "bind", "source": "/tmp",
        "options": ["rbind"], "uidMappings": map, "gidMappings": map,
    }));
    let n = spec["mounts"].as_array().unwrap().len() - 1;
    refused(
        t,
        &spec,
        &format!("`mounts[{n}].uidMappings`: id-mapped mounts are not supported"),
    );
    for (section, value) in [
        ("windows", json!({"layerFolders": ["C:\\\\layers"]})),
        ("vm", json!({"kernel": {"path": "/vmlinuz"}})),
        (
            "solaris",
            json!({"milestone": "svc:/milestone/container:default"}),
        ),
    ] {
        let mut spec = base();
        spec[section] = value;
        refused(t, &spec, &format!("`{section}`: is for another platform"));
    }
    let mut spec = base();
    spec["linux"]["mountLabel"] = json!("system_u:object_r:container_file_t:s0");
    refused(t, &spec, "linux.mountLabel: SELinux");
}
