//! Helpers shared by the nanoclaw integration tests.
#![allow(dead_code)]

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::process::Output;
use std::sync::OnceLock;

use claw_testsupport::bundle::{Bundle, Runtime};
use serde_json::{json, Value};

pub(crate) const NANOCLAW: &str = env!("CARGO_BIN_EXE_nanoclaw");

/// `nanoclaw spec`'s default with the given process args.
pub(crate) fn spec_with_args(args: &[&str]) -> Value {
    let mut spec = nanoclaw::spec::template::default_spec();
    spec["process"]["args"] = json!(args);
    spec
}

/// Shell command in the default spec.
pub(crate) fn sh(script: &str) -> Value {
    spec_with_args(&["sh", "-c", script])
}

pub(crate) struct Ran {
    pub(crate) out: Output,
    pub(crate) bundle: Bundle,
    pub(crate) runtime: Runtime,
}

impl Ran {
    pub(crate) fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.out.stdout).into_owned()
    }
    pub(crate) fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.out.stderr).into_owned()
    }
    pub(crate) fn code(&self) -> Option<i32> {
        self.out.status.code()
    }
    /// Asserts the container exited 0 and returns stdout.
    pub(crate) fn ok(&self) -> String {
        assert_eq!(
            self.code(),
            Some(0),
            "stdout: {}\nstderr: {}",
            self.stdout(),
            self.stderr()
        );
        self.assert_clean();
        self.stdout()
    }
    /// Nothing left under --root and no mount under the bundle.
    pub(crate) fn assert_clean(&self) {
        assert!(
            self.runtime.leftover_state().is_empty(),
            "state left behind: {:?}",
            self.runtime.leftover_state()
        );
        let mounts = claw_testsupport::bundle::mounts_under(self.bundle.path());
        assert!(mounts.is_empty(), "mounts left behind: {mounts:?}");
    }
}

/// Runs `spec` in a fresh busybox bundle as root.
pub(crate) fn run_spec(spec: &Value) -> Ran {
    let bundle = Bundle::busybox().expect("busybox bundle");
    run_in(bundle, spec)
}

pub(crate) fn run_in(bundle: Bundle, spec: &Value) -> Ran {
    bundle.write_config(spec).expect("write config");
    let runtime = Runtime::new(NANOCLAW).expect("runtime");
    // Unique ids: a container without cgroupsPath gets the cgroup `<own>/<id>` (as with runc),
    // shared by every --root, so tests running in parallel must not share an id.
    let id = claw_testsupport::engines::unique_name("t");
    let out = runtime.run(bundle.path(), &id).expect("spawn nanoclaw");
    Ran {
        out,
        bundle,
        runtime,
    }
}

/// Returns false (after a loud skip) unless root.
pub(crate) fn root(test: &str) -> bool {
    claw_testsupport::require_root(test)
}

/// Runs the bundle (its config already written), asserts failure with `expect` in stderr and
/// nothing left behind: no state under --root, no mount under the bundle, no runtime process.
pub(crate) fn refused_in(test: &str, bundle: &Bundle, expect: &str) {
    refused_with_flags(test, bundle, &[], expect)
}

/// [`refused_in`] with extra `run` flags before `--bundle`.
pub(crate) fn refused_with_flags(test: &str, bundle: &Bundle, flags: &[&str], expect: &str) {
    let runtime = Runtime::new(NANOCLAW).unwrap();
    let id = claw_testsupport::engines::unique_name("bad");
    let out = runtime
        .command(["run"])
        .args(flags)
        .arg("--bundle")
        .arg(bundle.path())
        .arg(&id)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{test}: accepted");
    assert!(
        stderr.contains(expect),
        "{test}: stderr {stderr:?} lacks {expect:?}"
    );
    assert!(out.stdout.is_empty(), "{test}: the process ran");
    assert!(
        runtime.leftover_state().is_empty(),
        "{test}: state left: {:?}",
        runtime.leftover_state()
    );
    let mounts = claw_testsupport::bundle::mounts_under(bundle.path());
    assert!(mounts.is_empty(), "{test}: mounts left: {mounts:?}");
    let leaked = runtime_processes(runtime.root());
    assert!(leaked.is_empty(), "{test}: processes left: {leaked:?}");
    let cgroups = leftover_cgroups(runtime.root(), &id);
    assert!(cgroups.is_empty(), "{test}: cgroups left: {cgroups:?}");
}

/// Existing cgroup directories of container `id` run with this --root (the default cgroup
/// name, under any of this process's cgroups in any mounted hierarchy).
pub(crate) fn leftover_cgroups(root: &std::path::Path, id: &str) -> Vec<std::path::PathBuf> {
    let name = nanoclaw::container::cgroup::default_cgroups_path(&root.join(id), id);
    let own: Vec<String> = std::fs::read_to_string("/proc/self/cgroup")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.splitn(3, ':').nth(2).map(str::to_string))
        .collect();
    let mut out = Vec::new();
    for line in std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
    {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        if !matches!(post.split(' ').next(), Some("cgroup" | "cgroup2")) {
            continue;
        }
        let Some(mp) = pre.split(' ').nth(4) else {
            continue;
        };
        for p in &own {
            let dir = std::path::Path::new(mp)
                .join(p.trim_start_matches('/'))
                .join(&name);
            if dir.exists() {
                out.push(dir);
            }
        }
    }
    out
}

