//! Bad bundles, end to end: each gets its specific error naming the field, a nonzero exit, and
//! leaves no state dir, mount or process behind. The config-only refusals are unit tests of
//! the validator (`src/spec/refusals.rs`); here are a few of them through `run`, and the
//! failures that only show after the init exists.

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
