//! Acceptance: podman drives the runtime through conmon exactly as it drives runc
//! (`create --bundle --pid-file [--console-socket]`, `start`, `exec --process --detach [--tty]`,
//! `kill <id> <signal number>`, `delete --force`).
//!
//! Every scenario runs against runc too: runc passing and nanoclaw failing points at nanoclaw.

use std::path::{Path, PathBuf};
use std::process::Command;

use claw_testsupport::engines::{
    cgroup_dirs_named, podman, run, run_in_pty, run_ok, ComposeProject, PodmanContainer,
    PODMAN_ULIMITS,
};
use claw_testsupport::{require_root, require_tool, which, BusyboxRootfs};

mod common;

fn ready(test: &str) -> bool {
    require_root(test) && require_tool(test, "podman") && require_tool(test, "script")
}

/// One-shot `run --rm`: the command runs as PID 1 of a new pid namespace in the rootfs, its
/// output reaches the caller and its exit status is podman's.
fn oneshot(runtime: &Path) {
    if !ready("podman oneshot") {
        return;
    }
    let rootfs = BusyboxRootfs::new().unwrap();
    let c = PodmanContainer::new(runtime, "claw-oneshot");
    let out = run(podman(runtime)
        .args(["run", "--rm", "--name", &c.name])
        .args(PODMAN_ULIMITS)
        .arg("--rootfs")
        .arg(rootfs.path())
        .args([
            "sh",
            "-c",
            "echo pid=$$; cat /etc/group | head -1; ls /proc/1/root/bin/busybox; exit 3",
        ]));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(3),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("pid=1\n"), "{stdout}");
    assert!(stdout.contains("root:x:0:"), "{stdout}");
    assert!(stdout.contains("/proc/1/root/bin/busybox"), "{stdout}");
}

/// `run -it`: the process gets a terminal (the pty master travelled over conmon's console
/// socket), keystrokes reach it and its exit status comes back.
fn interactive_tty(runtime: &Path) {
    if !ready("podman -it") {
        return;
    }
    let rootfs = BusyboxRootfs::new().unwrap();
    let c = PodmanContainer::new(runtime, "claw-tty");
    let cmdline = format!(
        "podman --runtime {} run --rm -it --name {} {} --rootfs {} sh",
        runtime.display(),
        c.name,
        PODMAN_ULIMITS.join(" "),
        rootfs.path().display()
    );
    let (code, screen) = run_in_pty(&cmdline, "test -t 0 && echo STDIN-IS-A-TTY; tty; exit 4\n");
    assert_eq!(code, Some(4), "{screen}");
    assert!(screen.contains("STDIN-IS-A-TTY"), "{screen}");
    assert!(screen.contains("/dev/pts/"), "{screen}");
}

/// `run -d`, then `exec` (plain and with a terminal) into the running container, `pause` and
/// `unpause`, `stop`
/// (SIGTERM, then SIGKILL for a PID 1 that ignores it) and `rm`: afterwards the runtime has
/// no trace of the container.
fn detached_exec_stop_rm(runtime: &Path) {
    if !ready("podman -d/exec/stop/rm") {
        return;
    }
    let rootfs = BusyboxRootfs::new().unwrap();
    let c = PodmanContainer::new(runtime, "claw-detached");
    run_ok(
        podman(runtime)
            .args(["run", "-d", "--name", &c.name])
            .args(PODMAN_ULIMITS)
            .arg("--rootfs")
            .arg(rootfs.path())
            .args(["sleep", "1000"]),
    );
    let id = run_ok(podman(runtime).args(["inspect", "--format", "{{.Id}}", &c.name]))
        .trim()
        .to_string();

    // exec joins the container: it sees the container's PID 1 and the container's rootfs.
    let seen = run_ok(podman(runtime).args([
        "exec",
        &c.name,
        "sh",
        "-c",
        "cat /proc/1/cmdline | tr '\\0' ' '; echo; ls /bin/busybox",
    ]));
    assert!(seen.starts_with("sleep 1000"), "{seen}");
    assert!(seen.contains("/bin/busybox"), "{seen}");
    let failed = run(podman(runtime).args(["exec", &c.name, "sh", "-c", "exit 5"]));
    assert_eq!(failed.status.code(), Some(5));

    let cmdline = format!(
        "podman --runtime {} exec -it {} sh -c 'tty; exit 6'",
        runtime.display(),
        c.name
    );
    let (code, screen) = run_in_pty(&cmdline, "");
    assert!(screen.contains("/dev/pts/"), "{screen}");
    assert_eq!(code, Some(6), "{screen}");

    let status = |name: &str| {
        run_ok(podman(runtime).args(["inspect", "--format", "{{.State.Status}}", name]))
            .trim()
            .to_string()
    };
    assert_eq!(status(&c.name), "running");
    // pause/unpause go through the runtime's freezer.
    run_ok(podman(runtime).args(["pause", &c.name]));
    assert_eq!(status(&c.name), "paused");
    run_ok(podman(runtime).args(["unpause", &c.name]));
    assert_eq!(status(&c.name), "running");
    run_ok(podman(runtime).args(["stop", "--time", "1", &c.name]));
    assert_eq!(status(&c.name), "exited");
    run_ok(podman(runtime).args(["rm", &c.name]));

    let listed = run_ok(Command::new(runtime).args(["list", "--quiet"]));
    assert!(
        !listed.lines().any(|l| l == id),
        "{id} still listed by the runtime:\n{listed}"
    );
    let left = cgroup_dirs_named(&id);
    assert!(left.is_empty(), "cgroups left after podman rm: {left:?}");
}

