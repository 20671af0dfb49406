//! The systemd cgroup driver (`--systemd-cgroup`) against a real systemd.
//!
//! This machine's PID 1 is not systemd, so each test boots one: the host's own systemd as PID 1
//! of a runc container (its own pid, mount and cgroup namespaces, a cgroup2 mount at
//! /sys/fs/cgroup, the host's /usr and /etc read-only, dbus socket-activated), and drives its
//! system bus with the nanoclaw under test from inside. On this hybrid host the container's
//! cgroup2 has no memory/pids/cpu controllers, so what is proven here is the D-Bus part: the
//! unit, its properties, the init in its cgroup, exec/pause/ps on it, removal, and every
//! fault path leaving nothing behind. The limits themselves are proven on a pure v2 host by the
//! VM stage (scripts/test-vm).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use claw_testsupport::{populate_busybox_rootfs, require_root, require_tool};
use serde_json::{json, Value};

mod common;
use common::NANOCLAW;

const SYSTEMD: &str = "/lib/systemd/systemd";

fn ready(test: &str) -> bool {
    require_root(test)
        && require_tool(test, "runc")
        && require_tool(test, "dbus-daemon")
        && claw_testsupport::require(
            test,
            Path::new(SYSTEMD).exists(),
            "needs systemd installed (scripts/install-deps)",
        )
}

/// The capabilities of this machine's bounding set, by name (runc refuses names outside it).
fn bounding_caps() -> Vec<String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .unwrap()
        .trim();
    let mask = u64::from_str_radix(hex, 16).unwrap();
    caps::all()
        .into_iter()
        .filter(|c| mask & (1u64 << c.index()) != 0)
        .map(|c| c.to_string())
        .collect()
}

/// A systemd booted as PID 1 of a runc container, with nanoclaw at /opt/nanoclaw and a work
/// directory shared at /work (the same path on the host: `host(...)`).
struct Systemd {
    id: String,
    bundle: tempfile::TempDir,
    work: PathBuf,
}

impl Systemd {
    fn boot() -> Self {
        let bundle = tempfile::Builder::new()
            .prefix("claw-systemd-")
            .tempdir()
            .unwrap();
        let rootfs = bundle.path().join("rootfs");
        for d in [
            "usr", "etc", "proc", "sys", "dev", "run", "tmp", "var", "opt", "root", "work",
        ] {
            std::fs::create_dir_all(rootfs.join(d)).unwrap();
        }
        for (l, t) in [
            ("bin", "usr/bin"),
            ("sbin", "usr/sbin"),
            ("lib", "usr/lib"),
            ("lib64", "usr/lib64"),
        ] {
            std::os::unix::fs::symlink(t, rootfs.join(l)).unwrap();
        }
        std::fs::write(rootfs.join("opt/nanoclaw"), b"").unwrap();
        let work = bundle.path().join("work");
        std::fs::create_dir_all(&work).unwrap();
        let tmpfs = |d: &str, mode: &str| {
            json!({"destination": d, "type": "tmpfs", "source": "tmpfs",
                   "options": ["nosuid", "nodev", format!("mode={mode}")]})
        };
        let caps = bounding_caps();
        let id = format!(
            "claw-sd-{}-{}",
            std::process::id(),
            bundle
                .path()
                .file_name()
                .unwrap()
                .to_string_lossy()
                .replace('.', "")
        );
        let config = json!({
            "ociVersion": "1.0.2",
            "process": {
                "terminal": false, "user": {"uid": 0, "gid": 0}, "cwd": "/",
                "args": [SYSTEMD, "--unit=dbus.socket"],
                "env": ["container=claw-test", "PATH=/usr/sbin:/usr/bin:/sbin:/bin"],
                "capabilities": {"bounding": caps, "effective": caps, "permitted": caps,
                                 "inheritable": caps, "ambient": caps},
                "noNewPrivileges": false
            },
            "root": {"path": "rootfs", "readonly": false},
            "hostname": "claw-systemd",
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
                 "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
                {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
                 "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
                {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
                 "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
                {"destination": "/sys", "type": "sysfs", "source": "sysfs",
                 "options": ["nosuid", "noexec", "nodev", "ro"]},
                {"destination": "/sys/fs/cgroup", "type": "cgroup2", "source": "cgroup2",
                 "options": ["nosuid", "noexec", "nodev", "rw"]},
                {"destination": "/usr", "type": "bind", "source": "/usr", "options": ["rbind", "ro"]},
                {"destination": "/etc", "type": "bind", "source": "/etc", "options": ["rbind", "ro"]},
                tmpfs("/run", "755"), tmpfs("/tmp", "1777"), tmpfs("/var", "755"),
                {"destination": "/opt/nanoclaw", "type": "bind", "source": NANOCLAW,
                 "options": ["bind", "ro"]},
                {"destination": "/work", "type": "bind", "source": work, "options": ["rbind", "rw"]}
            ],
            "linux": {
                "namespaces": [{"type": "pid"}, {"type": "ipc"}, {"type": "uts"},
                               {"type": "mount"}, {"type": "cgroup"}, {"type": "network"}]
            }
        });
        std::fs::write(
            bundle.path().join("config.json"),
            serde_json::to_vec_pretty(&config).unwrap(),
        )
        .unwrap();
        let out = Command::new("runc")
            .args(["run", "-d", "--bundle"])
            .arg(bundle.path())
            .arg(&id)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        assert!(out.status.success(), "runc run systemd: {out:?}");
        let sd = Systemd { id, bundle, work };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let state = sd.sh("systemctl is-system-running");
            let s = state.stdout.trim().to_string();
            if s == "running" || s == "degraded" {
                break;
            }
            assert!(Instant::now() < deadline, "systemd did not boot: {s:?}");
            std::thread::sleep(Duration::from_millis(200));
        }
        populate_busybox_rootfs(&sd.work.join("rootfs")).unwrap();
        sd
    }

