//! Rootless: the unprivileged user `clawtest` runs `nanoclaw spec --rootless` and
//! `nanoclaw run` (the test, as root, drops to that user for the runtime process).

mod common;

use claw_testsupport::bundle::{require_user, user_ids, Bundle, Runtime};
use common::*;
use serde_json::{json, Value};

const USER: &str = "clawtest";

fn setup(test: &str) -> Option<(Runtime, Bundle, u32, u32)> {
    if !root(test) || !require_user(test, USER) {
        return None;
    }
    let (uid, gid) = user_ids(USER)?;
    let runtime = Runtime::as_user(NANOCLAW, uid, gid).expect("runtime as clawtest");
    let bundle = Bundle::busybox().expect("bundle");
    bundle.chown_recursive(uid, gid).expect("chown bundle");
    Some((runtime, bundle, uid, gid))
}

/// `nanoclaw spec --rootless` run as the user; returns the parsed config.
fn rootless_spec(runtime: &Runtime, bundle: &Bundle) -> Value {
    let out = runtime
        .command(["spec", "--rootless", "--bundle"])
        .arg(bundle.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&std::fs::read(bundle.path().join("config.json")).unwrap()).unwrap()
}

fn write_as_user(bundle: &Bundle, spec: &Value, uid: u32, gid: u32) {
    bundle.write_config(spec).unwrap();
    std::os::unix::fs::chown(bundle.path().join("config.json"), Some(uid), Some(gid)).unwrap();
}

#[test]
fn rootless_run_as_unprivileged_user() {
    let Some((runtime, bundle, uid, gid)) = setup("rootless_run_as_unprivileged_user") else {
        return;
    };
    let mut spec = rootless_spec(&runtime, &bundle);
    // What runc's rootless transformation gives: a user namespace mapping root to the caller.
    assert_eq!(
        spec["linux"]["uidMappings"],
        json!([{"containerID": 0, "hostID": uid, "size": 1}])
    );
    assert_eq!(
        spec["linux"]["gidMappings"],
        json!([{"containerID": 0, "hostID": gid, "size": 1}])
    );
    spec["process"]["args"] = json!([
        "sh",
        "-c",
        "id -u; id -g; cat /proc/self/uid_map; hostname; echo $$; \
         echo ok > /dev/null && echo dev-ok; touch /tmp/x 2>/dev/null || echo root-ro; exit 5"
    ]);
    write_as_user(&bundle, &spec, uid, gid);
    let out = runtime.run(bundle.path(), "rl").unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(5),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    let lines: Vec<String> = stdout
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(lines[0], "0");
    assert_eq!(lines[1], "0");
    assert_eq!(lines[2], format!("0 {uid} 1"));
    assert_eq!(lines[3], "nanoclaw");
    assert_eq!(lines[4], "1");
    assert_eq!(lines[5], "dev-ok");
    assert_eq!(lines[6], "root-ro");
    assert!(
        runtime.leftover_state().is_empty(),
        "{:?}",
        runtime.leftover_state()
    );
}

#[test]
fn rootless_multi_range_mapping_through_newuidmap() {
    let Some((runtime, bundle, uid, gid)) = setup("rootless_multi_range_mapping_through_newuidmap")
    else {
        return;
    };
    if !claw_testsupport::require_tool(
        "rootless_multi_range_mapping_through_newuidmap",
        "newuidmap",
    ) {
        return;
    }
    // The user's subordinate range from /etc/subuid (scripts/install-deps writes it).
    let sub = |file: &str| -> u32 {
        std::fs::read_to_string(file)
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{USER}:")).map(str::to_string))
            .and_then(|r| r.split(':').next().and_then(|s| s.parse().ok()))
            .expect("subordinate range")
    };
    let (subuid, subgid) = (sub("/etc/subuid"), sub("/etc/subgid"));
    let mut spec = rootless_spec(&runtime, &bundle);
    spec["linux"]["uidMappings"] = json!([
        {"containerID": 0, "hostID": uid, "size": 1},
        {"containerID": 1, "hostID": subuid, "size": 65536}
    ]);
    spec["linux"]["gidMappings"] = json!([
        {"containerID": 0, "hostID": gid, "size": 1},
        {"containerID": 1, "hostID": subgid, "size": 65536}
    ]);
    spec["process"]["user"] = json!({"uid": 1000, "gid": 1000, "additionalGids": [2000]});
    spec["process"]["args"] = json!(["sh", "-c", "id -u; id -G; cat /proc/self/uid_map"]);
    write_as_user(&bundle, &spec, uid, gid);
    let out = runtime.run(bundle.path(), "mr").unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<String> = stdout
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(lines[0], "1000");
    assert_eq!(lines[1], "1000 2000");
    assert_eq!(lines[2], format!("0 {uid} 1"));
    assert_eq!(lines[3], format!("1 {subuid} 65536"));
    assert!(runtime.leftover_state().is_empty());
}

#[test]
fn rootless_without_user_namespace_is_refused() {
    let Some((runtime, bundle, uid, gid)) = setup("rootless_without_user_namespace_is_refused")
    else {
        return;
    };
    // The root spec (no user namespace) run by the unprivileged user.
    write_as_user(&bundle, &sh("echo SHOULD-NOT-RUN"), uid, gid);
    let out = runtime.run(bundle.path(), "nr").unwrap();
    assert_ne!(out.status.code(), Some(0));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("needs a user namespace"), "{stderr}");
    assert!(runtime.leftover_state().is_empty());
}

#[test]
fn rootless_cannot_map_foreign_ids() {
    let Some((runtime, bundle, uid, gid)) = setup("rootless_cannot_map_foreign_ids") else {
        return;
    };
    // Mapping host root into the container is not something an unprivileged user may do:
    // newuidmap refuses, the runtime reports it and unwinds.
    let mut spec = rootless_spec(&runtime, &bundle);
    spec["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 0, "size": 1}]);
    spec["process"]["args"] = json!(["echo", "SHOULD-NOT-RUN"]);
    write_as_user(&bundle, &spec, uid, gid);
    let out = runtime.run(bundle.path(), "fm").unwrap();
    assert_ne!(out.status.code(), Some(0));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("newuidmap"), "{stderr}");
    assert!(
        runtime.leftover_state().is_empty(),
        "{:?}",
        runtime.leftover_state()
    );
}
