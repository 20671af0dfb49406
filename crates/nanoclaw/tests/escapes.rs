//! Escape attempts from inside a container, each observed from inside (what the process sees)
//! and, where it matters, from the host (nothing changed there).
//!
//! Syscalls busybox cannot issue come from `escape-probe` (tests/escape_probe/probe.rs), a
//! static std-only binary these tests build with `rustc` and copy into the rootfs.

use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::Output;

use claw_testsupport::bundle::{Bundle, Runtime};

mod common;
use serde_json::{json, Value};

const NANOCLAW: &str = env!("CARGO_BIN_EXE_nanoclaw");

fn root(test: &str) -> bool {
    claw_testsupport::require_root(test)
}

use common::bundle_with_probe;

struct Ran {
    out: Output,
    bundle: Bundle,
    runtime: Runtime,
}

impl Ran {
    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.out.stdout).into_owned()
    }
    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.out.stderr).into_owned()
    }
    /// Exit 0, nothing left behind; returns stdout.
    fn ok(&self) -> String {
        assert_eq!(
            self.out.status.code(),
            Some(0),
            "stdout: {}\nstderr: {}",
            self.stdout(),
            self.stderr()
        );
        self.assert_clean();
        self.stdout()
    }
    /// Refused before running: nonzero exit, the error names `needle`, nothing left behind.
    fn refused(&self, needle: &str) {
        assert_ne!(self.out.status.code(), Some(0), "stdout: {}", self.stdout());
        assert!(
            self.stderr().contains(needle),
            "expected {needle:?} in stderr: {}",
            self.stderr()
        );
        self.assert_clean();
    }
    fn assert_clean(&self) {
        assert!(
            self.runtime.leftover_state().is_empty(),
            "state left: {:?}",
            self.runtime.leftover_state()
        );
        let mounts = claw_testsupport::bundle::mounts_under(self.bundle.path());
        assert!(mounts.is_empty(), "mounts left: {mounts:?}");
    }
}

/// `nanoclaw spec`'s default (with its seccomp profile, capabilities, masked paths), writable
/// root, given args.
fn spec(args: &[&str]) -> Value {
    let mut s = nanoclaw::spec::template::default_spec();
    s["process"]["args"] = json!(args);
    s["root"]["readonly"] = json!(false);
    s
}

fn sh(script: &str) -> Value {
    spec(&["sh", "-c", script])
}

fn run_in(bundle: Bundle, spec: &Value) -> Ran {
    bundle.write_config(spec).expect("write config");
    let runtime = Runtime::new(NANOCLAW).expect("runtime");
    let id = claw_testsupport::engines::unique_name("esc");
    let out = runtime.run(bundle.path(), &id).expect("spawn nanoclaw");
    Ran {
        out,
        bundle,
        runtime,
    }
}

fn run(spec: &Value) -> Ran {
    run_in(bundle_with_probe(), spec)
}

/// Lines of `name: result` from the probe, as a map.
fn probe_results(out: &str) -> Vec<(String, String)> {
    out.lines()
        .filter_map(|l| l.split_once(": "))
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
        .collect()
}

#[test]
fn privileged_syscalls_fail_inside_the_default_container() {
    if !root("privileged_syscalls_fail_inside_the_default_container") {
        return;
    }
    let attempts = [
        "mount",
        "unshare-user",
        "unshare-mnt",
        "keyctl",
        "add_key",
        "init_module",
        "finit_module",
        "bpf",
        "kexec_load",
        "open_by_handle_at",
        "raw-socket",
        "packet-socket",
    ];
    let mut args = vec!["/probe"];
    args.extend(attempts);
    let ran = run(&spec(&args));
    let results = probe_results(&ran.ok());
    assert_eq!(results.len(), attempts.len(), "{results:?}");
    for ((name, result), expected) in results.iter().zip(attempts) {
        assert_eq!(name, expected);
        assert_eq!(result, "errno=1", "{name} was not refused with EPERM");
    }
    // The busybox tools a user would try fail the same way.
    let ran = run(&sh(
        "mount -t tmpfs none /mnt 2>&1; echo mount=$?; unshare -U true 2>&1; echo unshare=$?",
    ));
    let out = ran.ok();
    assert!(
        out.contains("mount=255") || out.contains("mount=1"),
        "{out}"
    );
    assert!(!out.contains("unshare=0"), "{out}");
}

