//! Acceptance: containerd's io.containerd.runc.v2 shim drives the runtime as its runc binary
//! (`--root /run/containerd/runc/<ns> --log <bundle>/log.json --log-format json` + create, start,
//! exec --process --detach, ps --format json, pause, resume, kill, delete [--force]).
//!
//! A private containerd (own socket, root and state) is started per test and a busybox image
//! is built with umoci and imported with `ctr images import`; `ctr run --runc-binary` sets the
//! shim's BinaryName option. Every scenario runs against runc too.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use claw_testsupport::engines::{run, run_in_pty, run_ok, unique_name, wait_until, Containerd};
use claw_testsupport::{require_root, require_tool, which};

const IMAGE: &str = "claw.test/busybox:latest";

fn ready(test: &str) -> bool {
    require_root(test)
        && require_tool(test, "containerd")
        && require_tool(test, "ctr")
        && require_tool(test, "umoci")
        && require_tool(test, "script")
}

fn task_status(ctd: &Containerd, id: &str) -> Option<String> {
    let out = run_ok(ctd.ctr().args(["task", "ls"]));
    out.lines()
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            (cols.first() == Some(&id)).then(|| cols.get(2).map(|s| s.to_string()))
        })
        .next()
        .flatten()
}

fn ctr_lifecycle(runtime: &Path) {
    if !ready("containerd lifecycle") {
        return;
    }
    let ctd = Containerd::start().unwrap();
    ctd.import_busybox(IMAGE).unwrap();
    let rt = runtime.to_string_lossy().into_owned();

    // One-shot run: output and exit status come back through the shim.
    let oneshot = unique_name("once");
    let out = run(ctd.ctr().args([
        "run",
        "--rm",
        "--runc-binary",
        &rt,
        IMAGE,
        &oneshot,
        "sh",
        "-c",
        "echo hi-pid=$$; exit 7",
    ]));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(7),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("hi-pid=1"), "{stdout}");

    // A terminal for the task itself (create --console-socket).
    let tty_id = unique_name("tty");
    let (code, screen) = run_in_pty(
        &format!(
            "ctr --address {} --namespace {} run -t --rm --runc-binary {rt} {IMAGE} {tty_id} sh",
            ctd.socket().display(),
            ctd.namespace
        ),
        "tty; exit 3\n",
    );
    assert_eq!(code, Some(3), "{screen}");
    assert!(screen.contains("/dev/pts/"), "{screen}");

    // A long-running task: exec into it, ps, pause/resume, kill, delete.
    let id = unique_name("long");
    run_ok(ctd.ctr().args([
        "run",
        "-d",
        "--runc-binary",
        &rt,
        IMAGE,
        &id,
        "sleep",
        "1000",
    ]));
    assert_eq!(task_status(&ctd, &id).as_deref(), Some("RUNNING"));
    let seen = run_ok(ctd.ctr().args(["task", "exec", "--exec-id", "e1", &id, "sh", "-c", "cat /proc/1/cmdline | tr '\\0' ' '; echo; echo exec-pid-ns-sees-$(ls /proc | grep -c '^[0-9]')"]));
    assert!(seen.starts_with("sleep 1000"), "{seen}");
    let failed =
        run(ctd
            .ctr()
            .args(["task", "exec", "--exec-id", "e2", &id, "sh", "-c", "exit 9"]));
    assert_eq!(failed.status.code(), Some(9));

    let ps = run_ok(ctd.ctr().args(["task", "ps", &id]));
    assert!(ps.lines().count() >= 2, "ctr task ps shows the init: {ps}");

    // A terminal for an exec'd process: the shim passes --tty --console-socket.
    let ctr_prefix = format!(
        "ctr --address {} --namespace {}",
        ctd.socket().display(),
        ctd.namespace
    );
    let (code, screen) = run_in_pty(
        &format!("{ctr_prefix} task exec -t --exec-id e3 {id} sh"),
        "tty; exit 4\n",
    );
    assert_eq!(code, Some(4), "{screen}");
    assert!(screen.contains("/dev/pts/"), "{screen}");

    run_ok(ctd.ctr().args(["task", "pause", &id]));
    assert_eq!(task_status(&ctd, &id).as_deref(), Some("PAUSED"));
    run_ok(ctd.ctr().args(["task", "resume", &id]));
    assert_eq!(task_status(&ctd, &id).as_deref(), Some("RUNNING"));

    run_ok(ctd.ctr().args(["task", "kill", "--signal", "SIGKILL", &id]));
    assert!(
        wait_until(Duration::from_secs(10), || task_status(&ctd, &id)
            .as_deref()
            == Some("STOPPED")),
        "task {id} did not stop after SIGKILL"
    );
    run_ok(ctd.ctr().args(["task", "delete", &id]));
    run_ok(ctd.ctr().args(["container", "delete", &id]));

    // Nothing left in the runtime's state directory for either container.
    let root = ctd.runtime_root();
    for c in [&oneshot, &tty_id, &id] {
        assert!(
            !root.join(c).exists(),
            "{} left behind",
            root.join(c).display()
        );
    }
    let listed = run_ok(
        Command::new(runtime)
            .arg("--root")
            .arg(&root)
            .args(["list", "--quiet"]),
    );
    assert!(listed.trim().is_empty(), "runtime still lists: {listed}");
}

