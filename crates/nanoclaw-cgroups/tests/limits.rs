//! Real processes in real cgroups on this host (whatever its layout): every limit is observed
//! biting, from the process' side (exit status, errors it prints) and from the cgroup's counters.

use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nanoclaw_cgroups::{
    create_and_apply, open, resolve, CgroupConfig, CgroupError, CgroupManager, CgroupPaths,
    FreezerState, HierarchyDir, Layout, OomEvent,
};
use oci_spec::runtime::LinuxResources;

/// A container-like cgroup for one test, killed and destroyed on drop even if the test fails.
struct TestCgroup {
    mgr: Box<dyn CgroupManager>,
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let _ = self.mgr.kill_all();
        let _ = self.mgr.destroy();
    }
}

fn name(test: &str) -> String {
    format!("nctest-{test}-{}", std::process::id())
}

fn resources(json: &str) -> LinuxResources {
    serde_json::from_str(json).expect("test resources parse")
}

fn setup(test: &str, json: &str) -> Option<TestCgroup> {
    if !claw_testsupport::require_root(test) || !claw_testsupport::require_tool(test, "busybox") {
        return None;
    }
    let layout = Layout::detect().expect("detect cgroup layout");
    let id = name(test);
    let r = resources(json);
    let cfg = CgroupConfig {
        cgroups_path: None,
        container_id: &id,
        resources: Some(&r),
        rootless: false,
    };
    let paths = resolve(&layout, &cfg).expect("resolve");
    let mgr = create_and_apply(&layout, paths, &cfg).expect("create cgroup and apply resources");
    Some(TestCgroup { mgr })
}

fn busybox() -> PathBuf {
    claw_testsupport::which("busybox").expect("busybox on PATH")
}

/// Starts `script` under busybox sh, held at a `read` until [`release`] so it can be moved into
/// the cgroup before it does anything.
fn spawn_held(script: &str) -> Child {
    Command::new(busybox())
        .args(["sh", "-c", &format!("read go; {script}")])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn busybox sh")
}

fn release(child: &mut Child) {
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"go\n")
        .expect("release child");
}

fn run_in(cg: &TestCgroup, script: &str) -> std::process::Output {
    let mut child = spawn_held(script);
    cg.mgr.add_process(child.id() as i32).expect("add process");
    release(&mut child);
    child.wait_with_output().expect("wait child")
}

fn dirs(paths: &CgroupPaths) -> Vec<PathBuf> {
    paths.dirs().map(|h| h.dir.clone()).collect()
}

#[test]
fn memory_limit_kills_allocator_and_oom_is_reported() {
    // 32 MiB of memory (and of memory+swap, so nothing can spill into swap).
    let Some(cg) = setup(
        "memory_oom",
        r#"{"memory":{"limit":33554432,"swap":33554432}}"#,
    ) else {
        return;
    };
    let mut watcher = cg.mgr.oom_watcher().expect("oom watcher");
    let before = cg.mgr.oom_kill_count().unwrap();
    // dd with a 100 MiB block allocates and touches a 100 MiB buffer.
    let out = run_in(&cg, "exec dd if=/dev/zero of=/dev/null bs=100M count=1");
    assert_eq!(
        out.status.signal(),
        Some(9),
        "allocator must be SIGKILLed (exit 137): {out:?}"
    );
    assert_eq!(
        watcher.wait(Some(Duration::from_secs(5))).unwrap(),
        OomEvent::Oom
    );
    assert!(cg.mgr.oom_kill_count().unwrap() > before);
    let st = cg.mgr.stats().unwrap();
    assert_eq!(st.memory.usage.limit, 33554432);
    assert!(
        st.memory.usage.max >= 33554432 / 10 * 9,
        "peak usage reached the limit: {:?}",
        st.memory.usage
    );
}

#[test]
fn update_raises_a_live_memory_limit() {
    let Some(cg) = setup(
        "memory_update",
        r#"{"memory":{"limit":33554432,"swap":33554432}}"#,
    ) else {
        return;
    };
    // Same allocation as above, but the process is already in the cgroup when the limit rises.
    let mut child = spawn_held("exec dd if=/dev/zero of=/dev/null bs=100M count=1");
    cg.mgr.add_process(child.id() as i32).unwrap();
    cg.mgr
        .set(&resources(
            r#"{"memory":{"limit":268435456,"swap":268435456}}"#,
        ))
        .expect("update");
    release(&mut child);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "allocation must succeed after the update: {out:?}"
    );
    assert_eq!(cg.mgr.stats().unwrap().memory.usage.limit, 268435456);
}