/// The same attempts with the seccomp profile removed: capabilities alone still refuse all of
/// them except the keyring calls, which need none — the reason the profile denies them. (A
/// kernel built without modules or kexec answers ENOSYS instead of EPERM for those; with the
/// profile the answer is EPERM either way, because seccomp decides before the kernel looks.)
#[test]
fn without_seccomp_capabilities_still_refuse_the_privileged_syscalls() {
    if !root("without_seccomp_capabilities_still_refuse_the_privileged_syscalls") {
        return;
    }
    let mut s = spec(&[
        "/probe",
        "mount",
        "unshare-mnt",
        "init_module",
        "kexec_load",
        "raw-socket",
        "keyctl",
    ]);
    s["linux"].as_object_mut().expect("linux").remove("seccomp");
    let results = probe_results(&run(&s).ok());
    let get = |n: &str| {
        results
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.as_str())
    };
    for n in ["mount", "unshare-mnt", "raw-socket"] {
        assert_eq!(get(n), Some("errno=1"), "{n}: {results:?}");
    }
    for n in ["init_module", "kexec_load"] {
        assert!(
            matches!(get(n), Some("errno=1") | Some("errno=38")),
            "{n}: {results:?}"
        );
    }
    assert_eq!(get("keyctl"), Some("ok"), "{results:?}");
}

#[test]
fn ptrace_cannot_reach_a_host_process() {
    if !root("ptrace_cannot_reach_a_host_process") {
        return;
    }
    let mut sleeper = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .expect("sleep");
    let pid = sleeper.id().to_string();
    let ran = run(&spec(&["/probe", "ptrace", &pid]));
    let out = ran.ok();
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    // ESRCH: the host's pid does not exist in the container's pid namespace.
    assert_eq!(out.trim(), "ptrace: errno=3");
}

#[test]
fn proc_and_sys_are_read_only_and_kernel_secrets_masked() {
    if !root("proc_and_sys_are_read_only_and_kernel_secrets_masked") {
        return;
    }
    let host_timer_list = std::fs::read("/proc/timer_list")
        .map(|b| b.len())
        .unwrap_or(0);
    assert!(
        host_timer_list > 0,
        "the host's /proc/timer_list has content"
    );
    let script = r#"
        try() { if sh -c "$2" 2>/dev/null; then echo "$1=written"; else echo "$1=refused"; fi; }
        try sysrq 'echo h > /proc/sysrq-trigger'
        try core_pattern 'echo "|/tmp/pwn" > /proc/sys/kernel/core_pattern'
        try kernel_hostname 'echo pwned > /proc/sys/kernel/hostname'
        try sys_create 'touch /sys/pwned'
        try uevent_helper 'echo /tmp/pwn > /sys/kernel/uevent_helper'
        try cgroup_mkdir 'mkdir /sys/fs/cgroup/pwned'
        echo "timer_list=$(cat /proc/timer_list | wc -c)"
        echo "keys=$(cat /proc/keys 2>/dev/null | wc -c)"
        if [ -e /proc/kcore ]; then echo "kcore=$(head -c 4096 /proc/kcore | wc -c)"; else echo kcore=absent; fi
        grep -c ' /proc/keys ' /proc/self/mountinfo
    "#;
    let out = run(&sh(script)).ok();
    for what in [
        "sysrq",
        "core_pattern",
        "kernel_hostname",
        "sys_create",
        "uevent_helper",
        "cgroup_mkdir",
    ] {
        assert!(out.contains(&format!("{what}=refused")), "{what}: {out}");
    }
    assert!(out.contains("timer_list=0\n"), "{out}");
    assert!(out.contains("keys=0\n"), "{out}");
    assert!(
        out.contains("kcore=0\n") || out.contains("kcore=absent\n"),
        "{out}"
    );
    // /proc/keys is a mount (the null device bound over it), not just empty.
    assert!(out.trim_end().ends_with('1'), "{out}");
    // Nothing reached the host.
    assert_ne!(
        std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap_or_default(),
        "|/tmp/pwn\n"
    );
}

