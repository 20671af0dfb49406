//! `nanoclaw spec`: writes runc's default config.json (and the rootless variant), refuses to
//! overwrite, and what it writes runs as is.

mod common;

use claw_testsupport::bundle::{Bundle, Runtime};
use common::*;
use serde_json::Value;

fn spec_in(bundle: &Bundle, extra: &[&str]) -> std::process::Output {
    std::process::Command::new(NANOCLAW)
        .arg("spec")
        .args(extra)
        .arg("--bundle")
        .arg(bundle.path())
        .output()
        .unwrap()
}

#[test]
fn default_spec_is_runc_shaped_and_runs() {
    let bundle = Bundle::busybox().unwrap();
    let out = spec_in(&bundle, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let spec: Value =
        serde_json::from_slice(&std::fs::read(bundle.path().join("config.json")).unwrap()).unwrap();
    assert_eq!(spec["root"]["path"], "rootfs");
    assert_eq!(spec["root"]["readonly"], true);
    assert_eq!(spec["process"]["args"], serde_json::json!(["sh"]));
    assert_eq!(spec["process"]["noNewPrivileges"], true);
    let ns: Vec<&str> = spec["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["type"].as_str().unwrap())
        .collect();
    for t in ["pid", "network", "ipc", "uts", "mount"] {
        assert!(ns.contains(&t), "{t} missing from {ns:?}");
    }
    assert!(!ns.contains(&"user"));
    // A second spec refuses to overwrite.
    let again = spec_in(&bundle, &[]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    // And it runs unchanged: `sh` with stdin closed exits 0.
    if !root("default_spec_is_runc_shaped_and_runs") {
        return;
    }
    let runtime = Runtime::new(NANOCLAW).unwrap();
    let ran = runtime.run(bundle.path(), "dflt").unwrap();
    assert_eq!(
        ran.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ran.stderr)
    );
    assert!(runtime.leftover_state().is_empty());
}

#[test]
fn rootless_spec_has_user_namespace_and_no_network_namespace() {
    let bundle = Bundle::busybox().unwrap();
    let out = spec_in(&bundle, &["--rootless"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let spec: Value =
        serde_json::from_slice(&std::fs::read(bundle.path().join("config.json")).unwrap()).unwrap();
    let ns: Vec<&str> = spec["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["type"].as_str().unwrap())
        .collect();
    assert!(ns.contains(&"user"));
    assert!(!ns.contains(&"network"));
    let uid = nix::unistd::geteuid().as_raw();
    assert_eq!(spec["linux"]["uidMappings"][0]["hostID"], uid);
    assert_eq!(spec["linux"]["uidMappings"][0]["containerID"], 0);
    assert!(spec["linux"].get("resources").is_none());
    let sys = spec["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["destination"] == "/sys")
        .unwrap();
    assert!(sys["options"]
        .as_array()
        .unwrap()
        .iter()
        .any(|o| o == "rbind"));
    let text = std::fs::read_to_string(bundle.path().join("config.json")).unwrap();
    assert!(!text.contains("gid=5"));
}
