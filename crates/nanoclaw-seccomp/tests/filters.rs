//! Installs compiled filters in a child process and observes what the child sees.
//!
//! Each test re-executes this test binary with `--exact <test>` and `NANOCLAW_SECCOMP_SCENARIO`
//! set: the child runs the scenario (install a filter, issue syscalls, print what came back) and
//! the parent asserts on the child's exit status and output. A filter is never installed in the
//! test harness process itself.
//!
//! `getppid` is the guinea pig: it never fails on its own and ignores its arguments, so any
//! error is the filter's doing and the arguments are free for the condition tests.

use std::io::Write;
use std::os::unix::net::UnixListener;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use nanoclaw_seccomp::{compile, notify, profile};
use oci_spec::runtime::{Capability, LinuxSeccomp};
use serde_json::json;

const ENV: &str = "NANOCLAW_SECCOMP_SCENARIO";
const EXDEV: i64 = 18;
const EPERM: i64 = 1;
const ENOSYS: i64 = 38;

fn scenario() -> Option<String> {
    std::env::var(ENV).ok()
}

/// Re-runs test `name` in a child with scenario `arg`.
fn child(name: &str, arg: &str) -> Command {
    let mut cmd = Command::new(std::env::current_exe().expect("current_exe"));
    cmd.args([name, "--exact", "--nocapture", "--test-threads=1", "-q"])
        .env(ENV, arg)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

fn run_child(name: &str, arg: &str) -> Output {
    child(name, arg).output().expect("spawn child")
}

/// Lines the child printed with `report`, without libtest's own output.
fn reports(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("REPORT ").map(str::to_owned))
        .collect()
}

/// Prints one result line with a bare write(2), which every filter here allows.
fn report(line: &str) {
    let text = format!("REPORT {line}\n");
    // SAFETY: writes an owned, initialised buffer of the stated length to fd 1.
    unsafe { libc::write(1, text.as_ptr().cast(), text.len()) };
}

fn exit_now(code: i32) -> ! {
    let _ = std::io::stdout().flush();
    // SAFETY: _exit has no preconditions; it skips atexit handlers that might need syscalls the
    // filter denies.
    unsafe { libc::_exit(code) }
}

/// Calls getppid with explicit argument registers; returns the result or -errno.
fn getppid_with(args: [u64; 2]) -> i64 {
    // SAFETY: getppid takes no arguments and ignores the registers; nothing is dereferenced.
    let r = unsafe { libc::syscall(libc::SYS_getppid, args[0], args[1]) };
    if r < 0 {
        -i64::from(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    } else {
        r
    }
}

/// In the parent (the test itself): true when running as root, else a skip (a failure under CI).
/// These filters are installed without no_new_privs, which needs CAP_SYS_ADMIN. The child
/// re-executed for a scenario runs as the same user and passes through.
fn needs_root(test: &str) -> bool {
    scenario().is_some() || claw_testsupport::require_root(test)
}

fn seccomp(value: serde_json::Value) -> LinuxSeccomp {
    serde_json::from_value(value).expect("test profile is valid OCI JSON")
}

fn install(value: serde_json::Value) {
    let filter = compile(&seccomp(value)).expect("compile");
    filter.install().expect("install");
}

fn check_report(out: &Output, expected: &[&str]) {
    assert!(
        out.status.success(),
        "child failed: {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        reports(out),
        expected,
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn errno_rule_returns_its_errno_ret_and_leaves_other_syscalls_alone() {
    if !needs_root("errno_rule_returns_its_errno_ret_and_leaves_other_syscalls_alone") {
        return;
    }
    if scenario().is_some() {
        let ppid_before = getppid_with([0, 0]);
        install(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
                {"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": EXDEV},
                {"names": ["getpgid"], "action": "SCMP_ACT_ERRNO"}
            ]
        }));
        report(&format!("getppid={}", getppid_with([0, 0])));
        // SAFETY: getpgid(0) only reads the caller's process group.
        let pg = unsafe { libc::getpgid(0) };
        let err = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
        report(&format!("getpgid={pg} errno={err}"));
        // SAFETY: getpid cannot fail.
        let pid = unsafe { libc::getpid() };
        report(&format!(
            "getpid_ok={}",
            pid > 0 && i64::from(pid) != ppid_before
        ));
        exit_now(0);
    }
    let out = run_child(
        "errno_rule_returns_its_errno_ret_and_leaves_other_syscalls_alone",
        "1",
    );
    check_report(
        &out,
        &[
            &format!("getppid={}", -EXDEV),
            &format!("getpgid=-1 errno={EPERM}"),
            "getpid_ok=true",
        ],
    );
}