#[test]
fn pids_limit_makes_the_ninth_task_fail() {
    let Some(cg) = setup("pids", r#"{"pids":{"limit":8}}"#) else {
        return;
    };
    // The shell is task 1; seven sleeps make 8; the eighth fork (task 9) must fail.
    let out = run_in(&cg, "i=0; while [ $i -lt 9 ]; do sleep 30 >/dev/null 2>&1 & i=$((i+1)); echo started $i; done; echo all-started");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("started")).count(),
        7,
        "stdout: {stdout}"
    );
    assert!(!stdout.contains("all-started"));
    assert!(stderr.contains("can't fork"), "stderr: {stderr}");
    let st = cg.mgr.stats().unwrap();
    assert_eq!(st.pids.limit, 8);
    assert_eq!(st.pids.current, 7, "the seven sleeps are still there");
}

#[test]
fn cpu_quota_holds_a_busy_loop_near_20_percent() {
    let Some(cg) = setup("cpu_quota", r#"{"cpu":{"quota":20000,"period":100000}}"#) else {
        return;
    };
    let mut child = spawn_held("while :; do :; done");
    cg.mgr.add_process(child.id() as i32).unwrap();
    release(&mut child);
    std::thread::sleep(Duration::from_millis(300)); // settle into the quota
    let t0 = Instant::now();
    let u0 = cg.mgr.stats().unwrap().cpu.usage.total;
    std::thread::sleep(Duration::from_secs(2));
    let st = cg.mgr.stats().unwrap();
    let secs = t0.elapsed().as_secs_f64();
    let share = (st.cpu.usage.total - u0) as f64 / 1e9 / secs;
    let _ = child.kill();
    let _ = child.wait();
    // Unlimited, the loop would use ~100% of a core. The quota caps it at 20% (the upper bound
    // is the test); the lower bound only checks it ran, allowing for a heavily loaded 2-core
    // machine where a runnable task may get less than its quota.
    eprintln!(
        "cpu quota 20%: busy loop used {:.1}% of a core",
        share * 100.0
    );
    assert!(
        (0.05..=0.25).contains(&share),
        "busy loop used {:.1}% of a core",
        share * 100.0
    );
    assert!(
        st.cpu.throttling.throttled_periods > 0,
        "{:?}",
        st.cpu.throttling
    );
}

#[test]
fn device_deny_rule_makes_open_fail_with_eperm() {
    // Deny everything, then allow /dev/zero (1:5) only: /dev/null (1:3) must be refused.
    let json = r#"{"devices":[{"allow":false,"access":"rwm"},{"allow":true,"type":"c","major":1,"minor":5,"access":"rw"}]}"#;
    let Some(cg) = setup("devices", json) else {
        return;
    };
    let out = run_in(
        &cg,
        "head -c 1 /dev/zero >/dev/zero && echo zero-ok; echo x > /dev/null && echo null-ok",
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stdout.contains("zero-ok"),
        "allowed device must work: {stdout} {stderr}"
    );
    assert!(!stdout.contains("null-ok"), "{stdout}");
    assert!(
        stderr.contains("Operation not permitted"),
        "stderr: {stderr}"
    );
}

/// The cgroup v2 device filter (BPF), exercised on this host's cgroup2 hierarchy: on a hybrid
/// host a program attached to the process' cgroup2 directory applies in addition to v1.
#[test]
fn v2_bpf_device_filter_denies_open() {
    const T: &str = "v2_bpf_devices";
    if !claw_testsupport::require_root(T) {
        return;
    }
    let layout = Layout::detect().unwrap();
    let Some(u) = &layout.unified else {
        claw_testsupport::skip(T, "this host has no cgroup2 hierarchy");
        return;
    };
    let paths = CgroupPaths {
        v1: Default::default(),
        unified: Some(HierarchyDir {
            mountpoint: u.mountpoint.clone(),
            dir: u.mountpoint.join(name("bpf")),
        }),
        systemd: None,
    };
    // Created by hand: V2Manager::create delegates every controller (right on a pure v2 host),
    // which on this hybrid host would enable hugetlb on cgroup2 for nothing.
    std::fs::create_dir(&paths.unified.as_ref().unwrap().dir).unwrap();
    let cg = TestCgroup { mgr: open(paths) };
    let json = r#"{"devices":[{"allow":false,"access":"rwm"},{"allow":true,"type":"c","major":1,"minor":5,"access":"r"},{"allow":true,"type":"c","major":1,"minor":3,"access":"rw"}]}"#;
    cg.mgr
        .set(&resources(json))
        .expect("load and attach BPF device filter");
    let out = run_in(&cg, "echo x > /dev/null && echo null-ok; head -c 1 /dev/zero >/dev/null && echo zero-read-ok; echo x > /dev/zero && echo zero-write-ok; cat /dev/full");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stdout.contains("null-ok") && stdout.contains("zero-read-ok"),
        "{stdout} {stderr}"
    );
    assert!(
        !stdout.contains("zero-write-ok"),
        "write to /dev/zero was allowed: {stdout}"
    );
    assert_eq!(
        stderr.matches("Operation not permitted").count(),
        2,
        "stderr: {stderr}"
    );
    // An update replaces the filter (old program detached): now /dev/null is denied too.
    cg.mgr
        .set(&resources(
            r#"{"devices":[{"allow":false,"access":"rwm"}]}"#,
        ))
        .unwrap();
    let out = run_in(&cg, "echo x > /dev/null && echo null-ok");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("null-ok"));
    cg.mgr
        .set(&resources(r#"{"devices":[{"allow":true,"access":"rwm"}]}"#))
        .unwrap();
    let out = run_in(&cg, "echo x > /dev/null && echo null-ok");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("null-ok"),
        "filter was not replaced: {out:?}"
    );
}

