//! OCI lifecycle hooks (runtime spec, config.md "POSIX-platform Hooks").
//!
//! Each hook is a host (or, for `createContainer`/`startContainer`, container) program run with
//! the container's state JSON on its stdin, exactly its own `args` (args\[0\] is argv\[0\]) and
//! exactly its own `env` (nothing of the runtime's environment leaks into it; a `startContainer`
//! hook without `env` gets the container process's environment, as in runc and youki). A hook that does not
//! finish within `timeout` seconds is killed with SIGKILL and counts as failed.
//!
//! What a failure means depends on the hook ([`HookKind::failure_is_fatal`]):
//! `prestart`, `createRuntime`, `createContainer`, `startContainer` and (runtime-spec 1.3)
//! `poststart` failures are errors (the caller stops the container and continues with deletion);
//! `poststop` failures are logged as warnings and the remaining hooks still run.
//!
//! Where each kind runs is the caller's business (the container init runs `createContainer` and
//! `startContainer` inside the container's namespaces); this module only runs the programs.

use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use oci_spec::runtime::{Hook, Hooks};

/// At most this much of a hook's combined stdout/stderr is kept for the error message.
const OUTPUT_KEEP: usize = 4096;

/// The six hook points of the runtime spec, in lifecycle order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HookKind {
    Prestart,
    CreateRuntime,
    CreateContainer,
    StartContainer,
    Poststart,
    Poststop,
}

impl HookKind {
    /// The name used in config.json (and in the `features` output).
    pub fn name(self) -> &'static str {
        match self {
            HookKind::Prestart => "prestart",
            HookKind::CreateRuntime => "createRuntime",
            HookKind::CreateContainer => "createContainer",
            HookKind::StartContainer => "startContainer",
            HookKind::Poststart => "poststart",
            HookKind::Poststop => "poststop",
        }
    }

    /// Every kind, in lifecycle order.
    pub const ALL: [HookKind; 6] = [
        HookKind::Prestart,
        HookKind::CreateRuntime,
        HookKind::CreateContainer,
        HookKind::StartContainer,
        HookKind::Poststart,
        HookKind::Poststop,
    ];

    /// True when the spec makes a failure of this hook an error of the operation (the container
    /// is then stopped and deleted); false when the runtime must only log a warning and go on.
    pub fn failure_is_fatal(self) -> bool {
        // runtime-spec 1.3: a failing poststart hook MUST generate an error and stop the
        // container (1.0-1.2 made it a warning).
        !matches!(self, HookKind::Poststop)
    }

    /// The hooks of this kind configured in `hooks` (empty when none).
    #[allow(deprecated)] // prestart is deprecated in the spec but still honoured, like runc does.
    /// True when the config has prestart or createRuntime hooks: the runtime runs them while
    /// the init waits between its mounts and pivot_root (sync.rs `Mounted`/`HooksDone`).
    pub fn runtime_hooks_before_pivot(hooks: Option<&Hooks>) -> bool {
        hooks.is_some_and(|h| {
            !HookKind::Prestart.select(h).is_empty()
                || !HookKind::CreateRuntime.select(h).is_empty()
        })
    }

    pub fn select(self, hooks: &Hooks) -> &[Hook] {
        let list = match self {
            HookKind::Prestart => hooks.prestart(),
            HookKind::CreateRuntime => hooks.create_runtime(),
            HookKind::CreateContainer => hooks.create_container(),
            HookKind::StartContainer => hooks.start_container(),
            HookKind::Poststart => hooks.poststart(),
            HookKind::Poststop => hooks.poststop(),
        };
        list.as_deref().unwrap_or(&[])
    }
}