#[test]
fn default_errno_ret_applies_to_everything_not_allowed() {
    if !needs_root("default_errno_ret_applies_to_everything_not_allowed") {
        return;
    }
    if scenario().is_some() {
        install(json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": 77,
            "syscalls": [
                {"names": ["write", "exit", "exit_group", "munmap", "futex"], "action": "SCMP_ACT_ALLOW"}
            ]
        }));
        report(&format!("getppid={}", getppid_with([0, 0])));
        exit_now(0);
    }
    let out = run_child("default_errno_ret_applies_to_everything_not_allowed", "1");
    check_report(&out, &["getppid=-77"]);
}

#[test]
fn kill_process_ends_the_child_with_sigsys() {
    if !needs_root("kill_process_ends_the_child_with_sigsys") {
        return;
    }
    if scenario().is_some() {
        install(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_KILL_PROCESS"}]
        }));
        report("before");
        getppid_with([0, 0]);
        report("survived");
        exit_now(0);
    }
    let out = run_child("kill_process_ends_the_child_with_sigsys", "1");
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGSYS),
        "status {:?}",
        out.status
    );
    assert_eq!(reports(&out), ["before"]);
}

/// SCMP_ACT_KILL and SCMP_ACT_KILL_THREAD kill the calling thread only: the process lives on
/// and sees the thread vanish from /proc/self/task without reaching the line after the syscall.
#[test]
fn kill_and_kill_thread_end_only_the_calling_thread() {
    if let Some(action) = scenario() {
        use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
        static TID: AtomicI32 = AtomicI32::new(0);
        static REACHED: AtomicBool = AtomicBool::new(false);
        let profile = seccomp(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["getppid"], "action": action}]
        }));
        // Loaded inside the thread: without TSYNC the filter binds the loading thread alone.
        let handle = std::thread::spawn(move || {
            let filter = compile(&profile).expect("compile");
            // SAFETY: gettid has no preconditions.
            TID.store(unsafe { libc::gettid() }, Ordering::SeqCst);
            filter.install().expect("install");
            getppid_with([0, 0]);
            REACHED.store(true, Ordering::SeqCst);
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let tid = TID.load(Ordering::SeqCst);
            if tid != 0 && !std::path::Path::new(&format!("/proc/self/task/{tid}")).exists() {
                break;
            }
            if Instant::now() > deadline {
                report("thread still alive");
                exit_now(1);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        std::mem::forget(handle);
        report(&format!(
            "thread gone, reached={}",
            REACHED.load(Ordering::SeqCst)
        ));
        report(&format!("main getppid ok={}", getppid_with([0, 0]) > 0));
        exit_now(0);
    }
    for action in ["SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD"] {
        let out = run_child("kill_and_kill_thread_end_only_the_calling_thread", action);
        check_report(
            &out,
            &["thread gone, reached=false", "main getppid ok=true"],
        );
    }
}

#[test]
fn trap_delivers_sigsys_naming_the_syscall() {
    if !needs_root("trap_delivers_sigsys_naming_the_syscall") {
        return;
    }
    use std::sync::atomic::{AtomicI32, AtomicI64, Ordering};
    static SIGNO: AtomicI32 = AtomicI32::new(0);
    static CODE: AtomicI32 = AtomicI32::new(0);
    static SYSCALL: AtomicI64 = AtomicI64::new(-1);

    extern "C" fn on_sigsys(signo: i32, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
        SIGNO.store(signo, Ordering::SeqCst);
        // SAFETY: the kernel passes a valid siginfo_t to an SA_SIGINFO handler. For SIGSYS with
        // si_code SYS_SECCOMP the union holds struct { void *call_addr; int syscall; u32 arch; }
        // starting at offset 16 on 64-bit Linux, so `syscall` is the int at byte offset 24.
        unsafe {
            CODE.store((*info).si_code, Ordering::SeqCst);
            let base = info.cast::<u8>();
            let nr = base.add(24).cast::<i32>().read_unaligned();
            SYSCALL.store(i64::from(nr), Ordering::SeqCst);
        }
    }

    if scenario().is_some() {
        // SAFETY: installs a handler that only stores to atomics (async-signal-safe).
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_sigsys as *const () as libc::sighandler_t;
            sa.sa_flags = libc::SA_SIGINFO;
            libc::sigaction(libc::SIGSYS, &sa, std::ptr::null_mut());
        }
        let real_ppid = getppid_with([0, 0]);
        install(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_TRAP"}]
        }));
        let ret = getppid_with([0, 0]);
        report(&format!(
            "signo={} code={} syscall={} executed={}",
            SIGNO.load(Ordering::SeqCst),
            CODE.load(Ordering::SeqCst),
            SYSCALL.load(Ordering::SeqCst),
            ret == real_ppid
        ));
        exit_now(0);
    }
    let out = run_child("trap_delivers_sigsys_naming_the_syscall", "1");
    // SYS_SECCOMP = 1; the trapped syscall is skipped (the real parent pid never comes back).
    check_report(
        &out,
        &[&format!(
            "signo={} code=1 syscall={} executed=false",
            libc::SIGSYS,
            libc::SYS_getppid,
        )],
    );
}