/// CVE-2024-21626 class: a cwd reached through a leaked host fd (`/proc/self/fd/N`) must never
/// become the workload's working directory; fds of the runtime never reach the workload.
#[test]
fn cwd_through_a_leaked_host_fd_is_refused_and_no_fd_leaks() {
    if !root("cwd_through_a_leaked_host_fd_is_refused_and_no_fd_leaks") {
        return;
    }
    let host_dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(host_dir.path().join("host-marker"), "host").expect("marker");
    let dir = std::fs::File::open(host_dir.path()).expect("open host dir");
    // Leak it: clear close-on-exec so nanoclaw inherits it, as a careless caller would.
    nix::fcntl::fcntl(
        &dir,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
    )
    .expect("fcntl");
    let leaked = dir.as_raw_fd();
    for n in [leaked, 3, 4, 5, 6, 7, 8] {
        let mut s = sh("pwd; ls");
        s["process"]["cwd"] = json!(format!("/proc/self/fd/{n}"));
        let ran = run(&s);
        let out = ran.stdout();
        assert!(
            !out.contains("host-marker"),
            "fd {n}: cwd reached the host: {out}"
        );
        if ran.out.status.code() == Some(0) {
            ran.assert_clean();
        } else {
            ran.refused("process.cwd");
        }
    }
    // The leaked fd itself is not open in the workload: only stdio (and ls's own directory).
    let ran = run(&sh("ls /proc/self/fd"));
    let fds: Vec<String> = ran.ok().split_whitespace().map(str::to_owned).collect();
    assert!(fds.len() <= 4, "fds open in the workload: {fds:?}");
    assert!(!fds.contains(&leaked.to_string()) || leaked <= 3, "{fds:?}");
    drop(dir);
}

/// A rootfs whose /proc is a symlink to a host directory: the proc mount and the masked paths
/// land inside the rootfs, the host directory is untouched.
#[test]
fn symlinked_proc_in_the_image_cannot_redirect_mounts_or_masks_to_the_host() {
    if !root("symlinked_proc_in_the_image_cannot_redirect_mounts_or_masks_to_the_host") {
        return;
    }
    let host_dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(host_dir.path().join("keys"), "host file").expect("write");
    let bundle = bundle_with_probe();
    let proc_dir = bundle.rootfs().join("proc");
    let _ = std::fs::remove_dir(&proc_dir);
    std::os::unix::fs::symlink(host_dir.path(), &proc_dir).expect("symlink");
    let ran = run_in(
        bundle,
        &sh("wc -c < /proc/timer_list; cat /proc/keys | wc -c"),
    );
    let out = ran.stdout();
    if ran.out.status.code() == Some(0) {
        assert_eq!(out, "0\n0\n", "{}", ran.stderr());
        ran.assert_clean();
    } else {
        ran.refused("/proc");
    }
    assert_eq!(
        std::fs::read_to_string(host_dir.path().join("keys")).expect("read"),
        "host file"
    );
    let entries: Vec<_> = std::fs::read_dir(host_dir.path())
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(entries, vec![std::ffi::OsString::from("keys")]);
    assert!(claw_testsupport::bundle::mounts_under(host_dir.path()).is_empty());
}

#[test]
fn default_profile_runs_ordinary_workloads() {
    if !root("default_profile_runs_ordinary_workloads") {
        return;
    }
    let script = r#"
        set -e
        total=0; for i in 1 2 3 4 5; do total=$((total + i)); done; echo "sum=$total"
        echo "a b c" | tr ' ' '\n' | sort -r | head -1
        (sleep 0.1; echo child) & wait
        mkdir -p /tmp/w && echo data > /tmp/w/f && cat /tmp/w/f && rm -r /tmp/w
        nc -l -p 7777 > /tmp/got &
        # Listening (port 7777 = 0x1E61, state 0A, v4 or v6) before the client connects.
        i=0; until grep -qsE ':1E61 [0-9A-F]+:0000 0A' /proc/net/tcp /proc/net/tcp6; do
            i=$((i + 1)); [ $i -lt 500 ] || { echo "nc never listened" >&2; exit 9; }; sleep 0.02
        done
        echo hello-loopback | nc 127.0.0.1 7777; wait
        cat /tmp/got
        /probe threads
    "#;
    let out = run(&sh(script)).ok();
    assert_eq!(out, "sum=15\nc\nchild\ndata\nhello-loopback\nthreads: ok\n");
}

