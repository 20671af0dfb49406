//! Runtime-spec conformance points where nanoclaw follows the spec and runc's command line,
//! each run against runc too (differential) where runc supports the feature: exec's --cap,
//! --ignore-paused and --cgroup flags, the environment of startContainer hooks, the default
//! cgroup path, hook order, and /proc or /sys symlinks in the image.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use claw_testsupport::engines::{unique_name, wait_until};
use claw_testsupport::{require_root, which, BusyboxRootfs};
use serde_json::{json, Value};

const NANOCLAW: &str = env!("CARGO_BIN_EXE_nanoclaw");

fn nanoclaw() -> PathBuf {
    PathBuf::from(NANOCLAW)
}

fn runc() -> PathBuf {
    which("runc")
        .or_else(|| Some(PathBuf::from("/usr/sbin/runc")).filter(|p| p.is_file()))
        .expect("runc is installed by scripts/install-deps")
}

fn both() -> [PathBuf; 2] {
    [nanoclaw(), runc()]
}

fn name(rt: &Path) -> String {
    rt.file_name().unwrap().to_string_lossy().into_owned()
}

/// A busybox bundle and private --roots (one per runtime); whatever is left is force-deleted
/// on drop.
struct Fixture {
    rootfs: BusyboxRootfs,
    bundle: tempfile::TempDir,
    root: tempfile::TempDir,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        for rt in both() {
            let root = self.root.path().join(name(&rt));
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
    fn new(edit: impl FnOnce(&mut Value, &Path)) -> Self {
        let f = Self {
            rootfs: BusyboxRootfs::new().unwrap(),
            bundle: tempfile::Builder::new()
                .prefix("claw-conf-bundle-")
                .tempdir()
                .unwrap(),
            root: tempfile::Builder::new()
                .prefix("claw-conf-root-")
                .tempdir()
                .unwrap(),
        };
        let mut spec = nanoclaw::spec::template::default_spec();
        spec["root"]["path"] = json!(f.rootfs.path());
        spec["root"]["readonly"] = json!(false);
        spec["process"]["terminal"] = json!(false);
        spec["process"]["args"] = json!(["sleep", "100"]);
        edit(&mut spec, f.rootfs.path());
        std::fs::write(f.bundle.path().join("config.json"), spec.to_string()).unwrap();
        f
    }

    fn cmd(&self, rt: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(rt);
        c.arg("--root")
            .arg(self.root.path().join(name(rt)))
            .args(args);
        c
    }

    fn run(&self, rt: &Path, args: &[&str]) -> Output {
        output_via_files(&mut self.cmd(rt, args))
    }

    fn create(&self, rt: &Path, id: &str) -> Output {
        let b = self.bundle.path().to_string_lossy().into_owned();
        self.run(rt, &["create", "--bundle", &b, id])
    }

    /// create + start, asserting both succeed; returns the init's host pid.
    fn started(&self, rt: &Path, id: &str) -> i64 {
        let out = self.create(rt, id);
        assert!(
            out.status.success(),
            "{}: create: {}",
            name(rt),
            text(&out.stderr)
        );
        let out = self.run(rt, &["start", id]);
        assert!(
            out.status.success(),
            "{}: start: {}",
            name(rt),
            text(&out.stderr)
        );
        self.pid(rt, id)
    }

    fn pid(&self, rt: &Path, id: &str) -> i64 {
        let out = self.run(rt, &["state", id]);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        v["pid"].as_i64().unwrap_or(0)
    }

    fn delete(&self, rt: &Path, id: &str) {
        let out = self.run(rt, &["delete", "--force", id]);
        assert!(
            out.status.success(),
            "{}: delete: {}",
            name(rt),
            text(&out.stderr)
        );
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// stdout/stderr in files: a container's processes inherit the runtime's stdio, so a pipe
/// would not see EOF while they live.
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

/// The effective capability mask of the exec'd `grep CapEff /proc/self/status`.
fn cap_eff(out: &Output) -> u64 {
    let s = text(&out.stdout);
    let hex = s
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .unwrap_or_else(|| panic!("no CapEff in {s:?} (stderr {})", text(&out.stderr)));
    u64::from_str_radix(hex.trim(), 16).unwrap()
}

const CAP_KILL_BIT: u64 = 1 << 5;

#[test]
fn exec_cap_flag_takes_the_cap_prefix_in_any_case_like_runc() {
    if !require_root("exec_cap_flag_takes_the_cap_prefix_in_any_case_like_runc") {
        return;
    }
    let f = Fixture::new(|spec, _| {
        let caps = json!(["CAP_AUDIT_WRITE", "CAP_NET_BIND_SERVICE"]);
        for set in ["bounding", "effective", "permitted"] {
            spec["process"]["capabilities"][set] = caps.clone();
        }
    });
    for rt in both() {
        let id = unique_name("cap");
        f.started(&rt, &id);
        let status = ["grep", "CapEff", "/proc/self/status"];
        let plain = f.run(&rt, &[&["exec", &id][..], &status].concat());
        assert_eq!(
            cap_eff(&plain) & CAP_KILL_BIT,
            0,
            "{}: KILL not in config",
            name(&rt)
        );
        // runc 1.1.5 takes only the upper-case CAP_ form (others: a warning, no capability);
        // nanoclaw takes every spelling.
        let forms: &[&str] = if rt == nanoclaw() {
            &["CAP_KILL", "cap_kill", "Kill"]
        } else {
            &["CAP_KILL"]
        };
        for &form in forms {
            let out = f.run(&rt, &[&["exec", "--cap", form, &id][..], &status].concat());
            assert!(
                out.status.success(),
                "{} --cap {form}: {}",
                name(&rt),
                text(&out.stderr)
            );
            assert_ne!(
                cap_eff(&out) & CAP_KILL_BIT,
                0,
                "{} --cap {form}",
                name(&rt)
            );
        }
        // An unknown name is refused before anything runs (runc 1.1 only warns).
        if rt == nanoclaw() {
            let out = f.run(&rt, &["exec", "--cap", "CAP_NOPE", &id, "true"]);
            assert_eq!(out.status.code(), Some(255));
            assert!(
                text(&out.stderr).contains("CAP_NOPE")
                    && text(&out.stderr).contains("unknown capability"),
                "{}",
                text(&out.stderr)
            );
        }
        f.delete(&rt, &id);
    }
}

#[test]
fn exec_ignore_paused_runs_once_resumed_like_runc() {
    if !require_root("exec_ignore_paused_runs_once_resumed_like_runc") {
        return;
    }
    let f = Fixture::new(|_, _| {});
    for rt in both() {
        let id = unique_name("paused");
        f.started(&rt, &id);
        assert!(f.run(&rt, &["pause", &id]).status.success());
        let refused = f.run(&rt, &["exec", &id, "true"]);
        assert_ne!(refused.status.code(), Some(0), "{}", name(&rt));
        assert!(
            text(&refused.stderr).contains("paused"),
            "{}: {}",
            name(&rt),
            text(&refused.stderr)
        );
        // With the flag the process joins the frozen cgroup and runs once resumed.
        let mut exec = f
            .cmd(&rt, &["exec", "--ignore-paused", &id, "echo", "thawed"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(700));
        assert!(
            exec.try_wait().unwrap().is_none(),
            "{}: exec finished in a paused container",
            name(&rt)
        );
        assert!(f.run(&rt, &["resume", &id]).status.success());
        let out = exec.wait_with_output().unwrap();
        assert!(out.status.success(), "{}: {}", name(&rt), text(&out.stderr));
        assert_eq!(text(&out.stdout).trim(), "thawed", "{}", name(&rt));
        f.delete(&rt, &id);
    }
}

/// The container's cgroup directories (one per hierarchy, from /proc/<pid>/cgroup and the
/// mount table), each with the hierarchy's controller list ("" for cgroup2).
fn cgroup_dirs(pid: i64) -> Vec<(String, PathBuf)> {
    let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let mut out = Vec::new();
    for line in own.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, ctrls, path) = (
            parts.next(),
            parts.next().unwrap_or(""),
            parts.next().unwrap_or(""),
        );
        for m in mounts.lines() {
            let Some((pre, post)) = m.split_once(" - ") else {
                continue;
            };
            let fields: Vec<&str> = post.split(' ').collect();
            let pre: Vec<&str> = pre.split(' ').collect();
            let matches = match fields.first() {
                Some(&"cgroup2") => ctrls.is_empty(),
                Some(&"cgroup") => {
                    let opts: Vec<&str> = fields.get(2).unwrap_or(&"").split(',').collect();
                    !ctrls.is_empty() && ctrls.split(',').all(|c| opts.contains(&c))
                }
                _ => false,
            };
            if matches && pre.get(3) == Some(&"/") {
                out.push((
                    ctrls.to_string(),
                    Path::new(pre[4]).join(path.trim_start_matches('/')),
                ));
                break;
            }
        }
    }
    out
}

#[test]
fn exec_cgroup_flag_runs_in_a_sub_cgroup_like_runc() {
    if !require_root("exec_cgroup_flag_runs_in_a_sub_cgroup_like_runc") {
        return;
    }
    let f = Fixture::new(|_, _| {});
    for rt in both() {
        let id = unique_name("subcg");
        let pid = f.started(&rt, &id);
        let dirs = cgroup_dirs(pid);
        let unified = dirs
            .iter()
            .find(|(c, _)| c.is_empty())
            .map(|(_, d)| d.clone());
        let memory = dirs
            .iter()
            .find(|(c, _)| c.split(',').any(|x| x == "memory"))
            .map(|(_, d)| d.clone());
        // v1 form (`memory:sub`, the hierarchies of this hybrid host) when there is a memory
        // v1 hierarchy; the v2 form (`sub`) on the cgroup2 part.
        if let Some(mem) = &memory {
            std::fs::create_dir(mem.join("sub")).unwrap();
            let out = f.run(
                &rt,
                &[
                    "exec",
                    "--cgroup",
                    "memory:sub",
                    &id,
                    "cat",
                    "/proc/self/cgroup",
                ],
            );
            assert!(out.status.success(), "{}: {}", name(&rt), text(&out.stderr));
            let mine = text(&out.stdout);
            let line = mine
                .lines()
                .find(|l| {
                    l.split(':')
                        .nth(1)
                        .is_some_and(|c| c.split(',').any(|x| x == "memory"))
                })
                .unwrap_or_default();
            assert!(line.ends_with("/sub"), "{}: {mine}", name(&rt));
            let cpu = mine.lines().find(|l| {
                l.split(':')
                    .nth(1)
                    .is_some_and(|c| c.split(',').any(|x| x == "pids"))
            });
            if let Some(cpu) = cpu {
                assert!(
                    !cpu.ends_with("/sub"),
                    "{}: only memory moves: {mine}",
                    name(&rt)
                );
            }
        }
        // The bare form (`sub`, runc's v2 form): on a pure v2 host the one cgroup; on this
        // hybrid host nanoclaw applies it to every hierarchy (runc 1.1 only to the v2 part),
        // so this half is nanoclaw's alone.
        if rt == nanoclaw() {
            for (_, d) in &dirs {
                let _ = std::fs::create_dir(d.join("sub"));
                // A new cpuset cgroup has no cpus or mems: no task could join it.
                for file in ["cpuset.cpus", "cpuset.mems"] {
                    if let Ok(v) = std::fs::read_to_string(d.join(file)) {
                        let _ = std::fs::write(d.join("sub").join(file), v.trim());
                    }
                }
            }
            let out = f.run(
                &rt,
                &["exec", "--cgroup", "sub", &id, "cat", "/proc/self/cgroup"],
            );
            assert!(out.status.success(), "{}", text(&out.stderr));
            let mine = text(&out.stdout);
            for line in mine
                .lines()
                .filter(|l| unified.is_some() || !l.starts_with("0::"))
            {
                assert!(line.ends_with("/sub"), "every hierarchy moves: {mine}");
            }
            // The `ctrl:` form on the cgroup2 hierarchy (pure v2's only form in practice):
            // here when the container's cgroup2 directory has hugetlb, as on this host.
            if let Some(u) = &unified {
                let ctrls =
                    std::fs::read_to_string(u.join("cgroup.controllers")).unwrap_or_default();
                if ctrls.split_whitespace().any(|c| c == "hugetlb") {
                    let _ = std::fs::create_dir(u.join("sub2"));
                    let out = f.run(
                        &rt,
                        &[
                            "exec",
                            "--cgroup",
                            "hugetlb:sub2",
                            &id,
                            "cat",
                            "/proc/self/cgroup",
                        ],
                    );
                    assert!(out.status.success(), "{}", text(&out.stderr));
                    let mine = text(&out.stdout);
                    let v2 = mine
                        .lines()
                        .find(|l| l.starts_with("0::"))
                        .unwrap_or_default();
                    assert!(v2.ends_with("/sub2"), "cgroup2 moves: {mine}");
                } else {
                    eprintln!(
                        "exec --cgroup hugetlb:sub2 not checked: no hugetlb in {}",
                        u.display()
                    );
                }
            }
            let out = f.run(&rt, &["exec", "--cgroup", "../up", &id, "echo", "ran"]);
            assert_eq!(out.status.code(), Some(255));
            let err = text(&out.stderr);
            assert!(err.contains("--cgroup") && err.contains("../up"), "{err}");
        }
        // Missing sub-cgroup: an error, nothing runs.
        let out = f.run(
            &rt,
            &["exec", "--cgroup", "memory:nope", &id, "echo", "ran"],
        );
        assert_ne!(out.status.code(), Some(0), "{}", name(&rt));
        assert!(!text(&out.stdout).contains("ran"), "{}", name(&rt));
        f.delete(&rt, &id);
        for (_, d) in &dirs {
            let _ = std::fs::remove_dir(d.join("sub"));
            let _ = std::fs::remove_dir(d.join("sub2"));
            let _ = std::fs::remove_dir(d);
        }
    }
}

#[test]
fn start_container_hook_without_env_gets_the_process_environment_like_runc() {
    if !require_root("start_container_hook_without_env_gets_the_process_environment_like_runc") {
        return;
    }
    let f = Fixture::new(|spec, _| {
        spec["process"]["env"] = json!(["PATH=/bin:/usr/bin", "FROM_PROCESS=yes"]);
        spec["hooks"] = json!({"startContainer": [
            {"path": "/bin/sh", "args": ["sh", "-c", "env > /tmp/hook-noenv"]},
            {"path": "/bin/sh", "args": ["sh", "-c", "env > /tmp/hook-env"], "env": ["ONLY=1"]},
        ]});
    });
    for rt in both() {
        let id = unique_name("hookenv");
        let _ = std::fs::remove_file(f.rootfs.path().join("tmp/hook-noenv"));
        let _ = std::fs::remove_file(f.rootfs.path().join("tmp/hook-env"));
        f.started(&rt, &id);
        let read = |n: &str| {
            let p = f.rootfs.path().join("tmp").join(n);
            assert!(
                wait_until(Duration::from_secs(5), || p.exists()),
                "{}: {n}",
                name(&rt)
            );
            std::thread::sleep(Duration::from_millis(100));
            std::fs::read_to_string(p).unwrap()
        };
        let noenv = read("hook-noenv");
        assert!(
            noenv.lines().any(|l| l == "FROM_PROCESS=yes"),
            "{}: {noenv}",
            name(&rt)
        );
        assert!(
            noenv.lines().any(|l| l == "PATH=/bin:/usr/bin"),
            "{}: {noenv}",
            name(&rt)
        );
        let env = read("hook-env");
        assert!(env.lines().any(|l| l == "ONLY=1"), "{}: {env}", name(&rt));
        assert!(!env.contains("FROM_PROCESS"), "{}: {env}", name(&rt));
        f.delete(&rt, &id);
    }
}

/// Our own cgroup in the hierarchy whose /proc/self/cgroup line matches `pick`.
fn own_cgroup(pick: impl Fn(&str) -> bool) -> Option<String> {
    std::fs::read_to_string("/proc/self/cgroup")
        .unwrap()
        .lines()
        .find(|l| l.split(':').nth(1).is_some_and(&pick))
        .and_then(|l| l.splitn(3, ':').nth(2).map(str::to_string))
}

#[test]
fn default_cgroup_is_the_id_under_the_runtimes_own_cgroup_like_runc() {
    if !require_root("default_cgroup_is_the_id_under_the_runtimes_own_cgroup_like_runc") {
        return;
    }
    let f = Fixture::new(|spec, _| {
        spec["linux"].as_object_mut().unwrap().remove("cgroupsPath");
    });
    let has = |c: &str, x: &str| c.split(',').any(|y| y == x);
    for rt in both() {
        let id = unique_name("dflcg");
        let pid = f.started(&rt, &id);
        let theirs = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
        // v1 (memory, pids, ...): `<own>/<id>`. cgroup2: `<parent of own>/<id>`.
        for ctrl in ["memory", "pids", "cpu"] {
            let Some(own) = own_cgroup(|c| has(c, ctrl)) else {
                continue;
            };
            let line = theirs
                .lines()
                .find(|l| l.split(':').nth(1).is_some_and(|c| has(c, ctrl)))
                .unwrap_or_else(|| panic!("{}: no {ctrl} line in {theirs}", name(&rt)));
            let want = Path::new(&own).join(&id);
            assert!(
                line.ends_with(&format!(":{}", want.display())),
                "{} {ctrl}: {line} (want {})",
                name(&rt),
                want.display()
            );
        }
        if let Some(own) = own_cgroup(str::is_empty) {
            let parent = Path::new(&own).parent().unwrap_or(Path::new("/")).join(&id);
            let line = theirs
                .lines()
                .find(|l| l.starts_with("0::"))
                .unwrap_or_default();
            assert_eq!(line, format!("0::{}", parent.display()), "{}", name(&rt));
        }
        // A tool looking for the id finds the cgroup.
        let found = claw_testsupport::engines::cgroup_dirs_named(&id);
        assert!(!found.is_empty(), "{}: no cgroup named {id}", name(&rt));
        f.delete(&rt, &id);
        let left = claw_testsupport::engines::cgroup_dirs_named(&id);
        assert!(left.is_empty(), "{}: left {left:?}", name(&rt));
    }
}

#[test]
fn prestart_create_runtime_create_container_run_in_order_after_mounts_before_pivot_like_runc() {
    if !require_root(
        "prestart_create_runtime_create_container_run_in_order_after_mounts_before_pivot_like_runc",
    ) {
        return;
    }
    let out = tempfile::tempdir().unwrap();
    let order = out.path().join("order");
    let f = Fixture::new(|spec, rootfs| {
        // Each runtime-namespace hook appends: its name, the init's root as the host sees it
        // ("/" until pivot_root), and whether the container's /proc is already mounted in the
        // rootfs (its mountinfo). createContainer, in the container's mount namespace, sees
        // the container's /proc under the rootfs's host path only before pivot_root.
        let hook = |kind: &str| {
            let script = if kind == "createContainer" {
                format!(
                    "test -e {root}/proc/1/status && m=before-pivot; echo {kind} $m >> {order}",
                    root = rootfs.display(),
                    order = order.display()
                )
            } else {
                format!(
                    "pid=$(sed 's/.*\"pid\": *\\([0-9]*\\).*/\\1/'); \
                     n=$(awk -v m='{root}/proc' '$5 == m' /proc/$pid/mountinfo | wc -l); \
                     echo {kind} $(readlink /proc/$pid/root) $n >> {order}",
                    root = rootfs.display(),
                    order = order.display()
                )
            };
            json!({"path": "/bin/sh", "args": ["sh", "-c", script]})
        };
        spec["hooks"] = json!({
            "createContainer": [hook("createContainer")],
            "createRuntime": [hook("createRuntime")],
            "prestart": [hook("prestart")],
        });
    });
    for rt in both() {
        let _ = std::fs::remove_file(&order);
        let id = unique_name("hookorder");
        let created = f.create(&rt, &id);
        assert!(
            created.status.success(),
            "{}: {}",
            name(&rt),
            text(&created.stderr)
        );
        let got = std::fs::read_to_string(&order).unwrap_or_default();
        assert_eq!(
            got,
            "prestart / 1\ncreateRuntime / 1\ncreateContainer before-pivot\n",
            "{}",
            name(&rt)
        );
        f.delete(&rt, &id);
    }
}

#[test]
fn proc_or_sys_symlink_in_the_image_is_refused_like_runc() {
    if !require_root("proc_or_sys_symlink_in_the_image_is_refused_like_runc") {
        return;
    }
    for dir in ["proc", "sys"] {
        let f = Fixture::new(|_, rootfs| {
            let p = rootfs.join(dir);
            let _ = std::fs::remove_dir_all(&p);
            std::os::unix::fs::symlink("/elsewhere", &p).unwrap();
        });
        for rt in both() {
            let id = unique_name("procsym");
            let out = f.create(&rt, &id);
            let err = text(&out.stderr);
            assert!(
                !out.status.success(),
                "{}: /{dir} symlink accepted",
                name(&rt)
            );
            assert!(
                err.contains("must be mounted on ordinary directory"),
                "{}: {err}",
                name(&rt)
            );
            if rt == nanoclaw() {
                assert!(
                    err.contains(&format!("/{dir} in the rootfs is a symlink")),
                    "{err}"
                );
            }
            assert!(
                !f.rootfs.path().join("elsewhere").exists(),
                "{}: link followed",
                name(&rt)
            );
            let state = f.run(&rt, &["state", &id]);
            assert!(!state.status.success(), "{}: container left", name(&rt));
            let mounts = claw_testsupport::bundle::mounts_under(f.rootfs.path());
            assert!(mounts.is_empty(), "{}: mounts left {mounts:?}", name(&rt));
            let cgroups = claw_testsupport::engines::cgroup_dirs_named(&id);
            assert!(
                cgroups.is_empty(),
                "{}: cgroups left {cgroups:?}",
                name(&rt)
            );
        }
    }
}

#[test]
fn failing_poststart_hook_fails_start_and_stops_the_container() {
    if !require_root("failing_poststart_hook_fails_start_and_stops_the_container") {
        return;
    }
    let out = tempfile::tempdir().unwrap();
    let o = out.path().display().to_string();
    let f = Fixture::new(|spec, _| {
        spec["hooks"] = json!({
            "poststart": [
                {"path": "/bin/sh", "args": ["sh", "-c", "exit 3"]},
                {"path": "/bin/sh", "args": ["sh", "-c", format!("touch {o}/after")]},
            ],
            "poststop": [{"path": "/bin/sh", "args": ["sh", "-c", format!("touch {o}/poststop")]}],
        });
    });
    // nanoclaw only: runc 1.1.5 runs poststart hooks during `create` (its failure fails
    // create), not after `start` as the spec orders.
    let rt = nanoclaw();
    {
        let _ = std::fs::remove_file(out.path().join("after"));
        let _ = std::fs::remove_file(out.path().join("poststop"));
        let id = unique_name("poststart");
        let created = f.create(&rt, &id);
        assert!(
            created.status.success(),
            "{}: {}",
            name(&rt),
            text(&created.stderr)
        );
        let pid = f.pid(&rt, &id);
        let started = f.run(&rt, &["start", &id]);
        assert!(!started.status.success(), "{}: start succeeded", name(&rt));
        assert!(
            !out.path().join("after").exists(),
            "{}: next hook ran",
            name(&rt)
        );
        assert!(
            wait_until(Duration::from_secs(5), || {
                !claw_testsupport::bundle::pid_alive(pid as i32)
            }),
            "{}: the container still runs",
            name(&rt)
        );
        let st = f.run(&rt, &["state", &id]);
        let v: Value = serde_json::from_slice(&st.stdout).unwrap_or(Value::Null);
        assert_eq!(v["status"], "stopped", "{}: {v}", name(&rt));
        f.delete(&rt, &id);
        assert!(
            out.path().join("poststop").exists(),
            "{}: poststop on delete",
            name(&rt)
        );
    }
    // `run` and `run -d` remove the container themselves: poststop runs, nothing is left.
    for flags in [&["run"][..], &["run", "-d"][..]] {
        let _ = std::fs::remove_file(out.path().join("poststop"));
        let id = unique_name("poststart-run");
        let b = f.bundle.path().to_string_lossy().into_owned();
        let ran = f.run(&rt, &[flags, &["--bundle", &b, &id]].concat());
        assert!(!ran.status.success(), "{flags:?}: succeeded");
        assert!(
            out.path().join("poststop").exists(),
            "{flags:?}: no poststop"
        );
        assert!(
            !f.run(&rt, &["state", &id]).status.success(),
            "{flags:?}: state left"
        );
        let cgroups = claw_testsupport::engines::cgroup_dirs_named(&id);
        assert!(cgroups.is_empty(), "{flags:?}: cgroups left {cgroups:?}");
    }
}

/// Fields 19 (nice) and 41 (policy) of `/proc/<pid>/stat`-formatted text.
fn nice_and_policy(stat: &str) -> (i64, i64) {
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let f: Vec<&str> = rest.split_whitespace().collect();
    (f[16].parse().unwrap(), f[38].parse().unwrap())
}

#[test]
fn scheduler_io_priority_and_exec_cpu_affinity_reach_the_process() {
    if !require_root("scheduler_io_priority_and_exec_cpu_affinity_reach_the_process") {
        return;
    }
    // nanoclaw only: runc 1.1.5 (spec 1.0.2) ignores these fields.
    let f = Fixture::new(|spec, _| {
        spec["process"]["scheduler"] = json!({"policy": "SCHED_BATCH", "nice": 7});
        spec["process"]["ioPriority"] = json!({"class": "IOPRIO_CLASS_IDLE", "priority": 0});
        spec["process"]["execCPUAffinity"] = json!({"initial": "0", "final": "1"});
    });
    let rt = nanoclaw();
    let id = unique_name("sched");
    let pid = f.started(&rt, &id);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    assert_eq!(nice_and_policy(&stat), (7, 3), "init: SCHED_BATCH, nice 7");
    // The exec'd process gets the same, and execCPUAffinity (final: CPU 1).
    let out = f.run(
        &rt,
        &[
            "exec",
            &id,
            "sh",
            "-c",
            "cat /proc/self/stat; ionice; taskset -p $$",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let o = text(&out.stdout);
    let mut lines = o.lines();
    assert_eq!(nice_and_policy(lines.next().unwrap()), (7, 3), "{o}");
    assert_eq!(lines.next().unwrap_or_default().trim(), "idle", "{o}");
    let affinity = lines.next().unwrap_or_default();
    if std::thread::available_parallelism().map_or(1, |n| n.get()) >= 2 {
        assert!(
            affinity.trim_end().ends_with(": 2"),
            "final affinity is CPU 1: {o}"
        );
    }
    f.delete(&rt, &id);

    // Bad values are refused before anything is created, naming the field.
    for (key, value, field) in [
        (
            "scheduler",
            json!({"policy": "SCHED_FIFO", "priority": 0}),
            "process.scheduler.priority",
        ),
        (
            "ioPriority",
            json!({"class": "IOPRIO_CLASS_BE", "priority": 9}),
            "process.ioPriority.priority",
        ),
        (
            "execCPUAffinity",
            json!({"initial": "3-1"}),
            "execCPUAffinity",
        ),
    ] {
        let bad = Fixture::new(|spec, _| spec["process"][key] = value.clone());
        let id = unique_name("badsched");
        let out = bad.create(&rt, &id);
        assert!(!out.status.success(), "{key} accepted");
        assert!(
            text(&out.stderr).contains(field),
            "{key}: {}",
            text(&out.stderr)
        );
        assert!(
            !bad.run(&rt, &["state", &id]).status.success(),
            "{key}: state left"
        );
    }
}

#[test]
fn time_offsets_apply_in_a_new_time_namespace_to_init_and_exec() {
    if !require_root("time_offsets_apply_in_a_new_time_namespace_to_init_and_exec") {
        return;
    }
    // nanoclaw only: runc 1.1.5 (spec 1.0.2) has no time namespace support.
    let days = 86_400 * 1000;
    let f = Fixture::new(|spec, _| {
        spec["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "time"}));
        spec["linux"]["timeOffsets"] = json!({
            "boottime": {"secs": days, "nanosecs": 0},
            "monotonic": {"secs": days, "nanosecs": 5},
        });
        spec["process"]["args"] =
            json!(["sh", "-c", "cat /proc/uptime > /tmp/init-uptime; sleep 100"]);
    });
    let rt = nanoclaw();
    let id = unique_name("timens");
    // exec before start: it must already join the container's time namespace.
    let out = f.create(&rt, &id);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let early = f.run(&rt, &["exec", &id, "cat", "/proc/uptime"]);
    assert!(early.status.success(), "{}", text(&early.stderr));
    assert!(f.run(&rt, &["start", &id]).status.success());
    let uptime = |s: &str| -> f64 { s.split_whitespace().next().unwrap().parse().unwrap() };
    let init_file = f.rootfs.path().join("tmp/init-uptime");
    assert!(wait_until(Duration::from_secs(5), || init_file.exists()));
    std::thread::sleep(Duration::from_millis(100));
    let host = uptime(&std::fs::read_to_string("/proc/uptime").unwrap());
    for (who, s) in [
        ("init", std::fs::read_to_string(&init_file).unwrap()),
        ("exec before start", text(&early.stdout)),
        (
            "exec",
            text(&f.run(&rt, &["exec", &id, "cat", "/proc/uptime"]).stdout),
        ),
    ] {
        let inside = uptime(&s);
        assert!(
            (inside - host - days as f64).abs() < 60.0,
            "{who}: uptime {inside}, host {host}"
        );
    }
    let offsets = f.run(&rt, &["exec", &id, "cat", "/proc/self/timens_offsets"]);
    let o = text(&offsets.stdout);
    let want = ["monotonic".to_string(), days.to_string(), "5".to_string()];
    assert!(
        o.lines()
            .any(|l| l.split_whitespace().eq(want.iter().map(String::as_str))),
        "{o}"
    );
    f.delete(&rt, &id);

    // Offsets without a new time namespace, or for an unknown clock: refused, naming the field.
    for (edit, want) in [
        (
            json!({"monotonic": {"secs": 1}}),
            "needs a new time namespace",
        ),
        (
            json!({"realtime": {"secs": 1}}),
            "linux.timeOffsets.realtime",
        ),
    ] {
        let with_ns = want != "needs a new time namespace";
        let bad = Fixture::new(|spec, _| {
            if with_ns {
                spec["linux"]["namespaces"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"type": "time"}));
            }
            spec["linux"]["timeOffsets"] = edit.clone();
        });
        let id = unique_name("badtime");
        let out = bad.create(&rt, &id);
        assert!(!out.status.success(), "{edit} accepted");
        assert!(
            text(&out.stderr).contains(want),
            "{edit}: {}",
            text(&out.stderr)
        );
    }
}

/// The per-mount options (field 6) of the mounts at `points` in a mountinfo text.
fn mount_opts(mountinfo: &str, point: &str) -> Vec<String> {
    mountinfo
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f.get(4) == Some(&point)).then(|| f.get(5).unwrap_or(&"").to_string())
        })
        .next_back()
        .map(|o| o.split(',').map(str::to_string).collect())
        .unwrap_or_default()
}