#[test]
fn log_action_does_not_block() {
    if !needs_root("log_action_does_not_block") {
        return;
    }
    if scenario().is_some() {
        let before = getppid_with([0, 0]);
        install(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "flags": ["SECCOMP_FILTER_FLAG_LOG"],
            "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_LOG"}]
        }));
        report(&format!(
            "same={}",
            getppid_with([0, 0]) == before && before > 0
        ));
        exit_now(0);
    }
    let out = run_child("log_action_does_not_block", "1");
    check_report(&out, &["same=true"]);
}

/// (case name, OCI args, probes that must be denied, probes that must pass)
type OperatorCase = (
    &'static str,
    serde_json::Value,
    Vec<[u64; 2]>,
    Vec<[u64; 2]>,
);

fn operator_cases() -> Vec<OperatorCase> {
    vec![
        (
            "NE",
            json!([{"index": 0, "value": 5, "op": "SCMP_CMP_NE"}]),
            vec![[4, 0]],
            vec![[5, 0]],
        ),
        (
            "LT",
            json!([{"index": 0, "value": 5, "op": "SCMP_CMP_LT"}]),
            vec![[4, 0]],
            vec![[5, 0]],
        ),
        (
            "LE",
            json!([{"index": 0, "value": 5, "op": "SCMP_CMP_LE"}]),
            vec![[5, 0]],
            vec![[6, 0]],
        ),
        (
            "EQ",
            json!([{"index": 0, "value": 5, "op": "SCMP_CMP_EQ"}]),
            vec![[5, 0]],
            vec![[4, 0]],
        ),
        (
            "GE",
            json!([{"index": 0, "value": 5, "op": "SCMP_CMP_GE"}]),
            vec![[5, 0]],
            vec![[4, 0]],
        ),
        (
            "GT",
            json!([{"index": 0, "value": 5, "op": "SCMP_CMP_GT"}]),
            vec![[6, 0]],
            vec![[5, 0]],
        ),
        (
            "MASKED_EQ",
            json!([{"index": 0, "value": 0xF0, "valueTwo": 0x30, "op": "SCMP_CMP_MASKED_EQ"}]),
            vec![[0x3F, 0], [0x130, 0]],
            vec![[0x40, 0], [0x0F, 0]],
        ),
        (
            "EQ64",
            json!([{"index": 0, "value": 0x1_0000_0005u64, "op": "SCMP_CMP_EQ"}]),
            vec![[0x1_0000_0005, 0]],
            vec![[5, 0]],
        ),
        (
            "AND",
            json!([
                {"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
                {"index": 1, "value": 2, "op": "SCMP_CMP_EQ"}
            ]),
            vec![[1, 2]],
            vec![[1, 3], [0, 2]],
        ),
        (
            "OR",
            json!([
                {"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
                {"index": 0, "value": 2, "op": "SCMP_CMP_EQ"}
            ]),
            vec![[1, 0], [2, 0]],
            vec![[3, 0]],
        ),
    ]
}

#[test]
fn argument_conditions_with_every_operator() {
    if !needs_root("argument_conditions_with_every_operator") {
        return;
    }
    if let Some(name) = scenario() {
        let (_, args, deny, pass) = operator_cases()
            .into_iter()
            .find(|c| c.0 == name)
            .expect("known case");
        install(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": EXDEV, "args": args}]
        }));
        for probe in deny {
            report(&format!(
                "deny {:?} -> {}",
                probe,
                getppid_with(probe) == -EXDEV
            ));
        }
        for probe in pass {
            report(&format!("pass {:?} -> {}", probe, getppid_with(probe) > 0));
        }
        exit_now(0);
    }
    for (name, _, deny, pass) in operator_cases() {
        let out = run_child("argument_conditions_with_every_operator", name);
        let expected: Vec<String> = deny
            .iter()
            .map(|p| format!("deny {p:?} -> true"))
            .chain(pass.iter().map(|p| format!("pass {p:?} -> true")))
            .collect();
        let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
        assert!(
            out.status.success(),
            "{name}: {:?} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(reports(&out), expected, "operator case {name}");
    }
}

/// TSYNC puts the filter on every thread of the process; without it only the loading thread is
/// confined.
#[test]
fn tsync_confines_threads_that_already_exist() {
    if !needs_root("tsync_confines_threads_that_already_exist") {
        return;
    }
    if let Some(mode) = scenario() {
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let worker = std::thread::spawn(move || {
            go_rx.recv().expect("go");
            getppid_with([0, 0])
        });
        let flags = if mode == "tsync" {
            json!(["SECCOMP_FILTER_FLAG_TSYNC"])
        } else {
            json!([])
        };
        install(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "flags": flags,
            "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": EXDEV}]
        }));
        go_tx.send(()).expect("send");
        let seen = worker.join().expect("join");
        report(&format!(
            "worker={}",
            if seen == -EXDEV { "denied" } else { "allowed" }
        ));
        report(&format!(
            "self={}",
            if getppid_with([0, 0]) == -EXDEV {
                "denied"
            } else {
                "allowed"
            }
        ));
        exit_now(0);
    }
    let out = run_child("tsync_confines_threads_that_already_exist", "tsync");
    check_report(&out, &["worker=denied", "self=denied"]);
    let out = run_child("tsync_confines_threads_that_already_exist", "plain");
    check_report(&out, &["worker=allowed", "self=denied"]);
}