#[test]
fn capability_sets_are_what_the_config_says() {
    if !root("capability_sets_are_what_the_config_says") {
        return;
    }
    let status = "grep -E '^Cap(Inh|Prm|Eff|Bnd|Amb)' /proc/self/status | tr -s '\\t' ' '";
    // runc's default set: AUDIT_WRITE(29) KILL(5) NET_BIND_SERVICE(10) = 0x20000420.
    let out = run(&sh(status)).ok();
    assert_eq!(
        out,
        "CapInh: 0000000000000000\nCapPrm: 0000000020000420\nCapEff: 0000000020000420\nCapBnd: 0000000020000420\nCapAmb: 0000000000000000\n"
    );
    // A non-root user keeps exactly its ambient capabilities across execve: CHOWN(0) and
    // NET_BIND_SERVICE(10) = 0x401, and can use them (bind port 80).
    let mut s = sh(&format!(
        "{status}; nc -l -p 80 -w 1 2>&1 & sleep 0.2; echo bound; kill %1 2>/dev/null; true"
    ));
    let set = json!(["CAP_CHOWN", "CAP_NET_BIND_SERVICE"]);
    s["process"]["user"] = json!({"uid": 1000, "gid": 1000});
    s["process"]["capabilities"] = json!({
        "bounding": set, "permitted": set, "inheritable": set, "effective": set, "ambient": set
    });
    let out = run(&s).ok();
    assert!(
        out.starts_with("CapInh: 0000000000000401\nCapPrm: 0000000000000401\nCapEff: 0000000000000401\nCapBnd: 0000000000000401\nCapAmb: 0000000000000401\n"),
        "{out}"
    );
    assert!(!out.contains("Permission denied"), "{out}");
}

#[test]
fn unknown_capability_name_is_refused_naming_the_field() {
    if !root("unknown_capability_name_is_refused_naming_the_field") {
        return;
    }
    let mut s = sh("true");
    s["process"]["capabilities"]["bounding"] = json!(["CAP_KILL", "CAP_TIME_TRAVEL"]);
    let ran = run(&s);
    ran.refused("process.capabilities.bounding");
    assert!(ran.stderr().contains("CAP_TIME_TRAVEL"), "{}", ran.stderr());
}

#[test]
fn seccomp_errno_and_kill_are_observed_inside() {
    if !root("seccomp_errno_and_kill_are_observed_inside") {
        return;
    }
    let mut s = sh("mkdir /tmp/x 2>&1; echo mkdir=$?; sync; echo sync=$?");
    s["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [
            {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 18},
            {"names": ["sync"], "action": "SCMP_ACT_KILL_PROCESS"},
            {"names": ["not_a_syscall_on_any_kernel"], "action": "SCMP_ACT_ERRNO"}
        ]
    });
    let out = run(&s).ok();
    // EXDEV's message, then a shell reporting its child killed by SIGSYS (128 + 31).
    assert!(out.contains("Invalid cross-device link"), "{out}");
    assert!(out.contains("mkdir=1\n"), "{out}");
    assert!(out.ends_with("sync=159\n"), "{out}");
}

#[test]
fn no_new_privileges_false_still_installs_the_filter() {
    if !root("no_new_privileges_false_still_installs_the_filter") {
        return;
    }
    let mut s =
        sh("grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status | tr -s '\\t' ' '; /probe mount");
    s["process"]["noNewPrivileges"] = json!(false);
    let out = run_in(bundle_with_probe(), &s).ok();
    assert_eq!(out, "NoNewPrivs: 0\nSeccomp: 2\nmount: errno=1\n");
}