#[test]
fn freeze_stops_and_thaw_resumes() {
    let Some(cg) = setup("freezer", r#"{}"#) else {
        return;
    };
    let mut child = spawn_held("while :; do :; done");
    cg.mgr.add_process(child.id() as i32).unwrap();
    release(&mut child);
    std::thread::sleep(Duration::from_millis(100));
    cg.mgr.freeze().unwrap();
    assert_eq!(cg.mgr.freezer_state().unwrap(), FreezerState::Frozen);
    let stat = |pid: u32| std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let ticks = |s: String| -> u64 {
        s.rsplit(')')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .nth(11)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let a = ticks(stat(child.id()));
    std::thread::sleep(Duration::from_millis(300));
    let b = ticks(stat(child.id()));
    assert_eq!(a, b, "a frozen process must not run");
    cg.mgr.thaw().unwrap();
    assert_eq!(cg.mgr.freezer_state().unwrap(), FreezerState::Thawed);
    std::thread::sleep(Duration::from_millis(300));
    assert!(ticks(stat(child.id())) > b, "a thawed process runs again");
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn destroy_after_kill_leaves_no_directory() {
    let Some(cg) = setup("destroy", r#"{"pids":{"limit":100}}"#) else {
        return;
    };
    let paths = cg.mgr.paths().clone();
    assert!(dirs(&paths).iter().all(|d| d.is_dir()));
    // A process tree that is still running when the container is killed.
    let mut child = spawn_held("sleep 60 & sleep 60 & sleep 60");
    cg.mgr.add_process(child.id() as i32).unwrap();
    release(&mut child);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(cg.mgr.pids().unwrap().len(), 3);
    cg.mgr.kill_all().expect("kill all");
    assert!(cg.mgr.pids().unwrap().is_empty());
    // Not yet reaped by us: the destroy still succeeds (zombies have left their cgroups).
    cg.mgr.destroy().expect("destroy");
    for d in dirs(&paths) {
        assert!(!d.exists(), "{} leaked", d.display());
    }
    assert_eq!(child.wait().unwrap().signal(), Some(9));
    // Destroying again is fine (delete after a crash).
    open(paths).destroy().unwrap();
}

#[test]
fn bad_values_are_refused_before_anything_is_created() {
    const T: &str = "bad_values";
    if !claw_testsupport::require_root(T) {
        return;
    }
    let layout = Layout::detect().unwrap();
    let id = name("bad");
    for (json, needle) in [
        (r#"{"cpu":{"quota":500,"period":100000}}"#, "cpu.quota"),
        (r#"{"cpu":{"shares":1}}"#, "cpu.shares"),
        (r#"{"cpu":{"cpus":"0-"}}"#, "cpu.cpus"),
        (r#"{"unified":{"no.such":"1"}}"#, "unknown unified key"),
        (r#"{"unified":{"../../x.max":"1"}}"#, "path separators"),
        (r#"{"memory":{"limit":-5}}"#, "memory.limit"),
    ] {
        let r = resources(json);
        let cfg = CgroupConfig {
            cgroups_path: None,
            container_id: &id,
            resources: Some(&r),
            rootless: false,
        };
        let paths = resolve(&layout, &cfg).unwrap();
        let e = create_and_apply(&layout, paths.clone(), &cfg)
            .err()
            .unwrap_or_else(|| panic!("{json} accepted"));
        assert!(matches!(e, CgroupError::Invalid(_)), "{json}: {e}");
        assert!(e.to_string().contains(needle), "{json}: {e}");
        for d in dirs(&paths) {
            assert!(!d.exists(), "{json}: {} was created", d.display());
        }
    }
    // Negative shares cannot even be parsed into the spec type.
    assert!(serde_json::from_str::<LinuxResources>(r#"{"cpu":{"shares":-1}}"#).is_err());
}

#[test]
fn kernel_refusal_unwinds_the_created_cgroup() {
    const T: &str = "kernel_refusal";
    if !claw_testsupport::require_root(T) {
        return;
    }
    let layout = Layout::detect().unwrap();
    let id = name("refused");
    // Valid syntax, but CPU 4000 does not exist: the kernel refuses cpuset.cpus.
    let r = resources(r#"{"pids":{"limit":10},"cpu":{"cpus":"4000"}}"#);
    let cfg = CgroupConfig {
        cgroups_path: None,
        container_id: &id,
        resources: Some(&r),
        rootless: false,
    };
    let paths = resolve(&layout, &cfg).unwrap();
    let e = create_and_apply(&layout, paths.clone(), &cfg)
        .err()
        .expect("cpus 4000 accepted");
    let msg = e.to_string();
    assert!(msg.contains("cpuset.cpus") && msg.contains("4000"), "{msg}");
    for d in dirs(&paths) {
        assert!(!d.exists(), "{} leaked after a failed create", d.display());
    }
}

#[test]
fn hugetlb_limit_lands_where_the_controller_is() {
    let sizes = nanoclaw_cgroups::validate::host_hugepage_sizes();
    let Some(size) = sizes.first().cloned() else {
        claw_testsupport::skip("hugetlb", "no hugepage sizes on this host");
        return;
    };
    let json = format!(r#"{{"hugepageLimits":[{{"pageSize":"{size}","limit":0}}]}}"#);
    let Some(cg) = setup("hugetlb", &json) else {
        return;
    };
    let p = cg.mgr.paths();
    let file = match p.v1_dir("hugetlb") {
        Some(d) => d.join(format!("hugetlb.{size}.limit_in_bytes")),
        None => p
            .unified
            .as_ref()
            .unwrap()
            .dir
            .join(format!("hugetlb.{size}.max")),
    };
    assert_eq!(
        std::fs::read_to_string(&file).unwrap().trim(),
        "0",
        "{}",
        file.display()
    );
    // On a hybrid host the controller was delegated on cgroup2 for this limit only: undo it, so
    // the host stays as it was (a controller enabled on cgroup2 cannot be mounted on v1 later).
    if p.v1_dir("hugetlb").is_none() {
        let u = p.unified.clone().unwrap();
        drop(cg);
        let _ = std::fs::write(u.mountpoint.join("cgroup.subtree_control"), "-hugetlb");
    }
}

#[test]
fn relative_path_nests_under_own_cgroup() {
    let Some(cg) = setup("nesting", r#"{}"#) else {
        return;
    };
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let layout = Layout::detect().unwrap();
    for h in &layout.v1 {
        let want = h
            .mountpoint
            .join(h.own.trim_start_matches('/'))
            .join(name("nesting"));
        assert_eq!(
            cg.mgr.paths().v1.get(&h.key()).map(|d| d.dir.clone()),
            Some(want),
            "{own}"
        );
    }
    // And the directory really is a cgroup the process can join.
    let out = run_in(&cg, "cat /proc/self/cgroup");
    let inside = String::from_utf8_lossy(&out.stdout);
    assert!(inside.contains(&name("nesting")), "{inside}");
    assert!(Path::new(&cg.mgr.paths().v1.values().next().unwrap().dir).is_dir());
}

#[test]
fn raising_memory_above_memsw_alone_is_explained() {
    let Some(cg) = setup(
        "memsw_hint",
        r#"{"memory":{"limit":33554432,"swap":33554432}}"#,
    ) else {
        return;
    };
    if cg.mgr.paths().v1_dir("memory").is_none() {
        claw_testsupport::skip("memsw_hint", "memory is not on cgroup v1 here");
        return;
    }
    let e = cg
        .mgr
        .set(&resources(r#"{"memory":{"limit":67108864}}"#))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("memory.limit_in_bytes") && e.contains("--memory-swap"),
        "{e}"
    );
    // Both together work, and the limit is really raised.
    cg.mgr
        .set(&resources(
            r#"{"memory":{"limit":67108864,"swap":67108864}}"#,
        ))
        .unwrap();
    assert_eq!(cg.mgr.stats().unwrap().memory.usage.limit, 67108864);
}