/// A host directory with a tmpfs mounted on `sub` inside it; unmounted on drop.
struct VolWithSubmount(tempfile::TempDir);

impl VolWithSubmount {
    fn new() -> Self {
        let d = tempfile::Builder::new()
            .prefix("claw-rattr-")
            .tempdir()
            .unwrap();
        std::fs::create_dir(d.path().join("sub")).unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
            .arg(d.path().join("sub"))
            .status()
            .unwrap();
        assert!(st.success());
        Self(d)
    }
}

impl Drop for VolWithSubmount {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg(self.0.path().join("sub"))
            .status();
    }
}

#[test]
fn recursive_mount_options_apply_to_submounts_like_runc() {
    if !require_root("recursive_mount_options_apply_to_submounts_like_runc") {
        return;
    }
    let vol = VolWithSubmount::new();
    let mount = |opts: &[&str]| {
        let mut o = vec!["rbind"];
        o.extend_from_slice(opts);
        json!({"destination": "/vol", "type": "bind", "source": vol.0.path(), "options": o})
    };
    let common = ["rro", "rnosuid", "rnodev", "rnoexec", "rnoatime"];
    let f = Fixture::new(|spec, _| {
        spec["mounts"].as_array_mut().unwrap().push(mount(&common));
        spec["process"]["args"] = json!(["cat", "/proc/self/mountinfo"]);
    });
    for rt in both() {
        let b = f.bundle.path().to_string_lossy().into_owned();
        let id = unique_name("rattr");
        let out = f.run(&rt, &["run", "--bundle", &b, &id]);
        assert!(out.status.success(), "{}: {}", name(&rt), text(&out.stderr));
        let mi = text(&out.stdout);
        for point in ["/vol", "/vol/sub"] {
            let opts = mount_opts(&mi, point);
            for want in ["ro", "nosuid", "nodev", "noexec", "noatime"] {
                assert!(
                    opts.iter().any(|o| o == want),
                    "{} {point}: {want} missing from {opts:?}",
                    name(&rt)
                );
            }
        }
    }
    // What runc 1.1.5 gets wrong or lacks: ratime / rnostrictatime after rnoatime go back to
    // the default (relatime), rstrictatime, and rnosymfollow.
    for (opts, want, not) in [
        (&["rnoatime", "ratime"][..], "relatime", "noatime"),
        (
            &["rstrictatime", "rnostrictatime"][..],
            "relatime",
            "strictatime",
        ),
        (&["rnoatime", "rstrictatime"][..], "rw", "relatime"),
        (&["rnosymfollow"][..], "nosymfollow", "ro"),
        (&["rro", "rrw"][..], "rw", "ro"),
    ] {
        let f = Fixture::new(|spec, _| {
            spec["mounts"].as_array_mut().unwrap().push(mount(opts));
            spec["process"]["args"] = json!(["cat", "/proc/self/mountinfo"]);
        });
        let b = f.bundle.path().to_string_lossy().into_owned();
        let id = unique_name("rattr");
        let out = f.run(&nanoclaw(), &["run", "--bundle", &b, &id]);
        assert!(out.status.success(), "{opts:?}: {}", text(&out.stderr));
        let mi = text(&out.stdout);
        for point in ["/vol", "/vol/sub"] {
            let o = mount_opts(&mi, point);
            assert!(
                o.iter().any(|x| x == want),
                "{opts:?} {point}: {want} not in {o:?}"
            );
            assert!(
                !o.iter().any(|x| x == not),
                "{opts:?} {point}: {not} in {o:?}"
            );
        }
    }
}