    /// Runs `script` with sh in the systemd container; stdio goes through files so a created
    /// init that keeps them open does not hold the call.
    fn sh(&self, script: &str) -> Res {
        self.sh_env(script, &[])
    }

    fn sh_env(&self, script: &str, env: &[(&str, &str)]) -> Res {
        let out_f = self.work.join(".out");
        let err_f = self.work.join(".err");
        let mut cmd = Command::new("runc");
        cmd.arg("exec");
        for (k, v) in env {
            cmd.arg("--env").arg(format!("{k}={v}"));
        }
        let status = cmd
            .arg(&self.id)
            .args([
                "sh",
                "-c",
                &format!("({script}) </dev/null >/work/.out 2>/work/.err"),
            ])
            .stdin(Stdio::null())
            .status()
            .unwrap();
        Res {
            code: status.code(),
            stdout: std::fs::read_to_string(&out_f).unwrap_or_default(),
            stderr: std::fs::read_to_string(&err_f).unwrap_or_default(),
        }
    }

    fn nanoclaw(&self, args: &str) -> Res {
        self.sh(&format!("/opt/nanoclaw --systemd-cgroup {args}"))
    }

    /// Writes a nanoclaw bundle at /work/<name> running `args`, with `cgroups_path` (or none).
    fn bundle(&self, name: &str, cgroups_path: Option<&str>, args: &[&str]) -> String {
        let dir = self.work.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let mut spec = nanoclaw::spec::template::default_spec();
        spec["process"]["args"] = json!(args);
        spec["root"]["path"] = json!("/work/rootfs");
        spec["root"]["readonly"] = json!(true);
        if let Some(p) = cgroups_path {
            spec["linux"]["cgroupsPath"] = json!(p);
        }
        std::fs::write(dir.join("config.json"), serde_json::to_vec(&spec).unwrap()).unwrap();
        format!("/work/{name}")
    }

    /// Sets `annotations` in the config of bundle `name`.
    fn annotate(&self, name: &str, annotations: Value) {
        self.edit(name, |spec| spec["annotations"] = annotations);
    }