/// Errors of validating or running a hook. `field` names the hook in config.json terms,
/// e.g. `hooks.createRuntime[1]`.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("{field}.path: {path:?} is not an absolute path")]
    RelativePath { field: String, path: PathBuf },
    #[error("hooks record {path:?}: {source}")]
    Record {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{field}.timeout: {timeout} must be greater than zero")]
    BadTimeout { field: String, timeout: i64 },
    #[error("{field}: cannot start {path:?}: {source}")]
    Spawn {
        field: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{field}: writing the state to the hook's stdin: {source}")]
    Stdin {
        field: String,
        source: std::io::Error,
    },
    #[error("{field}: waiting for {path:?}: {source}")]
    Wait {
        field: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{field}: {path:?} timed out after {timeout}s and was killed; output: {output:?}")]
    TimedOut {
        field: String,
        path: PathBuf,
        timeout: i64,
        output: String,
    },
    #[error("{field}: {path:?} failed ({status}); output: {output:?}")]
    Failed {
        field: String,
        path: PathBuf,
        status: std::process::ExitStatus,
        output: String,
    },
}

/// The OCI state a hook reads on stdin (ociVersion, id, status, pid, bundle, annotations):
/// the one builder for every hook, from the plan at create or from the saved state later.
#[derive(Debug, Clone, Copy)]
pub struct HookState<'a> {
    oci_version: &'a str,
    id: &'a str,
    pid: Option<i32>,
    bundle: &'a std::path::Path,
    annotations: Option<&'a std::collections::HashMap<String, String>>,
}

impl<'a> HookState<'a> {
    /// During `create`, from the validated config; `pid` as the hook's namespace sees it.
    pub fn of_plan(plan: &'a crate::spec::Plan, id: &'a str, pid: Option<i32>) -> Self {
        HookState {
            oci_version: plan.spec.version(),
            id,
            pid,
            bundle: &plan.bundle,
            annotations: plan.spec.annotations().as_ref(),
        }
    }

    /// After `create`, from the container's saved state.
    pub fn of_record(st: &'a crate::container::state::State) -> Self {
        HookState {
            oci_version: &st.oci_version,
            id: &st.id,
            pid: st.pid,
            bundle: &st.bundle,
            annotations: Some(&st.annotations),
        }
    }

    /// The JSON for `status`; a stopped container has no pid.
    pub fn json(&self, status: &str) -> Vec<u8> {
        let mut v = serde_json::json!({
            "ociVersion": self.oci_version,
            "id": self.id,
            "status": status,
            "bundle": self.bundle,
        });
        if let Some(pid) = self.pid.filter(|_| status != "stopped") {
            v["pid"] = pid.into();
        }
        if let Some(a) = self.annotations.filter(|a| !a.is_empty()) {
            v["annotations"] = serde_json::json!(a);
        }
        v.to_string().into_bytes()
    }
}

/// Name of the file in the state dir that keeps the hooks for `start` and `delete`, so that
/// poststart/poststop do not depend on the bundle still being there.
pub const RECORD: &str = "hooks.json";

/// Records `hooks` in the container's state dir.
pub fn save_record(state_dir: &std::path::Path, hooks: &Hooks) -> Result<(), HookError> {
    let path = state_dir.join(RECORD);
    let bytes = serde_json::to_vec(hooks).map_err(|e| HookError::Record {
        path: path.clone(),
        source: std::io::Error::other(e),
    })?;
    // 0600: hook environments can hold tokens.
    crate::container::state::write_private_record(state_dir, RECORD, &bytes)
        .map_err(|(path, source)| HookError::Record { path, source })
}

/// The recorded hooks, if any (an unreadable record is logged and treated as none: it can only
/// lose poststart/poststop warnings-only hooks).
pub fn load_record(state_dir: &std::path::Path) -> Option<Hooks> {
    let path = state_dir.join(RECORD);
    let bytes = std::fs::read(&path).ok()?;
    match serde_json::from_slice(&bytes) {
        Ok(h) => Some(h),
        Err(e) => {
            log::warn!("{}: unreadable hooks record: {e}", path.display());
            None
        }
    }
}

/// Checks every hook in `hooks` before anything is created: absolute path and a positive timeout.
pub fn validate(hooks: &Hooks) -> Result<(), HookError> {
    for kind in HookKind::ALL {
        for (i, hook) in kind.select(hooks).iter().enumerate() {
            let field = field_name(kind, i);
            if !hook.path().is_absolute() {
                return Err(HookError::RelativePath {
                    field,
                    path: hook.path().clone(),
                });
            }
            if let Some(t) = hook.timeout() {
                if t <= 0 {
                    return Err(HookError::BadTimeout { field, timeout: t });
                }
            }
        }
    }
    Ok(())
}

/// Runs the hooks of `kind` in order with `state_json` on stdin.
///
/// For a kind whose failure is fatal the first failure stops the sequence and is returned. For
/// `poststop` every hook runs; each failure is logged as a warning and `Ok` is returned, as the
/// spec requires.
pub fn run_hooks(
    kind: HookKind,
    hooks: Option<&Hooks>,
    state_json: &[u8],
) -> Result<(), HookError> {
    run_hooks_with_env(kind, hooks, state_json, None)
}

/// [`run_hooks`] where a hook without an `env` field gets `default_env` (startContainer hooks
/// get the container process's environment, as runc and youki give them).
pub fn run_hooks_with_env(
    kind: HookKind,
    hooks: Option<&Hooks>,
    state_json: &[u8],
    default_env: Option<&[String]>,
) -> Result<(), HookError> {
    let Some(hooks) = hooks else { return Ok(()) };
    for (i, hook) in kind.select(hooks).iter().enumerate() {
        let field = field_name(kind, i);
        if let Err(e) = run_one_with_env(&field, hook, state_json, default_env) {
            if kind.failure_is_fatal() {
                return Err(e);
            }
            log::warn!(
                "{e} (the spec makes a {} hook failure a warning only)",
                kind.name()
            );
        }
    }
    Ok(())
}

fn field_name(kind: HookKind, index: usize) -> String {
    format!("hooks.{}[{index}]", kind.name())
}

/// Runs one hook to completion (or until its timeout).
pub fn run_one(field: &str, hook: &Hook, state_json: &[u8]) -> Result<(), HookError> {
    run_one_with_env(field, hook, state_json, None)
}

/// [`run_one`]; `default_env` is the environment of a hook whose `env` is absent (an empty
/// `env` stays empty).
pub fn run_one_with_env(
    field: &str,
    hook: &Hook,
    state_json: &[u8],
    default_env: Option<&[String]>,
) -> Result<(), HookError> {
    let path = hook.path().clone();
    if !path.is_absolute() {
        return Err(HookError::RelativePath {
            field: field.to_string(),
            path,
        });
    }
    let timeout = match hook.timeout() {
        Some(t) if t <= 0 => {
            return Err(HookError::BadTimeout {
                field: field.to_string(),
                timeout: t,
            })
        }
        Some(t) => Some(t),
        None => None,
    };

    let mut cmd = Command::new(&path);
    let args = hook.args().as_deref().unwrap_or(&[]);
    match args.split_first() {
        Some((argv0, rest)) => {
            cmd.arg0(argv0).args(rest);
        }
        None => {
            cmd.arg0(&path);
        }
    }
    cmd.env_clear();
    let env = hook.env().as_deref().or(default_env).unwrap_or(&[]);
    for kv in env {
        // An entry without '=' names a variable with an empty value, as execve would see it.
        let (k, v) = kv.split_once('=').unwrap_or((kv.as_str(), ""));
        cmd.env(k, v);
    }
    // stdout and stderr share one pipe that is drained while the hook runs, so a chatty hook can
    // never block on a full pipe; the tail is kept for the error message.
    let (reader, writer) =
        nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|errno| HookError::Spawn {
            field: field.to_string(),
            path: path.clone(),
            source: errno.into(),
        })?;
    let reader = std::fs::File::from(reader);
    let writer2 = writer.try_clone().map_err(|source| HookError::Spawn {
        field: field.to_string(),
        path: path.clone(),
        source,
    })?;
    cmd.stdin(Stdio::piped()).stdout(writer).stderr(writer2);
    let mut child = cmd.spawn().map_err(|source| HookError::Spawn {
        field: field.to_string(),
        path: path.clone(),
        source,
    })?;
    // The parent's copies of the write end were moved into `cmd`; drop it so EOF can be seen.
    drop(cmd);

    if let Some(mut stdin) = child.stdin.take() {
        // A hook that exits without reading its stdin makes this fail with EPIPE: that is the
        // hook's choice, not an error (runc ignores it too).
        if let Err(source) = stdin.write_all(state_json) {
            if source.kind() != ErrorKind::BrokenPipe {
                let _ = child.kill();
                let _ = child.wait();
                return Err(HookError::Stdin {
                    field: field.to_string(),
                    source,
                });
            }
        }
    }

    let mut out = OutputTail::new(reader);
    let deadline = timeout.map(|t| Instant::now() + Duration::from_secs(t.unsigned_abs()));
    let status =
        wait_with_deadline(&mut child, deadline, &mut out).map_err(|source| HookError::Wait {
            field: field.to_string(),
            path: path.clone(),
            source,
        })?;
    match status {
        Some(status) if status.success() => Ok(()),
        Some(status) => Err(HookError::Failed {
            field: field.to_string(),
            path,
            status,
            output: out.text(),
        }),
        None => Err(HookError::TimedOut {
            field: field.to_string(),
            path,
            timeout: timeout.unwrap_or_default(),
            output: out.text(),
        }),
    }
}

