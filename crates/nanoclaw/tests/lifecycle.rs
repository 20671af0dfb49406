//! The OCI lifecycle and runc's command line, observed from outside: state JSON and exit codes
//! compared with runc for the same operations, hooks (what they receive, what their failure
//! does), kill/pause/resume/exec/list/ps, and crash safety (nanoclaw SIGKILLed at every named
//! point of create, start and delete; `delete --force` then leaves nothing behind).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use claw_testsupport::engines::{cgroup_dirs_named, unique_name, wait_until};
use claw_testsupport::{require_root, which, BusyboxRootfs};
use serde_json::{json, Value};

const NANOCLAW: &str = env!("CARGO_BIN_EXE_nanoclaw");

/// A bundle (busybox rootfs + config.json) and a private --root, both removed on drop.
struct Fixture {
    rootfs: BusyboxRootfs,
    bundle: tempfile::TempDir,
    root: tempfile::TempDir,
}

impl Drop for Fixture {
    /// A failed assertion must not leak containers: force-delete whatever is still under the
    /// private roots (processes, cgroups, state).
    fn drop(&mut self) {
        for rt in [nanoclaw(), runc()] {
            let name = rt.file_name().unwrap().to_string_lossy().into_owned();
            let root = self.root.path().join(name);
            let Ok(entries) = std::fs::read_dir(&root) else {
                continue;
            };
            for e in entries.flatten() {
                let _ = Command::new(&rt)
                    .arg("--root")
                    .arg(&root)
                    .args(["delete", "--force"])
                    .arg(e.file_name())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }
}

impl Fixture {
    fn new(args: &[&str]) -> Self {
        let rootfs = BusyboxRootfs::new().unwrap();
        let bundle = tempfile::Builder::new()
            .prefix("claw-lc-bundle-")
            .tempdir()
            .unwrap();
        let root = tempfile::Builder::new()
            .prefix("claw-lc-root-")
            .tempdir()
            .unwrap();
        let f = Self {
            rootfs,
            bundle,
            root,
        };
        f.write_config(|spec| spec["process"]["args"] = json!(args));
        f
    }

    /// Rewrites config.json from nanoclaw's default spec, with `edit` applied.
    fn write_config(&self, edit: impl FnOnce(&mut Value)) {
        let mut spec = nanoclaw::spec::template::default_spec();
        spec["root"]["path"] = json!(self.rootfs.path());
        spec["process"]["terminal"] = json!(false);
        spec["root"]["readonly"] = json!(false);
        edit(&mut spec);
        std::fs::write(self.bundle.path().join("config.json"), spec.to_string()).unwrap();
    }

    fn rootfs(&self) -> &Path {
        self.rootfs.path()
    }

    /// `<runtime> --root <root>/<runtime name> ARGS`.
    fn cmd(&self, runtime: &Path, args: &[&str]) -> Command {
        let name = runtime.file_name().unwrap().to_string_lossy().into_owned();
        let mut c = Command::new(runtime);
        c.arg("--root").arg(self.root.path().join(name)).args(args);
        c
    }

    fn run(&self, runtime: &Path, args: &[&str]) -> Output {
        output_via_files(&mut self.cmd(runtime, args))
    }

    fn create(&self, runtime: &Path, id: &str) -> Output {
        let b = self.bundle.path().to_string_lossy().into_owned();
        self.run(runtime, &["create", "--bundle", &b, id])
    }

    fn state(&self, runtime: &Path, id: &str) -> Option<Value> {
        let out = self.run(runtime, &["state", id]);
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).unwrap())
    }

    fn status(&self, runtime: &Path, id: &str) -> String {
        self.state(runtime, id)
            .and_then(|v| v["status"].as_str().map(str::to_string))
            .unwrap_or_else(|| "absent".into())
    }
}

