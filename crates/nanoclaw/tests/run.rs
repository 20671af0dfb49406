//! `nanoclaw run` as root: what the process inside a busybox container observes.

mod common;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;

use claw_testsupport::bundle::{Bundle, Runtime};
use common::*;
use serde_json::json;

#[test]
fn hostname_and_domainname() {
    if !root("hostname_and_domainname") {
        return;
    }
    let mut spec = sh("hostname; cat /proc/sys/kernel/domainname");
    spec["hostname"] = json!("clawbox");
    spec["domainname"] = json!("claw.example");
    let ran = run_spec(&spec);
    assert_eq!(ran.ok(), "clawbox\nclaw.example\n");
    // The host's names are untouched.
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    assert_ne!(host.trim(), "clawbox");
}

#[test]
fn pid_one_and_host_processes_invisible() {
    if !root("pid_one_and_host_processes_invisible") {
        return;
    }
    let ran = run_spec(&sh("echo $$; ls /proc | grep -c '^[0-9]'"));
    let out = ran.ok();
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("1"), "{out}");
    // sh, ls, grep at most: none of the host's processes.
    let n: usize = lines.next().unwrap_or("x").parse().expect("count");
    assert!(n <= 3, "container sees {n} processes: {out}");
    let host = std::fs::read_dir("/proc")
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .map(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .bytes()
                        .all(|b| b.is_ascii_digit())
                })
                .unwrap_or(false)
        })
        .count();
    assert!(host > n, "host has {host} processes");
}

#[test]
fn uid_gid_mapping_in_user_namespace() {
    if !root("uid_gid_mapping_in_user_namespace") {
        return;
    }
    let mut spec = sh("id -u; id -g; id -G; cat /proc/self/uid_map /proc/self/gid_map");
    spec["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "user"}));
    spec["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 300000, "size": 65536}]);
    spec["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 300000, "size": 65536}]);
    spec["process"]["user"] = json!({"uid": 1000, "gid": 1001, "additionalGids": [10, 20]});
    let ran = run_spec(&spec);
    let out = ran.ok();
    let lines: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines[0], ["1000"], "{out}");
    assert_eq!(lines[1], ["1001"], "{out}");
    let mut groups = lines[2].clone();
    groups.sort();
    assert_eq!(groups, ["10", "1001", "20"], "{out}");
    assert_eq!(lines[3], ["0", "300000", "65536"], "{out}");
    assert_eq!(lines[4], ["0", "300000", "65536"], "{out}");
}

#[test]
fn user_without_user_namespace() {
    if !root("user_without_user_namespace") {
        return;
    }
    let mut spec = sh("id -u; id -g; id -G");
    spec["process"]["user"] = json!({"uid": 4242, "gid": 4343, "additionalGids": [7]});
    let out = run_spec(&spec).ok();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "4242");
    assert_eq!(lines[1], "4343");
    let mut g: Vec<&str> = lines[2].split_whitespace().collect();
    g.sort();
    assert_eq!(
        g,
        ["4343", "7"],
        "supplementary groups of the runtime must not leak: {out}"
    );
}

#[test]
fn readonly_bind_mount_refuses_writes_and_rw_bind_accepts() {
    if !root("readonly_bind_mount_refuses_writes_and_rw_bind_accepts") {
        return;
    }
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("f"), "from-host\n").unwrap();
    let rw = tempfile::tempdir().unwrap();
    let mut spec = sh("cat /ro/f; if echo x > /ro/new; then echo WROTE; else echo REFUSED; fi; echo y > /rw/out && echo RW-OK");
    let mounts = spec["mounts"].as_array_mut().unwrap();
    mounts.push(json!({"destination": "/ro", "type": "bind", "source": host.path(), "options": ["rbind", "ro", "nosuid", "nodev"]}));
    mounts.push(json!({"destination": "/rw", "type": "none", "source": rw.path(), "options": ["bind", "rw"]}));
    let out = run_spec(&spec).ok();
    assert_eq!(out, "from-host\nREFUSED\nRW-OK\n");
    assert!(!host.path().join("new").exists());
    assert_eq!(
        std::fs::read_to_string(rw.path().join("out")).unwrap(),
        "y\n"
    );
}