#[test]
fn bad_security_fields_are_refused_before_anything_is_created() {
    if !root("bad_security_fields_are_refused_before_anything_is_created") {
        return;
    }
    type Edit = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(&str, Edit)> = vec![
        (
            "linux.sysctl.kernel.pid_max",
            Box::new(|s| s["linux"]["sysctl"] = json!({"kernel.pid_max": "4096"})),
        ),
        (
            "linux.sysctl.net.ipv4.ip_forward",
            Box::new(|s| {
                s["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1"});
                s["linux"]["namespaces"] =
                    json!([{"type": "pid"}, {"type": "mount"}, {"type": "ipc"}, {"type": "uts"}]);
            }),
        ),
        (
            "linux.seccomp.syscalls[0].action",
            Box::new(|s| {
                s["linux"]["seccomp"] = json!({
                    "defaultAction": "SCMP_ACT_ALLOW",
                    "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_PANIC"}]
                })
            }),
        ),
        (
            "linux.seccomp.syscalls[0].args[0].index",
            Box::new(|s| {
                s["linux"]["seccomp"] = json!({
                    "defaultAction": "SCMP_ACT_ALLOW",
                    "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 9, "value": 0, "op": "SCMP_CMP_EQ"}]}]
                })
            }),
        ),
        (
            "linux.seccomp.architectures[0]",
            Box::new(|s| {
                s["linux"]["seccomp"] = json!({
                    "defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_VAX"]
                })
            }),
        ),
        (
            "linux.seccomp.syscalls[0].args[0].op",
            Box::new(|s| {
                s["linux"]["seccomp"] = json!({
                    "defaultAction": "SCMP_ACT_ALLOW",
                    "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_ROUGHLY"}]}]
                })
            }),
        ),
        (
            "linux.personality.flags[0]",
            Box::new(|s| {
                s["linux"]["personality"] =
                    json!({"domain": "LINUX", "flags": ["ADDR_NO_RANDOMIZE"]})
            }),
        ),
        (
            "linux.maskedPaths[0]",
            Box::new(|s| s["linux"]["maskedPaths"] = json!(["relative/path"])),
        ),
        (
            "process.apparmorProfile",
            Box::new(|s| s["process"]["apparmorProfile"] = json!("docker-default")),
        ),
        (
            "process.selinuxLabel",
            Box::new(|s| s["process"]["selinuxLabel"] = json!("system_u:system_r:container_t:s0")),
        ),
        (
            "linux.intelRdt",
            Box::new(|s| s["linux"]["intelRdt"] = json!({"closID": "c1"})),
        ),
    ];
    let lsm_present = Path::new("/sys/module/apparmor/parameters/enabled").exists()
        || Path::new("/sys/fs/selinux/enforce").exists()
        || Path::new("/sys/fs/resctrl/info").exists();
    for (field, edit) in cases {
        let mut s = sh("echo ran");
        edit(&mut s);
        let ran = run(&s);
        ran.refused(field);
        assert!(!ran.stdout().contains("ran"), "{field}: the container ran");
        if !lsm_present
            && matches!(
                field,
                "process.apparmorProfile" | "process.selinuxLabel" | "linux.intelRdt"
            )
        {
            assert!(
                ran.stderr().contains("not available on this host"),
                "{}",
                ran.stderr()
            );
        }
    }
}

#[test]
fn namespaced_sysctls_and_personality_are_applied() {
    if !root("namespaced_sysctls_and_personality_are_applied") {
        return;
    }
    let mut s = sh("cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/shmmni; uname -m");
    s["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1", "kernel.shmmni": "1234"});
    s["linux"]["personality"] = json!({"domain": "LINUX32"});
    let out = run(&s).ok();
    assert_eq!(out, "1\n1234\ni686\n");
    // The host's values are untouched.
    assert_ne!(
        std::fs::read_to_string("/proc/sys/kernel/shmmni").unwrap_or_default(),
        "1234\n"
    );
}