/// Waits for `child`, draining its output; `None` when the deadline passed (the child is then
/// killed and reaped).
fn wait_with_deadline(
    child: &mut Child,
    deadline: Option<Instant>,
    out: &mut OutputTail,
) -> std::io::Result<Option<std::process::ExitStatus>> {
    let mut nap = Duration::from_micros(100);
    loop {
        out.drain();
        if let Some(status) = child.try_wait()? {
            // Whatever is already buffered; a grandchild that keeps the pipe open must not make
            // us wait for EOF.
            out.drain();
            return Ok(Some(status));
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let _ = child.kill();
            let _ = child.wait();
            out.drain();
            return Ok(None);
        }
        std::thread::sleep(nap);
        nap = (nap * 2).min(Duration::from_millis(10));
    }
}

/// The last [`OUTPUT_KEEP`] bytes a hook wrote, read without blocking.
struct OutputTail {
    reader: Option<std::fs::File>,
    buf: Vec<u8>,
}

impl OutputTail {
    fn new(reader: std::fs::File) -> Self {
        let nonblocking = fcntl(reader.as_fd(), FcntlArg::F_GETFL)
            .map(OFlag::from_bits_truncate)
            .and_then(|fl| fcntl(reader.as_fd(), FcntlArg::F_SETFL(fl | OFlag::O_NONBLOCK)));
        // If the pipe cannot be made non-blocking, do not read it at all (reading could block
        // forever); the hook's output is then simply not reported.
        let reader = nonblocking.ok().map(|_| reader);
        Self {
            reader,
            buf: Vec::new(),
        }
    }