/// Runs `cmd` with stdout/stderr in files rather than pipes: a container's processes inherit
/// the runtime's stdio (that is how engines collect their output), so after `create`, `run -d`
/// or `exec -d` a pipe would not see EOF until the container exits.
fn output_via_files(cmd: &mut Command) -> Output {
    let out = tempfile::tempfile().unwrap();
    let err = tempfile::tempfile().unwrap();
    let status = cmd
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(err.try_clone().unwrap())
        .status()
        .unwrap();
    let read = |mut f: std::fs::File| {
        use std::io::{Read, Seek};
        let mut v = Vec::new();
        f.rewind().unwrap();
        f.read_to_end(&mut v).unwrap();
        v
    };
    Output {
        status,
        stdout: read(out),
        stderr: read(err),
    }
}

fn nanoclaw() -> PathBuf {
    PathBuf::from(NANOCLAW)
}

fn runc() -> PathBuf {
    // Debian installs runc in /usr/sbin, which a CI PATH may lack.
    which("runc")
        .or_else(|| Some(PathBuf::from("/usr/sbin/runc")).filter(|p| p.is_file()))
        .expect("runc is installed by scripts/install-deps")
}

/// One step of the comparison: what runc's and nanoclaw's behaviour must agree on.
#[derive(Debug, PartialEq)]
struct Step {
    op: String,
    code: Option<i32>,
    /// For `state`: the key set, status, whether pid is 0, and the bundle.
    state: Option<(Vec<String>, String, bool, String)>,
}

fn scenario(f: &Fixture, rt: &Path, id: &str) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut op = |name: &str, args: &[&str]| {
        let out = f.run(rt, args);
        let state = (args.first() == Some(&"state") && out.status.success()).then(|| {
            let v: Value = serde_json::from_slice(&out.stdout).unwrap();
            let mut keys: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
            keys.sort();
            (
                keys,
                v["status"].as_str().unwrap_or_default().to_string(),
                v["pid"] == json!(0),
                v["bundle"].as_str().unwrap_or_default().to_string(),
            )
        });
        steps.push(Step {
            op: name.to_string(),
            code: out.status.code(),
            state,
        });
    };
    let b = f.bundle.path().to_string_lossy().into_owned();
    op("state of a missing container", &["state", id]);
    op("kill of a missing container", &["kill", id, "KILL"]);
    op("create", &["create", "--bundle", &b, id]);
    op("create with the same id", &["create", "--bundle", &b, id]);
    op("state after create", &["state", id]);
    op("start", &["start", id]);
    op("start again", &["start", id]);
    op("state after start", &["state", id]);
    op("pause", &["pause", id]);
    op("state while paused", &["state", id]);
    op("resume", &["resume", id]);
    op("resume a running container", &["resume", id]);
    op("delete a running container", &["delete", id]);
    op("kill with a name", &["kill", id, "SIGKILL"]);
    assert!(
        wait_until(Duration::from_secs(10), || f.status(rt, id) == "stopped"),
        "{} did not stop",
        rt.display()
    );
    op("state after the init died", &["state", id]);
    op("kill a stopped container", &["kill", id, "9"]);
    op("exec in a stopped container", &["exec", id, "true"]);
    op("delete a stopped container", &["delete", id]);
    op("state after delete", &["state", id]);
    op("delete again", &["delete", id]);
    op(
        "delete --force of a missing container",
        &["delete", "--force", id],
    );
    steps
}

#[test]
fn state_json_and_exit_codes_match_runc() {
    if !require_root("state_json_and_exit_codes_match_runc") {
        return;
    }
    let f = Fixture::new(&["sleep", "100"]);
    let id = unique_name("cmp");
    let with_runc = scenario(&f, &runc(), &id);
    let with_nanoclaw = scenario(&f, &nanoclaw(), &id);
    for (r, n) in with_runc.iter().zip(with_nanoclaw.iter()) {
        assert_eq!(r, n, "runc and nanoclaw differ at {:?}", r.op);
    }
    assert_eq!(with_runc.len(), with_nanoclaw.len());
    // And the anchor itself behaves as documented, so the comparison has teeth.
    let created = with_runc
        .iter()
        .find(|s| s.op == "state after create")
        .unwrap();
    assert_eq!(created.state.as_ref().unwrap().1, "created");
    let paused = with_runc
        .iter()
        .find(|s| s.op == "state while paused")
        .unwrap();
    assert_eq!(paused.state.as_ref().unwrap().1, "paused");
    let dead = with_runc
        .iter()
        .find(|s| s.op == "state after the init died")
        .unwrap();
    assert_eq!(dead.state.as_ref().unwrap().1, "stopped");
    assert!(
        dead.state.as_ref().unwrap().2,
        "a stopped container shows pid 0"
    );
    let dup = with_runc
        .iter()
        .find(|s| s.op == "create with the same id")
        .unwrap();
    assert_eq!(dup.code, Some(1));
}