#[test]
fn readonly_root() {
    if !root("readonly_root") {
        return;
    }
    let mut spec = sh("if touch /newfile 2>/dev/null; then echo WROTE; else echo RO; fi; touch /tmp/x 2>/dev/null || echo TMP-RO");
    spec["root"]["readonly"] = json!(true);
    let ran = run_spec(&spec);
    assert_eq!(ran.ok(), "RO\nTMP-RO\n");
    assert!(!ran.bundle.rootfs().join("newfile").exists());
    let mut spec = sh("touch /newfile && echo WROTE");
    spec["root"]["readonly"] = json!(false);
    let ran = run_spec(&spec);
    assert_eq!(ran.ok(), "WROTE\n");
    assert!(ran.bundle.rootfs().join("newfile").exists());
}

#[test]
fn devices_present_and_usable() {
    if !root("devices_present_and_usable") {
        return;
    }
    let script = "echo discard > /dev/null && echo null-ok; \
        head -c 4 /dev/zero | od -An -tx1; \
        head -c 16 /dev/urandom | wc -c; head -c 16 /dev/random | wc -c; \
        if echo x > /dev/full 2>/dev/null; then echo full-wrote; else echo full-ENOSPC; fi; \
        for d in null zero full random urandom tty; do stat -c '%n %F %t:%T %a' /dev/$d; done; \
        stat -c '%t:%T %a %u:%g' /dev/clawdev; stat -c '%F %t:%T %a' /dev/clawfifo; \
        for l in fd stdin stdout stderr ptmx; do readlink /dev/$l; done";
    let mut spec = sh(script);
    spec["linux"]["devices"] = json!([{"path": "/dev/clawdev", "type": "c", "major": 1, "minor": 3, "fileMode": 0o600, "uid": 7, "gid": 8},
        // As podman writes it: the host node's st_mode, file-type bits included.
        {"path": "/dev/clawfifo", "type": "p", "major": 0, "minor": 0, "fileMode": 0o010640}]);
    let out = run_spec(&spec).ok();
    let expect = "null-ok\n 00 00 00 00\n16\n16\nfull-ENOSPC\n\
        /dev/null character special file 1:3 666\n\
        /dev/zero character special file 1:5 666\n\
        /dev/full character special file 1:7 666\n\
        /dev/random character special file 1:8 666\n\
        /dev/urandom character special file 1:9 666\n\
        /dev/tty character special file 5:0 666\n\
        1:3 600 7:8\n\
        fifo 0:0 640\n\
        /proc/self/fd\n/proc/self/fd/0\n/proc/self/fd/1\n/proc/self/fd/2\npts/ptmx\n";
    assert_eq!(out, expect);
}

#[test]
fn cwd_and_env() {
    if !root("cwd_and_env") {
        return;
    }
    let mut spec = sh("pwd; echo \"$GREETING\"; env | grep -c .");
    spec["process"]["cwd"] = json!("/srv/work/dir");
    spec["process"]["env"] = json!(["PATH=/bin", "GREETING=hello from env"]);
    let out = run_spec(&spec).ok();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "/srv/work/dir");
    assert_eq!(lines[1], "hello from env");
    // Only the spec's variables (sh adds PWD, SHLVL and maybe _): none of the test's env.
    let n: usize = lines[2].parse().unwrap();
    assert!(n <= 5, "env has {n} entries: {out}");
}