    fn drain(&mut self) {
        let Some(reader) = self.reader.as_mut() else {
            return;
        };
        let mut chunk = [0u8; 4096];
        loop {
            match reader.read(&mut chunk) {
                Ok(0) => {
                    self.reader = None;
                    return;
                }
                Ok(n) => {
                    self.buf.extend_from_slice(chunk.get(..n).unwrap_or(&[]));
                    if self.buf.len() > OUTPUT_KEEP {
                        let cut = self.buf.len() - OUTPUT_KEEP;
                        self.buf.drain(..cut);
                    }
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return, // WouldBlock: nothing more for now.
            }
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.buf).trim_end().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{HookBuilder, HooksBuilder};

    fn sh(script: &str, timeout: Option<i64>) -> Hook {
        let mut b = HookBuilder::default()
            .path("/bin/sh")
            .args(vec!["sh".to_string(), "-c".to_string(), script.to_string()])
            .env(vec!["HOOKVAR=fromconfig".to_string()]);
        if let Some(t) = timeout {
            b = b.timeout(t);
        }
        b.build().unwrap()
    }

    #[test]
    fn hook_sees_state_on_stdin_its_args_and_only_its_env() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("seen");
        let script = format!(
            "cat > {o}.stdin; echo \"$0|$HOOKVAR|${{HOME:-unset}}\" > {o}",
            o = out.display()
        );
        run_one(
            "hooks.poststart[0]",
            &sh(&script, Some(5)),
            br#"{"id":"x"}"#,
        )
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(out.with_extension("stdin")).unwrap(),
            r#"{"id":"x"}"#
        );
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            "sh|fromconfig|unset\n"
        );
    }

    #[test]
    fn failing_hook_reports_status_and_output() {
        let err = run_one(
            "hooks.createRuntime[2]",
            &sh("echo boom >&2; exit 3", None),
            b"{}",
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("hooks.createRuntime[2]"), "{msg}");
        assert!(msg.contains("boom"), "{msg}");
        assert!(matches!(err, HookError::Failed { status, .. } if status.code() == Some(3)));
    }

    #[test]
    fn hook_past_timeout_is_killed() {
        let t0 = Instant::now();
        let err = run_one("hooks.prestart[0]", &sh("sleep 30", Some(1)), b"{}").unwrap_err();
        assert!(
            matches!(err, HookError::TimedOut { timeout: 1, .. }),
            "{err}"
        );
        assert!(t0.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn chatty_hook_does_not_block_on_a_full_pipe() {
        // 1 MiB of output is far beyond a pipe's capacity.
        run_one(
            "hooks.poststop[0]",
            &sh("head -c 1048576 /dev/zero", Some(10)),
            b"{}",
        )
        .unwrap();
    }

    #[test]
    fn hook_that_ignores_stdin_is_fine() {
        let big = vec![b'x'; 1 << 20];
        run_one("hooks.poststop[0]", &sh("exit 0", Some(10)), &big).unwrap();
    }

    #[test]
    fn fatal_kinds_stop_at_first_failure_and_warning_kinds_go_on() {
        let dir = tempfile::tempdir().unwrap();
        let mark = dir.path().join("second-ran");
        let second = sh(&format!("touch {}", mark.display()), None);
        let first = sh("exit 1", None);
        let mk = |kind: HookKind| {
            let v = vec![first.clone(), second.clone()];
            match kind {
                HookKind::CreateRuntime => {
                    HooksBuilder::default().create_runtime(v).build().unwrap()
                }
                _ => HooksBuilder::default().poststop(v).build().unwrap(),
            }
        };
        assert!(run_hooks(
            HookKind::CreateRuntime,
            Some(&mk(HookKind::CreateRuntime)),
            b"{}"
        )
        .is_err());
        assert!(!mark.exists());
        run_hooks(HookKind::Poststop, Some(&mk(HookKind::Poststop)), b"{}").unwrap();
        assert!(mark.exists());
    }

    #[test]
    fn validate_names_the_bad_field() {
        let rel = HookBuilder::default().path("bin/true").build().unwrap();
        let hooks = HooksBuilder::default()
            .start_container(vec![rel])
            .build()
            .unwrap();
        let e = validate(&hooks).unwrap_err().to_string();
        assert!(e.starts_with("hooks.startContainer[0].path"), "{e}");
        let zero = HookBuilder::default()
            .path("/bin/true")
            .timeout(0)
            .build()
            .unwrap();
        let hooks = HooksBuilder::default()
            .poststart(vec![sh("true", None), zero])
            .build()
            .unwrap();
        let e = validate(&hooks).unwrap_err().to_string();
        assert!(e.starts_with("hooks.poststart[1].timeout"), "{e}");
    }

    #[test]
    fn missing_program_is_a_spawn_error() {
        let hook = HookBuilder::default()
            .path("/nonexistent/hook")
            .build()
            .unwrap();
        let e = run_one("hooks.createRuntime[0]", &hook, b"{}").unwrap_err();
        assert!(matches!(e, HookError::Spawn { .. }), "{e}");
    }
}
