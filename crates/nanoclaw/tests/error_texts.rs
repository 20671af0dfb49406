//! The refusals engines parse: containerd's runc shim and podman match runc's wording in the
//! runtime's stderr (`container not running` makes a kill "already finished", `does not exist`
//! makes a delete or state "already gone"). Every case runs against runc too: the phrase is
//! asserted for both, so a test that passes here proves nanoclaw says what runc says.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use claw_testsupport::bundle::{Bundle, Runtime};
use claw_testsupport::engines::{unique_name, wait_until};
use claw_testsupport::{require_root, which};
use serde_json::json;

fn spec(args: &[&str]) -> serde_json::Value {
    let mut spec = ::nanoclaw::spec::template::default_spec();
    spec["process"]["args"] = json!(args);
    spec["process"]["terminal"] = json!(false);
    spec
}

/// A runtime with its own --root and a busybox bundle; every container is force-deleted on
/// drop.
struct Fixture {
    rt: Runtime,
    bundle: Bundle,
    ids: Vec<String>,
}

impl Fixture {
    fn new(bin: &Path, args: &[&str]) -> Self {
        let bundle = Bundle::busybox().unwrap();
        bundle.write_config(&spec(args)).unwrap();
        Self {
            rt: Runtime::new(bin).unwrap(),
            bundle,
            ids: Vec::new(),
        }
    }

    fn create(&mut self, id: &str) {
        let st = self
            .rt
            .command(["create", "--bundle"])
            .arg(self.bundle.path())
            .arg(id)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success(), "create {id}");
        self.ids.push(id.to_string());
    }

    /// Runs `args`, asserts it fails, and returns its stderr.
    fn refused(&self, args: &[&str]) -> String {
        let out = self.rt.command(args).output().unwrap();
        assert!(!out.status.success(), "{args:?} succeeded");
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    fn status(&self, id: &str) -> String {
        let out = self.rt.command(["state", id]).output().unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        v["status"].as_str().unwrap_or("").to_string()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        for id in &self.ids {
            let _ = self
                .rt
                .command(["delete", "--force", id])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

fn expect(what: &str, stderr: &str, phrase: &str) {
    assert!(
        stderr.contains(phrase),
        "{what}: stderr {stderr:?} lacks runc's {phrase:?}"
    );
}

fn no_such_container(bin: &Path) {
    if !require_root("error texts: no such container") {
        return;
    }
    let f = Fixture::new(bin, &["true"]);
    for cmd in [
        &["kill", "ghost", "9"][..],
        &["kill", "--all", "ghost", "9"],
        &["state", "ghost"],
        &["delete", "ghost"],
        &["start", "ghost"],
        &["pause", "ghost"],
        &["resume", "ghost"],
        &["ps", "ghost"],
    ] {
        expect(
            &format!("{cmd:?}"),
            &f.refused(cmd),
            "container does not exist",
        );
    }
}

fn running_container(bin: &Path) {
    if !require_root("error texts: running container") {
        return;
    }
    // Unique: runc and nanoclaw run this in parallel, and a container without
    // cgroupsPath gets the cgroup named by its id.
    let busy = unique_name("busy");
    let busy = busy.as_str();
    let mut f = Fixture::new(bin, &["sleep", "100"]);
    f.create(busy);
    let again =
        f.rt.command(["create", "--bundle"])
            .arg(f.bundle.path())
            .arg(busy)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .unwrap();
    assert!(!again.status.success());
    expect(
        "create twice",
        &String::from_utf8_lossy(&again.stderr),
        "container with given ID already exists",
    );
    let st = f.rt.command(["start", busy]).status().unwrap();
    assert!(st.success());
    expect(
        "start running",
        &f.refused(&["start", busy]),
        "cannot start an already running container",
    );
    expect(
        "delete running",
        &f.refused(&["delete", busy]),
        &format!("cannot delete container {busy} that is not stopped: running"),
    );
    expect(
        "resume running",
        &f.refused(&["resume", busy]),
        "container not paused",
    );
}

fn stopped_container(bin: &Path) {
    if !require_root("error texts: stopped container") {
        return;
    }
    // Unique: runc and nanoclaw run this in parallel, and a container without
    // cgroupsPath gets the cgroup named by its id.
    let done = unique_name("done");
    let done = done.as_str();
    let mut f = Fixture::new(bin, &["true"]);
    f.create(done);
    assert!(f.rt.command(["start", done]).status().unwrap().success());
    assert!(
        wait_until(Duration::from_secs(10), || f.status(done) == "stopped"),
        "container never stopped"
    );
    for (what, cmd, phrase) in [
        (
            "kill stopped",
            &["kill", done, "9"][..],
            "container not running",
        ),
        ("pause stopped", &["pause", done], "container not running"),
        ("resume stopped", &["resume", done], "container not paused"),
        (
            "start stopped",
            &["start", done],
            "cannot start a container that has stopped",
        ),
        (
            "exec stopped",
            &["exec", done, "true"],
            "cannot exec in a stopped container",
        ),
        (
            "update stopped",
            &["update", "--memory", "64M", done],
            "container not running",
        ),
    ] {
        expect(what, &f.refused(cmd), phrase);
    }
}

/// A directory as the program: refused at create with "permission denied" (podman exits 126
/// on that wording), nothing left behind.
fn unrunnable_program(bin: &Path) {
    if !require_root("error texts: unrunnable program") {
        return;
    }
    // Unique: runc and nanoclaw run this in parallel, and a container without
    // cgroupsPath gets the cgroup named by its id.
    let dir_as_program = unique_name("dir-as-program");
    let dir_as_program = dir_as_program.as_str();
    let f = Fixture::new(bin, &["/etc"]);
    let path = f.bundle.path().to_string_lossy().into_owned();
    let err = f.refused(&["create", "--bundle", &path, dir_as_program]);
    expect("create with /etc as the program", &err, "permission denied");
    assert!(
        f.rt.leftover_state().is_empty(),
        "{:?}",
        f.rt.leftover_state()
    );
}

fn runc() -> PathBuf {
    which("runc")
        .or_else(|| Some(PathBuf::from("/usr/sbin/runc")).filter(|p| p.is_file()))
        .expect("runc is installed by scripts/install-deps")
}

mod runc {
    #[test]
    fn no_such_container() {
        super::no_such_container(&super::runc());
    }
    #[test]
    fn running_container() {
        super::running_container(&super::runc());
    }
    #[test]
    fn stopped_container() {
        super::stopped_container(&super::runc());
    }
    #[test]
    fn unrunnable_program() {
        super::unrunnable_program(&super::runc());
    }
}

fn nanoclaw() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_nanoclaw"))
}

mod nanoclaw {
    #[test]
    fn no_such_container() {
        super::no_such_container(&super::nanoclaw());
    }
    #[test]
    fn running_container() {
        super::running_container(&super::nanoclaw());
    }
    #[test]
    fn stopped_container() {
        super::stopped_container(&super::nanoclaw());
    }
    #[test]
    fn unrunnable_program() {
        super::unrunnable_program(&super::nanoclaw());
    }
}