#[test]
fn unknown_syscall_names_are_skipped_and_the_rest_still_applies() {
    if !needs_root("unknown_syscall_names_are_skipped_and_the_rest_still_applies") {
        return;
    }
    let profile = seccomp(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["no_such_syscall_xyz", "getppid", "no_such_syscall_xyz"], "action": "SCMP_ACT_ERRNO", "errnoRet": EXDEV}]
    }));
    if scenario().is_some() {
        compile(&profile)
            .expect("compile")
            .install()
            .expect("install");
        report(&format!("getppid={}", getppid_with([0, 0])));
        exit_now(0);
    }
    let filter = compile(&profile).expect("unknown names are not an error");
    assert_eq!(filter.skipped_syscalls(), ["no_such_syscall_xyz"]);
    assert_eq!(filter.rule_count(), 1);
    let out = run_child(
        "unknown_syscall_names_are_skipped_and_the_rest_still_applies",
        "1",
    );
    check_report(&out, &[&format!("getppid={}", -EXDEV)]);
}

/// SCMP_ACT_NOTIFY end to end: the listener fd and the process state reach the agent at
/// listenerPath, and the agent's answer is what the confined process sees.
#[test]
fn notify_hands_the_listener_to_the_agent_which_answers_the_syscall() {
    if !needs_root("notify_hands_the_listener_to_the_agent_which_answers_the_syscall") {
        return;
    }
    if let Some(path) = scenario() {
        let filter = compile(&seccomp(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "listenerPath": path,
            "listenerMetadata": "tenant=blue",
            "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_NOTIFY"}]
        })))
        .expect("compile");
        let fd = filter.install().expect("install").expect("listener fd");
        let state = notify::process_state(
            oci_spec::runtime::State::default(),
            // SAFETY: getpid cannot fail.
            unsafe { libc::getpid() },
            filter.listener_metadata().map(str::to_owned),
        );
        notify::send_listener_fd(
            filter.listener_path().expect("path"),
            fd.as_fd_ref(),
            &state,
        )
        .expect("send");
        drop(fd);
        report(&format!("getppid={}", getppid_with([0, 0])));
        exit_now(0);
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let sock = dir.path().join("agent.sock");
    let listener = UnixListener::bind(&sock).expect("bind");
    let proc = child(
        "notify_hands_the_listener_to_the_agent_which_answers_the_syscall",
        sock.to_str().expect("utf-8 path"),
    )
    .spawn()
    .expect("spawn");
    let (mut conn, _) = listener.accept().expect("accept");
    let (fd, state) = notify::recv_listener_fd(&mut conn).expect("receive");
    assert_eq!(state.fds(), &["seccompFd".to_owned()]);
    assert_eq!(state.metadata().as_deref(), Some("tenant=blue"));
    assert_eq!(state.pid(), &(proc.id() as i32));
    use std::os::fd::AsRawFd;
    let req = libseccomp::ScmpNotifReq::receive(fd.as_raw_fd()).expect("notification");
    assert_eq!(
        i64::from(req.data.syscall.as_raw_syscall()),
        libc::SYS_getppid
    );
    libseccomp::ScmpNotifResp::new_val(req.id, 4242, libseccomp::ScmpNotifRespFlags::empty())
        .respond(fd.as_raw_fd())
        .expect("respond");
    let out = proc.wait_with_output().expect("wait");
    check_report(&out, &["getppid=4242"]);
}

