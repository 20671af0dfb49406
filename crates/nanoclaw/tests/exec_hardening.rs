//! The attacks on `exec` and on the caller's terminal, each performed from inside a container
//! and each asserted to fail (ARCHITECTURE.md's escape table points here):
//!
//! * a root process inside races to ptrace the runtime's exec child before its execve;
//! * TIOCSTI/TIOCLINUX on the caller's terminal, from `run` and from `exec` started under a
//!   real pty that is the caller's controlling terminal;
//! * a key in host root's user keyring, possessed through the caller's session keyring;
//! * `exec --cwd /proc/self/fd/N` with a directory fd of the host leaked (or preserved);
//! * and what must keep working: exec after the bundle's config.json changed (the snapshot),
//!   the private state records, `--preserve-fds`.

use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use claw_testsupport::bundle::{Bundle, Runtime};
use serde_json::{json, Value};

mod common;
use common::{add_possessed_key_in_child, bundle_with_probe, invalidate_key, NANOCLAW};

fn root(test: &str) -> bool {
    claw_testsupport::require_root(test)
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A container from `nanoclaw spec`'s defaults running `args`, created and started (detached).
struct Running {
    runtime: Runtime,
    bundle: Bundle,
    id: String,
}

impl Running {
    fn start(bundle: Bundle, spec: &Value, id: &str) -> Self {
        bundle.write_config(spec).expect("write config");
        let runtime = Runtime::new(NANOCLAW).expect("runtime");
        // The detached container keeps the stdio it is given: a file, so nothing waits on it.
        let log = tempfile::tempfile().expect("log file");
        let status = runtime
            .command(["run", "--detach", "--bundle"])
            .arg(bundle.path())
            .arg(id)
            .stdout(Stdio::null())
            .stderr(log.try_clone().expect("dup"))
            .status()
            .expect("spawn nanoclaw run -d");
        let mut err = String::new();
        let _ = (&log).read_to_string(&mut err);
        assert!(status.success(), "run -d: {err}");
        Self {
            runtime,
            bundle,
            id: id.to_string(),
        }
    }

    fn exec(&self, args: &[&str]) -> Output {
        self.runtime
            .command(["exec"])
            .args(args)
            .output()
            .expect("spawn nanoclaw exec")
    }

    fn state_dir(&self) -> std::path::PathBuf {
        self.runtime.root().join(&self.id)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self
            .runtime
            .command(["delete", "--force", &self.id])
            .output();
    }
}

fn spec(args: &[&str]) -> Value {
    let mut s = nanoclaw::spec::template::default_spec();
    s["process"]["args"] = json!(args);
    s["root"]["readonly"] = json!(false);
    s
}

/// A racing attacker (root in the container, ptrace allowed by the default profile) attaches
/// to every process that appears while 50 `nanoclaw exec`s run: it must never catch one
/// before execve (the runtime's exec child is non-dumpable from fork to execve), and it must
/// catch the exec'd workloads after execve (proof the attacker was able to attach at all).
#[test]
fn ptrace_race_against_fifty_execs_never_catches_the_exec_child() {
    if !root("ptrace_race_against_fifty_execs_never_catches_the_exec_child") {
        return;
    }
    let bundle = bundle_with_probe();
    let rootfs = bundle.rootfs();
    let c = Running::start(bundle, &spec(&["/probe", "ptrace-race", "sleep"]), "race");
    for i in 0..50 {
        let out = c.exec(&[&c.id, "sleep", "0.1"]);
        assert!(out.status.success(), "exec {i}: {}", text(&out));
    }
    std::fs::write(rootfs.join("stop-race"), b"").expect("stop the attacker");
    let deadline = Instant::now() + Duration::from_secs(20);
    let report = loop {
        if let Ok(r) = std::fs::read_to_string(rootfs.join("race.out")) {
            break r;
        }
        assert!(Instant::now() < deadline, "the attacker never reported");
        std::thread::sleep(Duration::from_millis(20));
    };
    let field = |k: &str| -> u32 {
        report
            .split_whitespace()
            .find_map(|f| f.strip_prefix(&format!("{k}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{k} in {report}"))
    };
    eprintln!("ptrace race: {report}");
    assert_eq!(field("wins"), 0, "attached before execve: {report}");
    assert!(
        field("after_exec") >= 10,
        "the attacker must have been able to attach to exec'd workloads: {report}"
    );
}

/// A pty pair whose slave becomes the controlling terminal of the spawned command, as an
/// operator's interactive shell session would be.
struct Pty {
    master: OwnedFd,
    slave: OwnedFd,
}

impl Pty {
    fn open() -> Self {
        let (mut m, mut s) = (0, 0);
        // SAFETY: openpty writes two fds into the given ints; name/termios/winsize may be null.
        let r = unsafe {
            libc::openpty(
                &mut m,
                &mut s,
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        assert_eq!(r, 0, "openpty: {}", std::io::Error::last_os_error());
        // SAFETY: openpty returned two fresh fds that nothing else owns.
        let (master, slave) = unsafe { (OwnedFd::from_raw_fd(m), OwnedFd::from_raw_fd(s)) };
        // Raw mode: any byte TIOCSTI pushes is readable at once from the slave.
        // SAFETY: termios is plain data filled by tcgetattr before use.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            libc::tcgetattr(slave.as_raw_fd(), &mut t);
            libc::cfmakeraw(&mut t);
            libc::tcsetattr(slave.as_raw_fd(), libc::TCSANOW, &t);
        }
        Self { master, slave }
    }

    /// Runs `cmd` in a new session whose controlling terminal is the slave (stdio too) and
    /// returns its exit code and everything written to the terminal.
    fn run(&self, cmd: Command) -> (Option<i32>, String) {
        let status = self
            .spawn(cmd)
            .wait()
            .expect("wait for the command under the pty");
        (status.code(), drain(&self.master))
    }

    /// Starts `cmd` in a new session whose controlling terminal is the slave (stdio too).
    fn spawn(&self, mut cmd: Command) -> std::process::Child {
        let slave = self.slave.as_raw_fd();
        // SAFETY: the closure runs in the forked child before exec and only calls
        // async-signal-safe functions (setsid, ioctl, dup2) on fds it owns.
        unsafe {
            cmd.pre_exec(move || {
                libc::setsid();
                if libc::ioctl(slave, libc::TIOCSCTTY, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                for fd in 0..3 {
                    libc::dup2(slave, fd);
                }
                Ok(())
            });
        }
        cmd.stdin(Stdio::inherit())
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn under the pty")
    }

    /// Bytes waiting in the terminal's input queue: what the operator's shell would read next.
    fn pending_input(&self) -> String {
        drain(&self.slave)
    }
}

fn drain(fd: &OwnedFd) -> String {
    let dup = fd.try_clone().expect("dup");
    let mut f = std::fs::File::from(dup);
    // SAFETY: F_SETFL O_NONBLOCK on an fd this process owns.
    unsafe {
        let fl = libc::fcntl(f.as_raw_fd(), libc::F_GETFL);
        libc::fcntl(f.as_raw_fd(), libc::F_SETFL, fl | libc::O_NONBLOCK);
    }
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match f.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn tiocsti_allowed_by_kernel() -> bool {
    std::fs::read_to_string("/proc/sys/dev/tty/legacy_tiocsti")
        .map(|v| v.trim() == "1")
        .unwrap_or(true)
}

fn assert_terminal_untouched(what: &str, screen: &str, pty: &Pty) {
    for fd in 0..3 {
        assert!(
            screen.contains(&format!("isatty-fd{fd}: no")),
            "{what}: fd {fd} inside must not be the caller's terminal: {screen}"
        );
        assert!(
            !screen.contains(&format!("tiocsti-fd{fd}: ok")),
            "{what}: TIOCSTI on fd {fd} worked: {screen}"
        );
        assert!(
            !screen.contains(&format!("tioclinux-fd{fd}: ok")),
            "{what}: TIOCLINUX on fd {fd} worked: {screen}"
        );
    }
    let injected = pty.pending_input();
    assert!(
        !injected.contains("INJECTED"),
        "{what}: the caller's shell would run {injected:?}"
    );
}

/// `run` with process.terminal false, started from an interactive terminal: the container
/// sees pipes, not the terminal, and nothing reaches the terminal's input queue; output still
/// arrives through the relay.
#[test]
fn run_under_a_terminal_gives_the_container_pipes_not_the_terminal() {
    if !root("run_under_a_terminal_gives_the_container_pipes_not_the_terminal") {
        return;
    }
    assert!(
        tiocsti_allowed_by_kernel(),
        "this host's kernel refuses TIOCSTI outright (dev.tty.legacy_tiocsti=0): the attack \
         cannot be performed here"
    );
    let bundle = bundle_with_probe();
    let mut s = spec(&["/probe", "isatty", "tiocsti", "tioclinux"]);
    // No seccomp: the ioctls must be stopped by what the container holds, not by a filter.
    s["linux"].as_object_mut().expect("linux").remove("seccomp");
    bundle.write_config(&s).expect("config");
    let runtime = Runtime::new(NANOCLAW).expect("runtime");
    let pty = Pty::open();
    let mut cmd = Command::new(NANOCLAW);
    cmd.arg("--root")
        .arg(runtime.root())
        .args(["run", "--bundle"])
        .arg(bundle.path())
        .arg("tty-run");
    let (code, screen) = pty.run(cmd);
    assert_eq!(code, Some(0), "{screen}");
    assert!(
        screen.contains("isatty-fd1: no"),
        "relayed output: {screen}"
    );
    assert_terminal_untouched("run", &screen, &pty);
    assert!(runtime.leftover_state().is_empty());
}

/// The same attack through `exec` into a running container.
#[test]
fn exec_under_a_terminal_gives_the_process_pipes_not_the_terminal() {
    if !root("exec_under_a_terminal_gives_the_process_pipes_not_the_terminal") {
        return;
    }
    assert!(tiocsti_allowed_by_kernel(), "dev.tty.legacy_tiocsti=0 here");
    let mut s = spec(&["sleep", "100"]);
    s["linux"].as_object_mut().expect("linux").remove("seccomp");
    let c = Running::start(bundle_with_probe(), &s, "tty-exec");
    let pty = Pty::open();
    let mut cmd = Command::new(NANOCLAW);
    cmd.arg("--root").arg(c.runtime.root()).args([
        "exec",
        &c.id,
        "/probe",
        "isatty",
        "tiocsti",
        "tioclinux",
    ]);
    let (code, screen) = pty.run(cmd);
    assert_eq!(code, Some(0), "{screen}");
    assert_terminal_untouched("exec", &screen, &pty);
}

/// `exec -d` from a terminal: nobody relays, so the process gets /dev/null, not the terminal.
#[test]
fn detached_exec_from_a_terminal_gets_dev_null() {
    if !root("detached_exec_from_a_terminal_gets_dev_null") {
        return;
    }
    let c = Running::start(bundle_with_probe(), &spec(&["sleep", "100"]), "tty-execd");
    let pty = Pty::open();
    let mut cmd = Command::new(NANOCLAW);
    cmd.arg("--root").arg(c.runtime.root()).args([
        "exec",
        "-d",
        &c.id,
        "sh",
        "-c",
        "{ readlink /proc/self/fd/0; readlink /proc/self/fd/2; } > /fds.tmp; mv /fds.tmp /fds.out",
    ]);
    let (code, screen) = pty.run(cmd);
    assert_eq!(code, Some(0), "{screen}");
    let path = c.bundle.rootfs().join("fds.out");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "detached exec never ran: {screen} {:?}",
            std::fs::read_dir(c.bundle.rootfs())
                .map(|d| d.flatten().map(|e| e.file_name()).collect::<Vec<_>>())
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let fds = std::fs::read_to_string(&path).expect("fds.out");
    assert_eq!(fds, "/dev/null\n/dev/null\n", "{screen}");
}

/// A key in host root's user keyring, possessed by the caller through its session keyring
/// (as after a login): the caller can read it, an exec'd process must not (it gets a new
/// session keyring, like the init), whatever seccomp allows.
#[test]
fn exec_cannot_read_a_key_the_caller_possesses() {
    if !root("exec_cannot_read_a_key_the_caller_possesses") {
        return;
    }
    let mut s = spec(&["sleep", "100"]);
    // As under podman's profile, keyctl is allowed: only the keyring stands in the way.
    s["linux"].as_object_mut().expect("linux").remove("seccomp");
    let c = Running::start(bundle_with_probe(), &s, "keyring");
    let payload = format!("host-secret-{}", std::process::id());
    let mut cmd = c.runtime.command(["exec", &c.id, "/probe", "keyread"]);
    // The exec runs from a child that joined a fresh session keyring linking root's user
    // keyring and added the key there; the serial is passed as the probe's argument by a
    // wrapper shell that reads it from the first line the child prints.
    let serial = add_possessed_key_in_child(&payload, &mut cmd);
    let out = cmd.output().expect("exec");
    invalidate_key(serial);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !stdout.contains(&payload),
        "the exec'd process read the caller's key: {}",
        text(&out)
    );
    assert!(
        stdout.contains("keyread: errno=13") || stdout.contains("keyread: errno=126"),
        "expected EACCES/ENOKEY: {}",
        text(&out)
    );
}

/// Without a user namespace, uid 0 inside has host root's user keyring, which the kernel
/// treats as possessed by every uid-0 process: no keyring join can hide it (runc neither).
/// The default profile denies keyctl/add_key/request_key, so an exec'd process under it
/// cannot search it; with keyctl allowed (podman's profile) only a user namespace helps.
#[test]
fn default_profile_keeps_host_roots_user_keyring_out_of_reach() {
    if !root("default_profile_keeps_host_roots_user_keyring_out_of_reach") {
        return;
    }
    let c = Running::start(bundle_with_probe(), &spec(&["sleep", "100"]), "userkeyring");
    let payload = format!("user-keyring-{}", std::process::id());
    let desc = format!("claw-exec-test-{}", std::process::id());
    let mut cmd = c
        .runtime
        .command(["exec", &c.id, "/probe", "keysearch-user", &desc]);
    let serial = add_possessed_key_in_child(&payload, &mut cmd);
    let out = cmd.output().expect("exec");
    invalidate_key(serial);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains(&payload), "{}", text(&out));
    assert!(
        stdout.contains("keysearch-user: errno=1"),
        "EPERM: {}",
        text(&out)
    );
}

/// The control for the keyring test: the same child setup lets a host process read the key,
/// so the test above fails for the right reason only.
#[test]
fn the_key_is_readable_by_the_caller_itself() {
    if !root("the_key_is_readable_by_the_caller_itself") {
        return;
    }
    let payload = format!("control-{}", std::process::id());
    let bundle = bundle_with_probe();
    let mut cmd = Command::new(bundle.rootfs().join("probe"));
    cmd.arg("keyread");
    let serial = add_possessed_key_in_child(&payload, &mut cmd);
    let out = cmd.output().expect("probe on the host");
    invalidate_key(serial);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&payload),
        "{}",
        text(&out)
    );
}

/// `cmd` inherits `raw` as its fd 3 (dup2 clears close-on-exec), as a caller leaking or
/// preserving an fd would pass it.
fn inherit_as_fd3(cmd: &mut Command, raw: std::os::fd::RawFd) {
    // SAFETY: dup2 onto fd 3 in the forked child, before exec; async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(raw, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// CVE-2024-21626 through exec: a directory fd of the host leaked to the runtime, named as
/// the cwd. Not preserved: the exec child closed it before joining, so the path does not
/// resolve. Preserved on purpose (`--preserve-fds`): the cwd resolves outside the container's
/// root and the check after chdir refuses it. Either way nothing runs on the host's tree.
#[test]
fn exec_cwd_through_a_leaked_host_directory_fd_is_refused() {
    if !root("exec_cwd_through_a_leaked_host_directory_fd_is_refused") {
        return;
    }
    let c = Running::start(
        Bundle::busybox().expect("bundle"),
        &spec(&["sleep", "100"]),
        "cwdfd",
    );
    let host_dir = tempfile::tempdir().expect("tmp");
    std::fs::write(host_dir.path().join("HOST-MARKER"), b"x").expect("marker");
    for preserve in [false, true] {
        let dir = std::fs::File::open(host_dir.path()).expect("open dir");
        let raw = dir.as_raw_fd();
        let mut cmd = c.runtime.command(["exec"]);
        if preserve {
            cmd.args(["--preserve-fds", "1"]);
        }
        inherit_as_fd3(&mut cmd, raw);
        let out = cmd
            .args(["--cwd", "/proc/self/fd/3", &c.id, "ls", "-a"])
            .output()
            .expect("exec");
        drop(dir);
        assert!(
            !out.status.success(),
            "preserve={preserve}: exec must fail: {}",
            text(&out)
        );
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains("HOST-MARKER"),
            "preserve={preserve}: listed the host directory: {}",
            text(&out)
        );
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("process.cwd"),
            "preserve={preserve}: the error names the cwd: {}",
            text(&out)
        );
    }
    // The container is unharmed and exec still works.
    let ok = c.exec(&[&c.id, "true"]);
    assert!(ok.status.success(), "{}", text(&ok));
}