#[test]
fn rlimits_umask_oom_score_adj_no_new_privs() {
    if !root("rlimits_umask_oom_score_adj_no_new_privs") {
        return;
    }
    let mut spec = sh("grep -E 'Max open files|Max core file size' /proc/self/limits; umask; cat /proc/self/oom_score_adj; grep NoNewPrivs /proc/self/status");
    spec["process"]["rlimits"] = json!([
        {"type": "RLIMIT_NOFILE", "soft": 123, "hard": 456},
        {"type": "RLIMIT_CORE", "soft": 0, "hard": 4096}
    ]);
    spec["process"]["user"]["umask"] = json!(0o027);
    spec["process"]["oomScoreAdj"] = json!(517);
    spec["process"]["noNewPrivileges"] = json!(true);
    let out = run_spec(&spec).ok();
    let norm: Vec<String> = out
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(norm[0], "Max core file size 0 4096 bytes", "{out}");
    assert_eq!(norm[1], "Max open files 123 456 files", "{out}");
    assert_eq!(norm[2], "0027");
    assert_eq!(norm[3], "517");
    assert_eq!(norm[4], "NoNewPrivs: 1");

    let mut spec = sh("grep NoNewPrivs /proc/self/status");
    spec["process"]["noNewPrivileges"] = json!(false);
    assert_eq!(run_spec(&spec).ok(), "NoNewPrivs:\t0\n");
}

#[test]
fn exit_status_propagates() {
    if !root("exit_status_propagates") {
        return;
    }
    let ran = run_spec(&sh("exit 42"));
    assert_eq!(ran.code(), Some(42));
    ran.assert_clean();
    let ran = run_spec(&spec_with_args(&["/bin/false"]));
    assert_eq!(ran.code(), Some(1));
    ran.assert_clean();
}

/// A caller that ignores SIGCHLD (a shell's `trap '' CHLD`, some supervisors) hands that
/// disposition on across exec, and with it the kernel reaps children by itself: nanoclaw must
/// still wait for its container and report the status, and leave nothing behind.
#[test]
fn exit_status_propagates_when_the_caller_ignores_sigchld() {
    if !root("exit_status_propagates_when_the_caller_ignores_sigchld") {
        return;
    }
    let bundle = Bundle::busybox().unwrap();
    bundle.write_config(&sh("sleep 0.2; exit 42")).unwrap();
    let runtime = Runtime::new(NANOCLAW).unwrap();
    // bash hands an ignored SIGCHLD on across exec (dash does not).
    let out = std::process::Command::new("bash")
        .args([
            "-c",
            "trap '' CHLD; exec \"$@\"",
            "bash",
            NANOCLAW,
            "--root",
        ])
        .arg(runtime.root())
        .args(["run", "--bundle"])
        .arg(bundle.path())
        .arg("ign")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(42),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(runtime.leftover_state().is_empty());
}

#[test]
fn killed_by_signal_exits_128_plus_n() {
    if !root("killed_by_signal_exits_128_plus_n") {
        return;
    }
    // Without a pid namespace the shell is not a namespace init, so it can signal itself.
    let mut spec = sh("kill -TERM $$; sleep 5");
    let ns = spec["linux"]["namespaces"].as_array_mut().unwrap();
    ns.retain(|n| n["type"] != "pid");
    let ran = run_spec(&spec);
    assert_eq!(ran.code(), Some(128 + 15), "stderr: {}", ran.stderr());
    ran.assert_clean();

    // With a pid namespace: the host SIGKILLs the container's init.
    let bundle = Bundle::busybox().unwrap();
    bundle.write_config(&sh("sleep 30")).unwrap();
    let runtime = Runtime::new(NANOCLAW).unwrap();
    let pid_file = runtime.root().with_extension("pid");
    let mut child = runtime
        .command(["run", "--pid-file"])
        .arg(&pid_file)
        .arg("--bundle")
        .arg(bundle.path())
        .arg("k")
        .spawn()
        .unwrap();
    let pid = wait_for_pid(&pid_file);
    // The pid file is written at the end of create, before start: killing the init then would
    // test a failed start instead (a race the loaded CI machine lost). Wait until it runs.
    wait_for_running(&runtime, "k");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(128 + 9));
    assert!(runtime.leftover_state().is_empty());
    let _ = std::fs::remove_file(pid_file);
}