/// SCMP_ACT_NOTIFY through the runtime: the agent at listenerPath receives the listener fd and
/// the container state, and its answer is what the workload sees.
#[test]
fn seccomp_notify_agent_answers_for_the_container() {
    if !root("seccomp_notify_agent_answers_for_the_container") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let sock = dir.path().join("agent.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).expect("bind");
    let agent = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().expect("accept");
        let (fd, state) = nanoclaw_seccomp::notify::recv_listener_fd(&mut conn).expect("recv");
        let req = libseccomp::ScmpNotifReq::receive(fd.as_raw_fd()).expect("notification");
        // EXDEV for the mkdir, as the agent's policy.
        libseccomp::ScmpNotifResp::new_error(req.id, -18, libseccomp::ScmpNotifRespFlags::empty())
            .respond(fd.as_raw_fd())
            .expect("respond");
        (
            state.metadata().clone(),
            *state.pid(),
            state.fds().clone(),
            state.state().id().clone(),
        )
    });
    let mut s = sh("mkdir /tmp/notified 2>&1; echo mkdir=$?");
    s["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": sock,
        "listenerMetadata": "agent-test",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}]
    });
    let out = run(&s).ok();
    let (metadata, pid, fds, id) = agent.join().expect("agent");
    assert_eq!(metadata.as_deref(), Some("agent-test"));
    assert!(
        id.starts_with("esc"),
        "the agent is told the container id, got {id:?}"
    );
    assert!(pid > 1, "the agent gets the host pid, got {pid}");
    assert_eq!(fds, vec!["seccompFd".to_owned()]);
    assert!(out.contains("Invalid cross-device link"), "{out}");
    assert!(out.ends_with("mkdir=1\n"), "{out}");
}

/// CVE-2019-5736: a second container joins the pid namespace of an attacker container and
/// waits (created, not started) as the runtime's image. The attacker tries to open its
/// /proc/<pid>/exe and, after the process is gone, to write the runtime binary through it.
/// With CAP_SYS_PTRACE granted the attacker does get a handle — on the read-only clone of the
/// binary the runtime re-executed from (sealed_exe.rs), which refuses the write; the runtime
/// binary on the host is unchanged either way.
#[test]
fn runtime_binary_cannot_be_overwritten_through_proc_exe() {
    if !root("runtime_binary_cannot_be_overwritten_through_proc_exe") {
        return;
    }
    for with_ptrace in [false, true] {
        attack_runtime_binary(with_ptrace);
    }
}