/// exec plans from the config validated at create: an edit of the bundle's config.json
/// afterwards (here: a different environment and a uid) changes nothing for exec'd processes.
#[test]
fn exec_uses_the_config_snapshot_taken_at_create() {
    if !root("exec_uses_the_config_snapshot_taken_at_create") {
        return;
    }
    let mut s = spec(&["sleep", "100"]);
    s["process"]["env"] = json!(["PATH=/bin", "WHICH=original"]);
    let c = Running::start(Bundle::busybox().expect("bundle"), &s, "snapshot");
    let mut edited = s.clone();
    edited["process"]["env"] = json!(["PATH=/bin", "WHICH=edited"]);
    edited["process"]["user"] = json!({"uid": 1234, "gid": 1234});
    c.bundle.write_config(&edited).expect("edit config");
    let out = c.exec(&[&c.id, "sh", "-c", "echo $WHICH $(id -u)"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "original 0\n");
}

/// The state records are the container owner's only: dirs 0700, files 0600 (the hooks record
/// carries hook environments, which can hold tokens).
#[test]
fn state_records_are_private() {
    if !root("state_records_are_private") {
        return;
    }
    let mut s = spec(&["sleep", "100"]);
    s["hooks"] = json!({"poststop": [{"path": "/bin/true", "env": ["TOKEN=secret"]}]});
    let c = Running::start(Bundle::busybox().expect("bundle"), &s, "private");
    let dir = c.state_dir();
    let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700, "{}", dir.display());
    let mut files = 0;
    for e in std::fs::read_dir(&dir).expect("read state dir").flatten() {
        let p = e.path();
        if p.is_file() {
            files += 1;
            assert_eq!(mode(&p), 0o600, "{}", p.display());
        }
    }
    assert!(files >= 3, "state.json, config.json, hooks.json expected");
}