#[test]
fn run_exit_status_matches_runc() {
    if !require_root("run_exit_status_matches_runc") {
        return;
    }
    for (script, want) in [("exit 3", 3), ("exec /bin/false", 1), ("true", 0)] {
        let f = Fixture::new(&["sh", "-c", script]);
        let b = f.bundle.path().to_string_lossy().into_owned();
        for rt in [runc(), nanoclaw()] {
            let id = unique_name("runexit");
            let out = f.run(&rt, &["run", "--bundle", &b, &id]);
            assert_eq!(out.status.code(), Some(want), "{} {script}", rt.display());
        }
    }
}

#[test]
fn kill_pause_resume_list_ps() {
    if !require_root("kill_pause_resume_list_ps") {
        return;
    }
    // A container that counts: a paused one must not make progress.
    let f = Fixture::new(&["sh", "-c", "trap 'echo got-usr1 > /tmp/usr1' USR1; i=0; while true; do i=$((i+1)); echo $i > /tmp/count; sleep 0.05; done"]);
    let rt = nanoclaw();
    let id = unique_name("kpr");
    assert!(f.create(&rt, &id).status.success());
    assert!(f.run(&rt, &["start", &id]).status.success());
    let count = || std::fs::read_to_string(f.rootfs().join("tmp/count")).unwrap_or_default();
    assert!(wait_until(Duration::from_secs(5), || !count().is_empty()));

    // list: table, json and -q agree.
    let q = f.run(&rt, &["list", "-q"]);
    assert_eq!(String::from_utf8_lossy(&q.stdout), format!("{id}\n"));
    let j: Value =
        serde_json::from_slice(&f.run(&rt, &["list", "--format", "json"]).stdout).unwrap();
    assert_eq!(j[0]["id"], json!(id));
    assert_eq!(j[0]["status"], "running");
    let table = String::from_utf8_lossy(&f.run(&rt, &["list"]).stdout).into_owned();
    assert!(
        table.starts_with("ID ") && table.contains(&id) && table.contains("running"),
        "{table}"
    );

    // ps: the init (and the sleep it forks) are there, in json and as a ps table.
    let init = f.state(&rt, &id).unwrap()["pid"].as_i64().unwrap();
    let pids: Vec<i64> =
        serde_json::from_slice(&f.run(&rt, &["ps", "--format", "json", &id]).stdout).unwrap();
    assert!(pids.contains(&init), "{pids:?} lacks {init}");
    let ps = String::from_utf8_lossy(&f.run(&rt, &["ps", &id]).stdout).into_owned();
    assert!(ps.lines().next().unwrap().contains("PID"), "{ps}");
    assert!(ps.contains(&init.to_string()), "{ps}");

    // pause freezes: the counter stops; resume thaws: it moves again.
    assert!(f.run(&rt, &["pause", &id]).status.success());
    assert_eq!(f.status(&rt, &id), "paused");
    std::thread::sleep(Duration::from_millis(200));
    let frozen = count();
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(count(), frozen, "the container ran while paused");
    assert!(f.run(&rt, &["resume", &id]).status.success());
    assert_eq!(f.status(&rt, &id), "running");
    assert!(wait_until(Duration::from_secs(5), || count() != frozen));

    // kill by name reaches the init's trap; an unknown signal is refused by name.
    assert!(f.run(&rt, &["kill", &id, "usr1"]).status.success());
    assert!(wait_until(Duration::from_secs(5), || f
        .rootfs()
        .join("tmp/usr1")
        .exists()));
    let bad = f.run(&rt, &["kill", &id, "SIGNOPE"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("SIGNOPE"));

    // kill --all KILL: every process goes, the container is stopped, delete cleans up.
    assert!(f.run(&rt, &["kill", "--all", &id, "KILL"]).status.success());
    assert!(wait_until(Duration::from_secs(10), || f.status(&rt, &id) == "stopped"));
    assert!(f.run(&rt, &["delete", &id]).status.success());
    assert!(!f.root.path().join("nanoclaw").join(&id).exists());
}

#[test]
fn exec_joins_the_container() {
    if !require_root("exec_joins_the_container") {
        return;
    }
    let f = Fixture::new(&["sleep", "100"]);
    f.write_config(|spec| {
        spec["process"]["args"] = json!(["sleep", "100"]);
        spec["hostname"] = json!("inside");
        spec["process"]["env"] = json!(["PATH=/bin", "FROM_CONFIG=yes"]);
    });
    let rt = nanoclaw();
    let id = unique_name("exec");
    assert!(f.create(&rt, &id).status.success());
    assert!(f.run(&rt, &["start", &id]).status.success());
    let out = f.run(
        &rt,
        &[
            "exec", "--env", "EXTRA=1", "--cwd", "/tmp", "--user", "65534:65534", &id, "sh", "-c",
            "echo $(hostname) $$ $FROM_CONFIG $EXTRA $(pwd) $(id -u):$(id -g); cat /proc/1/cmdline | tr '\\0' ' '",
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let first = stdout.lines().next().unwrap_or_default();
    let fields: Vec<&str> = first.split_whitespace().collect();
    assert_eq!(fields[0], "inside", "uts namespace joined: {stdout}");
    assert_ne!(
        fields[1], "1",
        "a new pid in the container's pid namespace: {stdout}"
    );
    assert!(
        fields[1].parse::<u32>().unwrap() < 100,
        "pid from the container's namespace: {stdout}"
    );
    assert_eq!(
        &fields[2..],
        ["yes", "1", "/tmp", "65534:65534"],
        "{stdout}"
    );
    assert!(
        stdout.contains("sleep 100"),
        "sees the container's init: {stdout}"
    );

    // Exit status and a missing program.
    assert_eq!(
        f.run(&rt, &["exec", &id, "sh", "-c", "exit 7"])
            .status
            .code(),
        Some(7)
    );
    let missing = f.run(&rt, &["exec", &id, "/no/such/program"]);
    assert_ne!(missing.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/no/such/program"));

    // --process, -d and --pid-file: the process runs on after exec returns.
    let dir = tempfile::tempdir().unwrap();
    let process = dir.path().join("p.json");
    std::fs::write(
        &process,
        json!({"args": ["sleep", "30"], "cwd": "/", "user": {"uid": 0, "gid": 0}, "env": ["PATH=/bin"]}).to_string(),
    )
    .unwrap();
    let pidfile = dir.path().join("exec.pid");
    let out = f.run(
        &rt,
        &[
            "exec",
            "--process",
            &process.to_string_lossy(),
            "--detach",
            "--pid-file",
            &pidfile.to_string_lossy(),
            &id,
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pid: i32 = std::fs::read_to_string(&pidfile).unwrap().parse().unwrap();
    let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap();
    assert_eq!(cmdline, "sleep\u{0}30\u{0}");
    let ps: Vec<i32> =
        serde_json::from_slice(&f.run(&rt, &["ps", "--format", "json", &id]).stdout).unwrap();
    assert!(
        ps.contains(&pid),
        "the exec'd process is in the container's cgroup: {ps:?}"
    );

    assert!(f.run(&rt, &["delete", "--force", &id]).status.success());
    assert!(wait_until(Duration::from_secs(5), || !Path::new(&format!(
        "/proc/{pid}"
    ))
    .exists()
        || std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|s| s.contains(") Z "))));
}

fn hook(script: &str) -> Value {
    json!({"path": "/bin/sh", "args": ["sh", "-c", script], "env": ["HOOK=1"], "timeout": 10})
}

#[test]
fn hooks_get_the_state_and_their_failures_follow_the_spec() {
    if !require_root("hooks_get_the_state_and_their_failures_follow_the_spec") {
        return;
    }
    let out = tempfile::tempdir().unwrap();
    let o = out.path().display().to_string();
    let f = Fixture::new(&["sleep", "100"]);
    f.write_config(|spec| {
        spec["process"]["args"] = json!(["sleep", "100"]);
        spec["annotations"] = json!({"org.claw.test": "hooks"});
        spec["hooks"] = json!({
            "prestart": [hook(&format!("cat > {o}/prestart"))],
            "createRuntime": [hook(&format!("cat > {o}/createRuntime; echo $HOOK > {o}/env"))],
            "createContainer": [hook(&format!("cat > {o}/createContainer; readlink /proc/self/ns/mnt > {o}/createContainer.mnt"))],
            "startContainer": [hook("cat > /tmp/startContainer")],
            "poststart": [hook(&format!("cat > {o}/poststart")), hook("exit 1"), hook(&format!("touch {o}/after-failed-poststart"))],
            "poststop": [hook("exit 2"), hook(&format!("cat > {o}/poststop"))],
        });
    });
    let rt = nanoclaw();
    let id = unique_name("hooks");
    let created = f.create(&rt, &id);
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let read = |name: &str| -> Value {
        serde_json::from_slice(&std::fs::read(out.path().join(name)).unwrap()).unwrap()
    };
    let pid = f.state(&rt, &id).unwrap()["pid"].clone();
    for name in ["prestart", "createRuntime"] {
        let v = read(name);
        assert_eq!(v["id"], json!(id), "{name}: {v}");
        assert_eq!(v["pid"], pid, "{name}: {v}");
        assert_eq!(v["bundle"], json!(f.bundle.path()), "{name}: {v}");
        assert_eq!(v["annotations"]["org.claw.test"], "hooks", "{name}: {v}");
    }
    assert_eq!(
        std::fs::read_to_string(out.path().join("env")).unwrap(),
        "1\n"
    );
    assert!(
        !out.path().join("poststart").exists(),
        "poststart ran before start"
    );
    // createContainer ran in the container's mount namespace (before pivot_root, so it could
    // still write to the host path), with the same state.
    let init_mnt = std::fs::read_link(format!("/proc/{}/ns/mnt", pid.as_i64().unwrap())).unwrap();
    let hook_mnt = std::fs::read_to_string(out.path().join("createContainer.mnt")).unwrap();
    assert_eq!(
        hook_mnt.trim(),
        init_mnt.to_string_lossy(),
        "createContainer not in the container's mount namespace"
    );
    assert_ne!(init_mnt, std::fs::read_link("/proc/self/ns/mnt").unwrap());
    assert_eq!(read("createContainer")["pid"], pid);
    assert!(
        !f.rootfs().join("tmp/startContainer").exists(),
        "startContainer ran before start"
    );

    // A failing poststart hook fails `start` and stops the container (runtime-spec 1.3); the
    // hooks after it do not run.
    let started = f.run(&rt, &["start", &id]);
    assert!(
        !started.status.success(),
        "{}",
        String::from_utf8_lossy(&started.stderr)
    );
    assert_eq!(read("poststart")["status"], "running");
    // startContainer ran inside the container: its /tmp is the rootfs's.
    assert!(wait_until(Duration::from_secs(5), || f
        .rootfs()
        .join("tmp/startContainer")
        .exists()));
    std::thread::sleep(Duration::from_millis(100));
    let sc: Value =
        serde_json::from_slice(&std::fs::read(f.rootfs().join("tmp/startContainer")).unwrap())
            .unwrap();
    assert_eq!(sc["id"], json!(id));
    assert_eq!(sc["pid"], pid);
    assert!(!out.path().join("after-failed-poststart").exists());
    assert!(String::from_utf8_lossy(&started.stderr).contains("hooks.poststart[1]"));
    assert_eq!(
        f.status(&rt, &id),
        "stopped",
        "the container was not stopped"
    );

    // poststop after the container is gone, even after a failing poststop hook.
    assert!(f.run(&rt, &["delete", "--force", &id]).status.success());
    let v = read("poststop");
    assert_eq!(v["status"], "stopped");
    assert!(v.get("pid").is_none(), "{v}");
    assert!(!f.root.path().join("nanoclaw").join(&id).exists());
}

#[test]
fn failing_create_runtime_hook_fails_create_and_leaves_nothing() {
    if !require_root("failing_create_runtime_hook_fails_create_and_leaves_nothing") {
        return;
    }
    let f = Fixture::new(&["sleep", "100"]);
    f.write_config(|spec| {
        spec["process"]["args"] = json!(["sleep", "100"]);
        spec["hooks"] = json!({"createRuntime": [hook("echo refused-by-hook >&2; exit 3")]});
    });
    let rt = nanoclaw();
    let id = unique_name("badhook");
    let out = f.create(&rt, &id);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("hooks.createRuntime[0]") && err.contains("refused-by-hook"),
        "{err}"
    );
    assert_eq!(f.status(&rt, &id), "absent");
    assert!(!f.root.path().join("nanoclaw").join(&id).exists());
    assert!(processes_rooted_at(f.rootfs()).is_empty());
    assert!(
        cgroup_dirs_named(&id).is_empty(),
        "{:?}",
        cgroup_dirs_named(&id)
    );

    // A hook with a relative path is refused before anything is created.
    f.write_config(|spec| {
        spec["hooks"] = json!({"poststop": [{"path": "bin/true"}]});
    });
    let out = f.create(&rt, &id);
    assert!(String::from_utf8_lossy(&out.stderr).contains("hooks.poststop[0].path"));
    assert!(!f.root.path().join("nanoclaw").join(&id).exists());
}

/// Pids of live processes whose root directory is `rootfs` (the container's processes).
fn processes_rooted_at(rootfs: &Path) -> Vec<i32> {
    let canon = std::fs::canonicalize(rootfs).unwrap_or_else(|_| rootfs.to_path_buf());
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()))
        .filter(|pid| std::fs::read_link(format!("/proc/{pid}/root")).is_ok_and(|r| r == canon))
        .collect()
}

#[test]
fn sigkill_at_any_point_of_create_start_delete_is_cleaned_by_delete_force() {
    if !require_root("sigkill_at_any_point_of_create_start_delete_is_cleaned_by_delete_force") {
        return;
    }
    let rt = nanoclaw();
    for point in nanoclaw::testpoint::POINTS {
        let f = Fixture::new(&["sleep", "100"]);
        let id = unique_name("crash");
        let b = f.bundle.path().to_string_lossy().into_owned();
        let phase = point.split(':').next().unwrap();
        if phase != "create" {
            assert!(f.create(&rt, &id).status.success());
        }
        if phase == "delete" {
            assert!(f.run(&rt, &["start", &id]).status.success());
        }
        let args: Vec<&str> = match phase {
            "create" => vec!["create", "--bundle", &b, &id],
            "start" => vec!["start", &id],
            _ => vec!["delete", "--force", &id],
        };
        let crashed = output_via_files(f.cmd(&rt, &args).env(nanoclaw::testpoint::ENV, point));
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            crashed.status.signal(),
            Some(9),
            "{point}: the runtime did not crash there"
        );

        let cleaned = f.run(&rt, &["delete", "--force", &id]);
        assert!(
            cleaned.status.success(),
            "{point}: delete --force: {}",
            String::from_utf8_lossy(&cleaned.stderr)
        );
        assert!(
            !f.root.path().join("nanoclaw").join(&id).exists(),
            "{point}: state dir left"
        );
        assert!(
            wait_until(Duration::from_secs(5), || processes_rooted_at(f.rootfs())
                .is_empty()),
            "{point}: container processes left: {:?}",
            processes_rooted_at(f.rootfs())
        );
        assert!(
            cgroup_dirs_named(&id).is_empty(),
            "{point}: cgroups left: {:?}",
            cgroup_dirs_named(&id)
        );
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let rootfs = f.rootfs().to_string_lossy().into_owned();
        assert!(
            !mounts.contains(&rootfs),
            "{point}: mounts left under {rootfs}"
        );
        assert_eq!(f.status(&rt, &id), "absent", "{point}");
    }
}

#[test]
fn no_pivot_runs_in_the_rootfs_like_runc() {
    if !require_root("no_pivot_runs_in_the_rootfs_like_runc") {
        return;
    }
    let f = Fixture::new(&[
        "sh",
        "-c",
        "ls /bin/busybox && cat /etc/group | head -1 && exit 4",
    ]);
    let b = f.bundle.path().to_string_lossy().into_owned();
    for rt in [runc(), nanoclaw()] {
        let id = unique_name("nopivot");
        let out = f.run(&rt, &["run", "--no-pivot", "--bundle", &b, &id]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(4),
            "{}: {stdout} {}",
            rt.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(stdout, "/bin/busybox\nroot:x:0:\n", "{}", rt.display());
    }
    assert!(processes_rooted_at(f.rootfs()).is_empty());
}

/// `run` of a process.terminal container without --console-socket, in the foreground, relays
/// the pty through the runtime's own terminal (as `runc run` does).
#[test]
fn foreground_run_with_a_terminal_relays_it_like_runc() {
    if !require_root("foreground_run_with_a_terminal_relays_it_like_runc")
        || !claw_testsupport::require_tool(
            "foreground_run_with_a_terminal_relays_it_like_runc",
            "script",
        )
    {
        return;
    }
    let f = Fixture::new(&["sh"]);
    f.write_config(|spec| {
        spec["process"]["args"] = json!(["sh"]);
        spec["process"]["terminal"] = json!(true);
    });
    for rt in [runc(), nanoclaw()] {
        let name = rt.file_name().unwrap().to_string_lossy().into_owned();
        let cmdline = format!(
            "stty cols 91 rows 27; {} --root {} run --bundle {} {}",
            rt.display(),
            f.root.path().join(&name).display(),
            f.bundle.path().display(),
            unique_name("tty")
        );
        let (code, screen) =
            claw_testsupport::engines::run_in_pty(&cmdline, "tty; stty size; exit 5\n");
        assert_eq!(code, Some(5), "{name}: {screen}");
        assert!(screen.contains("/dev/pts/"), "{name}: {screen}");
        assert!(
            screen.contains("27 91"),
            "{name}: the pty has the caller's size: {screen}"
        );
    }
}

/// `exec -t` in the foreground without --console-socket: the same relay, for an exec'd process.
#[test]
fn foreground_exec_with_a_terminal_relays_it_like_runc() {
    if !require_root("foreground_exec_with_a_terminal_relays_it_like_runc")
        || !claw_testsupport::require_tool(
            "foreground_exec_with_a_terminal_relays_it_like_runc",
            "script",
        )
    {
        return;
    }
    let f = Fixture::new(&["sleep", "100"]);
    let b = f.bundle.path().to_string_lossy().into_owned();
    for rt in [runc(), nanoclaw()] {
        let name = rt.file_name().unwrap().to_string_lossy().into_owned();
        let id = unique_name("exectty");
        let started = f.run(&rt, &["run", "--detach", "--bundle", &b, &id]);
        assert!(
            started.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&started.stderr)
        );
        let cmdline = format!(
            "stty cols 100 rows 30; {} --root {} exec -t {id} sh",
            rt.display(),
            f.root.path().join(&name).display(),
        );
        let (code, screen) =
            claw_testsupport::engines::run_in_pty(&cmdline, "tty; stty size; exit 6\n");
        assert_eq!(code, Some(6), "{name}: {screen}");
        assert!(screen.contains("/dev/pts/"), "{name}: {screen}");
        assert!(screen.contains("30 100"), "{name}: {screen}");
        assert!(f.run(&rt, &["delete", "--force", &id]).status.success());
    }
}