fn attack_runtime_binary(with_ptrace: bool) {
    // The "host binary": a private copy, so a successful attack could not corrupt the build.
    let bin_dir = tempfile::tempdir().expect("tempdir");
    let bin = bin_dir.path().join("nanoclaw");
    std::fs::copy(NANOCLAW, &bin).expect("copy runtime");
    let original = std::fs::read(&bin).expect("read");
    let shared = tempfile::tempdir().expect("shared");

    let attacker = Bundle::busybox().expect("bundle");
    let script = r#"
        while [ ! -e /shared/go ]; do sleep 0.05; done
        for p in /proc/[0-9]*; do
          n=${p#/proc/}; [ "$n" = 1 ] && continue; [ "$n" = "$$" ] && continue
          # A failed `exec` redirection would end the shell: probe in a subshell first.
          if (exec 3< "$p/exe") 2>/dev/null; then exec 3< "$p/exe"; echo "open $n ok" >> /shared/log
          else echo "open $n denied" >> /shared/log; fi
        done
        echo scanned >> /shared/log
        while [ ! -e /shared/gone ]; do sleep 0.05; done
        if { echo pwned >&3; } 2>/dev/null; then echo write=ok >> /shared/log; else echo write=refused >> /shared/log; fi
        if { echo pwned > /proc/self/fd/3; } 2>/dev/null; then echo reopen=ok >> /shared/log; else echo reopen=refused >> /shared/log; fi
        echo done >> /shared/log
    "#;
    let mut a = sh(script);
    a["mounts"]
        .as_array_mut()
        .expect("mounts")
        .push(json!({"destination": "/shared", "type": "bind", "source": shared.path(), "options": ["rbind", "rw"]}));
    if with_ptrace {
        for set in ["bounding", "effective", "permitted"] {
            a["process"]["capabilities"][set]
                .as_array_mut()
                .expect("caps")
                .push(json!("CAP_SYS_PTRACE"));
        }
        // The profile only lets ptrace-class syscalls through with the capability; regenerate it.
        let mut tmp = a.clone();
        nanoclaw::security::harden_template(&mut tmp);
        a["linux"]["seccomp"] = tmp["linux"]["seccomp"].clone();
    }
    attacker.write_config(&a).expect("config");
    let runtime = Runtime::new(&bin).expect("runtime");
    // Whatever happens below, both containers go (a failed assert must not leave an attacker
    // container polling forever).
    struct Cleanup<'a>(&'a Runtime);
    impl Drop for Cleanup<'_> {
        fn drop(&mut self) {
            for id in ["victim", "attacker"] {
                let _ = self.0.command(["kill", id, "KILL"]).output();
                let _ = self.0.command(["delete", "--force", id]).output();
            }
        }
    }
    let _cleanup = Cleanup(&runtime);
    // Detached, as an engine runs it: afterwards no host process executes the runtime binary
    // (a running one would make the write fail with ETXTBSY and hide the attack).
    let attacker_log = shared.path().join("attacker.err");
    let started = runtime
        .command(["run", "--detach", "--bundle"])
        .arg(attacker.path())
        .arg("attacker")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&attacker_log).expect("log"))
        .status()
        .expect("run attacker");
    assert!(
        started.success(),
        "{}",
        std::fs::read_to_string(&attacker_log).unwrap_or_default()
    );

    // Wait for the attacker's init pid.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let attacker_pid = loop {
        let out = runtime
            .command(["state", "attacker"])
            .output()
            .expect("state");
        if let Ok(v) = serde_json::from_slice::<Value>(&out.stdout) {
            if v["status"] == "running" {
                if let Some(p) = v["pid"].as_i64() {
                    break p;
                }
            }
        }
        assert!(std::time::Instant::now() < deadline, "attacker never ran");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };

    // The victim: created in the attacker's pid namespace, waiting on its exec fifo as the
    // runtime's image.
    let victim = Bundle::busybox().expect("bundle");
    let mut v = sh("true");
    v["linux"]["namespaces"] = json!([
        {"type": "pid", "path": format!("/proc/{attacker_pid}/ns/pid")},
        {"type": "mount"}, {"type": "ipc"}, {"type": "uts"}, {"type": "network"}
    ]);
    victim.write_config(&v).expect("config");
    // The waiting init keeps its stdio: give it files, not pipes `output()` would wait on.
    let create_log = shared.path().join("create.err");
    let created = runtime
        .command(["create", "--bundle"])
        .arg(victim.path())
        .arg("victim")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&create_log).expect("log"))
        .status()
        .expect("create victim");
    assert!(
        created.success(),
        "{}",
        std::fs::read_to_string(&create_log).unwrap_or_default()
    );

    std::fs::write(shared.path().join("go"), "").expect("go");
    let log = shared.path().join("log");
    let wait_for = |needle: &str| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains(needle) {
                return text;
            }
            assert!(std::time::Instant::now() < deadline, "attacker log: {text}");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    };
    let scanned = wait_for("scanned");
    let deleted = runtime
        .command(["delete", "--force", "victim"])
        .output()
        .expect("delete");
    assert!(
        deleted.status.success(),
        "{}",
        String::from_utf8_lossy(&deleted.stderr)
    );
    std::fs::write(shared.path().join("gone"), "").expect("gone");
    let log_text = wait_for("done");

    eprintln!("attacker (CAP_SYS_PTRACE: {with_ptrace}) log:\n{log_text}");
    if with_ptrace {
        // The handle exists, but on a read-only image of the binary.
        assert!(
            scanned.contains(" ok"),
            "with CAP_SYS_PTRACE the exe opens: {scanned}"
        );
        assert!(log_text.contains("write=refused"), "{log_text}");
        assert!(log_text.contains("reopen=refused"), "{log_text}");
    } else {
        // Non-dumpable: the victim's exe cannot even be opened.
        assert!(!scanned.contains(" ok"), "{scanned}");
        assert!(
            scanned.contains("denied"),
            "the victim was visible: {scanned}"
        );
    }
    assert!(
        std::fs::read(&bin).expect("read") == original,
        "the runtime binary on the host was modified"
    );
    let deleted = runtime
        .command(["delete", "--force", "attacker"])
        .output()
        .expect("delete attacker");
    assert!(
        deleted.status.success(),
        "{}",
        String::from_utf8_lossy(&deleted.stderr)
    );
    assert!(
        runtime.leftover_state().is_empty(),
        "{:?}",
        runtime.leftover_state()
    );
    let _ = std::io::stderr().flush();
}