/// `--preserve-fds` still hands the caller's fds to the exec'd process.
#[test]
fn exec_preserve_fds_still_passes_the_fd() {
    if !root("exec_preserve_fds_still_passes_the_fd") {
        return;
    }
    let c = Running::start(
        Bundle::busybox().expect("bundle"),
        &spec(&["sleep", "100"]),
        "presfd",
    );
    let (r, w) = nix::unistd::pipe().expect("pipe");
    let raw = w.as_raw_fd();
    let mut cmd = c.runtime.command([
        "exec",
        "--preserve-fds",
        "1",
        &c.id,
        "sh",
        "-c",
        "echo through-fd3 >&3",
    ]);
    inherit_as_fd3(&mut cmd, raw);
    let out = cmd.output().expect("exec");
    drop(w);
    assert!(out.status.success(), "{}", text(&out));
    let mut got = String::new();
    std::fs::File::from(r)
        .read_to_string(&mut got)
        .expect("read pipe");
    assert_eq!(got, "through-fd3\n");
}

/// A process left behind that writes without end (`yes &`) must not keep a foreground exec
/// relaying after the exec'd process exited: exec copies what was queued, then returns.
#[test]
fn a_background_writer_cannot_keep_exec_running() {
    if !root("a_background_writer_cannot_keep_exec_running") {
        return;
    }
    let c = Running::start(
        Bundle::busybox().expect("bundle"),
        &spec(&["sleep", "100"]),
        "bgwriter",
    );
    let pty = Pty::open();
    // The terminal's reader keeps up (as an operator's terminal does).
    let reader_fd = pty.master.try_clone().expect("dup master");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop_reader = stop.clone();
    let reader = std::thread::spawn(move || {
        let mut f = std::fs::File::from(reader_fd);
        let mut buf = [0u8; 65536];
        while !stop_reader.load(std::sync::atomic::Ordering::Relaxed) {
            if matches!(f.read(&mut buf), Ok(0) | Err(_)) {
                break;
            }
        }
    });
    let mut cmd = Command::new(NANOCLAW);
    cmd.arg("--root").arg(c.runtime.root()).args([
        "exec",
        &c.id,
        "sh",
        "-c",
        "yes & sleep 1; exit 3",
    ]);
    let started = Instant::now();
    let mut child = pty.spawn(cmd);
    let code = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st.code();
        }
        if started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("exec still relaying 30 s after its process exited");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    drop(c); // delete --force ends `yes`
    drop(pty); // the slave closes: the reader's read returns EIO
    let _ = reader.join();
    assert_eq!(code, Some(3));
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
}