    /// Changes the config of bundle `name`.
    fn edit(&self, name: &str, change: impl FnOnce(&mut Value)) {
        let cfg = self.work.join(name).join("config.json");
        let mut spec: Value = serde_json::from_slice(&std::fs::read(&cfg).unwrap()).unwrap();
        change(&mut spec);
        std::fs::write(&cfg, serde_json::to_vec(&spec).unwrap()).unwrap();
    }

    fn prop(&self, unit: &str, name: &str) -> String {
        self.sh(&format!("systemctl show -P {name} {unit}"))
            .stdout
            .trim()
            .to_string()
    }

    /// True while systemd knows `unit` (loaded or active).
    fn unit_exists(&self, unit: &str) -> bool {
        let load = self.prop(unit, "LoadState");
        let active = self.prop(unit, "ActiveState");
        !(load.is_empty() || (load == "not-found" && active == "inactive"))
    }

    /// The pid of PID 1 of the systemd container, as the host sees it.
    fn host_pid(&self) -> i32 {
        let out = Command::new("runc")
            .args(["state", &self.id])
            .output()
            .unwrap();
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        v["pid"].as_i64().unwrap() as i32
    }

    fn assert_no_state(&self, id: &str) {
        let r = self.sh(&format!("ls /run/nanoclaw/{id}"));
        assert_ne!(r.code, Some(0), "state of {id} left behind: {}", r.stdout);
    }

    fn assert_no_cgroup(&self, rel: &str) {
        let r = self.sh(&format!("test -e /sys/fs/cgroup/{rel}"));
        assert_ne!(r.code, Some(0), "cgroup {rel} left behind");
    }
}

impl Drop for Systemd {
    fn drop(&mut self) {
        let _ = Command::new("runc")
            .args(["delete", "-f", &self.id])
            .stderr(Stdio::null())
            .status();
        let _ = &self.bundle;
    }
}

struct Res {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Res {
    #[track_caller]
    fn ok(&self) -> &str {
        assert_eq!(
            self.code,
            Some(0),
            "stdout: {}\nstderr: {}",
            self.stdout,
            self.stderr
        );
        &self.stdout
    }