fn wait_for_running(runtime: &Runtime, id: &str) {
    for _ in 0..500 {
        let out = runtime.command(["state", id]).output().unwrap();
        let state: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if state["status"] == "running" {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("container {id} never reached running");
}

fn wait_for_pid(path: &std::path::Path) -> i32 {
    for _ in 0..500 {
        if let Some(pid) = std::fs::read_to_string(path)
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            return pid;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("pid file {} never appeared", path.display());
}

#[test]
fn sigterm_to_run_is_forwarded() {
    if !root("sigterm_to_run_is_forwarded") {
        return;
    }
    let bundle = Bundle::busybox().unwrap();
    // PID 1 of a namespace only receives signals it handles: trap TERM and exit 3.
    bundle
        .write_config(&sh(
            "trap 'echo got-term; exit 3' TERM; echo ready; while :; do sleep 0.1; done",
        ))
        .unwrap();
    let runtime = Runtime::new(NANOCLAW).unwrap();
    let mut child = runtime
        .command(["run", "--bundle"])
        .arg(bundle.path())
        .arg("f")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut buf = [0u8; 6];
    std::io::Read::read_exact(&mut stdout, &mut buf).unwrap();
    assert_eq!(&buf, b"ready\n");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::SIGTERM,
    )
    .unwrap();
    let status = child.wait().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    assert_eq!(rest, "got-term\n");
    assert_eq!(status.code(), Some(3));
}

#[test]
fn symlinked_mount_destination_stays_inside_rootfs() {
    if !root("symlinked_mount_destination_stays_inside_rootfs") {
        return;
    }
    // A host directory the image tries to reach through symlinks.
    let target = tempfile::tempdir().unwrap();
    std::fs::write(target.path().join("host-secret"), "secret").unwrap();
    let bundle = Bundle::busybox().unwrap();
    let rootfs = bundle.rootfs();
    // Absolute symlink and a relative one climbing far above the rootfs.
    std::os::unix::fs::symlink(target.path(), rootfs.join("abs")).unwrap();
    let target2 = tempfile::tempdir().unwrap();
    let climb = format!("../../../../../../../../..{}", target2.path().display());
    std::os::unix::fs::symlink(&climb, rootfs.join("rel")).unwrap();
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("inside"), "in").unwrap();
    let mut spec = sh(&format!(
        "ls /abs; ls /rel; grep -c ' {}/sub tmpfs' /proc/mounts; echo done",
        target2.path().display()
    ));
    let mounts = spec["mounts"].as_array_mut().unwrap();
    mounts.push(json!({"destination": "/abs", "type": "bind", "source": src.path(), "options": ["bind", "ro"]}));
    mounts.push(json!({"destination": "/rel/sub", "type": "tmpfs", "source": "tmpfs"}));
    let ran = run_in(bundle, &spec);
    let out = ran.ok();
    // Both symlinks were resolved inside the rootfs: the bind landed on <rootfs>/<target>.
    assert_eq!(out, "inside\nsub\n1\ndone\n", "stderr: {}", ran.stderr());
    let inner = rootfs.join(target.path().strip_prefix("/").unwrap());
    assert!(inner.is_dir(), "destination created inside the rootfs");
    let inner2 = rootfs.join(target2.path().strip_prefix("/").unwrap());
    assert!(
        inner2.join("sub").is_dir(),
        "relative climb clamped at the rootfs"
    );
    assert_eq!(std::fs::read_dir(target2.path()).unwrap().count(), 0);
    // The host directory was never touched.
    let entries: Vec<_> = std::fs::read_dir(target.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(entries, vec![std::ffi::OsString::from("host-secret")]);
}

#[test]
fn joins_namespace_by_path() {
    if !root("joins_namespace_by_path") {
        return;
    }
    if !claw_testsupport::require_tool("joins_namespace_by_path", "unshare") {
        return;
    }
    let mut holder = std::process::Command::new("unshare")
        .args([
            "--uts",
            "sh",
            "-c",
            "hostname joined-uts && echo ready && sleep 30",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 6];
    std::io::Read::read_exact(holder.stdout.as_mut().unwrap(), &mut buf).unwrap();
    let holder_pid = holder.id();
    // The holder is `unshare` exec'ing sh; /proc/<pid>/ns/uts is its namespace.
    let mut spec = sh("hostname; readlink /proc/self/ns/uts");
    spec.as_object_mut().unwrap().remove("hostname");
    for ns in spec["linux"]["namespaces"].as_array_mut().unwrap() {
        if ns["type"] == "uts" {
            ns["path"] = json!(format!("/proc/{holder_pid}/ns/uts"));
        }
    }
    let ran = run_spec(&spec);
    let _ = holder.kill();
    let _ = holder.wait();
    let out = ran.ok();
    let want = std::fs::read_link(format!("/proc/{holder_pid}/ns/uts"))
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("joined-uts"));
    if !want.is_empty() {
        assert_eq!(lines.next(), Some(want.as_str()));
    }
}

#[test]
fn no_host_fd_leaks_into_container() {
    if !root("no_host_fd_leaks_into_container") {
        return;
    }
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let bundle = Bundle::busybox().unwrap();
    bundle
        .write_config(&sh("ls /proc/self/fd | sort -n | tr '\\n' ' '"))
        .unwrap();
    let runtime = Runtime::new(NANOCLAW).unwrap();
    let secret = std::fs::File::open("/etc/hostname").unwrap();
    let raw = secret.as_raw_fd();
    let mut cmd = runtime.command(["run", "--bundle"]);
    cmd.arg(bundle.path()).arg("fd");
    // SAFETY: dup2 is async-signal-safe; it hands the runtime an inheritable fd 7.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(raw, 7) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    // 0-2 and the fd `ls` opens for the directory itself.
    assert_eq!(
        stdout.trim(),
        "0 1 2 3",
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn stdio_passes_through() {
    if !root("stdio_passes_through") {
        return;
    }
    let bundle = Bundle::busybox().unwrap();
    bundle
        .write_config(&sh("tr a-z A-Z; echo to-stderr >&2"))
        .unwrap();
    let runtime = Runtime::new(NANOCLAW).unwrap();
    let mut child = runtime
        .command(["run", "--bundle"])
        .arg(bundle.path())
        .arg("io")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"hello claw\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "HELLO CLAW\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "to-stderr\n");
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn create_start_delete_lifecycle() {
    if !root("create_start_delete_lifecycle") {
        return;
    }
    let bundle = Bundle::busybox().unwrap();
    let marker = bundle.path().join("marker");
    let mut spec = sh("echo started > /b/marker");
    spec["mounts"].as_array_mut().unwrap().push(
        json!({"destination": "/b", "type": "bind", "source": bundle.path(), "options": ["bind"]}),
    );
    bundle.write_config(&spec).unwrap();
    std::fs::set_permissions(bundle.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let runtime = Runtime::new(NANOCLAW).unwrap();
    // The init inherits create's stdio: keep pipes out of it, or output() would wait for it.
    let errfile = bundle.path().join("create.err");
    let quiet = |mut c: std::process::Command| {
        let err = std::fs::File::create(&errfile).unwrap();
        c.stdout(std::process::Stdio::null()).stderr(err);
        let status = c.status().unwrap();
        (
            status,
            std::fs::read_to_string(&errfile).unwrap_or_default(),
        )
    };
    let mut c = runtime.command(["create", "--bundle"]);
    c.arg(bundle.path()).arg("lc");
    let (st, err) = quiet(c);
    assert!(st.success(), "{err}");
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(runtime.root().join("lc/state.json")).unwrap())
            .unwrap();
    assert_eq!(state["status"], "created");
    assert_eq!(state["id"], "lc");
    let pid = state["pid"].as_i64().unwrap();
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    // Created, not started: the process has not run yet.
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert!(!marker.exists(), "process ran before start");
    // A second create with the same id is refused.
    let mut c = runtime.command(["create", "--bundle"]);
    c.arg(bundle.path()).arg("lc");
    let (dup, err) = quiet(c);
    assert!(!dup.success());
    assert!(err.contains("already exists"), "{err}");
    let st = runtime.command(["start", "lc"]).output().unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    for _ in 0..200 {
        if marker.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "started\n");
    let st = runtime
        .command(["delete", "--force", "lc"])
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    assert!(runtime.leftover_state().is_empty());
    for _ in 0..200 {
        if !claw_testsupport::bundle::pid_alive(pid as i32) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(
        !claw_testsupport::bundle::pid_alive(pid as i32),
        "init {pid} still alive"
    );
}

#[test]
fn joins_pid_namespace_by_path() {
    if !root("joins_pid_namespace_by_path") {
        return;
    }
    if !claw_testsupport::require_tool("joins_pid_namespace_by_path", "unshare") {
        return;
    }
    // `unshare --pid --fork` makes `sleep` PID 1 of a new pid namespace.
    let mut holder = std::process::Command::new("unshare")
        .args(["--pid", "--fork", "sleep", "30"])
        .spawn()
        .unwrap();
    let children = format!("/proc/{}/task/{}/children", holder.id(), holder.id());
    let mut sleeper = None;
    for _ in 0..500 {
        sleeper = std::fs::read_to_string(&children)
            .ok()
            .and_then(|s| s.split_whitespace().next().map(str::to_string));
        if sleeper.is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let sleeper = sleeper.expect("sleep in the new pid namespace");
    let mut spec = sh("echo $$; cat /proc/1/comm");
    for ns in spec["linux"]["namespaces"].as_array_mut().unwrap() {
        if ns["type"] == "pid" {
            ns["path"] = json!(format!("/proc/{sleeper}/ns/pid"));
        }
    }
    let ran = run_spec(&spec);
    if let Ok(p) = sleeper.parse::<i32>() {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), nix::sys::signal::SIGKILL);
    }
    let _ = holder.kill();
    let _ = holder.wait();
    let out = ran.ok();
    let mut lines = out.lines();
    let pid: u32 = lines.next().unwrap().parse().unwrap();
    // Joined, not created: the namespace's PID 1 is the holder's sleep, not our process.
    assert!(pid > 1, "{out}");
    assert_eq!(lines.next(), Some("sleep"), "{out}");
}

#[test]
fn mount_options_and_propagation_flags() {
    if !root("mount_options_and_propagation_flags") {
        return;
    }
    private_mount_namespace_for_this_thread();
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    // Fields 5 (mount point), 6 (per-mount options) and the optional fields (shared:N, ...).
    let mut spec = sh(
        "awk '$5 == \"/a\" || $5 == \"/b\" || $5 == \"/\" || $5 == \"/t\" \
                       { opt = \"\"; for (i = 7; $i != \"-\"; i++) opt = opt \" \" $i; \
                         print $5, $6, (opt == \"\" ? \"none\" : opt) }' /proc/self/mountinfo",
    );
    spec["root"]["readonly"] = json!(false);
    // Non-recursive: only / becomes shared; each mount keeps its own propagation.
    spec["linux"]["rootfsPropagation"] = json!("shared");
    let mounts = spec["mounts"].as_array_mut().unwrap();
    mounts.push(
        json!({"destination": "/a", "type": "bind", "source": a.path(),
                       "options": ["rbind", "nosuid", "nodev", "noexec", "ro", "shared"]}),
    );
    mounts.push(
        json!({"destination": "/b", "type": "bind", "source": b.path(),
                       "options": ["bind", "private"]}),
    );
    mounts.push(
        json!({"destination": "/t", "type": "tmpfs", "source": "tmpfs",
                       "options": ["nosuid", "noexec", "relatime", "unbindable"]}),
    );
    let out = run_spec(&spec).ok();
    let line = |mp: &str| -> String {
        out.lines()
            .find(|l| l.split(' ').next() == Some(mp))
            .unwrap_or_else(|| panic!("{mp} not mounted: {out}"))
            .to_string()
    };
    let root_line = line("/");
    assert!(
        root_line.contains("shared:"),
        "rootfsPropagation shared: {root_line}"
    );
    let a_line = line("/a");
    for opt in ["ro", "nosuid", "nodev", "noexec"] {
        assert!(
            a_line.split([' ', ',']).any(|o| o == opt),
            "/a lacks {opt}: {a_line}"
        );
    }
    assert!(a_line.contains("shared:"), "{a_line}");
    let b_line = line("/b");
    assert!(b_line.split([' ', ',']).any(|o| o == "rw"), "{b_line}");
    assert!(b_line.ends_with(" none"), "private: {b_line}");
    let t_line = line("/t");
    assert!(t_line.contains("unbindable"), "{t_line}");
    assert!(
        t_line.contains("noexec") && t_line.contains("relatime"),
        "{t_line}"
    );
}

/// Moves the calling test thread (and the runtimes it spawns) into a mount namespace of its
/// own with every mount private. A test that gives a container shared propagation then works
/// on a copy of the host's mount table: on a host whose mounts are shared (systemd's
/// default), a regression could otherwise unmount or cover the host's own mounts. Leak checks
/// read /proc/thread-self (`mounts_under`), so they look at this namespace.
fn private_mount_namespace_for_this_thread() {
    use nix::mount::{mount, MsFlags};
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).expect("unshare(CLONE_NEWNS)");
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        None::<&str>,
    )
    .expect("make / rprivate in the test's mount namespace");
}

/// A tmpfs made shared (in the test's own mount namespace), removed with everything mounted
/// under it on drop.
struct SharedTmpfs(tempfile::TempDir);

impl SharedTmpfs {
    fn new() -> Self {
        use nix::mount::{mount, MsFlags};
        let dir = tempfile::Builder::new()
            .prefix("claw-shared-")
            .tempdir()
            .unwrap();
        mount(
            Some("claw-shared"),
            dir.path(),
            Some("tmpfs"),
            MsFlags::empty(),
            Some("mode=755"),
        )
        .unwrap();
        // Built before the next step can fail, so Drop unmounts the tmpfs either way.
        let this = Self(dir);
        mount(
            None::<&str>,
            this.path(),
            None::<&str>,
            MsFlags::MS_SHARED,
            None::<&str>,
        )
        .unwrap();
        this
    }

    fn path(&self) -> &std::path::Path {
        self.0.path()
    }

    /// A child tmpfs at `name` (a host mount the container's teardown must leave alone).
    fn mount_child(&self, name: &str) -> std::path::PathBuf {
        let at = self.path().join(name);
        std::fs::create_dir(&at).unwrap();
        nix::mount::mount(
            Some("claw-child"),
            &at,
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )
        .unwrap();
        at
    }
}

impl Drop for SharedTmpfs {
    fn drop(&mut self) {
        let mut mounts = claw_testsupport::bundle::mounts_under(self.path());
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mounts {
            let _ = nix::mount::umount2(m.as_str(), nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

/// linux.rootfsPropagation `rshared` (what containerd's CRI sets for a Kubernetes
/// Bidirectional volume): a mount made inside the container on a bind of a shared host mount
/// appears on the host. The bundle itself sits on a shared mount (its self-bind must not
/// appear on the host, and pivot_root refuses a new root under a shared mount), and detaching
/// the old root must not unmount the host's own mounts through their shared parent. With the
/// default propagation the container's mount stays inside it.
#[test]
fn rshared_rootfs_propagation_reaches_the_host_and_unmounts_nothing_there() {
    if !root("rshared_rootfs_propagation_reaches_the_host_and_unmounts_nothing_there") {
        return;
    }
    private_mount_namespace_for_this_thread();
    for propagation in [Some("rshared"), None] {
        let holder = SharedTmpfs::new();
        let volume = SharedTmpfs::new();
        let keep = volume.mount_child("keep");
        std::fs::create_dir(volume.path().join("fromc")).unwrap();
        let bundle = holder.path().join("bundle");
        std::fs::create_dir_all(bundle.join("rootfs")).unwrap();
        claw_testsupport::populate_busybox_rootfs(&bundle.join("rootfs")).unwrap();

        let mut spec =
            sh("mount -t tmpfs fromc /vol/fromc && grep -c ' /vol/fromc ' /proc/self/mountinfo");
        let caps = json!(["CAP_SYS_ADMIN"]);
        for set in ["bounding", "effective", "permitted"] {
            spec["process"]["capabilities"][set] = caps.clone();
        }
        spec["process"]["capabilities"]["ambient"] = json!([]);
        spec["linux"].as_object_mut().unwrap().remove("seccomp");
        if let Some(p) = propagation {
            spec["linux"]["rootfsPropagation"] = json!(p);
        }
        spec["mounts"].as_array_mut().unwrap().push(
            json!({"destination": "/vol", "type": "bind", "source": volume.path(), "options": ["rbind", "rw"]}),
        );
        std::fs::write(
            bundle.join("config.json"),
            serde_json::to_vec(&spec).unwrap(),
        )
        .unwrap();
        let runtime = Runtime::new(NANOCLAW).unwrap();
        let out = runtime
            .run(&bundle, &claw_testsupport::engines::unique_name("t"))
            .unwrap();
        let what = format!(
            "{propagation:?}: stdout {} stderr {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(0), "{what}");
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1", "{what}");

        let on_host = claw_testsupport::bundle::mounts_under(&volume.path().join("fromc"));
        assert_eq!(
            on_host.len(),
            usize::from(propagation.is_some()),
            "{what}: the container's /vol/fromc on the host: {on_host:?}"
        );
        assert_eq!(
            claw_testsupport::bundle::mounts_under(&keep).len(),
            1,
            "{what}: the host's own {} was unmounted",
            keep.display()
        );
        let leaked = claw_testsupport::bundle::mounts_under(&bundle);
        assert!(
            leaked.is_empty(),
            "{what}: bundle mounts on the host: {leaked:?}"
        );
        assert!(runtime.leftover_state().is_empty(), "{what}");
    }
}

/// Every linux.rootfsPropagation value runs (with a bind from the host, which an unbindable
/// tree could not be the source of) and leaves `/` inside with the propagation asked for.
#[test]
fn every_rootfs_propagation_value_runs_and_applies_to_the_new_root() {
    if !root("every_rootfs_propagation_value_runs_and_applies_to_the_new_root") {
        return;
    }
    private_mount_namespace_for_this_thread();
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("f"), "bound\n").unwrap();
    for value in [
        "shared",
        "rshared",
        "slave",
        "rslave",
        "private",
        "rprivate",
        "unbindable",
        "runbindable",
    ] {
        // The optional fields of the "/" line (shared:N, master:N, unbindable), then the bind.
        let mut spec = sh(
            "awk '$5 == \"/\" { opt = \"\"; for (i = 7; $i != \"-\"; i++) \
                           opt = opt \" \" $i; print (opt == \"\" ? \"none\" : opt) }' \
                           /proc/self/mountinfo; cat /mnt/f",
        );
        spec["linux"]["rootfsPropagation"] = json!(value);
        spec["mounts"].as_array_mut().unwrap().push(
            json!({"destination": "/mnt", "type": "bind", "source": data.path(), "options": ["bind", "ro"]}),
        );
        let ran = run_spec(&spec);
        let what = format!(
            "{value}: status {:?} stdout {:?} stderr {:?}",
            ran.out.status,
            String::from_utf8_lossy(&ran.out.stdout),
            String::from_utf8_lossy(&ran.out.stderr)
        );
        assert_eq!(ran.out.status.code(), Some(0), "{what}");
        let out = String::from_utf8_lossy(&ran.out.stdout).into_owned();
        let mut lines = out.lines();
        let root_opts = lines.next().unwrap_or_default();
        assert_eq!(lines.next(), Some("bound"), "{what}");
        let want = match value {
            "shared" | "rshared" => "shared:",
            "unbindable" | "runbindable" => "unbindable",
            // Slave of a private mount (everything is private in this namespace) is private.
            _ => "none",
        };
        assert!(
            root_opts.contains(want),
            "{what}: / has {root_opts:?}, want {want}"
        );
        assert!(
            !root_opts.contains("master:"),
            "{what}: / is a slave of the host"
        );
        ran.assert_clean();
    }
}
