//! Containers with cgroup limits, observed from inside (what the workload can do) and from
//! outside (cgroup files, `events`), plus the no-leak guarantees: after `delete`, after a kill,
//! and after every failed `create`, the container's cgroup directories are gone.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use claw_testsupport::bundle::{Bundle, Runtime};
use nanoclaw_cgroups::{CgroupConfig, Layout};
use serde_json::{json, Value};

/// A relative cgroupsPath unique to this test run; returns it and the directories it resolves
/// to in every hierarchy (the runtime runs in the test's own cgroups, so it resolves the same).
fn cgroup_for(test: &str) -> (String, Vec<PathBuf>) {
    let rel = format!("nctest-{test}-{}", std::process::id());
    let layout = Layout::detect().expect("cgroup layout");
    let p = PathBuf::from(&rel);
    let cfg = CgroupConfig {
        cgroups_path: Some(&p),
        container_id: "x",
        resources: None,
        rootless: false,
    };
    let paths = nanoclaw_cgroups::resolve(&layout, &cfg).expect("resolve");
    (rel, paths.dirs().map(|h| h.dir.clone()).collect())
}

fn assert_gone(dirs: &[PathBuf]) {
    for d in dirs {
        assert!(!d.exists(), "cgroup {} leaked", d.display());
    }
}

struct Ctr {
    bundle: Bundle,
    rt: Runtime,
    dirs: Vec<PathBuf>,
}

impl Ctr {
    /// A busybox bundle running `script` under `resources`, in its own cgroup.
    fn new(test: &str, script: &str, resources: Value) -> Option<Ctr> {
        if !common::root(test) {
            return None;
        }
        let (rel, dirs) = cgroup_for(test);
        let mut spec = common::sh(script);
        spec["linux"]["cgroupsPath"] = json!(rel);
        for (k, v) in resources.as_object().expect("resources object") {
            spec["linux"]["resources"][k] = v.clone();
        }
        let bundle = Bundle::busybox().expect("bundle");
        bundle.write_config(&spec).expect("config");
        let rt = Runtime::new(common::NANOCLAW).expect("runtime");
        Some(Ctr { bundle, rt, dirs })
    }

    fn cmd(&self, args: &[&str]) -> Output {
        self.rt.command(args).output().expect("spawn nanoclaw")
    }

    fn run(&self) -> Output {
        self.rt
            .run(self.bundle.path(), "t")
            .expect("spawn nanoclaw run")
    }