    #[track_caller]
    fn failed(&self) -> &str {
        assert_ne!(
            self.code,
            Some(0),
            "expected a failure, stdout: {}",
            self.stdout
        );
        &self.stderr
    }
}

#[test]
fn scope_holds_the_init_delegated_and_goes_away_on_delete() {
    if !ready("systemd scope lifecycle") {
        return;
    }
    let sd = Systemd::boot();
    let b = sd.bundle("c1", Some("system.slice:docker:c1"), &["sleep", "1000"]);
    // runc's auxiliary unit properties.
    sd.annotate(
        "c1",
        json!({"org.systemd.property.CollectMode": "'inactive-or-failed'",
               "org.systemd.property.TimeoutStopSec": "uint64 7"}),
    );
    sd.nanoclaw(&format!("create --bundle {b} c1")).ok();
    let unit = "docker-c1.scope";
    assert_eq!(sd.prop(unit, "ActiveState"), "active");
    assert_eq!(sd.prop(unit, "Delegate"), "yes");
    assert_eq!(sd.prop(unit, "DefaultDependencies"), "no");
    assert_eq!(sd.prop(unit, "Slice"), "system.slice");
    assert_eq!(sd.prop(unit, "TasksAccounting"), "yes");
    assert_eq!(
        sd.prop(unit, "Description"),
        "nanoclaw container docker-c1.scope"
    );
    assert_eq!(
        sd.prop(unit, "ControlGroup"),
        "/system.slice/docker-c1.scope"
    );
    let state: Value = serde_json::from_str(sd.nanoclaw("state c1").ok()).unwrap();
    let pid = state["pid"].as_i64().unwrap();
    let procs = sd.sh("cat /sys/fs/cgroup/system.slice/docker-c1.scope/cgroup.procs");
    assert_eq!(procs.ok().trim(), pid.to_string());
    // systemd itself says the init belongs to the unit.
    let owner = sd.sh(&format!("busctl call org.freedesktop.systemd1 /org/freedesktop/systemd1 org.freedesktop.systemd1.Manager GetUnitByPID u {pid}"));
    assert!(
        owner.ok().contains("docker_2dc1_2escope"),
        "{}",
        owner.stdout
    );

    sd.nanoclaw("start c1").ok();
    // exec lands in the same unit; ps, pause and resume act on it. The commands after create
    // follow the container's record: podman passes --systemd-cgroup to create, not to exec.
    sd.sh("/opt/nanoclaw exec -d c1 sleep 999").ok();
    let procs = sd.sh("cat /sys/fs/cgroup/system.slice/docker-c1.scope/cgroup.procs");
    assert_eq!(procs.ok().lines().count(), 2, "{}", procs.stdout);
    let ps = sd.sh("/opt/nanoclaw ps c1");
    assert!(ps.ok().contains("sleep 999"), "{}", ps.stdout);
    sd.nanoclaw("pause c1").ok();
    let frozen = sd.sh("cat /sys/fs/cgroup/system.slice/docker-c1.scope/cgroup.freeze");
    assert_eq!(frozen.ok().trim(), "1");
    sd.nanoclaw("resume c1").ok();
    sd.nanoclaw("events --stats c1").ok();

    sd.nanoclaw("delete --force c1").ok();
    assert!(!sd.unit_exists(unit), "{unit} still known to systemd");
    sd.assert_no_cgroup("system.slice/docker-c1.scope");
    sd.assert_no_state("c1");
}

#[test]
fn default_path_slice_units_and_a_stopped_container() {
    if !ready("systemd default path") {
        return;
    }
    let sd = Systemd::boot();
    // No cgroupsPath: system.slice, prefix nanoclaw, the id (runc's rule with our prefix).
    let b = sd.bundle("d1", None, &["true"]);
    sd.nanoclaw(&format!("run --bundle {b} d1")).ok();
    assert!(!sd.unit_exists("nanoclaw-d1.scope"));
    sd.assert_no_state("d1");

    let b = sd.bundle("d2", None, &["sleep", "1000"]);
    sd.nanoclaw(&format!("create --bundle {b} d2")).ok();
    assert_eq!(sd.prop("nanoclaw-d2.scope", "Slice"), "system.slice");
    // The init exits: systemd drops the empty scope itself; delete still succeeds.
    sd.nanoclaw("kill d2 KILL").ok();
    let deadline = Instant::now() + Duration::from_secs(10);
    while sd.unit_exists("nanoclaw-d2.scope") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    sd.nanoclaw("delete d2").ok();
    sd.assert_no_state("d2");

    // A name ending in .slice makes the unit a slice; the init joins its cgroup.
    let b = sd.bundle(
        "s1",
        Some("system.slice:ignored:system-claw.slice"),
        &["sleep", "1000"],
    );
    sd.nanoclaw(&format!("create --bundle {b} s1")).ok();
    assert_eq!(sd.prop("system-claw.slice", "ActiveState"), "active");
    let procs = sd.sh("cat /sys/fs/cgroup/system.slice/system-claw.slice/cgroup.procs");
    assert_eq!(procs.ok().lines().count(), 1);
    sd.nanoclaw("delete --force s1").ok();
    assert_ne!(sd.prop("system-claw.slice", "ActiveState"), "active");
    sd.assert_no_cgroup("system.slice/system-claw.slice");
}

/// What a process in container `id` gets from a char device `major:minor` it creates on a
/// tmpfs: `open-ok` (read 4 bytes / wrote a line) or the shell's error.
fn device_access(
    sd: &Systemd,
    id: &str,
    node: &str,
    major: u32,
    minor: u32,
    write: bool,
) -> String {
    let io = if write {
        format!("echo nanoclaw-device-test > /mnt/{node}")
    } else {
        format!("head -c 4 /mnt/{node} >/dev/null")
    };
    let r = sd.sh(&format!(
        "/opt/nanoclaw exec {id} sh -c 'mknod /mnt/{node} c {major} {minor} 2>/dev/null; {io} && echo open-ok'"
    ));
    format!("{}{}", r.stdout.trim(), r.stderr.trim())
}

#[test]
fn device_rules_reach_systemd_and_hold_across_a_daemon_reload() {
    if !ready("systemd device rules") {
        return;
    }
    let sd = Systemd::boot();
    let with_mknod = |spec: &mut Value| {
        for set in ["bounding", "effective", "permitted"] {
            spec["process"]["capabilities"][set]
                .as_array_mut()
                .unwrap()
                .push(json!("CAP_MKNOD"));
        }
        spec["mounts"].as_array_mut().unwrap().push(json!(
            {"destination": "/mnt", "type": "tmpfs", "source": "tmpfs", "options": ["mode=755"]}
        ));
    };
    // The default rules (deny all, then runc's allowed devices): an allow list systemd
    // can hold exactly.
    let b = sd.bundle("dv1", Some("system.slice:claw:dv1"), &["sleep", "1000"]);
    sd.edit("dv1", with_mknod);
    sd.nanoclaw(&format!("run -d --bundle {b} dv1")).ok();
    let unit = "claw-dv1.scope";
    assert_eq!(sd.prop(unit, "DevicePolicy"), "strict");
    let allow = sd.prop(unit, "DeviceAllow");
    for entry in ["char-* m", "/dev/char/1:5 rwm", "char-136 rwm"] {
        assert!(
            allow.contains(entry),
            "{entry:?} not in DeviceAllow {allow:?}"
        );
    }
    // An exact-rules container (one deny after allowing everything): systemd gets no filter
    // and nanoclaw's alone decides.
    let b = sd.bundle("dv2", Some("system.slice:claw:dv2"), &["sleep", "1000"]);
    sd.edit("dv2", |spec| {
        with_mknod(spec);
        spec["linux"]["resources"]["devices"] =
            json!([{"allow": false, "type": "c", "major": 1, "minor": 11, "access": "w"}]);
    });
    sd.nanoclaw(&format!("run -d --bundle {b} dv2")).ok();
    assert_eq!(sd.prop("claw-dv2.scope", "DevicePolicy"), "auto");
    assert_eq!(sd.prop("claw-dv2.scope", "DeviceAllow"), "");

    // zero (1:5) is allowed in both; writing kmsg (1:11) in neither. A daemon-reload makes
    // systemd attach its own filter again next to nanoclaw's: the kernel then needs both to
    // agree, so a translation narrower than the rules would show here.
    for round in ["before", "after"] {
        for id in ["dv1", "dv2"] {
            let zero = device_access(&sd, id, "zero", 1, 5, false);
            assert_eq!(zero, "open-ok", "{id} {round} daemon-reload: zero");
            let kmsg = device_access(&sd, id, "kmsg", 1, 11, true);
            assert!(
                kmsg.contains("Operation not permitted"),
                "{id} {round} daemon-reload: kmsg write gave {kmsg:?}"
            );
        }
        if round == "before" {
            sd.sh("systemctl daemon-reload").ok();
        }
    }
    // The reload kept the unit's view too.
    assert_eq!(sd.prop(unit, "DevicePolicy"), "strict");
    for id in ["dv1", "dv2"] {
        sd.nanoclaw(&format!("delete --force {id}")).ok();
    }
}

#[test]
fn bad_paths_and_systemd_faults_leave_nothing_behind() {
    if !ready("systemd faults") {
        return;
    }
    let sd = Systemd::boot();

    // Not slice:prefix:name, or names systemd would refuse: refused before anything exists.
    for (i, bad) in [
        "/sys/fs/cgroup/x",
        "a:b",
        "user--x.slice:p:x",
        "system.slice:p:a+b",
    ]
    .iter()
    .enumerate()
    {
        let id = format!("bad{i}");
        let b = sd.bundle(&id, Some(bad), &["true"]);
        let r = sd.nanoclaw(&format!("create --bundle {b} {id}"));
        assert!(
            r.failed().contains("linux.cgroupsPath"),
            "{bad}: {}",
            r.stderr
        );
        sd.assert_no_state(&id);
    }

    // An auxiliary property that is not GVariant text runc reads: refused naming it.
    let b = sd.bundle("badprop", None, &["true"]);
    sd.annotate(
        "badprop",
        json!({"org.systemd.property.TimeoutStopSec": "soon"}),
    );
    let r = sd.nanoclaw(&format!("create --bundle {b} badprop"));
    let e = r.failed();
    assert!(
        e.contains("annotations[") && e.contains("org.systemd.property.TimeoutStopSec"),
        "{e}"
    );
    sd.assert_no_state("badprop");

    // No bus: the error names the unit and the socket; no state, no unit, no cgroup.
    let b = sd.bundle("nobus", None, &["sleep", "1000"]);
    let r = sd.sh_env(
        &format!("/opt/nanoclaw --systemd-cgroup create --bundle {b} nobus"),
        &[("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/run/no-such-bus")],
    );
    let e = r.failed();
    assert!(
        e.contains("nanoclaw-nobus.scope") && e.contains("/run/no-such-bus"),
        "{e}"
    );
    sd.assert_no_state("nobus");
    assert!(!sd.unit_exists("nanoclaw-nobus.scope"));
    sd.assert_no_cgroup("system.slice/nanoclaw-nobus.scope");

    // The unit already exists (someone else's, in another slice): refused with systemd's
    // error; theirs stays, with only its own process.
    sd.sh("systemd-run --unit=nanoclaw-busy --slice=claw-other.slice --scope sleep 1000 >/dev/null 2>&1 &")
        .ok();
    let deadline = Instant::now() + Duration::from_secs(10);
    while sd.prop("nanoclaw-busy.scope", "ActiveState") != "active" {
        assert!(
            Instant::now() < deadline,
            "systemd-run --scope did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let theirs = "claw.slice/claw-other.slice/nanoclaw-busy.scope";
    let b = sd.bundle("busy", None, &["sleep", "1000"]);
    let r = sd.nanoclaw(&format!("create --bundle {b} busy"));
    let e = r.failed();
    assert!(
        e.contains("nanoclaw-busy.scope") && e.contains("org.freedesktop.systemd1.UnitExists"),
        "{e}"
    );
    assert_eq!(sd.prop("nanoclaw-busy.scope", "ActiveState"), "active");
    sd.assert_no_state("busy");
    sd.assert_no_cgroup("system.slice/nanoclaw-busy.scope");
    let procs = sd.sh(&format!("cat /sys/fs/cgroup/{theirs}/cgroup.procs"));
    assert_eq!(procs.ok().lines().count(), 1, "only systemd-run's sleep");

    // A populated cgroup at the unit's place is never adopted either.
    sd.sh("systemd-run --unit=claw-squat --scope sleep 1000 >/dev/null 2>&1 &")
        .ok();
    while sd.prop("claw-squat.scope", "ActiveState") != "active" {
        assert!(
            Instant::now() < deadline,
            "systemd-run --scope did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let b = sd.bundle(
        "squat",
        Some("system.slice::claw-squat"),
        &["sleep", "1000"],
    );
    let r = sd.nanoclaw(&format!("create --bundle {b} squat"));
    assert!(r.failed().contains("already in use"), "{}", r.stderr);
    assert_eq!(sd.prop("claw-squat.scope", "ActiveState"), "active");
    sd.assert_no_state("squat");

    // systemd refuses the unit (its slice is masked): the D-Bus error is named.
    sd.sh("systemctl mask --runtime claw-masked.slice").ok();
    let b = sd.bundle(
        "masked",
        Some("claw-masked.slice:nanoclaw:masked"),
        &["sleep", "1000"],
    );
    let r = sd.nanoclaw(&format!("create --bundle {b} masked"));
    let e = r.failed();
    assert!(
        e.contains("nanoclaw-masked.scope") && e.contains("masked"),
        "{e}"
    );
    sd.assert_no_state("masked");
    assert!(!sd.unit_exists("nanoclaw-masked.scope"));

    // systemd does not answer (stopped): a timeout naming the unit; once systemd runs again
    // no unit or cgroup of that container appears.
    let pid = sd.host_pid();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGSTOP,
    )
    .unwrap();
    let b = sd.bundle("hang", None, &["sleep", "1000"]);
    let r = sd.sh_env(
        &format!("/opt/nanoclaw --systemd-cgroup create --bundle {b} hang"),
        &[("NANOCLAW_TEST_SYSTEMD_TIMEOUT_MS", "1500")],
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGCONT,
    )
    .unwrap();
    let e = r.failed();
    assert!(
        e.contains("nanoclaw-hang.scope") && e.contains("in time"),
        "{e}"
    );
    sd.assert_no_state("hang");
    std::thread::sleep(Duration::from_secs(2));
    assert!(!sd.unit_exists("nanoclaw-hang.scope"));
    sd.assert_no_cgroup("system.slice/nanoclaw-hang.scope");
}

#[test]
fn delete_force_after_a_crash_mid_create_removes_the_scope() {
    if !ready("systemd crash mid-create") {
        return;
    }
    let sd = Systemd::boot();
    for point in [
        "create:cgroup",
        "create:clone",
        "create:ready",
        "create:saved",
    ] {
        let id = point.replace(':', "-");
        let b = sd.bundle(&id, None, &["sleep", "1000"]);
        let r = sd.sh_env(
            &format!("/opt/nanoclaw --systemd-cgroup create --bundle {b} {id}"),
            &[("NANOCLAW_TEST_CRASH_AT", point)],
        );
        assert_ne!(r.code, Some(0), "{point}: the runtime should have died");
        sd.nanoclaw(&format!("delete --force {id}")).ok();
        let unit = format!("nanoclaw-{id}.scope");
        assert!(!sd.unit_exists(&unit), "{point}: {unit} left behind");
        sd.assert_no_cgroup(&format!("system.slice/{unit}"));
        sd.assert_no_state(&id);
    }
}

#[test]
fn rootless_goes_through_the_users_systemd_instance() {
    let test = "systemd rootless user instance";
    if !ready(test) || !claw_testsupport::bundle::require_user(test, "clawtest") {
        return;
    }
    let Some((uid, gid)) = claw_testsupport::bundle::user_ids("clawtest") else {
        return;
    };
    let sd = Systemd::boot();
    sd.sh(&format!("systemctl start user@{uid}.service")).ok();
    let b = sd.bundle("r1", None, &["sleep", "1000"]);
    // `nanoclaw spec --rootless` as the user would write it: root of its own user namespace.
    let cfg = sd.work.join("r1/config.json");
    let mut spec = nanoclaw::spec::template::rootless_spec(uid, gid);
    spec["process"]["args"] = json!(["sleep", "1000"]);
    spec["root"]["path"] = json!("/work/rootfs");
    std::fs::write(&cfg, serde_json::to_vec(&spec).unwrap()).unwrap();
    let user = format!(
        "setpriv --reuid {uid} --regid {gid} --init-groups env XDG_RUNTIME_DIR=/run/user/{uid}"
    );
    sd.sh(&format!(
        "{user} /opt/nanoclaw --systemd-cgroup create --bundle {b} r1"
    ))
    .ok();
    let show = |p: &str| {
        sd.sh(&format!(
            "{user} systemctl --user show -P {p} nanoclaw-r1.scope"
        ))
        .stdout
        .trim()
        .to_string()
    };
    let cg =
        format!("/user.slice/user-{uid}.slice/user@{uid}.service/user.slice/nanoclaw-r1.scope");
    assert_eq!(show("ActiveState"), "active");
    assert_eq!(show("Delegate"), "yes");
    assert_eq!(show("ControlGroup"), cg);
    let state: Value =
        serde_json::from_str(sd.sh(&format!("{user} /opt/nanoclaw state r1")).ok()).unwrap();
    let procs = sd.sh(&format!("cat /sys/fs/cgroup{cg}/cgroup.procs"));
    assert_eq!(
        procs.ok().trim(),
        state["pid"].as_i64().unwrap().to_string()
    );
    sd.sh(&format!(
        "{user} /opt/nanoclaw --systemd-cgroup delete --force r1"
    ))
    .ok();
    assert_eq!(show("ActiveState"), "inactive");
    sd.assert_no_cgroup(&cg[1..]);
}