/// A seccomp agent that waits for the NOTIFY listener after `create` and before `start` (as
/// engines do) gets it during `create`, with the container state; its answer is then what the
/// workload sees after `start`.
#[test]
fn seccomp_notify_listener_reaches_the_agent_during_create_like_runc() {
    use std::os::fd::AsRawFd;
    if !require_root("seccomp_notify_listener_reaches_the_agent_during_create_like_runc") {
        return;
    }
    for rt in both() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("agent.sock");
        let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let (got_tx, got_rx) = std::sync::mpsc::channel();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let agent = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().expect("accept");
            let (fd, state) = nanoclaw_seccomp::notify::recv_listener_fd(&mut conn).expect("recv");
            got_tx
                .send((state.state().id().clone(), state.fds().clone()))
                .unwrap();
            // Answer only once the test has seen the fd arrive before `start`.
            go_rx.recv().unwrap();
            let req = libseccomp::ScmpNotifReq::receive(fd.as_raw_fd()).expect("notification");
            libseccomp::ScmpNotifResp::new_error(
                req.id,
                -libc::EXDEV,
                libseccomp::ScmpNotifRespFlags::empty(),
            )
            .respond(fd.as_raw_fd())
            .expect("respond");
        });
        let f = Fixture::new(|spec, _| {
            spec["process"]["args"] = json!([
                "sh",
                "-c",
                "mkdir /tmp/notified 2>/tmp/err; echo $? > /tmp/rc; sleep 100"
            ]);
            spec["linux"]["seccomp"] = json!({
                "defaultAction": "SCMP_ACT_ALLOW",
                "listenerPath": sock,
                "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}]
            });
        });
        let id = unique_name("notify");
        let out = f.create(&rt, &id);
        assert!(
            out.status.success(),
            "{}: create: {}",
            name(&rt),
            text(&out.stderr)
        );
        let (got_id, fds) = got_rx
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("{}: no listener fd after create", name(&rt)));
        assert_eq!(got_id, id, "{}", name(&rt));
        assert_eq!(fds, vec!["seccompFd".to_owned()], "{}", name(&rt));
        let state = f.run(&rt, &["state", &id]);
        let v: Value = serde_json::from_slice(&state.stdout).unwrap_or(Value::Null);
        assert_eq!(v["status"], "created", "{}", name(&rt));
        go_tx.send(()).unwrap();
        let out = f.run(&rt, &["start", &id]);
        assert!(
            out.status.success(),
            "{}: start: {}",
            name(&rt),
            text(&out.stderr)
        );
        let rc = Path::new("/proc")
            .join(f.pid(&rt, &id).to_string())
            .join("root/tmp/rc");
        assert!(
            wait_until(Duration::from_secs(10), || rc.exists()),
            "{}: workload did not run",
            name(&rt)
        );
        agent.join().expect("agent");
        // EXDEV is the agent's answer.
        assert_eq!(
            std::fs::read_to_string(&rc).unwrap_or_default().trim(),
            "1",
            "{}",
            name(&rt)
        );
        let err = std::fs::read_to_string(rc.with_file_name("err")).unwrap_or_default();
        assert!(err.contains("cross-device"), "{}: {err}", name(&rt));
        f.delete(&rt, &id);
    }
}

