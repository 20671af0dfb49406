//! `linux.devices[]` outside /dev, as `ctr run --device /srv/x` writes them (containerd uses
//! the host path as the container path): runc creates the node wherever the path says, inside
//! the rootfs; so must nanoclaw. Run against runc and nanoclaw.

use std::path::{Path, PathBuf};

use claw_testsupport::bundle::{Bundle, Runtime};
use claw_testsupport::{require_root, which};
use serde_json::json;

fn device_outside_dev(bin: &Path) {
    if !require_root("device outside /dev") {
        return;
    }
    let bundle = Bundle::busybox().unwrap();
    let mut spec = ::nanoclaw::spec::template::default_spec();
    spec["process"]["terminal"] = json!(false);
    spec["process"]["args"] = json!([
        "sh",
        "-c",
        "stat -c '%F %t:%T %a' /srv/serial/ttyclaw && echo x > /srv/serial/ttyclaw && echo WROTE"
    ]);
    spec["linux"]["devices"] = json!([
        {"path": "/srv/serial/ttyclaw", "type": "c", "major": 1, "minor": 3, "fileMode": 0o20620}
    ]);
    bundle.write_config(&spec).unwrap();
    let rt = Runtime::new(bin).unwrap();
    let id = claw_testsupport::engines::unique_name("devpath");
    let out = rt.run(bundle.path(), &id).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "character special file 1:3 620\nWROTE\n",
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success());
    // As with runc the node was made in the image's directory (not on a tmpfs), inside the
    // rootfs: nothing appeared on the host's own /srv.
    assert!(bundle.rootfs().join("srv/serial/ttyclaw").exists());
    assert!(!Path::new("/srv/serial/ttyclaw").exists());
    assert!(rt.leftover_state().is_empty(), "{:?}", rt.leftover_state());
}

fn runc() -> PathBuf {
    which("runc")
        .or_else(|| Some(PathBuf::from("/usr/sbin/runc")).filter(|p| p.is_file()))
        .expect("runc is installed by scripts/install-deps")
}

mod runc {
    #[test]
    fn device_outside_dev() {
        super::device_outside_dev(&super::runc());
    }
}

fn nanoclaw() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_nanoclaw"))
}

mod nanoclaw {
    #[test]
    fn device_outside_dev() {
        super::device_outside_dev(&super::nanoclaw());
    }
}