/// A failing create reaches the user with the runtime's own message: the shim reads the last
/// error line of the runtime's `--log` JSON file.
fn ctr_failure_message(runtime: &Path) {
    if !ready("containerd failure message") {
        return;
    }
    let ctd = Containerd::start().unwrap();
    ctd.import_busybox(IMAGE).unwrap();
    let id = unique_name("bad");
    let out = run(ctd.ctr().args([
        "run",
        "--rm",
        "--runc-binary",
        &runtime.to_string_lossy(),
        IMAGE,
        &id,
        "/no/such/binary",
    ]));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/no/such/binary"), "{stderr}");
    let _ = ctd.ctr().args(["container", "delete", &id]).output();
}

/// A task that exits on its own: the shim reports it STOPPED with its exit status; a kill
/// then is "already finished" (the shim recognises runc's `container not running`, which is
/// what a Kubernetes pod stop relies on), and `ctr task rm -f` removes it. Nothing is left.
fn ctr_exited_task(runtime: &Path) {
    if !ready("containerd exited task") {
        return;
    }
    let ctd = Containerd::start().unwrap();
    ctd.import_busybox(IMAGE).unwrap();
    let rt = runtime.to_string_lossy().into_owned();
    let id = unique_name("exits");
    run_ok(ctd.ctr().args([
        "run",
        "-d",
        "--runc-binary",
        &rt,
        IMAGE,
        &id,
        "sh",
        "-c",
        "exit 3",
    ]));
    assert!(
        wait_until(Duration::from_secs(10), || task_status(&ctd, &id)
            .as_deref()
            == Some("STOPPED")),
        "task {id} was never reported stopped"
    );
    // The kill reaches the runtime, whose refusal the shim maps to "not found".
    let kill = run(ctd.ctr().args(["task", "kill", "--signal", "SIGTERM", &id]));
    let stderr = String::from_utf8_lossy(&kill.stderr);
    assert!(!kill.status.success());
    assert!(stderr.contains("not found"), "{stderr}");
    assert!(!stderr.contains("unknown error after kill"), "{stderr}");
    // `rm -f` on the exited task removes it.
    run_ok(ctd.ctr().args(["task", "rm", "-f", &id]));
    assert_eq!(task_status(&ctd, &id), None);
    run_ok(ctd.ctr().args(["container", "delete", &id]));
    let root = ctd.runtime_root();
    assert!(
        !root.join(&id).exists(),
        "{} left behind",
        root.join(&id).display()
    );
}

/// `ctr run --device <host node outside /dev>`: containerd uses the host path as the container
/// path; the node appears there, usable (the device cgroup rule allows it).
fn ctr_device_outside_dev(runtime: &Path) {
    if !ready("containerd --device outside /dev") {
        return;
    }
    let ctd = Containerd::start().unwrap();
    ctd.import_busybox(IMAGE).unwrap();
    let dir = tempfile::Builder::new()
        .prefix("claw-ctrdev-")
        .tempdir()
        .unwrap();
    let node = dir.path().join("ttyclaw");
    run_ok(Command::new("mknod").arg(&node).args(["c", "1", "3"]));
    let node = node.to_string_lossy().into_owned();
    let id = unique_name("dev");
    let out = run_ok(ctd.ctr().args([
        "run",
        "--rm",
        "--runc-binary",
        &runtime.to_string_lossy(),
        "--device",
        &node,
        IMAGE,
        &id,
        "sh",
        "-c",
        &format!("stat -c '%F %t:%T' {node} && echo x > {node} && echo WROTE"),
    ]));
    assert_eq!(out, "character special file 1:3\nWROTE\n");
}

fn runc() -> PathBuf {
    // Debian installs runc in /usr/sbin, which a CI PATH may lack.
    which("runc")
        .or_else(|| Some(PathBuf::from("/usr/sbin/runc")).filter(|p| p.is_file()))
        .expect("runc is installed by scripts/install-deps")
}

mod runc {
    #[test]
    fn containerd_lifecycle() {
        super::ctr_lifecycle(&super::runc());
    }
    #[test]
    fn containerd_failure_message() {
        super::ctr_failure_message(&super::runc());
    }
    #[test]
    fn containerd_exited_task() {
        super::ctr_exited_task(&super::runc());
    }
    #[test]
    fn containerd_device_outside_dev() {
        super::ctr_device_outside_dev(&super::runc());
    }
}

fn nanoclaw() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_nanoclaw"))
}

mod nanoclaw {
    #[test]
    fn containerd_lifecycle() {
        super::ctr_lifecycle(&super::nanoclaw());
    }
    #[test]
    fn containerd_failure_message() {
        super::ctr_failure_message(&super::nanoclaw());
    }
    #[test]
    fn containerd_exited_task() {
        super::ctr_exited_task(&super::nanoclaw());
    }
    #[test]
    fn containerd_device_outside_dev() {
        super::ctr_device_outside_dev(&super::nanoclaw());
    }
}
