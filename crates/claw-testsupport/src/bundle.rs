//! OCI bundles and an OCI runtime binary driven from tests.
//!
//! [`Bundle`] is a temporary directory holding `rootfs/` (busybox) and a `config.json`
//! written from a `serde_json::Value`; it is world-readable so an unprivileged test user can
//! run it. [`Runtime`] runs a runtime binary (`env!("CARGO_BIN_EXE_nanoclaw")`, runc, crun)
//! with a private `--root`, optionally as another user.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// A bundle directory: `rootfs/` + `config.json`. Removed on drop.
pub struct Bundle {
    dir: tempfile::TempDir,
}

impl Bundle {
    /// A bundle with a busybox rootfs and no config.json yet.
    pub fn busybox() -> std::io::Result<Self> {
        let dir = tempfile::Builder::new().prefix("claw-bundle-").tempdir()?;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
        let rootfs = dir.path().join("rootfs");
        std::fs::create_dir(&rootfs)?;
        crate::populate_busybox_rootfs(&rootfs)?;
        Ok(Self { dir })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }

    /// Writes `config.json` from `spec`.
    pub fn write_config(&self, spec: &serde_json::Value) -> std::io::Result<()> {
        let text = serde_json::to_vec_pretty(spec).map_err(std::io::Error::other)?;
        std::fs::write(self.dir.path().join("config.json"), text)
    }

    /// Writes raw bytes as `config.json` (for malformed-input tests).
    pub fn write_raw_config(&self, bytes: &[u8]) -> std::io::Result<()> {
        std::fs::write(self.dir.path().join("config.json"), bytes)
    }

    /// Hands the whole bundle to `uid:gid` (a rootless runtime must own or read it).
    pub fn chown_recursive(&self, uid: u32, gid: u32) -> std::io::Result<()> {
        chown_tree(self.dir.path(), uid, gid)
    }
}

fn chown_tree(path: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))?;
    let meta = std::fs::symlink_metadata(path)?;
    if meta.is_dir() {
        for entry in std::fs::read_dir(path)? {
            chown_tree(&entry?.path(), uid, gid)?;
        }
    }
    Ok(())
}

/// uid and gid of a local user from /etc/passwd.
pub fn user_ids(name: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let mut f = l.split(':');
        if f.next()? != name {
            return None;
        }
        let uid = f.nth(1)?.parse().ok()?;
        let gid = f.next()?.parse().ok()?;
        Some((uid, gid))
    })
}

/// True when `name` exists; otherwise the test is skipped (or fails under CI; see
/// [`crate::SkipPolicy`]).
#[track_caller]
pub fn require_user(test: &str, name: &str) -> bool {
    crate::require(
        test,
        user_ids(name).is_some(),
        &format!("needs the user `{name}` (scripts/install-deps creates it)"),
    )
}

/// An OCI runtime binary with a private state root.
pub struct Runtime {
    bin: PathBuf,
    root: tempfile::TempDir,
    /// Run as this (uid, gid) instead of the test's own ids.
    user: Option<(u32, u32)>,
    _bin_dir: Option<tempfile::TempDir>,
}

impl Runtime {
    /// `bin` as the test's own user, state under a fresh temporary --root.
    pub fn new(bin: impl Into<PathBuf>) -> std::io::Result<Self> {
        Ok(Self {
            bin: bin.into(),
            root: tempfile::Builder::new().prefix("claw-root-").tempdir()?,
            user: None,
            _bin_dir: None,
        })
    }

    /// `bin` run as `uid:gid`: the binary is copied to a world-readable temp dir (the cargo
    /// target dir may not be reachable for that user) and --root is owned by the user.
    pub fn as_user(bin: impl AsRef<Path>, uid: u32, gid: u32) -> std::io::Result<Self> {
        let bin_dir = tempfile::Builder::new().prefix("claw-bin-").tempdir()?;
        std::fs::set_permissions(bin_dir.path(), std::fs::Permissions::from_mode(0o755))?;
        let name = bin
            .as_ref()
            .file_name()
            .unwrap_or_else(|| "runtime".as_ref());
        let copy = bin_dir.path().join(name);
        std::fs::copy(bin.as_ref(), &copy)?;
        std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755))?;
        let root = tempfile::Builder::new().prefix("claw-root-").tempdir()?;
        std::os::unix::fs::chown(root.path(), Some(uid), Some(gid))?;
        Ok(Self {
            bin: copy,
            root,
            user: Some((uid, gid)),
            _bin_dir: Some(bin_dir),
        })
    }

    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// A command `bin --root <root> <args...>` (as the configured user), stdin closed.
    pub fn command<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--root").arg(self.root.path()).args(args);
        cmd.stdin(Stdio::null());
        if let Some((uid, gid)) = self.user {
            // std drops supplementary groups (setgroups(0)) when switching from root.
            cmd.uid(uid).gid(gid);
            cmd.env_remove("XDG_RUNTIME_DIR");
            cmd.env("HOME", "/tmp");
            cmd.current_dir("/");
        }
        cmd
    }

    /// `run --bundle <bundle> <id>`, capturing output.
    pub fn run(&self, bundle: &Path, id: &str) -> std::io::Result<Output> {
        self.command(["run", "--bundle"])
            .arg(bundle)
            .arg(id)
            .output()
    }

    /// Entries left in --root (should be none after `run` returns).
    pub fn leftover_state(&self) -> Vec<String> {
        std::fs::read_dir(self.root.path())
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Mount points under `prefix` in the calling thread's mount table (leak checks; the
/// thread's, so a test that moved its thread into a mount namespace of its own sees that one).
pub fn mounts_under(prefix: &Path) -> Vec<String> {
    std::fs::read_to_string("/proc/thread-self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|mp| Path::new(mp).starts_with(prefix))
        .map(str::to_string)
        .collect()
}

/// True when `pid` exists and is not a zombie.
pub fn pid_alive(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat
        .rfind(')')
        .and_then(|i| stat.get(i + 1..))
        .and_then(|s| s.split_whitespace().next());
    !matches!(state, Some("Z") | Some("X") | None)
}