trait AsFdRef {
    fn as_fd_ref(&self) -> std::os::fd::BorrowedFd<'_>;
}
impl AsFdRef for std::os::fd::OwnedFd {
    fn as_fd_ref(&self) -> std::os::fd::BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(self)
    }
}

/// The default profile: ordinary syscalls pass, the escape-relevant ones fail with the profile's
/// errno. The child runs as root with every capability, so the kernel itself would not say
/// EPERM: arguments are chosen so that without the filter each call would fail differently
/// (ENOENT, EINVAL, EBADF) or succeed.
#[test]
fn default_profile_allows_ordinary_work_and_refuses_escape_syscalls() {
    let caps = [
        Capability::AuditWrite,
        Capability::Kill,
        Capability::NetBindService,
    ];
    if scenario().is_some() {
        // SAFETY: prctl(PR_SET_NO_NEW_PRIVS, 1) only sets a flag on this process.
        unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
        let filter = compile(&profile::default_profile(&caps)).expect("compile default");
        filter.install().expect("install default");
        let errno = |r: i64| {
            if r < 0 {
                std::io::Error::last_os_error().raw_os_error().unwrap_or(0) as i64
            } else {
                0
            }
        };
        // SAFETY: each raw syscall below passes only integers or pointers to valid NUL-terminated
        // strings/buffers that outlive the call; none of them can corrupt this process.
        unsafe {
            report(&format!("getppid_ok={}", getppid_with([0, 0]) > 0));
            let pid = libc::fork();
            if pid == 0 {
                libc::_exit(7);
            }
            let mut status = 0;
            libc::waitpid(pid, &mut status, 0);
            report(&format!("fork_exit={}", libc::WEXITSTATUS(status)));
            let r = libc::syscall(
                libc::SYS_clone,
                libc::CLONE_NEWUSER as u64 | libc::SIGCHLD as u64,
                0,
                0,
                0,
                0,
            );
            if r == 0 {
                libc::_exit(0);
            }
            report(&format!("clone_newuser_errno={}", errno(r)));
            report(&format!(
                "unshare_user_errno={}",
                errno(libc::syscall(libc::SYS_unshare, libc::CLONE_NEWUSER) as i64)
            ));
            report(&format!(
                "unshare_ns_errno={}",
                errno(libc::syscall(libc::SYS_unshare, libc::CLONE_NEWNS) as i64)
            ));
            report(&format!(
                "clone3_errno={}",
                errno(libc::syscall(libc::SYS_clone3, 0usize, 0usize))
            ));
            report(&format!(
                "personality_query_ok={}",
                libc::syscall(libc::SYS_personality, 0xffff_ffffu64) >= 0
            ));
            report(&format!(
                "personality_rie_errno={}",
                errno(libc::syscall(libc::SYS_personality, 0x0040_0000u64))
            ));
            let s = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
            report(&format!("socket_inet_ok={}", s >= 0));
            report(&format!(
                "socket_vsock_errno={}",
                errno(libc::socket(libc::AF_VSOCK, libc::SOCK_STREAM, 0) as i64)
            ));
            let src = c"/nonexistent-src";
            let dst = c"/nonexistent-dst";
            report(&format!(
                "mount_errno={}",
                errno(libc::syscall(
                    libc::SYS_mount,
                    src.as_ptr(),
                    dst.as_ptr(),
                    c"none".as_ptr(),
                    0,
                    0
                ))
            ));
            report(&format!(
                "keyctl_errno={}",
                errno(libc::syscall(libc::SYS_keyctl, 0, -1i64, 0, 0, 0))
            ));
            report(&format!(
                "bpf_errno={}",
                errno(libc::syscall(libc::SYS_bpf, 0, 0, 0))
            ));
            report(&format!(
                "init_module_errno={}",
                errno(libc::syscall(libc::SYS_init_module, 0, 0, c"".as_ptr()))
            ));
            report(&format!(
                "kexec_load_errno={}",
                errno(libc::syscall(libc::SYS_kexec_load, 0, 0, 0, 0))
            ));
            report(&format!(
                "setns_errno={}",
                errno(libc::syscall(libc::SYS_setns, -1, 0))
            ));
        }
        exit_now(0);
    }
    let filter = compile(&profile::default_profile(&caps)).expect("default profile compiles");
    assert!(filter.rule_count() > 300, "rules: {}", filter.rule_count());
    let out = run_child(
        "default_profile_allows_ordinary_work_and_refuses_escape_syscalls",
        "1",
    );
    check_report(
        &out,
        &[
            "getppid_ok=true",
            "fork_exit=7",
            "clone_newuser_errno=1",
            "unshare_user_errno=1",
            "unshare_ns_errno=1",
            &format!("clone3_errno={ENOSYS}"),
            "personality_query_ok=true",
            "personality_rie_errno=1",
            "socket_inet_ok=true",
            "socket_vsock_errno=1",
            "mount_errno=1",
            "keyctl_errno=1",
            "bpf_errno=1",
            "init_module_errno=1",
            "kexec_load_errno=1",
            "setns_errno=1",
        ],
    );
}

/// With CAP_SYS_ADMIN granted the profile lets namespace creation through (the kernel decides).
#[test]
fn default_profile_with_sys_admin_allows_unshare() {
    if !needs_root("default_profile_with_sys_admin_allows_unshare") {
        return;
    }
    let caps = [Capability::SysAdmin];
    if scenario().is_some() {
        // SAFETY: see default_profile_allows_ordinary_work_and_refuses_escape_syscalls.
        unsafe {
            libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
            compile(&profile::default_profile(&caps))
                .expect("compile")
                .install()
                .expect("install");
            let r = libc::syscall(libc::SYS_unshare, libc::CLONE_NEWUTS);
            report(&format!("unshare_uts={r}"));
        }
        exit_now(0);
    }
    let out = run_child("default_profile_with_sys_admin_allows_unshare", "1");
    check_report(&out, &["unshare_uts=0"]);
}