/// `--device` of a character device node (made with mknod in a temporary directory, as a USB
/// serial stick would be in /dev) and `--privileged`: podman writes the host node's whole
/// `st_mode` into `linux.devices[].fileMode` (type bits included); the node appears in the
/// container with the host's numbers and permission bits and can be written.
fn device_and_privileged(runtime: &Path) {
    if !ready("podman --device/--privileged") {
        return;
    }
    let rootfs = BusyboxRootfs::new().unwrap();
    let dir = tempfile::Builder::new()
        .prefix("claw-devnode-")
        .tempdir()
        .unwrap();
    let node = dir.path().join("ttyclaw");
    // A character device with /dev/null's numbers: writable without hardware.
    run_ok(Command::new("mknod").arg(&node).args(["c", "1", "3"]));
    run_ok(Command::new("chmod").arg("0640").arg(&node));

    let c = PodmanContainer::new(runtime, "claw-device");
    let out = run_ok(
        podman(runtime)
            .args(["run", "--rm", "--name", &c.name])
            .args(PODMAN_ULIMITS)
            .arg("--device")
            .arg(format!("{}:/dev/ttyUSB7", node.display()))
            .arg("--rootfs")
            .arg(rootfs.path())
            .args([
                "sh",
                "-c",
                "stat -c '%F %t:%T %a' /dev/ttyUSB7 && echo hello > /dev/ttyUSB7 && echo WROTE",
            ]),
    );
    assert_eq!(out, "character special file 1:3 640\nWROTE\n");

    // --privileged: every host device is listed (each with type bits in fileMode); /dev/kvm
    // and /dev/loop-control are among them on this machine.
    let host = |p: &str| {
        run_ok(Command::new("stat").args(["-c", "%t:%T %a", p]))
            .trim()
            .to_string()
    };
    let c = PodmanContainer::new(runtime, "claw-privileged");
    let out = run_ok(
        podman(runtime)
            .args(["run", "--rm", "--privileged", "--name", &c.name])
            .args(PODMAN_ULIMITS)
            .arg("--rootfs")
            .arg(rootfs.path())
            .args([
                "sh",
                "-c",
                "stat -c '%t:%T %a' /dev/kvm /dev/loop-control; grep CapEff /proc/self/status",
            ]),
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert_eq!(lines[0], host("/dev/kvm"), "{out}");
    assert_eq!(lines[1], host("/dev/loop-control"), "{out}");
    // All capabilities: CapEff is the full bounding set of the host, not podman's default 14.
    let host_bnd = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find(|l| l.starts_with("CapBnd:"))
        .map(|l| l.split_whitespace().nth(1).unwrap_or("").to_string())
        .unwrap();
    assert_eq!(
        lines[2].split_whitespace().nth(1),
        Some(host_bnd.as_str()),
        "{out}"
    );
}

/// `--read-only` (podman adds tmpfs mounts with `tmpcopyup` on /run, /tmp and /var/tmp) and
/// `--tmpfs`: what the image ships in those directories is visible and writable in the
/// container, owners and modes kept; the rest of the rootfs is read-only; the image itself is
/// not changed.
fn read_only_tmpcopyup(runtime: &Path) {
    if !ready("podman --read-only/--tmpfs") {
        return;
    }
    let rootfs = BusyboxRootfs::new().unwrap();
    let r = rootfs.path();
    std::fs::create_dir_all(r.join("run/mosquitto")).unwrap();
    std::fs::create_dir_all(r.join("data")).unwrap();
    std::fs::write(r.join("run/mosquitto/mosquitto.conf"), "listener 1883\n").unwrap();
    std::fs::write(r.join("data/seed"), "seed\n").unwrap();
    run_ok(
        Command::new("chown")
            .args(["-R", "1883:1883"])
            .arg(r.join("run/mosquitto")),
    );
    run_ok(
        Command::new("chmod")
            .arg("0750")
            .arg(r.join("run/mosquitto")),
    );

    let c = PodmanContainer::new(runtime, "claw-readonly");
    let out = run_ok(
        podman(runtime)
            .args(["run", "--rm", "--read-only", "--tmpfs", "/data", "--name", &c.name])
            .args(PODMAN_ULIMITS)
            .arg("--rootfs")
            .arg(r)
            .args([
                "sh",
                "-c",
                "for d in /run /data /tmp /var/tmp; do grep \" $d \" /proc/mounts | cut -d' ' -f3; done; \
                 stat -c '%n %a %u:%g' /run/mosquitto; cat /run/mosquitto/mosquitto.conf /data/seed; \
                 echo x > /run/new && echo x > /data/new && echo x > /tmp/new && echo x > /var/tmp/new && echo WROTE; \
                 touch /etc/new 2>/dev/null || echo ROOT-RO",
            ]),
    );
    assert_eq!(
        out,
        "tmpfs\ntmpfs\ntmpfs\ntmpfs\n/run/mosquitto 750 1883:1883\nlistener 1883\nseed\nWROTE\nROOT-RO\n"
    );
    assert!(!r.join("run/new").exists());
    assert!(!r.join("data/new").exists());
}

/// The README's home-lab shape with a local image: a broker-like service with
/// `read_only: true` and a `tmpfs:` entry (podman-compose turns them into `--read-only` and
/// `--tmpfs`, so tmpcopyup) and a bridge-like service with a serial device (`devices:`, a
/// character node made with mknod). The image's /run content is there, the root is
/// read-only, the device is usable, both services exit 0 under the runtime given.
fn compose_home_lab(runtime: &Path) {
    if !ready("podman-compose home lab")
        || !require_tool("podman-compose home lab", "podman-compose")
    {
        return;
    }
    let rootfs = BusyboxRootfs::new().unwrap();
    std::fs::create_dir_all(rootfs.path().join("run/mosquitto")).unwrap();
    std::fs::write(
        rootfs.path().join("run/mosquitto/broker.conf"),
        "listener 1883\n",
    )
    .unwrap();
    let dev_dir = tempfile::Builder::new()
        .prefix("claw-serial-")
        .tempdir()
        .unwrap();
    let node = dev_dir.path().join("ttyUSB-claw");
    run_ok(Command::new("mknod").arg(&node).args(["c", "1", "3"]));
    let node = node.display().to_string();
    let project = ComposeProject::new(runtime, rootfs.path(), |image| {
        format!(
            "services:\n\
             \x20 broker:\n\
             \x20   image: {image}\n\
             \x20   read_only: true\n\
             \x20   tmpfs:\n      - /data\n\
             \x20   ulimits:\n      nofile: 1024\n      nproc: 1024\n\
             \x20   command: [\"sh\", \"-c\", \"cat /run/mosquitto/broker.conf; echo x > /data/x && echo x > /run/x && echo WROTE; touch /etc/x 2>/dev/null || echo ROOT-RO\"]\n\
             \x20 bridge:\n\
             \x20   image: {image}\n\
             \x20   devices:\n      - {node}:/dev/ttyACM0\n\
             \x20   ulimits:\n      nofile: 1024\n      nproc: 1024\n\
             \x20   command: [\"sh\", \"-c\", \"stat -c '%F %t:%T' /dev/ttyACM0 && echo hi > /dev/ttyACM0 && echo SERIAL-OK\"]\n"
        )
    });
    let out = run(&mut project.command(&["up"]));
    let diag = format!(
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for (service, expect) in [
        ("broker", "listener 1883\nWROTE\nROOT-RO\n"),
        ("bridge", "character special file 1:3\nSERIAL-OK\n"),
    ] {
        let container = format!("{}_{service}_1", project.name);
        let state = run_ok(podman(runtime).args([
            "inspect",
            "--format",
            "{{.State.ExitCode}} {{.OCIRuntime}}",
            &container,
        ]));
        assert_eq!(
            state.trim(),
            format!("0 {}", runtime.display()),
            "{service}: {diag}"
        );
        let logs = run_ok(podman(runtime).args(["logs", &container]));
        assert_eq!(logs, expect, "{service}: {diag}");
    }
}

/// podman turns the runtime's create error into its exit status by the wording: "executable
/// file not found" / "no such file or directory" give 127, "permission denied" gives 126.
fn missing_or_unrunnable_command(runtime: &Path) {
    if !ready("podman 126/127") {
        return;
    }
    let rootfs = BusyboxRootfs::new().unwrap();
    for (cmd, code) in [("no-such-cmd", 127), ("/no/such/cmd", 127), ("/etc", 126)] {
        let c = PodmanContainer::new(runtime, "claw-badcmd");
        let out = run(podman(runtime)
            .args(["run", "--rm", "--name", &c.name])
            .args(PODMAN_ULIMITS)
            .arg("--rootfs")
            .arg(rootfs.path())
            .arg(cmd));
        assert_eq!(
            out.status.code(),
            Some(code),
            "{cmd}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// `podman exec` from a caller whose session keyring possesses a key in host root's user
/// keyring (podman's profile allows keyctl): the exec'd process gets the container's own
/// session keyring and cannot read the key.
fn exec_cannot_read_the_callers_key(runtime: &Path) {
    if !ready("podman exec keyring") {
        return;
    }
    let rootfs = BusyboxRootfs::new().unwrap();
    std::fs::copy(common::probe(), rootfs.path().join("probe")).unwrap();
    let c = PodmanContainer::new(runtime, "claw-keyring");
    run_ok(
        podman(runtime)
            .args(["run", "-d", "--name", &c.name])
            .args(PODMAN_ULIMITS)
            .arg("--rootfs")
            .arg(rootfs.path())
            .args(["sleep", "1000"]),
    );
    let payload = format!("podman-host-secret-{}", std::process::id());
    let mut cmd = podman(runtime);
    cmd.args(["exec", &c.name, "/probe", "keyread"]);
    let serial = common::add_possessed_key_in_child(&payload, &mut cmd);
    let out = run(&mut cmd);
    common::invalidate_key(serial);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !stdout.contains(&payload),
        "read the caller's key: {stdout}"
    );
    assert!(stdout.contains("keyread: errno=13"), "EACCES: {stdout}");
}

fn runc() -> PathBuf {
    // Debian installs runc in /usr/sbin, which a CI PATH may lack.
    which("runc")
        .or_else(|| Some(PathBuf::from("/usr/sbin/runc")).filter(|p| p.is_file()))
        .expect("runc is installed by scripts/install-deps")
}

mod runc {
    #[test]
    fn podman_oneshot() {
        super::oneshot(&super::runc());
    }
    #[test]
    fn podman_interactive_tty() {
        super::interactive_tty(&super::runc());
    }
    #[test]
    fn podman_detached_exec_stop_rm() {
        super::detached_exec_stop_rm(&super::runc());
    }
    #[test]
    fn podman_device_and_privileged() {
        super::device_and_privileged(&super::runc());
    }
    #[test]
    fn podman_read_only_tmpcopyup() {
        super::read_only_tmpcopyup(&super::runc());
    }
    #[test]
    fn podman_compose_home_lab() {
        super::compose_home_lab(&super::runc());
    }
    #[test]
    fn podman_missing_or_unrunnable_command() {
        super::missing_or_unrunnable_command(&super::runc());
    }
    #[test]
    fn podman_exec_cannot_read_the_callers_key() {
        super::exec_cannot_read_the_callers_key(&super::runc());
    }
}

fn nanoclaw() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_nanoclaw"))
}

mod nanoclaw {
    #[test]
    fn podman_oneshot() {
        super::oneshot(&super::nanoclaw());
    }
    #[test]
    fn podman_interactive_tty() {
        super::interactive_tty(&super::nanoclaw());
    }
    #[test]
    fn podman_detached_exec_stop_rm() {
        super::detached_exec_stop_rm(&super::nanoclaw());
    }
    #[test]
    fn podman_device_and_privileged() {
        super::device_and_privileged(&super::nanoclaw());
    }
    #[test]
    fn podman_read_only_tmpcopyup() {
        super::read_only_tmpcopyup(&super::nanoclaw());
    }
    #[test]
    fn podman_compose_home_lab() {
        super::compose_home_lab(&super::nanoclaw());
    }
    #[test]
    fn podman_missing_or_unrunnable_command() {
        super::missing_or_unrunnable_command(&super::nanoclaw());
    }
    #[test]
    fn podman_exec_cannot_read_the_callers_key() {
        super::exec_cannot_read_the_callers_key(&super::nanoclaw());
    }
}