    /// `create`: the init inherits create's stdio, so it must not be a pipe we wait on.
    fn create(&self) {
        let log = self.bundle.path().join("create.err");
        let err = std::fs::File::create(&log).unwrap();
        let st = self
            .rt
            .command(["create", "--bundle"])
            .arg(self.bundle.path())
            .arg("t")
            .stdout(Stdio::null())
            .stderr(err)
            .status()
            .unwrap();
        assert!(
            st.success(),
            "create: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    fn create_start(&self) {
        self.create();
        let out = self.cmd(&["start", "t"]);
        assert!(
            out.status.success(),
            "start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn stats(&self) -> Value {
        let out = self.cmd(&["events", "--stats", "t"]);
        assert!(
            out.status.success(),
            "events --stats: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).expect("stats JSON");
        assert_eq!(v["type"], "stats");
        assert_eq!(v["id"], "t");
        v["data"].clone()
    }

    fn exec(&self, args: &[&str]) -> Output {
        let mut a = vec!["exec", "t"];
        a.extend_from_slice(args);
        self.cmd(&a)
    }
}

impl Drop for Ctr {
    fn drop(&mut self) {
        let _ = self.cmd(&["delete", "--force", "t"]);
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn memory_limit_oom_kills_with_137_and_events_reports_it() {
    let mem = json!({"memory": {"limit": 33554432, "swap": 33554432}});
    // `run`: the workload allocates 100 MiB under a 32 MiB limit and is OOM-killed: exit 137.
    let Some(c) = Ctr::new(
        "oom_run",
        "exec dd if=/dev/zero of=/dev/null bs=100M count=1",
        mem.clone(),
    ) else {
        return;
    };
    let out = c.run();
    assert_eq!(
        out.status.code(),
        Some(137),
        "stderr: {}",
        text(&out.stderr)
    );
    assert_gone(&c.dirs);

    // create + events + start: the event stream reports the OOM kill.
    let Some(c) = Ctr::new(
        "oom_events",
        "sleep 0.5; dd if=/dev/zero of=/dev/null bs=100M count=1; sleep 0.5",
        mem,
    ) else {
        return;
    };
    c.create();
    let mut events =
        c.rt.command(["events", "--interval", "10s", "t"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
    let stdout = events.stdout.take().unwrap();
    assert!(c.cmd(&["start", "t"]).status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut oom = false;
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        if v["type"] == "oom" && v["id"] == "t" {
            oom = true;
            break;
        }
        assert!(Instant::now() < deadline, "no oom event");
    }
    let _ = events.kill();
    let _ = events.wait();
    assert!(oom, "events did not report the OOM kill");
    let out = c.cmd(&["delete", "--force", "t"]);
    assert!(out.status.success(), "delete: {}", text(&out.stderr));
    assert_gone(&c.dirs);
}

#[test]
fn update_raises_a_live_memory_limit() {
    let mem = json!({"memory": {"limit": 33554432, "swap": 33554432}});
    let Some(c) = Ctr::new("update_mem", "sleep 60", mem) else {
        return;
    };
    c.create_start();
    let alloc = ["dd", "if=/dev/zero", "of=/dev/null", "bs=100M", "count=1"];
    let out = c.exec(&alloc);
    assert_eq!(
        out.status.code(),
        Some(137),
        "first allocation must be OOM-killed: {}",
        text(&out.stderr)
    );
    assert_eq!(c.stats()["memory"]["usage"]["limit"], 33554432);

    let out = c.cmd(&["update", "--memory", "256m", "--memory-swap", "256m", "t"]);
    assert!(out.status.success(), "update: {}", text(&out.stderr));
    assert_eq!(c.stats()["memory"]["usage"]["limit"], 268435456u64);
    let out = c.exec(&alloc);
    assert_eq!(
        out.status.code(),
        Some(0),
        "allocation after update: {}",
        text(&out.stderr)
    );

    // -r resources.json works too, and bad values are refused before anything is written.
    let r = c.bundle.path().join("res.json");
    std::fs::write(&r, r#"{"pids":{"limit":5}}"#).unwrap();
    let out = c.cmd(&["update", "-r", r.to_str().unwrap(), "t"]);
    assert!(out.status.success(), "update -r: {}", text(&out.stderr));
    assert_eq!(c.stats()["pids"]["limit"], 5);
    let out = c.cmd(&["update", "--cpu-quota", "500", "t"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("cpu.quota"),
        "{}",
        text(&out.stderr)
    );
    let out = c.cmd(&["update", "--cpu-share", "-3", "t"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("--cpu-share"),
        "{}",
        text(&out.stderr)
    );

    let out = c.cmd(&["delete", "--force", "t"]);
    assert!(out.status.success(), "delete: {}", text(&out.stderr));
    assert_gone(&c.dirs);
}

#[test]
fn pids_limit_makes_the_ninth_task_fail() {
    let script = "i=0; while [ $i -lt 9 ]; do sleep 30 >/dev/null 2>&1 & i=$((i+1)); echo started $i; done; echo all-started";
    let Some(c) = Ctr::new("pids", script, json!({"pids": {"limit": 8}})) else {
        return;
    };
    let out = c.run();
    let stdout = text(&out.stdout);
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("started")).count(),
        7,
        "stdout: {stdout}"
    );
    assert!(
        text(&out.stderr).contains("can't fork"),
        "stderr: {}",
        text(&out.stderr)
    );
    assert_gone(&c.dirs);
}

#[test]
fn cpu_quota_holds_a_busy_container_near_20_percent() {
    let cpu = json!({"cpu": {"quota": 20000, "period": 100000}});
    let Some(c) = Ctr::new("cpu", "while :; do :; done", cpu) else {
        return;
    };
    c.create_start();
    std::thread::sleep(Duration::from_millis(300));
    let t0 = Instant::now();
    let u0 = c.stats()["cpu"]["usage"]["total"].as_u64().unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let s = c.stats();
    let share = (s["cpu"]["usage"]["total"].as_u64().unwrap() - u0) as f64
        / 1e9
        / t0.elapsed().as_secs_f64();
    eprintln!(
        "cpu quota 20%: busy container used {:.1}% of a core",
        share * 100.0
    );
    assert!(
        (0.05..=0.25).contains(&share),
        "container used {:.1}% of a core",
        share * 100.0
    );
    assert!(
        s["cpu"]["throttling"]["throttledPeriods"]
            .as_u64()
            .unwrap_or(0)
            > 0,
        "{s}"
    );
    let out = c.cmd(&["delete", "--force", "t"]);
    assert!(
        out.status.success(),
        "delete --force: {}",
        text(&out.stderr)
    );
    assert_gone(&c.dirs);
}

/// A block device node the default rules do not allow: /dev/loop0's numbers (7:0).
fn loop_node(rootfs: &Path) -> bool {
    let dir = rootfs.join("testdev");
    std::fs::create_dir_all(&dir).unwrap();
    let path =
        std::ffi::CString::new(dir.join("loop0").into_os_string().into_encoded_bytes()).unwrap();
    // SAFETY: mknod with a valid NUL-terminated path and plain integers.
    unsafe { libc::mknod(path.as_ptr(), libc::S_IFBLK | 0o600, libc::makedev(7, 0)) == 0 }
}

#[test]
fn device_rules_decide_what_opens() {
    let open = "dd if=/testdev/loop0 of=/dev/null count=0 && echo opened";
    // The default spec denies everything but the standard devices.
    let Some(c) = Ctr::new("dev_deny", open, json!({})) else {
        return;
    };
    if !loop_node(&c.bundle.rootfs()) || !Path::new("/dev/loop0").exists() {
        claw_testsupport::skip(
            "device_rules_decide_what_opens",
            "no loop device on this host",
        );
        return;
    }
    let out = c.run();
    assert!(!text(&out.stdout).contains("opened"), "{out:?}");
    assert!(
        text(&out.stderr).contains("Operation not permitted"),
        "stderr: {}",
        text(&out.stderr)
    );
    assert_gone(&c.dirs);
    // An allow rule for it: now it opens. /dev/null keeps working either way.
    let allow = json!({"devices": [{"allow": false, "access": "rwm"}, {"allow": true, "type": "b", "major": 7, "minor": 0, "access": "r"}]});
    let Some(c) = Ctr::new(
        "dev_allow",
        &format!("{open}; echo x > /dev/null && echo null-ok"),
        allow,
    ) else {
        return;
    };
    assert!(loop_node(&c.bundle.rootfs()));
    let out = c.run();
    assert!(
        text(&out.stdout).contains("opened") && text(&out.stdout).contains("null-ok"),
        "{out:?}"
    );
}

#[test]
fn container_sees_its_cgroup_as_root() {
    let Some(c) = Ctr::new("cgroupns", "cat /proc/self/cgroup", json!({})) else {
        return;
    };
    let out = c.run();
    let inside = text(&out.stdout);
    assert!(!inside.is_empty(), "{out:?}");
    for line in inside.lines() {
        assert!(
            line.ends_with(":/"),
            "container sees a host cgroup path: {line}"
        );
    }
}

#[test]
fn failed_creates_leave_no_cgroup() {
    // Refused by validation, before anything exists.
    let Some(c) = Ctr::new("bad_quota", "true", json!({"cpu": {"quota": 500}})) else {
        return;
    };
    let out = c.run();
    assert_ne!(out.status.code(), Some(0));
    assert!(
        text(&out.stderr).contains("linux.resources.cpu.quota"),
        "{}",
        text(&out.stderr)
    );
    assert_gone(&c.dirs);
    assert!(c.rt.leftover_state().is_empty());
    let Some(c) = Ctr::new(
        "bad_unified",
        "true",
        json!({"unified": {"memory.nope": "1"}}),
    ) else {
        return;
    };
    let out = c.run();
    assert!(
        text(&out.stderr).contains("unified"),
        "{}",
        text(&out.stderr)
    );
    assert_gone(&c.dirs);
    // Refused by the kernel after the cgroup was made: unwound.
    let Some(c) = Ctr::new("bad_cpus", "true", json!({"cpu": {"cpus": "4000"}})) else {
        return;
    };
    let out = c.run();
    assert_ne!(out.status.code(), Some(0));
    assert!(
        text(&out.stderr).contains("cpuset.cpus"),
        "{}",
        text(&out.stderr)
    );
    assert_gone(&c.dirs);
    assert!(
        c.rt.leftover_state().is_empty(),
        "{:?}",
        c.rt.leftover_state()
    );
}

#[test]
fn delete_after_kill_removes_the_cgroup() {
    let Some(c) = Ctr::new(
        "kill_delete",
        "sleep 60 & sleep 60",
        json!({"pids": {"limit": 20}}),
    ) else {
        return;
    };
    c.create_start();
    assert!(c.dirs.iter().all(|d| d.is_dir()));
    let out = c.cmd(&["kill", "t", "KILL"]);
    assert!(out.status.success(), "kill: {}", text(&out.stderr));
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let st: Value =
            serde_json::from_slice(&c.cmd(&["state", "t"]).stdout).unwrap_or(Value::Null);
        if st["status"] == "stopped" || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = c.cmd(&["delete", "t"]);
    assert!(out.status.success(), "delete: {}", text(&out.stderr));
    assert_gone(&c.dirs);
    // `run` also leaves nothing.
    let Some(c) = Ctr::new("run_clean", "true", json!({"memory": {"limit": 67108864}})) else {
        return;
    };
    assert!(c.run().status.success());
    assert_gone(&c.dirs);
    let _ = Command::new("true").status();
}

#[test]
fn paused_container_is_frozen_and_force_delete_still_cleans_up() {
    let Some(c) = Ctr::new("pause", "while :; do :; done", json!({})) else {
        return;
    };
    c.create_start();
    let out = c.cmd(&["pause", "t"]);
    assert!(out.status.success(), "pause: {}", text(&out.stderr));
    let usage = || c.stats()["cpu"]["usage"]["total"].as_u64().unwrap();
    let a = usage();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(usage(), a, "a paused container must not run");
    let out = c.cmd(&["resume", "t"]);
    assert!(out.status.success(), "resume: {}", text(&out.stderr));
    std::thread::sleep(Duration::from_millis(300));
    assert!(usage() > a, "a resumed container runs again");
    // Frozen tasks cannot die until thawed: delete --force of a paused container must thaw.
    assert!(c.cmd(&["pause", "t"]).status.success());
    let out = c.cmd(&["delete", "--force", "t"]);
    assert!(
        out.status.success(),
        "delete --force: {}",
        text(&out.stderr)
    );
    assert_gone(&c.dirs);
}