/// The policy column of the first mapping in /proc/self/numa_maps (the task policy).
fn numa_policy(out: &Output) -> String {
    text(&out.stdout)
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or_default()
        .to_owned()
}

/// linux.memoryPolicy reaches the init and exec'd processes (numa_maps from inside); bad
/// policies are refused naming the field, before anything exists. runc 1.1.5 predates the
/// field and ignores it.
#[test]
fn memory_policy_applies_to_init_and_exec() {
    if !require_root("memory_policy_applies_to_init_and_exec") {
        return;
    }
    for (policy, want) in [
        (json!({"mode": "MPOL_BIND", "nodes": "0"}), "bind:0"),
        (
            json!({"mode": "MPOL_INTERLEAVE", "nodes": "0"}),
            "interleave:0",
        ),
        (
            json!({"mode": "MPOL_PREFERRED", "nodes": "0", "flags": ["MPOL_F_STATIC_NODES"]}),
            "prefer=static:0",
        ),
        (json!({"mode": "MPOL_LOCAL"}), "local"),
        (json!({"mode": "MPOL_DEFAULT"}), "default"),
    ] {
        let f = Fixture::new(|spec, _| {
            spec["linux"]["memoryPolicy"] = policy.clone();
            spec["process"]["args"] = json!(["cat", "/proc/self/numa_maps"]);
        });
        let b = f.bundle.path().to_string_lossy().into_owned();
        let id = unique_name("mpol");
        let out = f.run(&nanoclaw(), &["run", "--bundle", &b, &id]);
        assert!(out.status.success(), "{policy}: {}", text(&out.stderr));
        assert_eq!(numa_policy(&out), want, "{policy}");
    }
    // An exec'd process runs under the policy too.
    let f = Fixture::new(|spec, _| {
        spec["linux"]["memoryPolicy"] = json!({"mode": "MPOL_BIND", "nodes": "0"});
    });
    let id = unique_name("mpol");
    f.started(&nanoclaw(), &id);
    let out = f.run(&nanoclaw(), &["exec", &id, "cat", "/proc/self/numa_maps"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(numa_policy(&out), "bind:0");
    f.delete(&nanoclaw(), &id);
    // Refused: a node the host lacks (the kernel's EINVAL), a malformed list, a mode
    // without the nodes it needs.
    let last = (0..1024)
        .rev()
        .find(|n| Path::new(&format!("/sys/devices/system/node/node{n}")).exists())
        .unwrap_or(0);
    for (policy, want) in [
        (
            json!({"mode": "MPOL_BIND", "nodes": format!("{}", last + 1)}),
            "linux.memoryPolicy: set_mempolicy(MPOL_BIND",
        ),
        (
            json!({"mode": "MPOL_BIND", "nodes": "0-x"}),
            "linux.memoryPolicy.nodes",
        ),
        (
            json!({"mode": "MPOL_INTERLEAVE"}),
            "linux.memoryPolicy.nodes: mode MPOL_INTERLEAVE needs at least one node",
        ),
    ] {
        let f = Fixture::new(|spec, _| spec["linux"]["memoryPolicy"] = policy.clone());
        let id = unique_name("mpolbad");
        let out = f.create(&nanoclaw(), &id);
        assert!(!out.status.success(), "{policy} accepted");
        assert!(
            text(&out.stderr).contains(want),
            "{policy}: {}",
            text(&out.stderr)
        );
        assert!(!f.run(&nanoclaw(), &["state", &id]).status.success());
        assert!(claw_testsupport::engines::cgroup_dirs_named(&id).is_empty());
    }
}

/// A veth pair made for the test; both ends are removed on drop (wherever they still are).
struct Veth {
    host: String,
    peer: String,
}

impl Veth {
    fn new(tag: char) -> Self {
        let n = std::process::id() % 100_000;
        let v = Self {
            host: format!("clw{tag}a{n}"),
            peer: format!("clw{tag}b{n}"),
        };
        let ok = Command::new("ip")
            .args([
                "link", "add", &v.host, "type", "veth", "peer", "name", &v.peer,
            ])
            .status()
            .unwrap()
            .success();
        assert!(ok, "ip link add veth");
        v
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        for n in [&self.host, &self.peer] {
            let _ = Command::new("ip")
                .args(["link", "del", n])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// A named network namespace (`ip netns add`), deleted on drop.
struct NetNs(String);

impl NetNs {
    fn new() -> Self {
        let name = format!("clwns{}", std::process::id() % 100_000);
        assert!(Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .unwrap()
            .success());
        Self(name)
    }
    fn path(&self) -> String {
        format!("/run/netns/{}", self.0)
    }
    fn ip(&self, args: &[&str]) -> Option<String> {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.0, "ip"])
            .args(args)
            .output()
            .unwrap();
        out.status
            .success()
            .then(|| text(&out.stdout))
            .filter(|s| !s.is_empty())
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// `ip -o link show NAME` (or `addr`) in the network namespace of `pid` (0: the test's own).
fn ip_line(pid: i64, what: &str, link: &str) -> Option<String> {
    let mut c = if pid == 0 {
        Command::new("ip")
    } else {
        let mut c = Command::new("nsenter");
        c.arg("-t").arg(pid.to_string()).args(["-n", "ip"]);
        c
    };
    let out = c.args(["-o", what, "show", link]).output().unwrap();
    out.status
        .success()
        .then(|| text(&out.stdout))
        .filter(|s| !s.is_empty())
}

fn link_line(pid: i64, link: &str) -> Option<String> {
    ip_line(pid, "link", link)
}

fn is_up(line: &str) -> bool {
    line.split('<')
        .nth(1)
        .and_then(|f| f.split('>').next())
        .is_some_and(|flags| flags.split(',').any(|f| f == "UP"))
}

/// linux.netDevices (runtime-spec 1.3): during create the named host link is moved into the
/// container's network namespace under `name`, keeps its permanent global address and is set
/// up. `delete` does not move it out (the spec: "MUST NOT attempt to move the interface out
/// of the namespace"): in a namespace of the container's own the kernel destroys the veth
/// with it; in a joined namespace it stays there. A `%d` template is numbered by the kernel; a
/// name already taken in the container, a missing device, a bad name or a container without a
/// network namespace is refused naming the field, and the host link is left where it was.
/// runc 1.1.5 predates the field and ignores it.
#[test]
fn net_devices_move_into_the_container_with_their_addresses() {
    if !require_root("net_devices_move_into_the_container_with_their_addresses") {
        return;
    }
    let veth = Veth::new('x');
    assert!(Command::new("ip")
        .args(["addr", "add", "10.201.77.1/24", "dev", &veth.host])
        .status()
        .unwrap()
        .success());
    let host = veth.host.clone();
    let f = Fixture::new(|spec, _| {
        spec["linux"]["netDevices"] = json!({ host.clone(): {"name": "ctr0"} });
    });
    let id = unique_name("netdev");
    let out = f.create(&nanoclaw(), &id);
    assert!(out.status.success(), "create: {}", text(&out.stderr));
    let pid = f.pid(&nanoclaw(), &id);
    assert!(
        link_line(0, &veth.host).is_none(),
        "{} still on the host",
        veth.host
    );
    let inside = link_line(pid, "ctr0").expect("ctr0 in the container");
    assert!(is_up(&inside), "not up inside: {inside}");
    assert!(link_line(pid, &veth.host).is_none(), "not renamed");
    let addr = ip_line(pid, "addr", "ctr0").unwrap_or_default();
    assert!(addr.contains("10.201.77.1/24"), "address not kept: {addr}");
    // The workload sees it too.
    let out = f.run(&nanoclaw(), &["start", &id]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = f.run(&nanoclaw(), &["exec", &id, "cat", "/proc/net/dev"]);
    assert!(text(&out.stdout).contains("ctr0:"), "{}", text(&out.stdout));
    f.delete(&nanoclaw(), &id);
    // Not moved back: the namespace died with the container and took the veth pair along.
    assert!(
        wait_until(Duration::from_secs(10), || link_line(0, &veth.peer)
            .is_none()),
        "the veth survived its namespace"
    );
    assert!(link_line(0, &veth.host).is_none(), "moved back");

    // A joined namespace keeps the link after delete; `%d` is numbered by the kernel.
    let ns = NetNs::new();
    let veth2 = Veth::new('y');
    let (host2, nspath) = (veth2.host.clone(), ns.path());
    let set_ns = |spec: &mut Value| {
        for n in spec["linux"]["namespaces"].as_array_mut().unwrap() {
            if n["type"] == "network" {
                n["path"] = json!(nspath.clone());
            }
        }
    };
    let f = Fixture::new(|spec, _| {
        set_ns(spec);
        spec["linux"]["netDevices"] = json!({ host2.clone(): {"name": "ctr%d"} });
    });
    let id = unique_name("netdev");
    f.started(&nanoclaw(), &id);
    assert!(
        ns.ip(&["-o", "link", "show", "ctr0"]).is_some(),
        "ctr%d not numbered"
    );
    f.delete(&nanoclaw(), &id);
    assert!(
        ns.ip(&["-o", "link", "show", "ctr0"]).is_some(),
        "the link left the joined namespace at delete"
    );
    assert!(link_line(0, &veth2.host).is_none());

    // "ctr0" is taken in that namespace now: refused, and the host link stays on the host.
    let veth3 = Veth::new('z');
    let host3 = veth3.host.clone();
    let f = Fixture::new(|spec, _| {
        set_ns(spec);
        spec["linux"]["netDevices"] = json!({ host3.clone(): {"name": "ctr0"} });
    });
    let id = unique_name("netbad");
    let out = f.create(&nanoclaw(), &id);
    let err = text(&out.stderr);
    assert!(!out.status.success(), "a taken name was accepted");
    assert!(
        err.contains("].name: a device named \\\"ctr0\\\" already exists in the container"),
        "{err}"
    );
    assert!(link_line(0, &veth3.host).is_some(), "host link lost");
    assert!(!f.run(&nanoclaw(), &["state", &id]).status.success());

    // A create that fails after the move (a failing createRuntime hook) moves it back.
    let host3 = veth3.host.clone();
    let f = Fixture::new(|spec, _| {
        spec["linux"]["netDevices"] = json!({ host3.clone(): {"name": "ctr7"} });
        spec["hooks"] = json!({"createRuntime": [{"path": "/bin/false"}]});
    });
    let out = f.create(&nanoclaw(), &unique_name("netbad"));
    assert!(!out.status.success(), "failing hook accepted");
    let back = link_line(0, &veth3.host).expect("moved back when create failed");
    assert!(!is_up(&back), "{back}");

    for (edit, want) in [
        (
            json!({"netDevices": {"clwmissing0": {}}}),
            "no network device \\\"clwmissing0\\\" on the host",
        ),
        (
            json!({"netDevices": {veth3.host.clone(): {"name": "bad/name"}}}),
            "].name: \\\"bad/name\\\" is not a valid interface name",
        ),
    ] {
        let f = Fixture::new(|spec, _| {
            spec["linux"]["netDevices"] = edit["netDevices"].clone();
        });
        let id = unique_name("netbad");
        let out = f.create(&nanoclaw(), &id);
        assert!(!out.status.success(), "{edit} accepted");
        assert!(
            text(&out.stderr).contains(want),
            "{edit}: {}",
            text(&out.stderr)
        );
        assert!(!f.run(&nanoclaw(), &["state", &id]).status.success());
    }
    let host = veth3.host.clone();
    let f = Fixture::new(|spec, _| {
        spec["linux"]["netDevices"] = json!({ host.clone(): {} });
        let ns = spec["linux"]["namespaces"].as_array_mut().unwrap();
        ns.retain(|n| n["type"] != "network");
    });
    let out = f.create(&nanoclaw(), &unique_name("netbad"));
    assert!(
        text(&out.stderr).contains("linux.netDevices: the container has no network namespace"),
        "{}",
        text(&out.stderr)
    );
    assert!(link_line(0, &veth3.host).is_some());
}

/// Runs `script` in a private mount namespace of its own (`unshare -m`), so whatever a runtime
/// mounts in "its caller's" mount namespace never reaches the host's. $RT, $ROOT, $BUNDLE and
/// $ROOTFS name the runtime, its --root, the bundle and the rootfs.
fn in_private_mount_ns(f: &Fixture, rt: &Path, script: &str) -> Output {
    output_via_files(
        Command::new("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c", script])
            .env("RT", rt)
            .env("ROOT", f.root.path().join(name(rt)))
            .env("BUNDLE", f.bundle.path())
            .env("ROOTFS", f.rootfs.path()),
    )
}

fn without_mount_ns(spec: &mut Value) {
    let ns = spec["linux"]["namespaces"].as_array_mut().unwrap();
    ns.retain(|n| n["type"] != "mount");
    let linux = spec["linux"].as_object_mut().unwrap();
    linux.remove("maskedPaths");
    linux.remove("readonlyPaths");
}

/// A config without a `mount` namespace inherits the runtime's (config-linux), as runc runs
/// it: the rootfs is set up in the caller's mount namespace and the process is chrooted into
/// it (same mount namespace id inside and outside, the image's root seen). Both runtimes run
/// in a private mount namespace made for the test. runc 1.1.5 leaves every mount it made there
/// after `delete` (counted, not asserted); nanoclaw detaches them. nanoclaw's `exec` enters
/// the container's root (runc's lands in the caller's root). maskedPaths/readonlyPaths cannot
/// be honoured there: both refuse them.
#[test]
fn no_mount_namespace_inherits_the_runtimes_like_runc() {
    if !require_root("no_mount_namespace_inherits_the_runtimes_like_runc") {
        return;
    }
    let f = Fixture::new(|spec, _| {
        without_mount_ns(spec);
        spec["process"]["args"] = json!(["sh", "-c", "readlink /proc/self/ns/mnt; ls /"]);
    });
    let image: Vec<String> = {
        let mut v: Vec<String> = std::fs::read_dir(f.rootfs.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let mut left = Vec::new();
    for rt in both() {
        let id = unique_name("nomntns");
        let script = format!(
            r#"readlink /proc/self/ns/mnt
"$RT" --root "$ROOT" run --bundle "$BUNDLE" {id}; echo "rc=$?"
echo "left=$(grep -c " $ROOTFS" /proc/self/mountinfo)""#
        );
        let out = in_private_mount_ns(&f, &rt, &script);
        let o = text(&out.stdout);
        let lines: Vec<&str> = o.lines().collect();
        assert!(
            lines.contains(&"rc=0"),
            "{}: {o} {}",
            name(&rt),
            text(&out.stderr)
        );
        assert_eq!(
            lines.first(),
            lines.get(1),
            "{}: the container must share the caller's mount namespace: {o}",
            name(&rt)
        );
        let seen: Vec<String> = lines
            .iter()
            .skip(2)
            .take_while(|l| !l.starts_with("rc="))
            .map(|l| l.to_string())
            .collect();
        assert_eq!(seen, image, "{}: root of the container", name(&rt));
        let n: usize = o
            .lines()
            .find_map(|l| l.strip_prefix("left="))
            .and_then(|v| v.parse().ok())
            .unwrap();
        left.push((name(&rt), n));
    }
    assert_eq!(
        left[0],
        ("nanoclaw".to_string(), 0),
        "nanoclaw left mounts in the caller's mount namespace (runc: {:?})",
        left[1]
    );
    // The test's own mount namespace never saw any of it.
    let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mi.contains(&f.rootfs.path().display().to_string()), "{mi}");

    // exec: nanoclaw's process sees the container's root, in the same mount namespace.
    let f2 = Fixture::new(|spec, _| without_mount_ns(spec));
    let id = unique_name("nomntns");
    let script = format!(
        r#""$RT" --root "$ROOT" run -d --bundle "$BUNDLE" {id} || exit 1
"$RT" --root "$ROOT" exec {id} ls /
"$RT" --root "$ROOT" delete -f {id}
echo "left=$(grep -c " $ROOTFS" /proc/self/mountinfo)""#
    );
    let out = in_private_mount_ns(&f2, &nanoclaw(), &script);
    let o = text(&out.stdout);
    let seen: Vec<&str> = o.lines().take_while(|l| !l.starts_with("left=")).collect();
    assert_eq!(seen, image, "exec's root: {o} {}", text(&out.stderr));
    assert!(o.contains("left=0"), "{o}");

    for field in ["maskedPaths", "readonlyPaths"] {
        let f = Fixture::new(|spec, _| {
            without_mount_ns(spec);
            spec["linux"][field] = json!(["/proc/kcore"]);
        });
        for rt in both() {
            let id = unique_name("nomntns");
            let script = format!(
                r#""$RT" --root "$ROOT" create --bundle "$BUNDLE" {id}; echo "rc=$?"
echo "left=$(grep -c " $ROOTFS" /proc/self/mountinfo)""#
            );
            let out = in_private_mount_ns(&f, &rt, &script);
            let (o, e) = (text(&out.stdout), text(&out.stderr));
            assert!(!o.contains("rc=0"), "{}: {field} accepted", name(&rt));
            assert!(
                e.contains("unable to restrict sys entries without a private"),
                "{}: {e}",
                name(&rt)
            );
            assert!(o.contains("left=0"), "{}: {o}", name(&rt));
            if rt == nanoclaw() {
                assert!(e.contains(&format!("linux.{field}")), "{e}");
            }
        }
    }
}

/// The first CRIU error line of a log (timestamps cut).
fn first_criu_error(log: &Path) -> Option<String> {
    std::fs::read_to_string(log).ok().and_then(|t| {
        t.lines()
            .find_map(|l| l.find("Error (").map(|i| l[i..].trim().to_owned()))
    })
}

/// checkpoint/restore through CRIU with runc's flags, against runc. Where CRIU can dump on
/// this kernel (runc's checkpoint succeeds), nanoclaw's must too, the container is gone after
/// it, and `restore -d` brings the process back with its memory (a counter that goes on
/// counting). Where CRIU cannot (this machine's kernel: "vdso: Unexpected rt vDSO area
/// bounds"), both fail, nanoclaw's error quotes the same CRIU error runc's log shows, the
/// container runs on untouched, and a failed restore leaves no container and no cgroup.
#[test]
fn checkpoint_and_restore_through_criu_like_runc() {
    if !require_root("checkpoint_and_restore_through_criu_like_runc")
        || !claw_testsupport::require_tool("checkpoint_and_restore_through_criu_like_runc", "criu")
    {
        return;
    }
    let f = Fixture::new(|spec, _| {
        spec["process"]["args"] = json!([
            "sh",
            "-c",
            "i=0; while :; do i=$((i+1)); echo $i > /tmp/n; sleep 0.1; done"
        ]);
    });
    let imgs = tempfile::tempdir().unwrap();
    let mut criu_works = None;
    for rt in [runc(), nanoclaw()] {
        let id = unique_name("ckpt");
        // Pipes as the container's stdio, as engines give it (a file of the host, outside the
        // container's mounts, is something CRIU cannot dump).
        let b = f.bundle.path().display().to_string();
        let mut create = f.cmd(&rt, &["create", "--bundle", &b, &id]);
        let mut child = create
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let _stdin = child.stdin.take();
        let _stdout = child.stdout.take();
        let stderr = child.stderr.take();
        assert!(
            child.wait().unwrap().success(),
            "{}: create ({stderr:?})",
            name(&rt)
        );
        let out = f.run(&rt, &["start", &id]);
        assert!(
            out.status.success(),
            "{}: start: {}",
            name(&rt),
            text(&out.stderr)
        );
        let pid = f.pid(&rt, &id);
        let counter = PathBuf::from(format!("/proc/{pid}/root/tmp/n"));
        assert!(wait_until(Duration::from_secs(10), || counter.exists()));
        let image = imgs.path().join(format!("{}-img", name(&rt)));
        let work = imgs.path().join(format!("{}-work", name(&rt)));
        let (i, w) = (image.display().to_string(), work.display().to_string());
        // `restore -d` of the images under a new id: (the id, the output).
        let restore = || {
            let b = f.bundle.path().display().to_string();
            let rid = unique_name("rstr");
            let args = ["restore", "-d", "--bundle", &b, "--image-path", &i];
            let out = f.run(&rt, &[&args[..], &["--work-path", &w, &rid]].concat());
            (rid, out)
        };
        // The counter lives in the shell's memory: a restore that lost it would start at 1.
        assert!(wait_until(Duration::from_secs(10), || {
            std::fs::read_to_string(&counter)
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .is_some_and(|v| v > 3)
        }));
        let at_dump: u64 = std::fs::read_to_string(&counter)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        let out = f.run(
            &rt,
            &[
                "checkpoint",
                "--image-path",
                &i,
                "--work-path",
                &w,
                "--file-locks",
                &id,
            ],
        );
        let err = text(&out.stderr);
        let works = *criu_works.get_or_insert(out.status.success());
        if !works {
            assert!(
                !out.status.success(),
                "{}: checkpoint succeeded where runc's failed",
                name(&rt)
            );
            let criu_err = first_criu_error(&work.join("dump.log"))
                .unwrap_or_else(|| panic!("{}: no CRIU error in dump.log ({err})", name(&rt)));
            if rt == nanoclaw() {
                assert!(err.contains("criu dump failed"), "{err}");
                assert!(
                    err.contains(&criu_err),
                    "CRIU's error {criu_err:?} not named: {err}"
                );
            }
            // Left as it was: running, the same init, still counting.
            assert_eq!(f.pid(&rt, &id), pid, "{}", name(&rt));
            let st: Value = serde_json::from_slice(&f.run(&rt, &["state", &id]).stdout).unwrap();
            assert_eq!(st["status"], "running", "{}", name(&rt));
            let before = std::fs::read_to_string(&counter).unwrap_or_default();
            assert!(
                wait_until(Duration::from_secs(5), || std::fs::read_to_string(&counter)
                    .is_ok_and(|n| n != before)),
                "{}: the container stopped counting",
                name(&rt)
            );
            // A restore that CRIU refuses leaves nothing behind.
            let (rid, out) = restore();
            assert!(!out.status.success(), "{}: restore succeeded", name(&rt));
            if rt == nanoclaw() {
                let err = text(&out.stderr);
                let criu_err = first_criu_error(&work.join("restore.log")).unwrap_or_default();
                assert!(
                    err.contains("criu restore failed") && err.contains(&criu_err),
                    "{err}"
                );
            }
            assert!(
                !f.run(&rt, &["state", &rid]).status.success(),
                "{}",
                name(&rt)
            );
            assert!(
                claw_testsupport::engines::cgroup_dirs_named(&rid).is_empty(),
                "{}: cgroup left",
                name(&rt)
            );
            f.delete(&rt, &id);
            continue;
        }
        assert!(out.status.success(), "{}: checkpoint: {err}", name(&rt));
        assert!(
            !f.run(&rt, &["state", &id]).status.success(),
            "{}: container left after checkpoint",
            name(&rt)
        );
        let (rid, out) = restore();
        assert!(
            out.status.success(),
            "{}: restore: {}",
            name(&rt),
            text(&out.stderr)
        );
        let rpid = f.pid(&rt, &rid);
        let counter = PathBuf::from(format!("/proc/{rpid}/root/tmp/n"));
        let n = |c: &Path| -> u64 {
            std::fs::read_to_string(c)
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(0)
        };
        let first = n(&counter);
        assert!(
            first >= at_dump,
            "{}: counter lost ({first} < {at_dump})",
            name(&rt)
        );
        assert!(
            wait_until(Duration::from_secs(5), || n(&counter) > first),
            "{}: restored process does not run",
            name(&rt)
        );
        f.delete(&rt, &rid);
    }
}

/// A container whose stdin is the caller's /dev/null (engines give detached containers one)
/// gets the container's own /dev/null instead, as runc does: the caller's is a file on a mount
/// outside the container, which CRIU cannot checkpoint. Seen from inside: the mount of fd 0
/// (`mnt_id` in /proc/self/fdinfo/0) is one of the container's mounts.
#[test]
fn stdio_on_the_callers_dev_null_is_the_containers_own_like_runc() {
    if !require_root("stdio_on_the_callers_dev_null_is_the_containers_own_like_runc") {
        return;
    }
    let f = Fixture::new(|spec, _| {
        spec["process"]["args"] = json!([
            "sh",
            "-c",
            "m=$(sed -n 's/^mnt_id:[[:space:]]*//p' /proc/self/fdinfo/0); \
             stat -L -c '%t:%T' /proc/self/fd/0; \
             if grep -q \"^$m \" /proc/self/mountinfo; then echo inside; else echo \"outside $m\"; fi"
        ]);
    });
    for rt in both() {
        // Detached (create + start), as engines run containers: the init gets the caller's
        // stdio itself (a foreground `runc run` would relay through pipes instead).
        let id = unique_name("devnull");
        let b = f.bundle.path().to_string_lossy().into_owned();
        let out_file = tempfile::tempfile().unwrap();
        let status = f
            .cmd(&rt, &["create", "--bundle", &b, &id])
            .stdin(Stdio::null())
            .stdout(out_file.try_clone().unwrap())
            .stderr(Stdio::inherit())
            .status()
            .unwrap();
        assert!(status.success(), "{}: create", name(&rt));
        let out = f.run(&rt, &["start", &id]);
        assert!(
            out.status.success(),
            "{}: start: {}",
            name(&rt),
            text(&out.stderr)
        );
        let stopped = wait_until(Duration::from_secs(10), || {
            let out = f.run(&rt, &["state", &id]);
            serde_json::from_slice::<Value>(&out.stdout).is_ok_and(|v| v["status"] == "stopped")
        });
        assert!(stopped, "{}: the container did not stop", name(&rt));
        let got = {
            use std::io::{Read, Seek};
            let mut f = out_file;
            let mut s = String::new();
            f.rewind().unwrap();
            f.read_to_string(&mut s).unwrap();
            s
        };
        assert_eq!(got, "1:3\ninside\n", "{}", name(&rt));
        f.delete(&rt, &id);
    }
}