/// Pids of live processes started with this --root (the runtime and its cloned init share
/// the runtime's command line).
pub(crate) fn runtime_processes(root: &std::path::Path) -> Vec<i32> {
    let needle = root.as_os_str().as_encoded_bytes();
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if cmd.windows(needle.len()).any(|w| w == needle)
            && claw_testsupport::bundle::pid_alive(pid)
        {
            out.push(pid);
        }
    }
    out
}

/// `create` of `bundle` as `id`, leaving the init waiting on its exec fifo (as the runtime's
/// image); returns the init's pid. The init keeps its stdio, so it gets a file, not a pipe
/// that `output()` would wait on.
pub(crate) fn create_waiting(runtime: &Runtime, bundle: &Bundle, id: &str) -> i64 {
    let log = bundle.path().join(format!("create-{id}.err"));
    let status = runtime
        .command(["create", "--bundle"])
        .arg(bundle.path())
        .arg(id)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .status()
        .expect("create");
    assert!(
        status.success(),
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let state = runtime.command(["state", id]).output().expect("state");
    let state: Value = serde_json::from_slice(&state.stdout).expect("state json");
    state["pid"].as_i64().expect("pid")
}

/// `delete --force id`, then nothing of the runtime's state may be left.
pub(crate) fn delete_leaving_nothing(runtime: &Runtime, id: &str) {
    let out = runtime
        .command(["delete", "--force", id])
        .output()
        .expect("delete");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        runtime.leftover_state().is_empty(),
        "{:?}",
        runtime.leftover_state()
    );
}

/// The static escape probe (tests/escape_probe/probe.rs), built once per test binary with
/// plain `rustc` (std only), so it runs in a busybox rootfs.
pub(crate) fn probe() -> &'static Path {
    static PROBE: OnceLock<PathBuf> = OnceLock::new();
    PROBE.get_or_init(|| {
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("escape-probe");
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/escape_probe/probe.rs");
        let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
        let status = std::process::Command::new(rustc)
            .args([
                "--edition",
                "2021",
                "-C",
                "opt-level=1",
                "-C",
                "panic=abort",
            ])
            .args([
                "-C",
                "target-feature=+crt-static",
                "-C",
                "strip=symbols",
                "-o",
            ])
            .arg(&out)
            .arg(&src)
            .status()
            .expect("run rustc");
        assert!(status.success(), "building the escape probe failed");
        out
    })
}

/// A busybox bundle with the probe at /probe.
pub(crate) fn bundle_with_probe() -> Bundle {
    let bundle = Bundle::busybox().expect("bundle");
    std::fs::copy(probe(), bundle.rootfs().join("probe")).expect("copy probe");
    bundle
}

const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;
const KEYCTL_LINK: libc::c_long = 8;
const KEYCTL_INVALIDATE: libc::c_long = 21;
const KEY_SPEC_USER_KEYRING: libc::c_long = -4;
const KEY_SPEC_SESSION_KEYRING: libc::c_long = -3;

/// Adds a `user` key with `payload` to root's user keyring and arranges for `cmd` to run with
/// a session keyring that links it (so the key is possessed by `cmd`). Returns the serial,
/// which is also appended to `cmd`'s arguments.
pub(crate) fn add_possessed_key_in_child(payload: &str, cmd: &mut Command) -> i64 {
    let desc = std::ffi::CString::new(format!("claw-exec-test-{}", std::process::id())).unwrap();
    let ty = std::ffi::CString::new("user").unwrap();
    // SAFETY: add_key with NUL-terminated type/description and a payload buffer of the given
    // length; returns a serial or -1.
    let serial = unsafe {
        libc::syscall(
            libc::SYS_add_key,
            ty.as_ptr(),
            desc.as_ptr(),
            payload.as_ptr(),
            payload.len(),
            KEY_SPEC_USER_KEYRING,
        )
    };
    assert!(serial > 0, "add_key: {}", std::io::Error::last_os_error());
    cmd.arg(serial.to_string());
    // SAFETY: the closure runs in the forked child before exec and only issues keyctl
    // syscalls with integer arguments.
    unsafe {
        cmd.pre_exec(|| {
            if libc::syscall(
                libc::SYS_keyctl,
                KEYCTL_JOIN_SESSION_KEYRING,
                std::ptr::null::<libc::c_char>(),
            ) < 0
            {
                return Err(std::io::Error::last_os_error());
            }
            if libc::syscall(
                libc::SYS_keyctl,
                KEYCTL_LINK,
                KEY_SPEC_USER_KEYRING,
                KEY_SPEC_SESSION_KEYRING,
            ) < 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    serial
}

pub(crate) fn invalidate_key(serial: i64) {
    // SAFETY: keyctl with integer arguments.
    unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_INVALIDATE, serial) };
}
